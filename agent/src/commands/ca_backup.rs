//! `meshd ca backup FILE [--move-to NAME]` on the CA holder and `meshd ca restore FILE` on
//! another core: the mesh CA carried to another machine in one encrypted file
//! (`state::ca_backup`), and the registry brought up to date with the membership on arrival
//! (`state::ca_merge`). docs/operations.md, "Backing up and moving the CA", is the manual.
//!
//! What makes a node the CA holder is `ca/db.json`: the daemon reads it for every join and
//! renewal, so a restore takes effect in a running meshd at once, and a hand-over stops it at
//! once. The start-up check also reads `node.json`'s `ca_holder`, so both are written together:
//! on restore `ca_holder` first and `ca/db.json` last (the commit point), on a hand-over the
//! other way round; a command interrupted in between is simply run again.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use mesh_config::Role;
use mesh_config::alloc::ClientAllocation;
use pki::{CertificateAuthority, Crl, NodeCertificate};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::{CommandError, Context, Output, pki_error};
use crate::api::client_registry::ClientRegistry;
use crate::cli::{CaBackupArgs, CaRestoreArgs};
use crate::control::store;
use crate::state::ca_backup::{self, BackupError, CA_BACKUP_VERSION, CaBackup, Passphrase};
use crate::state::ca_merge::{self, MergeConflict, MergeReport};
use crate::state::{
    CaDatabase, NodeRecord, Overwrite, PRIVATE_FILE_MODE, StateDir, StateError, remove_durably,
    write_atomic,
};

/// Why a backup, restore or hand-over was refused. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CaMoveError {
    #[error("--passphrase-file {}: {problem}", path.display())]
    PassphraseFile { path: PathBuf, problem: String },
    #[error(
        "there is no terminal to ask the passphrase on ({0}); give it with --passphrase-file PATH \
         (a file only its owner can read)"
    )]
    NoTerminal(std::io::Error),
    #[error("the two passphrases differ; nothing was written")]
    PassphrasesDiffer,
    #[error(
        "this node holds a mesh CA already ({} exists); restore a backup only on a core without \
         one (to move the CA here from the holder, run `meshd ca backup FILE --move-to NAME` \
         there)",
        path.display()
    )]
    AlreadyHoldsCa { path: PathBuf },
    #[error(
        "this node, {name}, is a spoke; the CA holder must be a core (joining nodes reach it at \
         its public endpoint): restore the backup on a core"
    )]
    NotACore { name: String },
    #[error(
        "{} is a backup of the CA of mesh {backup_mesh:?} (fingerprint {backup_fingerprint}), but \
         this node belongs to mesh {mesh:?} (fingerprint {fingerprint}); restore it on a core of \
         that mesh",
        file.display()
    )]
    OtherMesh {
        file: PathBuf,
        backup_mesh: String,
        backup_fingerprint: String,
        mesh: String,
        fingerprint: String,
    },
    #[error(
        "{} holds a key other than the backup's CA key; move it away if it is left from an \
         earlier attempt, then run the restore again",
        path.display()
    )]
    OtherCaKey { path: PathBuf },
    #[error(
        "{}'s certificate is revoked by the newest revocation list; a revoked node cannot hold \
         the CA",
        name
    )]
    OwnCertificateRevoked { name: String },
    #[error(transparent)]
    Conflict(#[from] MergeConflict),
    #[error("--move-to {name}: {reason}")]
    MoveTarget { name: String, reason: String },
    #[error(transparent)]
    Backup(#[from] BackupError),
    #[error(
        "this node keeps no copy of the mesh CA: `meshd ca take-over` makes a standby the holder \
         (on the CA holder, `meshd ca backup FILE --standby`; here, `meshd ca restore FILE \
         --standby`)"
    )]
    NoCopy,
    #[error(
        "this node is the active CA holder already (term {term}): `meshd ca take-over` is for a \
         standby whose active holder is lost"
    )]
    NotStandby { term: u64 },
    #[error(
        "{why}. A take-over while it is alive makes two holders until it hears of the new term; \
         if it is lost for good (its disk died, the machine is gone), run again with --force"
    )]
    HolderMayBeAlive { why: String },
}

