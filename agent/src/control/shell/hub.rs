//! The hub: the one task that owns the [`Membership`] machine, the connections' senders and
//! this node's certificate. It takes [`Event`]s from the listener, the dialer, the connections,
//! the renewal tasks and the [`ControlHandle`](super::ControlHandle), ticks, and carries out
//! the machine's [`Action`]s.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mesh_config::registry::RegistryRecord;
use pki::{NodeCertificate, NodeIdentity, NodeKeyPair, SerialNumber};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio_rustls::TlsConnector;

use super::preflight::PREFLIGHT_TIMEOUT;
use super::registry::Publisher;
use super::{ControlSettings, MembershipCounts};
use crate::control::hosted::HostedRouters;
use crate::control::log_throttle::LogThrottle;
use crate::control::membership::{Action, Membership};
use crate::control::message::{Gossip, Hello, JoinRequest, Message, RenewRequest};
use crate::control::protocol::{OncePerPeer, PeerProtocol};
use crate::control::redial::Redial;
use crate::control::registry::SignedRegistry;
use crate::control::renewal::Renewal;
use crate::control::renewal_targets::LastKnown;
use crate::control::store;
use crate::control::tls::{OwnCertificate, Trust};
use crate::peerset::KnownPeer;

/// How often the hub ticks (anti-entropy, dialing, the CRL file).
const TICK: Duration = Duration::from_millis(500);

/// What the hub is told.
pub(super) enum Event {
    Connected {
        name: String,
        /// The serial of the certificate the peer presented.
        serial: SerialNumber,
        id: u64,
        initiator: String,
        sender: mpsc::Sender<Message>,
        abort: AbortHandle,
    },
    Closed {
        name: String,
        id: u64,
    },
    Gossip {
        name: String,
        gossip: Gossip,
    },
    /// The peer's hello, the first message of a connection of protocol version 2.
    Hello {
        name: String,
        id: u64,
        hello: Hello,
    },
    /// The peer sent a message of a type this node does not know (it runs a newer meshd).
    Skipped {
        name: String,
        kind: String,
    },
    Join {
        request: Box<JoinRequest>,
        reply: oneshot::Sender<Message>,
    },
    DialFailed {
        name: String,
        error: String,
    },
    /// `[node] endpoints` changed at a reload.
    SetEndpoints(Vec<String>),
    /// A member asks (us, the CA holder) for a new certificate.
    Renew {
        current: Box<NodeCertificate>,
        request: RenewRequest,
        reply: oneshot::Sender<Message>,
    },
    /// Our own renewal ended: the new certificate (PEM) or why not, and the node that issued
    /// it when that was another node than this one.
    RenewalDone {
        result: Result<String, String>,
        holder: Option<String>,
    },
    /// The operator asks for a renewal now (`meshd renew`).
    RenewNow,
    /// `meshd router add` stored a foreign router: stand in for it.
    LoadRouters,
    /// A hosted router's renewal ended: its new certificate (PEM) or why not.
    HostedRenewalDone {
        name: String,
        result: Result<String, String>,
    },
    /// The CA registry record was built from `ca/db.json`: a new one to spread, nothing new,
    /// or why it could not be.
    RegistryBuilt(Result<Option<(RegistryRecord, SignedRegistry)>, String>),
}

/// A member connection as the hub keeps it.
pub(super) struct Connection {
    pub(super) id: u64,
    pub(super) initiator: String,
    pub(super) sender: mpsc::Sender<Message>,
    pub(super) abort: AbortHandle,
    /// The serial of the peer's certificate, to close the connection when it is revoked.
    pub(super) serial: SerialNumber,
    /// Whether the peer has said anything yet: only then is the connection "up" (a peer
    /// that refuses our certificate closes it before its first message).
    pub(super) heard: bool,
    /// The CRL number in the peer's last digest.
    pub(super) advertised_crl: Option<Option<u64>>,
    /// What the peer understands: the base set until its hello says more.
    pub(super) protocol: PeerProtocol,
}

/// Who we are, and what renewing our certificate needs.
pub(super) struct Own {
    pub(super) identity: NodeIdentity,
    /// The serial of the certificate in use: a revocation list that names it stops dialing.
    pub(super) serial: SerialNumber,
    /// The TLS key, for renewal requests and for signing our membership records.
    pub(super) key: NodeKeyPair,
    /// The certificate presented in handshakes (replaced on renewal).
    pub(super) certificate: Arc<OwnCertificate>,
    /// Version of our latest membership record.
    pub(super) record_version: u64,
    /// The node holding the CA, where renewals go.
    pub(super) ca_holder: String,
    pub(super) renewal: Renewal,
    pub(super) renewal_connector: TlsConnector,
    /// Stored records of nodes that did not verify at start (expired while this node was
    /// off): renewal targets, until this node renews.
    pub(super) last_known: LastKnown,
}

