//! The packet device: where inner IP packets enter and leave the data plane.
//!
//! The real one is the TUN device ([`super::tun::TunDevice`]) with one queue per worker
//! (`IFF_MULTI_QUEUE`); tests use an in-memory one with a single queue. Packets move in
//! [`PacketBatch`]es (the core's reusable buffers). The calls block: each queue is read by
//! one worker thread of its own, which a [`Stop`] wakes when the data plane stops.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

use meshd_tunnel::PacketBatch;
use rustix::event::{EventfdFlags, PollFd, PollFlags};
use tokio::sync::watch;

/// A packet device that reads and writes IP packets in batches, on one or more queues.
///
/// Every queue is read by one thread at a time; writes may come from any thread.
pub trait PacketDevice: Send + Sync + 'static {
    /// How many queues the device has (at least 1); the data plane runs one worker per queue.
    fn queues(&self) -> usize;

    /// Waits for at least one packet on `queue` and fills `batch` with as many as are ready
    /// (`batch` is cleared first). `Ok(false)`: `stop` was raised, nothing was read.
    fn recv_batch(&self, queue: usize, batch: &mut PacketBatch, stop: &Stop) -> io::Result<bool>;

    /// Writes every packet in `batch` (through `queue`). May modify the buffers
    /// (coalescing); the caller clears the batch afterwards.
    fn send_batch(&self, queue: usize, batch: &mut PacketBatch) -> io::Result<()>;
}

/// The data plane's stop signal, for threads blocked in `poll` (an eventfd that becomes
/// readable once and stays so) and for tokio tasks (a watch channel).
#[derive(Debug)]
pub struct Stop {
    raised: AtomicBool,
    event: OwnedFd,
    watch: watch::Sender<bool>,
}

impl Stop {
    /// A signal not raised yet.
    pub fn new() -> io::Result<Self> {
        let event = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Stop {
            raised: AtomicBool::new(false),
            event,
            watch: watch::Sender::new(false),
        })
    }

    /// Raises the signal: every waiter wakes, now and later.
    pub fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        // The counter only has to become non-zero; nobody reads it back, so it stays
        // readable for every thread that polls it afterwards. It cannot overflow from 1.
        let _ = rustix::io::write(&self.event, &1u64.to_ne_bytes());
        self.watch.send_replace(true);
    }

    /// Whether the signal was raised.
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Resolves once the signal is raised (for tokio tasks and async devices).
    pub async fn raised(&self) {
        let mut rx = self.watch.subscribe();
        let _ = rx.wait_for(|raised| *raised).await;
    }

    /// Waits until `fd` is ready for `flags` (or has an error to report), at most `timeout`
    /// (`None`: no limit). `Ok(false)`: the signal was raised, or the time ran out.
    pub fn wait(
        &self,
        fd: BorrowedFd<'_>,
        flags: PollFlags,
        timeout: Option<std::time::Duration>,
    ) -> io::Result<bool> {
        let timeout = timeout
            .map(|t| rustix::event::Timespec::try_from(t).map_err(|_| io::ErrorKind::InvalidInput))
            .transpose()?;
        loop {
            if self.is_raised() {
                return Ok(false);
            }
            let mut fds = [
                PollFd::from_borrowed_fd(fd, flags),
                PollFd::from_borrowed_fd(self.event.as_fd(), PollFlags::IN),
            ];
            match rustix::event::poll(&mut fds, timeout.as_ref()) {
                Ok(0) => return Ok(false),
                Ok(_) => return Ok(fds[1].revents().is_empty()),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
