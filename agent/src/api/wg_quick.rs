//! The wg-quick configuration of a client device (what `meshd client add` prints), and its
//! rendering as a QR code for the phone apps, which import exactly this text.

use std::fmt::Write as _;

use boringtun::x25519::StaticSecret;
use ipnet::IpNet;
use qrcode::render::unicode::Dense1x2;
use qrcode::{EcLevel, QrCode};
use zeroize::Zeroizing;

use super::client_registry::ClientRecord;
use crate::state::encode_key;

/// How often the client sends a keepalive: under the 30 s or so after which common NAT
/// boxes forget an idle UDP mapping, so the node can reach a phone that is not talking.
pub const CLIENT_KEEPALIVE_SECONDS: u16 = 25;

/// Everything the client's configuration says.
pub struct ClientConfig<'a> {
    pub client: &'a ClientRecord,
    pub private_key: &'a StaticSecret,
    /// The node the client attaches to.
    pub node_name: &'a str,
    pub node_public_key: [u8; 32],
    /// `HOST:PORT` of the node, as configured.
    pub endpoint: String,
    /// What the client routes into the tunnel: see [`client_allowed_ips`].
    pub allowed_ips: Vec<IpNet>,
}

// Hand-written so that the private key never lands in a log.
impl std::fmt::Debug for ClientConfig<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("client", &self.client)
            .field("private_key", &"<redacted>")
            .field("node_name", &self.node_name)
            .field("endpoint", &self.endpoint)
            .field("allowed_ips", &self.allowed_ips)
            .finish()
    }
}

/// What a client routes into its tunnel: the mesh `pools`, then every approved LAN prefix
/// in `lans` (members' networks behind their routers) that the pools do not already cover.
/// Each prefix is truncated to its network, LANs inside another LAN are dropped, and the
/// LANs come in address order, so the same mesh always gives the same text.
pub fn client_allowed_ips(pools: &[IpNet], lans: impl IntoIterator<Item = IpNet>) -> Vec<IpNet> {
    let mut allowed: Vec<IpNet> = Vec::new();
    for pool in pools.iter().map(IpNet::trunc) {
        if !allowed.iter().any(|kept| kept.contains(&pool)) {
            allowed.retain(|kept| !pool.contains(kept));
            allowed.push(pool);
        }
    }
    let pool_count = allowed.len();
    let mut lans: Vec<IpNet> = lans.into_iter().map(|lan| lan.trunc()).collect();
    // Wider prefixes first, so a LAN inside another one is seen after the one covering it.
    lans.sort_by_key(|lan| (lan.prefix_len(), *lan));
    for lan in lans {
        if !allowed.iter().any(|kept| kept.contains(&lan)) {
            allowed.push(lan);
        }
    }
    allowed[pool_count..].sort();
    allowed
}

/// The configuration text. No `DNS` line: the mesh has no resolver of its own, and a DNS
/// line would make the client send all its queries into the tunnel.
pub fn render(config: &ClientConfig<'_>) -> Zeroizing<String> {
    let client = config.client;
    let mut text = Zeroizing::new(String::new());
    let allowed: Vec<String> = config.allowed_ips.iter().map(ToString::to_string).collect();
    // Writing to a String cannot fail.
    let _ = write!(
        text,
        "# meshd client {name:?} of node {node:?}\n\
         [Interface]\n\
         PrivateKey = {private}\n\
         Address = {ipv4}/32, {ipv6}/128\n\
         \n\
         [Peer]\n\
         # {node}\n\
         PublicKey = {public}\n\
         Endpoint = {endpoint}\n\
         AllowedIPs = {allowed}\n\
         PersistentKeepalive = {CLIENT_KEEPALIVE_SECONDS}\n",
        name = client.name,
        node = config.node_name,
        private = Zeroizing::new(encode_key(&config.private_key.to_bytes())).as_str(),
        ipv4 = client.ipv4,
        ipv6 = client.ipv6,
        public = encode_key(&config.node_public_key),
        endpoint = config.endpoint,
        allowed = allowed.join(", "),
    );
    text
}

