//! Who is in the mesh: the pure state machine that keeps verified membership records and the
//! revocation list, and decides what to send to whom. No I/O: methods take `now` and return
//! [`Action`]s; the shell ([`super::shell`]) sends, logs and reconfigures tunnels.
//!
//! Spreading, and why it costs O(N) messages per change, not O(N^2):
//! - push: a node that learns a newer record from itself or from a spoke forwards it to
//!   every connected peer (a core reaches all cores in one hop, cores being a full mesh);
//!   one that learns it from a core forwards it to its connected spokes only (never back to
//!   the sender). A node that already had it forwards nothing, so each node passes each
//!   change on at most once and a change costs about one message per node;
//! - anti-entropy: every [`ANTI_ENTROPY_INTERVAL`] a node sends one connected peer (chosen at
//!   random) a summary: a SHA-256 over the version of each record it holds and its CRL
//!   number. A peer whose own summary is the same does nothing (the usual case); one whose
//!   summary differs answers with its digest (the versions themselves), to which the first
//!   node answers with what the peer lacks and asks for what it lacks itself. This repairs
//!   what push missed and lets a node that was offline catch up in one exchange. It costs one
//!   32-byte summary per node per interval, independent of changes and of the mesh's size;
//!   sending the digest itself (one entry per member) every time made idle traffic O(N^2)
//!   bytes mesh-wide. A new connection starts with the full digest at once.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use pki::{Crl, NodeRole};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::IteratorRandom;
use ring::digest::{Context, SHA256};
use time::{Duration, OffsetDateTime};

use super::message::Gossip;
use super::record::{Member, SignedRecord};
use super::registry::{SignedRegistry, VerifiedRegistry};

/// How often a node starts an anti-entropy exchange.
pub const ANTI_ENTROPY_INTERVAL: Duration = Duration::seconds(10);
/// Most records accepted in one message (more is a broken or hostile peer).
pub const MAX_RECORDS_PER_MESSAGE: usize = 4096;
/// Every this many anti-entropy rounds, the CA registry record goes along with the summary
/// (about once a minute): a node that missed one catches up without a digest of its own.
const REGISTRY_EVERY_ROUNDS: u64 = 6;
/// Most refused registry records remembered so that each is logged once.
const MAX_REFUSED_REGISTRY: usize = 64;

/// What the shell must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a message on the control connection to this node.
    Send { to: String, gossip: Gossip },
    /// The set of members (or their endpoints) changed: re-derive the tunnels.
    MembersChanged,
    /// A record was replaced by a newer one that changes no tunnel (a renewed certificate):
    /// store the membership.
    RecordsUpdated,
    /// Close the control connection to this node (it was revoked).
    Disconnect { peer: String, reason: String },
    /// Something a person should see in the log.
    Log { warning: bool, text: String },
    /// A newer CA registry record arrived (its signature checked): a CA copy merges it.
    Registry(Box<VerifiedRegistry>),
}

/// The membership of the mesh as one node sees it.
#[derive(Debug)]
pub struct Membership {
    own_name: String,
    ca_der: Vec<u8>,
    crl: Option<Crl>,
    members: BTreeMap<String, Member>,
    /// Versions we refused, so a peer still holding them is not asked again and again.
    refused: BTreeMap<String, u64>,
    connected: BTreeSet<String>,
    next_anti_entropy: Option<OffsetDateTime>,
    rng: SmallRng,
    /// The newest CA registry record (by term, then version), kept and relayed.
    registry: Option<VerifiedRegistry>,
    /// Hashes of registry records refused, so that each is logged once.
    refused_registry: BTreeSet<String>,
    anti_entropy_rounds: u64,
}

impl Membership {
    /// A node called `own_name` in the mesh whose CA certificate is `ca_der`. `seed` makes the
    /// random choices (fanout, anti-entropy partner) reproducible in tests.
    pub fn new(own_name: &str, ca_der: Vec<u8>, seed: u64) -> Self {
        Self {
            own_name: own_name.to_owned(),
            ca_der,
            crl: None,
            members: BTreeMap::new(),
            refused: BTreeMap::new(),
            connected: BTreeSet::new(),
            next_anti_entropy: None,
            rng: SmallRng::seed_from_u64(seed),
            registry: None,
            refused_registry: BTreeSet::new(),
            anti_entropy_rounds: 0,
        }
    }

