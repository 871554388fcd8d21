//! Codec tests: the data-file cases in data/bgp/codec_cases.toml, round trips through our own
//! decoder, the netgauze-bgp-pkt decoder as an independent oracle, and random input.

use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use meshd_bgp::packet::*;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use netgauze_parse_utils::WritablePdu;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Cases {
    case: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    hex: String,
    expect: String,
    #[serde(default = "yes")]
    four_octet_as: bool,
}

fn yes() -> bool {
    true
}

fn next_hop(nh: &NextHop) -> String {
    match nh {
        NextHop::V4(a) => a.to_string(),
        NextHop::V6 { global, .. } => global.to_string(),
    }
}

/// One line describing a decode result, in the vocabulary of codec_cases.toml.
fn summarize(result: Result<Message, DecodeError>) -> String {
    let msg = match result {
        Err(e) => {
            let n = e.notification();
            return format!("notification {}/{}", n.code, n.subcode);
        }
        Ok(m) => m,
    };
    match msg {
        Message::Keepalive => "keepalive".into(),
        Message::Notification(n) => format!("notification-message {}/{}", n.code, n.subcode),
        Message::RouteRefresh(rr) => format!("route-refresh afi={} safi={}", rr.afi, rr.safi),
        Message::Open(o) => {
            let fams: Vec<&str> = o
                .families()
                .iter()
                .map(|f| match f {
                    Family::Ipv4Unicast => "ipv4",
                    Family::Ipv6Unicast => "ipv6",
                })
                .collect();
            let mut s = format!(
                "open asn={} hold={} id={} families={}",
                o.asn(),
                o.hold_time,
                o.bgp_id,
                fams.join(",")
            );
            if o.route_refresh() {
                s.push_str(" route-refresh");
            }
            if o.ipv4_over_ipv6_next_hop() {
                s.push_str(" ext-nh");
            }
            s
        }
        Message::Update(u) => {
            let mut s = String::from("update");
            let taw = u.treat_as_withdraw();
            if taw {
                s.push_str(" treat-as-withdraw");
            }
            if u.problems
                .iter()
                .any(|p| p.action == ErrorAction::AttributeDiscard)
            {
                s.push_str(" attribute-discard");
            }
            if let Some(f) = u.is_end_of_rib() {
                s.push_str(match f {
                    Family::Ipv4Unicast => " end-of-rib=ipv4",
                    Family::Ipv6Unicast => " end-of-rib=ipv6",
                });
                return s;
            }
            for p in u.withdrawn_prefixes() {
                s.push_str(&format!(" withdraw={p}"));
            }
            if taw {
                let nlri = u.nlri.iter().map(|p| IpNet::V4(*p));
                let mp = u.mp_reach.iter().flat_map(|r| r.nlri.iter().copied());
                for p in nlri.chain(mp) {
                    s.push_str(&format!(" announce={p}"));
                }
                return s;
            }
            for (p, nh) in u.announced() {
                s.push_str(&format!(" announce={p} nh={}", next_hop(&nh)));
            }
            let a = &u.attributes;
            if let Some(path) = &a.as_path {
                let asns: Vec<String> = path
                    .segments
                    .iter()
                    .flat_map(|s| &s.asns)
                    .map(|a| a.to_string())
                    .collect();
                s.push_str(&format!(" path={}", asns.join(",")));
            }
            if let Some(m) = a.med {
                s.push_str(&format!(" med={m}"));
            }
            if let Some(lp) = a.local_pref {
                s.push_str(&format!(" lp={lp}"));
            }
            if !a.communities.is_empty() {
                s.push_str(&format!(" communities={}", a.communities.len()));
            }
            if !a.large_communities.is_empty() {
                s.push_str(&format!(" large={}", a.large_communities.len()));
            }
            if !a.unknown.is_empty() {
                s.push_str(&format!(" unknown={}", a.unknown.len()));
            }
            s
        }
    }
}

