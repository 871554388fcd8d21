//! meshd.toml schema and validation, and the mesh address plan (allocation). No network,
//! no file I/O beyond [`load`] reading the one file it is asked to.

mod endpoint;
mod key;
pub mod names;
mod policy;
pub mod schema;
mod serde_str;

pub use schema::*;
