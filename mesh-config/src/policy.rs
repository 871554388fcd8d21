//! Import/export policy for external BGP neighbours, in the terms router users know: ordered
//! terms that match prefixes ("10.0.0.0/8 ge 16 le 24"), communities, large communities and AS
//! numbers in the path, then accept, reject or change the route (local-pref, MED, prepend,
//! communities) and go on. Policies are written inline in a `[[bgp.neighbor]]` or named under
//! `[bgp.policy.NAME]` and referred to by name, so two sessions can share one (the seeds' MikroTik
//! filter chains). Whatever no term decides is rejected (RFC 8212) unless a policy says
//! `default = "accept"`.

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::community::{Community, CommunityPattern, LargeCommunity, LargeCommunityPattern};
use crate::serde_str::serde_via_str;

/// What happens to a route when nothing else decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyAction {
    Accept,
    /// The default: a neighbour gets and gives nothing it was not allowed (RFC 8212).
    #[default]
    Reject,
}

/// What a term does with a route it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TermAction {
    /// Apply `set` and accept the route: no later term is looked at.
    Accept,
    /// Drop the route.
    Reject,
    /// Apply `set` and go on with the next term (the seeds' "jump"/passthrough).
    Next,
}

/// One policy: `term`s in order, then `prefixes` (a short form of one last term accepting
/// them), then `default`. Without a `default`, a route no term decided goes on to the next
/// policy the neighbour names, and after the last one it is rejected.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// `[[...term]]` in TOML.
    #[serde(default, rename = "term", skip_serializing_if = "Vec::is_empty")]
    pub terms: Vec<Term>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<PrefixFilter>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<PolicyAction>,
}

/// One step of a policy: if the route matches every condition in `match`, apply `set` and
/// take `action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Term {
    /// For people reading the config and the logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, rename = "match", skip_serializing_if = "Match::is_empty")]
    pub matches: Match,
    #[serde(default, skip_serializing_if = "Set::is_empty")]
    pub set: Set,
    pub action: TermAction,
}

/// Conditions of a term. Every key given must hold; a key holds when the route matches any
/// one of its values. A term without conditions matches every route.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<PrefixFilter>,
    /// The route carries one of these communities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<CommunityPattern>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub large_communities: Vec<LargeCommunityPattern>,
    /// One of these AS numbers appears anywhere in the AS path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub as_path_contains: Vec<u32>,
    /// The route was originated by one of these ASes (the last AS of the path).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origin_asn: Vec<u32>,
}

/// Changes a term makes to a route it matches. Communities are removed before they are added,
/// so `remove_communities = ["64513:*"]` and `add_communities = ["64513:1"]` replace them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Set {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub med: Option<u32>,
    /// Extra copies of an AS number put in front of the path: on export our own AS (on top of
    /// the one every eBGP speaker adds), on import the neighbour's AS. Either way the path
    /// looks longer and is less preferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepend: Option<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_communities: Vec<Community>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_communities: Vec<CommunityPattern>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_large_communities: Vec<LargeCommunity>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_large_communities: Vec<LargeCommunityPattern>,
}

/// A neighbour's `import` or `export`: a policy written in place, or the names of policies
/// under `[bgp.policy]` applied one after the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySpec {
    Inline(Policy),
    Named(Vec<String>),
}

impl Default for PolicySpec {
    /// Nothing passes (RFC 8212).
    fn default() -> Self {
        PolicySpec::Inline(Policy::default())
    }
}

impl Match {
    pub fn is_empty(&self) -> bool {
        self == &Match::default()
    }
}

impl Set {
    pub fn is_empty(&self) -> bool {
        self == &Set::default()
    }
}

impl Serialize for PolicySpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            PolicySpec::Inline(policy) => policy.serialize(serializer),
            PolicySpec::Named(names) if names.len() == 1 => names[0].serialize(serializer),
            PolicySpec::Named(names) => names.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for PolicySpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpecVisitor;
        impl<'de> serde::de::Visitor<'de> for SpecVisitor {
            type Value = PolicySpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a policy name, an array of policy names, or a table such as \
                     { prefixes = [\"10.0.0.0/8 le 24\"] }",
                )
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<PolicySpec, E> {
                Ok(PolicySpec::Named(vec![s.to_owned()]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<PolicySpec, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(PolicySpec::Named(names))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<PolicySpec, A::Error> {
                Policy::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(PolicySpec::Inline)
            }
        }
        deserializer.deserialize_any(SpecVisitor)
    }
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