/// Runs `meshd ca backup`.
pub fn backup<O: Write, N: Write>(
    context: &Context,
    args: &CaBackupArgs,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    let state = &context.state;
    // Fail early, with the "not the CA holder" hint, before asking for a passphrase.
    let early = state.read_ca_db()?;
    let record = state.read_node_record()?;
    if let Some(target) = &args.move_to {
        check_move_target(&early, &record, target)?;
    }
    if args.test_work_factor.is_some() && !cfg!(debug_assertions) {
        return Err(CommandError::invalid(
            "--test-work-factor",
            "only meshd's own tests (debug builds) may weaken the passphrase's protection",
        ));
    }
    let passphrase = read_passphrase(args.passphrase_file.as_deref(), true)?;

    let _lock = state.lock()?;
    let mut db = state.read_ca_db()?;
    super::refuse_standby(&db)?;
    if args.standby && db.allocator.share().is_sole() {
        // Split before the backup exists: from here on this node hands out only its class.
        db.allocator
            .split(2)
            .map_err(|e| CommandError::invalid("--standby", e.to_string()))?;
        state.write_ca_db(&db)?;
    }
    let ca_pem = state.read_certificate(&state.ca_cert_path())?;
    let ca_key = state.read_ca_key()?;
    let ca = CertificateAuthority::from_pem(&ca_pem, &ca_key)
        .map_err(pki_error("loading the mesh CA from the state directory"))?;
    let crl_der = store::read_crl(state)?;
    let crl_number = match &crl_der {
        Some(der) => Some(
            Crl::parse(der, ca.cert_der())
                .map_err(pki_error("reading crl.der"))?
                .crl_number(),
        ),
        None => None,
    };
    let now = OffsetDateTime::now_utc();
    let contents = CaBackup {
        version: CA_BACKUP_VERSION,
        mesh_name: ca.mesh_name().to_owned(),
        ca_fingerprint: ca.fingerprint_hex(),
        holder: record.allocation.name.clone(),
        created_at: now.replace_nanosecond(0).unwrap_or(now),
        ca_certificate_pem: ca_pem,
        ca_key_pem: Zeroizing::new((*ca_key).clone()),
        ca_db: if args.standby {
            standby_copy(&db, &record.allocation.name)?
        } else {
            db
        },
        crl_der,
    };
    let sealed = ca_backup::seal(&contents, &passphrase, args.test_work_factor)?;
    write_atomic(&args.file, &sealed, PRIVATE_FILE_MODE, Overwrite::Replace)?;
    // Read back what is on disk: a backup that does not open is worse than none, above all
    // before a hand-over removes the originals.
    let back = ca_backup::open(&args.file, &ca_backup::read_file(&args.file)?, &passphrase)?;
    if back != contents {
        return Err(BackupError::Damaged {
            path: args.file.clone(),
            reason: "it does not read back as written (a failing disk?)".into(),
        }
        .into());
    }
    let (live, revoked) =
        ca_merge::node_counts(&contents.ca_db.allocator, &contents.ca_db.certificates);
    let open = contents.ca_db.open_invitations().count();
    let crl = crl_number.map_or("no revocation list".to_owned(), |n| {
        format!("revocation list {n}")
    });
    writeln!(
        output.out,
        "Wrote the CA of mesh {:?} to {} (mode 0600) and read it back: fingerprint {}, {live} \
         member(s) and {revoked} revoked node(s) in the registry, {} certificate(s) issued, \
         {open} open invitation(s), {crl}.",
        contents.mesh_name,
        args.file.display(),
        contents.ca_fingerprint,
        contents.ca_db.certificates.len(),
    )
    .map_err(CommandError::Output)?;
    let prefix = context.command_prefix();
    if args.standby {
        return writeln!(
            output.note,
            "The registry is split: this node hands out {}, the standby the other numbers. Keep \
             the file off this machine and the passphrase apart from it. On the standby core, \
             run: {prefix} ca restore FILE --standby",
            contents_share_of_holder(state)?
        )
        .map_err(CommandError::Output);
    }
    match &args.move_to {
        None => writeln!(
            output.note,
            "Keep the file off this machine and the passphrase apart from it: together they \
             admit nodes to the mesh. Make a new backup after admitting or revoking nodes. To \
             carry on as the CA on another core: {prefix} ca restore FILE"
        )
        .map_err(CommandError::Output),
        Some(target) => {
            hand_over(state, &record, &contents.ca_db, target)?;
            writeln!(
                output.out,
                "This node no longer holds the mesh CA: it admits, renews and revokes no more, \
                 and asks {target} for its own renewals. On {target}, run: meshd ca restore FILE"
            )
            .map_err(CommandError::Output)?;
            writeln!(
                output.note,
                "Until {target} has restored the backup, no node can join or renew (the mesh \
                 keeps working)."
            )
            .map_err(CommandError::Output)
        }
    }
}

