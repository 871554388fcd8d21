//! BGP communities as router users write them: `64513:100` (RFC 1997), the well-known names
//! (`no-export`, ...), `64513:0:42` (large, RFC 8092), and patterns with `*` for one part
//! (`64513:*`) where policy matches or removes communities.

use std::fmt;
use std::str::FromStr;

use crate::serde_str::serde_via_str;

/// An RFC 1997 community: 16-bit AS number and 16-bit value, held as the 32-bit wire value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u32);

/// An RFC 8092 large community: `global:local1:local2`, each 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    pub global: u32,
    pub local1: u32,
    pub local2: u32,
}

/// A community with `*` allowed for either half: `64513:*` matches every community of AS 64513.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommunityPattern {
    pub asn: Option<u16>,
    pub value: Option<u16>,
}

/// A large community with `*` allowed for any part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LargeCommunityPattern {
    pub parts: [Option<u32>; 3],
}

/// The well-known communities of RFC 1997, RFC 3765 and RFC 7999, by the names BIRD, FRR and
/// RouterOS users know.
pub const WELL_KNOWN: [(&str, u32); 5] = [
    ("no-export", 0xFFFF_FF01),
    ("no-advertise", 0xFFFF_FF02),
    ("no-export-subconfed", 0xFFFF_FF03),
    ("no-peer", 0xFFFF_FF04),
    ("blackhole", 0xFFFF_029A),
];

/// Why a string is not a community or community pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommunityError {
    #[error(
        "{input:?} is not a community; expected ASN:VALUE with two numbers from 0 to 65535 \
         (such as 64513:100) or one of no-export, no-advertise, no-export-subconfed, no-peer, blackhole"
    )]
    Community { input: String },
    #[error(
        "{input:?} is not a community pattern; expected ASN:VALUE with numbers from 0 to 65535 \
         or * for any (such as 64513:*)"
    )]
    CommunityPattern { input: String },
    #[error(
        "{input:?} is not a large community; expected GLOBAL:LOCAL1:LOCAL2 with three numbers \
         from 0 to 4294967295 (such as 64513:0:42)"
    )]
    Large { input: String },
    #[error(
        "{input:?} is not a large community pattern; expected GLOBAL:LOCAL1:LOCAL2 with numbers \
         from 0 to 4294967295 or * for any (such as 64513:*:42)"
    )]
    LargePattern { input: String },
}

/// Splits `s` at ':' into exactly `N` parts, each a number or (if `wildcard`) `*`.
fn parts<T: FromStr, const N: usize>(s: &str, wildcard: bool) -> Option<[Option<T>; N]> {
    let mut out: [Option<T>; N] = std::array::from_fn(|_| None);
    let mut split = s.split(':');
    for slot in &mut out {
        let part = split.next()?.trim();
        *slot = match part {
            "*" if wildcard => None,
            _ => Some(part.parse().ok()?),
        };
    }
    split.next().is_none().then_some(out)
}

impl Community {
    pub fn new(asn: u16, value: u16) -> Community {
        Community((u32::from(asn) << 16) | u32::from(value))
    }

    pub fn asn(self) -> u16 {
        (self.0 >> 16) as u16
    }

    pub fn value(self) -> u16 {
        self.0 as u16
    }
}

impl FromStr for Community {
    type Err = CommunityError;

