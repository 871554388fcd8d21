//! Scenarios on a simulated mesh: build one that has been running for a while, then let one
//! more node join (or one core change its endpoints) and measure how long it takes every
//! node to know, and what it cost on the wire.

use std::collections::BTreeMap;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use time::{Duration, OffsetDateTime};

use super::SimError;
use super::fleet::Fleet;
use super::network::{Cause, Convergence, Network, NodeId, Stats, Traffic};
use crate::control::membership::{ANTI_ENTROPY_INTERVAL, Action, Membership};
use crate::control::message::Gossip;
use crate::control::record::SignedRecord;

/// Where stored records come from, as the shell names it.
const STATE_DIRECTORY: &str = "the state directory";
/// How long a change may take to reach everyone before the run is called stuck.
const GIVE_UP_AFTER: Duration = Duration::seconds(300);
/// After convergence, how long to keep running so messages still in flight are counted.
const DRAIN: Duration = Duration::seconds(2);

/// How many cores and spokes; spokes are spread evenly over the cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeshShape {
    pub cores: usize,
    pub spokes: usize,
}

impl MeshShape {
    /// `nodes` in all, one core for every four spokes: each core a server with a public
    /// address, each spoke a home or office router behind one (the mix of the users' setups).
    pub fn with_nodes(nodes: usize) -> Self {
        let cores = nodes.div_ceil(5).max(1);
        Self {
            cores,
            spokes: nodes - cores.min(nodes),
        }
    }

    pub fn nodes(&self) -> usize {
        self.cores + self.spokes
    }
}

/// What one change cost and how long it took to spread.
#[derive(Debug, Clone)]
pub struct ChangeOutcome {
    /// Nodes in the mesh before the change.
    pub nodes_before: usize,
    /// When each node (the new one included) had the change.
    pub convergence: Convergence,
    /// When the last core had it.
    pub cores_done: Option<Duration>,
    /// Messages caused by the change (connections, pushes and their answers).
    pub change: Traffic,
    /// Anti-entropy messages while the change spread (they run whether or not anything
    /// changes; some of them carry the change to nodes push missed).
    pub anti_entropy: Traffic,
    /// The same per message kind.
    pub by_kind: BTreeMap<(Cause, &'static str), Traffic>,
    /// Warnings the machines logged during the change.
    pub warnings: Vec<String>,
}

impl ChangeOutcome {
    /// When the last node had the change.
    pub fn all_done(&self) -> Option<Duration> {
        self.convergence.all()
    }
}

/// A simulated mesh that has been running for a while: everyone knows everyone, every
/// connection is up, and the nodes' anti-entropy rounds are spread over the interval.
#[derive(Debug)]
pub struct Mesh {
    pub net: Network,
    pub fleet: Fleet,
    pub cores: Vec<NodeId>,
    pub spokes: Vec<NodeId>,
    /// Each spoke's core.
    spoke_core: BTreeMap<NodeId, NodeId>,
    rng: SmallRng,
}

impl Mesh {
    /// Builds a mesh of `shape` whose clock starts at `start`; `seed` fixes every random
    /// choice (latencies, fanout, anti-entropy partners and phases).
    pub fn build(shape: MeshShape, seed: u64, start: OffsetDateTime) -> Result<Self, SimError> {
        if shape.cores == 0 {
            return Err(SimError::NoCore);
        }
        let mut fleet = Fleet::new(start)?;
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut admitted: Vec<(String, SignedRecord, Option<usize>)> = Vec::new();
        for c in 0..shape.cores {
            let name = format!("core{}", c + 1);
            let record = fleet.admit_core(&name)?;
            admitted.push((name, record, None));
        }
        for s in 0..shape.spokes {
            let core = s % shape.cores;
            let name = format!("spoke{}", s + 1);
            let record = fleet.admit_spoke(&name, &admitted[core].0)?;
            admitted.push((name, record, Some(core)));
        }
        let records: Vec<SignedRecord> = admitted.iter().map(|(_, r, _)| r.clone()).collect();
        let mut net = Network::new(start);
        let mut warnings = Vec::new();
        for (name, own, _) in &admitted {
            let mut membership = Membership::new(name, fleet.ca_der().to_vec(), rng.random());
            // As after a restart: the stored membership first, then our own record.
            let mut actions = membership.receive(
                STATE_DIRECTORY,
                Gossip::Records {
                    records: records.clone(),
                },
                start,
            );
            actions.extend(membership.set_own_record(own.clone(), start));
            collect_warnings(name, &actions, &mut warnings);
            let phase = random_duration(&mut rng, Duration::ZERO, ANTI_ENTROPY_INTERVAL);
            net.add_node(name, membership, start + phase)?;
        }
        if let Some(first) = warnings.into_iter().next() {
            return Err(SimError::Refused(first));
        }
        let cores: Vec<NodeId> = (0..shape.cores).collect();
        let spokes: Vec<NodeId> = (shape.cores..shape.nodes()).collect();
        for (i, &a) in cores.iter().enumerate() {
            for &b in &cores[i + 1..] {
                net.connect_now(a, b, core_latency(&mut rng))?;
            }
        }
        let mut spoke_core = BTreeMap::new();
        for (&spoke, (_, _, core)) in spokes.iter().zip(&admitted[shape.cores..]) {
            let core = core.expect("spokes have a core");
            net.connect_now(spoke, core, spoke_latency(&mut rng))?;
            spoke_core.insert(spoke, core);
        }
        let mut mesh = Self {
            net,
            fleet,
            cores,
            spokes,
            spoke_core,
            rng,
        };
        // Every node's first anti-entropy round happens within the interval.
        mesh.idle(ANTI_ENTROPY_INTERVAL + Duration::seconds(1));
        Ok(mesh)
    }

