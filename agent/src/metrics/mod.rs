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
    /// `node.crt` in the state directory, when the node has a control plane: read at each
    /// scrape, because a renewal replaces it while the daemon runs.
    pub node_certificate: Option<std::path::PathBuf>,
    /// Whether the kernel handshake guard (`inet meshd_guard`) was installed at start.
    pub handshake_guard: bool,
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
            node_certificate_expiry_unix: self
                .node_certificate
                .as_deref()
                .and_then(certificate_expiry),
            handshake_guard: self.handshake_guard,
            now: std::time::Instant::now(),
        }
    }
}

/// When the certificate in the PEM file at `path` expires (Unix seconds). `None` if it cannot
/// be read or parsed: the daemon checked `node.crt` at start and renewal replaces it
/// atomically, so this is a file removed by hand; the metric is then absent rather than a
/// scrape failing or a log line per scrape.
fn certificate_expiry(path: &std::path::Path) -> Option<i64> {
    let pem = std::fs::read_to_string(path).ok()?;
    let certificate = pki::NodeCertificate::from_pem(&pem).ok()?;
    Some(certificate.not_after.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_expiry_reads_not_after_and_is_none_without_a_certificate() {
        let now = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let ca = pki::CertificateAuthority::create("t", now, time::Duration::days(365)).unwrap();
        let key = pki::NodeKeyPair::generate().unwrap();
        let identity = pki::NodeIdentity {
            name: "alpha".into(),
            role: pki::NodeRole::Core,
            core: None,
            prefixes: vec!["10.1.0.0/16".parse().unwrap()],
            lan_prefixes: vec![],
            wireguard_key: [7; 32],
            approvals: Default::default(),
            foreign: false,
        };
        let issued = ca
            .issue_node_certificate(
                &key.csr("alpha").unwrap(),
                &identity,
                now,
                time::Duration::days(90),
            )
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.crt");
        std::fs::write(&path, &issued.pem).unwrap();
        assert_eq!(certificate_expiry(&path), Some(1_800_000_000 + 90 * 86_400));
        assert_eq!(certificate_expiry(&dir.path().join("missing.crt")), None);
        std::fs::write(&path, "not a certificate").unwrap();
        assert_eq!(certificate_expiry(&path), None);
    }
}
