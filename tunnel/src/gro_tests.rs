use super::*;
use crate::batch::PacketBatch;
use proptest::prelude::*;

/// A TCP/IPv4 segment 10.1.0.1:1000 -> 10.2.0.1:2000 with `payload`, a valid header
/// checksum and a timestamp option.
fn tcp4(seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let tcp_len = 32; // 20 + 12 bytes of options (NOP NOP timestamp)
    let total = 20 + tcp_len + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[6] = 0x40; // DF
    p[8] = 64;
    p[9] = IPPROTO_TCP;
    p[12..16].copy_from_slice(&[10, 1, 0, 1]);
    p[16..20].copy_from_slice(&[10, 2, 0, 1]);
    let ip_sum = !fold(sum_words(0, &p[..20]));
    p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
    let t = &mut p[20..];
    t[0..2].copy_from_slice(&1000u16.to_be_bytes());
    t[2..4].copy_from_slice(&2000u16.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&77u32.to_be_bytes());
    t[12] = (tcp_len as u8 / 4) << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&500u16.to_be_bytes());
    t[20..24].copy_from_slice(&[1, 1, 8, 10]);
    t[24..28].copy_from_slice(&1234u32.to_be_bytes());
    p[52..].copy_from_slice(payload);
    p
}

fn tcp6(seq: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40 + 20 + payload.len()];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    p[6] = IPPROTO_TCP;
    p[7] = 64;
    p[23] = 1;
    p[39] = 2;
    let t = &mut p[40..];
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = TCP_ACK;
    p[60..].copy_from_slice(payload);
    p
}

fn batch(packets: &[Vec<u8>]) -> PacketBatch {
    let mut b = PacketBatch::new();
    for p in packets {
        assert!(b.push(p));
    }
    b
}

/// (virtio header, packet) of every write.
fn written(b: &mut PacketBatch) -> Vec<([u8; VNET_HDR_LEN], Vec<u8>)> {
    let mut writes = Vec::new();
    coalesce(b.bufs_mut(), &mut writes);
    writes
        .iter()
        .map(|&i| {
            let bytes = b.bufs_mut()[i].with_vnet_header();
            (
                bytes[..VNET_HDR_LEN].try_into().unwrap(),
                bytes[VNET_HDR_LEN..].to_vec(),
            )
        })
        .collect()
}

