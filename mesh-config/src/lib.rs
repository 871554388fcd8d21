//! meshd.toml schema and validation, and the mesh address plan (allocation). No network,
//! no file I/O beyond [`load`] reading the one file it is asked to.
//!
//! ```
//! use std::path::Path;
//! use mesh_config::{AddressPlan, Allocator, Role, parse, random_ula48};
//!
//! let text = "[node]\nname = \"alpha\"\nrole = \"core\"\n[mesh]\npool4 = \"10.0.0.1/8\"\n";
//! let error = parse(text, Path::new("/etc/meshd/meshd.toml")).unwrap_err();
//! assert_eq!(
//!     error.to_string(),
//!     "/etc/meshd/meshd.toml:5:9: mesh.pool4: \"10.0.0.1/8\" is not a network address \
//!      (did you mean 10.0.0.0/8?)"
//! );
//!
//! let pool6 = random_ula48([0x12, 0x34, 0x56, 0x78, 0x9a]); // fd12:3456:789a::/48
//! let plan = AddressPlan::new("10.0.0.0/8".parse().unwrap(), 16, pool6).unwrap();
//! let mut allocator = Allocator::new(plan).unwrap();
//! let alpha = allocator.allocate_node("alpha", Role::Core, None, None).unwrap();
//! assert_eq!(alpha.ipv4_address.to_string(), "10.1.0.1");
//! let spoke = allocator.allocate_node("home", Role::Spoke, Some("alpha"), None).unwrap();
//! assert_eq!(spoke.ipv6.to_string(), "fd12:3456:789a:1:1::/80");
//! let laptop = allocator.allocate_client("home", "laptop").unwrap();
//! assert_eq!(laptop.ipv4.to_string(), "10.2.0.2");
//! ```

pub mod alloc;
mod community;
pub mod dns;
mod endpoint;
mod error;
pub mod exit;
mod key;
mod load;
mod locate;
pub mod names;
pub mod path;
pub mod path_settings;
mod policy;
pub mod registry;
pub mod routers;
pub mod schema;
mod serde_str;
pub mod validate;

pub use alloc::{
    AddressPlan, AllocError, Allocator, ClientAllocation, NodeAllocation, PlanError, StateError,
    random_ula48,
};
pub use error::{ConfigError, Diagnostic};
pub use load::{load, parse};
pub use path::KeyPath;
pub use schema::*;
pub use validate::{Issue, validate};
