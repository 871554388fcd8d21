//! The daemon side of the control socket: accepts local connections and answers requests
//! from the daemon's facts, the data plane's counters and the state directory.
//!
//! It runs as one future inside the daemon (not a spawned task), borrowing the data plane;
//! connections are served concurrently within it, each bounded in size and time, and the
//! number of open connections is capped, so a misbehaving local client costs little.

use std::convert::Infallible;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::watch;

use super::client_registry::ClientRegistry;
use super::protocol::{ErrorKind, Failure, MAX_REQUEST_BYTES, Request, Response};
use super::report::{self, BgpView, NodeInfo, SCHEMA_VERSION};
use super::socket::ControlSocket;
use crate::dataplane::RekeyRequest;
use crate::peerset::{DataplaneControl, KnownPeer, PeerKind, PeerSet, PeerSources, RoutePlan};
use crate::state::StateDir;

/// Connections served at once; more are answered "busy" and closed.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a connection may stay silent before the daemon closes it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long writing one response may take (a client that does not read).
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (e.g. out of file descriptors) so it is not a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The server's view of the node: fixed facts, the peer set (which the control plane may
/// change too) and the state directory clients are read from.
#[derive(Debug)]
pub struct ApiState<'a, D> {
    node: NodeInfo,
    peers: Peers<'a, D>,
    state: StateDir,
    /// The routing plane's view, when the daemon runs BGP.
    bgp: Option<watch::Receiver<BgpView>>,
    /// Asks the control plane for a certificate renewal or to load new hosted routers, when
    /// the node has one.
    control: Option<ControlTrigger>,
}

/// What an API request may ask of the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlAsk {
    /// Renew the node certificate now (`meshd renew`).
    Renew,
    /// Load the foreign routers `meshd router add` stored and stand in for them.
    LoadRouters,
}

/// Asks the control plane for something now: `Ok` with what to tell the operator, `Err` when
/// it could not be asked. (A function, so that the API knows nothing of the control plane.)
#[derive(Clone)]
pub struct ControlTrigger(
    std::sync::Arc<dyn Fn(ControlAsk) -> Result<String, String> + Send + Sync>,
);

impl ControlTrigger {
    pub fn new(ask: impl Fn(ControlAsk) -> Result<String, String> + Send + Sync + 'static) -> Self {
        ControlTrigger(std::sync::Arc::new(ask))
    }

    fn ask(&self, what: ControlAsk) -> Result<String, String> {
        (self.0)(what)
    }
}

impl std::fmt::Debug for ControlTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlTrigger")
    }
}

/// The peer set the server changes: its own (a server alone, in tests) or the daemon's,
/// shared with the control plane.
#[derive(Debug)]
enum Peers<'a, D> {
    Own(Box<PeerSet<'a, D>>),
    Shared(&'a PeerSet<'a, D>),
}

impl<'a, D: DataplaneControl> ApiState<'a, D> {
    /// A server that alone changes `dataplane`'s peers; `peers` must be the set the data
    /// plane was started with.
    pub fn new(node: NodeInfo, dataplane: &'a D, peers: Vec<KnownPeer>, state: StateDir) -> Self {
        let peers = PeerSet::new(
            dataplane,
            PeerSources::from_local(peers),
            RoutePlan::default(),
        );
        Self {
            node,
            peers: Peers::Own(Box::new(peers)),
            state,
            bgp: None,
            control: None,
        }
    }

    /// A server that changes the clients of the daemon's peer set.
    pub fn shared(node: NodeInfo, peers: &'a PeerSet<'a, D>, state: StateDir) -> Self {
        Self {
            node,
            peers: Peers::Shared(peers),
            state,
            bgp: None,
            control: None,
        }
    }

    /// Lets `renew` and `add_router` requests reach the control plane.
    pub fn set_control(&mut self, control: ControlTrigger) {
        self.control = Some(control);
    }

