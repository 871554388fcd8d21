//! Coalescing decrypted TCP segments into one super-packet per TUN write (receive offload).
//!
//! The peer's kernel cut a 64 KiB TCP send into MTU-sized segments; we glue consecutive
//! segments of one flow back together and hand the kernel one packet with a virtio-net
//! header that says "TCP, segment size N, checksum still to do". One write then carries up
//! to 64 KiB, and the receiving TCP stack does its work once per super-packet.
//!
//! Why not tun-rs's `send_multiple`: it copies every packet into a fresh `Vec` before
//! looking at it and verifies each segment's TCP checksum, which cost about as much as the
//! rest of the receive path. Here each payload is copied once, into the head packet's
//! buffer, and segment checksums are not verified: the packets just passed
//! ChaCha20-Poly1305 authentication, which is the integrity check that matters (the kernel's
//! own WireGuard marks decrypted packets checksum-verified for the same reason).
//!
//! Only packets that follow each other in the batch are merged (what a GRO-received run of
//! datagrams from one peer looks like); anything unusual — IP options, fragments, IPv6
//! extension headers, SYN/FIN/RST/URG, different TCP options or window — is written alone.

use crate::batch::PacketBuf;

/// Size of the virtio-net header the TUN device expects in front of every packet.
pub const VNET_HDR_LEN: usize = 10;

const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_NONE: u8 = 0;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;
const IPPROTO_TCP: u8 = 6;
/// Offset of the checksum field in the TCP header.
const TCP_CSUM_OFFSET: u16 = 16;
/// TCP flags that may appear in the middle of a coalesced run: ACK only (PSH ends a run).
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
/// Largest IP packet the kernel accepts in one write.
const MAX_IP_LEN: usize = 65535;

/// What we need to know about a TCP segment to decide whether it continues a run.
#[derive(Debug, Clone, Copy)]
struct Segment {
    ipv6: bool,
    ip_header_len: usize,
    /// IP plus TCP header length.
    header_len: usize,
    payload_len: usize,
    seq: u32,
    flags: u8,
}

/// Parses `packet` as a plain TCP segment we are willing to coalesce.
fn tcp_segment(packet: &[u8]) -> Option<Segment> {
    let (ipv6, ip_header_len, total_len) = match packet.first()? >> 4 {
        4 => {
            let header = packet.get(..20)?;
            let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
            let fragment = u16::from_be_bytes([header[6], header[7]]);
            // IHL 5 (no options), TCP, not a fragment (only DF may be set).
            if header[0] != 0x45 || header[9] != IPPROTO_TCP || fragment & !0x4000 != 0 {
                return None;
            }
            (false, 20, total)
        }
        6 => {
            let header = packet.get(..40)?;
            let payload = usize::from(u16::from_be_bytes([header[4], header[5]]));
            // TCP right after the fixed header (no extension headers, no jumbograms).
            if header[6] != IPPROTO_TCP || payload == 0 {
                return None;
            }
            (true, 40, 40 + payload)
        }
        _ => return None,
    };
    if total_len != packet.len() {
        return None;
    }
    let tcp = packet.get(ip_header_len..ip_header_len + 20)?;
    let tcp_header_len = usize::from(tcp[12] >> 4) * 4;
    let header_len = ip_header_len + tcp_header_len;
    if tcp_header_len < 20 || header_len > packet.len() {
        return None;
    }
    Some(Segment {
        ipv6,
        ip_header_len,
        header_len,
        payload_len: packet.len() - header_len,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        flags: tcp[13],
    })
}

/// True when `next` may be appended to the run that starts with `head` (whose last
/// segment so far ends at `expected_seq`).
fn continues(head: &[u8], h: &Segment, next: &[u8], n: &Segment, expected_seq: u32) -> bool {
    if n.ipv6 != h.ipv6 || n.header_len != h.header_len || n.seq != expected_seq {
        return false;
    }
    // Only ACK (and PSH on the last one) in the middle of a stream of data.
    if h.flags != TCP_ACK || n.flags & !TCP_PSH != TCP_ACK {
        return false;
    }
    if n.payload_len == 0 || n.payload_len > h.payload_len {
        return false;
    }
    let same = |range: std::ops::Range<usize>| head.get(range.clone()) == next.get(range);
    let ip_same = if h.ipv6 {
        // Version/traffic class/flow label, next header + hop limit, addresses.
        same(0..4) && same(6..40)
    } else {
        // Version/IHL/TOS, flags, TTL/protocol, addresses.
        same(0..2) && same(6..10) && same(12..20)
    };
    let tcp = h.ip_header_len;
    // Ports, acknowledgement number, data offset, window, options; not seq, flags or checksum.
    ip_same
        && same(tcp..tcp + 4)
        && same(tcp + 8..tcp + 13)
        && same(tcp + 14..tcp + 16)
        && same(tcp + 20..h.header_len)
}

