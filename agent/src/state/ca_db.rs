//! `ca/db.json`: the CA holder's database — the allocator (who got which prefixes), the LAN
//! prefixes approved per node, the certificates issued, and outstanding invitations (only the
//! hash of each token's secret). It lives only on the CA holder.

use std::collections::BTreeMap;

use ipnet::IpNet;
use mesh_config::alloc::Allocator;
use pki::{InvitationRecord, SerialNumber};
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
        self.invitations
            .iter()
            .filter(move |invitation| !invitation.used && invitation.expires_at > now)
    }
}
