//! The control socket end to end without root: a server with a stand-in data plane on a
//! socket in a temporary directory, spoken to raw (malformed, oversized, idle) and through
//! the `meshd status | peers | routes | rekey` commands.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use meshd::api::protocol::MAX_REQUEST_BYTES;
use meshd::api::{ApiState, ControlSocket, NodeInfo};
use meshd::dataplane::{DataplaneError, DataplaneStats, DropCounts, PeerConfig, PeerStats};
use meshd::peerset::{DataplaneControl, KnownPeer, PeerKind};
use meshd::state::StateDir;
use serde_json::Value;

/// A data plane with one peer that had a handshake 5 s ago.
struct StandIn;

fn beta() -> PeerConfig {
    PeerConfig {
        name: "beta".into(),
        public_key: [7; 32],
        endpoints: vec!["203.0.113.2:51820".parse().unwrap()],
        allowed_ips: vec!["10.2.0.0/16".parse().unwrap()],
        ecmp_ips: Vec::new(),
        persistent_keepalive: None,
        relay: false,
    }
}

impl DataplaneControl for StandIn {
    // Forwards no packets, so has nothing to keep local.
    fn set_own_prefixes(&self, _prefixes: &[ipnet::IpNet]) {}

    // Its one peer, beta, has an endpoint.
    fn request_rekey(&self, name: Option<&str>) -> Vec<meshd::dataplane::RekeyRequest> {
        ["beta"]
            .into_iter()
            .filter(|peer| name.is_none_or(|name| name == *peer))
            .map(|peer| meshd::dataplane::RekeyRequest {
                peer: peer.into(),
                started: true,
            })
            .collect()
    }

    fn stats(&self) -> DataplaneStats {
        DataplaneStats {
            peers: vec![PeerStats {
                name: "beta".into(),
                public_key: [7; 32],
                endpoint: Some("203.0.113.2:51820".parse().unwrap()),
                rx_bytes: 4096,
                rx_packets: 4,
                tx_bytes: 2048,
                tx_packets: 2,
                transit_packets: 0,
                handshakes: 1,
                last_handshake: Some(Duration::from_secs(5)),
                rtt: None,
                // Heard from just now: up (a stand-in without this would be stale).
                last_received: Some(std::time::Instant::now()),
                ..Default::default()
            }],
            drops: DropCounts::default(),
        }
    }

    fn update_peers(&self, _peers: &[PeerConfig]) -> Result<(), DataplaneError> {
        Ok(())
    }
}

/// A server on its own thread and runtime; stops when dropped.
struct Server {
    path: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/meshd.sock");
        let state = StateDir::new(dir.path().join("state"));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let socket_path = path.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let socket = ControlSocket::bind(&socket_path).unwrap();
                let node = NodeInfo {
                    name: "alpha".into(),
                    role: mesh_config::Role::Core,
                    public_key: [1; 32],
                    interface: "mesh0".into(),
                    mtu: 1420,
                    listen_port: 51820,
                    handshake_guard: false,
                    addresses: vec!["10.1.0.1/16".parse().unwrap()],
                    endpoints: vec!["203.0.113.1:51820".into()],
                    listening: vec!["0.0.0.0:51820".parse().unwrap()],
                    kernel_routes: vec!["10.2.0.0/16".parse().unwrap()],
                    started_at: time::OffsetDateTime::now_utc() - time::Duration::seconds(90),
                };
                let peers = vec![KnownPeer {
                    config: beta(),
                    kind: PeerKind::Node(Some(mesh_config::Role::Core)),
                }];
                let api = ApiState::new(node, &StandIn, peers, state);
                ready_tx.send(()).unwrap();
                tokio::select! {
                    _ = stopped => {}
                    never = socket.serve(&api) => match never {},
                }
            });
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the server did not start");
        Server {
            path,
            stop: Some(stop),
            thread: Some(thread),
            _dir: dir,
        }
    }

    fn connect(&self) -> UnixStream {
        let stream = UnixStream::connect(&self.path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    fn meshd(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_meshd"))
            .arg("--socket")
            .arg(&self.path)
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_line(reader: &mut BufReader<UnixStream>) -> Value {
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.ends_with('\n'), "no complete answer: {line:?}");
    serde_json::from_str(&line).unwrap()
}

#[test]
fn requests_on_one_connection_are_answered_in_order_and_bad_ones_get_errors() {
    let server = Server::start();
    let mut stream = server.connect();
    stream
        .write_all(
            b"hello\n{\"version\":1,\"request\":\"status\"}\n{\"version\":7,\"request\":\"status\"}\n\
              {\"version\":1,\"request\":\"add_client\",\"name\":\"ghost\"}\n{\"version\":1,\"request\":\"peers\"}\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream);
    let first = read_line(&mut reader);
    assert_eq!(first["version"], 1);
    assert_eq!(first["error"]["kind"], "bad_request", "{first}");
    let second = read_line(&mut reader);
    assert_eq!(second["ok"]["schema"], 1, "{second}");
    assert_eq!(second["ok"]["node"]["name"], "alpha");
    let third = read_line(&mut reader);
    assert_eq!(third["error"]["kind"], "unsupported_version", "{third}");
    let fourth = read_line(&mut reader);
    assert_eq!(fourth["error"]["kind"], "not_found", "{fourth}");
    let fifth = read_line(&mut reader);
    assert_eq!(fifth["ok"]["peers"][0]["name"], "beta", "{fifth}");
}

#[test]
fn an_oversized_request_is_refused_and_the_connection_closed() {
    let server = Server::start();
    let mut stream = server.connect();
    let mut huge = vec![b'x'; MAX_REQUEST_BYTES + 100];
    huge.push(b'\n');
    stream.write_all(&huge).unwrap();
    let mut reader = BufReader::new(stream);
    let answer = read_line(&mut reader);
    assert_eq!(answer["error"]["kind"], "too_large", "{answer}");
    let mut rest = Vec::new();
    match reader.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "more after the refusal: {rest:?}"),
        Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset),
    }
    // The server itself is fine.
    let mut stream = server.connect();
    stream
        .write_all(b"{\"version\":1,\"request\":\"routes\"}\n")
        .unwrap();
    let answer = read_line(&mut BufReader::new(stream));
    assert_eq!(answer["ok"]["routes"][0]["kernel"], "meshd", "{answer}");
}

