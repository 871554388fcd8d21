//! The UDP side: per address family one socket per worker (`SO_REUSEPORT`, one group per
//! family: the kernel gives each remote address and port one socket of the group, so a
//! peer's datagrams stay on one worker and in order), with large buffers, GSO and GRO
//! (through quinn-udp, which also does recvmmsg-style batching and ECN safely). The
//! sockets are non-blocking; the workers wait in `poll` with the stop signal.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;
use std::time::Duration;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use rustix::event::PollFlags;
use socket2::{Domain, Protocol, Socket, Type};

use super::device::Stop;
use super::error::DataplaneError;

/// Socket buffer size we ask for; the kernel caps it at net.core.{r,w}mem_max.
const SOCKET_BUFFER_BYTES: usize = 8 << 20;
/// Datagram buffers per receive call; each holds up to 64 GRO-coalesced datagrams.
pub const RECV_SLOTS: usize = 16;
/// Size of one receive buffer (the largest GRO super-datagram).
pub const RECV_BUFFER_BYTES: usize = 65536;

/// A bound UDP socket.
pub struct UdpPort {
    socket: std::net::UdpSocket,
    state: UdpSocketState,
    local: SocketAddr,
    /// Bound to the wildcard address: it can send from any local address (IP_PKTINFO /
    /// IPV6_PKTINFO), which is how one path leaves by one ISP and another by the other.
    any_source: bool,
}

impl std::fmt::Debug for UdpPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpPort")
            .field("local", &self.local)
            .finish()
    }
}

impl UdpPort {
    /// Binds `addr` (an IPv6 socket is IPv6-only: IPv4 has its own socket), with firewall
    /// mark `fwmark` if given; `reuse_port` puts it in a `SO_REUSEPORT` group with the
    /// other sockets of this user on the same address.
    pub fn bind(
        addr: SocketAddr,
        fwmark: Option<u32>,
        reuse_port: bool,
    ) -> Result<Self, DataplaneError> {
        let err = |source: io::Error| DataplaneError::Socket { addr, source };
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
            .map_err(err)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true).map_err(err)?;
        }
        socket.set_nonblocking(true).map_err(err)?;
        if reuse_port {
            socket.set_reuse_port(true).map_err(err)?;
        }
        // Best effort: a smaller buffer only costs throughput, so failure is not fatal.
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
        if let Some(mark) = fwmark {
            // Without the mark the exit rules send the tunnels' own packets into the exit
            // table, that is into the tunnels; still, a node that cannot mark (no
            // CAP_NET_ADMIN) keeps working where the exit table is empty, so it goes on.
            if let Err(error) = socket.set_mark(mark) {
                tracing::warn!(%addr, mark = format_args!("{mark:#x}"), %error,
                    "cannot mark the tunnel socket; with an exit in use its packets may loop into the mesh");
            }
        }
        socket.bind(&addr.into()).map_err(err)?;
        let std_socket: std::net::UdpSocket = socket.into();
        let state = UdpSocketState::new((&std_socket).into()).map_err(err)?;
        let local = std_socket.local_addr().map_err(err)?;
        Ok(UdpPort {
            socket: std_socket,
            state,
            local,
            any_source: addr.ip().is_unspecified(),
        })
    }

    /// The address the socket is bound to (with the actual port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Most datagrams one GSO send may carry on this socket (1 without GSO).
    pub fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Waits for datagrams; fills `bufs`/`meta` and returns how many slots were used, or
    /// `None` once `stop` is raised.
    pub fn recv(
        &self,
        bufs: &mut [Box<[u8]>; RECV_SLOTS],
        meta: &mut [RecvMeta; RECV_SLOTS],
        stop: &Stop,
    ) -> io::Result<Option<usize>> {
        loop {
            let mut slots = bufs.iter_mut();
            let mut iovs: [IoSliceMut<'_>; RECV_SLOTS] = std::array::from_fn(|_| {
                IoSliceMut::new(slots.next().expect("one buffer per slot"))
            });
            match self.state.recv((&self.socket).into(), &mut iovs, meta) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !stop.wait(self.socket.as_fd(), PollFlags::IN, None)? {
                        return Ok(None);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return result.map(Some),
            }
        }
    }

    /// Sends one datagram, or a GSO run of `segment_size`-sized datagrams, to `dst`, from
    /// the local address `src` (`None`, or a socket bound to one address: the kernel's
    /// choice). While the socket buffer is full it waits, at most `wait` (`None`: until
    /// there is room or `stop`); then the datagrams are dropped (`WouldBlock`).
    pub fn send(
        &self,
        dst: SocketAddr,
        src: Option<IpAddr>,
        contents: &[u8],
        segment_size: Option<usize>,
        stop: &Stop,
        wait: Option<Duration>,
    ) -> io::Result<()> {
        let transmit = Transmit {
            destination: dst,
            ecn: None,
            contents,
            segment_size,
            src_ip: src.filter(|_| self.any_source),
        };
        loop {
            match self.state.try_send((&self.socket).into(), &transmit) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !stop.wait(self.socket.as_fd(), PollFlags::OUT, wait)? {
                        return Err(e);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return result,
            }
        }
    }
}

/// The wildcard addresses used when no bind address is configured.
pub fn wildcard_addresses() -> [IpAddr; 2] {
    [Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()]
}

/// `::ffff:a.b.c.d` as plain IPv4, so peers are matched by one spelling of their address.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}
