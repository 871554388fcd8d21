//! A neighbour as the speaker runs it ([`NeighborConfig`]), and its translation from a
//! `[[bgp.neighbor]]` of meshd.toml: defaults filled in, policies resolved by name, the TTL
//! chosen. meshd.toml itself was validated by mesh-config. Reading a `password_file` is I/O and
//! belongs to the caller, which hands the key in.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use mesh_config::{BgpFamily, BgpNeighbor, Config};
use zeroize::Zeroizing;

use crate::packet::Family;
use crate::policy::Policy;

pub const BGP_PORT: u16 = 179;

/// One neighbour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborConfig {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    pub remote_asn: u32,
    /// Source address for connections we open.
    pub local_address: Option<IpAddr>,
    pub passive: bool,
    pub import: Policy,
    pub export: Policy,
    /// RFC 4456 client of ours (iBGP only).
    pub rr_client: bool,
    /// Next hops to announce as "self" for each family; default: the session's local address
    /// for its own family.
    pub next_hop_v4: Option<Ipv4Addr>,
    pub next_hop_v6: Option<Ipv6Addr>,
    /// iBGP: which routes go out with our address as next hop (see [`NextHopSelf`]).
    pub next_hop_self: NextHopSelf,
    /// Send this neighbour nothing but default routes (0.0.0.0/0, ::/0, for the families the
    /// session carries) with this speaker as next hop, whatever the RIB holds: for a small
    /// router whose only way into the mesh is this speaker, which then needs one route, not
    /// the mesh's table. What it announces is received as usual.
    pub default_only: bool,
    pub hold_time: u16,
    pub connect_retry: Duration,
    pub families: Vec<Family>,
    /// RFC 2385 TCP-MD5 key, on the listening sockets for this neighbour's address and on the
    /// connections to it.
    pub md5_key: Option<Md5Key>,
    /// TTL (hop limit) of the session's packets; `None`: the system default. eBGP neighbours
    /// from meshd.toml get 1 unless `multihop` says otherwise.
    pub ttl: Option<u8>,
}

/// Which routes an iBGP session announces with this speaker's own address as next hop (on
/// eBGP sessions the next hop is always ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextHopSelf {
    /// Next hops pass unchanged (RFC 4271 for iBGP; an external iBGP router may want that).
    Never,
    /// Routes learnt from eBGP neighbours (and our own): the external router's address is
    /// one the other members cannot reach directly. The mesh's sessions set this.
    External,
    /// Every route, reflected ones too: for a router whose only route into the mesh is this
    /// speaker, such as a foreign router behind its core, which knows no other member's
    /// address.
    All,
}

/// An RFC 2385 TCP-MD5 key. Its bytes never appear in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Md5Key(Zeroizing<Vec<u8>>);

impl Md5Key {
    /// The longest key Linux takes (`TCP_MD5SIG_MAXKEYLEN`); RFC 2385 sets no limit.
    pub const MAX_LEN: usize = 80;

    /// `None` when `bytes` is empty or longer than [`Md5Key::MAX_LEN`].
    pub fn new(bytes: Vec<u8>) -> Option<Md5Key> {
        let len = bytes.len();
        let key = Md5Key(Zeroizing::new(bytes));
        (1..=Self::MAX_LEN).contains(&len).then_some(key)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Md5Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Md5Key(<{} bytes>)", self.0.len())
    }
}