    /// Lets virtual time pass with no change.
    pub fn idle(&mut self, duration: Duration) {
        let until = self.net.now() + duration;
        self.net.run_until(until);
    }

    /// What the mesh costs per second when nothing changes, measured over `duration`.
    pub fn background(&mut self, duration: Duration) -> Traffic {
        let before = self.net.stats().by_cause(Cause::AntiEntropy);
        self.idle(duration);
        let spent = self.net.stats().by_cause(Cause::AntiEntropy).since(&before);
        let seconds = duration.as_seconds_f64();
        Traffic {
            messages: (spent.messages as f64 / seconds).round() as u64,
            bytes: (spent.bytes as f64 / seconds).round() as u64,
        }
    }

    /// A new core joins: it got the membership from the CA holder with its certificate,
    /// starts, and connects to every core.
    pub fn join_core(&mut self) -> Result<ChangeOutcome, SimError> {
        let name = format!("core{}", self.cores.len() + 1);
        let record = self.fleet.admit_core(&name)?;
        let peers = self.cores.clone();
        let node = self.start_joiner(&name, record.clone(), &peers, core_latency)?;
        self.cores.push(node);
        self.spread(&name, record.version)
    }

    /// A new spoke joins under the core with the fewest spokes and connects to it.
    pub fn join_spoke(&mut self) -> Result<ChangeOutcome, SimError> {
        let name = format!("spoke{}", self.spokes.len() + 1);
        let core = *self
            .cores
            .iter()
            .min_by_key(|c| self.spoke_core.values().filter(|v| v == c).count())
            .ok_or(SimError::NoCore)?;
        let core_name = self.net.name(core).to_owned();
        let record = self.fleet.admit_spoke(&name, &core_name)?;
        let node = self.start_joiner(&name, record.clone(), &[core], spoke_latency)?;
        self.spokes.push(node);
        self.spoke_core.insert(node, core);
        self.spread(&name, record.version)
    }

    /// Core number `index` (from 0) moves to a new address (its ISP renumbered it).
    pub fn move_core(&mut self, index: usize) -> Result<ChangeOutcome, SimError> {
        let node = *self.cores.get(index).ok_or(SimError::NoSuchNode(index))?;
        let name = self.net.name(node).to_owned();
        let endpoint = format!("198.51.100.{}:51820", 1 + self.rng.random_range(0..254));
        let record = self.fleet.re_sign(&name, vec![endpoint])?;
        let version = record.version;
        let before = self.net.stats().clone();
        self.net.set_own_record(node, record)?;
        self.measure(&name, version, before, self.net.len())
    }

