//! `ca/db.json`: the CA holder's database — the allocator (who got which prefixes), the LAN
//! prefixes approved per node, the certificates issued, and outstanding invitations (only the
//! hash of each token's secret). It lives only on the CA holder.

use std::collections::BTreeMap;

use ipnet::IpNet;
use mesh_config::alloc::Allocator;
use mesh_config::registry::Head;
use pki::{InvitationRecord, SerialNumber, rfc3339};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Format version of `ca/db.json`.
pub const CA_DB_VERSION: u32 = 1;

/// The content of `ca/db.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaDatabase {
    /// Node indexes and prefixes; never hands anything out twice.
    pub allocator: Allocator,
    /// Extra LAN prefixes approved per admitted node (by name).
    pub lan_prefixes: BTreeMap<String, Vec<IpNet>>,
    /// Exit and anycast approvals per admitted node (by name); absent when empty, so files
    /// without approvals stay readable by older versions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub approvals: BTreeMap<String, pki::Approvals>,
    /// Every certificate this CA issued, in order.
    pub certificates: Vec<CertificateRecord>,
    /// Invitations, used or not (never the secret, only its hash).
    pub invitations: Vec<InvitationRecord>,
    /// Names of revoked nodes that an operator freed (`meshd ca free-name`): they may be
    /// invited again. A revocation burns the name again. Absent when empty, so files without
    /// freed names stay readable by older versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freed_names: Vec<String>,
    /// Set on a standby copy of the CA (`meshd ca restore --standby`): it keeps the CA key
    /// and a registry but admits, renews and revokes nothing. Absent on the active holder, so
    /// registries from before the standby are read and written as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby: Option<Standby>,
    /// The newest CA registry record this copy published (active) or merged (standby):
    /// term, holder, version and hash (mesh-config `registry`). Absent until the first one,
    /// so registries from before the record are read and written as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<Head>,
}

impl CaDatabase {
    /// The newest record this copy knows of, or what it assumes before any: term 1, held by
    /// this node `own` (active) or by the standby's active holder.
    pub fn registry_head(&self, own: &str) -> Head {
        self.registry.clone().unwrap_or_else(|| {
            Head::initial(
                self.standby
                    .as_ref()
                    .map_or(own, |s| s.active_holder.as_str()),
            )
        })
    }
}

/// What a standby copy of the CA knows of the active one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Standby {
    /// The node that admits and renews.
    pub active_holder: String,
}

impl Standby {
    /// What a standby answers a join, a renewal or a CA command with.
    pub fn refusal(&self) -> String {
        format!(
            "this node is a standby of the CA; the active holder is {}",
            self.active_holder
        )
    }
}

/// One issued certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateRecord {
    /// The node it was issued to.
    pub name: String,
    /// Its serial number, for revocation lists.
    pub serial: SerialNumber,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

impl CaDatabase {
    /// A new database around `allocator`, with nothing issued yet.
    pub fn new(allocator: Allocator) -> Self {
        Self {
            allocator,
            lan_prefixes: BTreeMap::new(),
            approvals: BTreeMap::new(),
            certificates: Vec::new(),
            invitations: Vec::new(),
            freed_names: Vec::new(),
            standby: None,
            registry: None,
        }
    }

    /// Whether `name` belonged to a revoked node and was not freed since: it is not handed
    /// out again, so nobody mistakes a newcomer for the node that was thrown out.
    pub fn name_is_burnt(&self, name: &str) -> bool {
        self.allocator.is_revoked(name) && !self.freed_names.iter().any(|n| n == name)
    }

    /// Invitations that can still be redeemed at `now`.
    pub fn pending_invitations(
        &self,
        now: OffsetDateTime,
    ) -> impl Iterator<Item = &InvitationRecord> {
        self.open_invitations()
            .filter(move |invitation| invitation.expires_at > now)
    }

