//! The tokio shell of the control plane: listens for TLS connections on the node's port,
//! dials the members it should be connected to, runs the [`Membership`] machine in one task
//! (the hub) and turns membership into data-plane peers.
//!
//! Who dials whom: a core dials every other core, a spoke dials its core (it may sit behind
//! NAT). When two cores dial each other at once, both keep the connection opened by the node
//! with the smaller name, so both ends agree without another round trip.
//!
//! Certificate renewal ([`super::renewal`] decides when): a member dials the CA holder on a
//! connection of its own (ALPN [`RENEWAL_ALPN`], its current certificate as TLS client
//! certificate), sends one [`RenewRequest`] and gets the new certificate back; the CA holder
//! renews its own locally. The new certificate is written to `node.crt`, presented in every
//! handshake from then on, and spread in a new version of the node's membership record. The
//! WireGuard key does not change, so no tunnel is touched.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pki::{NodeCertificate, NodeIdentity, NodeKeyPair, NodeRole, SerialNumber};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinHandle};
use tokio_rustls::TlsConnector;

use super::accept_limits::{AcceptLimiter, Admission, Reason, RefusalCounts, Slot};
use super::admission::{MeshFacts, RenewalTerms, admit, renew};
use super::frame::{
    FrameError, MAX_FRAME_LEN, read_body_limited, read_message, read_message_limited, write_message,
};
use super::hosted::HostedRouters;
use super::log_throttle::{LOG_WINDOW, LogThrottle};
use super::membership::{Action, Membership};
use super::message::{Gossip, Hello, JoinRequest, Message, RenewRequest};
use super::peers::{member_addresses, member_names, tunnel_peers};
use super::protocol::{Incoming, OncePerPeer, PeerProtocol, decode_member, own_hello};
use super::record::{next_version, sign_record};
use super::redial::Redial;
use super::renewal::{Renewal, RenewalAction, Validity};
use super::renewal_targets::{LastKnown, renew_at_first, renewal_targets};
use super::store;
use super::tls::{
    ControlAcceptor, MEMBER_ALPN, OwnCertificate, RENEWAL_ALPN, Trust, legacy_member_client_config,
    member_client_config, member_server_name, peer_name, refused_alpn, renewal_client_config,
};
use crate::peerset::{KnownPeer, PeerKind};
use crate::state::{Overwrite, StateDir};

/// How often the hub ticks (anti-entropy, dialing, the CRL file).
const TICK: Duration = Duration::from_millis(500);
/// How long a starting node waits for a peer to confirm its revocation list before it brings
/// up tunnels from the stored membership anyway (the peers may all be down).
const PREFLIGHT_TIMEOUT: Duration = Duration::from_secs(2);
/// Limit for connecting and for the TLS handshake when dialing, and for a renewal request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Limit for the TLS handshake of an accepted connection, which anyone can open: a real
/// peer needs a few round trips (well under a second), a stalled one holds a slot under
/// the limits ([`super::accept_limits`]) no longer than this.
const TLS_ACCEPT_DEADLINE: Duration = Duration::from_secs(5);
/// Limit for a connection without a certificate to send its join request once the
/// handshake is done (`meshd join` sends it at once).
const JOIN_REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Limit for the CA's answer to a join request (it reads and writes the CA database).
const JOIN_ANSWER_DEADLINE: Duration = Duration::from_secs(30);
/// The largest join request read: a real one (name, secret, CSR, key, endpoints) is about
/// 1 KiB, and the body is allocated from the length prefix, so this is what one stranger's
/// connection can make us hold (the member frame limit is 4 MiB).
const MAX_JOIN_REQUEST_LEN: usize = 16 << 10;
/// How often the aggregated refusal report is considered (it is written once per
/// [`super::accept_limits::REPORT_INTERVAL`] at most).
const REPORT_POLL: Duration = Duration::from_secs(1);
/// Messages queued per connection before new ones are dropped (anti-entropy repairs).
const QUEUE: usize = 256;
/// Limit for a whole renewal exchange with the CA holder (connect, handshake, answer).
const RENEWAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error("{0}")]
    Identity(String),
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot listen on {address} (TCP): {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// What the control plane needs from the daemon.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// The node's state directory (certificate, key, CA, membership cache).
    pub state: StateDir,
    /// TCP addresses to listen on (the WireGuard port number).
    pub bind: Vec<SocketAddr>,
    /// Where other nodes reach this one, `host:port` each (from `[node] endpoints`).
    pub endpoints: Vec<String>,
    /// The mesh AS number, told to joining nodes.
    pub asn: u32,
    /// The daemon's DNS resolver: members' endpoint names follow their records through it
    /// (without one, only literal endpoints are used).
    pub resolver: Option<crate::dns::Resolver>,
    /// How long the certificates this node issues (as CA holder) are valid.
    pub certificate_validity: time::Duration,
    /// How long after its expiry a certificate is still renewed (as CA holder; as a member,
    /// for the log lines): [`crate::identity::RENEWAL_GRACE`].
    pub renewal_grace: time::Duration,
    /// The firewall mark put on connections to members (`[exit] fwmark` while the node uses
    /// exits), so that they use the underlay and not a default route through the mesh.
    pub fwmark: Option<u32>,
}

/// Entry point.
#[derive(Debug)]
pub struct ControlPlane;

/// How big the mesh is as this node sees it (for metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MembershipCounts {
    /// Verified members, this node included.
    pub members: usize,
    /// Certificates on the current revocation list.
    pub revoked: usize,
    /// Messages of types this node does not know, skipped on member connections since start.
    pub skipped_messages: u64,
}

/// A running control plane.
#[derive(Debug)]
pub struct ControlHandle {
    peers: watch::Receiver<Vec<KnownPeer>>,
    members: watch::Receiver<Vec<NodeIdentity>>,
    counts: watch::Receiver<MembershipCounts>,
    member_names: watch::Receiver<BTreeMap<String, BTreeSet<String>>>,
    events: mpsc::Sender<Event>,
    tasks: Vec<JoinHandle<()>>,
    local_addrs: Vec<SocketAddr>,
    gate: SharedGate,
}

enum Event {
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
}

/// Asks the running control plane for a certificate renewal now (for `meshd renew`, after
/// the CA holder changed what the certificate should say).
#[derive(Debug, Clone)]
pub struct RenewalTrigger(mpsc::Sender<Event>);

impl RenewalTrigger {
    /// Queues the request; false when the control plane is gone or swamped.
    pub fn request(&self) -> bool {
        self.0.try_send(Event::RenewNow).is_ok()
    }

    /// Asks the control plane to load the foreign routers of the state directory (after
    /// `meshd router add`); false when it is gone or swamped.
    pub fn load_routers(&self) -> bool {
        self.0.try_send(Event::LoadRouters).is_ok()
    }
}

struct Connection {
    id: u64,
    initiator: String,
    sender: mpsc::Sender<Message>,
    abort: AbortHandle,
    /// The serial of the peer's certificate, to close the connection when it is revoked.
    serial: SerialNumber,
    /// Whether the peer has said anything yet: only then is the connection "up" (a peer
    /// that refuses our certificate closes it before its first message).
    heard: bool,
    /// The CRL number in the peer's last digest.
    advertised_crl: Option<Option<u64>>,
    /// What the peer understands: the base set until its hello says more.
    protocol: PeerProtocol,
}

