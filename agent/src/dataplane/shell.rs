//! The shell: worker threads that move batches between the packet device, the core and
//! the UDP sockets, and tokio tasks for the handshakes and timers.
//!
//! The packets are moved by plain OS threads that run each batch to completion (read,
//! seal or open, write) on non-blocking descriptors and sleep in `poll` only when there is
//! nothing to read; no packet is handed from one thread to another. There is one *worker*
//! per queue of the device (`[node] dataplane_workers`, default: the number of cores), and
//! a worker is one thread per direction:
//!
//! - device -> core (encrypt) -> UDP: one thread per device queue; one read may be a TSO
//!   super-packet split into many segments, all encrypted back to back into one buffer and
//!   sent with one GSO `sendmsg` per peer run. The kernel keeps a flow on one queue.
//! - UDP -> core (decrypt) -> device: one thread per socket, and one socket per worker and
//!   address family (`SO_REUSEPORT`; the kernel keeps a peer's address on one socket), so
//!   a peer's datagrams are handled in arrival order (boringtun's replay window never sees
//!   them reordered by us) and written to the device in one batch (GRO-coalesced).
//! - handshakes: the receive threads hand handshake messages (after the per-source limit)
//!   to a bounded queue and go on with data; one tokio task works through the queue (MAC
//!   checks, cookie replies, Diffie-Hellman). A flood of handshakes from many sources then
//!   fills the queue, and what does not fit is dropped (`handshake_queue_full`), while the
//!   data of established sessions is never held up behind it, as kernel WireGuard keeps
//!   its handshake queue apart from the data path.
//! - timers: one tokio task ticks the core every 250 ms, and runs the path probers at their
//!   deadlines in between (probes every 100 ms on a busy path).
//!
//! The threads share nothing but the core, whose mutable state is the per-peer `Tunn`
//! locks (held for one packet) and atomic counters, so the directions and the queues run
//! on as many cores as there are.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use quinn_udp::RecvMeta;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use meshd_tunnel::config::{DataplaneConfig, PeerConfig, WIREGUARD_OVERHEAD};
use meshd_tunnel::core::{DataplaneCore, MIN_TX_ROOM};
use meshd_tunnel::path::{LocalUplink, PathPolicy};
use meshd_tunnel::{DataplaneStats, DropReason, PacketBatch, RekeyRequest, TxBatch};

use super::device::{PacketDevice, Stop};
use super::error::DataplaneError;
use super::udp::{RECV_BUFFER_BYTES, RECV_SLOTS, UdpPort, canonical, wildcard_addresses};

/// How often the protocol timers run.
const TICK: Duration = Duration::from_millis(250);
/// Bytes of encrypted datagrams buffered before a flush.
const TX_CAPACITY: usize = 4 << 20;
/// After an I/O error, wait this long before trying again (a device that went away must
/// not turn the thread into a busy loop).
const ERROR_BACKOFF: Duration = Duration::from_millis(20);
/// How long a tokio task (handshake replies, probes, keepalives) waits for room in a full
/// socket buffer before it drops the datagram: it must not hold up the runtime's thread
/// for long, and WireGuard's timers send these again.
const TASK_SEND_WAIT: Duration = Duration::from_millis(10);
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
    /// and the peers: one worker per queue of `device`. Must be called inside a tokio
    /// runtime (the handshake and timer tasks).
    pub async fn start<D: PacketDevice>(
        config: DataplaneConfig,
        device: D,
    ) -> Result<DataplaneHandle, DataplaneError> {
        config.validate()?;
        let core = Arc::new(DataplaneCore::new(config.private_key, &config.peers)?);
        let workers = device.queues().max(1);
        let sockets = Arc::new(bind_sockets(&config, workers)?);
        let local_addrs = sockets.local_addrs();
        let device = Arc::new(device);
        let stop = Arc::new(Stop::new().map_err(DataplaneError::Worker)?);
        let (handshakes_tx, handshakes_rx) = mpsc::channel(HANDSHAKE_QUEUE);

        let mut handle = DataplaneHandle {
            core: core.clone(),
            stop: stop.clone(),
            tasks: Vec::new(),
            threads: Vec::new(),
            local_addrs,
        };
        handle.tasks.push(tokio::spawn(handshake_task(
            core.clone(),
            sockets.clone(),
            handshakes_rx,
            stop.clone(),
        )));
        handle.tasks.push(tokio::spawn(timer_task(
            core.clone(),
            sockets.clone(),
            stop.clone(),
        )));
        // A thread that cannot be started drops `handle`, which stops the others.
        for worker in 0..workers {
            let out = (core.clone(), device.clone(), sockets.clone(), stop.clone());
            handle.spawn(format!("meshd-out-{worker}"), move || {
                let (core, device, sockets, stop) = out;
                outbound_worker(&core, &*device, &sockets, worker, &stop)
            })?;
            for family in 0..sockets.families.len() {
                let (core, device, sockets, stop) =
                    (core.clone(), device.clone(), sockets.clone(), stop.clone());
                let handshakes = handshakes_tx.clone();
                let name = format!("meshd-in{}-{worker}", sockets.family_name(family));
                handle.spawn(name, move || {
                    let worker = Inbound {
                        core: &core,
                        device: &*device,
                        sockets: &sockets,
                        socket: &sockets.families[family][worker],
                        queue: worker,
                        handshakes: &handshakes,
                        stop: &stop,
                    };
                    worker.run()
                })?;
            }
        }
        tracing::info!(
            addresses = ?handle.local_addrs,
            peers = config.peers.len(),
            workers,
            "data plane started"
        );
        Ok(handle)
    }
}

