//! Endpoint names (`vpn.example.net:51820`) to addresses, kept current: A and AAAA lookups
//! with hickory-resolver, asked again when the answer's TTL (clamped to `[dns] min_ttl` ..
//! `max_ttl`) runs out, on demand when every path to a peer is down, and on a reload of
//! `[dns]`. A changed answer is published to subscribers at once; a failing name is one
//! warning per different error and keeps its last good addresses. Literal addresses never
//! touch DNS.
//!
//! - [`table`]: the pure bookkeeping (deadlines, change detection, warn-once);
//! - [`service`]: the tokio task around hickory and the handle subscribers use.

pub mod service;
pub mod table;

use std::net::SocketAddr;

use mesh_config::{DnsSection, Endpoint, Host};

pub use service::{Answers, Resolver};

/// The socket addresses `endpoint` stands for now: itself if it is an address, else its
/// name's current answer (nothing while it never resolved).
pub fn endpoint_addresses(endpoint: &Endpoint, answers: &Answers) -> Vec<SocketAddr> {
    match &endpoint.host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, endpoint.port)],
        Host::Name(name) => answers
            .get(name)
            .into_iter()
            .flatten()
            .map(|ip| SocketAddr::new(*ip, endpoint.port))
            .collect(),
    }
}

/// The names among `endpoints` (literal addresses need no lookup).
pub fn names<'a>(
    endpoints: impl IntoIterator<Item = &'a Endpoint>,
) -> impl Iterator<Item = String> {
    endpoints.into_iter().filter_map(|e| match &e.host {
        Host::Name(name) => Some(name.clone()),
        Host::Ip(_) => None,
    })
}

/// One lookup now, for a caller without a running resolver task (`meshd join` dialling the
/// bootstrap endpoints of a token, a static peer at start): the same resolver and settings.
pub async fn resolve_once(
    endpoint: &Endpoint,
    settings: &DnsSection,
) -> Result<Vec<SocketAddr>, String> {
    let name = match &endpoint.host {
        Host::Ip(ip) => return Ok(vec![SocketAddr::new(*ip, endpoint.port)]),
        Host::Name(name) => name,
    };
    let resolver = service::build(settings)?;
    let (addresses, _) = service::lookup(&resolver, name)
        .await
        .map_err(|error| format!("cannot resolve {name}: {error}"))?;
    if addresses.is_empty() {
        return Err(format!("{name} resolves to no address"));
    }
    Ok(addresses
        .into_iter()
        .map(|ip| SocketAddr::new(ip, endpoint.port))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_endpoints_bypass_dns_and_names_use_the_answers() {
        let literal: Endpoint = "[2001:db8::1]:51820".parse().unwrap();
        let named: Endpoint = "vpn.example.net:51821".parse().unwrap();
        let mut answers = Answers::new();
        assert_eq!(
            endpoint_addresses(&literal, &answers),
            ["[2001:db8::1]:51820".parse::<SocketAddr>().unwrap()]
        );
        assert!(endpoint_addresses(&named, &answers).is_empty());
        answers.insert(
            "vpn.example.net".into(),
            vec!["198.51.100.2".parse().unwrap()],
        );
        assert_eq!(
            endpoint_addresses(&named, &answers),
            ["198.51.100.2:51821".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            names([&literal, &named]).collect::<Vec<_>>(),
            ["vpn.example.net"]
        );
    }

    #[tokio::test]
    async fn resolve_once_answers_literals_without_a_lookup() {
        let literal: Endpoint = "203.0.113.2:51820".parse().unwrap();
        assert_eq!(
            resolve_once(&literal, &DnsSection::default())
                .await
                .unwrap(),
            ["203.0.113.2:51820".parse::<SocketAddr>().unwrap()]
        );
    }
}