/// Who we are, and what renewing our certificate needs.
struct Own {
    identity: NodeIdentity,
    /// The serial of the certificate in use: a revocation list that names it stops dialing.
    serial: SerialNumber,
    /// The TLS key, for renewal requests and for signing our membership records.
    key: NodeKeyPair,
    /// The certificate presented in handshakes (replaced on renewal).
    certificate: Arc<OwnCertificate>,
    /// Version of our latest membership record.
    record_version: u64,
    /// The node holding the CA, where renewals go.
    ca_holder: String,
    renewal: Renewal,
    renewal_connector: TlsConnector,
    /// Stored records of nodes that did not verify at start (expired while this node was
    /// off): renewal targets, until this node renews.
    last_known: LastKnown,
}

impl ControlPlane {
    /// Loads the node's identity and membership from `settings.state`, binds the listeners
    /// and starts the tasks. Must be called inside a tokio runtime.
    pub async fn start(settings: ControlSettings) -> Result<ControlHandle, ControlError> {
        let state = &settings.state;
        let cert_der = pem_der(&state.read_certificate(&state.node_cert_path())?).map_err(|e| {
            ControlError::Identity(format!("{}: {e}", state.node_cert_path().display()))
        })?;
        let ca_der = pem_der(&state.read_certificate(&state.ca_cert_path())?).map_err(|e| {
            ControlError::Identity(format!("{}: {e}", state.ca_cert_path().display()))
        })?;
        let key = NodeKeyPair::from_pem(&state.read_node_key()?).map_err(|e| {
            ControlError::Identity(format!("{}: {e}", state.node_key_path().display()))
        })?;
        let parsed = NodeCertificate::parse(&cert_der).map_err(|e| {
            ControlError::Identity(format!("{}: {e}", state.node_cert_path().display()))
        })?;
        let identity = parsed.identity;
        let ca_holder = state.read_node_record()?.ca_holder_name().to_owned();
        let crl = store::read_crl(state)?;
        let trust = Trust::new(ca_der.clone(), None);
        let certificate = OwnCertificate::new(cert_der.clone(), ca_der.clone(), key.to_pkcs8_der())
            .map_err(|e| {
                ControlError::Identity(format!(
                    "{} and {} do not belong together: {e}",
                    state.node_cert_path().display(),
                    state.node_key_path().display()
                ))
            })?;
        let now = OffsetDateTime::now_utc();

        let mut membership = Membership::new(&identity.name, ca_der, rand::random());
        let mut startup = Vec::new();
        if let Some(der) = &crl {
            startup.extend(membership.install_crl(der, None));
        }
        let stored = store::read_members(state)?;
        let previous = stored
            .iter()
            .filter(|r| {
                NodeCertificate::parse(&r.certificate)
                    .is_ok_and(|c| c.identity.name == identity.name)
            })
            .map(|r| r.version)
            .max();
        startup.extend(membership.receive(
            "the state directory",
            Gossip::Records {
                records: stored.clone(),
            },
            now,
        ));
        let last_known = LastKnown::new(&stored, membership.members());
        let record_version = next_version(previous, now);
        let own_record =
            sign_record(&key, &cert_der, settings.endpoints.clone(), record_version)
                .map_err(|e| ControlError::Identity(format!("own membership record: {e}")))?;
        startup.extend(membership.set_own_record(own_record, now));
        let mut hosted = HostedRouters::default();
        startup.extend(stand_in(
            &mut hosted,
            &mut membership,
            state,
            &identity.name,
            now,
        ));
        if let Some(crl) = membership.crl() {
            trust.set_crl(crl.der().to_vec());
        }

        let acceptor =
            ControlAcceptor::new(trust.clone(), certificate.clone(), settings.renewal_grace)?;
        let connector =
            TlsConnector::from(member_client_config(trust.clone(), certificate.clone())?);
        let legacy_connector = TlsConnector::from(legacy_member_client_config(
            trust.clone(),
            certificate.clone(),
        )?);
        let renewal_connector =
            TlsConnector::from(renewal_client_config(trust.clone(), certificate.clone())?);
        let renewal = Renewal::new(
            Validity::of_certificate(parsed.not_before, parsed.not_after),
            rand::random(),
        )
        .with_grace(settings.renewal_grace);
        let (events_tx, events_rx) = mpsc::channel(1024);
        let mut listeners = Vec::new();
        let mut local_addrs = Vec::new();
        for address in &settings.bind {
            let mut bound = TcpListener::bind(address).await;
            // `[::]` accepts IPv4 too; where IPv6 is off, fall back to `0.0.0.0`.
            if bound.is_err() && address.ip() == std::net::Ipv6Addr::UNSPECIFIED {
                bound = TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, address.port())).await;
            }
            let listener = bound.map_err(|source| ControlError::Listen {
                address: *address,
                source,
            })?;
            local_addrs.push(
                listener
                    .local_addr()
                    .map_err(|source| ControlError::Listen {
                        address: *address,
                        source,
                    })?,
            );
            listeners.push(listener);
        }
        let (peers_tx, peers_rx) = watch::channel(Vec::new());
        let (members_tx, members_rx) = watch::channel(Vec::new());
        let (counts_tx, counts_rx) = watch::channel(MembershipCounts::default());
        let (member_names_tx, member_names_rx) = watch::channel(BTreeMap::new());
        // One gate for every listener: the limits are the daemon's.
        let gate = Gate::shared();
        let mut tasks = vec![tokio::spawn(report_refusals(gate.clone()))];
        for listener in listeners {
            tasks.push(tokio::spawn(accept_loop(
                listener,
                acceptor.clone(),
                events_tx.clone(),
                gate.clone(),
            )));
        }
        let hub = Hub {
            settings,
            own: Own {
                serial: parsed.serial.clone(),
                identity,
                key,
                certificate,
                record_version,
                ca_holder,
                renewal,
                renewal_connector,
                last_known,
            },
            trust,
            membership,
            hosted,
            connector,
            legacy_connector,
            events_tx: events_tx.clone(),
            connections: HashMap::new(),
            dialing: HashSet::new(),
            redial: HashMap::new(),
            started: Instant::now(),
            tunnels_published: false,
            warned_self_revoked: false,
            answers: Arc::new(crate::dns::Answers::new()),
            member_names_tx,
            peers_tx,
            members_tx,
            counts_tx,
            next_id: 0,
            crl_number: None,
            join_refusals: Arc::new(std::sync::Mutex::new(LogThrottle::new(LOG_WINDOW))),
            skipped: OncePerPeer::default(),
            withheld: OncePerPeer::default(),
        };
        tasks.push(tokio::spawn(hub.run(events_rx, startup)));
        tracing::info!(addresses = ?local_addrs, "control plane started");
        Ok(ControlHandle {
            peers: peers_rx,
            members: members_rx,
            counts: counts_rx,
            member_names: member_names_rx,
            events: events_tx,
            tasks,
            local_addrs,
            gate,
        })
    }
}

impl ControlHandle {
    /// The TCP addresses the control plane listens on.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The tunnels derived from membership, updated on every change; the daemon's peer set
    /// (crate::peerset) combines them with the configured peers and the clients.
    pub fn peers(&self) -> watch::Receiver<Vec<KnownPeer>> {
        self.peers.clone()
    }

    pub fn renewal_trigger(&self) -> RenewalTrigger {
        RenewalTrigger(self.events.clone())
    }

    /// The verified members (this node included): their certificates' identities, updated on
    /// every change; the routing plane derives its iBGP sessions and route checks from them.
    pub fn members(&self) -> watch::Receiver<Vec<NodeIdentity>> {
        self.members.clone()
    }

