//! The control plane: admission of new nodes (join) and the spreading of membership among
//! admitted nodes, over TLS with the mesh CA.
//!
//! Pure parts: [`frame`] (length-prefixed frames with a hard limit), [`message`] (what
//! travels), [`record`] (signed membership records), [`membership`] (the state machine:
//! events and `now` in, actions out), [`peers`] (membership to tunnels).

pub mod frame;
pub mod membership;
#[cfg(test)]
mod membership_tests;
pub mod message;
pub mod peers;
pub mod record;