    /// Starts a node that just joined: the CA holder's membership from the join, its own
    /// record, then connections to `peers`.
    fn start_joiner(
        &mut self,
        name: &str,
        record: SignedRecord,
        peers: &[NodeId],
        latency: fn(&mut SmallRng) -> Duration,
    ) -> Result<NodeId, SimError> {
        let now = self.net.now();
        let ca_holder = self.cores[0];
        let known = self.net.membership(ca_holder).records();
        let mut membership = Membership::new(name, self.fleet.ca_der().to_vec(), self.rng.random());
        let mut actions =
            membership.receive(STATE_DIRECTORY, Gossip::Records { records: known }, now);
        actions.extend(membership.set_own_record(record, now));
        let mut warnings = Vec::new();
        collect_warnings(name, &actions, &mut warnings);
        if let Some(first) = warnings.into_iter().next() {
            return Err(SimError::Refused(first));
        }
        // A daemon's first tick comes at once.
        let node = self.net.add_node(name, membership, now)?;
        for &peer in peers {
            let latency = latency(&mut self.rng);
            self.net.connect(node, peer, latency)?;
        }
        Ok(node)
    }

    /// Measures the spreading of a node that just joined (see [`Self::measure`]).
    fn spread(&mut self, name: &str, version: u64) -> Result<ChangeOutcome, SimError> {
        let before = self.net.stats().clone();
        self.measure(name, version, before, self.net.len() - 1)
    }

    /// Runs until every node holds `name`'s record at `version` and as many members as
    /// there are nodes, and counts what was sent since `before`.
    fn measure(
        &mut self,
        name: &str,
        version: u64,
        before: Stats,
        nodes_before: usize,
    ) -> Result<ChangeOutcome, SimError> {
        let nodes = self.net.len();
        let deadline = self.net.now() + GIVE_UP_AFTER;
        let done = |_: NodeId, m: &Membership| {
            m.member(name).is_some_and(|r| r.version == version) && m.members().count() == nodes
        };
        let convergence = self.net.run_until_converged(deadline, &done);
        let anti_entropy = self
            .net
            .stats()
            .by_cause(Cause::AntiEntropy)
            .since(&before.by_cause(Cause::AntiEntropy));
        self.idle(DRAIN);
        let after = self.net.stats();
        let change = after
            .by_cause(Cause::Change)
            .since(&before.by_cause(Cause::Change));
        let by_kind = after
            .sent
            .iter()
            .map(|(key, t)| {
                (
                    *key,
                    t.since(&before.sent.get(key).copied().unwrap_or_default()),
                )
            })
            .filter(|(_, t)| t.messages > 0)
            .collect();
        let warnings = after.warnings[before.warnings.len()..].to_vec();
        let cores_done = convergence.last_of(self.cores.iter().copied());
        if convergence.all().is_none() {
            return Err(SimError::NotConverged {
                change: name.to_owned(),
                after: GIVE_UP_AFTER,
            });
        }
        Ok(ChangeOutcome {
            nodes_before,
            convergence,
            cores_done,
            change,
            anti_entropy,
            by_kind,
            warnings,
        })
    }
}

fn collect_warnings(name: &str, actions: &[Action], warnings: &mut Vec<String>) {
    for action in actions {
        if let Action::Log {
            warning: true,
            text,
        } = action
        {
            warnings.push(format!("{name}: {text}"));
        }
    }
}

/// One-way latency between two cores: servers in one region or across a continent.
fn core_latency(rng: &mut SmallRng) -> Duration {
    random_duration(rng, Duration::milliseconds(5), Duration::milliseconds(40))
}

/// One-way latency between a spoke and its core: a home line to a nearby server.
fn spoke_latency(rng: &mut SmallRng) -> Duration {
    random_duration(rng, Duration::milliseconds(2), Duration::milliseconds(20))
}

fn random_duration(rng: &mut SmallRng, low: Duration, high: Duration) -> Duration {
    let micros = rng.random_range(low.whole_microseconds()..high.whole_microseconds());
    Duration::microseconds(micros as i64)
}
