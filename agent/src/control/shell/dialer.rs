//! The dialer: which members this node dials (a core every other core, a spoke its core),
//! and connecting to one of a member's endpoints with TLS, also for a renewal.

use std::net::SocketAddr;
use std::time::Instant;

use pki::{NodeCertificate, NodeRole, SerialNumber};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::HANDSHAKE_TIMEOUT;
use super::connection::run_connection;
use super::hub::{Event, Hub};
use crate::control::tls::{MEMBER_ALPN, member_server_name, refused_alpn};

impl Hub {
    /// Dials the members this node should be connected to and is not.
    pub(super) fn dial_missing(&mut self) {
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
pub(super) async fn dial(
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

/// The serial of the first certificate of a verified peer's chain.
fn certificate_serial(chain: Option<&[CertificateDer<'_>]>) -> Option<SerialNumber> {
    let first = chain?.first()?;
    NodeCertificate::parse(first).ok().map(|c| c.serial)
}
