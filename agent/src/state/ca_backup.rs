//! The CA backup file (`meshd ca backup FILE`, `meshd ca restore FILE`): everything a core
//! needs to carry on as the mesh CA, encrypted with a passphrase.
//!
//! The file is a short plain-text preface, a blank line, then an age file (age-encryption.org
//! v1) encrypted to one scrypt (passphrase) recipient:
//!
//! ```text
//! meshd CA backup
//! format: 1
//! mesh: alpha
//! ca-fingerprint: 3f1c…
//! holder: alpha
//! created: 2026-11-21T10:00:00Z
//!
//! age-encryption.org/v1
//! -> scrypt …
//! ```
//!
//! The preface says what the file is before anybody types a passphrase (and lets `restore`
//! refuse a backup of another mesh at once); it is not trusted: the same facts are inside the
//! encrypted part, which age authenticates, and a preface that disagrees with them is
//! reported as tampered. The encrypted part is a versioned JSON object ([`CaBackup`]): the
//! CA certificate and key, the CA database (`ca/db.json`, the registry: allocator, issued
//! certificates, invitations, approvals, freed names) and the newest revocation list. The
//! part after the preface can also be read with the standard `age -d` tool, should meshd
//! itself be unavailable.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use age::secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::CaDatabase;

/// Format version of the backup (preface and encrypted part).
pub const CA_BACKUP_VERSION: u32 = 1;

/// The first line of every backup file.
const MAGIC: &str = "meshd CA backup";
/// Shortest passphrase accepted for a new backup.
pub const MIN_PASSPHRASE_LEN: usize = 8;
/// Largest backup file read (a registry of a few thousand nodes is well under a megabyte).
const MAX_FILE_LEN: usize = 64 << 20;
/// Largest scrypt work factor accepted when opening (2^22: a few seconds, 4 GiB at most, so a
/// hostile file cannot make restore run for hours); files are written with about one second.
const MAX_WORK_FACTOR: u8 = 22;

/// What is inside the encryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaBackup {
    pub version: u32,
    /// The mesh's name (the CA certificate's organisation).
    pub mesh_name: String,
    /// SHA-256 fingerprint of the CA certificate (hex, as in `node.json`).
    pub ca_fingerprint: String,
    /// The node that held the CA when the backup was made.
    pub holder: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// `ca/ca.crt` (PEM).
    pub ca_certificate_pem: String,
    /// `ca/ca.key` (PEM).
    pub ca_key_pem: Zeroizing<String>,
    /// `ca/db.json`, the registry.
    pub ca_db: CaDatabase,
    /// `crl.der`, the newest revocation list, if the CA ever revoked anything.
    #[serde(default, with = "optional_base64")]
    pub crl_der: Option<Vec<u8>>,
}

/// What the plain-text preface says (not authenticated: see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preface {
    pub version: u32,
    pub mesh_name: String,
    pub ca_fingerprint: String,
    pub holder: String,
    pub created_at: OffsetDateTime,
}

impl CaBackup {
    /// The preface that describes this backup.
    pub fn preface(&self) -> Preface {
        Preface {
            version: self.version,
            mesh_name: self.mesh_name.clone(),
            ca_fingerprint: self.ca_fingerprint.clone(),
            holder: self.holder.clone(),
            created_at: self.created_at,
        }
    }
}

/// A passphrase for a backup; never printed.
pub struct Passphrase(SecretString);

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

impl Passphrase {
    /// A passphrase to open a backup with: anything but empty.
    pub fn new(text: String) -> Result<Self, BackupError> {
        if text.is_empty() {
            return Err(BackupError::EmptyPassphrase);
        }
        Ok(Self(SecretString::from(text)))
    }

    /// A passphrase to make a new backup with: at least [`MIN_PASSPHRASE_LEN`] characters.
    pub fn new_for_backup(text: String) -> Result<Self, BackupError> {
        let length = text.chars().count();
        let passphrase = Self::new(text)?;
        if length < MIN_PASSPHRASE_LEN {
            return Err(BackupError::ShortPassphrase { length });
        }
        Ok(passphrase)
    }
}