    /// Advertises `endpoints` from now on (a reload of `[node] endpoints`): a new version of
    /// this node's membership record, signed and spread to the members.
    pub fn set_endpoints(&self, endpoints: Vec<String>) {
        if self
            .events
            .try_send(Event::SetEndpoints(endpoints))
            .is_err()
        {
            tracing::warn!(
                "the control plane is busy or gone: new [node] endpoints not advertised"
            );
        }
    }

    /// The DNS names of each member's endpoints, to ask again when no path to it works.
    pub fn member_names(&self) -> watch::Receiver<BTreeMap<String, BTreeSet<String>>> {
        self.member_names.clone()
    }

    /// Members and revocations as of the last change.
    pub fn counts(&self) -> MembershipCounts {
        *self.counts.borrow()
    }

    /// Unauthenticated connections refused or closed since the start, by reason
    /// ([`super::accept_limits`]).
    pub fn refused_connections(&self) -> RefusalCounts {
        lock(&self.gate).limiter.totals()
    }

    /// Stops every task (connections close).
    pub async fn shutdown(mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

impl Drop for ControlHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The serial of the first certificate of a verified peer's chain.
fn certificate_serial(chain: Option<&[CertificateDer<'_>]>) -> Option<SerialNumber> {
    let first = chain?.first()?;
    NodeCertificate::parse(first).ok().map(|c| c.serial)
}

fn pem_der(pem: &str) -> Result<Vec<u8>, String> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map(|c| c.to_vec())
        .map_err(|e| format!("not a PEM certificate: {e}"))
}

struct Hub {
    settings: ControlSettings,
    own: Own,
    trust: Arc<Trust>,
    membership: Membership,
    connector: TlsConnector,
    /// Dials without ALPN, for a member older than the hello (protocol version 1).
    legacy_connector: TlsConnector,
    /// The foreign routers this node stands in for.
    hosted: HostedRouters,
    events_tx: mpsc::Sender<Event>,
    connections: HashMap<String, Connection>,
    dialing: HashSet<String>,
    /// When to dial each member again after failures.
    redial: HashMap<String, Redial>,
    /// When the hub started (for [`PREFLIGHT_TIMEOUT`]).
    started: Instant,
    /// Whether tunnels and members are published yet: not before a peer has confirmed that
    /// our revocation list is current (or [`PREFLIGHT_TIMEOUT`] passed), so that a node
    /// that missed a revocation while down never brings up the revoked peer's tunnel.
    tunnels_published: bool,
    /// Said once: this node's own certificate is revoked, so it stopped dialing.
    warned_self_revoked: bool,
    /// The resolver's latest answers (members' endpoint names to addresses).
    answers: Arc<crate::dns::Answers>,
    /// DNS names per member, given to the resolver and to [`ControlHandle::member_names`].
    member_names_tx: watch::Sender<BTreeMap<String, BTreeSet<String>>>,
    peers_tx: watch::Sender<Vec<KnownPeer>>,
    members_tx: watch::Sender<Vec<NodeIdentity>>,
    counts_tx: watch::Sender<MembershipCounts>,
    next_id: u64,
    crl_number: Option<u64>,
    /// Refused joins: the first in a window is logged, the rest counted.
    join_refusals: Arc<std::sync::Mutex<LogThrottle>>,
    /// Skipped messages of unknown types: each type logged once per peer, all counted.
    skipped: OncePerPeer,
    /// Messages (or records) not sent because the peer did not announce what they need:
    /// said once per peer and feature.
    withheld: OncePerPeer,
}

/// Loads the foreign routers of `state` that `hosted` does not stand in for yet, and
/// publishes their records. Problems are logged (a router that cannot be stood in for must
/// not keep the node from starting).
fn stand_in(
    hosted: &mut HostedRouters,
    membership: &mut Membership,
    state: &StateDir,
    own_name: &str,
    now: OffsetDateTime,
) -> Vec<Action> {
    let files = match state.read_hosted() {
        Ok(files) => files,
        Err(error) => {
            tracing::warn!(%error, "cannot read the foreign routers this node stands in for");
            return Vec::new();
        }
    };
    let loaded = hosted.load(
        files,
        own_name,
        |name| membership.member(name).map(|m| m.version),
        now,
    );
    for problem in loaded.problems {
        tracing::warn!("{problem}");
    }
    let mut actions = Vec::new();
    for record in loaded.records {
        actions.extend(membership.set_hosted_record(record, now));
    }
    actions
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
    async fn run(mut self, mut events: mpsc::Receiver<Event>, startup: Vec<Action>) {
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

    fn poll_renewal(&mut self, now: OffsetDateTime) {
        for action in self.own.renewal.poll(now) {
            match action {
                RenewalAction::Request => self.start_renewal(now),
                RenewalAction::Warn(text) => tracing::warn!("{text}"),
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

    /// The members a starting node checks its revocation list with: the cores it dials
    /// whose endpoints it knows.
    fn peers_to_ask(&self) -> Vec<String> {
        let own = &self.own.identity;
        self.membership
            .members()
            .filter(|m| {
                m.identity.name != own.name
                    && m.identity.role == NodeRole::Core
                    && !m.endpoints.is_empty()
                    && (own.role == NodeRole::Core
                        || own.core.is_none()
                        || own.core.as_deref() == Some(m.identity.name.as_str()))
            })
            .map(|m| m.identity.name.clone())
            .collect()
    }

    fn has_peer_to_ask(&self) -> bool {
        !self.peers_to_ask().is_empty()
    }

    /// Ends the start-up check: tunnels and members follow the membership from now on.
    fn publish_tunnels(&mut self, why: &str) {
        if self.tunnels_published {
            return;
        }
        self.tunnels_published = true;
        let waited = self.started.elapsed();
        tracing::info!(
            waited_ms = waited.as_millis() as u64,
            "revocation list checked ({why}); bringing up tunnels"
        );
        self.members_changed();
    }

    /// The start-up check is over once every core to ask has either answered with a digest
    /// whose revocation list is no newer than ours, or could not be reached. Every one, not
    /// the first: a revoked core that is still running would confirm the stale list it
    /// shares with us. A core the new list revokes drops out of the set by itself.
    fn check_preflight(&mut self) {
        if self.tunnels_published {
            return;
        }
        let ours = self.membership.crl().map(pki::Crl::crl_number);
        let settled = |name: &String| {
            let confirmed = self
                .connections
                .get(name)
                .and_then(|c| c.advertised_crl)
                .is_some_and(|theirs| theirs <= ours);
            let unreachable = self.redial.get(name).is_some_and(|r| r.failures() > 0);
            confirmed || unreachable
        };
        let peers = self.peers_to_ask();
        if peers.iter().all(settled) {
            self.publish_tunnels(&format!("with {}", peers.join(", ")));
        }
    }

    /// Whether the current revocation list names `serial`.
    fn is_revoked(&self, serial: &SerialNumber) -> bool {
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
                    self.heard_from(&name);
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
            Event::Join { request, reply } => {
                let facts = MeshFacts {
                    asn: self.settings.asn,
                    certificate_validity: self.settings.certificate_validity,
                    members: self.membership.records(),
                    crl: self.membership.crl().map(|c| c.der().to_vec()),
                };
                let state = self.settings.state.clone();
                let throttle = self.join_refusals.clone();
                tokio::task::spawn_blocking(move || {
                    let answer = match admit(&state, &request, facts, now) {
                        Ok(accepted) => Message::JoinAccepted(Box::new(accepted)),
                        Err(refusal) => {
                            // Anyone may send a well-formed request with a made-up token:
                            // one line a window (the joiner gets the reason either way).
                            let admitted = throttle
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .admit(Instant::now());
                            if let Some(more) = admitted {
                                tracing::warn!(node = %request.name, reason = %refusal,
                                    "join refused{}", left_out(more, "refused"));
                            }
                            Message::JoinRefused { reason: refusal.0 }
                        }
                    };
                    let _ = reply.send(answer);
                });
            }
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
            } => {
                let state = self.settings.state.clone();
                let terms = self.renewal_terms();
                tokio::task::spawn_blocking(move || {
                    let name = &current.identity.name;
                    let answer = match renew(&state, &current, &request.csr_pem, now, terms) {
                        Ok(issued) => Message::RenewAccepted {
                            certificate_pem: issued.pem,
                        },
                        Err(refusal) => {
                            tracing::warn!(node = %name, reason = %refusal, "certificate renewal refused");
                            Message::RenewRefused { reason: refusal.0 }
                        }
                    };
                    let _ = reply.send(answer);
                });
            }
            Event::RenewNow => {
                if self.own.renewal.request_now(now) {
                    tracing::info!("certificate renewal asked for by the operator");
                    self.poll_renewal(now);
                } else {
                    tracing::info!("certificate renewal asked for; one is under way already");
                }
            }
            Event::LoadRouters => {
                let actions = stand_in(
                    &mut self.hosted,
                    &mut self.membership,
                    &self.settings.state,
                    &self.own.identity.name,
                    now,
                );
                self.apply(actions);
            }
            Event::HostedRenewalDone { name, result } => {
                let outcome =
                    result.and_then(|pem| self.install_hosted_certificate(&name, &pem, now));
                if let Err(why) = outcome {
                    self.hosted.renewal_failed(&name, now, &why);
                    tracing::warn!(router = %name, reason = %why, "router certificate renewal failed");
                }
            }
            Event::RenewalDone { result, holder } => {
                let installed = result.and_then(|pem| self.install_certificate(&pem, now));
                if installed.is_ok()
                    && let Some(holder) = holder
                {
                    self.found_ca_holder(holder);
                }
                let outcome = installed;
                if let Err(why) = outcome {
                    self.own.renewal.failed(now, &why);
                    tracing::warn!(reason = %why, retry_at = %self.own.renewal.due(), "certificate renewal failed");
                }
            }
        }
    }

    /// What a renewal at this node's CA is issued for.
    fn renewal_terms(&self) -> RenewalTerms {
        RenewalTerms {
            validity: self.settings.certificate_validity,
            grace: self.settings.renewal_grace,
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

    /// Asks for a new certificate: from the local CA on the CA holder, else from the CA
    /// holder over a renewal connection. Always ends in [`Event::RenewalDone`].
    fn start_renewal(&mut self, now: OffsetDateTime) {
        let events = self.events_tx.clone();
        let csr = match self.own.key.csr(&self.own.identity.name) {
            Ok(csr) => csr,
            Err(error) => {
                let why = format!("cannot make a certificate request: {error}");
                self.own.renewal.failed(now, &why);
                tracing::warn!(reason = %why, "certificate renewal failed");
                return;
            }
        };
        tracing::info!(ca_holder = %self.own.ca_holder, "renewing the node certificate");
        if self.settings.state.is_ca_holder() {
            let state = self.settings.state.clone();
            let terms = self.renewal_terms();
            let current = NodeCertificate::parse(&self.own.certificate.certificate_der());
            tokio::task::spawn_blocking(move || {
                let result = match current {
                    Ok(current) => renew(&state, &current, &csr, now, terms)
                        .map(|issued| issued.pem)
                        .map_err(|refusal| refusal.0),
                    Err(error) => Err(format!("the certificate in use does not parse: {error}")),
                };
                let _ = events.blocking_send(Event::RenewalDone {
                    result,
                    holder: None,
                });
            });
            return;
        }
        // The holder recorded first, then the other cores: the CA may have moved.
        let ca_holder = self.own.ca_holder.clone();
        let targets = renewal_targets(
            &ca_holder,
            &self.own.identity.name,
            self.membership.members(),
            &self.own.last_known,
        );
        let connector = self.own.renewal_connector.clone();
        let fwmark = self.settings.fwmark;
        tokio::spawn(async move {
            let outcome = renew_at_first(&ca_holder, &targets, |name, endpoints| {
                let (connector, csr) = (connector.clone(), csr.clone());
                async move {
                    tokio::time::timeout(
                        RENEWAL_TIMEOUT,
                        request_renewal(&connector, fwmark, &name, &endpoints, csr),
                    )
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!(
                            "the CA holder {name} did not answer within {RENEWAL_TIMEOUT:?}"
                        ))
                    })
                }
            })
            .await;
            let (result, holder) = match outcome {
                Ok((pem, holder)) => (Ok(pem), Some(holder)),
                Err(error) => (Err(error), None),
            };
            let _ = events.send(Event::RenewalDone { result, holder }).await;
        });
    }

    /// Starts the renewals of hosted routers' certificates that are due: at the local CA
    /// when this node holds it, else at the CA holder over TLS with the router's certificate
    /// (which is what the CA checks a renewal against).
    fn poll_hosted_renewals(&mut self, now: OffsetDateTime) {
        let (jobs, warnings) = self.hosted.poll_renewals(now);
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        for job in jobs {
            let events = self.events_tx.clone();
            let name = job.name.clone();
            tracing::info!(router = %name, ca_holder = %self.own.ca_holder, "renewing a hosted router's certificate");
            if self.settings.state.is_ca_holder() {
                let state = self.settings.state.clone();
                let terms = self.renewal_terms();
                tokio::task::spawn_blocking(move || {
                    let result = renew(&state, &job.current, &job.csr_pem, now, terms)
                        .map(|issued| issued.pem)
                        .map_err(|refusal| refusal.0);
                    let _ = events.blocking_send(Event::HostedRenewalDone { name, result });
                });
                continue;
            }
            let connector = OwnCertificate::new(
                job.current.der.clone(),
                self.trust.ca_der().to_vec(),
                job.key_pkcs8.clone(),
            )
            .and_then(|own| renewal_client_config(self.trust.clone(), own))
            .map(TlsConnector::from);
            let connector = match connector {
                Ok(connector) => connector,
                Err(error) => {
                    let why = format!("cannot present its certificate: {error}");
                    self.hosted.renewal_failed(&name, now, &why);
                    tracing::warn!(router = %name, reason = %why, "router certificate renewal failed");
                    continue;
                }
            };
            // Like our own renewal: the holder recorded first, then the other cores.
            let ca_holder = self.own.ca_holder.clone();
            let targets = renewal_targets(
                &ca_holder,
                &self.own.identity.name,
                self.membership.members(),
                &self.own.last_known,
            );
            let fwmark = self.settings.fwmark;
            tokio::spawn(async move {
                let result = renew_at_first(&ca_holder, &targets, |holder, endpoints| {
                    let (connector, csr) = (connector.clone(), job.csr_pem.clone());
                    async move {
                        tokio::time::timeout(
                            RENEWAL_TIMEOUT,
                            request_renewal(&connector, fwmark, &holder, &endpoints, csr),
                        )
                        .await
                        .unwrap_or_else(|_| {
                            Err(format!(
                                "the CA holder {holder} did not answer within {RENEWAL_TIMEOUT:?}"
                            ))
                        })
                    }
                })
                .await
                .map(|(pem, _)| pem);
                let _ = events.send(Event::HostedRenewalDone { name, result }).await;
            });
        }
    }

    /// A revoked hosted router is stood in for no more, and its files go (its key can never
    /// be used again), so that its name, once freed (`meshd ca free-name`), can be admitted
    /// anew with `meshd router add`.
    fn forget_revoked_routers(&mut self) {
        let Some(crl) = self.membership.crl() else {
            return;
        };
        for name in self.hosted.drop_revoked(crl) {
            match self.settings.state.remove_hosted(&name) {
                Ok(()) => {
                    tracing::info!(router = %name, "hosted router revoked: no longer standing in for it, its files removed")
                }
                Err(error) => {
                    tracing::warn!(router = %name, %error, "hosted router revoked, but its files could not be removed")
                }
            }
        }
    }

    /// Takes a hosted router's renewed certificate into use: checked, stored, spread in a new
    /// record.
    fn install_hosted_certificate(
        &mut self,
        name: &str,
        pem: &str,
        now: OffsetDateTime,
    ) -> Result<(), String> {
        let der = pem_der(pem)?;
        let crl = self.membership.crl().map(|c| c.der().to_vec());
        let cert = pki::verify_node_certificate(&der, self.trust.ca_der(), crl.as_deref(), now)
            .map_err(|e| format!("the new certificate is not valid: {e}"))?;
        let (serial, not_after) = (cert.serial.clone(), cert.not_after);
        // Checked against the router before anything is written: `renewed` refuses another
        // router's or key's certificate, and signs nothing then.
        let record = self.hosted.renewed(name, cert, now)?;
        self.settings
            .state
            .replace_hosted_certificate(name, pem)
            .map_err(|e| format!("cannot store it: {e}"))?;
        let actions = self.membership.set_hosted_record(record, now);
        self.apply(actions);
        let next = self.hosted.renewal_due(name);
        tracing::info!(router = %name, %serial, %not_after, next_renewal = ?next, "hosted router's certificate renewed");
        Ok(())
    }

    /// The node that renewed our certificate holds the CA: renewals go there from now on,
    /// also after a restart (`node.json`).
    fn found_ca_holder(&mut self, holder: String) {
        if holder == self.own.ca_holder {
            return;
        }
        tracing::info!(previous = %self.own.ca_holder, ca_holder = %holder, "the mesh CA is held by another node now");
        let state = self.settings.state.clone();
        let recorded = holder.clone();
        // Under the state lock, which a command may hold for a second or two.
        tokio::task::spawn_blocking(move || {
            let written = state.lock().and_then(|_lock| {
                let mut record = state.read_node_record()?;
                record.ca_holder = Some(recorded);
                state.write_node_record(&record)
            });
            if let Err(error) = written {
                tracing::warn!(%error, "cannot record the new CA holder");
            }
        });
        self.own.ca_holder = holder;
    }

    /// Takes a renewed certificate into use: checked, written to `node.crt`, presented in
    /// handshakes, spread in a new membership record.
    fn install_certificate(&mut self, pem: &str, now: OffsetDateTime) -> Result<(), String> {
        let der = pem_der(pem)?;
        let crl = self.membership.crl().map(|c| c.der().to_vec());
        let cert = pki::verify_node_certificate(&der, self.trust.ca_der(), crl.as_deref(), now)
            .map_err(|e| format!("the new certificate is not valid: {e}"))?;
        let own = &self.own.identity;
        if cert.identity.name != own.name || cert.identity.wireguard_key != own.wireguard_key {
            return Err("the new certificate is for another name or WireGuard key".into());
        }
        // Checked against our key before anything is written.
        let previous = self.own.certificate.certificate_der();
        self.own
            .certificate
            .replace(der.clone())
            .map_err(|e| format!("the new certificate is not for this node's key: {e}"))?;
        let state = &self.settings.state;
        if let Err(error) =
            state.write_certificate(&state.node_cert_path(), pem, Overwrite::Replace)
        {
            let _ = self.own.certificate.replace(previous);
            return Err(format!("cannot store it: {error}"));
        }
        let version = next_version(Some(self.own.record_version), now);
        let record = sign_record(
            &self.own.key,
            &der,
            self.settings.endpoints.clone(),
            version,
        )
        .map_err(|e| format!("cannot sign the membership record: {e}"))?;
        self.own.record_version = version;
        let identity_changed = cert.identity != self.own.identity;
        self.own.identity = cert.identity.clone();
        self.own.serial = cert.serial.clone();
        let actions = self.membership.set_own_record(record, now);
        self.apply(actions);
        if identity_changed {
            self.members_changed();
        }
        self.own
            .renewal
            .succeeded(Validity::of_certificate(cert.not_before, cert.not_after));
        if !self.own.last_known.records(|_| false).is_empty() {
            // Renewed after an expiry: the mesh forgot this node; dial it back in now.
            self.own.last_known.renewed();
            self.redial.clear();
            self.dial_missing();
        }
        tracing::info!(serial = %cert.serial, not_after = %cert.not_after, next_renewal = %self.own.renewal.due(), "node certificate renewed");
        Ok(())
    }

    /// Re-signs this node's record with `endpoints` (a new version, as after a renewal) and
    /// spreads it; members switch to the new endpoints, tunnels stay up.
    fn set_endpoints(&mut self, endpoints: Vec<String>, now: OffsetDateTime) {
        if endpoints == self.settings.endpoints {
            return;
        }
        let version = next_version(Some(self.own.record_version), now);
        let der = self.own.certificate.certificate_der();
        match sign_record(&self.own.key, &der, endpoints.clone(), version) {
            Ok(record) => {
                self.own.record_version = version;
                tracing::info!(endpoints = ?endpoints, version, "advertising new node endpoints");
                self.settings.endpoints = endpoints;
                let actions = self.membership.set_own_record(record, now);
                self.apply(actions);
            }
            Err(error) => {
                tracing::warn!(%error, "cannot sign the membership record: endpoints not changed");
            }
        }
    }

    fn apply(&mut self, actions: Vec<Action>) {
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

    /// Re-derives the tunnels, stores the membership, resolves new endpoint names. Tunnels
    /// and members are published only once the start-up check is over.
    fn members_changed(&mut self) {
        self.follow_member_names();
        if !self.tunnels_published {
            return;
        }
        let answers = &self.answers;
        let resolve = |endpoint: &str| member_addresses(endpoint, answers);
        let members = self.membership.members();
        let peers = tunnel_peers(&self.own.identity, members.clone(), &resolve)
            .into_iter()
            .map(|config| {
                let member = members.clone().find(|m| m.identity.name == config.name);
                let kind = match member.map(|m| (m.identity.role, m.identity.foreign)) {
                    Some((_, true)) => PeerKind::Router,
                    Some((NodeRole::Core, false)) => PeerKind::Node(Some(mesh_config::Role::Core)),
                    Some((NodeRole::Spoke, false)) => {
                        PeerKind::Node(Some(mesh_config::Role::Spoke))
                    }
                    None => PeerKind::Node(None),
                };
                KnownPeer { config, kind }
            })
            .collect();
        self.peers_tx.send_replace(peers);
        let identities: Vec<NodeIdentity> = members.clone().map(|m| m.identity.clone()).collect();
        self.members_tx.send_if_modified(|current| {
            let changed = *current != identities;
            *current = identities;
            changed
        });
        self.store_members();
    }

    /// Tells the resolver which names the members' endpoints use now (only when that set
    /// changed): new names are looked up, names no member uses any more are dropped.
    fn follow_member_names(&self) {
        let names = member_names(
            self.membership
                .members()
                .map(|m| (m.identity.name.as_str(), m.endpoints.as_slice())),
        );
        let changed = self.member_names_tx.send_if_modified(|current| {
            let changed = *current != names;
            *current = names;
            changed
        });
        if let (true, Some(resolver)) = (changed, &self.settings.resolver) {
            let all = self
                .member_names_tx
                .borrow()
                .values()
                .flatten()
                .cloned()
                .collect();
            resolver.watch_names("members", all);
        }
    }

    fn store_members(&self) {
        let mut records = self.membership.records();
        records.extend(
            self.own
                .last_known
                .records(|name| self.membership.member(name).is_some()),
        );
        if let Err(error) = store::write_members(&self.settings.state, &records) {
            tracing::warn!(%error, "cannot store the membership");
        }
    }

    /// Dials the members this node should be connected to and is not.
    fn dial_missing(&mut self) {
        if self.is_revoked(&self.own.serial) {
            if !self.warned_self_revoked {
                self.warned_self_revoked = true;
                tracing::error!(
                    "this node's certificate is revoked: it no longer dials the mesh; \
                     ask the CA holder for a new invitation (`meshd invite`) and join again"
                );
            }
            return;
        }
        let own = &self.own.identity;
        let now = Instant::now();
        let is_own_core = |name: &str| own.core.as_deref() == Some(name);
        // A spoke that does not know where its core is (it joined before the core's record
        // reached the CA holder) asks every core it knows, so that it catches up; otherwise
        // it would wait for a record nobody sends it.
        let core_known = self
            .membership
            .members()
            .any(|m| is_own_core(&m.identity.name) && !m.endpoints.is_empty());
        let wanted: Vec<(String, Vec<String>)> = self
            .membership
            .members()
            .filter(|m| m.identity.name != own.name && m.identity.role == NodeRole::Core)
            .filter(|m| own.role == NodeRole::Core || !core_known || is_own_core(&m.identity.name))
            .filter(|m| !self.connections.contains_key(&m.identity.name))
            .filter(|m| !self.dialing.contains(&m.identity.name))
            .filter(|m| self.redial.get(&m.identity.name).is_none_or(|r| r.due(now)))
            .map(|m| (m.identity.name.clone(), m.endpoints.clone()))
            .collect();
        // Cores of the stored records that expired while this node was off: the mesh forgot
        // this node, so it dials them (refused until it renewed) to learn the membership.
        let mut wanted = wanted;
        let forgotten: Vec<(String, Vec<String>)> = self
            .own
            .last_known
            .cores()
            .filter(|(name, _)| *name != own.name && self.membership.member(name).is_none())
            .filter(|(name, _)| !self.connections.contains_key(*name))
            .filter(|(name, _)| !self.dialing.contains(*name))
            .filter(|(name, _)| self.redial.get(*name).is_none_or(|r| r.due(now)))
            .map(|(name, endpoints)| (name.to_owned(), endpoints.to_vec()))
            .collect();
        wanted.extend(forgotten);
        for (name, endpoints) in wanted {
            if endpoints.is_empty() {
                continue;
            }
            self.dialing.insert(name.clone());
            let connector = self.connector.clone();
            let legacy = self.legacy_connector.clone();
            let fwmark = self.settings.fwmark;
            let events = self.events_tx.clone();
            let own_name = own.name.clone();
            let id = self.next_id;
            self.next_id += 1;
            tokio::spawn(async move {
                let dialed = dial(&connector, Some(&legacy), fwmark, &name, &endpoints)
                    .await
                    .and_then(|stream| {
                        let serial = certificate_serial(stream.get_ref().1.peer_certificates())
                            .ok_or_else(|| "the peer presented no node certificate".to_owned())?;
                        Ok((stream, serial))
                    });
                match dialed {
                    Ok((stream, serial)) => {
                        let hello = stream.get_ref().1.alpn_protocol() == Some(MEMBER_ALPN);
                        run_connection(stream, name, serial, own_name, id, hello, events).await;
                    }
                    Err(error) => {
                        let _ = events.send(Event::DialFailed { name, error }).await;
                    }
                }
            });
        }
    }
}

/// Connects to the first of `endpoints` that answers. A member that refuses the ALPN of
/// `connector` is older than the hello: with `legacy`, it is dialed again at once without.
async fn dial(
    connector: &TlsConnector,
    legacy: Option<&TlsConnector>,
    fwmark: Option<u32>,
    name: &str,
    endpoints: &[String],
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let server_name = member_server_name(name).map_err(|e| e.to_string())?;
    let mut last = String::from("no endpoint");
    for endpoint in endpoints {
        let attempt = async {
            let tcp = connect(endpoint, fwmark).await.map_err(|e| e.to_string())?;
            match (connector.connect(server_name.clone(), tcp).await, legacy) {
                (Ok(stream), _) => Ok(stream),
                (Err(error), Some(legacy)) if refused_alpn(&error) => {
                    let tcp = connect(endpoint, fwmark).await.map_err(|e| e.to_string())?;
                    legacy
                        .connect(server_name.clone(), tcp)
                        .await
                        .map_err(|e| e.to_string())
                }
                (Err(error), _) => Err(error.to_string()),
            }
        };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => last = format!("{endpoint}: {e}"),
            Err(_) => last = format!("{endpoint}: timed out"),
        }
    }
    Err(last)
}

/// A TCP connection to `endpoint` (`host:port`), its socket marked with `fwmark` if given.
async fn connect(endpoint: &str, fwmark: Option<u32>) -> std::io::Result<TcpStream> {
    let Some(mark) = fwmark else {
        return TcpStream::connect(endpoint).await;
    };
    let mut last = None;
    for address in tokio::net::lookup_host(endpoint).await? {
        match marked_socket(address, mark)?.connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{endpoint} has no address"),
        )
    }))
}

