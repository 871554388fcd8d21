//! Session state machine conformance: replays data/bgp/fsm_cases.toml, plus property tests that
//! random event sequences never panic and never leave timers behind in Idle.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use meshd_bgp::fsm::{Action, DownReason, Event, Fsm, SessionConfig, State};
use meshd_bgp::packet::*;
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Cases {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default = "local_asn")]
    local_asn: u32,
    #[serde(default = "remote_asn")]
    remote_asn: u32,
    #[serde(default = "hold_time")]
    hold_time: u16,
    #[serde(default)]
    passive: bool,
    #[serde(default)]
    families: Option<Vec<String>>,
    steps: Vec<Step>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    at: f64,
    event: String,
    expect: Vec<String>,
    state: Option<String>,
}

fn local_asn() -> u32 {
    65000
}
fn remote_asn() -> u32 {
    65010
}
fn hold_time() -> u16 {
    90
}

fn family(name: &str) -> Family {
    match name {
        "ipv4" => Family::Ipv4Unicast,
        "ipv6" => Family::Ipv6Unicast,
        other => panic!("unknown family {other}"),
    }
}

fn family_name(f: &Family) -> &'static str {
    match f {
        Family::Ipv4Unicast => "ipv4",
        Family::Ipv6Unicast => "ipv6",
    }
}

fn code_pair(s: &str) -> (u8, u8) {
    let (c, s) = s.split_once('/').expect("C/S");
    (c.parse().unwrap(), s.parse().unwrap())
}

fn parse_event(text: &str) -> Event {
    let mut words = text.split_whitespace();
    match words.next().unwrap() {
        "start" => Event::Start,
        "stop" => Event::Stop,
        "tcp-connected" => Event::TcpConnected,
        "tcp-failed" => Event::TcpFailed,
        "tick" => Event::Tick,
        "garbage" => Event::BadMessage(DecodeError::BadMarker),
        "recv" => Event::Message(parse_message(words.collect())),
        other => panic!("unknown event {other}"),
    }
}

fn parse_message(words: Vec<&str>) -> Message {
    let kv = |key: &str| {
        words
            .iter()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
    };
    match words[0] {
        "keepalive" => Message::Keepalive,
        "update" => Message::Update(Update::default()),
        "notification" => {
            let (code, subcode) = code_pair(words[1]);
            Message::Notification(Notification::new(code, subcode))
        }
        "route-refresh" => Message::RouteRefresh(RouteRefresh {
            afi: kv("afi").unwrap().parse().unwrap(),
            safi: kv("safi").unwrap().parse().unwrap(),
        }),
        "open" => {
            let asn: u32 = kv("asn").unwrap().parse().unwrap();
            let hold: u16 = kv("hold").unwrap().parse().unwrap();
            let id: Ipv4Addr = kv("id").unwrap().parse().unwrap();
            let families = kv("families").unwrap_or("ipv4,ipv6".into());
            let mut caps: Vec<Capability> = families
                .split(',')
                .map(family)
                .map(|f| Capability::Multiprotocol {
                    afi: f.afi(),
                    safi: f.safi(),
                })
                .collect();
            caps.push(Capability::RouteRefresh);
            if words.contains(&"two-octet") {
                Message::Open(Open {
                    version: 4,
                    my_as: asn as u16,
                    hold_time: hold,
                    bgp_id: id,
                    capabilities: caps,
                })
            } else {
                Message::Open(Open::new(asn, hold, id, caps))
            }
        }
        other => panic!("unknown message {other}"),
    }
}

fn reason(r: &DownReason) -> String {
    match r {
        DownReason::Sent(n) => format!("sent {}/{}", n.code, n.subcode),
        DownReason::Received(n) => format!("received {}/{}", n.code, n.subcode),
        DownReason::ConnectionLost => "connection-lost".into(),
        DownReason::Stopped => "stopped".into(),
    }
}

fn describe(action: &Action) -> String {
    match action {
        Action::Connect => "connect".into(),
        Action::Disconnect => "disconnect".into(),
        Action::Send(Message::Open(_)) => "send open".into(),
        Action::Send(Message::Keepalive) => "send keepalive".into(),
        Action::Send(Message::Notification(n)) => {
            format!("send notification {}/{}", n.code, n.subcode)
        }
        Action::Send(other) => format!("send {other:?}"),
        Action::Up(n) => format!(
            "up hold={} families={}",
            n.hold_time,
            n.families
                .iter()
                .map(family_name)
                .collect::<Vec<_>>()
                .join(",")
        ),
        Action::Down(r) => format!("down {}", reason(r)),
        Action::Failed(r) => format!("failed {}", reason(r)),
        Action::Update(_) => "update".into(),
        Action::RouteRefresh(f) => format!("route-refresh {}", family_name(f)),
    }
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Idle => "idle",
        State::Connect => "connect",
        State::Active => "active",
        State::OpenSent => "open-sent",
        State::OpenConfirm => "open-confirm",
        State::Established => "established",
    }
}