/// The hub task's state.
pub(super) struct Hub {
    pub(super) settings: ControlSettings,
    pub(super) own: Own,
    pub(super) trust: Arc<Trust>,
    pub(super) membership: Membership,
    pub(super) connector: TlsConnector,
    /// Dials without ALPN, for a member older than the hello (protocol version 1).
    pub(super) legacy_connector: TlsConnector,
    /// The foreign routers this node stands in for.
    pub(super) hosted: HostedRouters,
    pub(super) events_tx: mpsc::Sender<Event>,
    pub(super) connections: HashMap<String, Connection>,
    pub(super) dialing: HashSet<String>,
    /// When to dial each member again after failures.
    pub(super) redial: HashMap<String, Redial>,
    /// When the hub started (for [`PREFLIGHT_TIMEOUT`]).
    pub(super) started: Instant,
    /// Whether tunnels and members are published yet: not before a peer has confirmed that
    /// our revocation list is current (or [`PREFLIGHT_TIMEOUT`] passed), so that a node
    /// that missed a revocation while down never brings up the revoked peer's tunnel.
    pub(super) tunnels_published: bool,
    /// Said once: this node's own certificate is revoked, so it stopped dialing.
    pub(super) warned_self_revoked: bool,
    /// The resolver's latest answers (members' endpoint names to addresses).
    pub(super) answers: Arc<crate::dns::Answers>,
    /// DNS names per member, given to the resolver and to [`ControlHandle::member_names`].
    pub(super) member_names_tx: watch::Sender<BTreeMap<String, BTreeSet<String>>>,
    pub(super) peers_tx: watch::Sender<Vec<KnownPeer>>,
    pub(super) members_tx: watch::Sender<Vec<NodeIdentity>>,
    pub(super) counts_tx: watch::Sender<MembershipCounts>,
    pub(super) next_id: u64,
    pub(super) crl_number: Option<u64>,
    /// Refused joins: the first in a window is logged, the rest counted.
    pub(super) join_refusals: Arc<std::sync::Mutex<LogThrottle>>,
    /// Skipped messages of unknown types: each type logged once per peer, all counted.
    pub(super) skipped: OncePerPeer,
    /// Messages (or records) not sent because the peer did not announce what they need:
    /// said once per peer and feature.
    pub(super) withheld: OncePerPeer,
    /// The CA registry record this node publishes when it is the active holder.
    pub(super) registry: Publisher,
}

/// The resolver's next changed answers; `None` once it is gone (then never asked again).
async fn next_answers(
    answers: &mut Option<watch::Receiver<Arc<crate::dns::Answers>>>,
) -> Option<Arc<crate::dns::Answers>> {
    match answers {
        Some(receiver) => match receiver.changed().await {
            Ok(()) => Some(receiver.borrow_and_update().clone()),
            Err(_) => None,
        },
        None => std::future::pending().await,
    }
}

impl Hub {
    pub(super) async fn run(mut self, mut events: mpsc::Receiver<Event>, startup: Vec<Action>) {
        self.apply(startup);
        if self.settings.state.is_ca_holder() {
            // The CA's own list is the newest there is.
            self.publish_tunnels("this node holds the CA");
        } else if !self.has_peer_to_ask() {
            self.publish_tunnels("no member to ask is known");
        }
        self.members_changed();
        self.dial_missing();
        let mut tick = tokio::time::interval(TICK);
        let mut answers = self
            .settings
            .resolver
            .as_ref()
            .map(crate::dns::Resolver::answers);
        loop {
            tokio::select! {
                _ = tick.tick() => self.on_tick(),
                changed = next_answers(&mut answers) => match changed {
                    // A name's addresses changed: the tunnels follow at once.
                    Some(current) => {
                        self.answers = current;
                        self.members_changed();
                    }
                    None => answers = None,
                },
                event = events.recv() => match event {
                    Some(event) => self.on_event(event),
                    None => return,
                },
            }
        }
    }

