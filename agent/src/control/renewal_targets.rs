//! Which nodes a member asks for its certificate renewal, and in what order.
//!
//! The CA can move (`meshd ca backup FILE --move-to NAME`, `meshd ca restore FILE`), and the
//! members are not told: their `node.json` still names the old holder. So a member asks the
//! holder it knows first and, when that one is unreachable or answers that it holds no CA, the
//! other cores in turn (the CA holder is always a core). Asking a core that holds no CA costs
//! one TLS handshake and an answer; the request carries only a CSR. Whatever answers with a
//! certificate is the holder from then on (the shell records it in `node.json`), and the
//! certificate is checked against the mesh CA like any renewal.

use std::future::Future;

use pki::NodeRole;

use super::record::Member;

/// The nodes to ask, with their endpoints: `recorded` first, then every other core by name;
/// never this node (`own`), never a member without endpoints.
pub fn renewal_targets<'a>(
    recorded: &str,
    own: &str,
    members: impl Iterator<Item = &'a Member> + Clone,
) -> Vec<(String, Vec<String>)> {
    let usable = |m: &&Member| m.identity.name != own && !m.endpoints.is_empty();
    let first = members
        .clone()
        .filter(usable)
        .find(|m| m.identity.name == recorded);
    let others = members
        .filter(usable)
        .filter(|m| m.identity.name != recorded && m.identity.role == NodeRole::Core);
    first
        .into_iter()
        .chain(others)
        .map(|m| (m.identity.name.clone(), m.endpoints.clone()))
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
            names(&renewal_targets("gamma", "home", members.iter())),
            ["gamma", "alpha", "beta"]
        );
        // A retired holder names another node; it never asks itself.
        assert_eq!(
            names(&renewal_targets("alpha", "alpha", members.iter())),
            ["beta", "gamma"]
        );
        // A holder that left the membership: the cores.
        assert_eq!(
            names(&renewal_targets("gone", "home", members.iter())),
            ["alpha", "beta", "gamma"]
        );
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
