//! The exit's nftables table as libnftables-json commands, in the `nftables` crate's typed
//! schema. Pure: it builds what `nft -j -f -` is given ([`crate::netlink::nft`] runs it);
//! nothing here talks to the kernel.

use std::borrow::Cow;

use nftables::expr::{Expression, Meta, MetaKey, NamedExpression};
use nftables::schema::{Chain, NfCmd, NfListObject, Nftables, Rule};
use nftables::stmt::{Match, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::{ExitNatError, Families, NAT, NAT_CHAIN, NAT_TABLE};
use crate::netlink::nft::command;

/// `NF_IP_PRI_NAT_SRC`, the priority `nft` calls `srcnat`.
const SRCNAT_PRIORITY: i32 = 100;
/// Interface names are at most 15 bytes (`IFNAMSIZ` less the terminating NUL).
const MAX_INTERFACE_NAME: usize = 15;

/// `meta KEY == VALUE`.
fn meta_is(key: MetaKey, value: &str) -> Statement<'static> {
    Statement::Match(Match {
        left: Expression::Named(NamedExpression::Meta(Meta { key })),
        right: Expression::String(Cow::Owned(value.to_owned())),
        op: Operator::EQ,
    })
}

/// Names that nft matches literally: a string starting with `@` is a set reference, a `*`
/// makes a wildcard (`eth*` matches every `eth` name) and `\` escapes.
fn check_interface_name(name: &str) -> Result<(), ExitNatError> {
    let literal = !name.starts_with('@') && !name.contains(['*', '\\', '\0']);
    if name.is_empty() || name.len() > MAX_INTERFACE_NAME || !literal {
        return Err(ExitNatError::InterfaceName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// One transaction that deletes any stale `inet meshd` table and creates the table, its nat
/// chain on postrouting and one `iifname TUN oifname UPLINK [meta nfproto F] masquerade` rule
/// per uplink. nft sends a whole file as one netlink batch, so the kernel applies all of it
/// or none: there is no moment without NAT when a stale table is replaced.
pub(super) fn install_batch(
    tun: &str,
    uplinks: &[String],
    families: Families,
) -> Result<Nftables<'static>, ExitNatError> {
    if uplinks.is_empty() {
        return Err(ExitNatError::NoUplinks);
    }
    let family_match = match (families.ipv4, families.ipv6) {
        (true, true) => None,
        (true, false) => Some("ipv4"),
        (false, true) => Some("ipv6"),
        (false, false) => return Err(ExitNatError::NoFamily),
    };
    check_interface_name(tun)?;
    for uplink in uplinks {
        check_interface_name(uplink)?;
    }

    let mut objects = NAT.replacing();
    objects.push(command(NfCmd::Add(NfListObject::Chain(Chain {
        family: NfFamily::INet,
        table: NAT_TABLE.into(),
        name: NAT_CHAIN.into(),
        _type: Some(NfChainType::NAT),
        hook: Some(NfHook::Postrouting),
        prio: Some(SRCNAT_PRIORITY),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }))));
    for uplink in uplinks {
        let mut expr = vec![
            meta_is(MetaKey::Iifname, tun),
            meta_is(MetaKey::Oifname, uplink),
        ];
        if let Some(family) = family_match {
            expr.push(meta_is(MetaKey::Nfproto, family));
        }
        expr.push(Statement::Masquerade(None));
        objects.push(command(NfCmd::Add(NfListObject::Rule(Rule {
            family: NfFamily::INet,
            table: NAT_TABLE.into(),
            chain: NAT_CHAIN.into(),
            expr: Cow::Owned(expr),
            ..Rule::default()
        }))));
    }
    Ok(Nftables {
        objects: Cow::Owned(objects),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn batch_json(tun: &str, uplinks: &[&str], families: Families) -> Value {
        serde_json::to_value(install_batch(tun, &names(uplinks), families).unwrap()).unwrap()
    }

    fn rule(expr: Value) -> Value {
        json!({"add": {"rule": {
            "family": "inet", "table": "meshd", "chain": "postrouting", "expr": expr,
        }}})
    }

    fn meta_is(key: &str, value: &str) -> Value {
        json!({"match": {"op": "==", "left": {"meta": {"key": key}}, "right": value}})
    }

    #[test]
    fn the_batch_replaces_the_table_and_masquerades_each_uplink() {
        let table = json!({"table": {"family": "inet", "name": "meshd"}});
        let expected = json!({"nftables": [
            {"add": table},
            {"delete": table},
            {"add": table},
            {"add": {"chain": {
                "family": "inet", "table": "meshd", "name": "postrouting",
                "type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept",
            }}},
            rule(json!([
                meta_is("iifname", "mesh0"),
                meta_is("oifname", "eth0"),
                {"masquerade": null},
            ])),
            rule(json!([
                meta_is("iifname", "mesh0"),
                meta_is("oifname", "wwan0"),
                {"masquerade": null},
            ])),
        ]});
        assert_eq!(
            batch_json("mesh0", &["eth0", "wwan0"], Families::BOTH),
            expected
        );
    }

    #[test]
    fn one_family_only_adds_a_protocol_match() {
        for (families, nfproto) in [
            (
                Families {
                    ipv4: true,
                    ipv6: false,
                },
                "ipv4",
            ),
            (
                Families {
                    ipv4: false,
                    ipv6: true,
                },
                "ipv6",
            ),
        ] {
            let batch = batch_json("mesh0", &["eth0"], families);
            assert_eq!(
                batch["nftables"][4],
                rule(json!([
                    meta_is("iifname", "mesh0"),
                    meta_is("oifname", "eth0"),
                    meta_is("nfproto", nfproto),
                    {"masquerade": null},
                ]))
            );
        }
    }

    #[test]
    fn a_nat_needs_an_uplink_a_family_and_literal_names() {
        assert!(matches!(
            install_batch("mesh0", &[], Families::BOTH),
            Err(ExitNatError::NoUplinks)
        ));
        let none = Families {
            ipv4: false,
            ipv6: false,
        };
        assert!(matches!(
            install_batch("mesh0", &names(&["eth0"]), none),
            Err(ExitNatError::NoFamily)
        ));
        for bad in ["", "sixteen-bytes-xx", "a\0b", "eth*", "@uplinks", "a\\b"] {
            assert!(matches!(
                install_batch("mesh0", &names(&[bad]), Families::BOTH),
                Err(ExitNatError::InterfaceName { .. })
            ));
            assert!(matches!(
                install_batch(bad, &names(&["eth0"]), Families::BOTH),
                Err(ExitNatError::InterfaceName { .. })
            ));
        }
        assert!(
            install_batch("mesh0", &names(&["eth0", "a@b", "x.y-z_1"]), Families::BOTH).is_ok()
        );
    }
}