/// An unconnected TCP socket for `address` with firewall mark `mark`. Marking needs
/// CAP_NET_ADMIN; without it the connection goes on unmarked (said once: it still works
/// while the exit table is empty).
fn marked_socket(address: SocketAddr, mark: u32) -> std::io::Result<tokio::net::TcpSocket> {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(address),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if let Err(error) = socket.set_mark(mark)
        && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        tracing::warn!(%error, mark = format_args!("{mark:#x}"),
            "cannot mark connections to members; with an exit in use they may go through the mesh");
    }
    socket.set_nonblocking(true)?;
    Ok(tokio::net::TcpSocket::from_std_stream(socket.into()))
}

/// One renewal exchange with the CA holder: the new certificate (PEM) or why not.
async fn request_renewal(
    connector: &TlsConnector,
    fwmark: Option<u32>,
    ca_holder: &str,
    endpoints: &[String],
    csr_pem: String,
) -> Result<String, String> {
    let mut tls = dial(connector, None, fwmark, ca_holder, endpoints)
        .await
        .map_err(|e| format!("cannot reach the CA holder {ca_holder}: {e}"))?;
    write_message(&mut tls, &Message::RenewRequest(RenewRequest { csr_pem }))
        .await
        .map_err(|e| format!("cannot send the request to the CA holder {ca_holder}: {e}"))?;
    match read_message::<_, Message>(&mut tls).await {
        Ok(Message::RenewAccepted { certificate_pem }) => Ok(certificate_pem),
        Ok(Message::RenewRefused { reason }) => {
            Err(format!("the CA holder {ca_holder} refused: {reason}"))
        }
        Ok(_) => Err(format!(
            "the CA holder {ca_holder} answered with something other than a certificate"
        )),
        // In TLS 1.3 the server checks our certificate after our side of the handshake is
        // done, so a refused (revoked, expired) certificate shows up here.
        Err(error) => Err(format!(
            "the CA holder {ca_holder} closed the connection without a certificate ({error}); \
             it refuses this node's certificate if it was revoked, or expired longer ago \
             than its renewal grace window"
        )),
    }
}

