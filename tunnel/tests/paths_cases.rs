//! Path prober conformance: replays tunnel/tests/data/paths/*.toml.
//!
//! Each case describes a small network and what happens to it over time; the runner plays the
//! network: it answers the prober's probes after the path's RTT when the path passes traffic,
//! feeds link and candidate changes, and records every action. The case then states the
//! switches that must happen (all of them, in order, each within a time window), the state at
//! given times, and how many probes or resolves a time span may contain. The format is
//! described at the top of each data file.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use meshd_tunnel::path::{
    Path, PathAction, PathCandidate, PathProber, PathSource, PathState, ProberConfig,
};
use serde::Deserialize;

/// Wire size of one probe over IPv4: 64 bytes of payload + 8 UDP + 20 IP.
const PROBE_WIRE_BYTES_V4: u64 = 92;
/// The runner sends a data packet this often while traffic is on.
const TRAFFIC_EVERY: Duration = Duration::from_millis(20);

#[derive(Deserialize)]
struct File {
    case: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    duration_ms: u64,
    #[serde(default)]
    config: ConfigOverrides,
    paths: Vec<PathDef>,
    /// Initial candidates by name (default: every path not marked `learned`).
    candidates: Option<Vec<String>>,
    #[serde(default)]
    traffic: bool,
    #[serde(default)]
    events: Vec<EventDef>,
    /// Every switch of the case, in order.
    switches: Vec<SwitchDef>,
    #[serde(default)]
    checks: Vec<Check>,
    #[serde(default)]
    counts: Vec<CountDef>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigOverrides {
    failback_hold_ms: Option<u64>,
    latency_hold_ms: Option<u64>,
    unsupported_after: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathDef {
    name: String,
    local: Option<IpAddr>,
    remote: SocketAddr,
    #[serde(default)]
    pref: u8,
    #[serde(default = "default_rtt")]
    rtt_ms: u64,
    /// A path the prober only learns from `auth NAME` events.
    #[serde(default)]
    learned: bool,
}

fn default_rtt() -> u64 {
    10
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventDef {
    at: u64,
    /// down NAME | up NAME | rtt NAME MS | reply-loss NAME PERCENT | flap NAME PERIOD_MS
    /// (0 stops) | link-down IP | link-up IP | traffic on|off | candidates A,B | session up|down
    /// | silent (the peer stops answering probes) | auth NAME (authenticated packet on NAME)
    #[serde(rename = "do")]
    action: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchDef {
    /// [earliest, latest] in ms.
    within: [u64; 2],
    to: String,
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Check {
    at: u64,
    active: Option<String>,
    #[serde(default)]
    states: BTreeMap<String, String>,
    /// Percent lost of the recent probes, [min, max].
    #[serde(default)]
    loss: BTreeMap<String, [u32; 2]>,
    probing_supported: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CountDef {
    /// probes | resolves
    what: String,
    from: u64,
    to: u64,
    min: usize,
    max: usize,
}

/// What the simulated network does with a path right now.
struct Net {
    up: bool,
    rtt: Duration,
    reply_loss: u32,
    loss_acc: u32,
    flap: Option<(Duration, Duration)>, // (period, next toggle)
}

struct Sim<'a> {
    case: &'a Case,
    t0: Instant,
    prober: PathProber,
    net: HashMap<String, Net>,
    links_down: Vec<IpAddr>,
    silent: bool,
    traffic: bool,
    next_traffic: Duration,
    in_flight: Vec<(Duration, u32, u64, String)>,
    switches: Vec<(Duration, Option<String>, String)>,
    probes: Vec<Duration>,
    resolves: Vec<Duration>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl<'a> Sim<'a> {
    fn new(case: &'a Case) -> Self {
        let mut cfg = ProberConfig::default();
        let o = &case.config;
        if let Some(v) = o.failback_hold_ms {
            cfg.failback_hold = Duration::from_millis(v);
        }
        if let Some(v) = o.latency_hold_ms {
            cfg.latency_hold = Duration::from_millis(v);
        }
        if let Some(v) = o.unsupported_after {
            cfg.unsupported_after = v;
        }
        let net = case
            .paths
            .iter()
            .map(|p| {
                let n = Net {
                    up: true,
                    rtt: Duration::from_millis(p.rtt_ms),
                    reply_loss: 0,
                    loss_acc: 0,
                    flap: None,
                };
                (p.name.clone(), n)
            })
            .collect();
        Sim {
            case,
            t0: Instant::now(),
            prober: PathProber::new(cfg, 1 << 40),
            net,
            links_down: Vec::new(),
            silent: false,
            traffic: case.traffic,
            next_traffic: Duration::ZERO,
            in_flight: Vec::new(),
            switches: Vec::new(),
            probes: Vec::new(),
            resolves: Vec::new(),
        }
    }

    fn def(&self, name: &str) -> &'a PathDef {
        let case: &'a Case = self.case;
        case.paths
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("{}: no path named {name}", case.name))
    }

    fn path(def: &PathDef) -> Path {
        Path {
            local: def.local,
            remote: def.remote,
        }
    }

    fn name_of(&self, path: Path) -> String {
        self.case
            .paths
            .iter()
            .find(|d| Self::path(d) == path)
            .map_or_else(|| path.to_string(), |d| d.name.clone())
    }

    fn candidates(&self, names: &[String]) -> Vec<PathCandidate> {
        names
            .iter()
            .map(|n| {
                let d = self.def(n);
                PathCandidate {
                    path: Self::path(d),
                    preference: d.pref,
                    source: PathSource::Configured {
                        name: d.remote.to_string(),
                    },
                }
            })
            .collect()
    }

    fn passes(&self, name: &str) -> bool {
        let d = self.def(name);
        self.net[name].up && !d.local.is_some_and(|l| self.links_down.contains(&l))
    }

    fn apply(&mut self, text: &str, t: Duration) {
        let now = self.t0 + t;
        let words: Vec<&str> = text.split_whitespace().collect();
        let name = |i: usize| words.get(i).copied().unwrap_or_default().to_string();
        let num = |i: usize| -> u64 {
            words
                .get(i)
                .and_then(|w| w.parse().ok())
                .unwrap_or_else(|| panic!("{}: bad number in {text:?}", self.case.name))
        };
        match words.first().copied() {
            Some("down") => self.net.get_mut(&name(1)).unwrap().up = false,
            Some("up") => self.net.get_mut(&name(1)).unwrap().up = true,
            Some("rtt") => {
                self.net.get_mut(&name(1)).unwrap().rtt = Duration::from_millis(num(2));
            }
            Some("reply-loss") => {
                self.net.get_mut(&name(1)).unwrap().reply_loss = num(2) as u32;
            }
            Some("flap") => {
                let period = Duration::from_millis(num(2));
                let n = self.net.get_mut(&name(1)).unwrap();
                if period.is_zero() {
                    n.flap = None;
                    n.up = true;
                } else {
                    n.up = false;
                    n.flap = Some((period, t + period));
                }
            }
            Some("link-down") => {
                let ip: IpAddr = name(1).parse().unwrap();
                self.links_down.push(ip);
                self.prober.local_address_down(ip, now);
            }
            Some("link-up") => {
                let ip: IpAddr = name(1).parse().unwrap();
                self.links_down.retain(|&l| l != ip);
                self.prober.local_address_up(ip, now);
            }
            Some("traffic") => {
                self.traffic = name(1) == "on";
                self.next_traffic = t;
            }
            Some("candidates") => {
                let names: Vec<String> = name(1).split(',').map(str::to_string).collect();
                let c = self.candidates(&names);
                self.prober.set_candidates(c, now);
            }
            Some("session") => self.prober.set_session_up(name(1) == "up", now),
            Some("silent") => self.silent = true,
            Some("auth") => {
                let d = self.def(&name(1));
                self.prober.authenticated_from(d.remote, d.local, now);
            }
            _ => panic!("{}: unknown event {text:?}", self.case.name),
        }
    }

    fn handle(&mut self, actions: Vec<PathAction>, t: Duration) {
        for action in actions {
            match action {
                PathAction::SendProbe { path, path_id, seq } => {
                    self.probes.push(t);
                    let name = self.name_of(path);
                    if self.silent || !self.net.contains_key(&name) || !self.passes(&name) {
                        continue;
                    }
                    let net = self.net.get_mut(&name).unwrap();
                    net.loss_acc += net.reply_loss;
                    if net.loss_acc >= 100 {
                        net.loss_acc -= 100;
                        continue;
                    }
                    self.in_flight.push((t + net.rtt, path_id, seq, name));
                }
                PathAction::Switched { from, to, reason } => {
                    let from = from.map(|p| self.name_of(p));
                    let to = to.map_or("none".to_string(), |p| self.name_of(p));
                    let _ = from;
                    self.switches.push((t, Some(to), reason.to_string()));
                }
                PathAction::Resolve => self.resolves.push(t),
            }
        }
    }

    fn run(&mut self) {
        let case = self.case;
        let end = Duration::from_millis(case.duration_ms);
        let initial: Vec<String> = case.candidates.clone().unwrap_or_else(|| {
            case.paths
                .iter()
                .filter(|p| !p.learned)
                .map(|p| p.name.clone())
                .collect()
        });
        let c = self.candidates(&initial);
        self.prober.set_candidates(c, self.t0);
        let mut events: Vec<&EventDef> = case.events.iter().collect();
        events.sort_by_key(|e| e.at);
        let mut next_event = 0;
        let mut checks: Vec<&Check> = case.checks.iter().collect();
        checks.sort_by_key(|c| c.at);
        let mut next_check = 0;
        let mut t = Duration::ZERO;
        let mut steps = 0u64;
        loop {
            // Run everything due at `t`, then find the next moment something happens.
            while next_event < events.len() && Duration::from_millis(events[next_event].at) <= t {
                self.apply(&events[next_event].action, t);
                next_event += 1;
            }
            for n in self.net.values_mut() {
                if let Some((period, toggle)) = n.flap
                    && toggle <= t
                {
                    n.up = !n.up;
                    n.flap = Some((period, toggle + period));
                }
            }
            if self.traffic && self.next_traffic <= t {
                self.prober.traffic_sent(self.t0 + t);
                self.next_traffic = t + TRAFFIC_EVERY;
            }
            let arrived: Vec<_> = self
                .in_flight
                .iter()
                .filter(|f| f.0 <= t)
                .cloned()
                .collect();
            self.in_flight.retain(|f| f.0 > t);
            for (_, id, seq, name) in arrived {
                // A reply still needs the path to pass when it comes back.
                if self.passes(&name) {
                    self.prober.probe_reply(id, seq, self.t0 + t);
                }
            }
            let actions = self.prober.poll(self.t0 + t);
            self.handle(actions, t);

            let mut next = end;
            if let Some(e) = events.get(next_event) {
                next = next.min(Duration::from_millis(e.at));
            }
            if let Some(c) = checks.get(next_check) {
                next = next.min(Duration::from_millis(c.at));
            }
            if let Some(d) = self.prober.next_deadline() {
                next = next.min(d.saturating_duration_since(self.t0));
            }
            for f in &self.in_flight {
                next = next.min(f.0);
            }
            for n in self.net.values() {
                if let Some((_, toggle)) = n.flap {
                    next = next.min(toggle);
                }
            }
            if self.traffic {
                next = next.min(self.next_traffic);
            }
            // Checks see the state after everything at their time.
            while next_check < checks.len() && Duration::from_millis(checks[next_check].at) <= t {
                self.check(checks[next_check], t);
                next_check += 1;
            }
            if t >= end {
                break;
            }
            steps += 1;
            assert!(
                steps < 10_000_000,
                "{}: simulation does not advance",
                case.name
            );
            t = next.max(t + Duration::from_micros(1));
        }
    }

    fn check(&self, c: &Check, t: Duration) {
        let case = &self.case.name;
        let at = c.at;
        let stats = self.prober.path_stats();
        let by_name = |n: &str| {
            let p = Self::path(self.def(n));
            stats
                .iter()
                .find(|s| s.path == p)
                .unwrap_or_else(|| panic!("{case} at {at}: {n} is not a candidate"))
        };
        if let Some(want) = &c.active {
            let got = self
                .prober
                .active_path()
                .map_or("none".to_string(), |p| self.name_of(p));
            assert_eq!(&got, want, "{case}: active path at {at} ms (t={})", ms(t));
        }
        for (name, want) in &c.states {
            let got = match by_name(name).state {
                PathState::Unknown => "unknown",
                PathState::Up => "up",
                PathState::Down => "down",
            };
            assert_eq!(got, want, "{case}: state of {name} at {at} ms");
        }
        for (name, [lo, hi]) in &c.loss {
            let s = by_name(name);
            let pct = (s.loss() * 100.0).round() as u32;
            assert!(
                (*lo..=*hi).contains(&pct),
                "{case}: loss of {name} at {at} ms is {pct} % ({}/{}), expected {lo}..={hi}",
                s.lost,
                s.sampled
            );
        }
        if let Some(want) = c.probing_supported {
            assert_eq!(
                self.prober.probing_supported(),
                want,
                "{case}: probing_supported at {at} ms"
            );
        }
    }

    fn verify(&self) {
        let case = &self.case.name;
        let got: Vec<String> = self
            .switches
            .iter()
            .map(|(t, to, r)| format!("{:.1} ms -> {}: {r}", ms(*t), to.as_deref().unwrap()))
            .collect();
        println!("{case}: {got:?}");
        assert_eq!(
            self.switches.len(),
            self.case.switches.len(),
            "{case}: switches were {got:#?}"
        );
        for ((t, to, reason), want) in self.switches.iter().zip(&self.case.switches) {
            let [lo, hi] = want.within;
            let t_ms = ms(*t);
            assert!(
                t_ms >= lo as f64 && t_ms <= hi as f64 && to.as_deref() == Some(&want.to),
                "{case}: expected a switch to {} within {lo}..{hi} ms, switches were {got:#?}",
                want.to
            );
            assert_eq!(
                reason, &want.reason,
                "{case}: reason of the switch at {t_ms} ms"
            );
        }
        for count in &self.case.counts {
            let (from, to) = (
                Duration::from_millis(count.from),
                Duration::from_millis(count.to),
            );
            let times = match count.what.as_str() {
                "probes" => &self.probes,
                "resolves" => &self.resolves,
                other => panic!("{case}: cannot count {other}"),
            };
            let n = times.iter().filter(|&&t| t >= from && t < to).count();
            let secs = (count.to - count.from) as f64 / 1000.0;
            println!(
                "{case}: {n} {} in {secs} s ({:.2}/s{})",
                count.what,
                n as f64 / secs,
                if count.what == "probes" {
                    format!(
                        ", {:.1} B/s of IPv4 probe requests",
                        n as f64 * PROBE_WIRE_BYTES_V4 as f64 / secs
                    )
                } else {
                    String::new()
                }
            );
            assert!(
                (count.min..=count.max).contains(&n),
                "{case}: {n} {} in {}..{} ms, expected {}..={}",
                count.what,
                count.from,
                count.to,
                count.min,
                count.max
            );
        }
    }
}

#[test]
fn path_cases() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/paths");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no case files in {dir}");
    let mut ran = 0;
    let mut failed = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let parsed: File =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for case in &parsed.case {
            // Run every case even when one fails, so one run shows every failure.
            let outcome = std::panic::catch_unwind(|| {
                let mut sim = Sim::new(case);
                sim.run();
                sim.verify();
            });
            ran += 1;
            if outcome.is_err() {
                failed.push(case.name.clone());
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {ran} path cases failed: {failed:#?}",
        failed.len()
    );
    println!("{ran} path cases passed");
}
