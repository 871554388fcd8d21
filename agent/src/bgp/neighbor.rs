//! The I/O half of a `[[bgp.neighbor]]`'s translation: its `password_file` read from disk and
//! checked (owner-only permissions, a key length the kernel takes). The rest of the translation
//! is the engine's ([`NeighborConfig::from_config`]).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use mesh_config::{BgpNeighbor, Config};
use meshd_bgp::neighbor::{Md5Key, NeighborConfig};
use zeroize::Zeroizing;

// The engine checks key lengths against the limit of the socket option that carries them.
const _: () = assert!(Md5Key::MAX_LEN == tcp_md5sig::MAX_KEY_LEN);

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
        max = Md5Key::MAX_LEN
    )]
    KeyLength {
        neighbor: String,
        path: PathBuf,
        len: usize,
    },
}

/// The speaker's view of `n`, a `[[bgp.neighbor]]` of `config`, with its `password_file` read.
pub fn load(n: &BgpNeighbor, config: &Config) -> Result<NeighborConfig, NeighborConfigError> {
    NeighborConfig::from_config(n, config, read_key_file)
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
    fn key_from_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = BgpNeighbor::new("peer", "198.51.100.2".parse().unwrap(), 65010);
        n.password_file = Some(key_file(dir.path(), b"s3cret\n", 0o600));
        let config = config_with(n.clone());
        let c = load(&n, &config).unwrap();
        assert_eq!(c.md5_key.as_ref().unwrap().as_bytes(), b"s3cret");
        assert_eq!(format!("{:?}", c.md5_key), "Some(Md5Key(<6 bytes>))");
    }

    #[test]
    fn bad_key_files_are_reported_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = BgpNeighbor::new("peer", "198.51.100.2".parse().unwrap(), 65010);
        let config = config_with(n.clone());
        let err = |n: &BgpNeighbor| load(n, &config).unwrap_err().to_string();

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