/// The unauthenticated connections of every listener: their limits, how to close one that
/// has to make room, and the throttles of the lines strangers can cause.
#[derive(Debug)]
struct Gate {
    limiter: AcceptLimiter,
    /// The task of each connection that still counts, to close it if it is evicted.
    tasks: HashMap<Slot, AbortHandle>,
    /// Failed TLS handshakes: the first in a window is logged with its error, the rest
    /// counted.
    handshake_failures: LogThrottle,
    /// Bad join requests, likewise.
    bad_joins: LogThrottle,
    /// accept(2) failing (out of file descriptors, mostly), likewise.
    accept_errors: LogThrottle,
}

type SharedGate = Arc<std::sync::Mutex<Gate>>;

impl Gate {
    fn shared() -> SharedGate {
        Arc::new(std::sync::Mutex::new(Gate {
            limiter: AcceptLimiter::default(),
            tasks: HashMap::new(),
            handshake_failures: LogThrottle::new(LOG_WINDOW),
            bad_joins: LogThrottle::new(LOG_WINDOW),
            accept_errors: LogThrottle::new(LOG_WINDOW),
        }))
    }
}

fn lock(gate: &SharedGate) -> std::sync::MutexGuard<'_, Gate> {
    gate.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a throttled line adds when others like it were left out.
