//! The real packet device: a Linux TUN interface with virtio-net offload.
//!
//! With `offload(true)` tun-rs opens the device with `IFF_VNET_HDR` and enables TSO/USO, so
//! the kernel hands us TCP super-packets of up to 64 KiB (one read, split by tun-rs into
//! MTU-sized segments) and accepts coalesced ones back: [`meshd_tunnel::gro`] glues decrypted
//! segments into super-packets for the write. This is what removes most of the per-packet
//! system calls a plain TUN costs. The queues are non-blocking; the worker threads wait in
//! `poll` (with the data plane's stop signal) only when a queue is empty.

use std::io;
use std::os::fd::AsFd;

use meshd_tunnel::batch::{DeviceIo, HEADROOM, PacketBatch};
use meshd_tunnel::gro;
use rustix::event::PollFlags;

use super::device::{PacketDevice, Stop};
use super::error::DataplaneError;

/// Most packets one TUN read may split into: a 64 KiB TSO super-packet at the smallest
/// tunnel MTU (1280, segments of 1240 bytes) is 53.
const MAX_SEGMENTS_PER_READ: usize = 64;

/// An open TUN device, with one file descriptor per queue (`IFF_MULTI_QUEUE` when there are
/// several: the kernel spreads the flows it routes into the device over the queues by
/// their hash, so one flow stays on one queue and in order). Dropping it deletes the
/// interface (it is not persistent).
pub struct TunDevice {
    queues: Vec<tun_rs::SyncDevice>,
    name: String,
    ifindex: u32,
    vnet: bool,
}

impl std::fmt::Debug for TunDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunDevice")
            .field("name", &self.name)
            .field("ifindex", &self.ifindex)
            .field("queues", &self.queues.len())
            .finish()
    }
}

/// Creates the TUN device `name` with `mtu`, offload on and `queues` queues (at least 1),
/// and brings it up. A kernel that refuses extra queues leaves the device with fewer
/// (logged), never none.
///
/// Needs CAP_NET_ADMIN. Addresses and routes are the netlink module's job.
pub fn create_tun(name: &str, mtu: u16, queues: usize) -> Result<TunDevice, DataplaneError> {
    let err = |source: io::Error| DataplaneError::Tun {
        name: name.to_owned(),
        source,
    };
    let queues = queues.max(1);
    let first = tun_rs::DeviceBuilder::new()
        .name(name)
        .mtu(mtu)
        .offload(true)
        .multi_queue(queues > 1)
        .build_sync()
        .map_err(err)?;
    first.set_nonblocking(true).map_err(err)?;
    let actual_name = first.name().map_err(err)?;
    let ifindex = first.if_index().map_err(err)?;
    let vnet = first.tcp_gso();
    let mut all = vec![first];
    while all.len() < queues {
        let more = all[0]
            .try_clone()
            .and_then(|q| q.set_nonblocking(true).map(|()| q));
        match more {
            Ok(q) => all.push(q),
            Err(error) => {
                tracing::warn!(interface = %actual_name, %error, queues = all.len(),
                    "cannot open another TUN queue; the data plane runs fewer workers");
                break;
            }
        }
    }
    Ok(TunDevice {
        queues: all,
        name: actual_name,
        ifindex,
        vnet,
    })
}

impl TunDevice {
    /// Interface name as the kernel knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Interface index (for rtnetlink).
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// True when the kernel accepted TCP segmentation offload on this device.
    pub fn tcp_offload(&self) -> bool {
        self.vnet
    }
}

impl PacketDevice for TunDevice {
    fn queues(&self) -> usize {
        self.queues.len()
    }

    fn recv_batch(&self, queue: usize, batch: &mut PacketBatch, stop: &Stop) -> io::Result<bool> {
        let device = &self.queues[queue];
        batch.clear();
        let DeviceIo {
            bufs,
            sizes,
            scratch,
            ..
        } = batch.device_io();
        for buf in bufs.iter_mut() {
            buf.expose_all();
        }
        // Non-blocking: read first, poll only when the queue is empty, so a busy queue
        // costs one read per batch and an idle one a poll.
        let mut count = loop {
            match device.recv_multiple(scratch, bufs, sizes, HEADROOM) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !stop.wait(device.as_fd(), PollFlags::IN, None)? {
                        return Ok(false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        // After a lone packet, drain what else is queued without waiting, while a whole
        // super-packet still fits: small packets (voice, DNS, games) then leave in one GSO
        // send per batch instead of one wake-up and one sendmsg each. A super-packet read
        // is batch enough (and draining after one cost bulk TCP a little CPU in the
        // benchmark). One extra read (EAGAIN) per wake-up is the cost when nothing waits.
        let drain = count == 1;
        while drain && bufs.len() - count >= MAX_SEGMENTS_PER_READ {
            match device.recv_multiple(scratch, &mut bufs[count..], &mut sizes[count..], HEADROOM) {
                Ok(n) => count += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // The packets already read go on; the error shows again on the next read
                // if it lasts.
                Err(e) => {
                    tracing::debug!(error = %e, "TUN read failed while draining");
                    break;
                }
            }
        }
        batch.set_from_sizes(count);
        Ok(true)
    }

    fn send_batch(&self, queue: usize, batch: &mut PacketBatch) -> io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let device = &self.queues[queue];
        let count = batch.len();
        let DeviceIo { bufs, writes, .. } = batch.device_io();
        let bufs = &mut bufs[..count];
        if self.vnet {
            // Our own TCP coalescing (see `gro`), one write per super-packet.
            gro::coalesce(bufs, writes);
        } else {
            // Without IFF_VNET_HDR the device takes bare packets, one per write.
            writes.clear();
            writes.extend(0..count);
        }
        let mut result = Ok(());
        for &i in writes.iter() {
            let bytes = if self.vnet {
                bufs[i].with_vnet_header()
            } else {
                bufs[i].packet()
            };
            // A TUN write does not block (the kernel takes the packet or drops it), so
            // the queue's non-blocking mode changes nothing here.
            if let Err(e) = device.send(bytes) {
                // One bad packet must not cost the rest of the batch.
                result = Err(e);
            }
        }
        result
    }
}
