//! The simulated network: [`Membership`] machines joined by control connections with a fixed
//! one-way latency each, a virtual clock, and counts of what crossed the wire.
//!
//! Events (deliveries, connections coming up, the shell's periodic tick) wait in one queue
//! ordered by time and then by the order they were scheduled, so a run is deterministic and
//! messages on one connection arrive in order, as on TCP. Bandwidth and processing time are
//! not modelled: a message arrives exactly one latency after it was sent.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use time::{Duration, OffsetDateTime};

use super::SimError;
use crate::control::frame;
use crate::control::membership::{Action, Membership};
use crate::control::message::{Gossip, Message};

/// How often the shell ticks the membership machine (as `shell::TICK`).
pub const SHELL_TICK: Duration = Duration::milliseconds(500);

/// A node's position in the network.
pub type NodeId = usize;

/// Why a message was sent: the change under study, or the periodic anti-entropy that runs
/// whether or not anything changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cause {
    /// A new connection, a new record, or anything that followed from one.
    Change,
    /// A digest sent on a tick, and everything sent in answer to it.
    AntiEntropy,
}

/// Messages and the bytes they take on the wire (framed JSON, without TLS overhead).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub messages: u64,
    pub bytes: u64,
}

impl Traffic {
    fn add(&mut self, bytes: usize) {
        self.messages += 1;
        self.bytes += bytes as u64;
    }

    /// What was counted since `earlier` (a copy taken before).
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            messages: self.messages - earlier.messages,
            bytes: self.bytes - earlier.bytes,
        }
    }
}

/// Everything counted so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Per cause and message kind (`digest`, `records`, `want`, `crl`).
    pub sent: BTreeMap<(Cause, &'static str), Traffic>,
    /// Messages to a peer without a connection (never delivered).
    pub dropped: u64,
    /// Warnings the machines logged (a healthy simulated mesh has none).
    pub warnings: Vec<String>,
}

impl Stats {
    /// All messages of one cause.
    pub fn by_cause(&self, cause: Cause) -> Traffic {
        self.sent.iter().filter(|((c, _), _)| *c == cause).fold(
            Traffic::default(),
            |sum, (_, t)| Traffic {
                messages: sum.messages + t.messages,
                bytes: sum.bytes + t.bytes,
            },
        )
    }
}

#[derive(Debug)]
struct Node {
    membership: Membership,
    /// Connected peers and the one-way latency to each.
    links: HashMap<NodeId, Duration>,
}

#[derive(Debug)]
enum EventKind {
    Deliver {
        from: NodeId,
        to: NodeId,
        gossip: Gossip,
        cause: Cause,
    },
    Connect {
        a: NodeId,
        b: NodeId,
        latency: Duration,
    },
    Tick {
        node: NodeId,
    },
}

#[derive(Debug)]
struct Event {
    at: OffsetDateTime,
    seq: u64,
    kind: EventKind,
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Event {}
impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Event {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Which nodes satisfy a condition, and when each first did.
#[derive(Debug, Clone)]
pub struct Convergence {
    /// Per node: the virtual time from the start of the wait until the condition held.
    pub reached: Vec<Option<Duration>>,
}

impl Convergence {
    /// When the last of `nodes` got there (None if one never did).
    pub fn last_of(&self, nodes: impl IntoIterator<Item = NodeId>) -> Option<Duration> {
        nodes
            .into_iter()
            .map(|n| self.reached.get(n).copied().flatten())
            .try_fold(Duration::ZERO, |latest, t| t.map(|t| latest.max(t)))
    }

    /// When every node got there.
    pub fn all(&self) -> Option<Duration> {
        self.last_of(0..self.reached.len())
    }
}

/// The simulated control plane of a whole mesh.
#[derive(Debug)]
pub struct Network {
    now: OffsetDateTime,
    nodes: Vec<Node>,
    names: Vec<String>,
    by_name: HashMap<String, NodeId>,
    queue: BinaryHeap<Reverse<Event>>,
    seq: u64,
    stats: Stats,
}

impl Network {
    /// An empty network whose clock starts at `start`.
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            now: start,
            nodes: Vec::new(),
            names: Vec::new(),
            by_name: HashMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            stats: Stats::default(),
        }
    }