fn left_out(more: u64, what: &str) -> String {
    if more > 0 {
        format!(" ({more} more {what} since the last report)")
    } else {
        String::new()
    }
}

/// A connection's place under the limits, given back when it is dropped: once the
/// connection is authenticated or answered, or when its task ends or is aborted.
struct Ticket {
    gate: SharedGate,
    slot: Slot,
    remote: SocketAddr,
}

impl Ticket {
    /// The connection is never closed to make room from now on ([`AcceptLimiter::pin`]).
    fn pin(&self) {
        lock(&self.gate).limiter.pin(self.slot);
    }

    /// The connection ends before it was authenticated or answered, for `reason`.
    fn closed(self, reason: Reason) {
        lock(&self.gate)
            .limiter
            .closed(reason, self.remote.ip(), Instant::now());
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut gate = lock(&self.gate);
        gate.limiter.release(self.slot);
        gate.tasks.remove(&self.slot);
    }
}

/// Says once per [`super::accept_limits::REPORT_INTERVAL`] at most what the limits refused
/// and what timed out, in one line ([`AcceptLimiter::poll_report`]).
async fn report_refusals(gate: SharedGate) {
    let mut tick = tokio::time::interval(REPORT_POLL);
    loop {
        tick.tick().await;
        let (report, open) = {
            let mut gate = lock(&gate);
            (
                gate.limiter.poll_report(Instant::now()),
                gate.limiter.open(),
            )
        };
        if let Some(report) = report {
            tracing::warn!(unauthenticated_open = open, "control port: {report}");
        }
    }
}

