//! The node's state directory (default `/var/lib/meshd`): keys, certificates, the node record
//! and, on the CA holder, the CA and its database.
//!
//! Rules every write here follows (see docs/architecture.md, "State directory"):
//! directories are 0700, files are written atomically (temp file with the final mode, fsync,
//! rename, fsync of the directory), private keys are 0600 from creation and never replaced,
//! JSON files carry a format version, and a file that is unreadable or corrupt is an error
//! naming it — it is never silently reset.

mod atomic;
pub mod ca_backup;
mod ca_db;
pub mod ca_merge;
pub mod ca_registry;
pub mod check;
mod error;
mod hosted;
mod keys;
mod lock;
mod node_record;
mod versioned;

use std::path::{Path, PathBuf};

use boringtun::x25519::StaticSecret;

pub use atomic::{
    Overwrite, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, PUBLIC_FILE_MODE, ensure_private_dir,
    remove_durably, write_atomic,
};
pub use ca_db::{CA_DB_VERSION, CaDatabase, CancelError, CertificateRecord, Standby};
pub use error::{Remedy, StateError};
pub use hosted::HostedFiles;
pub use keys::{decode_key, encode_key, generate_wireguard_key, wireguard_public_key_base64};
pub use lock::StateLock;
pub use node_record::{NODE_RECORD_VERSION, NodeRecord};
pub use versioned::{decode as decode_json, read_json, write_json};

/// Format version of `members.json`, the members the control plane learnt (its store,
/// crate::control::store, writes it; the start-up check reads it).
pub const MEMBERS_VERSION: u32 = 1;

/// Where the state lives unless `--state-dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/meshd";

/// What to tell a person whose node has no state yet.
const NOT_INITIALISED: &str =
    "this node has no mesh identity yet: run `meshd init` (first node) or `meshd join TOKEN`";
/// What to tell a person who runs a CA command on a node that is not the CA holder.
const NOT_CA_HOLDER: &str =
    "this node does not hold the mesh CA: run this command on the node where `meshd init` was run";

