//! The CA side of invitations: creating one (token for the person, record for the CA database)
//! and redeeming it exactly once.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

use crate::ca::{CertificateAuthority, truncate_to_seconds};
use crate::identity::{Approvals, NodeRole};
use crate::token::{InvitationSecret, InvitationToken, TokenError, fresh_secret, validate_terms};

/// What `meshd invite` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationRequest {
    /// The invited node's name.
    pub name: String,
    /// Core or spoke.
    pub role: NodeRole,
    /// For a spoke, the core it will connect to.
    pub core: Option<String>,
    /// LAN prefixes the node may announce.
    pub lan_prefixes: Vec<IpNet>,
    /// Exit and anycast approvals for the node's certificate.
    pub approvals: Approvals,
    /// A router that runs no meshd, admitted by its core (`meshd router add`) on its behalf.
    pub foreign: bool,
    /// Where the joiner reaches the CA holder (`host:port`).
    pub endpoints: Vec<String>,
    /// How long the invitation stays valid.
    pub ttl: Duration,
}

/// What the CA keeps about an invitation: everything except the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationRecord {
    pub name: String,
    pub role: NodeRole,
    pub core: Option<String>,
    pub lan_prefixes: Vec<IpNet>,
    /// Absent when empty, so databases without approvals stay readable by older versions.
    #[serde(default, skip_serializing_if = "Approvals::is_empty")]
    pub approvals: Approvals,
    /// For a router that runs no meshd: its core redeems the token for it (`meshd router
    /// add`). Absent when false, so databases stay readable by older versions.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub foreign: bool,
    /// SHA-256 of the secret, hex in JSON.
    #[serde(with = "crate::encoding::hex32")]
    pub secret_hash: [u8; 32],
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// Set by a successful [`redeem`], and by [`InvitationRecord::cancel`]; a used invitation
    /// never works again. A cancellation sets it too, so that a meshd from before
    /// `cancelled_at` existed (which ignores that field, and drops it when it rewrites the
    /// database) still refuses the token, as used.
    pub used: bool,
    /// When the operator cancelled the invitation (`meshd invite --cancel`); its token is
    /// refused from then on. Absent when not cancelled, so databases without cancellations
    /// stay as older versions wrote and read them.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub cancelled_at: Option<OffsetDateTime>,
}

impl InvitationRecord {
    /// Makes the invitation unusable from `now` on (see `used` for why both are set).
    pub fn cancel(&mut self, now: OffsetDateTime) {
        self.cancelled_at = Some(truncate_to_seconds(now));
        self.used = true;
    }

    /// Whether `presented` is this invitation's secret; in constant time, so response timing
    /// says nothing about how much of the hash matched.
    pub fn secret_matches(&self, presented: &InvitationSecret) -> bool {
        presented.hash().ct_eq(&self.secret_hash).into()
    }
}

/// Creates an invitation for the CA whose certificate fingerprint is `ca_fingerprint`: the
/// token to hand to the person, and the record for the CA database.
pub fn create_invitation(
    request: &InvitationRequest,
    ca_fingerprint: [u8; 32],
    now: OffsetDateTime,
) -> Result<(InvitationToken, InvitationRecord), TokenError> {
    validate_terms(
        &request.name,
        request.role,
        request.core.as_deref(),
        &request.lan_prefixes,
        &request.endpoints,
    )?;
    if !request.ttl.is_positive() {
        return Err(TokenError::Request(format!(
            "time to live {} is not positive",
            request.ttl
        )));
    }
    let expires_at = now
        .checked_add(request.ttl)
        .map(truncate_to_seconds)
        .ok_or_else(|| TokenError::Request(format!("time to live {} is too long", request.ttl)))?;
    let secret = fresh_secret()?;
    let record = InvitationRecord {
        name: request.name.clone(),
        role: request.role,
        core: request.core.clone(),
        lan_prefixes: request.lan_prefixes.clone(),
        approvals: request.approvals.clone(),
        foreign: request.foreign,
        secret_hash: secret.hash(),
        expires_at,
        used: false,
        cancelled_at: None,
    };
    let token = InvitationToken {
        name: request.name.clone(),
        role: request.role,
        core: request.core.clone(),
        lan_prefixes: request.lan_prefixes.clone(),
        ca_fingerprint,
        endpoints: request.endpoints.clone(),
        secret,
        expires_at,
    };
    Ok((token, record))
}

impl CertificateAuthority {
    /// [`create_invitation`] for this CA.
    pub fn invite(
        &self,
        request: &InvitationRequest,
        now: OffsetDateTime,
    ) -> Result<(InvitationToken, InvitationRecord), TokenError> {
        create_invitation(request, self.fingerprint(), now)
    }
}

/// Redeems `record` for a joiner that presents `presented_secret` under `name` at `now`, and
/// marks it used. The caller must persist the record afterwards, before issuing anything.
///
/// Checks run in this order: name, secret, cancellation, reuse, expiry; so someone without the
/// secret learns nothing about the state of the invitation, and the holder of a cancelled
/// token learns that it was cancelled (not "used", which a cancellation also sets).
pub fn redeem(
    record: &mut InvitationRecord,
    presented_secret: &InvitationSecret,
    name: &str,
    now: OffsetDateTime,
) -> Result<(), TokenError> {
    if record.name != name {
        return Err(TokenError::WrongName {
            invited: record.name.clone(),
            presented: name.to_owned(),
        });
    }
    if !record.secret_matches(presented_secret) {
        return Err(TokenError::WrongSecret);
    }
    if let Some(cancelled_at) = record.cancelled_at {
        return Err(TokenError::Cancelled {
            name: record.name.clone(),
            cancelled_at,
        });
    }
    if record.used {
        return Err(TokenError::AlreadyUsed);
    }
    if now >= record.expires_at {
        return Err(TokenError::Expired {
            expires_at: record.expires_at,
        });
    }
    record.used = true;
    Ok(())
}
