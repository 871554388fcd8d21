//! A mesh being upgraded one node at a time, in one process (127.0.0.x, no root): the CA
//! holder `alpha` and the core `beta` run control planes as `meshd run` starts them;
//! `newer` is a member admitted with a real token whose files the test uses to open raw
//! control connections that behave like a node of a newer version.
//!
//! A newer node sends messages of types alpha does not know, between ordinary gossip: alpha
//! skips them (one log line per type, every one counted), keeps the connection, and gossip
//! still flows both ways on it: alpha takes newer's record, and answers its question.

use std::path::Path;
use std::time::Duration;

use integration::logs::{self, Logs};
use integration::mesh::{meshd, meshd_async};
use meshd::control::frame::{MAX_FRAME_LEN, read_body_limited, write_message};
use meshd::control::message::{Gossip, Message};
use meshd::control::protocol::{Incoming, decode_member};
use meshd::control::record::sign_record;
use meshd::control::tls::{OwnCertificate, Trust, member_client_config, member_server_name};
use meshd::control::{ControlHandle, ControlPlane, ControlSettings};
use meshd::state::StateDir;
use pki::NodeKeyPair;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const ALPHA: &str = "127.0.0.121:52121";
const BETA: &str = "127.0.0.122:52122";
/// Bound for anything the test waits for.
const WITHIN: Duration = Duration::from_secs(10);

fn state(dir: &Path, name: &str) -> StateDir {
    StateDir::new(dir.join(name).join("state"))
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("a PEM certificate")
        .to_vec()
}

/// Starts `name`'s control plane only (no data plane: the test looks at membership).
async fn start(dir: &Path, name: &str, bind: &str) -> ControlHandle {
    let node = dir.join(name);
    let config = mesh_config::load(&node.join("meshd.toml")).expect("config");
    let mut settings = ControlSettings::for_daemon(&config, &node.join("state")).expect("cert");
    settings.bind = vec![bind.parse().unwrap()];
    ControlPlane::start(settings).await.expect("control plane")
}

/// `newer`'s key, certificate (DER) and TLS connector to the mesh.
fn newer(dir: &Path) -> (NodeKeyPair, Vec<u8>, TlsConnector) {
    let s = state(dir, "newer");
    let key = NodeKeyPair::from_pem(&s.read_node_key().unwrap()).unwrap();
    let cert = der(&s.read_certificate(&s.node_cert_path()).unwrap());
    let ca = der(&s.read_certificate(&s.ca_cert_path()).unwrap());
    let own = OwnCertificate::new(cert.clone(), ca.clone(), key.to_pkcs8_der()).unwrap();
    let connector = TlsConnector::from(member_client_config(Trust::new(ca, None), own).unwrap());
    (key, cert, connector)
}

async fn connect(connector: &TlsConnector) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(ALPHA).await.unwrap();
    connector
        .connect(member_server_name("alpha").unwrap(), tcp)
        .await
        .expect("newer's handshake with alpha")
}

/// Writes one frame with `body` as it is (whatever its type).
async fn send_raw(tls: &mut TlsStream<TcpStream>, body: &str) {
    tls.write_all(&(body.len() as u32).to_be_bytes())
        .await
        .unwrap();
    tls.write_all(body.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
}

/// Reads alpha's messages until one matches `want`; panics if alpha closes the connection
/// or nothing matches within [`WITHIN`].
async fn read_until<S: AsyncRead + Unpin>(
    stream: &mut S,
    what: &str,
    want: impl Fn(&Message) -> bool,
) -> Message {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let body = tokio::time::timeout(left, read_body_limited(stream, MAX_FRAME_LEN))
            .await
            .unwrap_or_else(|_| panic!("no {what} from alpha within {WITHIN:?}"))
            .unwrap_or_else(|e| panic!("alpha closed the connection before {what}: {e}"));
        match decode_member(&body) {
            Ok(Incoming::Known(message)) if want(&message) => return message,
            Ok(_) => {}
            Err(error) => panic!("alpha sent a bad frame: {error}"),
        }
    }
}

