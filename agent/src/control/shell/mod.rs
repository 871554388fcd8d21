//! The tokio shell of the control plane: listens for TLS connections on the node's port,
//! dials the members it should be connected to, runs the [`Membership`] machine in one task
//! (the hub) and turns membership into data-plane peers.
//!
//! Who dials whom: a core dials every other core, a spoke dials its core (it may sit behind
//! NAT). When two cores dial each other at once, both keep the connection opened by the node
//! with the smaller name, so both ends agree without another round trip.
//!
//! Certificate renewal ([`super::renewal`] decides when): a member dials the CA holder on a
//! connection of its own (ALPN [`RENEWAL_ALPN`](super::tls::RENEWAL_ALPN), its current
//! certificate as TLS client certificate), sends one
//! [`RenewRequest`](super::message::RenewRequest) and gets the new certificate back; the CA holder
//! renews its own locally. The new certificate is written to `node.crt`, presented in every
//! handshake from then on, and spread in a new version of the node's membership record. The
//! WireGuard key does not change, so no tunnel is touched.
//!
//! One job a module: [`hub`] (the task that owns the [`Membership`] machine and every
//! connection's sender, and what it does with events and actions), [`listener`] (the
//! accept loop and what an accepted connection is for: member, renewal or join), [`gate`]
//! (the limits every listener shares for unauthenticated connections, and their report),
//! [`dialer`] (which members to dial, and dialing), [`connection`] (one member connection,
//! dialed or accepted), [`preflight`] (the start-up check of the revocation list),
//! [`publish`] (membership out to the data plane, the routing plane, the resolver and the
//! state directory), [`renewal_dispatch`] (asking for certificates, this node's and its
//! hosted routers'), [`own_certificate`] (this node's certificate and record taken into
//! use), [`stand_in`] (the foreign routers this node hosts), [`ca`] (what the CA holder
//! answers), [`registry`] (the CA registry record: published by the active holder, merged
//! by a standby).

mod ca;
mod connection;
mod dialer;
mod gate;
mod hub;
mod listener;
mod own_certificate;
mod preflight;
mod publish;
mod registry;
mod renewal_dispatch;
mod stand_in;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pki::{NodeCertificate, NodeIdentity, NodeKeyPair};
use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;

use self::gate::{Gate, SharedGate, lock};
use self::hub::{Event, Hub, Own};
use super::accept_limits::RefusalCounts;
use super::hosted::HostedRouters;
use super::log_throttle::{LOG_WINDOW, LogThrottle};
use super::membership::Membership;
use super::message::Gossip;
use super::protocol::OncePerPeer;
use super::record::{next_version, sign_record};
use super::renewal::{Renewal, Validity};
use super::renewal_targets::LastKnown;
use super::store;
use super::tls::{
    ControlAcceptor, OwnCertificate, Trust, legacy_member_client_config, member_client_config,
    renewal_client_config,
};
use crate::peerset::KnownPeer;
use crate::state::StateDir;

/// Limit for connecting and for the TLS handshake when dialing, and for a renewal request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

impl ControlPlane {
    /// Loads the node's identity and membership from `settings.state`, binds the listeners
    /// and starts the tasks. Must be called inside a tokio runtime.
    pub async fn start(settings: ControlSettings) -> Result<ControlHandle, ControlError> {
        let state = &settings.state;
        let parsed = NodeCertificate::from_pem(&state.read_certificate(&state.node_cert_path())?)
            .map_err(|e| {
            ControlError::Identity(format!("{}: {e}", state.node_cert_path().display()))
        })?;
        let cert_der = parsed.der.clone();
        let ca_der = pem_der(&state.read_certificate(&state.ca_cert_path())?).map_err(|e| {
            ControlError::Identity(format!("{}: {e}", state.ca_cert_path().display()))
        })?;
        let key = NodeKeyPair::from_pem(&state.read_node_key()?).map_err(|e| {
            ControlError::Identity(format!("{}: {e}", state.node_key_path().display()))
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
        startup.extend(stand_in::stand_in(
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
        let (listeners, local_addrs) = listener::bind(&settings.bind).await?;
        let (peers_tx, peers_rx) = watch::channel(Vec::new());
        let (members_tx, members_rx) = watch::channel(Vec::new());
        let (counts_tx, counts_rx) = watch::channel(MembershipCounts::default());
        let (member_names_tx, member_names_rx) = watch::channel(BTreeMap::new());
        // One gate for every listener: the limits are the daemon's.
        let gate = Gate::shared();
        let mut tasks = vec![tokio::spawn(gate::report_refusals(gate.clone()))];
        for listener in listeners {
            tasks.push(tokio::spawn(listener::accept_loop(
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
            registry: Default::default(),
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

/// The DER of the certificate in `pem`.
fn pem_der(pem: &str) -> Result<Vec<u8>, String> {
    pki::certificate_der_from_pem(pem).map_err(|e| format!("not a PEM certificate: {e}"))
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
            endpoints: config.node.endpoint_strings(),
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
