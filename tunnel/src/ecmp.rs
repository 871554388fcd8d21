//! Equal-cost multipath: which member of a next-hop group a packet goes to. Pure, and free
//! of allocation (it runs for every packet to a shared prefix).
//!
//! A packet's *flow* is its source and destination address, its protocol and, for TCP, UDP
//! and SCTP packets that are not fragments, its two ports. [`flow_hash`] folds those into 64
//! bits; [`choose`] picks the member by rendezvous (highest-random-weight) hashing: every
//! member gets a score from the flow hash and its own seed (from its public key), and the
//! highest score wins. Why this rule:
//!
//! - a flow always lands on the same member while the group stays the same, so its packets
//!   are never reordered across two tunnels (and a TCP connection to an anycast service
//!   stays with the one server that holds its state);
//! - when a member leaves, only the flows it had move (each to the runner-up of its own
//!   scores); every other flow's winner is still in the group and still wins. When a member
//!   joins, it takes only the flows it now wins, about 1/n of them. A modulo of the hash by
//!   the group size would move most flows at every change;
//! - the choice depends on the set of members, not on their order, nor on which of them BGP
//!   calls best, nor on peer table positions (seeds come from keys): the same on every
//!   rebuild of the peer table, and the same after a restart;
//! - groups are small (`[routing] max_paths`, 8 by default), so scoring every member costs a
//!   few multiplications; no table to rebuild, nothing to allocate.
//!
//! The hash has no secret key: a sender can choose its ports to pick an announcer, which it
//! could also do by addressing one directly; what it cannot do is move other senders' flows.
//! Fragments hash without ports (later fragments carry none), so all fragments of a packet,
//! and a flow that mixes fragments and whole packets, may part ways only between those two
//! kinds; IPv6 extension headers are not walked (such packets hash by addresses and the
//! first next-header value, still one answer per flow).

const TCP: u8 = 6;
const UDP: u8 = 17;
const SCTP: u8 = 132;

/// SplitMix64's finaliser: a bijection on `u64` that spreads every input bit over the output.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Folds `word` into the running hash `h`.
fn fold(h: u64, word: u64) -> u64 {
    mix(h.wrapping_add(0x9e37_79b9_7f4a_7c15) ^ word)
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u64::from(u32::from_be_bytes(b)))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// The ports of a TCP, UDP or SCTP header at `at` (all three start with them), as one word.
fn ports(packet: &[u8], protocol: u8, at: usize) -> u64 {
    match protocol {
        TCP | UDP | SCTP => u32_at(packet, at).unwrap_or(0),
        _ => 0,
    }
}

/// The hash of a packet's flow (see the module comment); 0 for what is no IP packet.
pub fn flow_hash(packet: &[u8]) -> u64 {
    let Some(&first) = packet.first() else {
        return 0;
    };
    match first >> 4 {
        4 => {
            let (Some(addresses), Some(&protocol)) = (u64_at(packet, 12), packet.get(9)) else {
                return 0;
            };
            let header_len = usize::from(first & 0x0f) * 4;
            // More-fragments flag or a fragment offset: a fragment.
            let fragment = packet
                .get(6..8)
                .is_none_or(|f| (u16::from_be_bytes([f[0], f[1]]) & 0x3fff) != 0);
            let ports = if fragment {
                0
            } else {
                ports(packet, protocol, header_len)
            };
            fold(fold(4, addresses), (u64::from(protocol) << 32) | ports)
        }
        6 => {
            let (Some(&next), Some(s0), Some(s1), Some(d0), Some(d1)) = (
                packet.get(6),
                u64_at(packet, 8),
                u64_at(packet, 16),
                u64_at(packet, 24),
                u64_at(packet, 32),
            ) else {
                return 0;
            };
            let h = fold(fold(fold(fold(6, s0), s1), d0), d1);
            fold(h, (u64::from(next) << 32) | ports(packet, next, 40))
        }
        _ => 0,
    }
}

/// A group member's seed, from its public key: what makes its scores its own.
pub fn member_seed(public_key: &[u8; 32]) -> u64 {
    let words = public_key
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default()));
    words.fold(0x6d65_7368_6400_0000, fold)
}

