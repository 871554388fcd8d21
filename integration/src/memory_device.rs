//! An in-memory packet device: what the data plane writes "to the kernel" lands in a
//! channel the test reads, and what the test injects is read by the data plane.

use std::io;
use std::time::Duration;

use meshd::dataplane::{PacketBatch, PacketDevice, Stop};
use tokio::runtime::Handle;
use tokio::sync::{Mutex, mpsc};

/// The data plane's side: one queue, read by the data plane's worker thread, which waits
/// for the test's packets (or the stop signal) on the test's runtime.
#[derive(Debug)]
pub struct MemoryDevice {
    inbox: Mutex<mpsc::Receiver<Vec<u8>>>,
    outbox: mpsc::UnboundedSender<Vec<u8>>,
    runtime: Handle,
}

/// The test's side: plays the kernel.
#[derive(Debug)]
pub struct MemoryDeviceHandle {
    to_dataplane: mpsc::Sender<Vec<u8>>,
    from_dataplane: mpsc::UnboundedReceiver<Vec<u8>>,
}

/// A connected device and handle. Must be called inside a tokio runtime.
pub fn memory_device() -> (MemoryDevice, MemoryDeviceHandle) {
    let (to_dataplane, inbox) = mpsc::channel(1024);
    let (outbox, from_dataplane) = mpsc::unbounded_channel();
    (
        MemoryDevice {
            inbox: Mutex::new(inbox),
            outbox,
            runtime: Handle::current(),
        },
        MemoryDeviceHandle {
            to_dataplane,
            from_dataplane,
        },
    )
}

impl PacketDevice for MemoryDevice {
    fn queues(&self) -> usize {
        1
    }

    fn recv_batch(&self, _queue: usize, batch: &mut PacketBatch, stop: &Stop) -> io::Result<bool> {
        batch.clear();
        self.runtime.block_on(async {
            let mut inbox = self.inbox.lock().await;
            let first = tokio::select! {
                biased;
                _ = stop.raised() => return Ok(false),
                first = inbox.recv() => first,
            };
            let Some(first) = first else {
                // The test dropped its handle: behave like a device that never has traffic.
                stop.raised().await;
                return Ok(false);
            };
            if !batch.push(&first) {
                return Err(io::Error::other("packet larger than a batch buffer"));
            }
            while !batch.is_full() {
                match inbox.try_recv() {
                    Ok(packet) => {
                        batch.push(&packet);
                    }
                    Err(_) => break,
                }
            }
            Ok(true)
        })
    }

    fn send_batch(&self, _queue: usize, batch: &mut PacketBatch) -> io::Result<()> {
        for packet in batch.packets() {
            self.outbox
                .send(packet.to_vec())
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "test side closed"))?;
        }
        Ok(())
    }
}

impl MemoryDeviceHandle {
    /// The kernel routes `packet` into the TUN device.
    pub async fn inject(&self, packet: Vec<u8>) {
        self.to_dataplane
            .send(packet)
            .await
            .expect("the data plane holds the device");
    }

    /// The next packet the data plane delivered, or `None` after `timeout`.
    pub async fn next_packet(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        tokio::time::timeout(timeout, self.from_dataplane.recv())
            .await
            .ok()
            .flatten()
    }

    /// Everything delivered so far, without waiting.
    pub fn drain(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Ok(p) = self.from_dataplane.try_recv() {
            out.push(p);
        }
        out
    }
}
