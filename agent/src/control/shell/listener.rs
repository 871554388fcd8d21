//! The listener: binds the control port, accepts connections under the limits of the
//! [`gate`](super::gate), and serves each accepted one as what its TLS handshake says it is:
//! a member connection, a renewal request (both authenticated by a node certificate), or a
//! join (no certificate).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pki::NodeCertificate;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::connection::run_connection;
use super::gate::{SharedGate, Ticket, left_out, lock};
use super::hub::Event;
use super::{ControlError, HANDSHAKE_TIMEOUT};
use crate::control::accept_limits::{Admission, Reason};
use crate::control::frame::{FrameError, read_message, read_message_limited, write_message};
use crate::control::message::Message;
use crate::control::tls::{ControlAcceptor, MEMBER_ALPN, RENEWAL_ALPN, peer_name};

/// Limit for the TLS handshake of an accepted connection, which anyone can open: a real
/// peer needs a few round trips (well under a second), a stalled one holds a slot under
/// the limits ([`crate::control::accept_limits`]) no longer than this.
const TLS_ACCEPT_DEADLINE: Duration = Duration::from_secs(5);
/// Limit for a connection without a certificate to send its join request once the
/// handshake is done (`meshd join` sends it at once).
const JOIN_REQUEST_DEADLINE: Duration = Duration::from_secs(10);
/// Limit for the CA's answer to a join request (it reads and writes the CA database).
const JOIN_ANSWER_DEADLINE: Duration = Duration::from_secs(30);
/// The largest join request read: a real one (name, secret, CSR, key, endpoints) is about
/// 1 KiB, and the body is allocated from the length prefix, so this is what one stranger's
/// connection can make us hold (the member frame limit is 4 MiB).
const MAX_JOIN_REQUEST_LEN: usize = 16 << 10;

/// Binds a TCP listener on each of `addresses`; with them, the addresses they got (the
/// port is the system's choice where `addresses` say 0).
pub(super) async fn bind(
    addresses: &[SocketAddr],
) -> Result<(Vec<TcpListener>, Vec<SocketAddr>), ControlError> {
    let mut listeners = Vec::new();
    let mut local_addrs = Vec::new();
    for address in addresses {
        let mut bound = TcpListener::bind(address).await;
        // `[::]` accepts IPv4 too; where IPv6 is off, fall back to `0.0.0.0`.
        if bound.is_err() && address.ip() == std::net::Ipv6Addr::UNSPECIFIED {
            bound = TcpListener::bind((std::net::Ipv4Addr::UNSPECIFIED, address.port())).await;
        }
        let listener = bound.map_err(|source| ControlError::Listen {
            address: *address,
            source,
        })?;
        local_addrs.push(
            listener
                .local_addr()
                .map_err(|source| ControlError::Listen {
                    address: *address,
                    source,
                })?,
        );
        listeners.push(listener);
    }
    Ok((listeners, local_addrs))
}

/// Closes a refused connection at once, with a reset: no TLS work, and no TIME_WAIT left
/// on our side.
fn refuse(tcp: TcpStream) {
    let _ = socket2::SockRef::from(&tcp).set_linger(Some(Duration::ZERO));
}

/// Accepts connections on `listener` until the task is aborted, each under the limits of
/// `gate`, and serves each in a task of its own.
pub(super) async fn accept_loop(
    listener: TcpListener,
    acceptor: ControlAcceptor,
    events: mpsc::Sender<Event>,
    gate: SharedGate,
) {
    let mut next_id: u64 = 1 << 63;
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                let admitted = lock(&gate).accept_errors.admit(Instant::now());
                if let Some(more) = admitted {
                    tracing::warn!(%error, "accept failed{}", left_out(more, "failed"));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let admission = lock(&gate).limiter.admit(remote.ip(), Instant::now());
        let slot = match admission {
            Admission::Admitted { slot, evicted } => {
                let victim = evicted.and_then(|victim| lock(&gate).tasks.remove(&victim));
                if let Some(victim) = victim {
                    victim.abort();
                }
                slot
            }
            Admission::Refused(_) => {
                refuse(tcp);
                continue;
            }
        };
        let ticket = Ticket {
            gate: gate.clone(),
            slot,
            remote,
        };
        let id = next_id;
        next_id += 1;
        let task = tokio::spawn(serve_accepted(
            tcp,
            remote,
            acceptor.clone(),
            events.clone(),
            ticket,
            id,
        ));
        // A connection that is already done (or evicted) gave its slot back: keep no handle.
        let mut gate = lock(&gate);
        if gate.limiter.holds(slot) {
            gate.tasks.insert(slot, task.abort_handle());
        }
    }
}

