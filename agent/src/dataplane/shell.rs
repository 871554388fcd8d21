//! The tokio shell: tasks that move batches between the packet device, the core and the
//! UDP sockets.
//!
//! - device -> core (encrypt) -> UDP: one task; one device read may be a TSO super-packet
//!   split into many segments, all encrypted back to back into one buffer and sent with
//!   one GSO `sendmsg` per peer run.
//! - UDP -> core (decrypt) -> device: one task per socket, datagrams handled in arrival
//!   order (boringtun's replay window never sees a peer's packets reordered by us), written
//!   to the device in one batch (GRO-coalesced by tun-rs).
//! - handshakes: the receive tasks hand handshake messages (after the per-source limit) to
//!   a bounded queue and go on with data; one task works through the queue (MAC checks,
//!   cookie replies, Diffie-Hellman). A flood of handshakes from many sources then fills
//!   the queue, and what does not fit is dropped (`handshake_queue_full`), while the data
//!   of established sessions is never held up behind it, as kernel WireGuard keeps its
//!   handshake queue apart from the data path.
//! - timers: one task ticks the core every 250 ms, and runs the path probers at their
//!   deadlines in between (probes every 100 ms on a busy path).
//!
//! The two directions share nothing but the per-peer `Tunn` locks, so they run on two cores.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quinn_udp::RecvMeta;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use meshd_tunnel::config::{DataplaneConfig, PeerConfig, WIREGUARD_OVERHEAD};
use meshd_tunnel::core::{DataplaneCore, MIN_TX_ROOM};
use meshd_tunnel::path::{LocalUplink, PathPolicy};
use meshd_tunnel::{DataplaneStats, DropReason, PacketBatch, TxBatch};

use super::device::PacketDevice;
use super::error::DataplaneError;
use super::udp::{RECV_BUFFER_BYTES, RECV_SLOTS, UdpPort, canonical, wildcard_addresses};

/// How often the protocol timers run.
const TICK: Duration = Duration::from_millis(250);
/// Bytes of encrypted datagrams buffered before a flush.
const TX_CAPACITY: usize = 4 << 20;
/// After an I/O error, wait this long before trying again (a device that went away must
/// not turn the task into a busy loop).
const ERROR_BACKOFF: Duration = Duration::from_millis(20);
/// Handshake messages waiting for the handshake task. A real peer sends one every two
/// minutes; 1024 is a second of the global rate at which boringtun starts asking for
/// cookies, and 150 KB of memory at most.
const HANDSHAKE_QUEUE: usize = 1024;
/// Handshake messages handled before the replies are sent.
const HANDSHAKE_BATCH: usize = 64;

/// A handshake message waiting in the queue, with where it came from and to.
struct QueuedHandshake {
    datagram: Box<[u8]>,
    from: SocketAddr,
    local: Option<std::net::IpAddr>,
}

/// Entry point of the data plane.
#[derive(Debug)]
pub struct Dataplane;