    /// The newest CA registry record this node holds.
    pub fn registry(&self) -> Option<&VerifiedRegistry> {
        self.registry.as_ref()
    }

    /// A registry record this node's CA copy made: kept and sent to every connected peer.
    pub fn set_own_registry(&mut self, signed: SignedRegistry) -> Vec<Action> {
        let mut actions = Vec::new();
        self.take_registry(None, signed, &mut actions);
        actions
    }

    /// Verifies a registry record from `from` (None: this node's own) and keeps and spreads
    /// it if it is newer than the one held. A record that does not verify, or of an older
    /// term than the one held, is refused and logged once.
    fn take_registry(
        &mut self,
        from: Option<&str>,
        signed: SignedRegistry,
        actions: &mut Vec<Action>,
    ) {
        let source = from.map_or("this node".to_owned(), |f| format!("peer {f}"));
        let verified = match signed.verify(&self.ca_der) {
            Ok(verified) => verified,
            Err(why) => {
                let key = pki::sha256_hex(&signed.signature);
                self.refuse_registry(
                    key,
                    format!("CA registry record from {source} refused: {why}"),
                    actions,
                );
                return;
            }
        };
        let rank = |v: &VerifiedRegistry| (v.record.term, v.record.version);
        if let Some(held) = &self.registry {
            if held.record.term > verified.record.term {
                let text = format!(
                    "CA registry record from {source} refused: it is of term {} by {}, older than \
                     term {} by {}",
                    verified.record.term,
                    verified.record.holder,
                    held.record.term,
                    held.record.holder
                );
                self.refuse_registry(verified.hash, text, actions);
                return;
            }
            if rank(held) >= rank(&verified) {
                return;
            }
        }
        for peer in self.spread_targets(from) {
            actions.push(send(
                &peer,
                Gossip::Registry {
                    record: verified.signed.clone(),
                },
            ));
        }
        actions.push(Action::Registry(Box::new(verified.clone())));
        self.registry = Some(verified);
    }

    fn refuse_registry(&mut self, key: String, text: String, actions: &mut Vec<Action>) {
        if self.refused_registry.len() < MAX_REFUSED_REGISTRY && self.refused_registry.insert(key) {
            log(actions, true, text);
        }
    }

    /// The verified members, by name (our own record included).
    pub fn members(&self) -> impl Iterator<Item = &Member> + Clone {
        self.members.values()
    }

