//! A `[[bgp.neighbor]]` from meshd.toml turned into the speaker's [`NeighborConfig`]: defaults
//! filled in, policies resolved by name, the TCP-MD5 key read from its file, the TTL chosen.
//! meshd.toml itself was validated by mesh-config; what is checked here is what only the
//! running system can tell (the key file).

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mesh_config::{BgpFamily, BgpNeighbor, Config};
use zeroize::Zeroizing;

use super::packet::Family;
use super::policy::Policy;
use super::speaker::NeighborConfig;

/// An RFC 2385 TCP-MD5 key. Its bytes never appear in logs or debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Md5Key(Zeroizing<Vec<u8>>);

impl Md5Key {
    /// `None` when `bytes` is empty or longer than the kernel takes.
    pub fn new(bytes: Vec<u8>) -> Option<Md5Key> {
        let len = bytes.len();
        let key = Md5Key(Zeroizing::new(bytes));
        (1..=tcp_md5sig::MAX_KEY_LEN).contains(&len).then_some(key)
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

/// Why a neighbour's configuration cannot be used as it stands.
#[derive(Debug, thiserror::Error)]
pub enum NeighborConfigError {
    #[error("BGP neighbour {neighbor:?}: cannot read password_file {}: {source}", path.display())]
    ReadKey {
        neighbor: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "BGP neighbour {neighbor:?}: password_file {} has mode {mode:04o}, readable by others; \
         make it readable by its owner only (chmod 600 {})",
        path.display(),
        path.display()
    )]
    KeyPermissions {
        neighbor: String,
        path: PathBuf,
        mode: u32,
    },
    #[error(
        "BGP neighbour {neighbor:?}: password_file {} holds {len} bytes; a TCP-MD5 key has \
         1 to {max} bytes (one trailing newline is ignored)",
        path.display(),
        max = tcp_md5sig::MAX_KEY_LEN
    )]
    KeyLength {
        neighbor: String,
        path: PathBuf,
        len: usize,
    },
}

impl NeighborConfig {
    /// The speaker's view of `n`, a `[[bgp.neighbor]]` of `config` (which names the policies it
    /// refers to and this node's AS). Reads the neighbour's `password_file` if it has one.
    pub fn from_config(
        n: &BgpNeighbor,
        config: &Config,
    ) -> Result<NeighborConfig, NeighborConfigError> {
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
            next_hop_self: false,
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

/// Reads a key file: owner-only permissions, one trailing newline ignored, 1 to 80 bytes.
fn read_key_file(neighbor: &str, path: &Path) -> Result<Md5Key, NeighborConfigError> {
    let read_error = |source| NeighborConfigError::ReadKey {
        neighbor: neighbor.to_owned(),
        path: path.to_owned(),
        source,
    };
    let mode = std::fs::metadata(path)
        .map_err(read_error)?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        return Err(NeighborConfigError::KeyPermissions {
            neighbor: neighbor.to_owned(),
            path: path.to_owned(),
            mode,
        });
    }
    let mut bytes = Zeroizing::new(std::fs::read(path).map_err(read_error)?);
    for ending in [&b"\r\n"[..], b"\n"] {
        if bytes.ends_with(ending) {
            let len = bytes.len() - ending.len();
            bytes.truncate(len);
            break;
        }
    }
    let len = bytes.len();
    Md5Key::new(bytes.to_vec()).ok_or_else(|| NeighborConfigError::KeyLength {
        neighbor: neighbor.to_owned(),
        path: path.to_owned(),
        len,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use mesh_config::Role;

    use super::*;

    fn config_with(neighbor: BgpNeighbor) -> Config {
        let mut config = Config::new("alpha", Role::Core);
        config.routing.asn = 65001;
        config.bgp.neighbors.push(neighbor);
        config
    }

    fn key_file(dir: &Path, contents: &[u8], mode: u32) -> PathBuf {
        let path = dir.join("bgp-peer.key");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn defaults_and_ttl() {
        let n = BgpNeighbor::new("peer", "198.51.100.2".parse().unwrap(), 65010);
        let config = config_with(n.clone());
        let c = NeighborConfig::from_config(&n, &config).unwrap();
        assert_eq!(c.port, 179);
        assert_eq!(c.hold_time, 90);
        assert_eq!(c.connect_retry, Duration::from_secs(30));
        assert_eq!(c.families, Family::ALL.to_vec());
        assert_eq!(c.ttl, Some(1), "eBGP is single-hop by default");
        assert!(c.md5_key.is_none());
        assert_eq!(c.import, Policy::reject_all());

        let mut multi = n.clone();
        multi.multihop = Some(4);
        multi.families = Some(vec![BgpFamily::Ipv6]);
        let c = NeighborConfig::from_config(&multi, &config).unwrap();
        assert_eq!(c.ttl, Some(4));
        assert_eq!(c.families, vec![Family::Ipv6Unicast]);

        let internal = BgpNeighbor::new("rr", "198.51.100.3".parse().unwrap(), 65001);
        let c = NeighborConfig::from_config(&internal, &config).unwrap();
        assert_eq!(c.ttl, None, "iBGP keeps the system's TTL");
    }

    #[test]
    fn key_from_file_and_inline() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = BgpNeighbor::new("peer", "198.51.100.2".parse().unwrap(), 65010);
        n.password_file = Some(key_file(dir.path(), b"s3cret\n", 0o600));
        let config = config_with(n.clone());
        let c = NeighborConfig::from_config(&n, &config).unwrap();
        assert_eq!(c.md5_key.as_ref().unwrap().as_bytes(), b"s3cret");
        assert_eq!(format!("{:?}", c.md5_key), "Some(Md5Key(<6 bytes>))");

        let mut inline = BgpNeighbor::new("peer", "198.51.100.2".parse().unwrap(), 65010);
        inline.password = Some("inline key".into());
        let c = NeighborConfig::from_config(&inline, &config).unwrap();
        assert_eq!(c.md5_key.unwrap().as_bytes(), b"inline key");
    }

    #[test]
    fn bad_key_files_are_reported_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = BgpNeighbor::new("peer", "198.51.100.2".parse().unwrap(), 65010);
        let config = config_with(n.clone());
        let err = |n: &BgpNeighbor| {
            NeighborConfig::from_config(n, &config)
                .unwrap_err()
                .to_string()
        };

        let path = key_file(dir.path(), b"s3cret", 0o644);
        n.password_file = Some(path.clone());
        assert_eq!(
            err(&n),
            format!(
                "BGP neighbour \"peer\": password_file {0} has mode 0644, readable by others; \
                 make it readable by its owner only (chmod 600 {0})",
                path.display()
            )
        );

        key_file(dir.path(), b"\n", 0o600);
        assert!(err(&n).contains("holds 0 bytes"), "{}", err(&n));
        key_file(dir.path(), &[b'x'; 81], 0o600);
        assert!(err(&n).contains("holds 81 bytes"), "{}", err(&n));

        n.password_file = Some(dir.path().join("missing.key"));
        assert!(
            err(&n).starts_with("BGP neighbour \"peer\": cannot read password_file "),
            "{}",
            err(&n)
        );
    }
}
