//! The state directory checked as a whole before the daemon starts.
//!
//! Each file alone may read fine and still not belong with the others: a `wireguard.key`
//! replaced by another valid key, a `node.crt` deleted (the daemon would run without a control
//! plane), a CA key that is not the CA certificate's, a CA holder without its registry. Such a
//! node must not start half-working: [`check`] refuses with the file and what to do, and
//! nothing is recreated except the caches a node learns again from its peers.
//!
//! [`load`] reads every file once (permissions of private files included); [`check`] is pure
//! over what was read, so every damage is tested without a daemon.

use std::path::PathBuf;

use boringtun::x25519::{PublicKey, StaticSecret};
use mesh_config::Role;
use pki::{CertificateAuthority, Crl, NodeCertificate, NodeKeyPair, PkiError, VerifyError};
use zeroize::Zeroizing;

use super::error::{Remedy, StateError};
use super::keys::{decode_key, missing_or_read, read_private_text};
use super::{
    CA_DB_VERSION, CaDatabase, MEMBERS_VERSION, NODE_RECORD_VERSION, NOT_INITIALISED, NodeRecord,
};
use super::{StateDir, versioned};

/// What the files of a state directory contain; `None`: the file does not exist.
#[derive(Default)]
pub struct Contents {
    pub wireguard_key: Option<Zeroizing<String>>,
    pub node_record: Option<Vec<u8>>,
    pub node_key: Option<Zeroizing<String>>,
    pub node_cert: Option<Vec<u8>>,
    pub ca_cert: Option<Vec<u8>>,
    pub ca_key: Option<Zeroizing<String>>,
    pub ca_db: Option<Vec<u8>>,
    pub members: Option<Vec<u8>>,
    pub crl: Option<Vec<u8>>,
    /// Whether `clients.json` exists (its content is checked when the daemon loads it).
    pub clients: bool,
}

impl std::fmt::Debug for Contents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the keys.
        f.debug_struct("Contents").finish_non_exhaustive()
    }
}

/// A state directory that holds together.
pub struct Checked {
    /// The node's WireGuard private key.
    pub wireguard_key: StaticSecret,
    /// `node.json`; `None` on a node set up by hand (a WireGuard key and static peers only).
    pub node: Option<NodeRecord>,
    /// Caches that do not exist: the node learns them again from its peers.
    pub missing_caches: Vec<PathBuf>,
    /// What the node's certificate approves beyond its allocation (Internet exit, shared
    /// prefixes); nothing on a node set up by hand.
    pub approvals: pki::Approvals,
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked")
            .field("node", &self.node)
            .field("missing_caches", &self.missing_caches)
            .field("approvals", &self.approvals)
            .finish_non_exhaustive()
    }
}

/// Reads every file of the state directory that [`check`] looks at.
pub fn load(state: &StateDir) -> Result<Contents, StateError> {
    let private = |path: PathBuf| match read_private_text(&path, NOT_INITIALISED) {
        Ok(text) => Ok(Some(text)),
        Err(StateError::Missing { .. }) => Ok(None),
        Err(error) => Err(error),
    };
    Ok(Contents {
        wireguard_key: private(state.wireguard_key_path())?,
        node_record: public(state.node_record_path())?,
        node_key: private(state.node_key_path())?,
        node_cert: public(state.node_cert_path())?,
        ca_cert: public(state.ca_cert_path())?,
        ca_key: private(state.ca_key_path())?,
        // Private (0600), but its mode is the writer's business: it holds no key.
        ca_db: public(state.ca_db_path())?,
        members: public(state.members_path())?,
        crl: public(state.crl_path())?,
        clients: state.clients_path().exists(),
    })
}

/// The bytes of a file that may not exist.
fn public(path: PathBuf) -> Result<Option<Vec<u8>>, StateError> {
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(source) => match missing_or_read(&path, source, NOT_INITIALISED) {
            StateError::Missing { .. } => Ok(None),
            error => Err(error),
        },
    }
}