    /// One member.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.get(name)
    }

    /// The current revocation list.
    pub fn crl(&self) -> Option<&Crl> {
        self.crl.as_ref()
    }

    /// The connected peers.
    pub fn connected(&self) -> impl Iterator<Item = &str> {
        self.connected.iter().map(String::as_str)
    }

    /// Every record, for a joining node or for the state directory.
    pub fn records(&self) -> Vec<SignedRecord> {
        self.members.values().map(|m| m.record.clone()).collect()
    }

    /// Our own record changed (start-up, new endpoints, renewed certificate).
    pub fn set_own_record(&mut self, record: SignedRecord, now: OffsetDateTime) -> Vec<Action> {
        let mut actions = Vec::new();
        match record.verify(&self.ca_der, self.crl.as_ref(), now) {
            Ok(member) if member.identity.name == self.own_name => {
                if self.accept(member, &mut actions) {
                    self.push(&[record], None, &mut actions);
                }
            }
            Ok(member) => log(
                &mut actions,
                true,
                format!(
                    "own record names {:?}, not this node {:?}; not used",
                    member.identity.name, self.own_name
                ),
            ),
            Err(error) => log(
                &mut actions,
                true,
                format!("own membership record is not valid: {error}"),
            ),
        }
        actions
    }

    /// The record of a foreign router this node stands in for (signed here with the key its
    /// certificate was issued for): accepted and spread like our own, if the certificate says
    /// the router is foreign and hangs off this node.
    pub fn set_hosted_record(&mut self, record: SignedRecord, now: OffsetDateTime) -> Vec<Action> {
        let mut actions = Vec::new();
        match record.verify(&self.ca_der, self.crl.as_ref(), now) {
            Ok(member)
                if member.identity.foreign
                    && member.identity.core.as_deref() == Some(self.own_name.as_str()) =>
            {
                if let Some(conflict) = self.conflict(&member) {
                    log(
                        &mut actions,
                        true,
                        format!(
                            "not standing in for router {:?}: {conflict}",
                            member.identity.name
                        ),
                    );
                } else if self.accept(member, &mut actions) {
                    self.push(&[record], None, &mut actions);
                }
            }
            Ok(member) => log(
                &mut actions,
                true,
                format!(
                    "{:?} is not a foreign router of this node (its certificate says core {:?}, \
                     foreign {}); not standing in for it",
                    member.identity.name, member.identity.core, member.identity.foreign
                ),
            ),
            Err(error) => log(
                &mut actions,
                true,
                format!("a hosted router's membership record is not valid: {error}"),
            ),
        }
        actions
    }

    /// Installs a revocation list (from the local CA or a peer). Members whose certificates it
    /// revokes are removed and disconnected. Older or equal CRLs are ignored.
    pub fn install_crl(&mut self, der: &[u8], from: Option<&str>) -> Vec<Action> {
        let mut actions = Vec::new();
        let source = from.map_or("the local CA".to_owned(), |f| format!("peer {f}"));
        let crl = match Crl::parse(der, &self.ca_der) {
            Ok(crl) => crl,
            Err(error) => {
                log(
                    &mut actions,
                    true,
                    format!("revocation list from {source} dropped: {error}"),
                );
                return actions;
            }
        };
        if self
            .crl
            .as_ref()
            .is_some_and(|old| old.crl_number() >= crl.crl_number())
        {
            return actions;
        }
        log(
            &mut actions,
            false,
            format!(
                "revocation list {} from {source} installed ({} revoked)",
                crl.crl_number(),
                crl.entries().count()
            ),
        );
        let revoked: Vec<String> = self
            .members
            .values()
            .filter(|m| crl.is_revoked(&m.serial))
            .map(|m| m.identity.name.clone())
            .collect();
        for name in revoked {
            let member = self.members.remove(&name).expect("listed above");
            self.refused.insert(name.clone(), member.version);
            log(
                &mut actions,
                true,
                format!(
                    "node {name} removed: its certificate {} is revoked",
                    member.serial
                ),
            );
            if self.connected.contains(&name) {
                actions.push(Action::Disconnect {
                    peer: name.clone(),
                    reason: "certificate revoked".into(),
                });
            }
            actions.push(Action::MembersChanged);
        }
        actions.dedup();
        self.crl = Some(crl);
        let gossip = Gossip::Crl { der: der.to_vec() };
        for peer in self.spread_targets(from) {
            actions.push(Action::Send {
                to: peer,
                gossip: gossip.clone(),
            });
        }
        actions
    }

    /// A control connection to `peer` (already authenticated) came up: reconcile at once.
    pub fn peer_connected(&mut self, peer: &str) -> Vec<Action> {
        self.connected.insert(peer.to_owned());
        vec![Action::Send {
            to: peer.to_owned(),
            gossip: self.digest(),
        }]
    }

    /// `peer`'s hello said it reads CA registry records: the newest one held goes to it (not
    /// at connection, when what the peer reads is not known yet and it would be withheld).
    pub fn peer_reads_registry(&self, peer: &str) -> Vec<Action> {
        self.registry
            .iter()
            .map(|registry| {
                send(
                    peer,
                    Gossip::Registry {
                        record: registry.signed.clone(),
                    },
                )
            })
            .collect()
    }

    /// The control connection to `peer` went down.
    pub fn peer_disconnected(&mut self, peer: &str) {
        self.connected.remove(peer);
    }

    /// Time passes: start anti-entropy when due, drop members whose certificates expired.
    pub fn tick(&mut self, now: OffsetDateTime) -> Vec<Action> {
        let mut actions = Vec::new();
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.not_after <= now && m.identity.name != self.own_name)
            .map(|m| m.identity.name.clone())
            .collect();
        for name in expired {
            self.members.remove(&name);
            log(
                &mut actions,
                true,
                format!("node {name} removed: its certificate expired"),
            );
            actions.push(Action::MembersChanged);
        }
        actions.dedup();
        if self.next_anti_entropy.is_none_or(|due| now >= due) {
            self.next_anti_entropy = Some(now + ANTI_ENTROPY_INTERVAL);
            self.anti_entropy_rounds += 1;
            if let Some(peer) = self.pick_peers(None, 1).pop() {
                if self
                    .anti_entropy_rounds
                    .is_multiple_of(REGISTRY_EVERY_ROUNDS)
                    && let Some(registry) = &self.registry
                {
                    actions.push(send(
                        &peer,
                        Gossip::Registry {
                            record: registry.signed.clone(),
                        },
                    ));
                }
                actions.push(Action::Send {
                    to: peer,
                    gossip: Gossip::Summary {
                        hash: self.summary_hash(),
                    },
                });
            }
        }
        actions
    }

    /// A gossip message from connected peer `from`.
    pub fn receive(&mut self, from: &str, gossip: Gossip, now: OffsetDateTime) -> Vec<Action> {
        let mut actions = Vec::new();
        match gossip {
            Gossip::Digest {
                versions,
                crl_number,
            } => self.answer_digest(from, &versions, crl_number, &mut actions),
            Gossip::Summary { hash } => {
                if hash != self.summary_hash() {
                    actions.push(send(from, self.digest()));
                }
            }
            Gossip::Records { records } => {
                if records.len() > MAX_RECORDS_PER_MESSAGE {
                    log(
                        &mut actions,
                        true,
                        format!(
                            "peer {from} sent {} records in one message (limit {MAX_RECORDS_PER_MESSAGE}); dropped",
                            records.len()
                        ),
                    );
                    return actions;
                }
                let mut fresh = Vec::new();
                for record in records {
                    if self.receive_record(from, &record, now, &mut actions) {
                        fresh.push(record);
                    }
                }
                if !fresh.is_empty() {
                    self.push(&fresh, Some(from), &mut actions);
                }
            }
            Gossip::Want { names, crl } => {
                let records: Vec<SignedRecord> = names
                    .iter()
                    .take(MAX_RECORDS_PER_MESSAGE)
                    .filter_map(|name| self.members.get(name))
                    .map(|m| m.record.clone())
                    .collect();
                if !records.is_empty() {
                    actions.push(send(from, Gossip::Records { records }));
                }
                if crl && let Some(crl) = &self.crl {
                    actions.push(send(
                        from,
                        Gossip::Crl {
                            der: crl.der().to_vec(),
                        },
                    ));
                }
            }
            Gossip::Crl { der } => actions.extend(self.install_crl(&der, Some(from))),
            Gossip::Registry { record } => self.take_registry(Some(from), record, &mut actions),
        }
        actions
    }

    /// A hash of what [`Self::digest`] says: every (name, version) in name order, then the
    /// CRL number, each length-prefixed so that no two digests hash the same input. Equal
    /// hashes mean the two nodes hold the same versions and the same CRL.
    pub fn summary_hash(&self) -> [u8; 32] {
        let mut context = Context::new(&SHA256);
        context.update(b"meshd membership summary v1\0");
        context.update(&(self.members.len() as u64).to_be_bytes());
        for (name, member) in &self.members {
            context.update(&(name.len() as u64).to_be_bytes());
            context.update(name.as_bytes());
            context.update(&member.version.to_be_bytes());
        }
        match self.crl.as_ref().map(Crl::crl_number) {
            Some(number) => {
                context.update(&[1]);
                context.update(&number.to_be_bytes());
            }
            None => context.update(&[0]),
        }
        context
            .finish()
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes")
    }

    /// Our digest: every record's version and our CRL number.
    fn digest(&self) -> Gossip {
        Gossip::Digest {
            versions: self
                .members
                .iter()
                .map(|(name, m)| (name.clone(), m.version))
                .collect(),
            crl_number: self.crl.as_ref().map(Crl::crl_number),
        }
    }

    fn answer_digest(
        &mut self,
        from: &str,
        theirs: &BTreeMap<String, u64>,
        their_crl: Option<u64>,
        actions: &mut Vec<Action>,
    ) {
        let our_crl = self.crl.as_ref().map(Crl::crl_number);
        // Revocations first, so the peer drops revoked records before we compare the rest.
        if our_crl > their_crl
            && let Some(crl) = &self.crl
        {
            actions.push(send(
                from,
                Gossip::Crl {
                    der: crl.der().to_vec(),
                },
            ));
        }
        let newer_here: Vec<SignedRecord> = self
            .members
            .iter()
            .filter(|(name, m)| theirs.get(*name).is_none_or(|v| *v < m.version))
            .map(|(_, m)| m.record.clone())
            .collect();
        if !newer_here.is_empty() {
            actions.push(send(
                from,
                Gossip::Records {
                    records: newer_here,
                },
            ));
        }
        let wanted: Vec<String> = theirs
            .iter()
            .filter(|(name, version)| {
                self.members
                    .get(*name)
                    .is_none_or(|m| m.version < **version)
                    && self.refused.get(*name).is_none_or(|r| r < *version)
            })
            .map(|(name, _)| name.clone())
            .take(MAX_RECORDS_PER_MESSAGE)
            .collect();
        let want_crl = their_crl > our_crl;
        if !wanted.is_empty() || want_crl {
            actions.push(send(
                from,
                Gossip::Want {
                    names: wanted,
                    crl: want_crl,
                },
            ));
        }
    }

    /// Verifies and, if newer, stores one record. True if it was new to us.
    fn receive_record(
        &mut self,
        from: &str,
        record: &SignedRecord,
        now: OffsetDateTime,
        actions: &mut Vec<Action>,
    ) -> bool {
        let member = match record.verify(&self.ca_der, self.crl.as_ref(), now) {
            Ok(member) => member,
            Err(error) => {
                self.refuse(from, None, record.version, &error.to_string(), actions);
                return false;
            }
        };
        let name = member.identity.name.clone();
        if name == self.own_name {
            // Only we speak for ourselves: an older copy of our own record is harmless (also
            // one with the certificate we had before a renewal), a newer one with a
            // different certificate under our name is worth a warning.
            let ours = self.members.get(&name).map(|own| &own.record);
            if ours.is_some_and(|own| {
                own.certificate != record.certificate && own.version <= record.version
            }) {
                self.refuse(
                    from,
                    Some(&name),
                    record.version,
                    "it claims to be this node with another certificate",
                    actions,
                );
            }
            return false;
        }
        if let Some(conflict) = self.conflict(&member) {
            self.refuse(from, Some(&name), record.version, &conflict, actions);
            return false;
        }
        self.accept(member, actions)
    }

    /// Stores `member` if it is newer than what we hold. True if it was.
    fn accept(&mut self, member: Member, actions: &mut Vec<Action>) -> bool {
        let name = member.identity.name.clone();
        if self
            .members
            .get(&name)
            .is_some_and(|old| old.version >= member.version)
        {
            return false;
        }
        let changed = self
            .members
            .get(&name)
            .is_none_or(|old| old.identity != member.identity || old.endpoints != member.endpoints);
        if !self.members.contains_key(&name) {
            log(
                actions,
                false,
                format!(
                    "node {name} ({}) joined the membership",
                    member.identity.role
                ),
            );
        }
        self.members.insert(name, member);
        actions.push(if changed {
            Action::MembersChanged
        } else {
            Action::RecordsUpdated
        });
        true
    }

    fn refuse(
        &mut self,
        from: &str,
        name: Option<&str>,
        version: u64,
        why: &str,
        actions: &mut Vec<Action>,
    ) {
        let about = name.map_or(String::new(), |n| format!(" for node {n}"));
        log(
            actions,
            true,
            format!("membership record{about} from peer {from} dropped: {why}"),
        );
        if let Some(name) = name {
            self.refused.insert(name.to_owned(), version);
        }
    }

    /// Whether `member` claims address space another member holds, or names a core that is
    /// not one. A spoke's IPv6 /80 lies inside its own core's /64 by design.
    fn conflict(&self, member: &Member) -> Option<String> {
        let id = &member.identity;
        let claims = |m: &Member| -> Vec<IpNet> {
            m.identity
                .prefixes
                .iter()
                .chain(&m.identity.lan_prefixes)
                .copied()
                .collect()
        };
        for other in self.members.values() {
            let oid = &other.identity;
            if oid.name == id.name {
                continue;
            }
            if oid.wireguard_key == id.wireguard_key {
                return Some(format!("its WireGuard key is the one of node {}", oid.name));
            }
            let nested = |spoke: &pki::NodeIdentity, core: &pki::NodeIdentity| {
                spoke.role == NodeRole::Spoke && spoke.core.as_deref() == Some(&core.name)
            };
            for mine in claims(member) {
                for theirs in claims(other) {
                    let overlap =
                        mine.contains(&theirs.network()) || theirs.contains(&mine.network());
                    let allowed = matches!((mine, theirs), (IpNet::V6(_), IpNet::V6(_)))
                        && (nested(id, oid) || nested(oid, id));
                    if overlap && !allowed {
                        return Some(format!(
                            "its prefix {mine} overlaps {theirs} of node {}",
                            oid.name
                        ));
                    }
                }
            }
        }
        None
    }

    /// Pushes fresh records to the peers [`Self::spread_targets`] picks.
    fn push(&mut self, records: &[SignedRecord], except: Option<&str>, actions: &mut Vec<Action>) {
        for peer in self.spread_targets(except) {
            actions.push(send(
                &peer,
                Gossip::Records {
                    records: records.to_vec(),
                },
            ));
        }
    }

    /// Where news goes, never back to `except` (where it came from):
    /// - news from this node itself, from one of its spokes or from the local CA goes to
    ///   every connected peer: a core is connected to every other core, so one hop reaches
    ///   all of them, with one message per core instead of a gossip that leaves some cores
    ///   to anti-entropy (several seconds at 200 nodes in `control::sim`);
    /// - news from a core goes only to the connected spokes (a spoke hears only from its core
    ///   and forwards nothing): the other cores heard it from the author. A core the author
    ///   could not reach catches up by anti-entropy.
    ///
    /// So a change costs about one message per node (one per connection of its author, one
    /// per spoke), not O(N²).
    fn spread_targets(&self, except: Option<&str>) -> Vec<String> {
        let role = |name: &str| self.members.get(name).map(|m| m.identity.role);
        let from_core = except.is_some_and(|p| role(p) == Some(NodeRole::Core));
        self.connected
            .iter()
            .filter(|p| Some(p.as_str()) != except)
            .filter(|p| !from_core || role(p) == Some(NodeRole::Spoke))
            .cloned()
            .collect()
    }

    /// Up to `count` random connected peers, never `except`.
    fn pick_peers(&mut self, except: Option<&str>, count: usize) -> Vec<String> {
        self.connected
            .iter()
            .filter(|p| Some(p.as_str()) != except)
            .cloned()
            .choose_multiple(&mut self.rng, count)
    }
}

fn send(to: &str, gossip: Gossip) -> Action {
    Action::Send {
        to: to.to_owned(),
        gossip,
    }
}

fn log(actions: &mut Vec<Action>, warning: bool, text: String) {
    actions.push(Action::Log { warning, text });
}
