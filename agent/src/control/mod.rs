//! The control plane: admission of new nodes (join) and the spreading of membership among
//! admitted nodes, over TLS with the mesh CA.
//!
//! Pure parts: [`frame`] (length-prefixed frames with a hard limit), [`message`] (what
//! travels), [`protocol`] (versions, the hello's features, decoding that skips what a newer
//! node sends), [`record`] (signed membership records), [`membership`] (the state machine:
//! events and `now` in, actions out), [`registry`] (the CA registry record as it travels,
//! signed with the CA key), [`peers`] (membership to tunnels), [`redial`] (when to
//! dial a member again after a failure), [`accept_limits`] (how many unauthenticated
//! connections the control port holds open, and the counts behind their aggregated log line).
//!
//! I/O: [`tls`] (rustls configs and verifiers on the mesh CA), [`admission`] (the CA side of
//! a join), [`join_client`] (the joiner's side), [`store`] (membership and CRL in the state
//! directory), [`shell`] (listener, dialer, the hub task; [`ControlPlane::start`]).

pub mod accept_limits;
pub mod admission;
pub mod frame;
pub mod hosted;
pub mod join_client;
pub mod log_throttle;
pub mod membership;
#[cfg(test)]
mod membership_tests;
pub mod message;
pub mod peers;
pub mod protocol;
pub mod record;
pub mod redial;
pub mod registry;
pub mod renewal;
pub mod renewal_targets;
pub mod shell;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod store;
pub mod tls;

pub use shell::{
    ControlError, ControlHandle, ControlPlane, ControlSettings, MembershipCounts, RenewalTrigger,
    mesh_pool_routes,
};