/// What this node's registry hands out now, in words.
fn contents_share_of_holder(state: &StateDir) -> Result<String, CommandError> {
    Ok(state.read_ca_db()?.allocator.share().to_string())
}

/// The registry as the standby keeps it: the other class of the split, marked standby of
/// `active`.
fn standby_copy(db: &CaDatabase, active: &str) -> Result<CaDatabase, CommandError> {
    let share = db.allocator.share();
    let mut copy = db.clone();
    copy.allocator = db
        .allocator
        .with_slot((share.slot + 1) % share.holders)
        .map_err(|e| CommandError::invalid("--standby", e.to_string()))?;
    copy.standby = Some(crate::state::Standby {
        active_holder: active.to_owned(),
    });
    Ok(copy)
}

/// `--move-to NAME` must name another live core.
fn check_move_target(
    db: &CaDatabase,
    record: &NodeRecord,
    target: &str,
) -> Result<(), CaMoveError> {
    let refuse = |reason: String| CaMoveError::MoveTarget {
        name: target.to_owned(),
        reason,
    };
    if target == record.allocation.name {
        return Err(refuse(
            "that is this node, which holds the CA already".into(),
        ));
    }
    match db.allocator.node(target) {
        Some(node) if node.role == Role::Core => Ok(()),
        Some(_) => Err(refuse("it is a spoke; the CA holder must be a core".into())),
        None => Err(refuse(format!(
            "there is no member {target:?}; the CA can only move to a core of the mesh"
        ))),
    }
}

/// Stops this node holding the CA, now that a checked backup exists: its own clients go on
/// being numbered after those the CA allocator gave it, `node.json` names `target` as the CA
/// holder, and the registry and the CA key are removed (the registry first: without it the
/// daemon admits nothing).
fn hand_over(
    state: &StateDir,
    record: &NodeRecord,
    db: &CaDatabase,
    target: &str,
) -> Result<(), CommandError> {
    crate::api::client_registry::number_locally_after_ca(state, &record.allocation, &db.allocator)?;
    let mut moved = record.clone();
    moved.ca_holder = Some(target.to_owned());
    state.write_node_record(&moved)?;
    if let Err(error) = remove_durably(&state.ca_db_path()) {
        // Still the holder: say so again.
        let _ = state.write_node_record(record);
        return Err(error.into());
    }
    remove_durably(&state.ca_key_path())?;
    Ok(())
}

/// Runs `meshd ca restore`.
pub fn restore<O: Write, N: Write>(
    context: &Context,
    args: &CaRestoreArgs,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    let state = &context.state;
    let bytes = ca_backup::read_file(&args.file)?;
    let (preface, _) = ca_backup::read_preface(&args.file, &bytes)?;
    // Everything that can be refused without the passphrase is refused first.
    let record = state.read_node_record()?;
    check_restorable(
        state,
        &record,
        &args.file,
        &preface.mesh_name,
        &preface.ca_fingerprint,
    )?;
    let passphrase = read_passphrase(args.passphrase_file.as_deref(), false)?;
    let backup = ca_backup::open(&args.file, &bytes, &passphrase)?;
    if args.standby && backup.ca_db.standby.is_none() {
        return Err(CommandError::invalid(
            "--standby",
            format!(
                "{} was not made for a standby: on the CA holder run `meshd ca backup FILE \
                 --standby`, which splits the registry so the two copies never hand out one \
                 number twice",
                args.file.display()
            ),
        ));
    }

    let _lock = state.lock()?;
    let record = state.read_node_record()?;
    check_restorable(
        state,
        &record,
        &args.file,
        &backup.mesh_name,
        &backup.ca_fingerprint,
    )?;
    let ca = CertificateAuthority::from_pem(&backup.ca_certificate_pem, &backup.ca_key_pem)
        .map_err(pki_error("loading the CA from the backup"))?;
    if ca.fingerprint_hex() != backup.ca_fingerprint {
        return Err(BackupError::Damaged {
            path: args.file.clone(),
            reason: "its CA certificate does not have the fingerprint it names".into(),
        }
        .into());
    }
    let own_cert = own_certificate(state, ca.cert_der())?;
    let own_name = record.allocation.name.clone();

    // The newest revocation list, of the node's and the backup's.
    let node_crl = match store::read_crl(state)? {
        Some(der) => Some(Crl::parse(&der, ca.cert_der()).map_err(pki_error("reading crl.der"))?),
        None => None,
    };
    let backup_crl = match &backup.crl_der {
        Some(der) => Some(
            Crl::parse(der, ca.cert_der())
                .map_err(pki_error("reading the backup's revocation list"))?,
        ),
        None => None,
    };
    let newer_from_backup = match (&node_crl, &backup_crl) {
        (Some(ours), Some(theirs)) => theirs.crl_number() > ours.crl_number(),
        (None, Some(_)) => true,
        _ => false,
    };
    let crl = if newer_from_backup {
        &backup_crl
    } else {
        &node_crl
    };
    let revoked: Vec<_> = crl
        .iter()
        .flat_map(|c| c.entries().map(|e| e.serial))
        .collect();
    if revoked.contains(&own_cert.serial) {
        return Err(CaMoveError::OwnCertificateRevoked { name: own_name }.into());
    }

    let known = Known::read(state, ca.cert_der(), own_cert, &own_name)?;
    let mut db = backup.ca_db.clone();
    if !args.standby {
        // A standby's backup restored as the CA itself (its holder is lost): it becomes the
        // active copy, still handing out only its own class of numbers.
        db.standby = None;
    }
    let report = known.merge_into(state, &mut db, &revoked, &record)?;

    install(state, &record, &backup, &db, newer_from_backup)?;
    if let Some(standby) = &db.standby {
        return writeln!(
            output.out,
            "{own_name} now keeps a standby copy of the CA of mesh {:?}: it hands out {} when it \
             takes over, and until then admits, renews and revokes nothing ({}).",
            backup.mesh_name,
            db.allocator.share(),
            standby.refusal()
        )
        .map_err(CommandError::Output);
    }
    print_restored(context, &record, &backup, &report, known.unreadable, output)
}