#[test]
fn conformance_cases_from_data_file() {
    let text = include_str!("data/bgp/codec_cases.toml");
    let cases: Cases = toml::from_str(text).expect("codec_cases.toml parses");
    assert!(cases.case.len() >= 30);
    let mut failures = Vec::new();
    for c in &cases.case {
        let bytes = hex::decode(&c.hex).unwrap_or_else(|e| panic!("{}: bad hex: {e}", c.name));
        let opts = CodecOptions {
            four_octet_as: c.four_octet_as,
        };
        let got = summarize(Message::decode(&bytes, opts));
        if got != c.expect {
            failures.push(format!(
                "{}\n  expected: {}\n  got:      {}",
                c.name, c.expect, got
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Decodes with netgauze and writes the result back with netgauze.
fn netgauze_reencode(bytes: &[u8], four_octet_as: bool) -> Vec<u8> {
    let mut ctx = BgpParsingContext::default();
    ctx.set_asn4(four_octet_as);
    let mut reader = SliceReader::new(bytes);
    let parsed = BgpMessage::parse(&mut reader, &mut ctx).unwrap_or_else(|e| {
        panic!(
            "netgauze rejects what meshd encoded: {e:?}\n{}",
            hex::encode(bytes)
        )
    });
    assert_eq!(reader.remaining(), 0, "netgauze left bytes unread");
    let mut out = Vec::new();
    parsed.write(&mut out).expect("netgauze writes it back");
    out
}

/// What we encode, netgauze decodes to a message it writes back to the very same bytes, and
/// our decoder returns the message we started from.
fn check_round_trip(msg: &Message, four_octet_as: bool) {
    let opts = CodecOptions { four_octet_as };
    let bytes = msg.encode(opts).expect("encodes");
    let back = Message::decode(&bytes, opts).expect("our own decoder accepts it");
    assert_eq!(&back, msg);
    assert_eq!(
        hex::encode(netgauze_reencode(&bytes, four_octet_as)),
        hex::encode(&bytes),
        "netgauze reads {msg:?} differently"
    );
}

fn sample_attributes() -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::from_sequence([65010, 4_200_000_000])),
        next_hop: Some(Ipv4Addr::new(198, 51, 100, 1)),
        med: Some(10),
        local_pref: Some(200),
        atomic_aggregate: true,
        aggregator: Some(Aggregator {
            asn: 65010,
            address: Ipv4Addr::new(198, 51, 100, 1),
        }),
        communities: vec![0xFDF2_0064],
        originator_id: Some(Ipv4Addr::new(10, 0, 0, 1)),
        cluster_list: vec![Ipv4Addr::new(10, 0, 0, 2)],
        large_communities: vec![LargeCommunity {
            global: 65010,
            local1: 1,
            local2: 2,
        }],
        unknown: vec![],
    }
}

#[test]
fn every_message_type_round_trips_through_netgauze() {
    let open = Open::new(
        4_200_000_000,
        90,
        Ipv4Addr::new(198, 51, 100, 1),
        vec![
            Capability::Multiprotocol { afi: 1, safi: 1 },
            Capability::Multiprotocol { afi: 2, safi: 1 },
            Capability::RouteRefresh,
            Capability::ExtendedNextHop(vec![ExtendedNextHopEntry {
                afi: 1,
                safi: 1,
                next_hop_afi: 2,
            }]),
        ],
    );
    assert_eq!(open.my_as, AS_TRANS);
    check_round_trip(&Message::Open(open), true);
    check_round_trip(&Message::Keepalive, true);
    check_round_trip(
        &Message::Notification(Notification {
            code: 6,
            subcode: 2,
            data: vec![],
        }),
        true,
    );
    check_round_trip(
        &Message::RouteRefresh(RouteRefresh { afi: 2, safi: 1 }),
        true,
    );
    let v4: Ipv4Net = "192.168.50.0/24".parse().unwrap();
    check_round_trip(
        &Message::Update(Update {
            withdrawn: vec!["10.9.0.0/16".parse().unwrap()],
            attributes: sample_attributes(),
            nlri: vec![
                v4,
                "0.0.0.0/0".parse().unwrap(),
                "10.1.2.3/32".parse().unwrap(),
            ],
            ..Update::default()
        }),
        true,
    );
    let mut attrs = sample_attributes();
    attrs.next_hop = None;
    check_round_trip(
        &Message::Update(Update {
            attributes: attrs,
            mp_reach: Some(MpReach {
                family: Family::Ipv6Unicast,
                next_hop: NextHop::V6 {
                    global: "2001:db8::1".parse().unwrap(),
                    link_local: Some("fe80::1".parse().unwrap()),
                },
                nlri: vec!["2001:db8:42::/48".parse().unwrap()],
            }),
            mp_unreach: Some(MpUnreach {
                family: Family::Ipv6Unicast,
                withdrawn: vec!["2001:db8:43::/48".parse().unwrap()],
            }),
            ..Update::default()
        }),
        true,
    );
    check_round_trip(
        &Message::Update(Update::end_of_rib(Family::Ipv6Unicast)),
        true,
    );
}

#[test]
fn two_octet_session_carries_four_octet_asns_in_as4_path() {
    let update = Update {
        attributes: PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::from_sequence([4_200_000_000, 65010])),
            next_hop: Some(Ipv4Addr::new(198, 51, 100, 1)),
            aggregator: Some(Aggregator {
                asn: 4_200_000_000,
                address: Ipv4Addr::new(198, 51, 100, 1),
            }),
            ..PathAttributes::default()
        },
        nlri: vec!["192.168.50.0/24".parse().unwrap()],
        ..Update::default()
    };
    let opts = CodecOptions {
        four_octet_as: false,
    };
    let bytes = Message::Update(update.clone()).encode(opts).unwrap();
    // AS_PATH holds AS_TRANS (0x5ba0) where the 4-octet AS was.
    assert!(hex::encode(&bytes).contains("5ba0fdf2"));
    assert_eq!(
        Message::decode(&bytes, opts).unwrap(),
        Message::Update(update)
    );
    assert_eq!(netgauze_reencode(&bytes, false), bytes);
}