    /// The virtual time.
    pub fn now(&self) -> OffsetDateTime {
        self.now
    }

    /// Counts so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the network has no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A node's machine.
    pub fn membership(&self, node: NodeId) -> &Membership {
        &self.nodes[node].membership
    }

    /// A node's name.
    pub fn name(&self, node: NodeId) -> &str {
        &self.names[node]
    }

    /// A node by name.
    pub fn node(&self, name: &str) -> Option<NodeId> {
        self.by_name.get(name).copied()
    }

    /// Adds a node running `membership` under `name`. Its shell ticks first at `first_tick`
    /// (a daemon that just started ticks at once; spreading the first ticks of a prebuilt mesh
    /// spreads its anti-entropy rounds as a long-running mesh has them), then every
    /// [`SHELL_TICK`].
    pub fn add_node(
        &mut self,
        name: &str,
        membership: Membership,
        first_tick: OffsetDateTime,
    ) -> Result<NodeId, SimError> {
        if self.by_name.contains_key(name) {
            return Err(SimError::DuplicateNode(name.to_owned()));
        }
        let id = self.nodes.len();
        self.nodes.push(Node {
            membership,
            links: HashMap::new(),
        });
        self.names.push(name.to_owned());
        self.by_name.insert(name.to_owned(), id);
        self.schedule(first_tick.max(self.now), EventKind::Tick { node: id });
        Ok(id)
    }

    /// Opens a control connection between `a` and `b` with one-way `latency`. It comes up
    /// after TCP and TLS 1.3 handshakes (two round trips); then both ends reconcile.
    pub fn connect(&mut self, a: NodeId, b: NodeId, latency: Duration) -> Result<(), SimError> {
        self.check(a)?;
        self.check(b)?;
        if a == b {
            return Err(SimError::SelfLink(self.names[a].clone()));
        }
        self.schedule(self.now + latency * 4, EventKind::Connect { a, b, latency });
        Ok(())
    }

    /// Connects at once, without handshakes (for building a mesh that is already up).
    pub fn connect_now(&mut self, a: NodeId, b: NodeId, latency: Duration) -> Result<(), SimError> {
        self.check(a)?;
        self.check(b)?;
        if a == b {
            return Err(SimError::SelfLink(self.names[a].clone()));
        }
        self.link_up(a, b, latency);
        Ok(())
    }

    /// Hands node `node` its own (new) record, as the shell does at start-up or when its
    /// endpoints change.
    pub fn set_own_record(
        &mut self,
        node: NodeId,
        record: crate::control::record::SignedRecord,
    ) -> Result<(), SimError> {
        self.check(node)?;
        let now = self.now;
        let actions = self.nodes[node].membership.set_own_record(record, now);
        self.apply(node, actions, Cause::Change);
        Ok(())
    }

    /// Processes events in time order until the clock reaches `until`.
    pub fn run_until(&mut self, until: OffsetDateTime) {
        self.run(until, &mut |_, _| {});
    }

    /// Processes events until every node satisfies `done` or the clock reaches `deadline`;
    /// re-checks a node only when an event touched it.
    pub fn run_until_converged(
        &mut self,
        deadline: OffsetDateTime,
        done: &dyn Fn(NodeId, &Membership) -> bool,
    ) -> Convergence {
        let start = self.now;
        let mut reached: Vec<Option<Duration>> = (0..self.nodes.len())
            .map(|n| done(n, &self.nodes[n].membership).then_some(Duration::ZERO))
            .collect();
        let mut missing = reached.iter().filter(|r| r.is_none()).count();
        let mut on_touch = |net: &Network, node: NodeId| {
            if reached[node].is_none() && done(node, &net.nodes[node].membership) {
                reached[node] = Some(net.now - start);
                missing -= 1;
            }
            missing == 0
        };
        self.run_while(deadline, &mut on_touch);
        Convergence { reached }
    }

    fn run(&mut self, until: OffsetDateTime, touched: &mut dyn FnMut(&Network, NodeId)) {
        self.run_while(until, &mut |net, node| {
            touched(net, node);
            false
        });
        self.now = self.now.max(until);
    }

