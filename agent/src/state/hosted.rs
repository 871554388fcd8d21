//! Foreign routers this node stands in for (`meshd router add`): for each, the certificate the
//! CA issued to the router and the TLS key pair behind it, which this core holds because the
//! router runs no meshd. `routers/NAME/node.crt` and `routers/NAME/node.key` (0600), in a 0700
//! directory; the router's WireGuard key is in its certificate, its private half never here.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::StateDir;
use super::atomic::{Overwrite, PUBLIC_FILE_MODE, ensure_private_dir, write_atomic};
use super::error::StateError;
use super::keys;

/// What tells a person a hosted router's files are missing.
const NOT_HOSTED: &str = "this node stands in for no router of that name (`meshd router add`)";

/// The files of one hosted router, read.
#[derive(Debug, Clone)]
pub struct HostedFiles {
    pub name: String,
    /// Its certificate (PEM).
    pub certificate_pem: String,
    /// The TLS key pair (PEM) the certificate was issued for, with which this node signs the
    /// router's membership records.
    pub key_pem: Zeroizing<String>,
}

impl StateDir {
    /// `routers/`: one directory per foreign router this node stands in for.
    pub fn hosted_dir(&self) -> PathBuf {
        self.root.join("routers")
    }

    fn hosted_router_dir(&self, name: &str) -> PathBuf {
        self.hosted_dir().join(name)
    }

    /// The certificate path of hosted router `name`.
    pub fn hosted_cert_path(&self, name: &str) -> PathBuf {
        self.hosted_router_dir(name).join("node.crt")
    }

    /// The key path of hosted router `name`.
    pub fn hosted_key_path(&self, name: &str) -> PathBuf {
        self.hosted_router_dir(name).join("node.key")
    }

    /// Stores a newly admitted router: key first (refusing to replace one), then the
    /// certificate, whose presence means "admitted".
    pub fn write_hosted(
        &self,
        name: &str,
        certificate_pem: &str,
        key_pem: &str,
    ) -> Result<(), StateError> {
        ensure_private_dir(&self.hosted_dir())?;
        ensure_private_dir(&self.hosted_router_dir(name))?;
        keys::write_pem_key(&self.hosted_key_path(name), key_pem)?;
        write_atomic(
            &self.hosted_cert_path(name),
            certificate_pem.as_bytes(),
            PUBLIC_FILE_MODE,
            Overwrite::Refuse,
        )
    }

    /// Replaces a hosted router's certificate (after a renewal for the same key).
    pub fn replace_hosted_certificate(
        &self,
        name: &str,
        certificate_pem: &str,
    ) -> Result<(), StateError> {
        write_atomic(
            &self.hosted_cert_path(name),
            certificate_pem.as_bytes(),
            PUBLIC_FILE_MODE,
            Overwrite::Replace,
        )
    }

    /// Whether anything exists for `name` under `routers/`.
    pub fn is_hosted(&self, name: &str) -> bool {
        self.hosted_router_dir(name).exists()
    }

    /// Every hosted router, by name. A directory without a certificate (an admission that
    /// failed halfway) or with an unreadable file is an error naming it: the router would
    /// otherwise silently drop out of the mesh.
    pub fn read_hosted(&self) -> Result<Vec<HostedFiles>, StateError> {
        let dir = self.hosted_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StateError::Read { path: dir, source }),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| StateError::Read {
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // An atomic write's temporary file never lives here (only inside each router's
            // directory), so everything else is a router or a mistake worth naming.
            if mesh_config::names::check_node_name(&name).is_err() {
                return Err(StateError::Corrupt {
                    path: entry.path(),
                    reason: "not a router's directory (its name is no node name)".to_owned(),
                });
            }
            names.push(name);
        }
        names.sort();
        names
            .into_iter()
            .map(|name| self.read_one_hosted(&name))
            .collect()
    }

    /// One hosted router's files.
    pub fn read_one_hosted(&self, name: &str) -> Result<HostedFiles, StateError> {
        let cert_path = self.hosted_cert_path(name);
        let certificate_pem = read_text(&cert_path)?;
        let key_pem = keys::read_pem_key(&self.hosted_key_path(name), NOT_HOSTED)?;
        Ok(HostedFiles {
            name: name.to_owned(),
            certificate_pem,
            key_pem,
        })
    }

    /// Forgets hosted router `name` (after its revocation): its files and directory.
    pub fn remove_hosted(&self, name: &str) -> Result<(), StateError> {
        let dir = self.hosted_router_dir(name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Write { path: dir, source }),
        }
    }
}

fn read_text(path: &Path) -> Result<String, StateError> {
    let bytes =
        std::fs::read(path).map_err(|source| keys::missing_or_read(path, source, NOT_HOSTED))?;
    String::from_utf8(bytes).map_err(|_| StateError::Corrupt {
        path: path.to_path_buf(),
        reason: "not UTF-8 text, expected a PEM certificate".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn hosted_routers_are_stored_private_and_listed_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        state.create().unwrap();
        assert!(state.read_hosted().unwrap().is_empty());
        let key =
            |k: &str| format!("-----BEGIN PRIVATE KEY-----\n{k}\n-----END PRIVATE KEY-----\n");
        state.write_hosted("mikro", "CERT-M", &key("M")).unwrap();
        state.write_hosted("bird", "CERT-B", &key("B")).unwrap();
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(state.hosted_key_path("mikro")), 0o600);
        assert_eq!(mode(state.hosted_dir()), 0o700);
        let all = state.read_hosted().unwrap();
        let names: Vec<&str> = all.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["bird", "mikro"]);
        assert_eq!(all[1].certificate_pem, "CERT-M");
        assert_eq!(all[1].key_pem.as_str(), key("M"));

        // A second admission under the same name never replaces the key.
        let again = state
            .write_hosted("mikro", "CERT-2", &key("2"))
            .unwrap_err();
        assert!(matches!(again, StateError::AlreadyExists { .. }), "{again}");

        // Half an admission is reported, not skipped.
        std::fs::remove_file(state.hosted_cert_path("bird")).unwrap();
        let error = state.read_hosted().unwrap_err().to_string();
        assert!(
            error.contains("routers/bird/node.crt does not exist"),
            "{error}"
        );

        state.remove_hosted("bird").unwrap();
        assert_eq!(state.read_hosted().unwrap().len(), 1);
    }
}