/// One's complement sum of `bytes` as big-endian 16-bit words, added to `sum`.
fn sum_words(mut sum: u32, bytes: &[u8]) -> u32 {
    let mut chunks = bytes.chunks_exact(2);
    for w in &mut chunks {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Rewrites the head packet of a coalesced run (now `packet`, all payloads appended) as a
/// super-packet: IP length fields, IPv4 header checksum, and the TCP checksum field set to
/// the pseudo-header sum the kernel completes (CHECKSUM_PARTIAL).
fn finish_super_packet(packet: &mut [u8], seg: &Segment) {
    let len = packet.len();
    let tcp_len = len - seg.ip_header_len;
    let pseudo = if seg.ipv6 {
        packet[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        sum_words(
            u32::from(IPPROTO_TCP) + tcp_len as u32,
            &packet[8..40], // source and destination
        )
    } else {
        packet[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        packet[10..12].fill(0);
        let header_sum = !fold(sum_words(0, &packet[..20]));
        packet[10..12].copy_from_slice(&header_sum.to_be_bytes());
        sum_words(
            u32::from(IPPROTO_TCP) + tcp_len as u32,
            &packet[12..20], // source and destination
        )
    };
    let csum_at = seg.ip_header_len + usize::from(TCP_CSUM_OFFSET);
    packet[csum_at..csum_at + 2].copy_from_slice(&fold(pseudo).to_be_bytes());
}

/// The virtio-net header of a plain packet (no offload asked for).
fn plain_header() -> [u8; VNET_HDR_LEN] {
    let mut hdr = [0u8; VNET_HDR_LEN];
    hdr[1] = VIRTIO_NET_HDR_GSO_NONE;
    hdr
}

/// The virtio-net header of a TCP super-packet made of `seg.payload_len`-byte segments.
fn gso_header(seg: &Segment) -> [u8; VNET_HDR_LEN] {
    let mut hdr = [0u8; VNET_HDR_LEN];
    hdr[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    hdr[1] = if seg.ipv6 {
        VIRTIO_NET_HDR_GSO_TCPV6
    } else {
        VIRTIO_NET_HDR_GSO_TCPV4
    };
    // The TUN device reads the header in native byte order (little-endian on Linux hosts
    // we run on; the kernel converts with virtio16_to_cpu for a legacy header).
    hdr[2..4].copy_from_slice(&(seg.header_len as u16).to_le_bytes());
    hdr[4..6].copy_from_slice(&(seg.payload_len as u16).to_le_bytes());
    hdr[6..8].copy_from_slice(&(seg.ip_header_len as u16).to_le_bytes());
    hdr[8..10].copy_from_slice(&TCP_CSUM_OFFSET.to_le_bytes());
    hdr
}

/// Coalesces the packets in `bufs` and records in `writes` the buffers to write, in
/// order. Every recorded buffer carries its virtio-net header in the headroom, so the
/// bytes to write are [`PacketBuf::with_vnet_header`]. Buffers merged into another are
/// left out.
pub fn coalesce(bufs: &mut [PacketBuf], writes: &mut Vec<usize>) {
    writes.clear();
    let mut i = 0;
    while i < bufs.len() {
        let Some(head_seg) = tcp_segment(bufs[i].packet()) else {
            bufs[i].set_vnet_header(plain_header());
            writes.push(i);
            i += 1;
            continue;
        };
        let mut expected = head_seg.seq.wrapping_add(head_seg.payload_len as u32);
        let mut count = 1;
        let mut push = false;
        let mut j = i + 1;
        while j < bufs.len() {
            let (left, right) = bufs.split_at_mut(j);
            let head = &mut left[i];
            let next = right[0].packet();
            let Some(next_seg) = tcp_segment(next) else {
                break;
            };
            if !continues(head.packet(), &head_seg, next, &next_seg, expected)
                || head.packet().len() + next_seg.payload_len > MAX_IP_LEN
                || !head.append(&next[next_seg.header_len..])
            {
                break;
            }
            expected = expected.wrapping_add(next_seg.payload_len as u32);
            count += 1;
            j += 1;
            // A shorter segment or PSH closes the run, as the sender's split would have.
            push = next_seg.flags & TCP_PSH != 0;
            if next_seg.payload_len < head_seg.payload_len || push {
                break;
            }
        }
        let head = &mut bufs[i];
        if count > 1 {
            if push {
                head.packet_mut()[head_seg.ip_header_len + 13] |= TCP_PSH;
            }
            finish_super_packet(head.packet_mut(), &head_seg);
            head.set_vnet_header(gso_header(&head_seg));
        } else {
            head.set_vnet_header(plain_header());
        }
        writes.push(i);
        i = j;
    }
}

#[cfg(test)]
#[path = "gro_tests.rs"]
mod tests;
