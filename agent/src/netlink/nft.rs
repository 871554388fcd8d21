//! meshd's own nftables tables: each feature that needs packet filtering keeps its rules in a
//! table of its own (family `inet`: one table for IPv4 and IPv6), which meshd creates whole,
//! replaces whole and deletes whole. Nothing else on the host's ruleset is read or changed, and
//! a table left by a crashed run is found by its name and replaced in the same transaction.
//!
//! One table per feature, not one shared table, so that each comes and goes with its own
//! stage of the daemon: removing the exit's NAT never touches the handshake guard, and an
//! operator can list one without the other.
//!
//! The rulesets are libnftables-json commands in the `nftables` crate's typed schema, built
//! by pure functions (tested without root); [`run`] hands them to the `nft` program (Debian
//! package `nftables`) as one atomic batch, `nft -j -f -`, a child process with arguments and
//! no shell. That costs a process per change, only at start and stop (docs/architecture.md
//! says why).

mod run;

use std::borrow::Cow;

use nftables::schema::{NfCmd, NfListObject, NfObject, Nftables, Table};
use nftables::types::NfFamily;

pub(crate) const ENOENT: i32 = 2;
pub(crate) const EPERM: i32 = 1;
pub(crate) const EOPNOTSUPP: i32 = 95;

/// One of meshd's tables: its name, and what to tell an operator when it cannot be made.
#[derive(Debug)]
pub struct OwnedTable {
    /// The table's name (family `inet`).
    pub name: &'static str,
    /// Who needs nft, for the error when it is missing: "an exit".
    pub needed_by: &'static str,
    /// What the kernel lacks when creating the table fails with ENOENT or EOPNOTSUPP.
    pub kernel_hint: &'static str,
}

/// What went wrong with one of meshd's tables; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The `nft` program is not on `PATH` nor in /usr/sbin.
    #[error(
        "cannot {operation} the nftables table inet {}: the nft program is not installed; {} \
         needs it: install the Debian package nftables",
        table.name,
        table.needed_by
    )]
    Missing {
        operation: &'static str,
        table: &'static OwnedTable,
    },

    /// nft refused the batch (its complaint is in `detail`), or could not be run.
    #[error(
        "cannot {operation} the nftables table inet {}: {detail}{}",
        table.name,
        hint(operation, *errno, table)
    )]
    Refused {
        operation: &'static str,
        table: &'static OwnedTable,
        detail: String,
        /// The kernel's errno, when nft's message names one.
        errno: Option<i32>,
    },
}

/// What to do about an nftables errno, in words.
fn hint(operation: &str, errno: Option<i32>, table: &OwnedTable) -> String {
    match errno {
        Some(EPERM) => " (meshd needs root or CAP_NET_ADMIN)".to_owned(),
        // Only creating asks for chain types and expressions the kernel may lack.
        Some(ENOENT | EOPNOTSUPP) if operation == "create" => {
            format!(" ({})", table.kernel_hint)
        }
        _ => String::new(),
    }
}

impl NftError {
    /// The kernel's errno, for refusals that name one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NftError::Refused { errno, .. } => *errno,
            NftError::Missing { .. } => None,
        }
    }
}