#[test]
fn consecutive_segments_become_one_super_packet() {
    let seg = 100;
    let payloads: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; seg]).collect();
    let mut packets: Vec<Vec<u8>> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| tcp4(1000 + (i * seg) as u32, TCP_ACK, p))
        .collect();
    // The last one is shorter and pushes.
    packets.push(tcp4(1400, TCP_ACK | TCP_PSH, &[9; 30]));
    let mut b = batch(&packets);
    let out = written(&mut b);
    assert_eq!(out.len(), 1);
    let (hdr, packet) = &out[0];
    assert_eq!(hdr[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
    assert_eq!(hdr[1], VIRTIO_NET_HDR_GSO_TCPV4);
    assert_eq!(u16::from_le_bytes([hdr[2], hdr[3]]), 52); // headers
    assert_eq!(u16::from_le_bytes([hdr[4], hdr[5]]), seg as u16); // segment size
    assert_eq!(u16::from_le_bytes([hdr[6], hdr[7]]), 20); // checksum starts at TCP
    assert_eq!(u16::from_le_bytes([hdr[8], hdr[9]]), 16);
    assert_eq!(packet.len(), 52 + 4 * seg + 30);
    assert_eq!(
        usize::from(u16::from_be_bytes([packet[2], packet[3]])),
        packet.len()
    );
    // A valid IPv4 header checksum sums to 0xffff.
    assert_eq!(fold(sum_words(0, &packet[..20])), 0xffff);
    // PSH of the last segment carried over; first seq kept.
    assert_eq!(packet[33], TCP_ACK | TCP_PSH);
    assert_eq!(&packet[24..28], &1000u32.to_be_bytes());
    let mut expected_payload: Vec<u8> = payloads.concat();
    expected_payload.extend_from_slice(&[9; 30]);
    assert_eq!(&packet[52..], &expected_payload[..]);
    // The TCP checksum field is the pseudo-header sum the kernel completes.
    let pseudo = sum_words(
        u32::from(IPPROTO_TCP) + (packet.len() - 20) as u32,
        &packet[12..20],
    );
    assert_eq!(&packet[36..38], &fold(pseudo).to_be_bytes());
}

#[test]
fn ipv6_segments_coalesce() {
    let mut b = batch(&[tcp6(5, &[1; 50]), tcp6(55, &[2; 50]), tcp6(105, &[3; 10])]);
    let out = written(&mut b);
    assert_eq!(out.len(), 1);
    let (hdr, packet) = &out[0];
    assert_eq!(hdr[1], VIRTIO_NET_HDR_GSO_TCPV6);
    assert_eq!(packet.len(), 60 + 110);
    assert_eq!(u16::from_be_bytes([packet[4], packet[5]]), 20 + 110);
}

#[test]
fn gaps_other_flows_and_flags_split_runs() {
    let mut other_flow = tcp4(1100, TCP_ACK, &[0; 100]);
    other_flow[16..20].copy_from_slice(&[10, 2, 0, 9]);
    let packets = vec![
        tcp4(1000, TCP_ACK, &[0; 100]),
        tcp4(1200, TCP_ACK, &[0; 100]),        // gap: seq 1100 missing
        tcp4(1300, TCP_ACK | 0x01, &[0; 100]), // FIN
        other_flow,
        tcp4(1400, TCP_ACK, &[0; 100]),
        tcp4(1500, TCP_ACK, &[0; 100]),
    ];
    let mut b = batch(&packets);
    let out = written(&mut b);
    let shape: Vec<(u8, usize)> = out.iter().map(|(h, p)| (h[1], p.len())).collect();
    assert_eq!(
        shape,
        vec![
            (VIRTIO_NET_HDR_GSO_NONE, 152),
            (VIRTIO_NET_HDR_GSO_NONE, 152),
            (VIRTIO_NET_HDR_GSO_NONE, 152),
            (VIRTIO_NET_HDR_GSO_NONE, 152),
            (VIRTIO_NET_HDR_GSO_TCPV4, 252),
        ]
    );
    // Packets written alone are untouched.
    assert_eq!(out[0].1, packets[0]);
    assert_eq!(out[0].0, [0; VNET_HDR_LEN]);
}

#[test]
fn a_longer_segment_or_a_full_packet_ends_the_run() {
    let mut b = batch(&[tcp4(0, TCP_ACK, &[0; 100]), tcp4(100, TCP_ACK, &[0; 200])]);
    assert_eq!(written(&mut b).len(), 2);

    // 64 KiB is the most one write may carry.
    let seg = 1400;
    let packets: Vec<Vec<u8>> = (0..60u32)
        .map(|i| tcp4(i * seg as u32, TCP_ACK, &vec![0; seg]))
        .collect();
    let mut b = batch(&packets);
    let out = written(&mut b);
    assert!(out.iter().all(|(_, p)| p.len() <= MAX_IP_LEN));
    let payload: usize = out.iter().map(|(_, p)| p.len() - 52).sum();
    assert_eq!(payload, 60 * seg);
    assert_eq!(out.len(), 2);
}

#[test]
fn non_tcp_and_short_packets_pass_through() {
    let udp = {
        let mut p = tcp4(0, TCP_ACK, &[0; 10]);
        p[9] = 17;
        p
    };
    let mut b = batch(&[udp.clone(), vec![0x45; 3], vec![], udp.clone()]);
    let out = written(&mut b);
    assert_eq!(out.len(), 4);
    assert_eq!(out[0].1, udp);
    assert_eq!(out[1].1, vec![0x45; 3]);
}

proptest! {
    /// Any bytes: no panic, every input byte of a packet written alone is unchanged, and
    /// no write exceeds 64 KiB.
    #[test]
    fn arbitrary_packets_never_panic(packets in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 0..200), 0..20)) {
        let mut b = batch(&packets);
        let out = written(&mut b);
        prop_assert!(out.len() <= packets.len());
        for (_, p) in &out {
            prop_assert!(p.len() <= MAX_IP_LEN);
        }
    }

    /// Valid segments cut at random sizes always come back as the same byte stream.
    #[test]
    fn coalesced_payload_is_the_stream(sizes in proptest::collection::vec(1usize..1500, 1..40)) {
        let mut seq = 0u32;
        let mut stream = Vec::new();
        let packets: Vec<Vec<u8>> = sizes.iter().map(|&n| {
            let payload: Vec<u8> = (0..n).map(|i| (seq as usize + i) as u8).collect();
            stream.extend_from_slice(&payload);
            let p = tcp4(seq, TCP_ACK, &payload);
            seq += n as u32;
            p
        }).collect();
        let mut b = batch(&packets);
        let out = written(&mut b);
        let mut got = Vec::new();
        for (_, p) in &out {
            got.extend_from_slice(&p[52..]);
        }
        prop_assert_eq!(got, stream);
    }
}