/// A running data plane. Dropping it without [`DataplaneHandle::shutdown`] also stops the
/// tasks, but without waiting for them.
#[derive(Debug)]
pub struct DataplaneHandle {
    core: Arc<DataplaneCore>,
    stop: Arc<Stop>,
    tasks: Vec<JoinHandle<()>>,
    threads: Vec<thread::JoinHandle<()>>,
    local_addrs: Vec<SocketAddr>,
}

impl DataplaneHandle {
    /// Stops every thread and task and waits until they ended; sockets are closed and the
    /// device is released when this returns.
    pub async fn shutdown(mut self) {
        self.stop.raise();
        for task in self.tasks.drain(..) {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "data plane task ended abnormally");
            }
        }
        // The threads see the stop signal in their next poll, at once.
        let threads = std::mem::take(&mut self.threads);
        let joined = tokio::task::spawn_blocking(move || {
            threads
                .into_iter()
                .filter_map(|thread| thread.join().err())
                .count()
        })
        .await;
        match joined {
            Ok(0) => {}
            Ok(panicked) => tracing::warn!(panicked, "data plane worker threads ended abnormally"),
            Err(e) => tracing::warn!(error = %e, "cannot wait for the data plane worker threads"),
        }
        tracing::info!("data plane stopped");
    }

    fn spawn(
        &mut self,
        name: String,
        body: impl FnOnce() + Send + 'static,
    ) -> Result<(), DataplaneError> {
        let thread = thread::Builder::new()
            .name(name)
            .spawn(body)
            .map_err(DataplaneError::Worker)?;
        self.threads.push(thread);
        Ok(())
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

    /// Starts a new handshake with the peer `name` (every peer when `None`) now
    /// (`meshd rekey`); see `DataplaneCore::request_rekey`.
    pub fn request_rekey(&self, name: Option<&str>) -> Vec<RekeyRequest> {
        self.core.request_rekey(name)
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
    /// Stops the threads (they end on their own at once) and the tasks, without waiting.
    fn drop(&mut self) {
        self.stop.raise();
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The bound sockets: per address family, one per worker (all on the same port).
#[derive(Debug)]
struct Sockets {
    families: Vec<Vec<UdpPort>>,
}

impl Sockets {
    fn local_addrs(&self) -> Vec<SocketAddr> {
        self.families.iter().map(|f| f[0].local_addr()).collect()
    }

    fn family_name(&self, family: usize) -> &'static str {
        if self.families[family][0].local_addr().is_ipv4() {
            "4"
        } else {
            "6"
        }
    }

    /// The socket `worker` sends to `dst` with.
    fn for_destination(&self, dst: SocketAddr, worker: usize) -> Option<&UdpPort> {
        let family = self
            .families
            .iter()
            .find(|f| f[0].local_addr().is_ipv4() == dst.is_ipv4())?;
        family.get(worker % family.len())
    }

    /// Sends everything in `tx` (GSO runs) from `worker`'s sockets and empties it; a full
    /// socket buffer is waited for at most `wait` (`None`: until room or stop).
    fn flush(
        &self,
        core: &DataplaneCore,
        tx: &mut TxBatch,
        worker: usize,
        stop: &Stop,
        wait: Option<Duration>,
    ) {
        for run in tx.runs(usize::MAX) {
            let Some(socket) = self.for_destination(run.dst, worker) else {
                core.drop(DropReason::SendFailed);
                continue;
            };
            let max = socket.max_gso_segments();
            let send =
                |contents: &[u8], seg| socket.send(run.dst, run.src, contents, seg, stop, wait);
            let result = match run.segment_size {
                // GSO was turned off (or is smaller) on this socket: split the run.
                Some(size) if run.contents.len().div_ceil(size) > max => {
                    let mut result = Ok(());
                    for chunk in run.contents.chunks(size * max.max(1)) {
                        let seg = (chunk.len() > size).then_some(size);
                        result = result.and(send(chunk, seg));
                    }
                    result
                }
                seg => send(run.contents, seg),
            };
            if let Err(e) = result {
                tracing::debug!(dst = %run.dst, src = ?run.src, error = %e, "UDP send failed");
                core.drop(DropReason::SendFailed);
            }
        }
        tx.clear();
    }
}

/// Binds one socket per worker and address family: the configured addresses (at most one
/// per family), else the wildcards of both families (a host without IPv6 still runs on
/// IPv4). With several workers they form one `SO_REUSEPORT` group per family, on the port
/// the first one got.
fn bind_sockets(config: &DataplaneConfig, workers: usize) -> Result<Sockets, DataplaneError> {
    let reuse = workers > 1;
    // The first socket of a family, on `ip` and the configured port.
    let bind_first = |ip: std::net::IpAddr| {
        UdpPort::bind(
            SocketAddr::new(ip, config.listen_port),
            config.fwmark,
            reuse,
        )
    };
    let firsts: Vec<UdpPort> = if config.bind_addresses.is_empty() {
        let mut sockets = Vec::new();
        let mut last_error = None;
        for ip in wildcard_addresses() {
            match bind_first(ip) {
                Ok(s) => sockets.push(s),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen on this address family");
                    last_error = Some(e);
                }
            }
        }
        if let (true, Some(e)) = (sockets.is_empty(), last_error) {
            return Err(e);
        }
        sockets
    } else {
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
            .map(|ip| bind_first(*ip))
            .collect::<Result<_, _>>()?
    };
    let mut families = Vec::with_capacity(firsts.len());
    for first in firsts {
        // The same address, with the port the first socket got when 0 was configured.
        let addr = first.local_addr();
        let mut family = vec![first];
        for _ in 1..workers {
            family.push(UdpPort::bind(addr, config.fwmark, reuse)?);
        }
        families.push(family);
    }
    Ok(Sockets { families })
}

/// Device queue `worker` -> core (encrypt) -> UDP, until `stop`.
fn outbound_worker<D: PacketDevice>(
    core: &DataplaneCore,
    device: &D,
    sockets: &Sockets,
    worker: usize,
    stop: &Stop,
) {
    let mut batch = PacketBatch::new();
    let mut tx = TxBatch::new(TX_CAPACITY);
    loop {
        match device.recv_batch(worker, &mut batch, stop) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, "reading from the packet device failed");
                thread::sleep(ERROR_BACKOFF);
                continue;
            }
        }
        let now = Instant::now();
        let snap = core.snapshot();
        for packet in batch.packets() {
            if tx.remaining() < packet.len() + WIREGUARD_OVERHEAD + MIN_TX_ROOM {
                sockets.flush(core, &mut tx, worker, stop, None);
            }
            core.handle_outbound(&snap, packet, now, &mut tx);
        }
        sockets.flush(core, &mut tx, worker, stop, None);
    }
}

