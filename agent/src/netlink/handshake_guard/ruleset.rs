//! The guard's nftables table as libnftables-json commands, in the `nftables` crate's typed
//! schema. Pure: nothing here talks to the kernel.

use std::borrow::Cow;
use std::collections::HashSet;

use nftables::expr::{
    BinaryOperation, Elem, Expression, Fib, FibFlag, FibResult, NamedExpression, Payload,
    PayloadBase, PayloadField, PayloadRaw,
};
use nftables::schema::{Chain, Counter, NfCmd, NfListObject, Nftables, Rule};
use nftables::stmt::{self, Limit, Match, Meter, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::{BURST, DROPPED_COUNTER, GUARD, GUARD_CHAIN, GUARD_TABLE, PER_SECOND, TIMEOUT_SECONDS};
use crate::netlink::nft::command;

/// `NF_IP_PRI_RAW`, the priority nft calls `raw`: before conntrack.
const RAW_PRIORITY: i32 = -300;
/// A handshake initiation's UDP length: the 8-byte header and its 148-byte message.
const INITIATION_UDP_LENGTH: u32 = 8 + 148;
/// Its first payload word, `01 00 00 00` (message type 1, three reserved zero bytes), read as
/// a big-endian number.
const INITIATION_FIRST_WORD: u32 = 0x0100_0000;
/// The meters, one per family.
const METER4: &str = "initiations4";
const METER6: &str = "initiations6";

fn field(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

fn equals(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

/// One rule: the initiation matches, then a meter keyed on `source` that drops over-limit
/// initiations and counts them.
fn rule(port: u16, meter: &'static str, source: Expression<'static>) -> Rule<'static> {
    let first_word = Expression::Named(NamedExpression::Payload(Payload::PayloadRaw(PayloadRaw {
        base: PayloadBase::TH,
        offset: 64,
        len: 32,
    })));
    let local = Expression::Named(NamedExpression::Fib(Fib {
        result: FibResult::Type,
        flags: HashSet::from([FibFlag::Daddr]),
    }));
    let over_limit = Statement::Limit(Limit {
        rate: PER_SECOND,
        rate_unit: None,
        per: Some("second".into()),
        burst: Some(BURST),
        burst_unit: None,
        inv: Some(true),
    });
    let expr = vec![
        equals(field("udp", "dport"), Expression::Number(u32::from(port))),
        equals(
            field("udp", "length"),
            Expression::Number(INITIATION_UDP_LENGTH),
        ),
        equals(first_word, Expression::Number(INITIATION_FIRST_WORD)),
        equals(local, Expression::String("local".into())),
        Statement::Meter(Meter {
            name: meter.into(),
            key: Expression::Named(NamedExpression::Elem(Elem {
                val: Box::new(source),
                timeout: Some(TIMEOUT_SECONDS),
                expires: None,
                comment: None,
                counter: None,
            })),
            stmt: Box::new(over_limit),
        }),
        Statement::Counter(stmt::Counter::Named(DROPPED_COUNTER.into())),
        Statement::Drop(None),
    ];
    Rule {
        family: NfFamily::INet,
        table: GUARD_TABLE.into(),
        chain: GUARD_CHAIN.into(),
        expr: Cow::Owned(expr),
        ..Rule::default()
    }
}

/// One transaction that replaces any stale guard table with the table, its counter, its
/// chain on prerouting and one rule per family for UDP `port`.
pub(super) fn install_batch(port: u16) -> Nftables<'static> {
    let mut objects = GUARD.replacing();
    objects.push(command(NfCmd::Add(NfListObject::Counter(Counter {
        family: NfFamily::INet,
        table: GUARD_TABLE.into(),
        name: DROPPED_COUNTER.into(),
        handle: None,
        packets: None,
        bytes: None,
    }))));
    objects.push(command(NfCmd::Add(NfListObject::Chain(Chain {
        family: NfFamily::INet,
        table: GUARD_TABLE.into(),
        name: GUARD_CHAIN.into(),
        _type: Some(NfChainType::Filter),
        hook: Some(NfHook::Prerouting),
        prio: Some(RAW_PRIORITY),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }))));
    let v6_slash64 = Expression::BinaryOperation(Box::new(BinaryOperation::AND(
        field("ip6", "saddr"),
        Expression::String("ffff:ffff:ffff:ffff::".into()),
    )));
    for (meter, source) in [(METER4, field("ip", "saddr")), (METER6, v6_slash64)] {
        objects.push(command(NfCmd::Add(NfListObject::Rule(rule(
            port, meter, source,
        )))));
    }
    Nftables {
        objects: Cow::Owned(objects),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn payload(protocol: &str, field: &str) -> Value {
        json!({"payload": {"protocol": protocol, "field": field}})
    }

    fn rule(meter: &str, source: Value) -> Value {
        let is = |left: Value, right: Value| json!({"match": {"op": "==", "left": left, "right": right}});
        json!({"add": {"rule": {
            "family": "inet", "table": "meshd_guard", "chain": "handshakes", "expr": [
                is(payload("udp", "dport"), json!(51820)),
                is(payload("udp", "length"), json!(156)),
                is(json!({"payload": {"base": "th", "offset": 64, "len": 32}}), json!(0x0100_0000)),
                is(json!({"fib": {"result": "type", "flags": ["daddr"]}}), json!("local")),
                {"meter": {
                    "name": meter,
                    // The crate writes the elem's unset fields as null; nft 1.0.6 takes them.
                    "key": {"elem": {
                        "val": source, "timeout": 10,
                        "expires": null, "comment": null, "counter": null,
                    }},
                    "stmt": {"limit": {"rate": 40, "per": "second", "burst": 10, "inv": true}},
                }},
                {"counter": "initiations_dropped"},
                {"drop": null},
            ],
        }}})
    }

    #[test]
    fn the_batch_replaces_the_table_and_limits_initiations_per_source() {
        let table = json!({"table": {"family": "inet", "name": "meshd_guard"}});
        let expected = json!({"nftables": [
            {"add": table},
            {"delete": table},
            {"add": table},
            {"add": {"counter": {
                "family": "inet", "table": "meshd_guard", "name": "initiations_dropped",
                "bytes": null,
            }}},
            {"add": {"chain": {
                "family": "inet", "table": "meshd_guard", "name": "handshakes",
                "type": "filter", "hook": "prerouting", "prio": -300, "policy": "accept",
            }}},
            rule("initiations4", payload("ip", "saddr")),
            rule("initiations6", json!({"&": [payload("ip6", "saddr"), "ffff:ffff:ffff:ffff::"]})),
        ]});
        let batch = serde_json::to_value(install_batch(51820)).unwrap();
        assert_eq!(batch, expected, "{batch:#}");
    }

    #[test]
    fn only_handshake_initiations_match() {
        // Every message type but 1 differs in the first word; a response (type 2) also in
        // the length (8 + 92), a cookie reply (3) too (8 + 64), data (4) starts at 8 + 32.
        assert_eq!(INITIATION_FIRST_WORD.to_be_bytes(), [1, 0, 0, 0]);
        assert_eq!(INITIATION_UDP_LENGTH, 156);
    }
}