impl NeighborConfig {
    /// The speaker's view of `n`, a `[[bgp.neighbor]]` of `config` (which names the policies it
    /// refers to and this node's AS). A `password_file` is read by `read_key_file` (given the
    /// neighbour's name and the path), whose error is passed through.
    pub fn from_config<E>(
        n: &BgpNeighbor,
        config: &Config,
        read_key_file: impl FnOnce(&str, &Path) -> Result<Md5Key, E>,
    ) -> Result<NeighborConfig, E> {
        let md5_key = match (&n.password_file, &n.password) {
            (Some(path), _) => Some(read_key_file(&n.name, path)?),
            // Validation already refused an empty or over-long inline password.
            (None, Some(password)) => Md5Key::new(password.as_bytes().to_vec()),
            (None, None) => None,
        };
        let external = n.remote_asn != config.routing.asn;
        Ok(NeighborConfig {
            name: n.name.clone(),
            address: n.address,
            port: n.port(),
            remote_asn: n.remote_asn,
            local_address: n.local_address,
            passive: n.passive,
            import: Policy::from_config(&n.import, &config.bgp),
            export: Policy::from_config(&n.export, &config.bgp),
            rr_client: false,
            next_hop_v4: None,
            next_hop_v6: None,
            next_hop_self: NextHopSelf::Never,
            default_only: false,
            hold_time: n.hold_time(),
            connect_retry: Duration::from_secs(u64::from(n.connect_retry())),
            families: n
                .families()
                .into_iter()
                .map(|f| match f {
                    BgpFamily::Ipv4 => Family::Ipv4Unicast,
                    BgpFamily::Ipv6 => Family::Ipv6Unicast,
                })
                .collect(),
            md5_key,
            // An external neighbour is directly connected unless said otherwise (RFC 4271 §5.1.3
            // assumes a shared subnet; BIRD and FRR send with TTL 1 too).
            ttl: if external {
                Some(n.multihop.unwrap_or(1))
            } else {
                n.multihop
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use mesh_config::Role;

    use super::*;

    fn config_with(neighbor: BgpNeighbor) -> Config {
        let mut config = Config::new("alpha", Role::Core);
        config.routing.asn = 65001;
        config.bgp.neighbors.push(neighbor);
        config
    }

    fn translate(n: &BgpNeighbor, config: &Config) -> NeighborConfig {
        let no_files = |_: &str, path: &Path| -> Result<Md5Key, Infallible> {
            panic!("no key file expected, asked for {}", path.display())
        };
        let Ok(c) = NeighborConfig::from_config(n, config, no_files);
        c
    }

    #[test]
    fn defaults_and_ttl() {
        let n = BgpNeighbor::new("peer", "198.51.100.2".parse().unwrap(), 65010);
        let config = config_with(n.clone());
        let c = translate(&n, &config);
        assert_eq!(c.port, BGP_PORT);
        assert_eq!(c.hold_time, 90);
        assert_eq!(c.connect_retry, Duration::from_secs(30));
        assert_eq!(c.families, Family::ALL.to_vec());
        assert_eq!(c.ttl, Some(1), "eBGP is single-hop by default");
        assert!(c.md5_key.is_none());
        assert_eq!(c.import, Policy::reject_all());

        let mut multi = n.clone();
        multi.multihop = Some(4);
        multi.families = Some(vec![BgpFamily::Ipv6]);
        let c = translate(&multi, &config);
        assert_eq!(c.ttl, Some(4));
        assert_eq!(c.families, vec![Family::Ipv6Unicast]);

        let internal = BgpNeighbor::new("rr", "198.51.100.3".parse().unwrap(), 65001);
        let c = translate(&internal, &config);
        assert_eq!(c.ttl, None, "iBGP keeps the system's TTL");
    }

    #[test]
    fn keys_inline_and_from_the_reader() {
        let mut inline = BgpNeighbor::new("peer", "198.51.100.2".parse().unwrap(), 65010);
        inline.password = Some("inline key".into());
        let config = config_with(inline.clone());
        let c = translate(&inline, &config);
        assert_eq!(c.md5_key.as_ref().unwrap().as_bytes(), b"inline key");
        assert_eq!(format!("{:?}", c.md5_key), "Some(Md5Key(<10 bytes>))");

        let mut filed = inline.clone();
        filed.password_file = Some("/etc/meshd/peer.key".into());
        let read = |name: &str, path: &Path| {
            assert_eq!((name, path), ("peer", Path::new("/etc/meshd/peer.key")));
            Md5Key::new(b"from file".to_vec()).ok_or("bad")
        };
        let c = NeighborConfig::from_config(&filed, &config, read).unwrap();
        assert_eq!(c.md5_key.unwrap().as_bytes(), b"from file", "the file wins");
        let refused = NeighborConfig::from_config(&filed, &config, |_, _| Err("unreadable"));
        assert_eq!(refused.unwrap_err(), "unreadable");
        assert!(Md5Key::new(vec![]).is_none());
        assert!(Md5Key::new(vec![b'x'; Md5Key::MAX_LEN + 1]).is_none());
    }
}