    fn on_tick(&mut self) {
        let now = OffsetDateTime::now_utc();
        let actions = self.membership.tick(now);
        self.apply(actions);
        self.poll_renewal(now);
        self.poll_hosted_renewals(now);
        // `meshd revoke` on the CA holder writes a new CRL file: pick it up.
        match store::read_crl(&self.settings.state) {
            Ok(Some(der)) => {
                let actions = self.membership.install_crl(&der, None);
                self.apply(actions);
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "cannot read the revocation list"),
        }
        self.forget_revoked_routers();
        self.poll_registry();
        if !self.tunnels_published && self.started.elapsed() >= PREFLIGHT_TIMEOUT {
            tracing::warn!(
                "no member confirmed the revocation list within {PREFLIGHT_TIMEOUT:?}; \
                 bringing up tunnels from the stored membership"
            );
            self.tunnels_published = true;
            self.members_changed();
        }
        self.dial_missing();
    }

    /// Whether the current revocation list names `serial`.
    pub(super) fn is_revoked(&self, serial: &SerialNumber) -> bool {
        self.membership
            .crl()
            .is_some_and(|crl| crl.is_revoked(serial))
    }

    /// Closes every control connection whose peer certificate the current revocation list
    /// names, members or not: a handshake that finished just before the list arrived must
    /// not become a lasting connection.
    fn close_revoked_connections(&mut self) {
        let revoked: Vec<String> = self
            .connections
            .iter()
            .filter(|(_, c)| self.is_revoked(&c.serial))
            .map(|(name, _)| name.clone())
            .collect();
        for name in revoked {
            if let Some(connection) = self.connections.remove(&name) {
                connection.abort.abort();
                self.membership.peer_disconnected(&name);
                tracing::warn!(peer = %name, "control connection closed: its certificate is revoked");
            }
        }
    }

    /// A dial or a connection to `name` failed: wait before the next attempt, longer each
    /// time, and say so once per attempt.
    fn redial_later(&mut self, name: &str, why: &str) {
        let redial = self.redial.entry(name.to_owned()).or_default();
        let wait = redial.failed(Instant::now(), rand::random());
        let attempts = redial.failures();
        tracing::warn!(
            peer = %name,
            attempts,
            "no control connection to {name}: {why}; next attempt in {}",
            humantime::format_duration(Duration::from_secs(wait.as_secs().max(1)))
        );
    }

    fn on_event(&mut self, event: Event) {
        let now = OffsetDateTime::now_utc();
        match event {
            Event::Connected {
                name,
                serial,
                id,
                initiator,
                sender,
                abort,
            } => {
                self.dialing.remove(&name);
                if self.is_revoked(&serial) {
                    abort.abort();
                    tracing::warn!(peer = %name, "control connection refused: its certificate is revoked");
                    return;
                }
                if let Some(existing) = self.connections.get(&name) {
                    let preferred = self.own.identity.name.clone().min(name.clone());
                    if existing.initiator == preferred && initiator != preferred {
                        abort.abort();
                        return;
                    }
                    existing.abort.abort();
                }
                self.connections.insert(
                    name.clone(),
                    Connection {
                        id,
                        initiator,
                        sender,
                        abort,
                        serial,
                        heard: false,
                        advertised_crl: None,
                        protocol: PeerProtocol::legacy(),
                    },
                );
                let actions = self.membership.peer_connected(&name);
                self.apply(actions);
            }
            Event::Closed { name, id } => {
                if self.connections.get(&name).is_some_and(|c| c.id == id) {
                    let connection = self.connections.remove(&name).expect("checked above");
                    self.membership.peer_disconnected(&name);
                    if connection.heard {
                        tracing::info!(peer = %name, "control connection down");
                    } else if connection.initiator == self.own.identity.name {
                        // Only the side that dials backs off; the other waits to be dialed.
                        self.redial_later(
                            &name,
                            "it closed the connection before saying anything (it refuses this \
                             node's certificate if it was revoked or expired)",
                        );
                        self.check_preflight();
                    }
                }
            }
            Event::Gossip { name, gossip } => {
                if let Some(connection) = self.heard_from(&name)
                    && let Gossip::Digest { crl_number, .. } = &gossip
                {
                    connection.advertised_crl = Some(*crl_number);
                }
                let actions = self.membership.receive(&name, gossip, now);
                self.apply(actions);
                self.check_preflight();
            }
            Event::Hello { name, id, hello } => {
                if let Some(connection) = self.connections.get_mut(&name)
                    && connection.id == id
                {
                    connection.protocol = PeerProtocol::from_hello(hello);
                    let registry = connection.protocol.supports(Gossip::REGISTRY);
                    self.heard_from(&name);
                    if registry {
                        let actions = self.membership.peer_reads_registry(&name);
                        self.apply(actions);
                    }
                }
            }
            Event::Skipped { name, kind } => {
                self.heard_from(&name);
                if self.skipped.first(&name, &kind) {
                    // Expected while a mesh is being upgraded: said, not warned.
                    tracing::info!(peer = %name, %kind,
                        "control message of a type this node does not know skipped (the peer \
                         runs a newer meshd); more of this type from this peer are only counted");
                }
                self.apply(Vec::new());
            }
            Event::Join { request, reply } => self.answer_join(request, reply, now),
            Event::DialFailed { name, error } => {
                self.dialing.remove(&name);
                self.redial_later(&name, &error);
                self.check_preflight();
            }
            Event::SetEndpoints(endpoints) => self.set_endpoints(endpoints, now),
            Event::Renew {
                current,
                request,
                reply,
            } => self.answer_renewal(current, request, reply, now),
            Event::RenewNow => self.renew_now(now),
            Event::LoadRouters => self.load_routers(now),
            Event::HostedRenewalDone { name, result } => {
                self.hosted_renewal_done(name, result, now)
            }
            Event::RenewalDone { result, holder } => self.renewal_done(result, holder, now),
            Event::RegistryBuilt(result) => self.registry_built(result),
        }
    }