fn config(
    local_asn: u32,
    remote_asn: u32,
    hold_time: u16,
    passive: bool,
    families: Vec<Family>,
) -> SessionConfig {
    SessionConfig {
        local_asn,
        remote_asn,
        bgp_id: Ipv4Addr::new(198, 51, 100, 1),
        hold_time,
        connect_retry: Duration::from_secs(5),
        passive,
        families,
    }
}

#[test]
fn conformance_cases_from_data_file() {
    let cases: Cases =
        toml::from_str(include_str!("data/bgp/fsm_cases.toml")).expect("fsm_cases.toml parses");
    assert!(cases.case.len() >= 20);
    let base = Instant::now();
    let mut failures = Vec::new();
    for case in &cases.case {
        let families = match &case.families {
            Some(names) => names.iter().map(|n| family(n)).collect(),
            None => Family::ALL.to_vec(),
        };
        let mut fsm = Fsm::new(config(
            case.local_asn,
            case.remote_asn,
            case.hold_time,
            case.passive,
            families,
        ));
        for (i, step) in case.steps.iter().enumerate() {
            let now = base + Duration::from_secs_f64(step.at);
            let got: Vec<String> = fsm
                .handle(parse_event(&step.event), now)
                .iter()
                .map(describe)
                .collect();
            if got != step.expect {
                failures.push(format!(
                    "{} step {i} ({}): expected {:?}, got {:?}",
                    case.name, step.event, step.expect, got
                ));
                break;
            }
            if let Some(state) = &step.state
                && state_name(fsm.state()) != state
            {
                failures.push(format!(
                    "{} step {i} ({}): expected state {state}, got {}",
                    case.name,
                    step.event,
                    state_name(fsm.state())
                ));
                break;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn our_open_carries_the_negotiable_capabilities() {
    let open = config(4_200_000_000, 65010, 90, false, Family::ALL.to_vec()).open();
    assert_eq!(open.my_as, AS_TRANS);
    assert_eq!(open.asn(), 4_200_000_000);
    assert_eq!(open.families(), Family::ALL.to_vec());
    assert!(open.route_refresh());
    assert!(open.ipv4_over_ipv6_next_hop());
}

fn arb_event() -> impl Strategy<Value = Event> {
    prop_oneof![
        Just(Event::Start),
        Just(Event::Stop),
        Just(Event::TcpConnected),
        Just(Event::TcpFailed),
        Just(Event::Tick),
        Just(Event::BadMessage(DecodeError::BadMarker)),
        Just(Event::Message(Message::Keepalive)),
        Just(Event::Message(Message::Update(Update::default()))),
        Just(Event::Message(Message::Notification(Notification::cease(
            2
        )))),
        (0u16..5, any::<bool>()).prop_map(|(hold, good)| Event::Message(Message::Open(Open::new(
            if good { 65010 } else { 65011 },
            hold,
            Ipv4Addr::new(198, 51, 100, 2),
            vec![],
        )))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_event_sequences_keep_the_machine_consistent(
        events in prop::collection::vec((arb_event(), 0u64..100_000), 1..60)
    ) {
        let mut fsm = Fsm::new(config(65000, 65010, 3, false, Family::ALL.to_vec()));
        let mut now = Instant::now();
        let mut up = false;
        for (event, ms) in events {
            now += Duration::from_millis(ms);
            // Every event is followed by the tick the shell would send at the same instant.
            for event in [event, Event::Tick] {
                for action in fsm.handle(event, now) {
                    match action {
                        Action::Up(_) => {
                            prop_assert!(!up);
                            up = true;
                        }
                        Action::Down(_) => {
                            prop_assert!(up);
                            up = false;
                        }
                        _ => {}
                    }
                }
                prop_assert_eq!(up, fsm.state() == State::Established);
                if fsm.state() == State::Idle {
                    prop_assert!(fsm.negotiated().is_none());
                }
            }
        }
    }
}
