//! Bad input against a running control plane (127.0.0.x, no root). The CA holder `alpha` and
//! the core `beta` run as `meshd run` wires them; `mallory` is a member admitted with a real
//! token whose files the test uses to open raw control connections. Each of these is refused
//! with a log line that says what was wrong:
//! - a malformed frame and an oversized frame on a member connection, and a malformed join
//!   request: the connection is closed;
//! - a client certificate from another CA: refused in the TLS handshake;
//! - a token used a second time: the join is refused and says so;
//! - a membership record for someone else's prefixes (signed by a certificate the mesh CA
//!   issued by mistake): dropped and logged. The connection stays: records are relayed, so
//!   the peer that hands one on is not necessarily its author.
//!
//! Meanwhile alpha keeps serving: beta's tunnel carries packets, a new node joins afterwards,
//! and nothing alpha stored (membership, CA database) is lost.

use std::path::Path;
use std::time::Duration;

use integration::admission::{admit, der, init, state};
use integration::logs::{self, Logs};
use integration::mesh::{assert_round_trip, meshd, meshd_async, start};
use meshd::control::frame::{read_message, write_message};
use meshd::control::message::{Gossip, Message};
use meshd::control::record::sign_record;
use meshd::control::store::read_members;
use meshd::control::tls::{
    OwnCertificate, Trust, join_client_config, legacy_member_client_config, member_server_name,
};
use pki::{CertificateAuthority, NodeCertificate, NodeIdentity, NodeKeyPair, NodeRole};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const ALPHA: &str = "127.0.0.91:51991";
/// Bound for a log line or a closed connection.
const WITHIN: Duration = Duration::from_secs(10);

/// A TLS client that presents `cert_der` with `key` and trusts alpha's CA. It offers no
/// ALPN, as a node older than the hello: its first message need not be a hello.
fn member_connector(
    dir: &Path,
    cert_der: Vec<u8>,
    ca_der: Vec<u8>,
    key: &NodeKeyPair,
) -> TlsConnector {
    let alpha_ca = der(&state(dir, "alpha")
        .read_certificate(&state(dir, "alpha").ca_cert_path())
        .unwrap());
    let own = OwnCertificate::new(cert_der, ca_der, key.to_pkcs8_der()).expect("cert and key");
    TlsConnector::from(legacy_member_client_config(Trust::new(alpha_ca, None), own).unwrap())
}

/// mallory's own connector (a legitimate member).
fn mallory(dir: &Path) -> TlsConnector {
    let s = state(dir, "mallory");
    let key = NodeKeyPair::from_pem(&s.read_node_key().unwrap()).unwrap();
    let cert = der(&s.read_certificate(&s.node_cert_path()).unwrap());
    let ca = der(&s.read_certificate(&s.ca_cert_path()).unwrap());
    member_connector(dir, cert, ca, &key)
}

async fn connect(
    connector: &TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(ALPHA).await?;
    connector
        .connect(member_server_name("alpha").unwrap(), tcp)
        .await
}

/// Reads until alpha closes the connection (or fails it); false if it stays open.
async fn closed_by_alpha<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> bool {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, read_message::<_, Message>(stream)).await {
            Err(_) => return false,
            Ok(Ok(_)) => continue, // alpha's digest on connect, gossip
            Ok(Err(_)) => return true,
        }
    }
}