/// What this node knows that the CA registry must learn when a copy of the CA becomes active
/// here (a restore, a take-over): every member it knows of, checked against the CA (not
/// against the clock: an expired member still holds its numbers), and its own clients.
pub(super) struct Known {
    members: Vec<NodeCertificate>,
    /// Stored members whose certificate is not the CA's (left out).
    pub(super) unreadable: usize,
    own_clients: Vec<(String, ClientAllocation)>,
}

impl Known {
    /// Reads the membership and clients of `state`; `own_cert` is the node's own certificate.
    pub(super) fn read(
        state: &StateDir,
        ca_der: &[u8],
        own_cert: NodeCertificate,
        own_name: &str,
    ) -> Result<Self, CommandError> {
        let mut members = vec![own_cert];
        let mut unreadable = 0;
        for stored in store::read_members(state)? {
            match checked_member(&stored.certificate, ca_der) {
                Some(member) if member.identity.name != own_name => members.push(member),
                Some(_) => {}
                None => unreadable += 1,
            }
        }
        let own_clients = ClientRegistry::load(state)?
            .clients
            .iter()
            .map(|c| {
                (
                    c.name.clone(),
                    ClientAllocation {
                        ipv4: c.ipv4,
                        ipv6: c.ipv6,
                    },
                )
            })
            .collect();
        Ok(Known {
            members,
            unreadable,
            own_clients,
        })
    }

    /// Teaches `db` what this node (`record`, its `node.json`) knows, and the certificates
    /// `revoked` lists; refused if the registry then has the node under another number.
    pub(super) fn merge_into(
        &self,
        state: &StateDir,
        db: &mut CaDatabase,
        revoked: &[pki::SerialNumber],
        record: &NodeRecord,
    ) -> Result<MergeReport, CaMoveError> {
        let own = &record.allocation;
        let report =
            ca_merge::merge_known(db, revoked, &self.members, &own.name, &self.own_clients)?;
        if db.allocator.node(&own.name).map(|a| a.index) != Some(own.index) {
            return Err(CaMoveError::Conflict(MergeConflict {
                name: own.name.clone(),
                reason: format!(
                    "the registry does not have it as node {}, which {} records",
                    own.index,
                    state.node_record_path().display()
                ),
            }));
        }
        Ok(report)
    }
}

/// The checks a restore makes before and after the passphrase: a core of the backup's mesh
/// that holds no CA.
fn check_restorable(
    state: &StateDir,
    record: &NodeRecord,
    file: &Path,
    mesh: &str,
    fingerprint: &str,
) -> Result<(), CaMoveError> {
    if state.has_ca_copy() {
        return Err(CaMoveError::AlreadyHoldsCa {
            path: state.ca_db_path(),
        });
    }
    if record.ca_fingerprint != fingerprint {
        return Err(CaMoveError::OtherMesh {
            file: file.to_path_buf(),
            backup_mesh: mesh.to_owned(),
            backup_fingerprint: fingerprint.to_owned(),
            mesh: record.mesh_name.clone(),
            fingerprint: record.ca_fingerprint.clone(),
        });
    }
    if record.allocation.role != Role::Core {
        return Err(CaMoveError::NotACore {
            name: record.allocation.name.clone(),
        });
    }
    Ok(())
}

