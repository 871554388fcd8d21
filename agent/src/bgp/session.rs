//! The I/O of one BGP connection: a reader task that cuts the TCP stream into messages and
//! decodes them, and a writer task that sends encoded messages. The reader reports to the
//! speaker through a channel, tagged with the connection's number so that the engine can tell
//! events of a connection it already dropped.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use meshd_bgp::packet::{CodecOptions, MAX_MESSAGE_LEN, Message};
use meshd_bgp::rib::PeerId;
use meshd_bgp::speaker::{ConnEvent, ConnId};

/// A connection's report, addressed to its session.
#[derive(Debug)]
pub struct ConnReport {
    pub peer: PeerId,
    pub conn: ConnId,
    pub event: ConnEvent,
}

/// Readies a new stream for a session (no Nagle delay: KEEPALIVEs and small UPDATEs go out at
/// once) and returns its local address, which the engine announces as next hop "self".
pub fn prepare(stream: &TcpStream) -> std::io::Result<SocketAddr> {
    stream.set_nodelay(true)?;
    stream.peer_addr()?;
    stream.local_addr()
}

/// The speaker's side of a live connection: where its messages are queued.
#[derive(Debug)]
pub struct Connection {
    writer: mpsc::UnboundedSender<Vec<u8>>,
}

impl Connection {
    /// Starts the reader and writer tasks for `stream` (readied by [`prepare`]).
    pub fn start(
        stream: TcpStream,
        peer: PeerId,
        id: ConnId,
        reports: mpsc::Sender<ConnReport>,
    ) -> Connection {
        let (read, write) = stream.into_split();
        let (writer, queue) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(write, queue));
        tokio::spawn(read_loop(read, peer, id, reports));
        Connection { writer }
    }

    /// Queues an encoded message; a closed writer is noticed by the reader as EOF.
    pub fn send(&self, bytes: Vec<u8>) {
        let _ = self.writer.send(bytes);
    }
}

async fn write_loop(mut write: OwnedWriteHalf, mut queue: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(bytes) = queue.recv().await {
        if write.write_all(&bytes).await.is_err() {
            return;
        }
    }
    // The speaker dropped the connection: flush what was queued (a NOTIFICATION) and close.
    let _ = write.shutdown().await;
}

async fn read_loop(
    mut read: OwnedReadHalf,
    peer: PeerId,
    conn: ConnId,
    reports: mpsc::Sender<ConnReport>,
) {
    // The channel is bounded: a peer that sends faster than the speaker digests waits in TCP
    // flow control instead of piling decoded UPDATEs up in memory.
    let report = async |event| reports.send(ConnReport { peer, conn, event }).await.is_ok();
    let mut buf: Vec<u8> = Vec::with_capacity(2 * MAX_MESSAGE_LEN);
    let mut chunk = vec![0u8; 64 * 1024];
    // meshd always announces 4-octet AS support, so the width of AS numbers in UPDATEs is
    // settled by the peer's OPEN, which is decoded here before any UPDATE can follow it.
    let mut options = CodecOptions::default();
    loop {
        // Hand out every complete message in the buffer before reading more.
        let mut used = 0;
        loop {
            let rest = &buf[used..];
            match Message::frame_len(rest) {
                Ok(Some(len)) if len <= rest.len() => {
                    let event = match Message::decode(&rest[..len], options) {
                        Ok(Message::Open(open)) => {
                            options.four_octet_as = open.four_octet_as().is_some();
                            ConnEvent::Message(Message::Open(open))
                        }
                        Ok(m) => ConnEvent::Message(m),
                        Err(e) => ConnEvent::BadMessage(e),
                    };
                    used += len;
                    let fatal = matches!(event, ConnEvent::BadMessage(_));
                    if !report(event).await || fatal {
                        return;
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    report(ConnEvent::BadMessage(e)).await;
                    return;
                }
            }
        }
        buf.drain(..used);
        match read.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                report(ConnEvent::Closed).await;
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