/// Waits for a line (after `mark`) with every one of `words`.
async fn logged(logs: &Logs, mark: usize, words: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        if let Some(line) = logs.matching_since(mark, words).into_iter().next() {
            return line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no log line with {words:?} within {WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The members alpha has stored.
fn stored_members(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = read_members(&state(dir, "alpha"))
        .expect("alpha's members.json")
        .iter()
        .map(|r| {
            NodeCertificate::parse(&r.certificate)
                .unwrap()
                .identity
                .name
        })
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_control_input_is_refused_logged_and_harms_nobody_else() {
    let logs = logs::capture();
    let dir = tempfile::tempdir().expect("temporary directory");
    let d = dir.path();
    init(d, "alpha", ALPHA);
    let mut alpha = start(d, "alpha", "127.0.0.91").await;
    admit(
        d,
        "alpha",
        "beta",
        &["--role", "core"],
        Some("127.0.0.92:51992"),
    )
    .await;
    let mut beta = start(d, "beta", "127.0.0.92").await;
    let mallory_token = meshd(d, "alpha", &["invite", "mallory", "--role", "core"]).unwrap();
    meshd_async(
        d,
        "mallory",
        &[
            "join",
            mallory_token.trim(),
            "--endpoint",
            "127.0.0.93:51993",
        ],
    )
    .await;
    assert_round_trip(&mut alpha, &mut beta, "before the bad input").await;
    // mallory never runs a daemon, so its record never reaches alpha.
    let members_before = stored_members(d);
    assert_eq!(members_before, ["alpha", "beta"]);
    let ca_db_before = state(d, "alpha").read_ca_db().unwrap();

    // A malformed frame on a member connection.
    let mark = logs.mark();
    let mut tls = connect(&mallory(d)).await.expect("mallory connects");
    let body = b"not json";
    tls.write_all(&(body.len() as u32).to_be_bytes())
        .await
        .unwrap();
    tls.write_all(body).await.unwrap();
    tls.flush().await.unwrap();
    assert!(
        closed_by_alpha(&mut tls).await,
        "alpha closes after a malformed frame"
    );
    let line = logged(
        &logs,
        mark,
        &["control connection closed", "malformed control message"],
    )
    .await;
    assert!(line.contains("mallory"), "{line}");

    // An oversized frame: refused from its length prefix, before anything is read.
    let mark = logs.mark();
    let mut tls = connect(&mallory(d)).await.expect("mallory connects");
    tls.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    assert!(
        closed_by_alpha(&mut tls).await,
        "alpha closes after an oversized frame"
    );
    logged(
        &logs,
        mark,
        &[
            "control connection closed",
            "4294967295 bytes exceeds the limit",
        ],
    )
    .await;

    // A malformed join request (no client certificate).
    let mark = logs.mark();
    let fingerprint: [u8; 32] = hex_fingerprint(d);
    let join = TlsConnector::from(join_client_config(fingerprint).unwrap());
    let tcp = TcpStream::connect(ALPHA).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("join.meshd.invalid").unwrap();
    let mut tls = join.connect(name, tcp).await.expect("the join handshake");
    tls.write_all(b"\x00\x00\x00\x02{}").await.unwrap();
    tls.flush().await.unwrap();
    assert!(
        closed_by_alpha(&mut tls).await,
        "alpha closes after a bad join request"
    );
    logged(
        &logs,
        mark,
        &["bad join request; closed", "malformed control message"],
    )
    .await;

    // A client certificate from another CA.
    let mark = logs.mark();
    let now = OffsetDateTime::now_utc();
    let evil = CertificateAuthority::create("evil", now, time::Duration::days(1)).unwrap();
    let evil_key = NodeKeyPair::generate().unwrap();
    let evil_cert = evil
        .issue_node_certificate(
            &evil_key.csr("mallory").unwrap(),
            &identity("mallory", "10.9.0.0/16", [9; 32]),
            now,
            time::Duration::days(1),
        )
        .unwrap();
    let connector = member_connector(d, evil_cert.der, evil.cert_der().to_vec(), &evil_key);
    match connect(&connector).await {
        Err(_) => {}
        Ok(mut tls) => assert!(closed_by_alpha(&mut tls).await, "alpha refuses another CA"),
    }
    let line = logged(
        &logs,
        mark,
        &["refused in the TLS handshake", "peer certificate refused"],
    )
    .await;
    assert!(line.contains("issuer") || line.contains("CA"), "{line}");

    // mallory's token, replayed.
    let mark = logs.mark();
    let replay = {
        let (d, token) = (d.to_path_buf(), mallory_token.trim().to_owned());
        tokio::task::spawn_blocking(move || {
            meshd(
                &d,
                "mallory2",
                &[
                    "join",
                    &token,
                    "--name",
                    "mallory",
                    "--endpoint",
                    "127.0.0.94:51994",
                ],
            )
        })
        .await
        .unwrap()
    };
    let error = replay.expect_err("a used token is refused");
    assert!(error.contains("already been used"), "{error}");
    logged(&logs, mark, &["join refused", "mallory"]).await;

    // A record for beta's prefixes, from a certificate the CA should never have issued,
    // relayed by mallory.
    let mark = logs.mark();
    let rogue = rogue_record(d, now);
    let mut tls = connect(&mallory(d)).await.expect("mallory connects");
    write_message(
        &mut tls,
        &Message::Gossip(Gossip::Records {
            records: vec![rogue],
        }),
    )
    .await
    .unwrap();
    let line = logged(
        &logs,
        mark,
        &["membership record for node rogue from peer mallory dropped"],
    )
    .await;
    assert!(
        line.contains("overlaps") && line.contains("of node beta"),
        "{line}"
    );
    drop(tls);

    // alpha still serves: beta's tunnel, a new join, and everything stored is still there.
    assert_round_trip(&mut alpha, &mut beta, "after the bad input").await;
    admit(
        d,
        "alpha",
        "gamma",
        &["--role", "core"],
        Some("127.0.0.95:51995"),
    )
    .await;
    assert_eq!(
        stored_members(d),
        members_before,
        "nothing lost, no rogue record stored"
    );
    let ca_db = state(d, "alpha").read_ca_db().unwrap();
    for record in &ca_db_before.certificates {
        assert!(ca_db.certificates.contains(record), "{record:?} kept");
    }
    assert!(ca_db.allocator.node("gamma").is_some());

    beta.stop().await;
    alpha.stop().await;
}

fn identity(name: &str, prefix: &str, wireguard_key: [u8; 32]) -> NodeIdentity {
    NodeIdentity {
        name: name.into(),
        role: NodeRole::Core,
        core: None,
        prefixes: vec![prefix.parse().unwrap()],
        lan_prefixes: vec![],
        wireguard_key,
        approvals: Default::default(),
        foreign: false,
    }
}

/// A record of node "rogue" claiming beta's IPv4 /16, with a certificate from alpha's CA.
fn rogue_record(dir: &Path, now: OffsetDateTime) -> meshd::control::record::SignedRecord {
    let s = state(dir, "alpha");
    let ca = CertificateAuthority::from_pem(
        &s.read_certificate(&s.ca_cert_path()).unwrap(),
        &s.read_ca_key().unwrap(),
    )
    .unwrap();
    let beta = state(dir, "beta")
        .read_node_record()
        .unwrap()
        .allocation
        .ipv4;
    let key = NodeKeyPair::generate().unwrap();
    let cert = ca
        .issue_node_certificate(
            &key.csr("rogue").unwrap(),
            &identity("rogue", &beta.to_string(), [8; 32]),
            now,
            time::Duration::days(1),
        )
        .unwrap();
    sign_record(&key, &cert.der, vec![], 1).unwrap()
}

/// The CA fingerprint mallory's node.json records.
fn hex_fingerprint(dir: &Path) -> [u8; 32] {
    let hex = state(dir, "mallory")
        .read_node_record()
        .unwrap()
        .ca_fingerprint;
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}
