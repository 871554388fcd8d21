//! One authenticated member connection, dialed or accepted: a writer for what the hub sends,
//! a reader that hands what the peer says to the hub as [`Event`]s.

use pki::SerialNumber;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use super::hub::Event;
use crate::control::frame::{FrameError, MAX_FRAME_LEN, read_body_limited, write_message};
use crate::control::message::Message;
use crate::control::protocol::{Incoming, decode_member, own_hello};

/// Messages queued per connection before new ones are dropped (anti-entropy repairs).
const QUEUE: usize = 256;

/// Runs one authenticated member connection until it fails or the hub aborts it. With
/// `hello` (the handshake agreed on [`MEMBER_ALPN`](crate::control::tls::MEMBER_ALPN)) each
/// side's first message is its hello; without, the peer is older than the hello and gets none.
pub(super) async fn run_connection<S: AsyncRead + AsyncWrite + Send + 'static>(
    stream: S,
    name: String,
    serial: SerialNumber,
    initiator: String,
    id: u64,
    hello: bool,
    events: mpsc::Sender<Event>,
) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (sender, mut outbound) = mpsc::channel::<Message>(QUEUE);
    if hello {
        // First in the queue, before anything the hub sends.
        let _ = sender.try_send(Message::Hello(own_hello()));
    }
    let events_for_reader = events.clone();
    let peer = name.clone();
    // The hub learns of the connection before anything read on it (the peer's hello).
    let (registered, is_registered) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        if is_registered.await.is_err() {
            return;
        }
        // A peer that refuses our certificate closes before its first message; the hub says
        // that once per backoff step, so the error is not logged here as well.
        let heard = std::sync::atomic::AtomicBool::new(false);
        let writer_task = async {
            while let Some(message) = outbound.recv().await {
                write_message(&mut writer, &message).await?;
            }
            Ok(())
        };
        let reader_task = async {
            if hello {
                let body = read_body_limited(&mut reader, MAX_FRAME_LEN).await?;
                let Incoming::Known(Message::Hello(hello)) = decode_member(&body)? else {
                    tracing::warn!(%peer, "a member connection with ALPN meshd-member/2 must \
                        start with a hello; closed");
                    return Ok(());
                };
                heard.store(true, std::sync::atomic::Ordering::Relaxed);
                let event = Event::Hello {
                    name: peer.clone(),
                    id,
                    hello,
                };
                if events_for_reader.send(event).await.is_err() {
                    return Ok(());
                }
            }
            loop {
                let body = read_body_limited(&mut reader, MAX_FRAME_LEN).await?;
                // A type this node does not know is a newer node's: skipped, so that a mesh
                // can be upgraded one node at a time (see `protocol`).
                let event = match decode_member(&body) {
                    Ok(Incoming::Known(Message::Gossip(gossip))) => Event::Gossip {
                        name: peer.clone(),
                        gossip,
                    },
                    Ok(Incoming::Unknown(kind)) => Event::Skipped {
                        name: peer.clone(),
                        kind,
                    },
                    Ok(Incoming::Known(other)) => {
                        tracing::warn!(%peer, message = other.kind(), "unexpected message on a member connection; closed");
                        return Ok(());
                    }
                    Err(error) => return Err(error),
                };
                heard.store(true, std::sync::atomic::Ordering::Relaxed);
                if events_for_reader.send(event).await.is_err() {
                    return Ok(());
                }
            }
        };
        let result = tokio::select! {
            r = writer_task => r,
            r = reader_task => r,
        };
        match result {
            Ok(()) | Err(FrameError::Closed) => {}
            // A transport failure before the peer said anything is a redial race (the
            // other side closed a duplicate); a bad frame is the peer's fault and is warned.
            Err(error @ FrameError::Io(_)) if !heard.load(std::sync::atomic::Ordering::Relaxed) => {
                tracing::debug!(%peer, %error, "control connection closed before the first message");
            }
            Err(error) => tracing::warn!(%peer, %error, "control connection closed"),
        }
    });
    let _ = events
        .send(Event::Connected {
            name: name.clone(),
            serial,
            id,
            initiator,
            sender,
            abort: task.abort_handle(),
        })
        .await;
    let _ = registered.send(());
    let _ = task.await;
    let _ = events.send(Event::Closed { name, id }).await;
}
