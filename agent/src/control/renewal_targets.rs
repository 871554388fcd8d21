//! Which nodes a member asks for its certificate renewal, and in what order.
//!
//! The CA can move (`meshd ca backup FILE --move-to NAME`, `meshd ca restore FILE`), and the
//! members are not told: their `node.json` still names the old holder. So a member asks the
//! holder it knows first and, when that one is unreachable or answers that it holds no CA, the
//! other cores in turn (the CA holder is always a core). Asking a core that holds no CA costs
//! one TLS handshake and an answer; the request carries only a CSR. Whatever answers with a
//! certificate is the holder from then on (the shell records it in `node.json`), and the
//! certificate is checked against the mesh CA like any renewal.
//!
//! A node whose certificate expired while it was off has, at start, no verified member
//! but itself (the records it stored hold certificates that have expired since, theirs as
//! well as its own); it asks the nodes of those records too ([`LastKnown`]): where a node was
//! reachable is only a dialing hint, the TLS handshake checks who answers.

use std::future::Future;

use pki::{NodeCertificate, NodeRole};

use super::record::{Member, SignedRecord};

/// Where the nodes of the stored membership records were, whatever their certificates'
/// validity now: renewal targets for a node whose membership ran out while it was off.
#[derive(Debug, Clone, Default)]
pub struct LastKnown {
    nodes: Vec<(String, NodeRole, Vec<String>)>,
    /// The records themselves, kept in the stored membership until the node renewed, so a
    /// restart before that still knows them.
    records: Vec<SignedRecord>,
}

impl LastKnown {
    /// The nodes of `stored` whose certificates parse, and that `current` (the verified
    /// members) lacks.
    pub fn new<'a>(
        stored: &[SignedRecord],
        current: impl Iterator<Item = &'a Member> + Clone,
    ) -> Self {
        let mut last = Self::default();
        for record in stored {
            let Ok(cert) = NodeCertificate::parse(&record.certificate) else {
                continue;
            };
            let name = cert.identity.name;
            if current.clone().any(|m| m.identity.name == name) {
                continue;
            }
            last.nodes
                .push((name, cert.identity.role, record.endpoints.clone()));
            last.records.push(record.clone());
        }
        last
    }

    /// The stored records of nodes no longer verified, to store again with the membership
    /// (until this node renewed), for the names `verified` does not know.
    pub fn records(&self, verified: impl Fn(&str) -> bool) -> Vec<SignedRecord> {
        self.nodes
            .iter()
            .zip(&self.records)
            .filter(|((name, _, _), _)| !verified(name))
            .map(|(_, record)| record.clone())
            .collect()
    }

    /// The cores with endpoints, to dial as members once this node renewed: the mesh
    /// forgot an expired node, so it must be the one to come back.
    pub fn cores(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.nodes
            .iter()
            .filter(|(_, role, endpoints)| *role == NodeRole::Core && !endpoints.is_empty())
            .map(|(name, _, endpoints)| (name.as_str(), endpoints.as_slice()))
    }

    /// This node renewed: the stale records are not stored again (the nodes stay dialing
    /// hints until the membership knows them).
    pub fn renewed(&mut self) {
        self.records.clear();
    }
}

/// The nodes to ask, with their endpoints: `recorded` first, then every other core by name;
/// never this node (`own`), never a member without endpoints.
/// Then the [`LastKnown`] nodes in the same order, after every verified one.
pub fn renewal_targets<'a>(
    recorded: &str,
    own: &str,
    members: impl Iterator<Item = &'a Member> + Clone,
    last_known: &LastKnown,
) -> Vec<(String, Vec<String>)> {
    let verified = members.map(|m| (m.identity.name.as_str(), m.identity.role, &m.endpoints));
    let last = last_known
        .nodes
        .iter()
        .map(|(name, role, endpoints)| (name.as_str(), *role, endpoints));
    let mut targets = in_order(recorded, own, verified);
    let fallback: Vec<_> = in_order(recorded, own, last)
        .into_iter()
        .filter(|(name, _)| !targets.iter().any(|(known, _)| known == name))
        .collect();
    targets.extend(fallback);
    targets
}

/// `recorded` first, then the other cores; never `own`, never one without endpoints.
fn in_order<'a>(
    recorded: &str,
    own: &str,
    nodes: impl Iterator<Item = (&'a str, NodeRole, &'a Vec<String>)> + Clone,
) -> Vec<(String, Vec<String>)> {
    let usable = |n: &(&str, NodeRole, &Vec<String>)| n.0 != own && !n.2.is_empty();
    let first = nodes.clone().filter(usable).find(|n| n.0 == recorded);
    let others = nodes
        .filter(usable)
        .filter(|n| n.0 != recorded && n.1 == NodeRole::Core);
    first
        .into_iter()
        .chain(others)
        .map(|(name, _, endpoints)| (name.to_owned(), endpoints.clone()))
        .collect()
}