    /// The invitations nobody redeemed or cancelled, expired ones included, in the order they
    /// were made: what `meshd invite --list` shows. Only the newest invitation of a name
    /// counts; an older one was superseded when the name was invited again.
    pub fn open_invitations(&self) -> impl Iterator<Item = &InvitationRecord> {
        self.invitations
            .iter()
            .enumerate()
            .filter_map(|(i, invitation)| {
                let superseded = self.invitations[i + 1..]
                    .iter()
                    .any(|later| later.name == invitation.name);
                let open = !invitation.used && invitation.cancelled_at.is_none() && !superseded;
                open.then_some(invitation)
            })
    }

    /// Cancels the newest invitation for `name` at `now`, so that its token is refused from
    /// then on, and returns it. An expired invitation may be cancelled too: it then leaves the
    /// list of open invitations. The name may be invited again afterwards (the node never
    /// joined), unless the rules for revoked names forbid it.
    pub fn cancel_invitation(
        &mut self,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<&InvitationRecord, CancelError> {
        let member = self.allocator.node(name).is_some();
        let Some(invitation) = self.invitations.iter_mut().rev().find(|i| i.name == name) else {
            return Err(if member {
                CancelError::Member(name.to_owned())
            } else {
                CancelError::NoInvitation(name.to_owned())
            });
        };
        if let Some(at) = invitation.cancelled_at {
            return Err(CancelError::AlreadyCancelled {
                name: name.to_owned(),
                at,
            });
        }
        if invitation.used {
            return Err(if member {
                CancelError::Member(name.to_owned())
            } else {
                CancelError::UsedAndRevoked(name.to_owned())
            });
        }
        invitation.cancel(now);
        Ok(invitation)
    }
}

/// Why an invitation could not be cancelled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelError {
    #[error("there is no invitation for {0:?} (`meshd invite --list` shows the open ones)")]
    NoInvitation(String),
    #[error(
        "{0:?} has joined the mesh with its invitation; to remove the node, run `meshd revoke {0}`"
    )]
    Member(String),
    #[error("the invitation for {name:?} was cancelled already, at {}", rfc3339(*.at))]
    AlreadyCancelled { name: String, at: OffsetDateTime },
    #[error(
        "the invitation for {0:?} was used: the node joined and was revoked since; there is \
         nothing left to cancel"
    )]
    UsedAndRevoked(String),
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use mesh_config::{AddressPlan, Role};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-21 10:00 UTC);

    /// A database with one node, alpha, for tests of what is built on it.
    pub(in crate::state) fn db() -> CaDatabase {
        let plan = AddressPlan::new(
            "10.0.0.0/8".parse().unwrap(),
            16,
            "fd00:1:2::/48".parse().unwrap(),
        )
        .unwrap();
        let mut allocator = Allocator::new(plan).unwrap();
        allocator
            .allocate_node("alpha", Role::Core, None, None)
            .unwrap();
        CaDatabase::new(allocator)
    }

    fn invite(db: &mut CaDatabase, name: &str, expires_at: OffsetDateTime) {
        db.invitations.push(InvitationRecord {
            name: name.to_owned(),
            role: pki::NodeRole::Core,
            core: None,
            lan_prefixes: vec![],
            approvals: pki::Approvals::default(),
            foreign: false,
            secret_hash: [7; 32],
            expires_at,
            used: false,
            cancelled_at: None,
        });
    }

    fn names<'a>(list: impl Iterator<Item = &'a InvitationRecord>) -> Vec<&'a str> {
        list.map(|i| i.name.as_str()).collect()
    }

    #[test]
    fn a_cancelled_invitation_is_neither_open_nor_pending_and_its_name_is_free() {
        let mut db = db();
        let tomorrow = NOW + time::Duration::days(1);
        invite(&mut db, "beta", tomorrow);
        invite(&mut db, "gamma", tomorrow);
        assert_eq!(names(db.pending_invitations(NOW)), ["beta", "gamma"]);

        let at = NOW + time::Duration::minutes(5);
        let cancelled = db.cancel_invitation("beta", at).unwrap();
        assert_eq!(cancelled.cancelled_at, Some(at));
        assert_eq!(names(db.open_invitations()), ["gamma"]);
        assert_eq!(names(db.pending_invitations(at)), ["gamma"]);

        let err = db.cancel_invitation("beta", at).unwrap_err();
        assert_eq!(
            err,
            CancelError::AlreadyCancelled {
                name: "beta".into(),
                at
            }
        );
        assert!(err.to_string().contains("2026-11-21T10:05:00Z"), "{err}");

        // Invited again: the new invitation is open, the cancelled one stays cancelled.
        invite(&mut db, "beta", tomorrow);
        assert_eq!(names(db.open_invitations()), ["gamma", "beta"]);
        assert_eq!(db.invitations[0].cancelled_at, Some(at));
        assert!(db.invitations[2].cancelled_at.is_none());
    }

    #[test]
    fn expired_invitations_are_open_until_cancelled_or_superseded() {
        let mut db = db();
        let yesterday = NOW - time::Duration::days(1);
        invite(&mut db, "beta", yesterday);
        invite(&mut db, "gamma", yesterday);
        assert_eq!(names(db.open_invitations()), ["beta", "gamma"]);
        assert_eq!(names(db.pending_invitations(NOW)), Vec::<&str>::new());

        db.cancel_invitation("beta", NOW).unwrap();
        invite(&mut db, "gamma", NOW + time::Duration::hours(1));
        let open: Vec<_> = db
            .open_invitations()
            .map(|i| (&*i.name, i.expires_at))
            .collect();
        assert_eq!(open, [("gamma", NOW + time::Duration::hours(1))]);
    }

    #[test]
    fn used_invitations_are_not_cancelled_and_the_error_says_what_to_do() {
        let mut db = db();
        assert_eq!(
            db.cancel_invitation("beta", NOW).unwrap_err(),
            CancelError::NoInvitation("beta".into())
        );
        // The CA holder itself never had an invitation, and is a member.
        assert!(
            db.cancel_invitation("alpha", NOW)
                .unwrap_err()
                .to_string()
                .contains("meshd revoke alpha")
        );

        invite(&mut db, "beta", NOW + time::Duration::days(1));
        db.invitations[0].used = true;
        db.allocator
            .allocate_node("beta", Role::Core, None, None)
            .unwrap();
        assert_eq!(
            db.cancel_invitation("beta", NOW).unwrap_err(),
            CancelError::Member("beta".into())
        );
        db.allocator.revoke("beta").unwrap();
        assert_eq!(
            db.cancel_invitation("beta", NOW).unwrap_err(),
            CancelError::UsedAndRevoked("beta".into())
        );
        assert!(db.invitations[0].cancelled_at.is_none());
    }

    #[test]
    fn a_standby_says_so_and_an_active_registry_is_written_as_before() {
        let mut db = db();
        let text = serde_json::to_string(&db).unwrap();
        assert!(!text.contains("standby"), "{text}");
        db.standby = Some(Standby {
            active_holder: "alpha".into(),
        });
        let text = serde_json::to_string(&db).unwrap();
        assert!(
            text.contains(r#""standby":{"active_holder":"alpha"}"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<CaDatabase>(&text).unwrap(), db);
        assert_eq!(
            db.standby.unwrap().refusal(),
            "this node is a standby of the CA; the active holder is alpha"
        );
    }

    #[test]
    fn a_database_without_cancellations_is_written_as_before() {
        let mut db = db();
        invite(&mut db, "beta", NOW);
        let text = serde_json::to_string(&db).unwrap();
        assert!(!text.contains("cancelled_at"), "{text}");
        db.cancel_invitation("beta", NOW).unwrap();
        let text = serde_json::to_string(&db).unwrap();
        assert!(
            text.contains(r#""cancelled_at":"2026-11-21T10:00:00Z""#),
            "{text}"
        );
        let back: CaDatabase = serde_json::from_str(&text).unwrap();
        assert_eq!(back, db);
    }
}