impl Dataplane {
    /// Validates `config`, binds the UDP sockets and starts moving packets between `device`
    /// and the peers. Must be called inside a tokio runtime.
    pub async fn start<D: PacketDevice>(
        config: DataplaneConfig,
        device: D,
    ) -> Result<DataplaneHandle, DataplaneError> {
        config.validate()?;
        let core = Arc::new(DataplaneCore::new(config.private_key, &config.peers)?);
        let sockets = bind_sockets(&config)?;
        let local_addrs = sockets.iter().map(|s| s.local_addr()).collect();
        let sockets = Arc::new(Sockets(sockets));
        let device = Arc::new(device);
        let (stop_tx, stop_rx) = watch::channel(false);
        let (handshakes_tx, handshakes_rx) = mpsc::channel(HANDSHAKE_QUEUE);

        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(handshake_task(
            core.clone(),
            sockets.clone(),
            handshakes_rx,
            stop_rx.clone(),
        )));
        tasks.push(tokio::spawn(outbound_task(
            core.clone(),
            device.clone(),
            sockets.clone(),
            stop_rx.clone(),
        )));
        for index in 0..sockets.0.len() {
            tasks.push(tokio::spawn(inbound_task(
                core.clone(),
                device.clone(),
                sockets.clone(),
                index,
                handshakes_tx.clone(),
                stop_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(timer_task(
            core.clone(),
            sockets.clone(),
            stop_rx,
        )));
        tracing::info!(
            addresses = ?local_addrs,
            peers = config.peers.len(),
            "data plane started"
        );
        Ok(DataplaneHandle {
            core,
            stop: stop_tx,
            tasks,
            local_addrs,
        })
    }
}

/// A running data plane. Dropping it without [`DataplaneHandle::shutdown`] also stops the
/// tasks, but without waiting for them.
#[derive(Debug)]
pub struct DataplaneHandle {
    core: Arc<DataplaneCore>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    local_addrs: Vec<SocketAddr>,
}

impl DataplaneHandle {
    /// Stops every task and waits until they ended; sockets are closed and the device is
    /// released when this returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "data plane task ended abnormally");
            }
        }
        tracing::info!("data plane stopped");
    }

    /// Counters: per peer traffic and handshakes, drops by reason.
    pub fn stats(&self) -> DataplaneStats {
        self.core.stats()
    }

    /// Replaces the peer set (membership or routing changes). Unchanged peers keep their
    /// sessions.
    pub fn update_peers(&self, peers: &[PeerConfig]) -> Result<(), DataplaneError> {
        Ok(self.core.update_peers(peers)?)
    }

    /// This node's own prefixes, which the data plane delivers to the TUN even where a
    /// peer's route covers them too (see `DataplaneCore::set_own_prefixes`).
    pub fn set_own_prefixes(&self, prefixes: &[ipnet::IpNet]) {
        self.core.set_own_prefixes(prefixes);
    }

    /// A handle that tells the data plane which local uplink addresses it can send from
    /// (for the task that follows rtnetlink).
    pub fn uplinks(&self) -> UplinkSink {
        UplinkSink(self.core.clone())
    }

    /// How paths are ranked and probed (`[paths]`).
    pub fn set_path_policy(&self, policy: Arc<dyn PathPolicy>) {
        self.core.set_path_policy(policy);
    }

    /// Peers whose paths all failed since the last call (their endpoint names are worth
    /// asking DNS again).
    pub fn take_resolve_requests(&self) -> Vec<String> {
        self.core.take_resolve_requests()
    }

    /// The UDP addresses we listen on (with the real port when 0 was configured).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Our WireGuard public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.core.public_key()
    }
}

/// Where the node's usable uplink addresses go: paths from an address that went away are
/// down at once, paths from a new one are probed at once.
#[derive(Debug, Clone)]
pub struct UplinkSink(Arc<DataplaneCore>);

impl UplinkSink {
    /// The usable local addresses now, primary uplink first.
    pub fn set(&self, uplinks: Vec<LocalUplink>) {
        self.0.set_local_addresses(uplinks, Instant::now());
    }
}

impl Drop for DataplaneHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The bound sockets; at most one per address family is used for sending.
#[derive(Debug)]
struct Sockets(Vec<UdpPort>);

impl Sockets {
    fn for_destination(&self, dst: SocketAddr) -> Option<&UdpPort> {
        self.0
            .iter()
            .find(|s| s.local_addr().is_ipv4() == dst.is_ipv4())
    }

