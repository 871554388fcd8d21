//! Address families and the prefix encoding shared by the NLRI and withdrawn-routes fields and by
//! MP_REACH/MP_UNREACH (RFC 4271 §4.3, RFC 4760 §5): a length octet, then just enough octets.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::reader::Reader;

pub const AFI_IPV4: u16 = 1;
pub const AFI_IPV6: u16 = 2;
pub const SAFI_UNICAST: u8 = 1;

/// The address families meshd routes: IPv4 and IPv6 unicast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ipv4Unicast,
    Ipv6Unicast,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::Ipv4Unicast, Family::Ipv6Unicast];

    pub fn from_afi_safi(afi: u16, safi: u8) -> Option<Family> {
        match (afi, safi) {
            (AFI_IPV4, SAFI_UNICAST) => Some(Family::Ipv4Unicast),
            (AFI_IPV6, SAFI_UNICAST) => Some(Family::Ipv6Unicast),
            _ => None,
        }
    }

    pub fn afi(self) -> u16 {
        match self {
            Family::Ipv4Unicast => AFI_IPV4,
            Family::Ipv6Unicast => AFI_IPV6,
        }
    }

    pub fn safi(self) -> u8 {
        SAFI_UNICAST
    }

    pub fn of(prefix: &IpNet) -> Family {
        match prefix {
            IpNet::V4(_) => Family::Ipv4Unicast,
            IpNet::V6(_) => Family::Ipv6Unicast,
        }
    }
}

/// Why a prefix could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrefixError {
    TooLong,
    Truncated,
}

impl PrefixError {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            PrefixError::TooLong => "prefix length exceeds the address width",
            PrefixError::Truncated => "prefix runs past the end of its field",
        }
    }
}

/// Reads prefixes of `family` until `bytes` is used up.
pub(crate) fn decode_prefixes(family: Family, bytes: &[u8]) -> Result<Vec<IpNet>, PrefixError> {
    let mut r = Reader::new(bytes);
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(decode_prefix(family, &mut r)?);
    }
    Ok(out)
}

pub(crate) fn decode_v4_prefixes(bytes: &[u8]) -> Result<Vec<Ipv4Net>, PrefixError> {
    Ok(decode_prefixes(Family::Ipv4Unicast, bytes)?
        .into_iter()
        .filter_map(|p| match p {
            IpNet::V4(v4) => Some(v4),
            IpNet::V6(_) => None,
        })
        .collect())
}

fn decode_prefix(family: Family, r: &mut Reader<'_>) -> Result<IpNet, PrefixError> {
    let len = r.u8().ok_or(PrefixError::Truncated)?;
    let width = match family {
        Family::Ipv4Unicast => 32,
        Family::Ipv6Unicast => 128,
    };
    if len > width {
        return Err(PrefixError::TooLong);
    }
    let octets = r
        .take(usize::from(len).div_ceil(8))
        .ok_or(PrefixError::Truncated)?;
    // Bits past the prefix length are irrelevant (RFC 4271 §4.3); `trunc` clears them so equal
    // prefixes compare equal.
    Ok(match family {
        Family::Ipv4Unicast => {
            let mut a = [0u8; 4];
            a[..octets.len()].copy_from_slice(octets);
            IpNet::V4(
                Ipv4Net::new(Ipv4Addr::from(a), len)
                    .map_err(|_| PrefixError::TooLong)?
                    .trunc(),
            )
        }
        Family::Ipv6Unicast => {
            let mut a = [0u8; 16];
            a[..octets.len()].copy_from_slice(octets);
            IpNet::V6(
                Ipv6Net::new(Ipv6Addr::from(a), len)
                    .map_err(|_| PrefixError::TooLong)?
                    .trunc(),
            )
        }
    })
}

/// Appends the wire form of `prefix`.
pub(crate) fn encode_prefix(prefix: &IpNet, out: &mut Vec<u8>) {
    let len = prefix.prefix_len();
    let n = usize::from(len).div_ceil(8);
    out.push(len);
    match prefix.trunc() {
        IpNet::V4(p) => out.extend_from_slice(&p.addr().octets()[..n]),
        IpNet::V6(p) => out.extend_from_slice(&p.addr().octets()[..n]),
    }
}

/// Octets `prefix` takes on the wire.
pub fn encoded_prefix_len(prefix: &IpNet) -> usize {
    1 + usize::from(prefix.prefix_len()).div_ceil(8)
}