/// Loads and checks the state directory at the start of the daemon, and says which caches
/// it will learn again.
pub fn at_start(state: &StateDir) -> Result<Checked, StateError> {
    let checked = check(state, &load(state)?)?;
    for cache in &checked.missing_caches {
        tracing::info!(file = %cache.display(), "cache missing; it is learnt again from the peers");
    }
    Ok(checked)
}

/// Checks that the files hold together: see the module documentation.
pub fn check(state: &StateDir, files: &Contents) -> Result<Checked, StateError> {
    let record = match &files.node_record {
        Some(bytes) => Some(
            versioned::decode::<NodeRecord>(&state.node_record_path(), bytes, NODE_RECORD_VERSION)
                .map_err(|error| with_remedy(error, Remedy::RestoreOrRejoin))?,
        ),
        None => None,
    };
    // Which node this is decides what it needs and what it can do about a loss.
    let holder = match &record {
        Some(record) => record.ca_holder_name() == record.allocation.name,
        None => files.ca_key.is_some() || files.ca_db.is_some(),
    };
    let remedy = if holder {
        Remedy::RestoreHolder
    } else {
        Remedy::RestoreOrRejoin
    };
    let damaged = |path: PathBuf, problem: String| StateError::Damaged {
        path,
        problem,
        remedy,
    };
    let has_identity = record.is_some()
        || files.node_key.is_some()
        || files.node_cert.is_some()
        || files.ca_cert.is_some();

    let wireguard_path = state.wireguard_key_path();
    let Some(wireguard_text) = &files.wireguard_key else {
        if !has_identity {
            return Err(StateError::Missing {
                path: wireguard_path,
                hint: NOT_INITIALISED,
            });
        }
        return Err(damaged(
            wireguard_path,
            "does not exist, but the rest of this node's identity does".into(),
        ));
    };
    let wireguard_key = StaticSecret::from(decode_key(wireguard_text).ok_or_else(|| {
        damaged(
            wireguard_path.clone(),
            "is corrupt: expected a WireGuard key, 32 bytes in base64".into(),
        )
    })?);
    if !has_identity {
        return Ok(Checked {
            wireguard_key,
            node: None,
            missing_caches: Vec::new(),
            approvals: pki::Approvals::default(),
        });
    }

    let missing = |path: PathBuf| damaged(path, "does not exist".into());
    let record = record.ok_or_else(|| missing(state.node_record_path()))?;
    let node_key = files
        .node_key
        .as_ref()
        .ok_or_else(|| missing(state.node_key_path()))?;
    let node_cert = files
        .node_cert
        .as_ref()
        .ok_or_else(|| missing(state.node_cert_path()))?;
    let ca_cert = files
        .ca_cert
        .as_ref()
        .ok_or_else(|| missing(state.ca_cert_path()))?;

    let corrupt = |path: PathBuf, reason: String| damaged(path, format!("is corrupt: {reason}"));
    let node_key = NodeKeyPair::from_pem(node_key)
        .map_err(|e| corrupt(state.node_key_path(), e.to_string()))?;
    let node_der = certificate_der(node_cert).map_err(|e| corrupt(state.node_cert_path(), e))?;
    let certificate = NodeCertificate::parse(&node_der)
        .map_err(|e| corrupt(state.node_cert_path(), e.to_string()))?;
    let ca_der = certificate_der(ca_cert).map_err(|e| corrupt(state.ca_cert_path(), e))?;

    let fingerprint = pki::fingerprint_hex(
        ring::digest::digest(&ring::digest::SHA256, &ca_der)
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes"),
    );
    if fingerprint != record.ca_fingerprint {
        return Err(damaged(
            state.ca_cert_path(),
            format!(
                "is not the CA of mesh {:?} that {} records (fingerprint {fingerprint}, recorded {})",
                record.mesh_name,
                state.node_record_path().display(),
                record.ca_fingerprint
            ),
        ));
    }
    check_issued_by_ca(state, &certificate, &ca_der)
        .map_err(|(path, problem)| damaged(path, problem))?;
    let name = &certificate.identity.name;
    if *name != record.allocation.name {
        return Err(damaged(
            state.node_record_path(),
            format!(
                "is the record of node {:?}, but {} was issued to {name:?}",
                record.allocation.name,
                state.node_cert_path().display()
            ),
        ));
    }
    if node_key.public_key_der() != certificate.public_key_der {
        return Err(damaged(
            state.node_key_path(),
            format!(
                "is not the key {} was issued for",
                state.node_cert_path().display()
            ),
        ));
    }
    let public = PublicKey::from(&wireguard_key);
    if *public.as_bytes() != certificate.identity.wireguard_key {
        return Err(damaged(
            wireguard_path,
            format!(
                "holds the WireGuard key {}, but {} was issued for {}",
                super::encode_key(public.as_bytes()),
                state.node_cert_path().display(),
                super::encode_key(&certificate.identity.wireguard_key)
            ),
        ));
    }

    let mut missing_caches = Vec::new();
    if holder {
        check_ca_holder(state, files, &record, ca_cert)?;
    } else if files.crl.is_none() {
        missing_caches.push(state.crl_path());
    }
    if let Some(crl) = &files.crl {
        let remedy = if holder {
            Remedy::RestoreHolder
        } else {
            Remedy::DeleteCache
        };
        Crl::parse(crl, &ca_der).map_err(|e| StateError::Damaged {
            path: state.crl_path(),
            problem: format!("is not a revocation list of this mesh's CA: {e}"),
            remedy,
        })?;
    }
    check_members(state, files, record.allocation.role, &mut missing_caches)?;
    Ok(Checked {
        wireguard_key,
        node: Some(record),
        missing_caches,
        approvals: certificate.identity.approvals,
    })
}