#[test]
fn long_as_paths_and_attributes_use_extended_length() {
    let mut attrs = sample_attributes();
    attrs.as_path = Some(AsPath::from_sequence(0..300u32));
    attrs.communities = (0..100).collect();
    let update = Message::Update(Update {
        attributes: attrs,
        nlri: vec!["192.168.50.0/24".parse().unwrap()],
        ..Update::default()
    });
    check_round_trip(&update, true);
}

#[test]
fn oversized_messages_are_refused_when_encoding() {
    let update = Message::Update(Update {
        attributes: sample_attributes(),
        nlri: (0..2000u32)
            .map(|i| Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap())
            .collect(),
        ..Update::default()
    });
    assert!(matches!(
        update.encode(CodecOptions::default()),
        Err(EncodeError::TooLong { .. })
    ));
}

#[test]
fn frame_len_reads_the_header() {
    let bytes = Message::Keepalive.encode(CodecOptions::default()).unwrap();
    assert_eq!(Message::frame_len(&bytes[..10]).unwrap(), None);
    assert_eq!(Message::frame_len(&bytes).unwrap(), Some(19));
    let mut bad = bytes.clone();
    bad[0] = 0;
    assert_eq!(Message::frame_len(&bad), Err(DecodeError::BadMarker));
}

/// Unicast IPv4 prefixes: netgauze (rightly, for its purpose) refuses multicast ones as unicast
/// NLRI, while meshd leaves that judgement to policy.
fn arb_v4() -> impl Strategy<Value = Ipv4Net> {
    (0u32..0xe000_0000, 0u8..=32)
        .prop_map(|(a, l)| Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())
        .prop_filter("unicast", |p| !p.network().is_multicast())
}

fn arb_v6() -> impl Strategy<Value = Ipv6Net> {
    (0u128..(0xff << 120), 0u8..=128)
        .prop_map(|(a, l)| Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc())
        .prop_filter("unicast", |p| !p.network().is_multicast())
}