/// How long a command waits for another one to release the state directory.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// The state directory of one node. Cheap to construct; touches the disk only when asked.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state directory at `root` (not created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `wireguard.key`: the node's WireGuard private key (base64).
    pub fn wireguard_key_path(&self) -> PathBuf {
        self.root.join("wireguard.key")
    }

    /// `node.key`: the node's TLS/certificate key (PKCS#8 PEM).
    pub fn node_key_path(&self) -> PathBuf {
        self.root.join("node.key")
    }

    /// `node.crt`: the node's certificate, issued by the mesh CA.
    pub fn node_cert_path(&self) -> PathBuf {
        self.root.join("node.crt")
    }

    /// `node.json`: the node's name, role and allocation.
    pub fn node_record_path(&self) -> PathBuf {
        self.root.join("node.json")
    }

    /// `ca/`: the mesh CA, only on the CA holder.
    pub fn ca_dir(&self) -> PathBuf {
        self.root.join("ca")
    }

    /// `ca/ca.key`: the CA's private key (PEM).
    pub fn ca_key_path(&self) -> PathBuf {
        self.ca_dir().join("ca.key")
    }

    /// `ca/ca.crt`: the CA certificate (PEM).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.ca_dir().join("ca.crt")
    }

    /// `ca/db.json`: the CA database (allocator, issued certificates, invitations, ...).
    pub fn ca_db_path(&self) -> PathBuf {
        self.ca_dir().join("db.json")
    }

    /// `members.json`: the last membership records this node learnt (see control::store).
    pub fn members_path(&self) -> PathBuf {
        self.root.join("members.json")
    }

    /// `crl.der`: the newest revocation list (see control::store).
    pub fn crl_path(&self) -> PathBuf {
        self.root.join("crl.der")
    }

    /// `clients.json`: the end-user devices of this node (see api::client_registry).
    pub fn clients_path(&self) -> PathBuf {
        self.root.join("clients.json")
    }

    /// `lock`: the file `flock`ed by commands that change the state directory.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("lock")
    }

    /// Creates the state directory (0700) if needed; refuses an existing one that other users
    /// can read.
    pub fn create(&self) -> Result<(), StateError> {
        atomic::ensure_private_dir(&self.root)
    }

    /// Creates `ca/` (0700) if needed.
    pub fn create_ca_dir(&self) -> Result<(), StateError> {
        atomic::ensure_private_dir(&self.ca_dir())
    }

    /// Takes the lock that serialises changes to this state directory, waiting a few seconds
    /// if another command holds it. The directory must exist.
    pub fn lock(&self) -> Result<StateLock, StateError> {
        if !self.root.is_dir() {
            return Err(StateError::Missing {
                path: self.root.clone(),
                hint: NOT_INITIALISED,
            });
        }
        StateLock::acquire(&self.lock_path(), LOCK_PATIENCE)
    }

    /// True if this node holds the mesh CA and is its active holder: its database exists and
    /// is not a standby's ([`StateDir::ca_standby`]). A database that cannot be read counts as
    /// the holder's, so that whoever reads it next reports the damage.
    pub fn is_ca_holder(&self) -> bool {
        self.has_ca_copy() && self.ca_standby().is_none()
    }

    /// True if this node keeps a copy of the CA, active or standby (its database exists).
    pub fn has_ca_copy(&self) -> bool {
        self.ca_db_path().exists()
    }

    /// Set when this node's copy of the CA is a standby: it admits and renews nothing.
    pub fn ca_standby(&self) -> Option<Standby> {
        if !self.has_ca_copy() {
            return None;
        }
        self.read_ca_db().ok().and_then(|db| db.standby)
    }

    /// Writes a new WireGuard private key; refuses to replace an existing one.
    pub fn write_wireguard_key(&self, secret: &StaticSecret) -> Result<(), StateError> {
        keys::write_wireguard_key(&self.wireguard_key_path(), secret)
    }

    /// Reads the node's WireGuard private key.
    pub fn read_wireguard_key(&self) -> Result<StaticSecret, StateError> {
        keys::read_wireguard_key(&self.wireguard_key_path(), NOT_INITIALISED)
    }

    /// Writes a new private key in PEM form (node.key, ca/ca.key); refuses to replace one.
    pub fn write_pem_key(&self, path: &Path, pem: &str) -> Result<(), StateError> {
        keys::write_pem_key(path, pem)
    }

    /// Reads the node's TLS key (PEM).
    pub fn read_node_key(&self) -> Result<zeroize::Zeroizing<String>, StateError> {
        keys::read_pem_key(&self.node_key_path(), NOT_INITIALISED)
    }

    /// Reads the CA private key (PEM).
    pub fn read_ca_key(&self) -> Result<zeroize::Zeroizing<String>, StateError> {
        keys::read_pem_key(&self.ca_key_path(), NOT_CA_HOLDER)
    }

    /// Writes a certificate (PEM, not secret) atomically.
    pub fn write_certificate(
        &self,
        path: &Path,
        pem: &str,
        overwrite: Overwrite,
    ) -> Result<(), StateError> {
        atomic::write_atomic(path, pem.as_bytes(), PUBLIC_FILE_MODE, overwrite)
    }

    /// Reads `node.json`.
    pub fn read_node_record(&self) -> Result<NodeRecord, StateError> {
        read_json(
            &self.node_record_path(),
            NODE_RECORD_VERSION,
            NOT_INITIALISED,
        )
    }

    /// Writes `node.json` (replacing it: it is updated when the node's allocation changes).
    pub fn write_node_record(&self, record: &NodeRecord) -> Result<(), StateError> {
        write_json(
            &self.node_record_path(),
            NODE_RECORD_VERSION,
            record,
            PUBLIC_FILE_MODE,
            Overwrite::Replace,
        )
    }

    /// Reads `ca/db.json`.
    pub fn read_ca_db(&self) -> Result<CaDatabase, StateError> {
        read_json(&self.ca_db_path(), CA_DB_VERSION, NOT_CA_HOLDER)
    }

    /// Writes `ca/db.json`. Callers hold [`StateDir::lock`] from the read to this write, so no
    /// concurrent change is lost.
    pub fn write_ca_db(&self, db: &CaDatabase) -> Result<(), StateError> {
        write_json(
            &self.ca_db_path(),
            CA_DB_VERSION,
            db,
            PRIVATE_FILE_MODE,
            Overwrite::Replace,
        )
    }

    /// Reads a certificate file (PEM) as text.
    pub fn read_certificate(&self, path: &Path) -> Result<String, StateError> {
        let hint = if path.starts_with(self.ca_dir()) {
            NOT_CA_HOLDER
        } else {
            NOT_INITIALISED
        };
        let bytes =
            std::fs::read(path).map_err(|source| keys::missing_or_read(path, source, hint))?;
        String::from_utf8(bytes).map_err(|_| StateError::Corrupt {
            path: path.to_path_buf(),
            reason: "not UTF-8 text, expected a PEM certificate".to_owned(),
        })
    }
}

/// Reads the node's WireGuard private key from the state directory `dir` (for the daemon).
pub fn load_wireguard_key(dir: &Path) -> Result<StaticSecret, StateError> {
    StateDir::new(dir).read_wireguard_key()
}
