//! Import and export policy evaluation, pure. A policy is the `[[bgp.neighbor]]`'s import or
//! export from meshd.toml (`mesh_config::Term`s: match prefixes with length ranges, communities,
//! large communities, AS numbers; set local-pref, MED, prepend, communities; accept, reject or
//! go on) flattened into one ordered list. The first term that accepts or rejects decides; a
//! route no term decides gets the default, which is reject (RFC 8212) for every policy built
//! from the config.

use std::borrow::Cow;

use ipnet::IpNet;
use mesh_config::{BgpSection, Match, PolicyAction, PolicySpec, Set, Term, TermAction};

use super::packet::{LargeCommunity, PathAttributes};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub terms: Vec<Term>,
    pub default: PolicyAction,
}

impl Policy {
    /// Rejects everything: RFC 8212's behaviour for an eBGP session without policy.
    pub fn reject_all() -> Policy {
        Policy::default()
    }

    pub fn accept_all() -> Policy {
        Policy {
            terms: Vec::new(),
            default: PolicyAction::Accept,
        }
    }

    /// Accepts routes for these prefixes and rejects the rest: the simplest prefix list.
    pub fn accept_prefixes(prefixes: Vec<mesh_config::PrefixFilter>) -> Policy {
        let policy = mesh_config::Policy {
            prefixes,
            ..mesh_config::Policy::default()
        };
        Policy::from_config(&PolicySpec::Inline(policy), &BgpSection::default())
    }

    /// A neighbour's `import` or `export` from meshd.toml. The policies it names apply one
    /// after the other: each one's terms, then its `prefixes` (accepted), then its `default`
    /// if it has one; what is left after the last is rejected.
    pub fn from_config(spec: &PolicySpec, bgp: &BgpSection) -> Policy {
        let mut terms = Vec::new();
        for policy in bgp.resolve(spec) {
            terms.extend(policy.terms.iter().cloned());
            if !policy.prefixes.is_empty() {
                terms.push(Term {
                    name: None,
                    matches: Match {
                        prefixes: policy.prefixes.clone(),
                        ..Match::default()
                    },
                    set: Set::default(),
                    action: TermAction::Accept,
                });
            }
            if let Some(default) = policy.default {
                return Policy { terms, default };
            }
        }
        Policy {
            terms,
            default: PolicyAction::Reject,
        }
    }

    /// Applies the policy to a route: `None` if rejected, else its attributes, borrowed when
    /// no term changed them (so routes of one UPDATE keep sharing one attribute set).
    /// `prepend_asn` is what `prepend` repeats: our AS on export, the neighbour's on import.
    pub fn apply<'a>(
        &self,
        prefix: &IpNet,
        attrs: &'a PathAttributes,
        prepend_asn: u32,
    ) -> Option<Cow<'a, PathAttributes>> {
        self.evaluate(prefix, attrs, prepend_asn).ok()
    }

    /// [`Policy::apply`], saying what rejected the route: the logs and counts of refused
    /// routes name it.
    pub fn evaluate<'a>(
        &self,
        prefix: &IpNet,
        attrs: &'a PathAttributes,
        prepend_asn: u32,
    ) -> Result<Cow<'a, PathAttributes>, Rejection> {
        let mut route = Cow::Borrowed(attrs);
        for (index, term) in self.terms.iter().enumerate() {
            if !matches(&term.matches, prefix, &route) {
                continue;
            }
            if term.action == TermAction::Reject {
                return Err(Rejection::Term(index));
            }
            if !term.set.is_empty() {
                apply_set(&term.set, route.to_mut(), prepend_asn);
            }
            if term.action == TermAction::Accept {
                return Ok(route);
            }
        }
        match self.default {
            PolicyAction::Accept => Ok(route),
            PolicyAction::Reject => Err(Rejection::Default),
        }
    }

    /// What rejected a route, for people: the term by its name (or its place, 1 first, when
    /// it has none), or the default.
    pub fn describe(&self, rejection: Rejection) -> String {
        match rejection {
            Rejection::Term(index) => match self.terms.get(index).and_then(|t| t.name.as_ref()) {
                Some(name) => format!("policy term {name:?}"),
                None => format!("policy term {} (unnamed)", index + 1),
            },
            Rejection::Default => "policy default (no term accepted it: reject)".to_owned(),
        }
    }
}

/// What in a [`Policy`] rejected a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The term at this index of [`Policy::terms`] (a `reject` term).
    Term(usize),
    /// No term decided and the default is reject.
    Default,
}

fn to_config_large(c: &LargeCommunity) -> mesh_config::LargeCommunity {
    mesh_config::LargeCommunity {
        global: c.global,
        local1: c.local1,
        local2: c.local2,
    }
}

/// Every condition given holds; each holds when one of its values does.
fn matches(m: &Match, prefix: &IpNet, attrs: &PathAttributes) -> bool {
    let as_path = attrs.as_path.as_ref();
    (m.prefixes.is_empty() || m.prefixes.iter().any(|f| f.matches(prefix)))
        && (m.communities.is_empty()
            || attrs.communities.iter().any(|c| {
                m.communities
                    .iter()
                    .any(|p| p.matches(mesh_config::Community(*c)))
            }))
        && (m.large_communities.is_empty()
            || attrs.large_communities.iter().any(|c| {
                let c = to_config_large(c);
                m.large_communities.iter().any(|p| p.matches(&c))
            }))
        && (m.as_path_contains.is_empty()
            || m.as_path_contains
                .iter()
                .any(|a| as_path.is_some_and(|p| p.contains(*a))))
        && (m.origin_asn.is_empty()
            || as_path
                .and_then(|p| p.origin_as())
                .is_some_and(|o| m.origin_asn.contains(&o)))
}

fn apply_set(set: &Set, attrs: &mut PathAttributes, prepend_asn: u32) {
    if let Some(lp) = set.local_pref {
        attrs.local_pref = Some(lp);
    }
    if let Some(med) = set.med {
        attrs.med = Some(med);
    }
    if let Some(times) = set.prepend {
        attrs
            .as_path
            .get_or_insert_with(Default::default)
            .prepend(prepend_asn, usize::from(times));
    }
    attrs.communities.retain(|c| {
        !set.remove_communities
            .iter()
            .any(|p| p.matches(mesh_config::Community(*c)))
    });
    for c in &set.add_communities {
        if !attrs.communities.contains(&c.0) {
            attrs.communities.push(c.0);
        }
    }
    attrs.large_communities.retain(|c| {
        let c = to_config_large(c);
        !set.remove_large_communities.iter().any(|p| p.matches(&c))
    });
    for c in &set.add_large_communities {
        let c = LargeCommunity {
            global: c.global,
            local1: c.local1,
            local2: c.local2,
        };
        if !attrs.large_communities.contains(&c) {
            attrs.large_communities.push(c);
        }
    }
}