fn arb_attributes() -> impl Strategy<Value = PathAttributes> {
    (
        prop::option::of(prop_oneof![
            Just(Origin::Igp),
            Just(Origin::Egp),
            Just(Origin::Incomplete)
        ]),
        prop::option::of(prop::collection::vec(any::<u32>(), 1..20)),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        any::<bool>(),
        prop::collection::vec(any::<u32>(), 0..5),
        prop::collection::vec((any::<u32>(), any::<u32>(), any::<u32>()), 0..3),
        prop::collection::vec(any::<u32>(), 0..3),
    )
        .prop_map(
            |(origin, path, med, lp, atomic, comms, large, clusters)| PathAttributes {
                origin,
                as_path: path.map(AsPath::from_sequence),
                next_hop: Some(Ipv4Addr::new(203, 0, 113, 7)),
                med,
                local_pref: lp,
                atomic_aggregate: atomic,
                aggregator: None,
                communities: comms,
                originator_id: None,
                cluster_list: clusters.into_iter().map(Ipv4Addr::from).collect(),
                large_communities: large
                    .into_iter()
                    .map(|(global, local1, local2)| LargeCommunity {
                        global,
                        local1,
                        local2,
                    })
                    .collect(),
                unknown: vec![],
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_updates_round_trip_through_netgauze(
        attrs in arb_attributes(),
        withdrawn in prop::collection::vec(arb_v4(), 0..20),
        nlri in prop::collection::vec(arb_v4(), 0..20),
        v6 in prop::collection::vec(arb_v6(), 0..20),
    ) {
        let mp_reach = (!v6.is_empty()).then(|| MpReach {
            family: Family::Ipv6Unicast,
            next_hop: NextHop::V6 { global: "2001:db8::7".parse().unwrap(), link_local: None },
            nlri: v6.into_iter().map(IpNet::V6).collect(),
        });
        let mut attrs = attrs;
        if nlri.is_empty() {
            attrs.next_hop = None;
        }
        let update = Update { withdrawn, attributes: attrs, nlri, mp_reach, ..Update::default() };
        // Random attribute sets may lack mandatory attributes: then our decoder records a
        // treat-as-withdraw problem, which the comparison with the original must ignore.
        let opts = CodecOptions::default();
        let bytes = Message::Update(update.clone()).encode(opts).unwrap();
        let Message::Update(mut back) = Message::decode(&bytes, opts).unwrap() else {
            panic!("not an update")
        };
        back.problems.clear();
        prop_assert_eq!(back, update);
        prop_assert_eq!(netgauze_reencode(&bytes, true), bytes);
    }

    #[test]
    fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..300), kind in 0u8..7) {
        let mut bytes = vec![0xff; 16];
        bytes.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        bytes.push(kind);
        bytes.extend_from_slice(&body);
        for four in [true, false] {
            let _ = Message::decode(&bytes, CodecOptions { four_octet_as: four });
        }
        let _ = Message::decode(&body, CodecOptions::default());
        let _ = Message::frame_len(&body);
    }

    #[test]
    fn mutated_updates_never_panic(flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let update = Message::Update(Update {
            attributes: sample_attributes(),
            nlri: vec!["192.168.50.0/24".parse().unwrap()],
            mp_reach: Some(MpReach {
                family: Family::Ipv6Unicast,
                next_hop: NextHop::V6 { global: "2001:db8::1".parse().unwrap(), link_local: None },
                nlri: vec!["2001:db8:42::/48".parse().unwrap()],
            }),
            ..Update::default()
        });
        let mut bytes = update.encode(CodecOptions::default()).unwrap();
        for (at, value) in flips {
            // Keep the header valid so the body decoders are exercised.
            let i = 19 + at % (bytes.len() - 19);
            bytes[i] = value;
        }
        if let Err(e) = Message::decode(&bytes, CodecOptions::default()) {
            let n = e.notification();
            prop_assert!(matches!(n.code, 1 | 3), "UPDATE damage gives a header or UPDATE error, not {n}");
        }
    }
}