/// Closes a refused connection at once, with a reset: no TLS work, and no TIME_WAIT left
/// on our side.
fn refuse(tcp: TcpStream) {
    let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: ControlAcceptor,
    events: mpsc::Sender<Event>,
    gate: SharedGate,
) {
    let mut next_id: u64 = 1 << 63;
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                let admitted = lock(&gate).accept_errors.admit(Instant::now());
                if let Some(more) = admitted {
                    tracing::warn!(%error, "accept failed{}", left_out(more, "failed"));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let admission = lock(&gate).limiter.admit(remote.ip(), Instant::now());
        let slot = match admission {
            Admission::Admitted { slot, evicted } => {
                let victim = evicted.and_then(|victim| lock(&gate).tasks.remove(&victim));
                if let Some(victim) = victim {
                    victim.abort();
                }
                slot
            }
            Admission::Refused(_) => {
                refuse(tcp);
                continue;
            }
        };
        let ticket = Ticket {
            gate: gate.clone(),
            slot,
            remote,
        };
        let id = next_id;
        next_id += 1;
        let task = tokio::spawn(serve_accepted(
            tcp,
            remote,
            acceptor.clone(),
            events.clone(),
            ticket,
            id,
        ));
        // A connection that is already done (or evicted) gave its slot back: keep no handle.
        let mut gate = lock(&gate);
        if gate.limiter.holds(slot) {
            gate.tasks.insert(slot, task.abort_handle());
        }
    }
}

/// One accepted connection: the TLS handshake within [`TLS_ACCEPT_DEADLINE`], then a member
/// connection or a renewal (authenticated: the ticket is given back) or a join (the ticket
/// is kept until it is answered).
async fn serve_accepted(
    tcp: TcpStream,
    remote: SocketAddr,
    acceptor: ControlAcceptor,
    events: mpsc::Sender<Event>,
    ticket: Ticket,
    id: u64,
) {
    let tls = match tokio::time::timeout(TLS_ACCEPT_DEADLINE, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            // Anyone can cause this: one line a window, with how many were left out.
            let admitted = lock(&ticket.gate).handshake_failures.admit(Instant::now());
            if let Some(more) = admitted {
                tracing::warn!(
                    %remote,
                    %error,
                    "control connection refused in the TLS handshake{}",
                    left_out(more, "refused")
                );
            }
            ticket.closed(Reason::HandshakeFailed);
            return;
        }
        Err(_) => {
            ticket.closed(Reason::HandshakeTimeout);
            return;
        }
    };
    let renewal = tls.get_ref().1.alpn_protocol() == Some(RENEWAL_ALPN);
    let member = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|first| NodeCertificate::parse(first).ok());
    match (peer_name(tls.get_ref().1.peer_certificates()), member) {
        (Some(_), Some(current)) if renewal => {
            drop(ticket);
            serve_renewal(tls, Box::new(current), remote, events).await;
        }
        (Some(name), Some(current)) => {
            drop(ticket);
            let initiator = name.clone();
            let hello = tls.get_ref().1.alpn_protocol() == Some(MEMBER_ALPN);
            run_connection(tls, name, current.serial, initiator, id, hello, events).await;
        }
        _ => serve_join(tls, remote, events, ticket).await,
    }
}