    /// Sends everything in `tx` (GSO runs) and empties it.
    async fn flush(&self, core: &DataplaneCore, tx: &mut TxBatch) {
        for run in tx.runs(usize::MAX) {
            let Some(socket) = self.for_destination(run.dst) else {
                core.drop(DropReason::SendFailed);
                continue;
            };
            let max = socket.max_gso_segments();
            let result = match run.segment_size {
                // GSO was turned off (or is smaller) on this socket: split the run.
                Some(size) if run.contents.len().div_ceil(size) > max => {
                    let mut result = Ok(());
                    for chunk in run.contents.chunks(size * max.max(1)) {
                        let seg = (chunk.len() > size).then_some(size);
                        result = result.and(socket.send(run.dst, run.src, chunk, seg).await);
                    }
                    result
                }
                seg => socket.send(run.dst, run.src, run.contents, seg).await,
            };
            if let Err(e) = result {
                tracing::debug!(dst = %run.dst, src = ?run.src, error = %e, "UDP send failed");
                core.drop(DropReason::SendFailed);
            }
        }
        tx.clear();
    }
}

fn bind_sockets(config: &DataplaneConfig) -> Result<Vec<UdpPort>, DataplaneError> {
    if config.bind_addresses.is_empty() {
        // Wildcards of both families; a host without IPv6 still runs on IPv4.
        let mut sockets = Vec::new();
        let mut last_error = None;
        for ip in wildcard_addresses() {
            match UdpPort::bind(SocketAddr::new(ip, config.listen_port), config.fwmark) {
                Ok(s) => sockets.push(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen on this address family");
                    last_error = Some(e);
                }
            }
        }
        return match (sockets.is_empty(), last_error) {
            (true, Some(e)) => Err(e),
            _ => Ok(sockets),
        };
    }
    let mut seen_v4 = false;
    let mut seen_v6 = false;
    for ip in &config.bind_addresses {
        let seen = if ip.is_ipv4() {
            &mut seen_v4
        } else {
            &mut seen_v6
        };
        if std::mem::replace(seen, true) {
            return Err(DataplaneError::config(format!(
                "bind_addresses: at most one address per family, {ip} is a second one"
            )));
        }
    }
    config
        .bind_addresses
        .iter()
        .map(|ip| UdpPort::bind(SocketAddr::new(*ip, config.listen_port), config.fwmark))
        .collect()
}

async fn outbound_task<D: PacketDevice>(
    core: Arc<DataplaneCore>,
    device: Arc<D>,
    sockets: Arc<Sockets>,
    mut stop: watch::Receiver<bool>,
) {
    let mut batch = PacketBatch::new();
    let mut tx = TxBatch::new(TX_CAPACITY);
    loop {
        let received = tokio::select! {
            biased;
            _ = stop.changed() => return,
            r = device.recv_batch(&mut batch) => r,
        };
        if let Err(e) = received {
            tracing::warn!(error = %e, "reading from the packet device failed");
            tokio::time::sleep(ERROR_BACKOFF).await;
            continue;
        }
        let now = Instant::now();
        let snap = core.snapshot();
        for packet in batch.packets() {
            if tx.remaining() < packet.len() + WIREGUARD_OVERHEAD + MIN_TX_ROOM {
                sockets.flush(&core, &mut tx).await;
            }
            core.handle_outbound(&snap, packet, now, &mut tx);
        }
        sockets.flush(&core, &mut tx).await;
    }
}

