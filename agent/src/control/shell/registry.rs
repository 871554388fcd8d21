//! The CA registry record in the running daemon (docs/architecture.md, "The CA: backup, move,
//! and a standby"): the active holder of a split registry publishes one whenever `ca/db.json`
//! changes what it says, and a node with a copy of the CA (a standby, or an old holder) merges
//! every newer one into its own `ca/db.json`. File work runs on a blocking thread, under the
//! state lock; the pure parts are `mesh_config::registry` and `state::ca_registry`.

use std::time::SystemTime;

use mesh_config::registry::{Head, RegistryRecord};
use pki::CertificateAuthority;

use super::hub::{Event, Hub};
use crate::api::client_registry::number_locally_after_ca;
use crate::control::registry::{SignedRegistry, VerifiedRegistry};
use crate::state::ca_registry::{Applied, apply_record};
use crate::state::{StateDir, StateError};

/// What the publisher remembers between ticks.
#[derive(Debug, Default)]
pub(super) struct Publisher {
    /// `ca/db.json`'s modification time and length when it was last looked at.
    stamp: Option<(SystemTime, u64)>,
    /// The last record published (to tell whether a change of the file changed it).
    last: Option<RegistryRecord>,
    /// A look at the file is running on a blocking thread.
    busy: bool,
}

/// Whether `new` says something `old` does not (versions and chain aside).
fn same_content(old: &RegistryRecord, new: &RegistryRecord) -> bool {
    old.term == new.term
        && old.holder == new.holder
        && old.counters == new.counters
        && old.from == new.from
        && old.nodes == new.nodes
        && old.revoked == new.revoked
}

impl Hub {
    /// Called every tick: when `ca/db.json` changed, a blocking thread builds the record
    /// and, if it says something new, signs it and stores the new head.
    pub(super) fn poll_registry(&mut self) {
        if self.registry.busy {
            return;
        }
        let state = self.settings.state.clone();
        let stamp = std::fs::metadata(state.ca_db_path())
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        if stamp.is_none() || stamp == self.registry.stamp {
            return;
        }
        self.registry.stamp = stamp;
        self.registry.busy = true;
        let own = self.own.identity.name.clone();
        let last = self.registry.last.clone();
        let events = self.events_tx.clone();
        tokio::task::spawn_blocking(move || {
            let result = publish(&state, &own, last.as_ref()).map_err(|e| e.to_string());
            let _ = events.blocking_send(Event::RegistryBuilt(result));
        });
    }

    /// The blocking thread's answer: a new record to spread, nothing new, or why not.
    pub(super) fn registry_built(
        &mut self,
        result: Result<Option<(RegistryRecord, SignedRegistry)>, String>,
    ) {
        self.registry.busy = false;
        match result {
            Ok(Some((record, signed))) => {
                tracing::info!(
                    term = record.term,
                    version = record.version,
                    nodes = record.nodes.len(),
                    revoked = record.revoked.len(),
                    "CA registry record published"
                );
                self.registry.last = Some(record);
                let actions = self.membership.set_own_registry(signed);
                self.apply(actions);
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "cannot publish the CA registry record"),
        }
    }

    /// A newer registry record arrived: its holder is where renewals go from now on (every
    /// node), and it is merged on a blocking thread if this node keeps a copy of the CA.
    pub(super) fn merge_registry(&mut self, verified: VerifiedRegistry) {
        if verified.record.holder != self.own.ca_holder {
            self.found_ca_holder(verified.record.holder.clone());
        }
        let state = self.settings.state.clone();
        let own = self.own.identity.name.clone();
        tokio::task::spawn_blocking(move || {
            if !state.has_ca_copy() {
                return;
            }
            let record = &verified.record;
            match merge_in_state(&state, &own, &verified) {
                Ok(Applied::Merged {
                    merged,
                    demoted,
                    missed,
                }) => {
                    if demoted {
                        tracing::warn!(term = record.term, holder = %record.holder,
                            "{} took over the CA (term {}): this node is a standby of it from \
                             now on and admits, renews and revokes nothing",
                            record.holder, record.term);
                    }
                    if missed {
                        tracing::info!(
                            version = record.version,
                            "CA registry records were missed before this one; its window of \
                             recent nodes covers them"
                        );
                    }
                    for problem in &merged.problems {
                        tracing::warn!(%problem, "CA registry record entry not merged");
                    }
                    if merged.changed() || demoted {
                        tracing::info!(term = record.term, version = record.version,
                            holder = %record.holder, added = ?merged.added,
                            revoked = ?merged.revoked, "CA registry record merged");
                    }
                }
                Ok(Applied::Seen) => {}
                Ok(Applied::Refused(why)) => tracing::warn!(term = record.term,
                    holder = %record.holder, "CA registry record refused: {why}"),
                Err(error) => tracing::warn!(%error, "cannot merge the CA registry record"),
            }
        });
    }
}

/// Builds this node's registry record if it is the active holder of a split registry and
/// the record says something `last` did not; signs it and stores the new head.
fn publish(
    state: &StateDir,
    own: &str,
    last: Option<&RegistryRecord>,
) -> Result<Option<(RegistryRecord, SignedRegistry)>, StateError> {
    if !state.has_ca_copy() {
        return Ok(None);
    }
    let _lock = state.lock()?;
    let mut db = state.read_ca_db()?;
    if db.standby.is_some() || db.allocator.share().is_sole() {
        return Ok(None);
    }
    let head = db.registry_head(own);
    // A copy that became active without `meshd ca take-over` (a standby's backup restored as
    // the CA) claims the next term.
    let term = if head.holder == own {
        head.term
    } else {
        head.term + 1
    };
    let ca_pem = state.read_certificate(&state.ca_cert_path())?;
    let ca_key = state.read_ca_key()?;
    let ca = CertificateAuthority::from_pem(&ca_pem, &ca_key).map_err(|e| StateError::Corrupt {
        path: state.ca_key_path(),
        reason: e.to_string(),
    })?;
    let record = RegistryRecord::build(
        &db.allocator,
        ca.mesh_name(),
        term,
        own,
        head.version + 1,
        head.hash.clone(),
    );
    if last.is_some_and(|last| same_content(last, &record)) {
        return Ok(None);
    }
    let signed = SignedRegistry::sign(&ca, &record).map_err(|e| StateError::Corrupt {
        path: state.ca_key_path(),
        reason: e.to_string(),
    })?;
    db.registry = Some(Head {
        term,
        holder: own.to_owned(),
        version: record.version,
        hash: Some(pki::sha256_hex(&signed.body)),
    });
    state.write_ca_db(&db)?;
    Ok(Some((record, signed)))
}

/// Applies a verified record to `ca/db.json` under the state lock; a standby that now
/// follows another holder also names it in `node.json`, where its own renewals go.
fn merge_in_state(
    state: &StateDir,
    own: &str,
    verified: &VerifiedRegistry,
) -> Result<Applied, StateError> {
    let _lock = state.lock()?;
    let mut db = state.read_ca_db()?;
    let applied = apply_record(&mut db, own, &verified.record, &verified.hash);
    if let Applied::Merged { demoted, .. } = &applied {
        if let Some(standby) = &db.standby {
            let mut record = state.read_node_record()?;
            if *demoted {
                // Its own clients were numbered by the CA allocator: go on after them.
                number_locally_after_ca(state, &record.allocation, &db.allocator)?;
            }
            if record.ca_holder.as_deref() != Some(&standby.active_holder) {
                record.ca_holder = Some(standby.active_holder.clone());
                state.write_node_record(&record)?;
            }
        }
        state.write_ca_db(&db)?;
    }
    Ok(applied)
}
