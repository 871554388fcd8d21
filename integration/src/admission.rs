//! A mesh built from the real commands, as its owner would: `meshd init` on the CA holder,
//! then `meshd invite` there and `meshd join` on each new node, and what the tests read back
//! from a node's state directory afterwards (its certificate, in DER and parsed).

use std::path::Path;
use std::time::Duration;

use meshd::state::StateDir;
use pki::NodeCertificate;

use crate::mesh::{meshd, meshd_async};

/// The endpoint of test host 127.0.0.`host`. Every host has an address of its own, so the
/// port only has to be free there; deriving it from the host keeps one per node anyway.
pub fn endpoint(host: u8) -> String {
    format!("127.0.0.{host}:{}", 51800 + u16::from(host))
}

/// `meshd init` of the CA holder `name`, reachable at `endpoint`.
pub fn init(dir: &Path, name: &str, endpoint: &str) {
    meshd(dir, name, &["init", "--name", name, "--endpoint", endpoint])
        .unwrap_or_else(|error| panic!("meshd init for {name}: {error}"));
}

/// Admits `name` through the CA holder `ca`: `meshd invite NAME INVITE...` on `ca`, then
/// `meshd join TOKEN` on `name`, with `--endpoint` for a node others dial (a core).
/// The CA's control plane must be running: join talks to it.
pub async fn admit(dir: &Path, ca: &str, name: &str, invite: &[&str], endpoint: Option<&str>) {
    let mut args = vec!["invite", name];
    args.extend_from_slice(invite);
    let token = meshd(dir, ca, &args)
        .unwrap_or_else(|error| panic!("meshd invite {name} on {ca}: {error}"));
    let mut join = vec!["join", token.trim()];
    if let Some(endpoint) = endpoint {
        join.extend_from_slice(&["--endpoint", endpoint]);
    }
    meshd_async(dir, name, &join).await;
}

/// Node `name`'s state directory.
pub fn state(dir: &Path, name: &str) -> StateDir {
    StateDir::new(dir.join(name).join("state"))
}

/// The DER of a PEM certificate (pki's decoding, which meshd uses too).
pub fn der(pem: &str) -> Vec<u8> {
    pki::certificate_der_from_pem(pem).expect("a PEM certificate")
}

/// The certificate in `name`'s node.crt.
pub fn node_certificate(dir: &Path, name: &str) -> NodeCertificate {
    let state = state(dir, name);
    let pem = state
        .read_certificate(&state.node_cert_path())
        .expect("node.crt");
    NodeCertificate::from_pem(&pem).expect("node.crt parses")
}

/// The certificate `name`'s node.crt holds once it is another one than `before` (a renewal
/// wrote it), polled until `within` has passed; None if it never changed.
pub async fn renewed_certificate(
    dir: &Path,
    name: &str,
    before: &NodeCertificate,
    within: Duration,
) -> Option<NodeCertificate> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let now = node_certificate(dir, name);
        if now.serial != before.serial {
            return Some(now);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