/// Why a backup could not be written or read. Each says which file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    #[error(
        "the passphrase has {length} characters; a CA backup needs at least {MIN_PASSPHRASE_LEN} \
         (whoever has the file and the passphrase can admit nodes to the mesh)"
    )]
    ShortPassphrase { length: usize },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a meshd CA backup (it does not start with {MAGIC:?})", path.display())]
    NotABackup { path: PathBuf },
    #[error(
        "{} is a CA backup of format {found}, but this meshd reads only format \
         {CA_BACKUP_VERSION}; restore it with the meshd version that wrote it, or a newer one",
        path.display()
    )]
    UnsupportedVersion { path: PathBuf, found: String },
    #[error(
        "{} is damaged: {reason}; the file cannot be used, take another copy of the backup",
        path.display()
    )]
    Damaged { path: PathBuf, reason: String },
    #[error(
        "wrong passphrase for {} (or its encrypted header is damaged): nothing was changed; \
         try again with the passphrase given to `meshd ca backup`",
        path.display()
    )]
    WrongPassphrase { path: PathBuf },
    #[error(
        "{} asks for scrypt work factor {required}, more than the {MAX_WORK_FACTOR} meshd \
         accepts; it was not written by meshd",
        path.display()
    )]
    ExcessiveWork { path: PathBuf, required: u8 },
    #[error("cannot encrypt the backup: {0}")]
    Encrypt(String),
}

/// The bytes of a backup file of `backup`, encrypted with `passphrase`. `work_factor` is the
/// scrypt `log2(N)`; `None` lets age pick about one second of work on this machine.
pub fn seal(
    backup: &CaBackup,
    passphrase: &Passphrase,
    work_factor: Option<u8>,
) -> Result<Vec<u8>, BackupError> {
    let json = Zeroizing::new(
        serde_json::to_vec(backup).map_err(|e| BackupError::Encrypt(e.to_string()))?,
    );
    let mut recipient = age::scrypt::Recipient::new(passphrase.0.clone());
    if let Some(log_n) = work_factor {
        recipient.set_work_factor(log_n);
    }
    let mut out = preface_text(&backup.preface()).into_bytes();
    let encryptor = age::Encryptor::with_recipients(std::iter::once(&recipient as _))
        .map_err(|e| BackupError::Encrypt(e.to_string()))?;
    let mut writer = encryptor
        .wrap_output(&mut out)
        .map_err(|e| BackupError::Encrypt(e.to_string()))?;
    writer
        .write_all(&json)
        .and_then(|()| writer.finish().map(drop))
        .map_err(|e| BackupError::Encrypt(e.to_string()))?;
    Ok(out)
}

