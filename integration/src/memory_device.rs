//! An in-memory packet device: what the data plane writes "to the kernel" lands in a
//! channel the test reads, and what the test injects is read by the data plane.

use std::io;
use std::time::Duration;

use meshd::dataplane::{PacketBatch, PacketDevice};
use tokio::sync::{Mutex, mpsc};

/// The data plane's side.
#[derive(Debug)]
pub struct MemoryDevice {
    inbox: Mutex<mpsc::Receiver<Vec<u8>>>,
    outbox: mpsc::UnboundedSender<Vec<u8>>,
}

/// The test's side: plays the kernel.
#[derive(Debug)]
pub struct MemoryDeviceHandle {
    to_dataplane: mpsc::Sender<Vec<u8>>,
    from_dataplane: mpsc::UnboundedReceiver<Vec<u8>>,
}

/// A connected device and handle.
pub fn memory_device() -> (MemoryDevice, MemoryDeviceHandle) {
    let (to_dataplane, inbox) = mpsc::channel(1024);
    let (outbox, from_dataplane) = mpsc::unbounded_channel();
    (
        MemoryDevice {
            inbox: Mutex::new(inbox),
            outbox,
        },
        MemoryDeviceHandle {
            to_dataplane,
            from_dataplane,
        },
    )
}

impl PacketDevice for MemoryDevice {
    async fn recv_batch(&self, batch: &mut PacketBatch) -> io::Result<()> {
        batch.clear();
        let mut inbox = self.inbox.lock().await;
        let Some(first) = inbox.recv().await else {
            // The test dropped its handle: behave like a device that never has traffic.
            return std::future::pending().await;
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
        Ok(())
    }

    async fn send_batch(&self, batch: &mut PacketBatch) -> io::Result<()> {
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
