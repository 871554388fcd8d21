//! Import/export policy for external BGP neighbours: a list of prefix filters in the
//! notation router users know ("10.0.0.0/8 ge 16 le 24") and a default action.

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::serde_str::serde_via_str;

/// What happens to a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyAction {
    Accept,
    /// The default: a neighbour gets and gives nothing it was not allowed (RFC 8212).
    #[default]
    Reject,
}

/// Routes matching any of `prefixes` are accepted; all others get `default`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub prefixes: Vec<PrefixFilter>,
    #[serde(default)]
    pub default: PolicyAction,
}

/// A prefix and the range of prefix lengths it matches: `P` alone matches exactly `P`;
/// `P le L` matches `P` and its subnets up to length `L`; `P ge G` matches subnets of
/// length `G` up to the address width; `P ge G le L` both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PrefixFilter {
    pub prefix: IpNet,
    pub ge: Option<u8>,
    pub le: Option<u8>,
}

/// Why a string is not a prefix filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("{input:?}: {prefix:?} is not a prefix like 10.0.0.0/8")]
    BadPrefix { input: String, prefix: String },
    #[error("{input:?}: {prefix} has host bits set (did you mean {network}?)")]
    HostBits {
        input: String,
        prefix: IpNet,
        network: IpNet,
    },
    #[error("{input:?}: expected \"PREFIX [ge N] [le N]\", found {found:?}")]
    Syntax { input: String, found: String },
    #[error(
        "{input:?}: {word} {value} must be between {min} and {max} (the prefix length and the address width)"
    )]
    LengthRange {
        input: String,
        word: &'static str,
        value: u8,
        min: u8,
        max: u8,
    },
    #[error("{input:?}: ge {ge} is greater than le {le}, so nothing can match")]
    Empty { input: String, ge: u8, le: u8 },
}

impl PrefixFilter {
    /// Shortest prefix length this filter accepts.
    pub fn min_len(&self) -> u8 {
        self.ge.unwrap_or(self.prefix.prefix_len())
    }

    /// Longest prefix length this filter accepts.
    pub fn max_len(&self) -> u8 {
        match (self.ge, self.le) {
            (_, Some(le)) => le,
            (Some(_), None) => self.prefix.max_prefix_len(),
            (None, None) => self.prefix.prefix_len(),
        }
    }

    /// Whether a route for `route` passes this filter.
    pub fn matches(&self, route: &IpNet) -> bool {
        let len = route.prefix_len();
        self.prefix.contains(route) && (self.min_len()..=self.max_len()).contains(&len)
    }
}

impl FromStr for PrefixFilter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, FilterError> {
        let input = || s.to_owned();
        let mut words = s.split_whitespace();
        let first = words.next().unwrap_or("");
        let prefix: IpNet = first.parse().map_err(|_| FilterError::BadPrefix {
            input: input(),
            prefix: first.to_owned(),
        })?;
        if prefix.trunc() != prefix {
            return Err(FilterError::HostBits {
                input: input(),
                prefix,
                network: prefix.trunc(),
            });
        }
        let (mut ge, mut le) = (None, None);
        let rest: Vec<&str> = words.collect();
        let mut i = 0;
        while i < rest.len() {
            let syntax = || FilterError::Syntax {
                input: input(),
                found: rest[i..].join(" "),
            };
            let slot = match rest[i] {
                "ge" if ge.is_none() && le.is_none() => &mut ge,
                "le" if le.is_none() => &mut le,
                _ => return Err(syntax()),
            };
            let word = if rest[i] == "ge" { "ge" } else { "le" };
            let value: u8 = rest
                .get(i + 1)
                .and_then(|v| v.parse().ok())
                .ok_or_else(syntax)?;
            let (min, max) = (prefix.prefix_len(), prefix.max_prefix_len());
            if !(min..=max).contains(&value) {
                return Err(FilterError::LengthRange {
                    input: input(),
                    word,
                    value,
                    min,
                    max,
                });
            }
            *slot = Some(value);
            i += 2;
        }
        if let (Some(ge), Some(le)) = (ge, le)
            && ge > le
        {
            return Err(FilterError::Empty {
                input: input(),
                ge,
                le,
            });
        }
        Ok(PrefixFilter { prefix, ge, le })
    }
}

impl fmt::Display for PrefixFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.prefix)?;
        if let Some(ge) = self.ge {
            write!(f, " ge {ge}")?;
        }
        if let Some(le) = self.le {
            write!(f, " le {le}")?;
        }
        Ok(())
    }
}

serde_via_str!(PrefixFilter, "a prefix filter such as \"10.0.0.0/8 le 24\"");

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(s: &str) -> PrefixFilter {
        s.parse().unwrap()
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints() {
        for s in [
            "10.0.0.0/8",
            "10.0.0.0/8 le 24",
            "10.0.0.0/8 ge 16",
            "10.0.0.0/8 ge 16 le 24",
            "2001:db8::/32 le 48",
        ] {
            assert_eq!(filter(s).to_string(), s);
        }
        assert_eq!(
            filter("  10.0.0.0/8   le 24 ").to_string(),
            "10.0.0.0/8 le 24"
        );
    }

    #[test]
    fn matching() {
        let exact = filter("10.0.0.0/8");
        assert!(exact.matches(&net("10.0.0.0/8")));
        assert!(!exact.matches(&net("10.1.0.0/16")));
        let le = filter("10.0.0.0/8 le 24");
        assert!(le.matches(&net("10.0.0.0/8")));
        assert!(le.matches(&net("10.1.2.0/24")));
        assert!(!le.matches(&net("10.1.2.0/25")));
        assert!(!le.matches(&net("11.0.0.0/24")));
        let ge = filter("10.0.0.0/8 ge 16");
        assert!(!ge.matches(&net("10.0.0.0/8")));
        assert!(ge.matches(&net("10.1.2.3/32")));
        let both = filter("10.0.0.0/8 ge 16 le 24");
        assert!(both.matches(&net("10.1.0.0/16")) && both.matches(&net("10.1.1.0/24")));
        assert!(!both.matches(&net("10.1.1.0/25")));
        assert!(!filter("2001:db8::/32 le 48").matches(&net("10.0.0.0/8")));
    }

    #[test]
    fn rejects_bad_filters() {
        use FilterError::*;
        let err = |s: &str| s.parse::<PrefixFilter>().unwrap_err();
        assert!(matches!(err(""), BadPrefix { .. }));
        assert!(matches!(err("10.0.0.0"), BadPrefix { .. }));
        assert_eq!(
            err("10.0.0.1/8 le 24").to_string(),
            "\"10.0.0.1/8 le 24\": 10.0.0.1/8 has host bits set (did you mean 10.0.0.0/8?)"
        );
        assert!(matches!(err("10.0.0.0/8 lt 24"), Syntax { .. }));
        assert!(matches!(err("10.0.0.0/8 le"), Syntax { .. }));
        assert!(matches!(err("10.0.0.0/8 le x"), Syntax { .. }));
        assert!(matches!(err("10.0.0.0/8 le 24 ge 16"), Syntax { .. }));
        assert!(matches!(err("10.0.0.0/8 le 24 le 25"), Syntax { .. }));
        assert!(matches!(
            err("10.0.0.0/8 le 33"),
            LengthRange { value: 33, .. }
        ));
        assert!(matches!(
            err("10.0.0.0/16 ge 8"),
            LengthRange { value: 8, .. }
        ));
        assert!(matches!(
            err("10.0.0.0/8 ge 24 le 16"),
            Empty { ge: 24, le: 16, .. }
        ));
    }
}