/// `members.json` is a cache on a core (the other members connect to it and hand it the
/// membership again); a spoke finds its core only through it, so there it is needed.
fn check_members(
    state: &StateDir,
    files: &Contents,
    role: Role,
    missing_caches: &mut Vec<PathBuf>,
) -> Result<(), StateError> {
    let path = state.members_path();
    let remedy = match role {
        Role::Core => Remedy::DeleteCache,
        Role::Spoke => Remedy::RestoreOrRejoin,
    };
    match (&files.members, role) {
        (Some(bytes), _) => versioned::decode::<MembersShape>(&path, bytes, MEMBERS_VERSION)
            .map(drop)
            .map_err(|error| with_remedy(error, remedy)),
        (None, Role::Core) => {
            missing_caches.push(path);
            Ok(())
        }
        (None, Role::Spoke) => Err(StateError::Damaged {
            path,
            problem: "does not exist, and a spoke learns where its core is only from it".into(),
            remedy,
        }),
    }
}

/// The outline of `members.json`; the records themselves are checked by the control plane.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersShape {
    #[allow(dead_code)] // read only to check the shape
    members: Vec<serde::de::IgnoredAny>,
}

/// The CA holder's CA key belongs to its certificate, its registry lists this node, and what
/// the registry says was revoked or handed to clients is still on disk.
fn check_ca_holder(
    state: &StateDir,
    files: &Contents,
    record: &NodeRecord,
    ca_cert: &[u8],
) -> Result<(), StateError> {
    let damaged = |path: PathBuf, problem: String| StateError::Damaged {
        path,
        problem,
        remedy: Remedy::RestoreHolder,
    };
    let holds = format!(
        "{} says this node ({}) holds the mesh CA",
        state.node_record_path().display(),
        record.allocation.name
    );
    let ca_key = files
        .ca_key
        .as_ref()
        .ok_or_else(|| damaged(state.ca_key_path(), format!("does not exist, but {holds}")))?;
    let ca_db = files
        .ca_db
        .as_ref()
        .ok_or_else(|| damaged(state.ca_db_path(), format!("does not exist, but {holds}")))?;
    let ca_pem = std::str::from_utf8(ca_cert)
        .map_err(|_| damaged(state.ca_cert_path(), "is corrupt: not UTF-8 text".into()))?;
    CertificateAuthority::from_pem(ca_pem, ca_key).map_err(|error| match error {
        PkiError::CaKeyMismatch => damaged(
            state.ca_key_path(),
            format!(
                "is not the key of the CA certificate {}",
                state.ca_cert_path().display()
            ),
        ),
        PkiError::CaCertificate(reason) => damaged(
            state.ca_cert_path(),
            format!("is not a mesh CA certificate: {reason}"),
        ),
        other => damaged(state.ca_key_path(), format!("is corrupt: {other}")),
    })?;
    let db: CaDatabase = versioned::decode(&state.ca_db_path(), ca_db, CA_DB_VERSION)
        .map_err(|error| with_remedy(error, Remedy::RestoreHolder))?;
    let own = &record.allocation;
    if db.allocator.node(&own.name).map(|a| a.index) != Some(own.index) {
        return Err(damaged(
            state.ca_db_path(),
            format!(
                "does not list this node ({}, node {}) as a member: it is the registry of another mesh or an old copy",
                own.name, own.index
            ),
        ));
    }
    if files.crl.is_none() {
        let mut revoked: Vec<&str> = db
            .certificates
            .iter()
            .map(|c| c.name.as_str())
            .filter(|name| db.allocator.is_revoked(name))
            .collect();
        revoked.dedup();
        if !revoked.is_empty() {
            return Err(damaged(
                state.crl_path(),
                format!(
                    "does not exist, but {} records revoked nodes ({}), whose certificates the mesh would trust again",
                    state.ca_db_path().display(),
                    revoked.join(", ")
                ),
            ));
        }
    }
    if !files.clients && db.allocator.clients(&own.name).next().is_some() {
        return Err(damaged(
            state.clients_path(),
            format!(
                "does not exist, but {} records clients of this node: their devices would be refused and their addresses handed out again",
                state.ca_db_path().display()
            ),
        ));
    }
    Ok(())
}

