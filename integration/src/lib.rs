//! Multi-node tests in one process, without root: UDP on 127.0.0.x and in-memory packet devices.
