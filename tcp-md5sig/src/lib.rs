//! RFC 2385 TCP-MD5 signatures on Linux: sets or removes the key for one peer address on a TCP
//! socket with the `TCP_MD5SIG` socket option. A key set on a listening socket covers the
//! connections it accepts from that address; a key set before `connect` covers that connection.
//!
//! Why this crate exists: neither nix, socket2 nor rustix exposes `TCP_MD5SIG`, and libc only
//! has the constants. Everything here is safe Rust except one `setsockopt` call in
//! [`setsockopt_bytes`], which hands the kernel a pointer to a byte buffer and its exact length.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// Linux `TCP_MD5SIG_MAXKEYLEN`.
pub const MAX_KEY_LEN: usize = 80;

/// `sizeof(struct sockaddr_storage)`, the first field of `struct tcp_md5sig`.
const SOCKADDR_STORAGE_LEN: usize = 128;
/// `sizeof(struct tcp_md5sig)`: address, flags (1), prefix length (1), key length (2),
/// interface index (4), key.
const TCP_MD5SIG_LEN: usize = SOCKADDR_STORAGE_LEN + 8 + MAX_KEY_LEN;

/// Sets `key` for connections between `socket` and `peer` (any port). An empty key removes it.
pub fn set_key(socket: &impl AsFd, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a TCP-MD5 key is at most {MAX_KEY_LEN} bytes, this one has {}",
                key.len()
            ),
        ));
    }
    let fd = socket.as_fd();
    // An IPv6 socket (a dual-stack listener) sees IPv4 peers as ::ffff:a.b.c.d; the kernel
    // matches keys by the socket's own address family.
    let socket_is_v6 = socket2::SockRef::from(&fd).local_addr()?.is_ipv6();
    let record = encode(peer, key, socket_is_v6);
    setsockopt_bytes(fd, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &record)
}

/// Removes the key for `peer` from `socket`.
pub fn clear_key(socket: &impl AsFd, peer: IpAddr) -> io::Result<()> {
    set_key(socket, peer, &[])
}

/// `struct tcp_md5sig` for `peer` and `key`, in the machine's byte order where the kernel
/// expects it (the address family) and network order where the wire does (port, address).
fn encode(peer: IpAddr, key: &[u8], socket_is_v6: bool) -> [u8; TCP_MD5SIG_LEN] {
    let mut out = [0u8; TCP_MD5SIG_LEN];
    let peer = match peer {
        IpAddr::V4(v4) if socket_is_v6 => IpAddr::V6(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) if !socket_is_v6 => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        _ => peer,
    };
    match peer {
        IpAddr::V4(v4) => {
            // struct sockaddr_in: family, port (0), address.
            out[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            out[4..8].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            // struct sockaddr_in6: family, port (0), flow info (0), address, scope id (0).
            out[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            out[8..24].copy_from_slice(&v6.octets());
        }
    }
    let key_len_at = SOCKADDR_STORAGE_LEN + 2;
    out[key_len_at..key_len_at + 2].copy_from_slice(&(key.len() as u16).to_ne_bytes());
    let key_at = SOCKADDR_STORAGE_LEN + 8;
    out[key_at..key_at + key.len()].copy_from_slice(key);
    out
}

/// `setsockopt(fd, level, name, value, len(value))`.
#[allow(unsafe_code)]
fn setsockopt_bytes(fd: BorrowedFd<'_>, level: i32, name: i32, value: &[u8]) -> io::Result<()> {
    let len = libc::socklen_t::try_from(value.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "option value too long"))?;
    // SAFETY: `fd` is a live descriptor for the duration of the borrow, and the kernel reads at
    // most `len` bytes from `value`, which is exactly the slice's length. The kernel copies the
    // value before returning and keeps no pointer to it.
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, value.as_ptr().cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};

    #[test]
    fn layout_matches_the_kernel_struct() {
        assert_eq!(TCP_MD5SIG_LEN, 216);
        let r = encode(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)), b"secret", false);
        assert_eq!(u16::from_ne_bytes([r[0], r[1]]), libc::AF_INET as u16);
        assert_eq!(&r[4..8], &[198, 51, 100, 2]);
        assert_eq!(u16::from_ne_bytes([r[130], r[131]]), 6);
        assert_eq!(&r[136..142], b"secret");
        assert!(r[142..].iter().all(|b| *b == 0));

        let mapped = encode(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2)), b"k", true);
        assert_eq!(
            u16::from_ne_bytes([mapped[0], mapped[1]]),
            libc::AF_INET6 as u16
        );
        assert_eq!(
            &mapped[8..24],
            &Ipv4Addr::new(198, 51, 100, 2).to_ipv6_mapped().octets()
        );
    }

    #[test]
    fn the_kernel_takes_and_removes_a_key() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer: IpAddr = "127.0.0.2".parse().unwrap();
        set_key(&listener, peer, b"correct horse").unwrap();
        clear_key(&listener, peer).unwrap();
        let too_long = [b'x'; MAX_KEY_LEN + 1];
        let err = set_key(&listener, peer, &too_long).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn matching_keys_connect_and_a_missing_one_does_not() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        set_key(&listener, addr.ip(), b"k1").unwrap();
        // Same key on the client: the handshake completes.
        let client =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        set_key(&client, addr.ip(), b"k1").unwrap();
        client.connect(&addr.into()).unwrap();
        let (_accepted, _) = listener.accept().unwrap();
        // No key on the client: the listener drops its unsigned SYNs, the connect times out.
        let unsigned =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let result = unsigned.connect_timeout(&addr.into(), std::time::Duration::from_millis(300));
        assert!(result.is_err(), "an unsigned connection got through");
    }
}