/// The signature of `node.crt` is checked at a time inside its validity: an expired
/// certificate is the renewal's business, not damage.
fn check_issued_by_ca(
    state: &StateDir,
    certificate: &NodeCertificate,
    ca_der: &[u8],
) -> Result<(), (PathBuf, String)> {
    let middle = certificate.not_before + (certificate.not_after - certificate.not_before) / 2;
    match pki::verify_node_certificate(&certificate.der, ca_der, None, middle) {
        Ok(_) => Ok(()),
        Err(VerifyError::InvalidCa(reason)) => Err((
            state.ca_cert_path(),
            format!("is not a usable CA certificate: {reason}"),
        )),
        Err(VerifyError::UnknownIssuer { .. } | VerifyError::BadSignature) => Err((
            state.node_cert_path(),
            format!(
                "was not issued by the CA in {}",
                state.ca_cert_path().display()
            ),
        )),
        Err(other) => Err((state.node_cert_path(), other.to_string())),
    }
}

/// The DER of a PEM certificate file.
fn certificate_der(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| "not UTF-8 text, expected a PEM certificate".to_owned())?;
    pki::certificate_der_from_pem(text).map_err(|e| format!("expected a PEM certificate ({e})"))
}

/// A file that reads as corrupt gets the remedy for its place in the state directory.
fn with_remedy(error: StateError, remedy: Remedy) -> StateError {
    match error {
        StateError::Corrupt { path, reason } => StateError::Damaged {
            path,
            problem: format!("is corrupt: {reason}"),
            remedy,
        },
        other => other,
    }
}