#[test]
fn a_silent_connection_does_not_hold_up_others() {
    let server = Server::start();
    let _silent = server.connect();
    let mut half = server.connect();
    half.write_all(b"{\"version\":1,").unwrap();
    let mut stream = server.connect();
    stream
        .write_all(b"{\"version\":1,\"request\":\"status\"}\n")
        .unwrap();
    let answer = read_line(&mut BufReader::new(stream));
    assert_eq!(answer["ok"]["peers"]["up"], 1, "{answer}");
}

#[test]
fn random_lines_always_get_one_answer_line() {
    let server = Server::start();
    let mut stream = server.connect();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    // A fixed xorshift sequence: different every line, the same every run.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for round in 0..200 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = (seed % 300) as usize;
        let mut line: Vec<u8> = (0..len)
            .map(|i| {
                let byte = (seed.rotate_left(i as u32 % 64) & 0xff) as u8;
                if byte == b'\n' { b' ' } else { byte }
            })
            .collect();
        if round % 3 == 0 {
            // Half-valid JSON objects reach deeper into the decoder.
            line = format!(
                "{{\"version\":1,\"request\":\"{}\"}}",
                String::from_utf8_lossy(&line)
            )
            .replace('\n', " ")
            .into_bytes();
        }
        line.push(b'\n');
        stream.write_all(&line).unwrap();
        let answer = read_line(&mut reader);
        assert_eq!(answer["version"], 1, "{answer}");
        assert!(
            answer.get("ok").is_some() || answer.get("error").is_some(),
            "{answer}"
        );
    }
}

#[test]
fn the_commands_print_the_daemons_answers_for_people_and_scripts() {
    let server = Server::start();
    let status = server.meshd(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{status:?}");
    assert!(text.starts_with("node: alpha (core)\n"), "{text}");
    assert!(text.contains("  peers: 1 up of 1\n"), "{text}");
    assert!(
        text.contains("  uptime: 1 minute, 30 seconds") || text.contains("  uptime: 1 minute, 3"),
        "{text}"
    );
    assert!(
        text.contains("transfer: 4.00 KiB received, 2.00 KiB sent"),
        "{text}"
    );

    let json = server.meshd(&["status", "--json"]);
    let value: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["schema"], 1);
    assert_eq!(value["drops"]["total"], 0);

    let peers = server.meshd(&["peers"]);
    let text = String::from_utf8_lossy(&peers.stdout);
    assert!(text.starts_with("peer: beta (core), up\n"), "{text}");
    assert!(
        text.contains("  latest handshake: 5 seconds ago\n"),
        "{text}"
    );
    assert!(text.contains("  allowed prefixes: 10.2.0.0/16\n"), "{text}");
    let json = server.meshd(&["peers", "--json"]);
    let value: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["peers"][0]["endpoint"], "203.0.113.2:51820");

    let routes = server.meshd(&["routes"]);
    let text = String::from_utf8_lossy(&routes.stdout);
    assert!(
        text.contains("10.2.0.0/16  beta  peer    route via mesh0"),
        "{text}"
    );
    assert!(text.contains("BGP: not running"), "{text}");
}

#[test]
fn rekey_names_the_peers_and_refuses_an_unknown_one() {
    let server = Server::start();
    let every = server.meshd(&["rekey"]);
    let text = String::from_utf8_lossy(&every.stdout);
    assert!(every.status.success(), "{every:?}");
    assert!(
        text.starts_with("beta: handshake initiation sent\n"),
        "{text}"
    );
    let json = server.meshd(&["rekey", "beta", "--json"]);
    assert!(json.status.success(), "{json:?}");
    let value: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"schema": 1, "rekeyed": ["beta"], "without_path": []})
    );
    let unknown = server.meshd(&["rekey", "nobody"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(unknown.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("there is no peer \"nobody\"; `meshd peers` lists them"),
        "{stderr}"
    );
}

#[test]
fn without_a_daemon_the_commands_say_where_they_looked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meshd.sock");
    for command in ["status", "peers", "routes"] {
        let output = Command::new(env!("CARGO_BIN_EXE_meshd"))
            .args(["--socket", path.to_str().unwrap(), command])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let expected = format!(
            "meshd: error: is meshd running? cannot connect to {}: ",
            path.display()
        );
        assert!(stderr.starts_with(&expected), "{stderr}");
        assert!(output.stdout.is_empty());
    }
    // With --state-dir only, the socket is looked for inside it.
    let state = dir.path().join("state");
    let output = Command::new(env!("CARGO_BIN_EXE_meshd"))
        .args(["--state-dir", state.to_str().unwrap(), "status"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&Path::new(&state).join("meshd.sock").display().to_string()),
        "{stderr}"
    );
}