impl OwnedTable {
    /// The table itself, as a schema object.
    pub(crate) fn table(&self) -> Table<'static> {
        Table {
            family: NfFamily::INet,
            name: self.name.into(),
            handle: None,
        }
    }

    /// `add table` then `delete table`: nft's idiom for "delete if it exists". `add` does not
    /// fail on an existing table, so the pair succeeds either way and leaves no table.
    pub(crate) fn delete_any(&self) -> [NfObject<'static>; 2] {
        [
            command(NfCmd::Add(NfListObject::Table(self.table()))),
            command(NfCmd::Delete(NfListObject::Table(self.table()))),
        ]
    }

    /// The batch that removes the table, whether or not it exists.
    pub(crate) fn delete_batch(&self) -> Nftables<'static> {
        Nftables {
            objects: Cow::Owned(self.delete_any().to_vec()),
        }
    }

    /// The start of a batch that replaces the table: any stale one deleted, an empty one
    /// added. nft sends a whole batch as one netlink transaction, so the kernel applies all
    /// of it or none: there is no moment without the rules when a stale table is replaced.
    pub(crate) fn replacing(&self) -> Vec<NfObject<'static>> {
        let mut objects = self.delete_any().to_vec();
        objects.push(command(NfCmd::Add(NfListObject::Table(self.table()))));
        objects
    }

    /// Whether `nft -j list tables` output names this table in family `inet` (not `ip`
    /// or another family's table of the same name, which are not meshd's).
    pub(crate) fn listed_in(&self, tables: &Nftables) -> bool {
        tables.objects.iter().any(|object| {
            matches!(
                object,
                NfObject::ListObject(NfListObject::Table(table))
                    if table.family == NfFamily::INet && table.name == self.name
            )
        })
    }

    /// Applies `batch`, made by [`OwnedTable::replacing`] and more, as one transaction.
    /// Returns whether a stale table was there before (for the log). Blocking.
    pub(crate) fn install(&'static self, batch: &Nftables) -> Result<bool, NftError> {
        // Only for the log: the batch replaces a stale table by itself.
        let stale = self.exists_for("create")?;
        run::apply(self, "create", batch)?;
        Ok(stale)
    }

    /// Deletes the table; succeeds also when it is already gone. Blocking.
    pub(crate) fn remove(&'static self) -> Result<(), NftError> {
        run::apply(self, "delete", &self.delete_batch())
    }

    /// Whether the table exists in this network namespace. Blocking.
    pub fn exists(&'static self) -> Result<bool, NftError> {
        self.exists_for("list")
    }

    fn exists_for(&'static self, operation: &'static str) -> Result<bool, NftError> {
        Ok(self.listed_in(&run::list_tables(self, operation)?))
    }

    /// The table as nft lists it (`nft -j list table inet NAME`). Blocking.
    pub fn list(&'static self) -> Result<Nftables<'static>, NftError> {
        run::list_table(self, "list")
    }
}

pub(crate) fn command(command: NfCmd<'static>) -> NfObject<'static> {
    NfObject::CmdObject(command)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    static TABLE: OwnedTable = OwnedTable {
        name: "meshd",
        needed_by: "an exit",
        kernel_hint: "the kernel lacks nftables NAT",
    };

    #[test]
    fn removing_deletes_the_table_whether_or_not_it_exists() {
        let table = json!({"table": {"family": "inet", "name": "meshd"}});
        assert_eq!(
            serde_json::to_value(TABLE.delete_batch()).unwrap(),
            json!({"nftables": [{"add": table}, {"delete": table}]})
        );
    }

    #[test]
    fn errors_say_how_to_fix_them() {
        let refused = |operation, errno| NftError::Refused {
            operation,
            table: &TABLE,
            detail: "nft: it failed".into(),
            errno: Some(errno),
        };
        assert_eq!(
            refused("create", EPERM).to_string(),
            "cannot create the nftables table inet meshd: nft: it failed (meshd needs root or \
             CAP_NET_ADMIN)"
        );
        assert_eq!(
            refused("create", ENOENT).to_string(),
            "cannot create the nftables table inet meshd: nft: it failed (the kernel lacks \
             nftables NAT)"
        );
        // Deleting asks for nothing the kernel could lack.
        assert_eq!(
            refused("delete", ENOENT).to_string(),
            "cannot delete the nftables table inet meshd: nft: it failed"
        );
        assert_eq!(
            NftError::Missing {
                operation: "create",
                table: &TABLE
            }
            .to_string(),
            "cannot create the nftables table inet meshd: the nft program is not installed; an \
             exit needs it: install the Debian package nftables"
        );
    }

    #[test]
    fn only_the_inet_table_counts_as_meshd_s() {
        // What nft 1.0.6 prints for `nft -j list tables`.
        let listed = |tables: &str| -> Nftables<'static> {
            serde_json::from_str(&format!(
                r#"{{"nftables": [{{"metainfo": {{"version": "1.0.6", "release_name":
                "Lester Gooch #5", "json_schema_version": 1}}}}{tables}]}}"#
            ))
            .unwrap()
        };
        let ip = r#", {"table": {"family": "ip", "name": "meshd", "handle": 1}}"#;
        let inet = r#", {"table": {"family": "inet", "name": "meshd", "handle": 3}}"#;
        let other = r#", {"table": {"family": "inet", "name": "filter", "handle": 2}}"#;
        assert!(!TABLE.listed_in(&listed("")));
        assert!(!TABLE.listed_in(&listed(&format!("{ip}{other}"))));
        assert!(TABLE.listed_in(&listed(&format!("{ip}{other}{inet}"))));
    }
}