/// Asks each target in turn with `ask` until one answers with a certificate: `Ok((pem,
/// holder))`. Else the recorded holder's answer (or the first one), and how many others
/// were asked.
pub async fn renew_at_first<F, Fut>(
    recorded: &str,
    targets: &[(String, Vec<String>)],
    mut ask: F,
) -> Result<(String, String), String>
where
    F: FnMut(String, Vec<String>) -> Fut,
    Fut: Future<Output = Result<String, String>>,
{
    if targets.is_empty() {
        return Err(format!(
            "no endpoint of the CA holder {recorded} or of another core is known yet"
        ));
    }
    let mut first_error = None;
    for (name, endpoints) in targets {
        match ask(name.clone(), endpoints.clone()).await {
            Ok(pem) => return Ok((pem, name.clone())),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    let error = first_error.expect("at least one target");
    Err(match targets.len() {
        1 => error,
        n => format!(
            "{error}; none of the {} other core(s) asked issued one either",
            n - 1
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::record::SignedRecord;
    use pki::{NodeIdentity, SerialNumber};

    fn member(name: &str, role: NodeRole, endpoints: &[&str]) -> Member {
        Member {
            identity: NodeIdentity {
                name: name.into(),
                role,
                core: None,
                prefixes: vec![],
                lan_prefixes: vec![],
                wireguard_key: [1; 32],
                approvals: Default::default(),
                foreign: false,
            },
            serial: SerialNumber::from_bytes(&[1]),
            not_after: time::OffsetDateTime::UNIX_EPOCH,
            endpoints: endpoints.iter().map(|e| (*e).to_owned()).collect(),
            version: 1,
            record: SignedRecord {
                certificate: vec![],
                endpoints: vec![],
                version: 1,
                signature: vec![],
                extensions: Default::default(),
            },
        }
    }

    fn names(targets: &[(String, Vec<String>)]) -> Vec<&str> {
        targets.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn the_recorded_holder_comes_first_then_the_other_cores() {
        let members = [
            member("alpha", NodeRole::Core, &["192.0.2.1:51820"]),
            member("beta", NodeRole::Core, &["192.0.2.2:51820"]),
            member("gamma", NodeRole::Core, &["192.0.2.3:51820"]),
            member("home", NodeRole::Spoke, &["192.0.2.4:51820"]),
            member("quiet", NodeRole::Core, &[]),
        ];
        assert_eq!(
            names(&renewal_targets(
                "gamma",
                "home",
                members.iter(),
                &LastKnown::default()
            )),
            ["gamma", "alpha", "beta"]
        );
        // A retired holder names another node; it never asks itself.
        assert_eq!(
            names(&renewal_targets(
                "alpha",
                "alpha",
                members.iter(),
                &LastKnown::default()
            )),
            ["beta", "gamma"]
        );
        // A holder that left the membership: the cores.
        assert_eq!(
            names(&renewal_targets(
                "gone",
                "home",
                members.iter(),
                &LastKnown::default()
            )),
            ["alpha", "beta", "gamma"]
        );
    }

    #[test]
    fn the_last_known_nodes_come_after_the_verified_ones_in_the_same_order() {
        let members = [
            member("home", NodeRole::Spoke, &["192.0.2.4:51820"]),
            member("beta", NodeRole::Core, &["192.0.2.2:51820"]),
        ];
        let endpoints = |e: &str| vec![e.to_owned()];
        let last_known = LastKnown {
            nodes: vec![
                (
                    "beta".into(),
                    NodeRole::Core,
                    endpoints("198.51.100.2:51820"),
                ),
                ("gamma".into(), NodeRole::Core, endpoints("192.0.2.3:51820")),
                ("alpha".into(), NodeRole::Core, endpoints("192.0.2.1:51820")),
                (
                    "other".into(),
                    NodeRole::Spoke,
                    endpoints("192.0.2.5:51820"),
                ),
            ],
            records: vec![],
        };
        let targets = renewal_targets("alpha", "home", members.iter(), &last_known);
        assert_eq!(names(&targets), ["beta", "alpha", "gamma"]);
        // The verified record's endpoints, not the stale ones.
        assert_eq!(targets[0].1, ["192.0.2.2:51820"]);
    }

    #[tokio::test]
    async fn the_first_core_that_issues_is_the_holder_and_failures_say_the_recorded_one() {
        let targets: Vec<(String, Vec<String>)> = ["alpha", "beta", "gamma"]
            .iter()
            .map(|n| ((*n).to_owned(), vec![format!("{n}:51820")]))
            .collect();
        let mut asked = Vec::new();
        let result = renew_at_first("alpha", &targets, |name, _| {
            asked.push(name.clone());
            async move {
                if name == "beta" {
                    Ok("PEM".to_owned())
                } else {
                    Err(format!(
                        "the CA holder {name} refused: this node does not hold the mesh CA"
                    ))
                }
            }
        })
        .await;
        assert_eq!(result, Ok(("PEM".to_owned(), "beta".to_owned())));
        assert_eq!(asked, ["alpha", "beta"]);

        let err = renew_at_first("alpha", &targets, |name, _| async move {
            Err::<String, _>(format!("cannot reach {name}"))
        })
        .await
        .unwrap_err();
        assert_eq!(
            err,
            "cannot reach alpha; none of the 2 other core(s) asked issued one either"
        );
        let err = renew_at_first("alpha", &[], |_, _| async { Ok(String::new()) })
            .await
            .unwrap_err();
        assert!(err.contains("no endpoint of the CA holder alpha"), "{err}");
    }
}
