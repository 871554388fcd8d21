//! meshd.toml schema and validation, and the mesh address plan (allocation). No network,
//! no file I/O beyond [`load`] reading the one file it is asked to.

pub mod alloc;
mod endpoint;
mod error;
mod key;
mod load;
mod locate;
pub mod names;
pub mod path;
mod policy;
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