    /// Adds the routing plane's sessions and routes to `routes` answers.
    pub fn set_bgp(&mut self, view: watch::Receiver<BgpView>) {
        self.bgp = Some(view);
    }

    fn peer_set(&self) -> &PeerSet<'a, D> {
        match &self.peers {
            Peers::Own(peers) => peers,
            Peers::Shared(peers) => peers,
        }
    }

    /// The peers as they are now.
    pub fn peers(&self) -> Vec<KnownPeer> {
        self.peer_set().peers()
    }

    /// The node's facts, with the kernel routes as they are now in the daemon (they follow
    /// the members' LANs); a server alone reports what it was given.
    fn node(&self) -> NodeInfo {
        let mut node = self.node.clone();
        if let Peers::Shared(peers) = &self.peers {
            node.kernel_routes = peers.wanted_routes().borrow().clone();
        }
        node
    }

    /// Answers one request line.
    pub fn handle(&self, line: &[u8]) -> Response {
        let request = match Request::decode(line) {
            Ok(request) => request,
            Err(failure) => return Response::error(failure),
        };
        let payload = match request {
            Request::Status => {
                let peers = self.peers();
                let stats = self.peer_set().stats();
                let status = report::status(
                    &self.node(),
                    &peers,
                    &stats,
                    OffsetDateTime::now_utc(),
                    std::time::Instant::now(),
                );
                match &self.bgp {
                    Some(view) => to_value(&report::status_with_bgp(status, &view.borrow())),
                    None => to_value(&status),
                }
            }
            Request::Peers => {
                let peers = report::peers(
                    &self.peers(),
                    &self.peer_set().stats(),
                    std::time::Instant::now(),
                );
                match &self.bgp {
                    Some(view) => to_value(&report::peers_with_bgp(peers, &view.borrow())),
                    None => to_value(&peers),
                }
            }
            Request::Routes => {
                let node = self.node();
                let routes = report::routes(&node, &self.peers());
                match &self.bgp {
                    Some(view) => to_value(&report::with_bgp(routes, &node, &view.borrow())),
                    None => to_value(&routes),
                }
            }
            Request::AddClient { name } => match self.add_client(&name) {
                Ok(payload) => payload,
                Err(failure) => return Response::error(failure),
            },
            Request::Renew => match self.ask_control(ControlAsk::Renew, "nothing to renew") {
                Ok(payload) => payload,
                Err(failure) => return Response::error(failure),
            },
            Request::Rekey { name } => match self.rekey(name.as_deref()) {
                Ok(payload) => payload,
                Err(failure) => return Response::error(failure),
            },
            Request::AddRouter => {
                match self.ask_control(ControlAsk::LoadRouters, "no router to stand in for") {
                    Ok(payload) => payload,
                    Err(failure) => return Response::error(failure),
                }
            }
        };
        Response::ok(payload)
    }

    /// Passes `what` on to the control plane: `{"message": TEXT}` once it is queued.
    fn ask_control(&self, what: ControlAsk, without: &str) -> Result<serde_json::Value, Failure> {
        let outcome = match &self.control {
            Some(control) => control.ask(what),
            None => Err(format!(
                "this node runs no control plane (it has no certificate), so there is {without}"
            )),
        };
        outcome
            .map(|message| serde_json::json!({ "message": message }))
            .map_err(|why| Failure::new(ErrorKind::Failed, why))
    }

    /// Starts new handshakes: `{"schema": 1, "rekeyed": [..], "without_path": [..]}`, or
    /// "not found" when no peer has the name asked for.
    fn rekey(&self, name: Option<&str>) -> Result<serde_json::Value, Failure> {
        let requests = self.peer_set().request_rekey(name);
        if let Some(name) = name
            && requests.is_empty()
        {
            return Err(Failure::new(
                ErrorKind::NotFound,
                format!("there is no peer {name:?}; `meshd peers` lists them"),
            ));
        }
        let (started, without_path): (Vec<_>, Vec<_>) =
            requests.into_iter().partition(|request| request.started);
        let names = |requests: Vec<RekeyRequest>| -> Vec<String> {
            requests.into_iter().map(|request| request.peer).collect()
        };
        Ok(serde_json::json!({
            "schema": SCHEMA_VERSION,
            "rekeyed": names(started),
            "without_path": names(without_path),
        }))
    }

    /// Re-reads `clients.json` and gives the data plane every client in it (the one named
    /// and any other added while the daemon could not be told).
    fn add_client(&self, name: &str) -> Result<serde_json::Value, Failure> {
        let failed = |message: String| Failure::new(ErrorKind::Failed, message);
        let registry = ClientRegistry::load(&self.state).map_err(|e| failed(e.to_string()))?;
        if registry.get(name).is_none() {
            return Err(Failure::new(
                ErrorKind::NotFound,
                format!(
                    "there is no client {name:?} in {}; create it with `meshd client add`",
                    ClientRegistry::path(&self.state).display()
                ),
            ));
        }
        let clients = registry
            .clients
            .iter()
            .map(|client| KnownPeer {
                config: client.peer_config(),
                kind: PeerKind::Client,
            })
            .collect();
        self.peer_set()
            .set_clients(clients)
            .map_err(|e| failed(format!("the data plane refused the client: {e}")))?;
        Ok(serde_json::json!({
            "schema": SCHEMA_VERSION,
            "client": name,
            "peers": self.peer_set().peers().len(),
        }))
    }
}

