//! Paths: the ways a peer can be reached (local source address x remote endpoint), how each
//! is probed, and which one carries the peer's traffic.
//!
//! - [`selector`]: the endpoint choice without probes: the address authenticated traffic
//!   last came from, else the configured endpoints in turn, moving on when a handshake goes
//!   unanswered. Used for peers that do not answer probes.
//! - [`candidates`]: local uplinks x remote endpoints, ranked (primary first).
//! - [`probe`]: the 64-byte authenticated probe request/reply on the WireGuard port.
//! - [`prober`]: per peer, probes every candidate path and chooses the active one
//!   (timers, hysteresis, failback, and the idle byte budget are documented there).
//! - [`reach`]: the 64-byte "do you reach this core?" query and answer between cores.
//! - [`relay`]: per target core, whether its traffic goes direct or through another core.

pub mod candidates;
pub mod probe;
pub mod prober;
pub mod reach;
pub mod relay;
pub mod selector;

pub use candidates::{DefaultPolicy, LocalUplink, PathPolicy};
pub use selector::{HANDSHAKE_TIMEOUT, PathSelector};

pub use probe::{Probe, ProbeError, ProbeKey, ProbeKind, SenderId};
pub use prober::{
    Path, PathAction, PathCandidate, PathProber, PathSource, PathState, PathStats, ProberConfig,
    SwitchReason,
};
pub use relay::{RelayAction, RelayCandidate, RelayChooser, RelayConfig, RelayReason};
