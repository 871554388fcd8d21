//! meshd.toml schema and validation, and the mesh address plan (allocation). No network.