/// A connection without a client certificate: one join request within
/// [`JOIN_REQUEST_DEADLINE`], one answer. It counts under the limits until it is answered.
async fn serve_join<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    remote: SocketAddr,
    events: mpsc::Sender<Event>,
    ticket: Ticket,
) {
    let read = read_message_limited::<_, Message>(&mut stream, MAX_JOIN_REQUEST_LEN);
    let request = match tokio::time::timeout(JOIN_REQUEST_DEADLINE, read).await {
        Ok(Ok(Message::JoinRequest(request))) => request,
        Ok(Err(FrameError::Closed)) => {
            // A TLS probe (or a joiner that gave up): nothing to say.
            ticket.closed(Reason::BadJoinRequest);
            return;
        }
        Ok(other) => {
            let error = match other {
                Ok(_) => "a connection without a certificate may only ask to join".to_owned(),
                Err(error) => error.to_string(),
            };
            let admitted = lock(&ticket.gate).bad_joins.admit(Instant::now());
            if let Some(more) = admitted {
                tracing::warn!(%remote, %error, "bad join request; closed{}", left_out(more, "bad"));
            }
            ticket.closed(Reason::BadJoinRequest);
            return;
        }
        Err(_) => {
            ticket.closed(Reason::JoinTimeout);
            return;
        }
    };
    // The CA may redeem the invitation from here on: closing the connection to make room
    // would lose the joiner its token.
    ticket.pin();
    // Said by the hub with its outcome (admitted, or refused: throttled).
    tracing::debug!(%remote, node = %request.name, "join request");
    let node = request.name.clone();
    let answer = answer_from_hub(&mut stream, &events, |reply| Event::Join {
        request: Box::new(request),
        reply,
    });
    if tokio::time::timeout(JOIN_ANSWER_DEADLINE, answer)
        .await
        .is_err()
    {
        tracing::debug!(%remote, %node, "join request not answered within {JOIN_ANSWER_DEADLINE:?}; closed");
    }
    drop(ticket);
}

/// Hands `event` (which carries the reply channel) to the hub and writes its answer back on
/// `stream`; a hub that has stopped, or drops the request, ends the connection silently.
async fn answer_from_hub<S: AsyncWrite + Unpin>(
    stream: &mut S,
    events: &mpsc::Sender<Event>,
    event: impl FnOnce(oneshot::Sender<Message>) -> Event,
) {
    let (reply, answer) = oneshot::channel();
    if events.send(event(reply)).await.is_err() {
        return;
    }
    if let Ok(answer) = answer.await {
        let _ = write_message(stream, &answer).await;
    }
}

/// A renewal connection from a member (authenticated by `current`, its certificate): one
/// request, one answer.
async fn serve_renewal<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    current: Box<NodeCertificate>,
    remote: SocketAddr,
    events: mpsc::Sender<Event>,
) {
    let node = current.identity.name.clone();
    let request = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        read_message::<_, Message>(&mut stream),
    )
    .await
    {
        Ok(Ok(Message::RenewRequest(request))) => request,
        Ok(Ok(_)) => {
            tracing::warn!(%remote, %node, "a renewal connection may only carry a renewal request; closed");
            return;
        }
        Ok(Err(error)) => {
            tracing::warn!(%remote, %node, %error, "bad renewal request; closed");
            return;
        }
        Err(_) => return,
    };
    tracing::info!(%remote, %node, "certificate renewal request");
    answer_from_hub(&mut stream, &events, |reply| Event::Renew {
        current,
        request,
        reply,
    })
    .await;
}

/// Runs one authenticated member connection until it fails or the hub aborts it. With
/// `hello` (the handshake agreed on [`MEMBER_ALPN`]) each side's first message is its
/// hello; without, the peer is older than the hello and gets none.
async fn run_connection<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
    name: String,
    serial: SerialNumber,
    initiator: String,
    id: u64,
    hello: bool,
    events: mpsc::Sender<Event>,
) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (sender, mut outbound) = mpsc::channel::<Message>(QUEUE);
    if hello {
        // First in the queue, before anything the hub sends.
        let _ = sender.try_send(Message::Hello(own_hello()));
    }
    let events_for_reader = events.clone();
    let peer = name.clone();
    // The hub learns of the connection before anything read on it (the peer's hello).
    let (registered, is_registered) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        if is_registered.await.is_err() {
            return;
        }
        // A peer that refuses our certificate closes before its first message; the hub says
        // that once per backoff step, so the error is not logged here as well.
        let heard = std::sync::atomic::AtomicBool::new(false);
        let writer_task = async {
            while let Some(message) = outbound.recv().await {
                write_message(&mut writer, &message).await?;
            }
            Ok(())
        };
        let reader_task = async {
            if hello {
                let body = read_body_limited(&mut reader, MAX_FRAME_LEN).await?;
                let Incoming::Known(Message::Hello(hello)) = decode_member(&body)? else {
                    tracing::warn!(%peer, "a member connection with ALPN meshd-member/2 must \
                        start with a hello; closed");
                    return Ok(());
                };
                heard.store(true, std::sync::atomic::Ordering::Relaxed);
                let event = Event::Hello {
                    name: peer.clone(),
                    id,
                    hello,
                };
                if events_for_reader.send(event).await.is_err() {
                    return Ok(());
                }
            }
            loop {
                let body = read_body_limited(&mut reader, MAX_FRAME_LEN).await?;
                // A type this node does not know is a newer node's: skipped, so that a mesh
                // can be upgraded one node at a time (see `protocol`).
                let event = match decode_member(&body) {
                    Ok(Incoming::Known(Message::Gossip(gossip))) => Event::Gossip {
                        name: peer.clone(),
                        gossip,
                    },
                    Ok(Incoming::Unknown(kind)) => Event::Skipped {
                        name: peer.clone(),
                        kind,
                    },
                    Ok(Incoming::Known(other)) => {
                        tracing::warn!(%peer, message = other.kind(), "unexpected message on a member connection; closed");
                        return Ok(());
                    }
                    Err(error) => return Err(error),
                };
                heard.store(true, std::sync::atomic::Ordering::Relaxed);
                if events_for_reader.send(event).await.is_err() {
                    return Ok(());
                }
            }
        };
        let result = tokio::select! {
            r = writer_task => r,
            r = reader_task => r,
        };
        match result {
            Ok(()) | Err(FrameError::Closed) => {}
            // A transport failure before the peer said anything is a redial race (the
            // other side closed a duplicate); a bad frame is the peer's fault and is warned.
            Err(error @ FrameError::Io(_)) if !heard.load(std::sync::atomic::Ordering::Relaxed) => {
                tracing::debug!(%peer, %error, "control connection closed before the first message");
            }
            Err(error) => tracing::warn!(%peer, %error, "control connection closed"),
        }
    });
    let _ = events
        .send(Event::Connected {
            name: name.clone(),
            serial,
            id,
            initiator,
            sender,
            abort: task.abort_handle(),
        })
        .await;
    let _ = registered.send(());
    let _ = task.await;
    let _ = events.send(Event::Closed { name, id }).await;
}

impl ControlSettings {
    /// The settings `meshd run` uses, or `None` when the node has no mesh certificate (a node
    /// configured by hand with static `[[peer]]`s only).
    pub fn for_daemon(config: &mesh_config::Config, state_dir: &std::path::Path) -> Option<Self> {
        let state = StateDir::new(state_dir);
        if !state.node_cert_path().exists() {
            return None;
        }
        let port = config.node.listen_port;
        Some(Self {
            state,
            bind: vec![SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port))],
            endpoints: config
                .node
                .endpoints
                .iter()
                .map(ToString::to_string)
                .collect(),
            asn: config.routing.asn,
            resolver: None,
            certificate_validity: crate::identity::NODE_CERT_VALIDITY,
            renewal_grace: crate::identity::RENEWAL_GRACE,
            fwmark: (config.exit.use_exits == mesh_config::exit::UseExits::Nearest)
                .then_some(config.exit.fwmark),
        })
    }
}

/// The mesh pools, routed into the TUN as a whole so that members joining later need no new
/// kernel routes (the data plane drops what no peer claims).
pub fn mesh_pool_routes(config: &mesh_config::Config) -> Vec<ipnet::IpNet> {
    let mut routes = vec![ipnet::IpNet::V4(config.mesh.pool4)];
    routes.extend(config.mesh.pool6.map(ipnet::IpNet::V6));
    routes
}
