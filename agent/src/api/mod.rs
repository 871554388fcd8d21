//! The operator's local API: a Unix stream socket on which the running daemon answers
//! `meshd status`, `meshd peers`, `meshd routes` and accepts the clients `meshd client add`
//! creates.
//!
//! - [`protocol`]: the wire format (one JSON object per line, with a `version`), pure.
//! - [`report`]: the payloads (`{"schema": 1, ...}`, what `--json` prints) and their pure
//!   builders.
//! - [`socket`]: the socket path and binding it (mode 0660, stale sockets replaced).
//! - [`server`]: the daemon side; [`client`]: the blocking command side.
//! - [`client_registry`]: `clients.json`, the client devices and their addresses;
//!   [`wg_quick`]: a client's wg-quick configuration and QR code.
//! - [`human`]: counts and durations for people.
//! - [`peer_state`]: up / stale / down for a peer, the one place that decides it (pure).
//!
//! The daemon opens the socket with [`ApiServer::open`] before it touches the system (a second
//! daemon stops there) and serves it with [`ApiServer::serve`] once its planes run
//! (crate::daemon).

pub mod client;
pub mod client_registry;
mod error;
pub mod human;
pub mod peer_state;
pub mod protocol;
pub mod report;
pub mod server;
pub mod socket;
pub mod wg_quick;

use std::convert::Infallible;
use std::path::Path;

pub use client::{ApiClient, request};
pub use error::ApiError;
pub use report::NodeInfo;
pub use server::ApiState;
pub use socket::{ControlSocket, DEFAULT_SOCKET_PATH, socket_path};

use crate::dataplane::PeerConfig;
use crate::peerset::{DataplaneControl, KnownPeer, PeerKind, PeerSet};
use crate::state::{CaDatabase, StateDir, StateError};
use client_registry::ClientRegistry;

/// Why the control socket could not be opened at start-up.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Socket(#[from] ApiError),
    #[error("cannot load the client devices: {0}")]
    Clients(#[from] StateError),
    #[error(
        "client {name:?} in {} has the name of a configured [[peer]]; rename one of them",
        path.display()
    )]
    ClientNameTaken {
        name: String,
        path: std::path::PathBuf,
    },
}

/// The control socket, bound, with the peers the daemon starts with.
#[derive(Debug)]
pub struct ApiServer {
    socket: ControlSocket,
    state: StateDir,
    peers: Vec<KnownPeer>,
    bgp: Option<tokio::sync::watch::Receiver<report::BgpView>>,
    control: Option<server::ControlTrigger>,
}

impl ApiServer {
    /// Binds the socket at `socket_path` and loads the clients from `clients.json` in
    /// `state_dir`. Call it before touching the system: it fails if another daemon answers on
    /// the socket. The roles of `configured` peers are taken from the CA database when this
    /// node holds the CA.
    pub fn open(
        socket_path: &Path,
        state_dir: &Path,
        configured: &[PeerConfig],
    ) -> Result<Self, OpenError> {
        let state = StateDir::new(state_dir);
        let registry = ClientRegistry::load(&state)?;
        if let Some(client) = registry
            .clients
            .iter()
            .find(|c| configured.iter().any(|p| p.name == c.name))
        {
            return Err(OpenError::ClientNameTaken {
                name: client.name.clone(),
                path: ClientRegistry::path(&state),
            });
        }
        let nodes = configured_nodes(&state, configured);
        let peers = server::merge_clients(&nodes, &registry);
        let socket = ControlSocket::bind(socket_path)?;
        Ok(Self {
            socket,
            state,
            peers,
            bgp: None,
            control: None,
        })
    }

    /// Lets `meshd renew` and `meshd router add` reach the control plane.
    pub fn with_control(mut self, control: server::ControlTrigger) -> Self {
        self.control = Some(control);
        self
    }

    /// Shows the routing plane's sessions and routes in `meshd routes`.
    pub fn with_bgp(mut self, view: tokio::sync::watch::Receiver<report::BgpView>) -> Self {
        self.bgp = Some(view);
        self
    }

    /// The peers the node starts with: the configured ones, then the clients.
    pub fn known_peers(&self) -> Vec<KnownPeer> {
        self.peers.clone()
    }

    /// Answers requests until the future is dropped; clients added at runtime go into
    /// `peer_set`.
    pub async fn serve<'a, D: DataplaneControl>(
        self,
        node: NodeInfo,
        peer_set: &'a PeerSet<'a, D>,
    ) -> Infallible {
        let mut api = ApiState::shared(node, peer_set, self.state);
        if let Some(view) = self.bgp {
            api.set_bgp(view);
        }
        if let Some(control) = self.control {
            api.set_control(control);
        }
        self.socket.serve(&api).await
    }
}

/// The configured peers as the peer set knows them: their roles are taken from the CA
/// database when this node holds the CA (used at start and on every reload).
pub fn configured_nodes(state: &StateDir, configured: &[PeerConfig]) -> Vec<KnownPeer> {
    let ca_db = ca_database(state);
    let role = |name: &str| Some(ca_db.as_ref()?.allocator.node(name)?.role);
    configured
        .iter()
        .map(|config| KnownPeer {
            config: config.clone(),
            kind: PeerKind::Node(role(&config.name)),
        })
        .collect()
}

/// The CA database, where the roles of the nodes are known (only on the CA holder). The
/// roles are only shown to people, so a database that cannot be read costs a warning here;
/// the commands that depend on it report it as an error.
fn ca_database(state: &StateDir) -> Option<CaDatabase> {
    if !state.is_ca_holder() {
        return None;
    }
    state
        .read_ca_db()
        .inspect_err(|error| tracing::warn!(%error, "the roles of the peers are unknown"))
        .ok()
}
