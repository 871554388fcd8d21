//! A DNS server for tests: dnsmasq (Debian dnsmasq-base) answering from a hosts file of the
//! test's, with a short TTL, on an address of the test's choosing (a 127.0.0.x address, or
//! one in a test namespace when started there). [`Dnsmasq::set_records`] rewrites the file and
//! sends SIGHUP, which makes dnsmasq re-read it: a record changes while the test runs.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use nix::sys::signal::Signal;

use crate::process::ChildGuard;

/// A running dnsmasq; killed, and its files removed, when dropped.
#[derive(Debug)]
pub struct Dnsmasq {
    guard: ChildGuard,
    directory: PathBuf,
    hosts: PathBuf,
}

impl Dnsmasq {
    /// Serves `records` (name, address) on UDP and TCP `listen`, with TTL `ttl` seconds;
    /// `namespace`: run inside that network namespace (`ip netns exec`). Answers nothing
    /// else (no upstream servers, not the system's hosts file).
    pub fn start(
        label: &str,
        listen: SocketAddr,
        ttl: u32,
        records: &[(&str, IpAddr)],
        namespace: Option<&str>,
    ) -> Dnsmasq {
        let directory =
            std::env::temp_dir().join(format!("meshd-dnsmasq-{}-{label}", std::process::id()));
        std::fs::create_dir_all(&directory).expect("create the dnsmasq directory");
        // dnsmasq re-reads the file after dropping privileges unless it runs as root.
        std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the dnsmasq directory");
        let hosts = directory.join("hosts");
        write_hosts(&hosts, records);
        let args = vec![
            "--keep-in-foreground".to_owned(),
            "--conf-file=/dev/null".to_owned(),
            "--no-resolv".to_owned(),
            "--no-hosts".to_owned(),
            format!("--addn-hosts={}", hosts.display()),
            format!("--listen-address={}", listen.ip()),
            format!("--port={}", listen.port()),
            "--bind-interfaces".to_owned(),
            format!("--local-ttl={ttl}"),
            "--pid-file".to_owned(),
            "--user=root".to_owned(),
            "--log-facility=-".to_owned(),
            "--log-queries".to_owned(),
        ];
        let mut full: Vec<String> = Vec::new();
        let program = match namespace {
            Some(namespace) => {
                full.extend(["netns", "exec", namespace, "dnsmasq"].map(str::to_owned));
                "ip"
            }
            None => "dnsmasq",
        };
        full.extend(args);
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        let guard = ChildGuard::spawn(&format!("dnsmasq-{label}"), program, &full, &[]);
        Dnsmasq {
            guard,
            directory,
            hosts,
        }
    }

    /// Replaces the records and makes dnsmasq re-read them (SIGHUP).
    pub fn set_records(&mut self, records: &[(&str, IpAddr)]) {
        write_hosts(&self.hosts, records);
        self.guard.signal(Signal::SIGHUP);
    }

    /// What dnsmasq logged (queries included).
    pub fn log(&self) -> String {
        self.guard.log().contents()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

fn write_hosts(path: &std::path::Path, records: &[(&str, IpAddr)]) {
    let text: String = records
        .iter()
        .map(|(name, address)| format!("{address} {name}\n"))
        .collect();
    std::fs::write(path, text).expect("write the dnsmasq hosts file");
}

/// `/etc/netns/NS/resolv.conf` naming `nameserver`: what `ip netns exec NS` shows a process
/// as `/etc/resolv.conf`. The directory is removed on drop, also when the test panics.
#[derive(Debug)]
pub struct NetnsResolvConf {
    directory: PathBuf,
}

impl NetnsResolvConf {
    /// Must be written before the process that reads it starts in `namespace`.
    pub fn write(namespace: &str, nameserver: IpAddr) -> NetnsResolvConf {
        let directory = PathBuf::from("/etc/netns").join(namespace);
        std::fs::create_dir_all(&directory).expect("create /etc/netns/NS");
        let guard = NetnsResolvConf { directory };
        std::fs::write(
            guard.directory.join("resolv.conf"),
            format!("nameserver {nameserver}\noptions timeout:1 attempts:1\n"),
        )
        .expect("write /etc/netns/NS/resolv.conf");
        guard
    }
}

impl Drop for NetnsResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}