async fn wait_for_members(handle: &ControlHandle, what: &str, want: &[&str]) {
    let mut members = handle.members();
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let mut names: Vec<String> = members.borrow().iter().map(|m| m.name.clone()).collect();
        names.sort();
        if names == want {
            return;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        assert!(!left.is_zero(), "{what}: members {names:?}, want {want:?}");
        let _ = tokio::time::timeout(left, members.changed()).await;
    }
}

async fn logged(logs: &Logs, mark: usize, words: &[&str]) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let lines = logs.matching_since(mark, words);
        if !lines.is_empty() || tokio::time::Instant::now() >= deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_message_types_are_skipped_and_gossip_goes_on() {
    let logs = logs::capture();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    meshd(
        d,
        "alpha",
        &["init", "--name", "alpha", "--endpoint", ALPHA],
    )
    .unwrap();
    let alpha = start(d, "alpha", ALPHA).await;
    let token = meshd(d, "alpha", &["invite", "beta", "--role", "core"]).unwrap();
    meshd_async(d, "beta", &["join", token.trim(), "--endpoint", BETA]).await;
    let beta = start(d, "beta", BETA).await;
    let token = meshd(d, "alpha", &["invite", "newer", "--role", "core"]).unwrap();
    meshd_async(
        d,
        "newer",
        &["join", token.trim(), "--endpoint", "127.0.0.123:52123"],
    )
    .await;
    wait_for_members(&beta, "beta before", &["alpha", "beta"]).await;

    let (key, cert, connector) = newer(d);
    let mut tls = connect(&connector).await;
    read_until(&mut tls, "a digest", |m| {
        matches!(m, Message::Gossip(Gossip::Digest { .. }))
    })
    .await;

    let mark = logs.mark();
    // What a newer node might send: a new message type (twice), a new type without
    // content, a new gossip type.
    send_raw(&mut tls, r#"{"ping":{"nonce":1}}"#).await;
    send_raw(&mut tls, r#""bye""#).await;
    send_raw(&mut tls, r#"{"gossip":{"delta":{"since":5,"records":[]}}}"#).await;
    send_raw(&mut tls, r#"{"ping":{"nonce":2}}"#).await;
    // Then ordinary gossip, one message with a field alpha does not know: newer's own
    // record (no endpoints: nobody is to dial it) and a question.
    let record = sign_record(&key, &cert, vec![], 1).unwrap();
    write_message(
        &mut tls,
        &Message::Gossip(Gossip::Records {
            records: vec![record],
        }),
    )
    .await
    .unwrap();
    send_raw(
        &mut tls,
        r#"{"gossip":{"want":{"names":["beta"],"crl":false,"hint":"new"}}}"#,
    )
    .await;

    // Answered on the same connection: it stayed up.
    let answer = read_until(&mut tls, "beta's record", |m| {
        matches!(m, Message::Gossip(Gossip::Records { .. }))
    })
    .await;
    let Message::Gossip(Gossip::Records { records }) = answer else {
        unreachable!()
    };
    assert_eq!(records.len(), 1);
    assert_eq!(
        pki::NodeCertificate::parse(&records[0].certificate)
            .unwrap()
            .identity
            .name,
        "beta"
    );
    // And alpha took newer's record (a core's record is not pushed on to other cores: newer
    // would tell beta itself).
    wait_for_members(&alpha, "alpha after", &["alpha", "beta", "newer"]).await;

    let skipped = logged(
        &logs,
        mark,
        &["newer", "of a type this node does not know skipped"],
    )
    .await;
    let mut kinds: Vec<&str> = ["kind=ping", "kind=bye", "kind=gossip.delta"]
        .into_iter()
        .filter(|k| skipped.iter().any(|line| line.contains(k)))
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["kind=bye", "kind=gossip.delta", "kind=ping"],
        "{skipped:#?}"
    );
    assert_eq!(
        skipped.len(),
        3,
        "one line per type, not per frame: {skipped:#?}"
    );
    assert_eq!(alpha.counts().skipped_messages, 4);
    assert!(
        logs.matching_since(mark, &["control connection closed"])
            .is_empty(),
        "{:#?}",
        logs.lines()
    );
    assert!(
        logs.matching_since(mark, &["unexpected message"])
            .is_empty()
    );

    drop(tls);
    beta.shutdown().await;
    alpha.shutdown().await;
}
