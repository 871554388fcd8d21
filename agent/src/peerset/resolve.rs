//! A configured `[[peer]]` as the data plane sees it: endpoint names resolved to socket
//! addresses (at start and on every reload).

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use mesh_config::{DnsSection, Endpoint, StaticPeer};

use crate::dataplane::PeerConfig;

/// How long one endpoint name may take to resolve before it is skipped.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The data plane's view of a configured peer, with endpoint names resolved (once, with the
/// same hickory resolver and `[dns]` settings as the daemon's resolver, crate::dns).
pub async fn resolve_peer(peer: &StaticPeer, dns: &DnsSection) -> PeerConfig {
    let mut endpoints = Vec::new();
    for endpoint in &peer.endpoints {
        match resolve_endpoint(endpoint, dns).await {
            Ok(addresses) => endpoints.extend(addresses),
            // The peer may still reach us; its endpoint is learnt from its packets.
            Err(error) => tracing::warn!(peer = %peer.name, %error, "endpoint skipped"),
        }
    }
    configured_peer(peer, endpoints)
}

/// The data plane's view of a configured peer whose endpoints are `endpoints`.
pub fn configured_peer(peer: &StaticPeer, endpoints: Vec<SocketAddr>) -> PeerConfig {
    PeerConfig {
        name: peer.name.clone(),
        public_key: *peer.public_key.as_bytes(),
        endpoints,
        allowed_ips: peer.allowed_prefixes.iter().map(IpNet::trunc).collect(),
        ecmp_ips: Vec::new(),
        persistent_keepalive: keepalive(peer.persistent_keepalive),
        relay: false,
    }
}

/// The socket addresses of one endpoint: the address itself, or what its name resolves to.
async fn resolve_endpoint(
    endpoint: &Endpoint,
    dns: &DnsSection,
) -> Result<Vec<SocketAddr>, String> {
    tokio::time::timeout(RESOLVE_TIMEOUT, crate::dns::resolve_once(endpoint, dns))
        .await
        .map_err(|_| format!("resolving {endpoint} timed out after {RESOLVE_TIMEOUT:?}"))?
}

/// `persistent_keepalive` seconds; 0 means off, as in `wg`.
fn keepalive(seconds: Option<u16>) -> Option<Duration> {
    seconds
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(u64::from(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalive_zero_means_off() {
        assert_eq!(keepalive(None), None);
        assert_eq!(keepalive(Some(0)), None);
        assert_eq!(keepalive(Some(25)), Some(Duration::from_secs(25)));
    }

    #[tokio::test]
    async fn literal_endpoints_resolve_without_dns() {
        let endpoint: Endpoint = "[2001:db8::1]:51820".parse().unwrap();
        assert_eq!(
            resolve_endpoint(&endpoint, &DnsSection::default())
                .await
                .unwrap(),
            vec!["[2001:db8::1]:51820".parse::<SocketAddr>().unwrap()]
        );
    }
}
