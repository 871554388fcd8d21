//! A CA registry record (signature checked by the caller) applied to this node's copy of the
//! CA, `ca/db.json`. Pure: the caller reads and writes the file under the state lock.
//!
//! mesh-config's `registry::judge` says whether the record is news, and `registry::merge`
//! moves the allocator. What this adds is the copy's role: a standby follows the holder the
//! newest term names, and an active copy that is told of a newer term held by another node
//! (it was cut off, or dead, while that node took over) turns itself into a standby of it,
//! so that two holders never admit at once for longer than a partition lasts.

use mesh_config::registry::{Head, Judgement, Merged, RegistryRecord, judge, merge};

use super::{CaDatabase, Standby};

/// What applying a record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Merged into the registry (the file must be written).
    Merged {
        merged: Merged,
        /// This copy was active and is a standby of `holder` now.
        demoted: bool,
        /// Records came between the last one merged and this one and never arrived.
        missed: bool,
    },
    /// Nothing new.
    Seen,
    /// Refused, with why (for the log).
    Refused(String),
}

/// Applies `record` (its body hashed to `hash`) to the registry of node `own`.
pub fn apply_record(
    db: &mut CaDatabase,
    own: &str,
    record: &RegistryRecord,
    hash: &str,
) -> Applied {
    let head = db.registry_head(own);
    let (newer_term, missed) = match judge(&head, record, hash) {
        Judgement::Seen => return Applied::Seen,
        Judgement::Refuse(why) => return Applied::Refused(why),
        Judgement::Merge { newer_term, missed } => (newer_term, missed),
    };
    if record.holder == own && db.standby.is_some() {
        return Applied::Refused(format!(
            "it names this node holder of term {}, but this node is a standby",
            record.term
        ));
    }
    let merged = match merge(&mut db.allocator, record) {
        Ok(merged) => merged,
        Err(error) => return Applied::Refused(error.to_string()),
    };
    let mut demoted = false;
    if record.holder != own {
        if db.standby.is_none() && newer_term {
            demoted = true;
        }
        if db.standby.is_some() || demoted {
            db.standby = Some(Standby {
                active_holder: record.holder.clone(),
            });
        }
    }
    db.registry = Some(Head {
        term: record.term,
        holder: record.holder.clone(),
        version: record.version,
        hash: Some(hash.to_owned()),
    });
    Applied::Merged {
        merged,
        demoted,
        missed,
    }
}

/// What [`take_over`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakeOver {
    /// The holder this copy was a standby of.
    pub previous: String,
    /// The term this copy holds now.
    pub term: u64,
}

/// `meshd ca take-over` on the registry of standby `own`: the head moves to the next term,
/// held by `own` (version and hash kept, so the first record of the new term follows the last
/// one merged), and the standby mark goes. None if this copy is not a standby.
pub fn take_over(db: &mut CaDatabase, own: &str) -> Option<TakeOver> {
    let previous = db.standby.as_ref()?.active_holder.clone();
    let head = db.registry_head(own);
    let term = head.term + 1;
    db.registry = Some(Head {
        term,
        holder: own.to_owned(),
        version: head.version,
        hash: head.hash,
    });
    db.standby = None;
    Some(TakeOver { previous, term })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_config::Role;

    fn split(db: &mut CaDatabase) -> CaDatabase {
        db.allocator.split(2).unwrap();
        let mut standby = db.clone();
        standby.allocator = db.allocator.with_slot(1).unwrap();
        standby.standby = Some(Standby {
            active_holder: "alpha".into(),
        });
        standby
    }

    #[test]
    fn a_standby_merges_the_holder_and_an_old_holder_that_hears_a_newer_term_steps_down() {
        let mut holder = super::super::ca_db::tests::db();
        let mut standby = split(&mut holder);
        holder
            .allocator
            .allocate_node("gamma", Role::Core, None, None)
            .unwrap();
        let first = RegistryRecord::build(&holder.allocator, "friends", 1, "alpha", 1, None);
        let applied = apply_record(&mut standby, "beta", &first, "h1");
        assert!(
            matches!(&applied, Applied::Merged { merged, demoted: false, missed: false }
                if merged.added == ["gamma"]),
            "{applied:?}"
        );
        assert_eq!(standby.registry_head("beta").version, 1);
        assert_eq!(
            apply_record(&mut standby, "beta", &first, "h1"),
            Applied::Seen
        );

        // beta takes over (term 2) and publishes; alpha, back, becomes its standby.
        let mut took_over = standby.clone();
        assert_eq!(
            take_over(&mut holder.clone(), "alpha"),
            None,
            "not a standby"
        );
        assert_eq!(
            take_over(&mut took_over, "beta"),
            Some(TakeOver {
                previous: "alpha".into(),
                term: 2
            })
        );
        assert!(took_over.standby.is_none());
        let head = took_over.registry_head("beta");
        assert_eq!(
            (head.term, head.holder.as_str(), head.version),
            (2, "beta", 1)
        );
        assert_eq!(head.hash.as_deref(), Some("h1"));
        took_over
            .allocator
            .allocate_node("delta", Role::Core, None, None)
            .unwrap();
        let second = RegistryRecord::build(
            &took_over.allocator,
            "friends",
            2,
            "beta",
            2,
            Some("a1".repeat(32)),
        );
        let applied = apply_record(&mut holder, "alpha", &second, "h2");
        assert!(
            matches!(&applied, Applied::Merged { demoted: true, merged, .. }
                if merged.added == ["delta"]),
            "{applied:?}"
        );
        assert_eq!(holder.standby.as_ref().unwrap().active_holder, "beta");
        // An older term is refused from now on, by both.
        let stale = RegistryRecord::build(&holder.allocator, "friends", 1, "alpha", 9, None);
        assert!(matches!(
            apply_record(&mut holder, "alpha", &stale, "h3"),
            Applied::Refused(why) if why.contains("older than term 2 by beta")
        ));
    }
}