async fn inbound_task<D: PacketDevice>(
    core: Arc<DataplaneCore>,
    device: Arc<D>,
    sockets: Arc<Sockets>,
    index: usize,
    handshakes: mpsc::Sender<QueuedHandshake>,
    mut stop: watch::Receiver<bool>,
) {
    let socket = &sockets.0[index];
    let mut bufs: [Box<[u8]>; RECV_SLOTS] =
        std::array::from_fn(|_| vec![0; RECV_BUFFER_BYTES].into_boxed_slice());
    let mut meta: [RecvMeta; RECV_SLOTS] = std::array::from_fn(|_| RecvMeta::default());
    let mut to_device = PacketBatch::new();
    let mut tx = TxBatch::new(TX_CAPACITY);
    loop {
        let received = tokio::select! {
            biased;
            _ = stop.changed() => return,
            r = socket.recv(&mut bufs, &mut meta) => r,
        };
        let count = match received {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "UDP receive failed");
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        let now = Instant::now();
        let snap = core.snapshot();
        for (buf, meta) in bufs.iter().zip(&meta).take(count) {
            let from = canonical(meta.addr);
            // The local address it came to: with it, the path it came by.
            let local = meta.dst_ip.map(|ip| canonical(SocketAddr::new(ip, 0)).ip());
            let stride = meta.stride.max(1);
            let data = &buf[..meta.len.min(buf.len())];
            if data.is_empty() {
                // An empty datagram is junk too; let the core count it.
                core.handle_inbound_on(&snap, data, from, local, now, &mut to_device, &mut tx);
            }
            for datagram in data.chunks(stride) {
                if DataplaneCore::is_handshake(datagram) {
                    if core.admit_handshake(from.ip(), now) {
                        let queued = QueuedHandshake {
                            datagram: datagram.into(),
                            from,
                            local,
                        };
                        if handshakes.try_send(queued).is_err() {
                            DataplaneCore::drop(&core, DropReason::HandshakeQueueFull);
                        }
                    }
                    continue;
                }
                if to_device.is_full() {
                    flush_device(&*device, &mut to_device).await;
                }
                if tx.remaining() < 2 * (MIN_TX_ROOM + usize::from(u16::MAX)) {
                    sockets.flush(&core, &mut tx).await;
                }
                core.handle_inbound_on(&snap, datagram, from, local, now, &mut to_device, &mut tx);
            }
        }
        flush_device(&*device, &mut to_device).await;
        sockets.flush(&core, &mut tx).await;
    }
}

/// Works through the handshake queue, a batch at a time, sending the replies of each batch
/// together.
async fn handshake_task(
    core: Arc<DataplaneCore>,
    sockets: Arc<Sockets>,
    mut handshakes: mpsc::Receiver<QueuedHandshake>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tx = TxBatch::new(TX_CAPACITY);
    let mut batch = Vec::with_capacity(HANDSHAKE_BATCH);
    loop {
        let received = tokio::select! {
            biased;
            _ = stop.changed() => return,
            n = handshakes.recv_many(&mut batch, HANDSHAKE_BATCH) => n,
        };
        if received == 0 {
            return;
        }
        let now = Instant::now();
        let snap = core.snapshot();
        for queued in batch.drain(..) {
            if tx.remaining() < 2 * (MIN_TX_ROOM + usize::from(u16::MAX)) {
                sockets.flush(&core, &mut tx).await;
            }
            core.handle_queued_handshake(
                &snap,
                &queued.datagram,
                queued.from,
                queued.local,
                now,
                &mut tx,
            );
        }
        sockets.flush(&core, &mut tx).await;
    }
}

async fn flush_device<D: PacketDevice>(device: &D, batch: &mut PacketBatch) {
    if batch.is_empty() {
        return;
    }
    if let Err(e) = device.send_batch(batch).await {
        tracing::warn!(error = %e, packets = batch.len(), "writing to the packet device failed");
    }
    batch.clear();
}

async fn timer_task(
    core: Arc<DataplaneCore>,
    sockets: Arc<Sockets>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tx = TxBatch::new(TX_CAPACITY);
    let mut next_tick = Instant::now();
    loop {
        // A prober deadline earlier than the next tick wakes us for the probers alone.
        let wake = core
            .next_path_deadline()
            .map_or(next_tick, |d| d.min(next_tick));
        tokio::select! {
            biased;
            _ = stop.changed() => return,
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        let now = Instant::now();
        if now >= next_tick {
            core.tick(now, &mut tx);
            next_tick = now + TICK;
        } else {
            core.poll_paths(now, &mut tx);
        }
        sockets.flush(&core, &mut tx).await;
    }
}