    /// The connection to `name` said something: it is up (said once per connection).
    fn heard_from(&mut self, name: &str) -> Option<&mut Connection> {
        let connection = self.connections.get_mut(name)?;
        if !connection.heard {
            connection.heard = true;
            let protocol = &connection.protocol;
            tracing::info!(peer = %name, protocol = protocol.version,
                meshd = %protocol.software.as_deref().unwrap_or("-"), "control connection up");
            if let Some(redial) = self.redial.get_mut(name) {
                redial.succeeded();
            }
        }
        Some(connection)
    }

    pub(super) fn apply(&mut self, actions: Vec<Action>) {
        let mut changed = false;
        for action in actions {
            match action {
                Action::Send { to, gossip } => {
                    let Some(connection) = self.connections.get(&to) else {
                        continue;
                    };
                    let (gossip, withheld) = connection.protocol.admit(gossip);
                    if let Some(withheld) = withheld
                        && self.withheld.first(&to, withheld.0)
                    {
                        tracing::info!(peer = %to, feature = withheld.0,
                            "control message withheld: the peer did not announce this feature (it \
                             runs an older meshd); later ones are withheld without a line");
                    }
                    let Some(gossip) = gossip else {
                        continue;
                    };
                    match connection.sender.try_send(Message::Gossip(gossip)) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            tracing::warn!(peer = %to, "control connection backlogged; message dropped");
                        }
                        // The connection just ended; its Closed event is on its way.
                        Err(mpsc::error::TrySendError::Closed(_)) => {}
                    }
                }
                Action::MembersChanged => changed = true,
                Action::RecordsUpdated => self.store_members(),
                Action::Disconnect { peer, reason } => {
                    if let Some(connection) = self.connections.remove(&peer) {
                        connection.abort.abort();
                        self.membership.peer_disconnected(&peer);
                        tracing::warn!(%peer, %reason, "control connection closed");
                    }
                }
                Action::Log {
                    warning: true,
                    text,
                } => tracing::warn!("{text}"),
                Action::Log {
                    warning: false,
                    text,
                } => tracing::info!("{text}"),
                Action::Registry(verified) => self.merge_registry(*verified),
            }
        }
        let counts = MembershipCounts {
            members: self.membership.members().count(),
            revoked: self.membership.crl().map_or(0, |crl| crl.entries().count()),
            skipped_messages: self.skipped.count(),
        };
        self.counts_tx.send_if_modified(|old| {
            let modified = *old != counts;
            *old = counts;
            modified
        });
        let crl_number = self.membership.crl().map(pki::Crl::crl_number);
        if crl_number != self.crl_number {
            self.crl_number = crl_number;
            if let Some(crl) = self.membership.crl() {
                self.trust.set_crl(crl.der().to_vec());
                if let Err(error) = store::write_crl(&self.settings.state, crl.der()) {
                    tracing::warn!(%error, "cannot store the revocation list");
                }
            }
            self.close_revoked_connections();
        }
        if changed {
            self.members_changed();
        }
    }
}