/// This node's certificate, which must be the CA's.
pub(super) fn own_certificate(
    state: &StateDir,
    ca_der: &[u8],
) -> Result<NodeCertificate, CommandError> {
    let path = state.node_cert_path();
    let pem = state.read_certificate(&path)?;
    let corrupt = |reason: String| StateError::Corrupt {
        path: path.clone(),
        reason,
    };
    let der = pem_der(&pem).map_err(corrupt)?;
    checked_member(&der, ca_der)
        .ok_or_else(|| corrupt("it is not a certificate of the backup's CA".into()).into())
}

/// A member certificate, if the CA signed it (checked in the middle of its validity, so an
/// expired one counts too: its numbers are still its own).
fn checked_member(der: &[u8], ca_der: &[u8]) -> Option<NodeCertificate> {
    let parsed = NodeCertificate::parse(der).ok()?;
    let middle = parsed.not_before + (parsed.not_after - parsed.not_before) / 2;
    pki::verify_node_certificate(der, ca_der, None, middle).ok()
}

fn pem_der(pem: &str) -> Result<Vec<u8>, String> {
    pki::certificate_der_from_pem(pem).map_err(|e| format!("expected a PEM certificate ({e})"))
}

/// Writes the CA into the state directory, all of it or (on an error) nothing: the newer
/// revocation list, the CA key, `node.json` naming this node the holder, and `ca/db.json`
/// last. What was written before an error is put back.
fn install(
    state: &StateDir,
    record: &NodeRecord,
    backup: &CaBackup,
    db: &CaDatabase,
    write_crl: bool,
) -> Result<(), CommandError> {
    let key_path = state.ca_key_path();
    let key_exists = match state.read_ca_key() {
        Ok(existing) if existing.trim() == backup.ca_key_pem.trim() => true,
        Ok(_) => return Err(CaMoveError::OtherCaKey { path: key_path }.into()),
        Err(StateError::Missing { .. }) => false,
        Err(error) => return Err(error.into()),
    };
    let old_crl = store::read_crl(state)?;
    let mut undo: Vec<Box<dyn FnOnce()>> = Vec::new();
    let result = (|| -> Result<(), StateError> {
        if write_crl && let Some(der) = &backup.crl_der {
            store::write_crl(state, der)?;
            let state = state.clone();
            undo.push(Box::new(move || match &old_crl {
                Some(der) => drop(store::write_crl(&state, der)),
                None => drop(remove_durably(&state.crl_path())),
            }));
        }
        state.create_ca_dir()?;
        if !key_exists {
            state.write_pem_key(&key_path, &backup.ca_key_pem)?;
            let path = key_path.clone();
            undo.push(Box::new(move || drop(remove_durably(&path))));
        }
        let mut holder = record.clone();
        if db.standby.is_none() {
            holder.ca_holder = Some(record.allocation.name.clone());
        }
        if holder != *record {
            state.write_node_record(&holder)?;
            let (state, record) = (state.clone(), record.clone());
            undo.push(Box::new(move || drop(state.write_node_record(&record))));
        }
        state.write_ca_db(db)
    })();
    if let Err(error) = result {
        for step in undo.into_iter().rev() {
            step();
        }
        return Err(error.into());
    }
    Ok(())
}