/// `text` as a QR code drawn with Unicode half blocks (two modules per character cell), with
/// the quiet zone. The light modules are the drawn ones, so the code reads right on the
/// usual light-on-dark terminal. Error correction level L keeps it small enough for an
/// 80-column terminal: a screen is not a scratched sticker.
pub fn qr_code(text: &str) -> Result<Zeroizing<String>, qrcode::types::QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::L)?;
    Ok(Zeroizing::new(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_config::WireGuardKey;
    use time::OffsetDateTime;

    fn sample() -> (ClientRecord, StaticSecret) {
        let key = StaticSecret::from([9; 32]);
        let record = ClientRecord {
            name: "laptop".into(),
            public_key: WireGuardKey(*boringtun::x25519::PublicKey::from(&key).as_bytes()),
            ipv4: "10.1.0.2".parse().unwrap(),
            ipv6: "fd00:1:2:1:0:1:0:1".parse().unwrap(),
            created_at: OffsetDateTime::UNIX_EPOCH,
        };
        (record, key)
    }

    #[test]
    fn the_config_has_every_wg_quick_field() {
        let (record, key) = sample();
        let text = render(&ClientConfig {
            client: &record,
            private_key: &key,
            node_name: "alpha",
            node_public_key: [3; 32],
            endpoint: "vpn.example.net:51820".into(),
            allowed_ips: vec![
                "10.0.0.0/8".parse().unwrap(),
                "fd00:1:2::/48".parse().unwrap(),
            ],
        });
        let expected = format!(
            "# meshd client \"laptop\" of node \"alpha\"\n[Interface]\nPrivateKey = {}\n\
             Address = 10.1.0.2/32, fd00:1:2:1:0:1:0:1/128\n\n[Peer]\n# alpha\nPublicKey = {}\n\
             Endpoint = vpn.example.net:51820\nAllowedIPs = 10.0.0.0/8, fd00:1:2::/48\n\
             PersistentKeepalive = 25\n",
            encode_key(&[9; 32]),
            encode_key(&[3; 32])
        );
        assert_eq!(text.as_str(), expected);
        assert!(!text.contains("DNS"));
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn allowed_ips_are_the_pools_then_the_lans_outside_them() {
        let pools = nets(&["10.0.0.0/8", "fd00:1:2::/48"]);
        let lans = nets(&[
            "192.168.42.0/24",
            "10.7.0.0/16",     // inside pool4
            "fd00:1:2:9::/64", // inside pool6
            "172.16.0.0/12",
            "192.168.42.0/24", // the same LAN known twice (config and members.json)
            "172.16.5.0/24",   // inside another LAN
            "192.168.42.77/24", // host bits set: the same network
            "2001:db8:42::/48",
        ]);
        assert_eq!(
            client_allowed_ips(&pools, lans),
            nets(&[
                "10.0.0.0/8",
                "fd00:1:2::/48",
                "172.16.0.0/12",
                "192.168.42.0/24",
                "2001:db8:42::/48",
            ])
        );
    }

    #[test]
    fn allowed_ips_without_lans_are_the_pools() {
        let pools = nets(&["10.0.0.0/8", "fd00:1:2::/48"]);
        assert_eq!(client_allowed_ips(&pools, Vec::new()), pools);
    }

    #[test]
    fn a_lan_wider_than_a_later_one_keeps_only_the_wider() {
        let pools = nets(&["10.0.0.0/8"]);
        let lans = nets(&["192.168.42.0/24", "192.168.0.0/16", "192.168.42.128/25"]);
        assert_eq!(
            client_allowed_ips(&pools, lans),
            nets(&["10.0.0.0/8", "192.168.0.0/16"])
        );
    }

    #[test]
    fn the_qr_code_is_square_and_uses_half_blocks() {
        let code = qr_code("[Interface]\nPrivateKey = x\n").unwrap();
        let lines: Vec<&str> = code.lines().collect();
        let width = lines[0].chars().count();
        // Two modules per line: the rows are half the width (rounded up).
        assert_eq!(lines.len(), width.div_ceil(2));
        assert!(lines.iter().all(|l| l.chars().count() == width));
        assert!(code.contains('█') || code.contains('▀') || code.contains('▄'));
    }
}
