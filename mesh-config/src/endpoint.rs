//! `host:port` endpoints of a node: an IP address or a DNS name that is resolved later
//! (and re-resolved when it changes), plus a UDP/TCP port.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::names::check_hostname;
use crate::serde_str::serde_via_str;

/// The host part of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    Ip(IpAddr),
    /// A DNS name, validated by [`Host::from_str`], kept as written.
    Name(String),
}

/// Where a node can be reached: `vpn.example.net:51820`, `203.0.113.2:51820` or
/// `[2001:db8::1]:51820`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub host: Host,
    pub port: u16,
}

/// Why a string is not a valid endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("{0:?} has no port; write it as HOST:PORT, e.g. vpn.example.net:51820")]
    MissingPort(String),
    #[error(
        "{0:?} is an IPv6 address without brackets; write it as [ADDRESS]:PORT, e.g. [2001:db8::1]:51820"
    )]
    UnbracketedIpv6(String),
    #[error("{input:?}: port {port:?} is not a number from 1 to 65535")]
    BadPort { input: String, port: String },
    #[error("{input:?}: {reason}")]
    BadHost { input: String, reason: String },
}

impl Endpoint {
    pub fn new(host: Host, port: u16) -> Self {
        Endpoint { host, port }
    }
}

impl FromStr for Host {
    type Err = String;

    /// Accepts an IP address or a DNS host name (brackets are not part of a host).
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        check_hostname(s)?;
        Ok(Host::Name(s.to_owned()))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => ip.fmt(f),
            Host::Name(name) => f.write_str(name),
        }
    }
}

impl FromStr for Endpoint {
    type Err = EndpointError;

    fn from_str(s: &str) -> Result<Self, EndpointError> {
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or_else(|| EndpointError::BadHost {
                input: s.to_owned(),
                reason: "'[' without a matching ']'".into(),
            })?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| EndpointError::MissingPort(s.to_owned()))?;
            let ip = inside
                .parse::<std::net::Ipv6Addr>()
                .map_err(|_| EndpointError::BadHost {
                    input: s.to_owned(),
                    reason: format!("{inside:?} inside brackets is not an IPv6 address"),
                })?;
            (Host::Ip(IpAddr::V6(ip)), port)
        } else {
            let (host, port) = s
                .rsplit_once(':')
                .ok_or_else(|| EndpointError::MissingPort(s.to_owned()))?;
            if host.contains(':') {
                return Err(EndpointError::UnbracketedIpv6(s.to_owned()));
            }
            let host = host
                .parse::<Host>()
                .map_err(|reason| EndpointError::BadHost {
                    input: s.to_owned(),
                    reason,
                })?;
            (host, port)
        };
        // `u16::from_str` accepts a leading '+'; a port is digits only.
        let port_number = port
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| port.parse::<u16>().ok())
            .flatten()
            .filter(|p| *p != 0)
            .ok_or_else(|| EndpointError::BadPort {
                input: s.to_owned(),
                port: port.to_owned(),
            })?;
        Ok(Endpoint::new(host, port_number))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            host => write!(f, "{host}:{}", self.port),
        }
    }
}

serde_via_str!(
    Endpoint,
    "an endpoint \"HOST:PORT\" such as \"vpn.example.net:51820\""
);

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(s: &str) -> String {
        s.parse::<Endpoint>().unwrap().to_string()
    }

    #[test]
    fn parses_and_prints() {
        assert_eq!(round_trip("vpn.example.net:51820"), "vpn.example.net:51820");
        assert_eq!(round_trip("203.0.113.2:1"), "203.0.113.2:1");
        assert_eq!(round_trip("[2001:db8::1]:65535"), "[2001:db8::1]:65535");
        let e: Endpoint = "[2001:db8::1]:51820".parse().unwrap();
        assert_eq!(e.host, Host::Ip("2001:db8::1".parse().unwrap()));
        assert_eq!(e.port, 51820);
        let e: Endpoint = "vpn.example.net:7".parse().unwrap();
        assert_eq!(e.host, Host::Name("vpn.example.net".into()));
    }

    #[test]
    fn rejects_bad_endpoints() {
        use EndpointError::*;
        let err = |s: &str| s.parse::<Endpoint>().unwrap_err();
        assert!(matches!(err("vpn.example.net"), MissingPort(_)));
        assert!(matches!(err("[2001:db8::1]"), MissingPort(_)));
        assert!(matches!(err("2001:db8::1:51820"), UnbracketedIpv6(_)));
        assert!(matches!(err("host:0"), BadPort { .. }));
        assert!(matches!(err("host:65536"), BadPort { .. }));
        assert!(matches!(err("host:+5"), BadPort { .. }));
        assert!(matches!(err("host:"), BadPort { .. }));
        assert!(matches!(err("[10.0.0.1]:5"), BadHost { .. }));
        assert!(matches!(err("[::1:5"), BadHost { .. }));
        assert!(matches!(err("bad_host:5"), BadHost { .. }));
        assert!(matches!(err(":5"), BadHost { .. }));
        assert!(matches!(err("1.2.3.256:5"), BadHost { .. }));
        assert_eq!(
            err("host:0").to_string(),
            "\"host:0\": port \"0\" is not a number from 1 to 65535"
        );
    }
}