/// One UDP socket -> core (decrypt) -> device queue, until stop.
struct Inbound<'a, D> {
    core: &'a DataplaneCore,
    device: &'a D,
    sockets: &'a Sockets,
    socket: &'a UdpPort,
    /// The worker's index: its device queue and its sockets for what the core sends back.
    queue: usize,
    handshakes: &'a mpsc::Sender<QueuedHandshake>,
    stop: &'a Stop,
}

impl<D: PacketDevice> Inbound<'_, D> {
    fn run(self) {
        let Inbound { core, stop, .. } = self;
        let mut bufs: [Box<[u8]>; RECV_SLOTS] =
            std::array::from_fn(|_| vec![0; RECV_BUFFER_BYTES].into_boxed_slice());
        let mut meta: [RecvMeta; RECV_SLOTS] = std::array::from_fn(|_| RecvMeta::default());
        let mut to_device = PacketBatch::new();
        let mut tx = TxBatch::new(TX_CAPACITY);
        loop {
            let count = match self.socket.recv(&mut bufs, &mut meta, stop) {
                Ok(Some(n)) => n,
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "UDP receive failed");
                    thread::sleep(ERROR_BACKOFF);
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
                        self.queue_handshake(datagram, from, local, now);
                        continue;
                    }
                    if to_device.is_full() {
                        self.flush_device(&mut to_device);
                    }
                    if tx.remaining() < 2 * (MIN_TX_ROOM + usize::from(u16::MAX)) {
                        self.sockets.flush(core, &mut tx, self.queue, stop, None);
                    }
                    core.handle_inbound_on(
                        &snap,
                        datagram,
                        from,
                        local,
                        now,
                        &mut to_device,
                        &mut tx,
                    );
                }
            }
            self.flush_device(&mut to_device);
            self.sockets.flush(core, &mut tx, self.queue, stop, None);
        }
    }

    fn queue_handshake(
        &self,
        datagram: &[u8],
        from: SocketAddr,
        local: Option<std::net::IpAddr>,
        now: Instant,
    ) {
        if !self.core.admit_handshake(from.ip(), now) {
            return;
        }
        let queued = QueuedHandshake {
            datagram: datagram.into(),
            from,
            local,
        };
        if self.handshakes.try_send(queued).is_err() {
            self.core.drop(DropReason::HandshakeQueueFull);
        }
    }

    fn flush_device(&self, batch: &mut PacketBatch) {
        if batch.is_empty() {
            return;
        }
        if let Err(e) = self.device.send_batch(self.queue, batch) {
            tracing::warn!(error = %e, packets = batch.len(), "writing to the packet device failed");
        }
        batch.clear();
    }
}