    fn from_str(s: &str) -> Result<Self, CommunityError> {
        if let Some((_, v)) = WELL_KNOWN.iter().find(|(name, _)| *name == s.trim()) {
            return Ok(Community(*v));
        }
        match parts::<u16, 2>(s, false) {
            Some([Some(asn), Some(value)]) => Ok(Community::new(asn, value)),
            _ => Err(CommunityError::Community {
                input: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match WELL_KNOWN.iter().find(|(_, v)| *v == self.0) {
            Some((name, _)) => f.write_str(name),
            None => write!(f, "{}:{}", self.asn(), self.value()),
        }
    }
}

impl CommunityPattern {
    pub fn matches(&self, community: Community) -> bool {
        self.asn.is_none_or(|a| a == community.asn())
            && self.value.is_none_or(|v| v == community.value())
    }
}

impl FromStr for CommunityPattern {
    type Err = CommunityError;

    fn from_str(s: &str) -> Result<Self, CommunityError> {
        if let Ok(c) = s.parse::<Community>() {
            return Ok(CommunityPattern {
                asn: Some(c.asn()),
                value: Some(c.value()),
            });
        }
        match parts::<u16, 2>(s, true) {
            Some([asn, value]) => Ok(CommunityPattern { asn, value }),
            None => Err(CommunityError::CommunityPattern {
                input: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for CommunityPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Some(a), Some(v)) = (self.asn, self.value) {
            return Community::new(a, v).fmt(f);
        }
        let part = |p: Option<u16>| p.map_or("*".to_owned(), |n| n.to_string());
        write!(f, "{}:{}", part(self.asn), part(self.value))
    }
}

impl FromStr for LargeCommunity {
    type Err = CommunityError;

    fn from_str(s: &str) -> Result<Self, CommunityError> {
        match parts::<u32, 3>(s, false) {
            Some([Some(global), Some(local1), Some(local2)]) => Ok(LargeCommunity {
                global,
                local1,
                local2,
            }),
            _ => Err(CommunityError::Large {
                input: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.global, self.local1, self.local2)
    }
}

impl LargeCommunityPattern {
    pub fn matches(&self, c: &LargeCommunity) -> bool {
        let values = [c.global, c.local1, c.local2];
        self.parts
            .iter()
            .zip(values)
            .all(|(p, v)| p.is_none_or(|p| p == v))
    }
}

impl FromStr for LargeCommunityPattern {
    type Err = CommunityError;

    fn from_str(s: &str) -> Result<Self, CommunityError> {
        parts::<u32, 3>(s, true)
            .map(|parts| LargeCommunityPattern { parts })
            .ok_or_else(|| CommunityError::LargePattern {
                input: s.to_owned(),
            })
    }
}

impl fmt::Display for LargeCommunityPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = |p: Option<u32>| p.map_or("*".to_owned(), |n| n.to_string());
        let [a, b, c] = self.parts;
        write!(f, "{}:{}:{}", part(a), part(b), part(c))
    }
}

serde_via_str!(Community, "a community such as \"64513:100\"");
serde_via_str!(
    CommunityPattern,
    "a community or pattern such as \"64513:100\" or \"64513:*\""
);
serde_via_str!(LargeCommunity, "a large community such as \"64513:0:42\"");
serde_via_str!(
    LargeCommunityPattern,
    "a large community or pattern such as \"64513:0:42\" or \"64513:*:*\""
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn communities_parse_and_print() {
        let c: Community = "64513:100".parse().unwrap();
        assert_eq!(c, Community::new(64513, 100));
        assert_eq!(c.0, (64513 << 16) | 100);
        assert_eq!(c.to_string(), "64513:100");
        let ne: Community = "no-export".parse().unwrap();
        assert_eq!(ne.0, 0xFFFF_FF01);
        assert_eq!(ne.to_string(), "no-export");
        assert_eq!(Community(0xFFFF_029A).to_string(), "blackhole");
        for bad in [
            "", "64513", "64513:", "65536:1", "1:2:3", "a:b", "-1:5", "64513:*",
        ] {
            assert!(bad.parse::<Community>().is_err(), "{bad}");
        }
        assert_eq!(
            "65536:1".parse::<Community>().unwrap_err().to_string(),
            "\"65536:1\" is not a community; expected ASN:VALUE with two numbers from 0 to 65535 \
             (such as 64513:100) or one of no-export, no-advertise, no-export-subconfed, no-peer, blackhole"
        );
    }

    #[test]
    fn community_patterns() {
        let any_of_as: CommunityPattern = "64513:*".parse().unwrap();
        assert!(any_of_as.matches(Community::new(64513, 7)));
        assert!(!any_of_as.matches(Community::new(64514, 7)));
        assert_eq!(any_of_as.to_string(), "64513:*");
        let exact: CommunityPattern = "no-export".parse().unwrap();
        assert!(exact.matches(Community(0xFFFF_FF01)));
        assert_eq!(exact.to_string(), "no-export");
        let any: CommunityPattern = "*:*".parse().unwrap();
        assert!(any.matches(Community(12345)));
        assert!("64513:**".parse::<CommunityPattern>().is_err());
    }

    #[test]
    fn large_communities() {
        let l: LargeCommunity = "64513:0:42".parse().unwrap();
        assert_eq!((l.global, l.local1, l.local2), (64513, 0, 42));
        assert_eq!(l.to_string(), "64513:0:42");
        assert!("4294967296:0:0".parse::<LargeCommunity>().is_err());
        assert!("1:2".parse::<LargeCommunity>().is_err());
        let p: LargeCommunityPattern = "64513:*:42".parse().unwrap();
        assert!(p.matches(&l));
        assert!(!p.matches(&"64513:0:43".parse().unwrap()));
        assert_eq!(p.to_string(), "64513:*:42");
    }
}
