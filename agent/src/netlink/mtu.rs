//! The MTU of the tunnel interface.
//!
//! A packet of `n` bytes on the TUN leaves as one UDP datagram of `n + 80` bytes in the worst
//! case, an IPv6 underlay: IPv6 header 40, UDP header 8, WireGuard data header 16 (type, receiver
//! index, counter) and Poly1305 tag 16. Sizing for the worst case means one MTU works whichever
//! underlay family a path uses and when a peer roams between them, at the price of 20 bytes on
//! IPv4 paths. WireGuard's padding to 16 bytes never pushes past this: the TUN MTU we compute is a
//! multiple of 16 when the underlay's is (1500 -> 1420).

/// Bytes added to every inner packet in the worst case (IPv6 underlay).
pub const ENCAPSULATION_OVERHEAD: u16 = 40 + 8 + 16 + 16;

/// The smallest MTU an IPv6-capable interface may have (RFC 8200); we never go below it so that
/// the overlay always carries IPv6.
pub const MIN_TUNNEL_MTU: u16 = 1280;

/// The underlay MTU assumed when nothing better is known: Ethernet.
pub const DEFAULT_UNDERLAY_MTU: u16 = 1500;

/// The tunnel MTU for an underlay of `underlay_mtu` bytes, or `None` if that underlay is too
/// small to carry a 1280-byte IPv6 packet once encapsulated.
pub fn tunnel_mtu(underlay_mtu: u16) -> Option<u16> {
    underlay_mtu
        .checked_sub(ENCAPSULATION_OVERHEAD)
        .filter(|mtu| *mtu >= MIN_TUNNEL_MTU)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethernet_underlay_gives_1420() {
        assert_eq!(tunnel_mtu(DEFAULT_UNDERLAY_MTU), Some(1420));
    }

    #[test]
    fn jumbo_underlay_gives_large_mtu() {
        assert_eq!(tunnel_mtu(9000), Some(8920));
    }

    #[test]
    fn too_small_underlay_is_refused() {
        assert_eq!(tunnel_mtu(1359), None);
        assert_eq!(tunnel_mtu(1360), Some(1280));
        assert_eq!(tunnel_mtu(40), None);
    }
}
