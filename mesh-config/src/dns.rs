//! `[dns]`: how endpoint names (`vpn.example.net:51820`) are resolved. By default the
//! system's resolver configuration (`/etc/resolv.conf`) is used; `servers` replaces it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::serde_str::serde_via_str;

/// The DNS port (RFC 1035).
pub const DEFAULT_DNS_PORT: u16 = 53;
/// Seconds an answer is kept at least, however short its TTL: a name with TTL 0 or 5 would
/// otherwise be asked for many times a minute.
pub const DEFAULT_MIN_TTL: u32 = 30;
/// Seconds an answer is kept at most, however long its TTL: a moved endpoint is found within
/// the hour even if its record says a day.
pub const DEFAULT_MAX_TTL: u32 = 3600;
/// The longest `max_ttl` accepted: one day (RFC 8767 suggests the same ceiling for stale data).
pub const MAX_TTL_LIMIT: u32 = 86_400;

/// `[dns]` in `meshd.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSection {
    /// Name servers to ask instead of those in `/etc/resolv.conf`, in order; empty: the
    /// system's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<DnsServer>,
    /// Seconds: answers with a shorter TTL are re-resolved only after this long.
    #[serde(default = "default_min_ttl")]
    pub min_ttl: u32,
    /// Seconds: answers with a longer TTL are re-resolved after this long.
    #[serde(default = "default_max_ttl")]
    pub max_ttl: u32,
}

/// A name server: `192.0.2.53`, `192.0.2.53:5353` or `[2001:db8::53]:53`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DnsServer(pub SocketAddr);

/// Why a string is not a name server address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a name server address; write an IP address, optionally with a port: \
     \"192.0.2.53\", \"192.0.2.53:53\" or \"[2001:db8::53]:53\""
)]
pub struct DnsServerError(pub String);

impl FromStr for DnsServer {
    type Err = DnsServerError;

    fn from_str(s: &str) -> Result<Self, DnsServerError> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(DnsServer(SocketAddr::new(ip, DEFAULT_DNS_PORT)));
        }
        s.parse::<SocketAddr>()
            .map(DnsServer)
            .map_err(|_| DnsServerError(s.to_owned()))
    }
}

impl fmt::Display for DnsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

serde_via_str!(
    DnsServer,
    "a name server address such as \"192.0.2.53\" or \"[2001:db8::53]:53\""
);

impl Default for DnsSection {
    fn default() -> Self {
        DnsSection {
            servers: Vec::new(),
            min_ttl: DEFAULT_MIN_TTL,
            max_ttl: DEFAULT_MAX_TTL,
        }
    }
}

impl DnsSection {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn default_min_ttl() -> u32 {
    DEFAULT_MIN_TTL
}

fn default_max_ttl() -> u32 {
    DEFAULT_MAX_TTL
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_take_a_default_port() {
        let server: DnsServer = "192.0.2.53".parse().unwrap();
        assert_eq!(server.to_string(), "192.0.2.53:53");
        let server: DnsServer = "[2001:db8::53]:5353".parse().unwrap();
        assert_eq!(server.0.port(), 5353);
        let server: DnsServer = "2001:db8::53".parse().unwrap();
        assert_eq!(server.to_string(), "[2001:db8::53]:53");
        assert!("ns.example.net".parse::<DnsServer>().is_err());
        assert!("192.0.2.53:".parse::<DnsServer>().is_err());
    }
}
