//! Batches of inner IP packets in preallocated buffers, reused for the life of the data
//! plane, so moving a packet between the device and the core neither allocates nor zeroes
//! memory. The device itself (TUN, or an in-memory one in tests) is the shell's.

use crate::gro::VNET_HDR_LEN;

/// Bytes kept free in front of every packet. The TUN device with offload puts its
/// virtio-net header there; 16 keeps the IP header aligned.
pub const HEADROOM: usize = 16;
/// Packets in one batch (what one TSO super-packet splits into at most, at MTU 1280).
pub const BATCH_SIZE: usize = 128;
/// Room for one packet: the largest IP packet plus headroom on both sides, so that
/// [`crate::gro::coalesce`] can glue several segments into the first buffer of a run.
pub const PACKET_CAPACITY: usize = 65535 + 2 * HEADROOM;

/// One reusable packet buffer: `HEADROOM` free bytes, then the packet.
pub struct PacketBuf {
    storage: Box<[u8]>,
    /// Bytes in use, headroom included.
    len: usize,
}

impl std::fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketBuf")
            .field("packet_len", &self.packet().len())
            .finish()
    }
}

impl PacketBuf {
    fn new() -> Self {
        PacketBuf {
            storage: vec![0; PACKET_CAPACITY].into_boxed_slice(),
            len: HEADROOM,
        }
    }

    /// The packet (without headroom).
    pub fn packet(&self) -> &[u8] {
        &self.storage[HEADROOM..self.len]
    }

    /// The whole room after the headroom, for writing a packet into; follow with
    /// [`PacketBuf::set_packet_len`]. Old bytes are left in place: nothing is zeroed.
    pub fn room_mut(&mut self) -> &mut [u8] {
        &mut self.storage[HEADROOM..]
    }

    /// Marks the first `len` bytes of the room as the packet.
    pub fn set_packet_len(&mut self, len: usize) {
        self.len = (HEADROOM + len).min(self.storage.len());
    }

    /// The packet (without headroom), writable.
    pub(crate) fn packet_mut(&mut self) -> &mut [u8] {
        &mut self.storage[HEADROOM..self.len]
    }

    /// Appends `bytes` to the packet; false (and nothing appended) when they do not fit.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> bool {
        let Some(room) = self.storage.get_mut(self.len..self.len + bytes.len()) else {
            return false;
        };
        room.copy_from_slice(bytes);
        self.len += bytes.len();
        true
    }

    /// Writes a virtio-net header right in front of the packet (in the headroom).
    pub(crate) fn set_vnet_header(&mut self, header: [u8; VNET_HDR_LEN]) {
        self.storage[HEADROOM - VNET_HDR_LEN..HEADROOM].copy_from_slice(&header);
    }

    /// The virtio-net header followed by the packet: what one TUN write takes.
    pub fn with_vnet_header(&self) -> &[u8] {
        &self.storage[HEADROOM - VNET_HDR_LEN..self.len]
    }

    /// Makes the whole storage visible through `AsMut` (for a device that reads into it).
    pub fn expose_all(&mut self) {
        self.len = self.storage.len();
    }
}

impl AsRef<[u8]> for PacketBuf {
    fn as_ref(&self) -> &[u8] {
        &self.storage[..self.len]
    }
}

impl AsMut<[u8]> for PacketBuf {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.storage[..self.len]
    }
}

/// A batch of packets with its reusable buffers.
pub struct PacketBatch {
    bufs: Vec<PacketBuf>,
    sizes: Vec<usize>,
    count: usize,
    /// Where a device with offload reads the raw super-packet before splitting it.
    scratch: Box<[u8]>,
    /// Buffers to write after coalescing (reused, never reallocated).
    writes: Vec<usize>,
}

/// The insides of a [`PacketBatch`] a device reads into and writes from.
#[derive(Debug)]
pub struct DeviceIo<'a> {
    /// Every buffer of the batch (not only those holding packets).
    pub bufs: &'a mut [PacketBuf],
    /// Packet sizes a multi-packet read fills in, one per buffer.
    pub sizes: &'a mut [usize],
    /// Room for the raw super-packet of an offload read, before it is split.
    pub scratch: &'a mut [u8],
    /// Indexes of the buffers to write, in order (filled by [`crate::gro::coalesce`]).
    pub writes: &'a mut Vec<usize>,
}

impl std::fmt::Debug for PacketBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketBatch")
            .field("count", &self.count)
            .finish()
    }
}

impl Default for PacketBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketBatch {
    /// Allocates `BATCH_SIZE` buffers once.
    pub fn new() -> Self {
        PacketBatch {
            bufs: (0..BATCH_SIZE).map(|_| PacketBuf::new()).collect(),
            sizes: vec![0; BATCH_SIZE],
            count: 0,
            scratch: vec![0; PACKET_CAPACITY].into_boxed_slice(),
            writes: Vec::with_capacity(BATCH_SIZE),
        }
    }

    /// Number of packets in the batch.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the batch holds no packet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// True when no more packet fits.
    pub fn is_full(&self) -> bool {
        self.count == self.bufs.len()
    }

    /// Forgets all packets (the buffers stay allocated).
    pub fn clear(&mut self) {
        self.count = 0;
    }

    /// The packets in the batch, in order.
    pub fn packets(&self) -> impl Iterator<Item = &[u8]> {
        self.bufs[..self.count].iter().map(PacketBuf::packet)
    }

    /// The buffers holding the packets.
    pub fn bufs_mut(&mut self) -> &mut [PacketBuf] {
        &mut self.bufs[..self.count]
    }

    /// The next free buffer, or `None` when the batch is full. The packet counts only
    /// after [`PacketBatch::commit`].
    pub fn next_free(&mut self) -> Option<&mut PacketBuf> {
        self.bufs.get_mut(self.count)
    }

    /// Counts the buffer returned by `next_free` as holding a packet.
    pub fn commit(&mut self) {
        debug_assert!(self.count < self.bufs.len());
        self.count = (self.count + 1).min(self.bufs.len());
    }

    /// Appends a copy of `packet`; returns false when the batch is full or the packet
    /// does not fit in a buffer.
    pub fn push(&mut self, packet: &[u8]) -> bool {
        let Some(buf) = self.next_free() else {
            return false;
        };
        let Some(room) = buf.room_mut().get_mut(..packet.len()) else {
            return false;
        };
        room.copy_from_slice(packet);
        buf.set_packet_len(packet.len());
        self.commit();
        true
    }

    /// Every buffer, the sizes, the scratch room and the write list, for a device.
    pub fn device_io(&mut self) -> DeviceIo<'_> {
        DeviceIo {
            bufs: &mut self.bufs,
            sizes: &mut self.sizes,
            scratch: &mut self.scratch,
            writes: &mut self.writes,
        }
    }

    /// Sets the batch to the first `count` buffers with lengths from `sizes` (after a
    /// device read that filled `bufs` and `sizes`).
    pub fn set_from_sizes(&mut self, count: usize) {
        let count = count.min(self.bufs.len());
        for (buf, &size) in self.bufs[..count].iter_mut().zip(&self.sizes) {
            buf.set_packet_len(size);
        }
        self.count = count;
    }
}