fn print_restored<O: Write, N: Write>(
    context: &Context,
    record: &NodeRecord,
    backup: &CaBackup,
    report: &MergeReport,
    unreadable: usize,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    let name = &record.allocation.name;
    let age = age_text(OffsetDateTime::now_utc() - backup.created_at);
    let mut lines = vec![format!(
        "Restored the CA of mesh {:?} (fingerprint {}), backed up on {} at {} ({age} ago).",
        backup.mesh_name,
        backup.ca_fingerprint,
        backup.holder,
        pki::rfc3339(backup.created_at)
    )];
    let list = |names: &[String]| {
        if names.is_empty() {
            String::new()
        } else {
            format!(" ({})", names.join(", "))
        }
    };
    lines.push(format!(
        "Learnt from this node's membership and revocation list: {} node(s) admitted since the \
         backup{}, {} certificate(s) issued since, {} node(s) revoked since{}, {} client(s) of \
         this node.",
        report.added.len(),
        list(&report.added),
        report.certificates,
        report.revoked.len(),
        list(&report.revoked),
        report.clients
    ));
    if report.unknown_revoked > 0 {
        lines.push(format!(
            "{} revoked certificate(s) are unknown to the backup (nodes admitted and revoked \
             since?): skipped {} node number(s), so none is handed out twice.",
            report.unknown_revoked, report.skipped_numbers
        ));
    }
    if unreadable > 0 {
        lines.push(format!(
            "{unreadable} record(s) of members.json were not certificates of this CA and were \
             left out."
        ));
    }
    lines.push(format!(
        "{name} now holds the mesh CA: a running meshd here admits, renews and revokes from now \
         on, no restart needed (if meshd is not running, start it). Certificates already issued \
         keep working."
    ));
    for line in lines {
        writeln!(output.out, "{line}").map_err(CommandError::Output)?;
    }
    let open = backup.ca_db.open_invitations().count();
    let mut note = String::new();
    if backup.holder != *name {
        note.push_str(&format!(
            "{holder} must never admit again: if it still has its CA files, run `meshd ca \
             backup FILE --move-to {name}` on it before it runs meshd again, or wipe its \
             ca/ca.key and ca/db.json. ",
            holder = backup.holder
        ));
    }
    if open > 0 {
        note.push_str(&format!(
            "{open} open invitation(s) came with the backup; their tokens name {}'s endpoints: \
             see `{} invite --list`, cancel them and invite again. ",
            backup.holder,
            context.command_prefix()
        ));
    }
    note.push_str("Make a new backup of the CA here: meshd ca backup FILE");
    writeln!(output.note, "{note}").map_err(CommandError::Output)
}

/// `3 days`, `5 hours`, `2 minutes`: how old a backup is, roughly.
fn age_text(age: time::Duration) -> String {
    let (n, unit) = if age.whole_days() >= 2 {
        (age.whole_days(), "days")
    } else if age.whole_hours() >= 2 {
        (age.whole_hours(), "hours")
    } else {
        (age.whole_minutes().max(0), "minutes")
    };
    format!("{n} {unit}")
}

/// The passphrase: from `file` (owner-only, one line), or asked on the terminal (twice for a
/// new backup).
fn read_passphrase(file: Option<&Path>, new_backup: bool) -> Result<Passphrase, CommandError> {
    let make = |text: String| {
        if new_backup {
            Passphrase::new_for_backup(text)
        } else {
            Passphrase::new(text)
        }
    };
    if let Some(path) = file {
        let text = read_passphrase_file(path)?;
        return make(text.to_string()).map_err(|e| {
            CaMoveError::PassphraseFile {
                path: path.to_path_buf(),
                problem: e.to_string(),
            }
            .into()
        });
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map(Zeroizing::new)
            .map_err(CaMoveError::NoTerminal)
    };
    let first = ask("Passphrase for the CA backup: ")?;
    let passphrase = make(first.to_string())?;
    if new_backup {
        let again = Passphrase::new(ask("The same passphrase again: ")?.to_string())?;
        if !passphrase.matches(&again) {
            return Err(CaMoveError::PassphrasesDiffer.into());
        }
    }
    Ok(passphrase)
}

/// A passphrase file: only its owner may read it (like a BGP password_file), one line.
fn read_passphrase_file(path: &Path) -> Result<Zeroizing<String>, CaMoveError> {
    let problem = |problem: String| CaMoveError::PassphraseFile {
        path: path.to_path_buf(),
        problem,
    };
    let mode = std::fs::metadata(path)
        .map_err(|e| problem(e.to_string()))?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        return Err(problem(format!(
            "has mode {mode:04o}, readable by others; a passphrase file must be readable by its \
             owner only (chmod 600 {})",
            path.display()
        )));
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| problem(e.to_string()))?);
    let text = std::str::from_utf8(&bytes).map_err(|_| problem("is not UTF-8 text".into()))?;
    let line = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    if line.contains('\n') {
        return Err(problem("holds more than one line".into()));
    }
    Ok(Zeroizing::new(line.to_owned()))
}

impl From<CaMoveError> for CommandError {
    fn from(error: CaMoveError) -> Self {
        CommandError::CaMove(Box::new(error))
    }
}

impl From<BackupError> for CommandError {
    fn from(error: BackupError) -> Self {
        CaMoveError::Backup(error).into()
    }
}