/// One accepted connection: the TLS handshake within [`TLS_ACCEPT_DEADLINE`], then a member
/// connection or a renewal (authenticated: the ticket is given back) or a join (the ticket
/// is kept until it is answered).
async fn serve_accepted(
    tcp: TcpStream,
    remote: SocketAddr,
    acceptor: ControlAcceptor,
    events: mpsc::Sender<Event>,
    ticket: Ticket,
    id: u64,
) {
    let tls = match tokio::time::timeout(TLS_ACCEPT_DEADLINE, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            // Anyone can cause this: one line a window, with how many were left out.
            let admitted = lock(&ticket.gate).handshake_failures.admit(Instant::now());
            if let Some(more) = admitted {
                tracing::warn!(
                    %remote,
                    %error,
                    "control connection refused in the TLS handshake{}",
                    left_out(more, "refused")
                );
            }
            ticket.closed(Reason::HandshakeFailed);
            return;
        }
        Err(_) => {
            ticket.closed(Reason::HandshakeTimeout);
            return;
        }
    };
    let renewal = tls.get_ref().1.alpn_protocol() == Some(RENEWAL_ALPN);
    let member = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|first| NodeCertificate::parse(first).ok());
    match (peer_name(tls.get_ref().1.peer_certificates()), member) {
        (Some(_), Some(current)) if renewal => {
            drop(ticket);
            serve_renewal(tls, Box::new(current), remote, events).await;
        }
        (Some(name), Some(current)) => {
            drop(ticket);
            let initiator = name.clone();
            let hello = tls.get_ref().1.alpn_protocol() == Some(MEMBER_ALPN);
            run_connection(tls, name, current.serial, initiator, id, hello, events).await;
        }
        _ => serve_join(tls, remote, events, ticket).await,
    }
}

/// A connection without a client certificate: one join request within
/// [`JOIN_REQUEST_DEADLINE`], one answer. It counts under the limits until it is answered.
async fn serve_join<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    remote: SocketAddr,
    events: mpsc::Sender<Event>,
    ticket: Ticket,
) {
    let read = read_message_limited::<_, Message>(&mut stream, MAX_JOIN_REQUEST_LEN);
    let request = match tokio::time::timeout(JOIN_REQUEST_DEADLINE, read).await {
        Ok(Ok(Message::JoinRequest(request))) => request,
        Ok(Err(FrameError::Closed)) => {
            // A TLS probe (or a joiner that gave up): nothing to say.
            ticket.closed(Reason::BadJoinRequest);
            return;
        }
        Ok(other) => {
            let error = match other {
                Ok(_) => "a connection without a certificate may only ask to join".to_owned(),
                Err(error) => error.to_string(),
            };
            let admitted = lock(&ticket.gate).bad_joins.admit(Instant::now());
            if let Some(more) = admitted {
                tracing::warn!(%remote, %error, "bad join request; closed{}", left_out(more, "bad"));
            }
            ticket.closed(Reason::BadJoinRequest);
            return;
        }
        Err(_) => {
            ticket.closed(Reason::JoinTimeout);
            return;
        }
    };
    // The CA may redeem the invitation from here on: closing the connection to make room
    // would lose the joiner its token.
    ticket.pin();
    // Said by the hub with its outcome (admitted, or refused: throttled).
    tracing::debug!(%remote, node = %request.name, "join request");
    let node = request.name.clone();
    let answer = answer_from_hub(&mut stream, &events, |reply| Event::Join {
        request: Box::new(request),
        reply,
    });
    if tokio::time::timeout(JOIN_ANSWER_DEADLINE, answer)
        .await
        .is_err()
    {
        tracing::debug!(%remote, %node, "join request not answered within {JOIN_ANSWER_DEADLINE:?}; closed");
    }
    drop(ticket);
}

/// Hands `event` (which carries the reply channel) to the hub and writes its answer back on
/// `stream`; a hub that has stopped, or drops the request, ends the connection silently.
async fn answer_from_hub<S: AsyncWrite + Unpin>(
    stream: &mut S,
    events: &mpsc::Sender<Event>,
    event: impl FnOnce(oneshot::Sender<Message>) -> Event,
) {
    let (reply, answer) = oneshot::channel();
    if events.send(event(reply)).await.is_err() {
        return;
    }
    if let Ok(answer) = answer.await {
        let _ = write_message(stream, &answer).await;
    }
}

/// A renewal connection from a member (authenticated by `current`, its certificate): one
/// request, one answer.
async fn serve_renewal<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    current: Box<NodeCertificate>,
    remote: SocketAddr,
    events: mpsc::Sender<Event>,
) {
    let node = current.identity.name.clone();
    let request = match tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        read_message::<_, Message>(&mut stream),
    )
    .await
    {
        Ok(Ok(Message::RenewRequest(request))) => request,
        Ok(Ok(_)) => {
            tracing::warn!(%remote, %node, "a renewal connection may only carry a renewal request; closed");
            return;
        }
        Ok(Err(error)) => {
            tracing::warn!(%remote, %node, %error, "bad renewal request; closed");
            return;
        }
        Err(_) => return,
    };
    tracing::info!(%remote, %node, "certificate renewal request");
    answer_from_hub(&mut stream, &events, |reply| Event::Renew {
        current,
        request,
        reply,
    })
    .await;
}
