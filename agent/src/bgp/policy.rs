//! Import and export policy for external neighbours, in the terms the seeds use: prefix lists
//! with length ranges, set local-pref, AS-path prepend, match and set communities. The first
//! statement that matches decides; a route no statement matches gets the default, which is
//! reject unless configured otherwise (RFC 8212).
//!
//! `mesh_config::Policy` (the `[[bgp.neighbor]]` schema today) carries prefix lists and the
//! default only; [`Policy::from_config`] turns it into statements. The richer statements here
//! are what the schema should grow into.

use ipnet::IpNet;
use mesh_config::{PolicyAction, PrefixFilter};

use super::packet::{LargeCommunity, PathAttributes};

/// Conditions of a statement; an empty list matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Match {
    /// The prefix must pass one of these.
    pub prefixes: Vec<PrefixFilter>,
    /// The route must carry every one of these communities (RFC 1997).
    pub communities: Vec<u32>,
    /// The route must carry every one of these large communities (RFC 8092).
    pub large_communities: Vec<LargeCommunity>,
}

impl Match {
    fn matches(&self, prefix: &IpNet, attrs: &PathAttributes) -> bool {
        (self.prefixes.is_empty() || self.prefixes.iter().any(|f| f.matches(prefix)))
            && self
                .communities
                .iter()
                .all(|c| attrs.communities.contains(c))
            && self
                .large_communities
                .iter()
                .all(|c| attrs.large_communities.contains(c))
    }
}

/// Changes an accepting statement makes to the route.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Set {
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
    /// How many extra times to prepend our AS.
    pub prepend: u8,
    pub add_communities: Vec<u32>,
    pub remove_communities: Vec<u32>,
    pub add_large_communities: Vec<LargeCommunity>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub matches: Match,
    pub action: PolicyAction,
    pub set: Set,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub statements: Vec<Statement>,
    pub default: PolicyAction,
}

impl Policy {
    /// Rejects everything: RFC 8212's behaviour for an eBGP session without policy.
    pub fn reject_all() -> Policy {
        Policy::default()
    }

    pub fn accept_all() -> Policy {
        Policy {
            statements: Vec::new(),
            default: PolicyAction::Accept,
        }
    }

    /// A `[[bgp.neighbor]]` import or export block: each prefix filter accepts what it matches.
    pub fn from_config(config: &mesh_config::Policy) -> Policy {
        Policy {
            statements: config
                .prefixes
                .iter()
                .map(|f| Statement {
                    matches: Match {
                        prefixes: vec![*f],
                        ..Match::default()
                    },
                    action: PolicyAction::Accept,
                    set: Set::default(),
                })
                .collect(),
            default: config.default,
        }
    }

    /// Applies the policy to a route: `None` if rejected, else the attributes to use.
    /// `local_asn` is what prepending adds.
    pub fn apply(
        &self,
        prefix: &IpNet,
        attrs: &PathAttributes,
        local_asn: u32,
    ) -> Option<PathAttributes> {
        let Some(st) = self
            .statements
            .iter()
            .find(|s| s.matches.matches(prefix, attrs))
        else {
            return (self.default == PolicyAction::Accept).then(|| attrs.clone());
        };
        if st.action == PolicyAction::Reject {
            return None;
        }
        let mut out = attrs.clone();
        let set = &st.set;
        if let Some(lp) = set.local_pref {
            out.local_pref = Some(lp);
        }
        if let Some(med) = set.med {
            out.med = Some(med);
        }
        if set.prepend > 0 {
            out.as_path
                .get_or_insert_with(Default::default)
                .prepend(local_asn, usize::from(set.prepend));
        }
        out.communities
            .retain(|c| !set.remove_communities.contains(c));
        for c in &set.add_communities {
            if !out.communities.contains(c) {
                out.communities.push(*c);
            }
        }
        for c in &set.add_large_communities {
            if !out.large_communities.contains(c) {
                out.large_communities.push(*c);
            }
        }
        Some(out)
    }
}