/// Works through the handshake queue, a batch at a time, sending the replies of each batch
/// together.
async fn handshake_task(
    core: Arc<DataplaneCore>,
    sockets: Arc<Sockets>,
    mut handshakes: mpsc::Receiver<QueuedHandshake>,
    stop: Arc<Stop>,
) {
    let mut tx = TxBatch::new(TX_CAPACITY);
    let mut batch = Vec::with_capacity(HANDSHAKE_BATCH);
    loop {
        let received = tokio::select! {
            biased;
            _ = stop.raised() => return,
            n = handshakes.recv_many(&mut batch, HANDSHAKE_BATCH) => n,
        };
        if received == 0 {
            return;
        }
        let now = Instant::now();
        let snap = core.snapshot();
        for queued in batch.drain(..) {
            if tx.remaining() < 2 * (MIN_TX_ROOM + usize::from(u16::MAX)) {
                sockets.flush(&core, &mut tx, 0, &stop, Some(TASK_SEND_WAIT));
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
        sockets.flush(&core, &mut tx, 0, &stop, Some(TASK_SEND_WAIT));
    }
}

async fn timer_task(core: Arc<DataplaneCore>, sockets: Arc<Sockets>, stop: Arc<Stop>) {
    let mut tx = TxBatch::new(TX_CAPACITY);
    let mut next_tick = Instant::now();
    loop {
        // A prober deadline earlier than the next tick wakes us for the probers alone.
        let wake = core
            .next_path_deadline()
            .map_or(next_tick, |d| d.min(next_tick));
        tokio::select! {
            biased;
            _ = stop.raised() => return,
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        let now = Instant::now();
        if now >= next_tick {
            core.tick(now, &mut tx);
            next_tick = now + TICK;
        } else {
            core.poll_paths(now, &mut tx);
        }
        sockets.flush(&core, &mut tx, 0, &stop, Some(TASK_SEND_WAIT));
    }
}
