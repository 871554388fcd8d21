//! The joiner's side of the join protocol: connect to a bootstrap endpoint from the token
//! (an address, or a name resolved with crate::dns),
//! let the TLS verifier check the CA fingerprint before anything is sent, then send the
//! request and read the answer.

use std::time::Duration;

use pki::InvitationToken;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::frame::{FrameError, read_message, write_message};
use super::message::{JoinAccepted, JoinRequest, Message};
use super::tls::{JOIN_SERVER_NAME, join_client_config, peer_name};

/// How long one attempt (connect, handshake, answer) may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

/// Why joining failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the CA holder refused to admit this node: {0}")]
    Refused(String),
    #[error("could not reach the CA holder at any endpoint of the token:\n{0}")]
    Unreachable(String),
    #[error("the CA holder answered with something unexpected: {0}")]
    Protocol(String),
}

/// Joins through the first endpoint of `token` that answers. Returns the answer and the node
/// name of the CA holder that gave it (from its certificate, checked in the handshake).
pub async fn join(
    token: &InvitationToken,
    request: &JoinRequest,
) -> Result<(JoinAccepted, String), JoinError> {
    let mut failures = Vec::new();
    for endpoint in &token.endpoints {
        match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt(endpoint, token, request)).await {
            Ok(Ok((Message::JoinAccepted(accepted), ca_holder))) => {
                return Ok((*accepted, ca_holder));
            }
            Ok(Ok((Message::JoinRefused { reason }, _))) => return Err(JoinError::Refused(reason)),
            Ok(Ok((other, _))) => {
                return Err(JoinError::Protocol(format!(
                    "expected an answer to the join request, got {other:?}"
                )));
            }
            Ok(Err(error)) => failures.push(format!("  {endpoint}: {error}")),
            Err(_) => failures.push(format!(
                "  {endpoint}: no answer within {ATTEMPT_TIMEOUT:?}"
            )),
        }
    }
    Err(JoinError::Unreachable(failures.join("\n")))
}

async fn attempt(
    endpoint: &str,
    token: &InvitationToken,
    request: &JoinRequest,
) -> Result<(Message, String), String> {
    // A bootstrap endpoint may be a name: resolved (A and AAAA) by the daemon's resolver with
    // the system's configuration (the joiner has no [dns] settings yet); every address is
    // tried in turn.
    let parsed: mesh_config::Endpoint = endpoint.parse().map_err(|e| format!("{e}"))?;
    let addresses = crate::dns::resolve_once(&parsed, &mesh_config::DnsSection::default()).await?;
    let tcp = TcpStream::connect(&addresses[..])
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let config = join_client_config(token.ca_fingerprint).map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from(JOIN_SERVER_NAME).expect("a valid DNS name");
    // The fingerprint check runs inside the handshake: on a wrong CA this fails and the
    // request below is never written.
    let mut tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let ca_holder = peer_name(tls.get_ref().1.peer_certificates())
        .ok_or("the CA holder presented no node certificate")?;
    write_message(&mut tls, &Message::JoinRequest(request.clone()))
        .await
        .map_err(|e| e.to_string())?;
    match read_message::<_, Message>(&mut tls).await {
        Ok(message) => Ok((message, ca_holder)),
        Err(FrameError::Closed) => {
            Err("the CA holder closed the connection without answering".into())
        }
        Err(e) => Err(e.to_string()),
    }
}