/// `peers` with its clients replaced by those of `registry` (the configured peers keep their
/// place and sessions).
pub fn merge_clients(peers: &[KnownPeer], registry: &ClientRegistry) -> Vec<KnownPeer> {
    peers
        .iter()
        .filter(|p| p.kind != PeerKind::Client)
        .cloned()
        .chain(registry.clients.iter().map(|client| KnownPeer {
            config: client.peer_config(),
            kind: PeerKind::Client,
        }))
        .collect()
}

fn to_value<T: serde::Serialize>(report: &T) -> serde_json::Value {
    serde_json::to_value(report).expect("reports are plain data and always serialise")
}

impl ControlSocket {
    /// Serves connections until the returned future is dropped (the daemon drops it when it
    /// shuts down). Never returns: accept errors are logged and retried.
    pub async fn serve<D: DataplaneControl>(&self, api: &ApiState<'_, D>) -> Infallible {
        tracing::info!(socket = %self.path().display(), "control socket ready");
        let mut connections = FuturesUnordered::new();
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) if connections.len() >= MAX_CONNECTIONS => refuse_busy(&stream),
                    Ok((stream, _)) => connections.push(serve_connection(stream, api)),
                    Err(error) => {
                        tracing::warn!(%error, "cannot accept a control connection");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                Some(()) = connections.next(), if !connections.is_empty() => {}
            }
        }
    }
}

/// Tells a client over the connection limit to come back later, without waiting for it.
fn refuse_busy(stream: &UnixStream) {
    let response = Response::error(Failure::new(
        ErrorKind::Busy,
        format!("the daemon is serving {MAX_CONNECTIONS} connections already; try again"),
    ));
    let _ = stream.try_write(&response.to_line());
}