/// Reads backup file `path` whole (it is small), refusing anything far larger than a backup.
pub fn read_file(path: &Path) -> Result<Vec<u8>, BackupError> {
    let read = |source| BackupError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() > MAX_FILE_LEN {
        return Err(BackupError::NotABackup {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// The preface of backup file `path` (content `bytes`) and where the encrypted part starts.
pub fn read_preface(path: &Path, bytes: &[u8]) -> Result<(Preface, usize), BackupError> {
    let damaged = |reason: String| BackupError::Damaged {
        path: path.to_path_buf(),
        reason,
    };
    if !bytes.starts_with(format!("{MAGIC}\n").as_bytes()) {
        return Err(BackupError::NotABackup {
            path: path.to_path_buf(),
        });
    }
    let Some(end) = bytes.windows(2).position(|w| w == b"\n\n") else {
        return Err(damaged("its preface has no end (truncated?)".into()));
    };
    let text = std::str::from_utf8(&bytes[..end])
        .map_err(|_| damaged("its preface is not text".into()))?;
    let mut fields = std::collections::BTreeMap::new();
    for line in text.lines().skip(1) {
        let Some((key, value)) = line.split_once(": ") else {
            return Err(damaged(format!(
                "preface line {line:?} is not `key: value`"
            )));
        };
        fields.insert(key, value);
    }
    let field = |key: &str| {
        fields
            .get(key)
            .map(|v| (*v).to_owned())
            .ok_or_else(|| damaged(format!("its preface has no {key:?}")))
    };
    let version = field("format")?;
    if version != CA_BACKUP_VERSION.to_string() {
        return Err(BackupError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: version,
        });
    }
    let created = field("created")?;
    let created_at =
        OffsetDateTime::parse(&created, &time::format_description::well_known::Rfc3339)
            .map_err(|e| damaged(format!("its preface's date {created:?}: {e}")))?;
    let preface = Preface {
        version: CA_BACKUP_VERSION,
        mesh_name: field("mesh")?,
        ca_fingerprint: field("ca-fingerprint")?,
        holder: field("holder")?,
        created_at,
    };
    Ok((preface, end + 2))
}

/// Opens backup file `path` (content `bytes`) with `passphrase`.
pub fn open(path: &Path, bytes: &[u8], passphrase: &Passphrase) -> Result<CaBackup, BackupError> {
    let damaged = |reason: String| BackupError::Damaged {
        path: path.to_path_buf(),
        reason,
    };
    let (preface, start) = read_preface(path, bytes)?;
    let decryptor = age::Decryptor::new_buffered(&bytes[start..]).map_err(|e| match e {
        age::DecryptError::Io(e) => damaged(format!("its encrypted part is cut short ({e})")),
        other => damaged(format!("its encrypted part is not an age file ({other})")),
    })?;
    if !decryptor.is_scrypt() {
        return Err(damaged(
            "its encrypted part is not encrypted with a passphrase".into(),
        ));
    }
    let mut identity = age::scrypt::Identity::new(passphrase.0.clone());
    identity.set_max_work_factor(MAX_WORK_FACTOR);
    let mut reader = decryptor
        .decrypt(std::iter::once(&identity as _))
        .map_err(|e| match e {
            age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys => {
                BackupError::WrongPassphrase {
                    path: path.to_path_buf(),
                }
            }
            age::DecryptError::ExcessiveWork { required, .. } => BackupError::ExcessiveWork {
                path: path.to_path_buf(),
                required,
            },
            other => damaged(format!("its encrypted header does not check ({other})")),
        })?;
    let mut json = Zeroizing::new(Vec::new());
    reader.read_to_end(&mut json).map_err(|e| {
        damaged(format!(
            "its encrypted content does not check: truncated or changed ({e})"
        ))
    })?;
    let backup = decode_contents(&json).map_err(damaged)?;
    if backup.preface() != preface {
        return Err(damaged(
            "its plain-text preface does not match the encrypted content (it was edited)".into(),
        ));
    }
    Ok(backup)
}

/// The encrypted JSON, version first, so a newer format is reported as such.
fn decode_contents(json: &[u8]) -> Result<CaBackup, String> {
    #[derive(Deserialize)]
    struct VersionOnly {
        version: u32,
    }
    let version = serde_json::from_slice::<VersionOnly>(json)
        .map_err(|e| format!("its content is not a backup ({e})"))?
        .version;
    if version != CA_BACKUP_VERSION {
        return Err(format!(
            "its content has format {version}, this meshd reads {CA_BACKUP_VERSION}"
        ));
    }
    serde_json::from_slice(json).map_err(|e| format!("its content is not a backup ({e})"))
}

fn preface_text(preface: &Preface) -> String {
    let created = preface
        .created_at
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a UTC time formats as RFC 3339");
    format!(
        "{MAGIC}\nformat: {}\nmesh: {}\nca-fingerprint: {}\nholder: {}\ncreated: {created}\n\n",
        preface.version, preface.mesh_name, preface.ca_fingerprint, preface.holder
    )
}

impl Passphrase {
    /// Whether two passphrases are the same (a confirmation typed twice; both came from the
    /// same person, so timing tells nobody anything).
    pub fn matches(&self, other: &Passphrase) -> bool {
        self.0.expose_secret() == other.0.expose_secret()
    }
}

mod optional_base64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => s.serialize_some(&STANDARD.encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| STANDARD.decode(text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// Fast for tests; files meshd writes take about a second to open.
    const WORK: Option<u8> = Some(4);

    fn backup(mesh: &str) -> CaBackup {
        CaBackup {
            version: CA_BACKUP_VERSION,
            mesh_name: mesh.into(),
            ca_fingerprint: format!("{mesh}-fingerprint"),
            holder: "alpha".into(),
            created_at: datetime!(2026-11-21 10:00 UTC),
            ca_certificate_pem: "-----BEGIN CERTIFICATE-----\n...".into(),
            ca_key_pem: Zeroizing::new("-----BEGIN PRIVATE KEY-----\nsecret\n".into()),
            ca_db: super::super::ca_db::tests::db(),
            crl_der: Some(vec![0x30, 0x03, 1, 2, 3]),
        }
    }

    fn pass(text: &str) -> Passphrase {
        Passphrase::new(text.into()).unwrap()
    }

    fn path() -> &'static Path {
        Path::new("/backups/ca.backup")
    }

    #[test]
    fn a_backup_round_trips_and_says_what_it_is_before_the_passphrase() {
        let original = backup("alpha");
        let bytes = seal(&original, &pass("correct horse"), WORK).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            text.starts_with("meshd CA backup\nformat: 1\nmesh: alpha\n"),
            "{text}"
        );
        assert!(!text.contains("secret"), "the key is in the clear");
        assert!(!text.contains("alpha-fingerprint\"") && !text.contains("allocator"));
        let (preface, _) = read_preface(path(), &bytes).unwrap();
        assert_eq!(preface, original.preface());
        let back = open(path(), &bytes, &pass("correct horse")).unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn a_wrong_passphrase_is_told_apart_from_a_damaged_file() {
        let bytes = seal(&backup("alpha"), &pass("correct horse"), WORK).unwrap();
        let err = open(path(), &bytes, &pass("battery staple")).unwrap_err();
        assert!(matches!(err, BackupError::WrongPassphrase { .. }), "{err}");
        assert!(err.to_string().contains("/backups/ca.backup"), "{err}");

        let (_, start) = read_preface(path(), &bytes).unwrap();
        // Cut anywhere in the encrypted part, or one byte of it changed: damaged, never a
        // backup that opens.
        for cut in [start + 10, start + 120, bytes.len() - 20, bytes.len() - 1] {
            let err = open(path(), &bytes[..cut], &pass("correct horse")).unwrap_err();
            assert!(
                matches!(err, BackupError::Damaged { .. }),
                "cut at {cut}: {err}"
            );
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 5;
        flipped[last] ^= 1;
        let err = open(path(), &flipped, &pass("correct horse")).unwrap_err();
        assert!(matches!(err, BackupError::Damaged { .. }), "{err}");
        assert!(err.to_string().contains("take another copy"), "{err}");
        // Cut in the preface.
        let err = open(path(), &bytes[..30], &pass("correct horse")).unwrap_err();
        assert!(matches!(err, BackupError::Damaged { .. }), "{err}");
    }

    #[test]
    fn other_files_and_formats_are_named_as_such() {
        let err = open(path(), b"{\"version\":1}", &pass("x")).unwrap_err();
        assert!(matches!(err, BackupError::NotABackup { .. }), "{err}");
        let bytes = seal(&backup("alpha"), &pass("correct horse"), WORK).unwrap();
        let newer = String::from_utf8_lossy(&bytes).replacen("format: 1", "format: 2", 1);
        let err = read_preface(path(), newer.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("format 2"), "{err}");
    }

    #[test]
    fn an_edited_preface_is_caught_by_the_encrypted_copy() {
        let bytes = seal(&backup("alpha"), &pass("correct horse"), WORK).unwrap();
        let (_, start) = read_preface(path(), &bytes).unwrap();
        let mut edited = b"meshd CA backup\nformat: 1\nmesh: other\nca-fingerprint: other-fingerprint\nholder: alpha\ncreated: 2026-11-21T10:00:00Z\n\n".to_vec();
        edited.extend_from_slice(&bytes[start..]);
        assert_eq!(read_preface(path(), &edited).unwrap().0.mesh_name, "other");
        let err = open(path(), &edited, &pass("correct horse")).unwrap_err();
        assert!(err.to_string().contains("was edited"), "{err}");
    }

    #[test]
    fn passphrases_for_new_backups_are_not_trivial() {
        assert!(matches!(
            Passphrase::new(String::new()),
            Err(BackupError::EmptyPassphrase)
        ));
        let err = Passphrase::new_for_backup("short".into()).unwrap_err();
        assert!(err.to_string().contains("at least 8"), "{err}");
        assert!(Passphrase::new_for_backup("long enough".into()).is_ok());
        assert!(pass("same words").matches(&pass("same words")));
        assert!(!pass("same words").matches(&pass("same word")));
        assert_eq!(format!("{:?}", pass("hidden")), "Passphrase(<redacted>)");
    }

    #[test]
    fn a_hostile_work_factor_is_refused_before_any_work() {
        // Sealing with 2^40 would take days: the stanza is edited instead.
        let good = seal(&backup("alpha"), &pass("correct horse"), WORK).unwrap();
        let at = good.windows(3).position(|w| w == b" 4\n").unwrap();
        let mut hostile = good[..at].to_vec();
        hostile.extend_from_slice(b" 40\n");
        hostile.extend_from_slice(&good[at + 3..]);
        let err = open(path(), &hostile, &pass("correct horse")).unwrap_err();
        assert!(
            matches!(err, BackupError::ExcessiveWork { required: 40, .. }),
            "{err}"
        );
    }
}
