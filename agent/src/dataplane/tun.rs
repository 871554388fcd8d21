//! The real packet device: a Linux TUN interface with virtio-net offload.
//!
//! With `offload(true)` tun-rs opens the device with `IFF_VNET_HDR` and enables TSO/USO, so
//! the kernel hands us TCP super-packets of up to 64 KiB (one read, split by tun-rs into
//! MTU-sized segments) and accepts coalesced ones back: [`meshd_tunnel::gro`] glues decrypted
//! segments into super-packets for the write. This is what removes most of the per-packet
//! system calls a plain TUN costs.

use std::io;

use meshd_tunnel::batch::{DeviceIo, HEADROOM, PacketBatch};
use meshd_tunnel::gro;

use super::device::PacketDevice;
use super::error::DataplaneError;

/// Most packets one TUN read may split into: a 64 KiB TSO super-packet at the smallest
/// tunnel MTU (1280, segments of 1240 bytes) is 53.
const MAX_SEGMENTS_PER_READ: usize = 64;

/// An open TUN device. Dropping it deletes the interface (it is not persistent).
pub struct TunDevice {
    device: tun_rs::AsyncDevice,
    name: String,
    ifindex: u32,
}

impl std::fmt::Debug for TunDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunDevice")
            .field("name", &self.name)
            .field("ifindex", &self.ifindex)
            .finish()
    }
}

/// Creates the TUN device `name` with `mtu`, offload on, and brings it up.
///
/// Needs CAP_NET_ADMIN and must be called inside a tokio runtime. Addresses and routes are
/// the netlink module's job.
pub fn create_tun(name: &str, mtu: u16) -> Result<TunDevice, DataplaneError> {
    let err = |source: io::Error| DataplaneError::Tun {
        name: name.to_owned(),
        source,
    };
    let device = tun_rs::DeviceBuilder::new()
        .name(name)
        .mtu(mtu)
        .offload(true)
        .build_async()
        .map_err(err)?;
    let actual_name = device.name().map_err(err)?;
    let ifindex = device.if_index().map_err(err)?;
    Ok(TunDevice {
        device,
        name: actual_name,
        ifindex,
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
        self.device.tcp_gso()
    }
}

impl PacketDevice for TunDevice {
    async fn recv_batch(&self, batch: &mut PacketBatch) -> io::Result<()> {
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
        let mut count = self
            .device
            .recv_multiple(scratch, bufs, sizes, HEADROOM)
            .await?;
        // After a lone packet, drain what else is queued without waiting, while a whole
        // super-packet still fits: small packets (voice, DNS, games) then leave in one GSO
        // send per batch instead of one wake-up and one sendmsg each. A super-packet read
        // is batch enough (and draining after one cost bulk TCP a little CPU in the
        // benchmark). One extra read (EAGAIN) per wake-up is the cost when nothing waits.
        let drain = count == 1;
        while drain && bufs.len() - count >= MAX_SEGMENTS_PER_READ {
            match self.device.try_recv_multiple(
                scratch,
                &mut bufs[count..],
                &mut sizes[count..],
                HEADROOM,
            ) {
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
        Ok(())
    }

    async fn send_batch(&self, batch: &mut PacketBatch) -> io::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let count = batch.len();
        let DeviceIo { bufs, writes, .. } = batch.device_io();
        let bufs = &mut bufs[..count];
        let vnet = self.device.tcp_gso();
        if vnet {
            // Our own TCP coalescing (see `gro`), one write per super-packet.
            gro::coalesce(bufs, writes);
        } else {
            // Without IFF_VNET_HDR the device takes bare packets, one per write.
            writes.clear();
            writes.extend(0..count);
        }
        let mut result = Ok(());
        for &i in writes.iter() {
            let bytes = if vnet {
                bufs[i].with_vnet_header()
            } else {
                bufs[i].packet()
            };
            if let Err(e) = self.device.send(bytes).await {
                // One bad packet must not cost the rest of the batch.
                result = Err(e);
            }
        }
        result
    }
}