/// The position in `seeds` of the member the flow with hash `flow` goes to: the highest
/// score (ties, which take two equal seeds, go to the first); 0 for an empty group.
pub fn choose(flow: u64, seeds: &[u64]) -> usize {
    let mut best = (0, 0u64);
    for (i, &seed) in seeds.iter().enumerate() {
        let score = mix(flow ^ seed);
        if i == 0 || score > best.1 {
            best = (i, score);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[9] = UDP;
        p[12..16].copy_from_slice(&src);
        p[16..20].copy_from_slice(&dst);
        p[20..22].copy_from_slice(&sport.to_be_bytes());
        p[22..24].copy_from_slice(&dport.to_be_bytes());
        p
    }

    fn seeds(n: u8) -> Vec<u64> {
        (1..=n).map(|k| member_seed(&[k; 32])).collect()
    }

    #[test]
    fn the_flow_is_addresses_protocol_and_ports() {
        let a = udp4([10, 1, 0, 5], [203, 0, 113, 53], 40000, 53);
        assert_eq!(flow_hash(&a), flow_hash(&a.clone()), "deterministic");
        let mut payload = a.clone();
        payload.extend_from_slice(b"a different payload");
        assert_eq!(
            flow_hash(&a),
            flow_hash(&payload),
            "the payload is no part of it"
        );
        let other_port = udp4([10, 1, 0, 5], [203, 0, 113, 53], 40001, 53);
        assert_ne!(flow_hash(&a), flow_hash(&other_port));
        let other_src = udp4([10, 1, 0, 6], [203, 0, 113, 53], 40000, 53);
        assert_ne!(flow_hash(&a), flow_hash(&other_src));
        let mut tcp = a.clone();
        tcp[9] = TCP;
        assert_ne!(flow_hash(&a), flow_hash(&tcp), "the protocol counts");
        // ICMP has no ports: bytes where UDP has them do not count.
        let mut icmp = a.clone();
        icmp[9] = 1;
        let mut icmp2 = icmp.clone();
        icmp2[20] ^= 0xff;
        assert_eq!(flow_hash(&icmp), flow_hash(&icmp2));
        // A fragment hashes without ports, so every fragment of a packet goes one way.
        let mut first = a.clone();
        first[6] = 0x20; // more fragments
        let mut later = other_port.clone();
        later[6] = 0x00;
        later[7] = 0x10; // offset
        assert_eq!(flow_hash(&first), flow_hash(&later));
        // Options move the ports.
        let mut options = vec![0u8; 32];
        options[..20].copy_from_slice(&a[..20]);
        options[0] = 0x46;
        options[24..28].copy_from_slice(&a[20..24]);
        assert_eq!(flow_hash(&a), flow_hash(&options));
    }

    #[test]
    fn ipv6_flows_and_what_is_no_ip_packet() {
        let mut p = vec![0u8; 48];
        p[0] = 0x60;
        p[6] = TCP;
        p[23] = 1;
        p[39] = 2;
        p[40..44].copy_from_slice(&[0x9c, 0x40, 0, 80]);
        let mut q = p.clone();
        q[41] = 0x41;
        assert_ne!(flow_hash(&p), flow_hash(&q));
        let mut r = p.clone();
        r[47] = 0xff; // past the ports
        assert_eq!(flow_hash(&p), flow_hash(&r));
        for junk in [&[][..], &[0x45; 10][..], &[0x60; 30][..], &[0x50; 60][..]] {
            assert_eq!(flow_hash(junk), 0);
        }
    }

    #[test]
    fn the_choice_does_not_depend_on_the_members_order() {
        let mut s = seeds(5);
        let flows: Vec<u64> = (0..200u16)
            .map(|port| flow_hash(&udp4([10, 1, 0, 5], [203, 0, 113, 53], port, 53)))
            .collect();
        let before: Vec<u64> = flows.iter().map(|&f| s[choose(f, &s)]).collect();
        s.reverse();
        let after: Vec<u64> = flows.iter().map(|&f| s[choose(f, &s)]).collect();
        assert_eq!(before, after);
    }

    /// When a member leaves, only its flows move; when it comes back, only flows it wins
    /// move to it, and they are the ones it had.
    #[test]
    fn a_member_leaving_moves_only_its_own_flows() {
        let all = seeds(4);
        let flows: Vec<u64> = (0..4000u16)
            .map(|port| flow_hash(&udp4([10, 3, 0, 9], [203, 0, 113, 53], port, 443)))
            .collect();
        let winner = |group: &[u64], f: u64| group[choose(f, group)];
        for leaving in 0..all.len() {
            let mut rest = all.clone();
            let gone = rest.remove(leaving);
            let mut moved = 0;
            for &f in &flows {
                let (before, after) = (winner(&all, f), winner(&rest, f));
                if before == gone {
                    moved += 1;
                } else {
                    assert_eq!(before, after, "a flow of another member moved");
                }
            }
            // About a quarter of the flows were the leaving member's.
            assert!((800..1200).contains(&moved), "{moved} of 4000 moved");
        }
    }

    #[test]
    fn flows_spread_about_evenly() {
        for n in [2u8, 3, 8] {
            let group = seeds(n);
            let mut counts = vec![0u32; group.len()];
            for port in 0..8000u16 {
                let f = flow_hash(&udp4([10, 2, 0, 7], [203, 0, 113, 53], port, 53));
                counts[choose(f, &group)] += 1;
            }
            let even = 8000 / u32::from(n);
            for c in &counts {
                assert!(
                    c.abs_diff(even) * 10 < even * 2,
                    "{n} members: {counts:?} is not within 20% of {even} each"
                );
            }
        }
    }

    #[test]
    fn one_member_or_none() {
        assert_eq!(choose(12345, &[]), 0);
        assert_eq!(choose(12345, &seeds(1)), 0);
    }
}
