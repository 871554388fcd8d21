//! Valid IP packets for tests: ICMP echo requests over IPv4 and ICMPv6 echo over IPv6.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Internet checksum (RFC 1071) over `data`, starting from `initial`.
fn checksum(initial: u32, data: &[u8]) -> u16 {
    let mut sum = initial;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 ICMP echo request from `src` to `dst` with `id`/`seq` and `payload`.
pub fn icmp4_echo(src: Ipv4Addr, dst: Ipv4Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64; // TTL
    p[9] = 1; // ICMP
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let header_sum = checksum(0, &p[..20]);
    p[10..12].copy_from_slice(&header_sum.to_be_bytes());
    let icmp = &mut p[20..];
    icmp[0] = 8; // echo request
    icmp[4..6].copy_from_slice(&id.to_be_bytes());
    icmp[6..8].copy_from_slice(&seq.to_be_bytes());
    icmp[8..].copy_from_slice(payload);
    let icmp_sum = checksum(0, icmp);
    icmp[2..4].copy_from_slice(&icmp_sum.to_be_bytes());
    p
}

/// An IPv6 ICMPv6 echo request from `src` to `dst`.
pub fn icmp6_echo(src: Ipv6Addr, dst: Ipv6Addr, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let icmp_len = 8 + payload.len();
    let mut p = vec![0u8; 40 + icmp_len];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&(icmp_len as u16).to_be_bytes());
    p[6] = 58; // ICMPv6
    p[7] = 64; // hop limit
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    {
        let icmp = &mut p[40..];
        icmp[0] = 128; // echo request
        icmp[4..6].copy_from_slice(&id.to_be_bytes());
        icmp[6..8].copy_from_slice(&seq.to_be_bytes());
        icmp[8..].copy_from_slice(payload);
    }
    // The ICMPv6 checksum covers a pseudo-header: addresses, length, next header.
    let mut pseudo = Vec::with_capacity(40 + icmp_len);
    pseudo.extend_from_slice(&p[8..40]);
    pseudo.extend_from_slice(&(icmp_len as u32).to_be_bytes());
    pseudo.extend_from_slice(&[0, 0, 0, 58]);
    pseudo.extend_from_slice(&p[40..]);
    let sum = checksum(0, &pseudo);
    p[42..44].copy_from_slice(&sum.to_be_bytes());
    p
}

/// The echo reply a host would send to `request` (addresses swapped, type changed).
pub fn echo_reply(request: &[u8]) -> Vec<u8> {
    let mut p = request.to_vec();
    match p[0] >> 4 {
        4 => {
            let (src, dst) = (request[12..16].to_vec(), request[16..20].to_vec());
            p[12..16].copy_from_slice(&dst);
            p[16..20].copy_from_slice(&src);
            p[20] = 0;
            p[22..24].fill(0);
            let sum = checksum(0, &p[20..]);
            p[22..24].copy_from_slice(&sum.to_be_bytes());
        }
        _ => {
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&request[8..24]).unwrap());
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&request[24..40]).unwrap());
            let id = u16::from_be_bytes([request[44], request[45]]);
            let seq = u16::from_be_bytes([request[46], request[47]]);
            p = icmp6_echo(dst, src, id, seq, &request[48..]);
            p[40] = 129;
            p[42..44].fill(0);
            let mut pseudo = Vec::new();
            pseudo.extend_from_slice(&p[8..40]);
            pseudo.extend_from_slice(&((p.len() - 40) as u32).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, 58]);
            pseudo.extend_from_slice(&p[40..]);
            let sum = checksum(0, &pseudo);
            p[42..44].copy_from_slice(&sum.to_be_bytes());
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies() {
        let p = icmp4_echo([10, 1, 0, 1].into(), [10, 2, 0, 1].into(), 7, 1, b"abc");
        assert_eq!(checksum(0, &p[..20]), 0);
        assert_eq!(checksum(0, &p[20..]), 0);
        let r = echo_reply(&p);
        assert_eq!(&r[12..16], &[10, 2, 0, 1]);
        assert_eq!(checksum(0, &r[20..]), 0);
    }
}
