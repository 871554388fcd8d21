//! The exit's masquerade against a real kernel, in network namespaces (needs root): mesh
//! traffic leaving through the uplink carries the exit's address, forwarding is switched on
//! only while needed and restored, and meshd's nftables table goes away again.
//!
//! inside (10.9.0.2) --eth0/mesh0-- exit --wan0/wan0-- internet (203.0.113.2, 192.0.2.1 on lo)
//!
//! `mesh0`, a veth, stands in for the TUN. The Internet side has no route back to
//! 10.9.0.0/24, so only masqueraded connections can be answered.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use meshd::netlink::{ExitNat, Families};
use netns_tests::{Namespace, connect_veth, require_root};

// Only `with_netlink` is used here.
#[allow(dead_code)]
#[path = "netlink_support.rs"]
mod netlink_support;
use netlink_support::with_netlink;

const SERVER: &str = "192.0.2.1:8080";
const IPV4_FORWARDING: &str = "/proc/sys/net/ipv4/ip_forward";

/// A TCP connection from `inside` to the Internet host, within 2 s.
fn connect(inside: &Namespace) -> std::io::Result<TcpStream> {
    inside.run_in(|| {
        let server: SocketAddr = SERVER.parse().unwrap();
        TcpStream::connect_timeout(&server, Duration::from_secs(2))
    })
}

/// The source address of the connection that is waiting on `listener`.
fn accepted_peer(listener: &TcpListener) -> IpAddr {
    listener.set_nonblocking(false).unwrap();
    let (_stream, peer) = listener.accept().unwrap();
    peer.ip()
}

/// Nothing waits on `listener` (a connection that failed never reached the accept queue).
fn assert_nothing_accepted(listener: &TcpListener) {
    listener.set_nonblocking(true).unwrap();
    match listener.accept() {
        Err(error) if error.kind() == ErrorKind::WouldBlock => {}
        other => panic!("expected no connection, got {other:?}"),
    }
}

fn read_in(namespace: &Namespace, path: &'static str) -> String {
    namespace.run_in(move || std::fs::read_to_string(path).unwrap().trim().to_owned())
}

fn table_exists(namespace: &Namespace) -> bool {
    namespace.run_in(|| ExitNat::table_exists().unwrap())
}

fn install(exit: &Namespace) -> ExitNat {
    exit.run_in(|| {
        ExitNat::install("mesh0", &["wan0".to_owned()], Families::BOTH)
            .unwrap_or_else(|error| panic!("install: {error}"))
    })
}

#[test]
fn exit_masquerades_mesh_traffic_and_undoes_everything_at_remove() {
    if !require_root("exit_masquerades_mesh_traffic_and_undoes_everything_at_remove") {
        return;
    }
    let inside = Namespace::new("nat-inside");
    let exit = Namespace::new("nat-exit");
    let internet = Namespace::new("nat-internet");
    connect_veth(
        &inside,
        "eth0",
        &["10.9.0.2/24"],
        &exit,
        "mesh0",
        &["10.9.0.1/24"],
    );
    connect_veth(
        &exit,
        "wan0",
        &["203.0.113.1/30"],
        &internet,
        "wan0",
        &["203.0.113.2/30"],
    );
    inside.ip(&["route", "add", "default", "via", "10.9.0.1"]);
    exit.ip(&["route", "add", "default", "via", "203.0.113.2"]);
    internet.ip(&["addr", "add", "192.0.2.1/32", "dev", "lo"]);
    let listener = internet.run_in(|| TcpListener::bind(SERVER).unwrap());

    // The daemon finds the uplinks from the default routes when [exit] interfaces is empty.
    let defaults = with_netlink(&exit, async |netlink| {
        netlink.default_route_interfaces().await.unwrap()
    });
    assert_eq!(defaults, ["wan0"]);

    let forwarding_before = read_in(&exit, IPV4_FORWARDING);
    assert_eq!(forwarding_before, "0", "a new namespace does not forward");
    assert!(connect(&inside).is_err(), "no path before the NAT");

    let nat = install(&exit);
    assert!(table_exists(&exit));
    assert_eq!(read_in(&exit, IPV4_FORWARDING), "1");
    let stream = connect(&inside).expect("connects through the exit");
    assert_eq!(
        accepted_peer(&listener),
        "203.0.113.1".parse::<IpAddr>().unwrap(),
        "the Internet side sees the exit's uplink address"
    );
    drop(stream);

    exit.run_in(move || nat.remove()).expect("remove");
    assert!(!table_exists(&exit), "the table is gone");
    assert_eq!(read_in(&exit, IPV4_FORWARDING), forwarding_before);
    assert!(connect(&inside).is_err(), "no path after remove");
    assert_nothing_accepted(&listener);

    // Forwarding alone is not enough: without the masquerade the Internet side cannot answer.
    exit.set_sysctl("net/ipv4/ip_forward", "1");
    assert!(connect(&inside).is_err(), "unanswerable without the NAT");
    assert_nothing_accepted(&listener);

    // A run that crashed (its ExitNat never dropped) leaves the table; the next install
    // replaces it, and forwarding that was already on is left on at remove.
    std::mem::forget(install(&exit));
    assert!(table_exists(&exit));
    let nat = install(&exit);
    connect(&inside).expect("connects through the replaced table");
    assert_eq!(
        accepted_peer(&listener),
        "203.0.113.1".parse::<IpAddr>().unwrap()
    );
    exit.run_in(move || nat.remove()).expect("remove");
    assert!(!table_exists(&exit));
    assert_eq!(
        read_in(&exit, IPV4_FORWARDING),
        "1",
        "was on before: stays on"
    );

    // An exit approved for one family masquerades only that family (`meta nfproto`, which
    // nft must accept in the JSON form meshd sends).
    let only = |ipv4: bool| Families { ipv4, ipv6: !ipv4 };
    let nat = exit.run_in(move || {
        ExitNat::install("mesh0", &["wan0".to_owned()], only(false))
            .unwrap_or_else(|error| panic!("install for IPv6 only: {error}"))
    });
    assert!(connect(&inside).is_err(), "IPv4 is not masqueraded");
    assert_nothing_accepted(&listener);
    exit.run_in(move || nat.remove()).expect("remove");
    let nat = exit.run_in(move || {
        ExitNat::install("mesh0", &["wan0".to_owned()], only(true))
            .unwrap_or_else(|error| panic!("install for IPv4 only: {error}"))
    });
    connect(&inside).expect("IPv4 is masqueraded");
    assert_eq!(
        accepted_peer(&listener),
        "203.0.113.1".parse::<IpAddr>().unwrap()
    );
    exit.run_in(move || nat.remove()).expect("remove");
    assert!(!table_exists(&exit));
}
