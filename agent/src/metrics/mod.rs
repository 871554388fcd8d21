//! Prometheus metrics: `GET /metrics` on `[metrics] listen` (loopback port 9474 unless
//! configured; docs/operations.md lists every metric).
//!
//! - [`exposition`]: a [`Snapshot`] of the daemon's counters to OpenMetrics text (pure).
//! - [`server`]: the HTTP listener, rebinding when a reload changes the address.

pub mod exposition;
pub mod server;

pub use exposition::{CONTENT_TYPE, Snapshot, encode};
pub use server::{MetricsSource, serve};

/// The running daemon as a [`MetricsSource`]: its peer set (peers and data plane counters),
/// its control plane and routing plane if it has them.
#[derive(Debug)]
pub struct DaemonMetrics<'a, D> {
    pub peer_set: &'a crate::peerset::PeerSet<'a, D>,
    pub control: Option<&'a crate::control::ControlHandle>,
    /// The routing plane's view (`meshd routes`), refreshed by it every second.
    pub bgp: Option<tokio::sync::watch::Receiver<crate::api::report::BgpView>>,
    pub started_at_unix: i64,
}

impl<D: crate::peerset::DataplaneControl> MetricsSource for DaemonMetrics<'_, D> {
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            peers: self.peer_set.peers(),
            stats: self.peer_set.stats(),
            control: self.control.map(crate::control::ControlHandle::counts),
            control_refusals: self
                .control
                .map(crate::control::ControlHandle::refused_connections),
            bgp: self.bgp.as_ref().map(|view| view.borrow().clone()),
            started_at_unix: self.started_at_unix,
            now: std::time::Instant::now(),
        }
    }
}
