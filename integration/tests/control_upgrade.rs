//! A mesh being upgraded one node at a time, in one process (127.0.0.x, no root): the CA
//! holder `alpha` and the core `beta` run control planes as `meshd run` starts them;
//! `newer` is a member admitted with a real token whose files the test uses to open raw
//! control connections, as a node of the next version would and as a node older than the
//! hello would, and to run a TLS server that answers like such an old node.
//!
//! - Protocol 2 (ALPN `meshd-member/2`): alpha's first message is its hello; newer's hello
//!   announces more than alpha knows. newer then sends messages of types alpha does not know
//!   between ordinary gossip: alpha skips them (one log line per type, every one counted),
//!   keeps the connection, and gossip flows both ways on it: alpha takes newer's record and
//!   answers its question.
//! - Protocol 1 (no ALPN, a node older than the hello): alpha sends no hello, the peer
//!   speaks the base set, and it still works.
//! - alpha dials an old node: the old server refuses the ALPN in the handshake, alpha dials
//!   again without at once, and sends that connection no hello.

use std::path::Path;
use std::time::Duration;

use integration::admission::{admit, der, init, state};
use integration::logs::{self, Logs};
use meshd::control::frame::{MAX_FRAME_LEN, read_body_limited, write_message};
use meshd::control::message::{Gossip, Message};
use meshd::control::protocol::{Incoming, RECORD_EXTENSIONS, base_features, decode_member};
use meshd::control::record::sign_record;
use meshd::control::tls::{
    OwnCertificate, RENEWAL_ALPN, Trust, legacy_member_client_config, member_client_config,
    member_server_name, peer_name, server_config,
};
use meshd::control::{ControlHandle, ControlPlane, ControlSettings};
use pki::NodeKeyPair;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::{TlsAcceptor, TlsConnector};

const ALPHA: &str = "127.0.0.121:52121";
const BETA: &str = "127.0.0.122:52122";
/// newer's endpoint, where the test runs a server like a node older than the hello.
const NEWER: &str = "127.0.0.123:52123";
/// Bound for anything the test waits for.
const WITHIN: Duration = Duration::from_secs(10);

/// Starts `name`'s control plane only (no data plane: the test looks at membership).
async fn start(dir: &Path, name: &str, bind: &str) -> ControlHandle {
    let node = dir.join(name);
    let config = mesh_config::load(&node.join("meshd.toml")).expect("config");
    let mut settings = ControlSettings::for_daemon(&config, &node.join("state")).expect("cert");
    settings.bind = vec![bind.parse().unwrap()];
    ControlPlane::start(settings).await.expect("control plane")
}

/// `newer`'s files: key, certificate (DER), CA (DER), and its certificate for TLS.
struct Newer {
    key: NodeKeyPair,
    cert: Vec<u8>,
    trust: Arc<Trust>,
    own: Arc<OwnCertificate>,
}

fn newer(dir: &Path) -> Newer {
    let s = state(dir, "newer");
    let key = NodeKeyPair::from_pem(&s.read_node_key().unwrap()).unwrap();
    let cert = der(&s.read_certificate(&s.node_cert_path()).unwrap());
    let ca = der(&s.read_certificate(&s.ca_cert_path()).unwrap());
    let own = OwnCertificate::new(cert.clone(), ca.clone(), key.to_pkcs8_der()).unwrap();
    Newer {
        key,
        cert,
        trust: Trust::new(ca, None),
        own,
    }
}

/// What the old server at [`NEWER`] saw.
#[derive(Debug)]
enum Seen {
    /// A handshake it refused, and whether for the ALPN.
    Refused { alpn: bool },
    /// A connection: who, the ALPN agreed, the type of the first message.
    Connected {
        peer: Option<String>,
        alpn: Option<Vec<u8>>,
        first: String,
    },
}

/// A server at [`NEWER`] with newer's certificate that answers as a node older than the
/// hello: it knows the renewal ALPN only. Connections stay open.
async fn old_server(newer: &Newer) -> mpsc::UnboundedReceiver<Seen> {
    let mut config =
        Arc::unwrap_or_clone(server_config(newer.trust.clone(), newer.own.clone()).unwrap());
    config.alpn_protocols = vec![RENEWAL_ALPN.to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(NEWER).await.unwrap();
    let (seen, seen_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let mut tls = match acceptor.accept(tcp).await {
                    Ok(tls) => tls,
                    Err(error) => {
                        let alpn = error
                            .get_ref()
                            .and_then(|e| e.downcast_ref::<rustls::Error>())
                            .is_some_and(|e| *e == rustls::Error::NoApplicationProtocol);
                        let _ = seen.send(Seen::Refused { alpn });
                        return;
                    }
                };
                let peer = peer_name(tls.get_ref().1.peer_certificates());
                let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                let first = match read_body_limited(&mut tls, MAX_FRAME_LEN).await {
                    Ok(body) => match decode_member(&body) {
                        Ok(Incoming::Known(Message::Gossip(gossip))) => {
                            format!("gossip.{}", gossip.kind())
                        }
                        Ok(Incoming::Known(message)) => message.kind().to_owned(),
                        other => format!("{other:?}"),
                    },
                    Err(error) => format!("closed: {error}"),
                };
                let _ = seen.send(Seen::Connected { peer, alpn, first });
                // Stay connected, as a node would.
                while read_body_limited(&mut tls, MAX_FRAME_LEN).await.is_ok() {}
            });
        }
    });
    seen_rx
}

