//! Helpers for the local API tests: a strict reader of wg-quick configuration files (what
//! the WireGuard apps import), so `meshd client add` output is checked field by field, and
//! a wireguard-go client set up from one.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;

use netns_tests::{Namespace, WgGoPeer, WgGoPeerConfig};

/// A parsed wg-quick file: the `[Interface]` keys and one map per `[Peer]`.
#[derive(Debug, Default)]
pub struct WgQuick {
    pub interface: BTreeMap<String, String>,
    pub peers: Vec<BTreeMap<String, String>>,
}

/// Keys wg-quick(8) and wg(8) accept, per section.
const INTERFACE_KEYS: &[&str] = &[
    "PrivateKey",
    "ListenPort",
    "FwMark",
    "Address",
    "DNS",
    "MTU",
    "Table",
    "PreUp",
    "PostUp",
    "PreDown",
    "PostDown",
    "SaveConfig",
];
const PEER_KEYS: &[&str] = &[
    "PublicKey",
    "PresharedKey",
    "AllowedIPs",
    "Endpoint",
    "PersistentKeepalive",
];

/// Parses `text` the way wg-quick does (comments after `#`, `Key = Value` lines in
/// sections), refusing unknown keys, repeated keys and lines outside a section.
pub fn parse_wg_quick(text: &str) -> Result<WgQuick, String> {
    let mut config = WgQuick::default();
    let mut section: Option<&str> = None;
    for (number, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match line {
            "[Interface]" => {
                if section.is_some() {
                    return Err(format!("line {}: [Interface] must come first", number + 1));
                }
                section = Some("Interface");
                continue;
            }
            "[Peer]" => {
                section = Some("Peer");
                config.peers.push(BTreeMap::new());
                continue;
            }
            _ => {}
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {}: not `Key = Value`: {raw:?}", number + 1))?;
        let (key, value) = (key.trim(), value.trim());
        let (map, allowed) = match section {
            Some("Interface") => (&mut config.interface, INTERFACE_KEYS),
            Some(_) => (config.peers.last_mut().expect("a peer section"), PEER_KEYS),
            None => return Err(format!("line {}: outside any section", number + 1)),
        };
        if !allowed.contains(&key) {
            return Err(format!("line {}: unknown key {key:?}", number + 1));
        }
        if map.insert(key.to_owned(), value.to_owned()).is_some() {
            return Err(format!("line {}: {key} given twice", number + 1));
        }
    }
    if config.interface.is_empty() {
        return Err("no [Interface] section".to_owned());
    }
    Ok(config)
}

/// Splits a comma-separated wg-quick list (`Address`, `AllowedIPs`).
pub fn list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|item| item.trim().to_owned())
        .collect()
}

/// wireguard-go in `namespace` configured from a client's wg-quick file, as a WireGuard app
/// would import it (needs root).
pub fn client_from(namespace: &Namespace, config: &WgQuick) -> WgGoPeer {
    let peer = &config.peers[0];
    let addresses = list(&config.interface["Address"]);
    let allowed = list(&peer["AllowedIPs"]);
    WgGoPeer::start(
        namespace,
        &WgGoPeerConfig {
            private_key: &config.interface["PrivateKey"],
            listen_port: 51821,
            addresses: &addresses.iter().map(String::as_str).collect::<Vec<_>>(),
            peer_public_key: &peer["PublicKey"],
            peer_endpoint: Some(&peer["Endpoint"]),
            peer_allowed_ips: &allowed.iter().map(String::as_str).collect::<Vec<_>>(),
        },
    )
}
