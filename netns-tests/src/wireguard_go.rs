//! A reference WireGuard peer: Debian's wireguard-go, configured with `wg` and `ip`.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::meshd::{MeshdNode, MeshdPeer};
use crate::namespace::{Namespace, underlay_pair};
use crate::process::ChildGuard;
use crate::wait::wait_until;

/// Runs `wg genkey` and returns the base64 private key.
pub fn wg_genkey() -> String {
    let output = Command::new("wg")
        .arg("genkey")
        .output()
        .expect("run `wg genkey` (wireguard-tools)");
    assert!(output.status.success(), "`wg genkey` failed: {output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Runs `wg pubkey` on `private_key` and returns the base64 public key.
pub fn wg_pubkey(private_key: &str) -> String {
    let mut child = Command::new("wg")
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run `wg pubkey` (wireguard-tools)");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(format!("{private_key}\n").as_bytes())
        .expect("write to `wg pubkey`");
    let output = child.wait_with_output().expect("wait for `wg pubkey`");
    assert!(output.status.success(), "`wg pubkey` failed: {output:?}");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// How to set up a wireguard-go peer.
#[derive(Debug, Clone)]
pub struct WgGoPeerConfig<'a> {
    /// Base64 private key (from [`wg_genkey`]).
    pub private_key: &'a str,
    /// UDP listen port.
    pub listen_port: u16,
    /// Overlay addresses with prefix length, e.g. `10.2.0.1/16`.
    pub addresses: &'a [&'a str],
    /// The one peer: base64 public key.
    pub peer_public_key: &'a str,
    /// The peer's endpoint (`198.51.100.1:51820`, `[2001:db8::1]:51820`), if known.
    pub peer_endpoint: Option<&'a str>,
    /// Prefixes routed to and accepted from the peer.
    pub peer_allowed_ips: &'a [&'a str],
}

/// A running wireguard-go peer; stops with its guard (and its namespace).
#[derive(Debug)]
pub struct WgGoPeer {
    /// The wireguard-go process.
    pub process: ChildGuard,
    /// Interface name inside the namespace.
    pub interface: String,
}

impl WgGoPeer {
    /// Starts wireguard-go in `namespace`, configures it with `wg set`, puts the addresses on
    /// the interface, routes the peer's allowed IPs to it and brings it up. Panics on failure.
    ///
    /// The interface gets a name unique on the host (`wg<pid>x<n>`): wireguard-go's control
    /// socket lives in `/var/run/wireguard/<name>.sock`, which all namespaces share.
    pub fn start(namespace: &Namespace, config: &WgGoPeerConfig<'_>) -> WgGoPeer {
        static NEXT_INTERFACE: AtomicU32 = AtomicU32::new(0);
        let interface = format!(
            "wg{}x{}",
            std::process::id() % 1_000_000,
            NEXT_INTERFACE.fetch_add(1, Ordering::Relaxed)
        );
        let interface = interface.as_str();
        let process = namespace.spawn(
            &format!("wireguard-go-{}", interface),
            "wireguard-go",
            &["-f", interface],
            // wireguard-go refuses to run on Linux without this acknowledgement.
            &[("WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD", "1")],
        );
        let appeared = wait_until(Duration::from_secs(5), || {
            namespace.exec("ip", &["link", "show", interface]).is_ok()
                && namespace.exec("wg", &["show", interface]).is_ok()
        });
        assert!(
            appeared,
            "wireguard-go did not create {} within 5 s; its log:\n{}",
            interface,
            process.log().contents()
        );
        let key_path = process.log().path().with_extension("key");
        std::fs::write(&key_path, config.private_key).expect("write the wireguard-go private key");
        let port = config.listen_port.to_string();
        let allowed = config.peer_allowed_ips.join(",");
        let mut args = vec![
            "set",
            interface,
            "listen-port",
            &port,
            "private-key",
            key_path.to_str().expect("temp paths are UTF-8"),
            "peer",
            config.peer_public_key,
            "allowed-ips",
            &allowed,
        ];
        if let Some(endpoint) = config.peer_endpoint {
            args.extend_from_slice(&["endpoint", endpoint]);
        }
        let result = namespace.exec("wg", &args);
        let _ = std::fs::remove_file(&key_path);
        if let Err(error) = result {
            panic!("configuring wireguard-go failed: {error}");
        }
        for address in config.addresses {
            namespace.ip(&["addr", "add", address, "dev", interface]);
        }
        namespace.ip(&["link", "set", interface, "mtu", "1420", "up"]);
        for prefix in config.peer_allowed_ips {
            namespace.ip(&["route", "replace", prefix, "dev", interface]);
        }
        WgGoPeer {
            process,
            interface: interface.to_owned(),
        }
    }

    /// Seconds since the Unix epoch of the latest handshake with the peer, `None` before the
    /// first one.
    pub fn latest_handshake(&self, namespace: &Namespace) -> Option<u64> {
        let output = namespace.exec_ok("wg", &["show", &self.interface, "latest-handshakes"]);
        output
            .split_whitespace()
            .nth(1)
            .and_then(|seconds| seconds.parse::<u64>().ok())
            .filter(|seconds| *seconds > 0)
    }
}

/// meshd (`alpha`, 10.1.0.1/16, `198.51.100.1:51820`) in one namespace and wireguard-go
/// (`wggo`, 10.2.0.1/16, `198.51.100.2:51821`) in the other, on an [`underlay_pair`], each
/// configured with the other and running.
#[derive(Debug)]
pub struct Interop {
    pub ns_meshd: Namespace,
    pub ns_wg: Namespace,
    pub meshd: MeshdNode,
    pub wg: WgGoPeer,
}

impl Interop {
    /// Starts both, `binary` being meshd. Unless `meshd_knows_key`, meshd is configured with
    /// another key for `wggo`, so their handshakes fail.
    pub fn start(binary: &std::path::Path, label: &str, meshd_knows_key: bool) -> Interop {
        let (ns_meshd, ns_wg) = underlay_pair(label);
        let wg_key = wg_genkey();
        let wg_public = wg_pubkey(&wg_key);
        let mut meshd =
            MeshdNode::with_addresses(binary, "alpha", "198.51.100.1:51820", &["10.1.0.1/16"]);
        let configured_key = if meshd_knows_key {
            wg_public.clone()
        } else {
            wg_pubkey(&wg_genkey())
        };
        meshd.add_peer(&MeshdPeer {
            name: "wggo",
            public_key: &configured_key,
            endpoints: &["198.51.100.2:51821"],
            allowed_prefixes: &["10.2.0.0/16"],
            persistent_keepalive: None,
        });
        meshd.start(&ns_meshd);
        let wg = WgGoPeer::start(
            &ns_wg,
            &WgGoPeerConfig {
                private_key: &wg_key,
                listen_port: 51821,
                addresses: &["10.2.0.1/16"],
                peer_public_key: &meshd.public_key,
                peer_endpoint: Some("198.51.100.1:51820"),
                peer_allowed_ips: &["10.1.0.0/16"],
            },
        );
        Interop {
            ns_meshd,
            ns_wg,
            meshd,
            wg,
        }
    }
}