async fn connect(connector: TlsConnector) -> TlsStream<TcpStream> {
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

/// Sends newer's own membership record.
async fn send_record(tls: &mut TlsStream<TcpStream>, n: &Newer, endpoints: &[&str], version: u64) {
    let endpoints = endpoints.iter().map(|e| (*e).to_owned()).collect();
    let record = sign_record(&n.key, &n.cert, endpoints, version).unwrap();
    let records = Message::Gossip(Gossip::Records {
        records: vec![record],
    });
    write_message(tls, &records).await.unwrap();
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
async fn nodes_of_two_versions_talk_and_unknown_messages_are_skipped() {
    let logs = logs::capture();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    init(d, "alpha", ALPHA);
    let alpha = start(d, "alpha", ALPHA).await;
    admit(d, "alpha", "beta", &["--role", "core"], Some(BETA)).await;
    let beta = start(d, "beta", BETA).await;
    admit(d, "alpha", "newer", &["--role", "core"], Some(NEWER)).await;
    wait_for_members(&alpha, "alpha before", &["alpha", "beta"]).await;
    let n = newer(d);
    let mut old_seen = old_server(&n).await;

    // Protocol 2: hellos first.
    let mark = logs.mark();
    let mut tls = connect(TlsConnector::from(
        member_client_config(n.trust.clone(), n.own.clone()).unwrap(),
    ))
    .await;
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"meshd-member/2"[..])
    );
    let first = read_until(&mut tls, "the first message", |_| true).await;
    let Message::Hello(hello) = first else {
        panic!("alpha's first message on protocol 2 is its hello, not {first:?}")
    };
    assert_eq!(hello.protocol, 2);
    assert!(hello.features.is_superset(&base_features()));
    assert!(hello.features.contains(RECORD_EXTENSIONS));
    let mut features: Vec<String> = hello.features.into_iter().collect();
    features.extend(["gossip.delta".to_owned(), "ping".to_owned()]);
    // Feature names are plain words: no JSON escaping needed.
    let features: Vec<String> = features.iter().map(|f| format!("\"{f}\"")).collect();
    let newer_hello = format!(
        r#"{{"hello":{{"protocol":2,"features":[{}],"software":"9.9.9","roles":["relay"]}}}}"#,
        features.join(",")
    );
    send_raw(&mut tls, &newer_hello).await;
    read_until(&mut tls, "a digest", |m| {
        matches!(m, Message::Gossip(Gossip::Digest { .. }))
    })
    .await;
    let up = logged(&logs, mark, &["control connection up", "peer=newer"]).await;
    assert!(
        up.iter()
            .any(|l| l.contains("protocol=2") && l.contains("meshd=9.9.9")),
        "{up:#?}"
    );

    // What a newer node might send: a new message type (twice), a new type without
    // content, a new gossip type.
    send_raw(&mut tls, r#"{"ping":{"nonce":1}}"#).await;
    send_raw(&mut tls, r#""bye""#).await;
    send_raw(&mut tls, r#"{"gossip":{"delta":{"since":5,"records":[]}}}"#).await;
    send_raw(&mut tls, r#"{"ping":{"nonce":2}}"#).await;
    // Then ordinary gossip, one message with a field alpha does not know: newer's own
    // record (no endpoints yet) and a question.
    send_record(&mut tls, &n, &[], 1).await;
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
    // And alpha took newer's record.
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

    // Protocol 1, as a node older than the hello dials: no hello, the base set, and an
    // unknown type is still skipped (said once per peer already: counted only).
    let mark = logs.mark();
    let mut tls = connect(TlsConnector::from(
        legacy_member_client_config(n.trust.clone(), n.own.clone()).unwrap(),
    ))
    .await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), None);
    let first = read_until(&mut tls, "the first message", |_| true).await;
    assert!(
        matches!(first, Message::Gossip(Gossip::Digest { .. })),
        "no hello for a node older than the hello: {first:?}"
    );
    send_raw(&mut tls, r#"{"ping":{"nonce":3}}"#).await;
    // newer's record, now with its endpoint (where the old server listens).
    send_record(&mut tls, &n, &[NEWER], 2).await;
    send_raw(
        &mut tls,
        r#"{"gossip":{"want":{"names":["beta"],"crl":false}}}"#,
    )
    .await;
    read_until(&mut tls, "beta's record", |m| {
        matches!(m, Message::Gossip(Gossip::Records { .. }))
    })
    .await;
    let up = logged(&logs, mark, &["control connection up", "peer=newer"]).await;
    assert!(up.iter().any(|l| l.contains("protocol=1")), "{up:#?}");
    assert_eq!(alpha.counts().skipped_messages, 5);
    assert!(
        logs.matching_since(mark, &["does not know skipped"])
            .is_empty()
    );

    // alpha dials newer (an old node now): refused for the ALPN, dialed again without, and
    // that connection gets no hello.
    drop(tls);
    let mut refused = 0;
    let deadline = tokio::time::Instant::now() + WITHIN;
    let first = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let seen = tokio::time::timeout(left, old_seen.recv())
            .await
            .expect("alpha dials newer's old server")
            .unwrap();
        match seen {
            Seen::Refused { alpn } => {
                assert!(alpn, "refused for the ALPN");
                refused += 1;
            }
            Seen::Connected { peer, alpn, first } if peer.as_deref() == Some("alpha") => {
                assert_eq!(alpn, None);
                break first;
            }
            Seen::Connected { .. } => {} // beta may dial too
        }
    };
    assert!(refused >= 1, "the first handshake offered meshd-member/2");
    assert_eq!(first, "gossip.digest", "no hello for an old node");

    beta.shutdown().await;
    alpha.shutdown().await;
}
