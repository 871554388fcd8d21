//! What the control plane keeps in the state directory, so a restarted node knows the mesh
//! without asking the CA holder:
//! - `members.json` (versioned): the last known membership records, signed as received;
//! - `crl.der`: the newest revocation list (written by `meshd revoke` on the CA holder, by
//!   the control plane on every other node).
//!
//! Both are checked again when loaded (records against the CA, the CRL's signature).

use std::path::PathBuf;

use crate::state::{
    MEMBERS_VERSION, Overwrite, PUBLIC_FILE_MODE, StateDir, StateError, read_json, write_atomic,
    write_json,
};

use super::record::SignedRecord;

/// The body of `members.json`.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersFile {
    members: Vec<SignedRecord>,
}

const NO_MEMBERS: &str = "the node has not learnt the membership yet";

/// `members.json`.
pub fn members_path(state: &StateDir) -> PathBuf {
    state.members_path()
}

/// `crl.der`.
pub fn crl_path(state: &StateDir) -> PathBuf {
    state.crl_path()
}

/// The stored membership; empty if there is none yet. A corrupt file is an error.
pub fn read_members(state: &StateDir) -> Result<Vec<SignedRecord>, StateError> {
    match read_json::<MembersFile>(&members_path(state), MEMBERS_VERSION, NO_MEMBERS) {
        Err(StateError::Missing { .. }) => Ok(Vec::new()),
        other => other.map(|file| file.members),
    }
}

/// Replaces the stored membership.
pub fn write_members(state: &StateDir, records: &[SignedRecord]) -> Result<(), StateError> {
    write_json(
        &members_path(state),
        MEMBERS_VERSION,
        &MembersFile {
            members: records.to_vec(),
        },
        PUBLIC_FILE_MODE,
        Overwrite::Replace,
    )
}

/// The stored revocation list, if any.
pub fn read_crl(state: &StateDir) -> Result<Option<Vec<u8>>, StateError> {
    let path = crl_path(state);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Read { path, source }),
    }
}

/// Replaces the stored revocation list.
pub fn write_crl(state: &StateDir, der: &[u8]) -> Result<(), StateError> {
    write_atomic(&crl_path(state), der, PUBLIC_FILE_MODE, Overwrite::Replace)
}