/// Answers the requests of one connection, one line each, until it closes, goes quiet for
/// [`IDLE_TIMEOUT`], or sends a line longer than [`MAX_REQUEST_BYTES`].
async fn serve_connection<D: DataplaneControl>(stream: UnixStream, api: &ApiState<'_, D>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let limit = u64::try_from(MAX_REQUEST_BYTES).unwrap_or(u64::MAX) + 1;
    loop {
        let mut line = Vec::new();
        let read = tokio::time::timeout(
            IDLE_TIMEOUT,
            (&mut reader).take(limit).read_until(b'\n', &mut line),
        )
        .await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
        let complete = line.ends_with(b"\n");
        let (response, keep_going) = if !complete && line.len() > MAX_REQUEST_BYTES {
            // The rest of the line is still unread: the stream cannot be resynchronised.
            let failure = Failure::new(
                ErrorKind::TooLarge,
                format!("the request is longer than {MAX_REQUEST_BYTES} bytes"),
            );
            (Response::error(failure), false)
        } else {
            // A last line without a newline is answered too; the client has finished.
            (api.handle(&line), complete)
        };
        let written =
            tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&response.to_line())).await;
        if !matches!(written, Ok(Ok(()))) || !keep_going {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::report::tests::{known, node, stats_for};
    use crate::dataplane::{DataplaneError, DataplaneStats, PeerConfig};
    use std::sync::Mutex as StdMutex;

    /// A data plane that records the peer sets it was given.
    #[derive(Debug, Default)]
    struct FakeDataplane {
        updates: StdMutex<Vec<Vec<String>>>,
        refuse: bool,
        /// Its peer has no path yet, so a rekey sends nothing.
        pathless: bool,
    }

    impl DataplaneControl for FakeDataplane {
        // Forwards no packets, so has nothing to keep local.
        fn set_own_prefixes(&self, _prefixes: &[ipnet::IpNet]) {}

        // Its one peer, beta, has a path unless `pathless`.
        fn request_rekey(&self, name: Option<&str>) -> Vec<RekeyRequest> {
            ["beta"]
                .into_iter()
                .filter(|peer| name.is_none_or(|name| name == *peer))
                .map(|peer| RekeyRequest {
                    peer: peer.into(),
                    started: !self.pathless,
                })
                .collect()
        }

        fn stats(&self) -> DataplaneStats {
            let beta = known("beta", PeerKind::Node(None), &["10.2.0.0/16"]);
            DataplaneStats {
                peers: vec![stats_for(&beta, Some(5))],
                drops: Default::default(),
            }
        }

        fn update_peers(&self, peers: &[PeerConfig]) -> Result<(), DataplaneError> {
            if self.refuse {
                return Err(DataplaneError::config("refused for the test"));
            }
            self.updates
                .lock()
                .unwrap()
                .push(peers.iter().map(|p| p.name.clone()).collect());
            Ok(())
        }
    }

    fn api_with(dataplane: &FakeDataplane, state: StateDir) -> ApiState<'_, FakeDataplane> {
        let beta = known("beta", PeerKind::Node(None), &["10.2.0.0/16"]);
        ApiState::new(node(), dataplane, vec![beta], state)
    }

    fn ok(response: Response) -> serde_json::Value {
        assert!(response.error.is_none(), "{response:?}");
        response.ok.unwrap()
    }

    #[test]
    fn status_peers_and_routes_are_answered() {
        let dataplane = FakeDataplane::default();
        let api = api_with(&dataplane, StateDir::new("/nonexistent"));
        let status = ok(api.handle(&Request::Status.to_line()));
        assert_eq!(status["schema"], 1);
        assert_eq!(status["peers"]["up"], 1);
        let peers = ok(api.handle(&Request::Peers.to_line()));
        assert_eq!(peers["peers"][0]["name"], "beta");
        let routes = ok(api.handle(&Request::Routes.to_line()));
        assert_eq!(routes["routes"][0]["prefix"], "10.2.0.0/16");
    }

    #[test]
    fn malformed_requests_get_an_error_response() {
        let dataplane = FakeDataplane::default();
        let api = api_with(&dataplane, StateDir::new("/nonexistent"));
        for line in [
            &b"\xff\xfe"[..],
            b"{}",
            b"{\"version\":1,\"request\":\"nope\"}\n",
        ] {
            let response = api.handle(line);
            assert_eq!(response.error.unwrap().kind, ErrorKind::BadRequest);
        }
    }

    #[test]
    fn renew_reaches_the_control_plane_or_says_there_is_none() {
        let dataplane = FakeDataplane::default();
        let mut api = api_with(&dataplane, StateDir::new("/nonexistent"));
        let failure = api.handle(&Request::Renew.to_line()).error.unwrap();
        assert_eq!(failure.kind, ErrorKind::Failed);
        assert!(failure.message.contains("no certificate"), "{failure:?}");

        let asked = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = asked.clone();
        api.set_control(ControlTrigger::new(move |what| {
            assert_eq!(what, ControlAsk::Renew);
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok("asked".into())
        }));
        let answer = ok(api.handle(&Request::Renew.to_line()));
        assert_eq!(answer["message"], "asked");
        assert_eq!(asked.load(std::sync::atomic::Ordering::Relaxed), 1);
    }

    #[test]
    fn rekey_names_the_peers_it_started_and_refuses_an_unknown_one() {
        let dataplane = FakeDataplane::default();
        let api = api_with(&dataplane, StateDir::new("/nonexistent"));
        for name in [None, Some("beta".to_owned())] {
            let answer = ok(api.handle(&Request::Rekey { name }.to_line()));
            assert_eq!(
                answer,
                serde_json::json!({"schema": 1, "rekeyed": ["beta"], "without_path": []})
            );
        }
        let failure = api
            .handle(
                &Request::Rekey {
                    name: Some("nobody".into()),
                }
                .to_line(),
            )
            .error
            .unwrap();
        assert_eq!(failure.kind, ErrorKind::NotFound);
        assert!(failure.message.contains("\"nobody\""), "{failure:?}");
        // The wire form scripts send: a bare "rekey" means every peer.
        let bare = ok(api.handle(b"{\"version\":1,\"request\":\"rekey\"}\n"));
        assert_eq!(bare["rekeyed"], serde_json::json!(["beta"]));

        let pathless = FakeDataplane {
            pathless: true,
            ..FakeDataplane::default()
        };
        let api = api_with(&pathless, StateDir::new("/nonexistent"));
        let answer = ok(api.handle(&Request::Rekey { name: None }.to_line()));
        assert_eq!(answer["rekeyed"], serde_json::json!([]));
        assert_eq!(answer["without_path"], serde_json::json!(["beta"]));
    }

    #[test]
    fn add_client_reads_the_registry_and_updates_the_data_plane() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let dataplane = FakeDataplane::default();
        let api = api_with(&dataplane, state.clone());
        let request = Request::AddClient {
            name: "laptop".into(),
        };

        let response = api.handle(&request.to_line());
        let failure = response.error.unwrap();
        assert_eq!(failure.kind, ErrorKind::NotFound);
        assert!(failure.message.contains("clients.json"), "{failure:?}");

        let node = crate::api::client_registry::tests::spoke();
        let now = OffsetDateTime::UNIX_EPOCH;
        crate::api::client_registry::add_client(&state, &node, "laptop", now).unwrap();
        let payload = ok(api.handle(&request.to_line()));
        assert_eq!(payload["peers"], 2);
        assert_eq!(
            *dataplane.updates.lock().unwrap(),
            vec![vec!["beta".to_owned(), "laptop".to_owned()]]
        );
        // Idempotent: asking again gives the same set.
        ok(api.handle(&request.to_line()));
        let peers = ok(api.handle(&Request::Peers.to_line()));
        assert_eq!(peers["peers"][1]["role"], "client");
        assert_eq!(peers["peers"][1]["allowed_prefixes"][0], "10.3.0.2/32");

        let refusing = FakeDataplane {
            refuse: true,
            ..Default::default()
        };
        let api = api_with(&refusing, state);
        let failure = api.handle(&request.to_line()).error.unwrap();
        assert_eq!(failure.kind, ErrorKind::Failed);
        assert!(
            failure.message.contains("refused for the test"),
            "{failure:?}"
        );
        assert_eq!(api.peers().len(), 1, "a refused update changes nothing");
    }
}