    /// Runs events up to `until`; stops early when `touched` says so.
    fn run_while(
        &mut self,
        until: OffsetDateTime,
        touched: &mut dyn FnMut(&Network, NodeId) -> bool,
    ) {
        while let Some(Reverse(next)) = self.queue.peek() {
            if next.at > until {
                break;
            }
            let Reverse(event) = self.queue.pop().expect("peeked");
            self.now = event.at;
            let stop = match event.kind {
                EventKind::Deliver {
                    from,
                    to,
                    gossip,
                    cause,
                } => {
                    if !self.nodes[to].links.contains_key(&from) {
                        self.stats.dropped += 1;
                        continue;
                    }
                    let now = self.now;
                    let actions = self.nodes[to]
                        .membership
                        .receive(&self.names[from], gossip, now);
                    self.apply(to, actions, cause);
                    touched(self, to)
                }
                EventKind::Connect { a, b, latency } => {
                    self.link_up(a, b, latency);
                    touched(self, a) | touched(self, b)
                }
                EventKind::Tick { node } => {
                    let now = self.now;
                    let actions = self.nodes[node].membership.tick(now);
                    self.apply(node, actions, Cause::AntiEntropy);
                    self.schedule(now + SHELL_TICK, EventKind::Tick { node });
                    touched(self, node)
                }
            };
            if stop {
                return;
            }
        }
    }

    fn link_up(&mut self, a: NodeId, b: NodeId, latency: Duration) {
        if self.nodes[a].links.contains_key(&b) {
            return;
        }
        self.nodes[a].links.insert(b, latency);
        self.nodes[b].links.insert(a, latency);
        let actions = self.nodes[a].membership.peer_connected(&self.names[b]);
        self.apply(a, actions, Cause::Change);
        let actions = self.nodes[b].membership.peer_connected(&self.names[a]);
        self.apply(b, actions, Cause::Change);
    }

    /// Carries out what a machine asked for.
    fn apply(&mut self, node: NodeId, actions: Vec<Action>, cause: Cause) {
        for action in actions {
            match action {
                Action::Send { to, gossip } => self.send(node, &to, gossip, cause),
                Action::Disconnect { peer, .. } => {
                    if let Some(peer) = self.node(&peer) {
                        self.nodes[node].links.remove(&peer);
                        self.nodes[peer].links.remove(&node);
                        self.nodes[node]
                            .membership
                            .peer_disconnected(&self.names[peer]);
                        self.nodes[peer]
                            .membership
                            .peer_disconnected(&self.names[node]);
                    }
                }
                Action::Log {
                    warning: true,
                    text,
                } => self
                    .stats
                    .warnings
                    .push(format!("{}: {text}", self.names[node])),
                Action::Log { .. }
                | Action::MembersChanged
                | Action::RecordsUpdated
                | Action::Registry(_) => {}
            }
        }
    }

    fn send(&mut self, from: NodeId, to: &str, gossip: Gossip, cause: Cause) {
        let Some(to) = self.node(to) else {
            self.stats.dropped += 1;
            return;
        };
        let Some(latency) = self.nodes[from].links.get(&to).copied() else {
            self.stats.dropped += 1;
            return;
        };
        let kind = gossip.kind();
        let message = Message::Gossip(gossip);
        // Exactly what the shell writes on the connection; what it could not frame, it
        // would not send either.
        let bytes = match frame::encode(&message) {
            Ok(frame) => frame.len(),
            Err(error) => {
                self.stats.dropped += 1;
                let text = format!(
                    "{}: cannot send to {}: {error}",
                    self.names[from], self.names[to]
                );
                self.stats.warnings.push(text);
                return;
            }
        };
        let Message::Gossip(gossip) = message else {
            unreachable!("built above")
        };
        self.stats.sent.entry((cause, kind)).or_default().add(bytes);
        self.schedule(
            self.now + latency,
            EventKind::Deliver {
                from,
                to,
                gossip,
                cause,
            },
        );
    }

    fn schedule(&mut self, at: OffsetDateTime, kind: EventKind) {
        self.seq += 1;
        self.queue.push(Reverse(Event {
            at,
            seq: self.seq,
            kind,
        }));
    }

    fn check(&self, node: NodeId) -> Result<(), SimError> {
        if node < self.nodes.len() {
            Ok(())
        } else {
            Err(SimError::NoSuchNode(node))
        }
    }
}
