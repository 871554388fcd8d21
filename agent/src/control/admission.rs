//! The CA side of a join (redeem the invitation, allocate, issue, persist) and of a
//! certificate renewal (re-issue what the CA database holds for a member, for the same key).
//! Blocking file I/O on the state directory (call it from a blocking thread). Every refusal
//! is a sentence for the person running `meshd join` or reading the member's log.

use mesh_config::alloc::AllocError;
use mesh_config::names::check_node_name;
use pki::{CertificateAuthority, Crl, IssuedCertificate, NodeCertificate, TokenError};
use time::{Duration, OffsetDateTime};

use super::message::{JoinAccepted, JoinRequest};
use super::record::SignedRecord;
use super::store;
use crate::identity::{node_identity, node_role};
use crate::state::{CaDatabase, CertificateRecord, StateDir, StateLock};

/// Why a join was refused; the text goes back to the joiner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// What the CA holder adds to an acceptance besides the issued certificate.
#[derive(Debug, Clone)]
pub struct MeshFacts {
    pub asn: u32,
    /// How long the node's certificate is valid.
    pub certificate_validity: Duration,
    pub members: Vec<SignedRecord>,
    pub crl: Option<Vec<u8>>,
}

/// Admits the node that sent `request`, or says why not. Nothing is written on refusal; on
/// success the invitation is marked used and the certificate recorded before the answer
/// leaves this function.
pub fn admit(
    state: &StateDir,
    request: &JoinRequest,
    facts: MeshFacts,
    now: OffsetDateTime,
) -> Result<JoinAccepted, Refusal> {
    let refuse = |text: String| Refusal(text);
    check_node_name(&request.name).map_err(|reason| refuse(format!("name: {reason}")))?;
    if let Some(standby) = state.ca_standby() {
        return Err(refuse(standby.refusal()));
    }
    if !state.is_ca_holder() {
        return Err(refuse(
            "this node does not hold the mesh CA; use an endpoint of the CA holder (the token lists them)".into(),
        ));
    }
    let internal = internal_failure(&request.name, "join");
    let OpenCa { _lock, mut db, ca } = open_ca(state, &internal)?;
    if let Some(standby) = &db.standby {
        return Err(refuse(standby.refusal()));
    }

    // The invitation the token belongs to: the one under this name whose secret it carries.
    // A name invited again (after a cancellation, an expiry or a revocation) also has older
    // invitations, all unusable, and an old token is told why its own one is (cancelled,
    // expired) rather than that it is not the latest. Without a match the newest decides,
    // and says the secret is wrong. Two usable invitations for one name never exist: `meshd
    // invite` refuses a name with a pending one.
    let mut named = db
        .invitations
        .iter_mut()
        .rev()
        .filter(|i| i.name == request.name);
    let Some(newest) = named.next() else {
        return Err(refuse(format!(
            "there is no invitation for {:?} at this CA; ask for one with `meshd invite {}`",
            request.name, request.name
        )));
    };
    let invitation = if newest.secret_matches(&request.secret) {
        newest
    } else {
        named
            .find(|i| i.secret_matches(&request.secret))
            .unwrap_or(newest)
    };
    pki::redeem(invitation, &request.secret, &request.name, now).map_err(|e| match e {
        TokenError::WrongSecret => refuse(
            "the token's secret does not match the invitation for this name; is it the latest token?".into(),
        ),
        other => refuse(other.to_string()),
    })?;
    let invitation = invitation.clone();
    check_host(&invitation, request).map_err(refuse)?;
    let role = match invitation.role {
        pki::NodeRole::Core => mesh_config::Role::Core,
        pki::NodeRole::Spoke => mesh_config::Role::Spoke,
    };
    let allocation = db
        .allocator
        .allocate_node(&request.name, role, invitation.core.as_deref(), None)
        .map_err(|e| match e {
            AllocError::DuplicateName(name) => {
                refuse(format!("the name {name:?} is already taken in this mesh"))
            }
            other => refuse(format!("no addresses could be allocated: {other}")),
        })?;
    debug_assert_eq!(node_role(allocation.role), invitation.role);
    let identity = node_identity(
        &allocation,
        &invitation.lan_prefixes,
        &invitation.approvals,
        request.wireguard_key,
        invitation.foreign,
    );
    let issued = ca
        .issue_node_certificate(&request.csr_pem, &identity, now, facts.certificate_validity)
        .map_err(|e| refuse(format!("the certificate request was refused: {e}")))?;
    db.lan_prefixes
        .insert(request.name.clone(), invitation.lan_prefixes.clone());
    if !invitation.approvals.is_empty() {
        db.approvals
            .insert(request.name.clone(), invitation.approvals.clone());
    }
    db.certificates.push(CertificateRecord {
        name: request.name.clone(),
        serial: issued.serial.clone(),
        not_before: issued.not_before,
        not_after: issued.not_after,
    });
    let plan = *db.allocator.plan();
    state
        .write_ca_db(&db)
        .map_err(|e| internal("cannot write its CA database", &e))?;
    tracing::info!(node = %request.name, role = %invitation.role, index = allocation.index, "admitted a new node");
    Ok(JoinAccepted {
        certificate_pem: issued.pem,
        ca_certificate_pem: ca.cert_pem(),
        mesh_name: ca.mesh_name().to_owned(),
        allocation,
        lan_prefixes: invitation.lan_prefixes,
        pool4: plan.pool4,
        node_prefix_len4: plan.node_prefix_len4,
        pool6: plan.pool6,
        asn: facts.asn,
        members: facts.members,
        crl: facts.crl,
    })
}

/// How the CA holder renews: for how long, and how long after an expiry.
#[derive(Debug, Clone, Copy)]
pub struct RenewalTerms {
    /// Validity of the new certificate.
    pub validity: Duration,
    /// A certificate that expired up to this long ago is still renewed
    /// ([`crate::identity::RENEWAL_GRACE`] by default).
    pub grace: Duration,
}

/// Re-issues the certificate of the member that presented `current` on an authenticated
/// connection (so it holds `current`'s key): same name, role, allocation, approved LANs and
/// WireGuard key, for the key in `csr_pem`, which must be `current`'s. Refused for a node that
/// was revoked or whose certificate this CA did not issue, and for a certificate that
/// expired more than `terms.grace` ago. The new certificate is recorded in the CA database
/// before it is returned.
///
/// An expired certificate (within the grace) gets no more than a valid one: the name,
/// allocation, LAN prefixes and approvals come from the CA database, the WireGuard key from
/// the certificate this CA signed and recorded by serial, the TLS key must be the same.
pub fn renew(
    state: &StateDir,
    current: &NodeCertificate,
    csr_pem: &str,
    now: OffsetDateTime,
    terms: RenewalTerms,
) -> Result<IssuedCertificate, Refusal> {
    let name = &current.identity.name;
    let refuse = |text: String| Refusal(text);
    if let Some(standby) = state.ca_standby() {
        return Err(refuse(standby.refusal()));
    }
    if !state.is_ca_holder() {
        return Err(refuse("this node does not hold the mesh CA".into()));
    }
    let internal = internal_failure(name, "renewal");
    let OpenCa { _lock, mut db, ca } = open_ca(state, &internal)?;
    if let Some(standby) = &db.standby {
        return Err(refuse(standby.refusal()));
    }
    let revoked = match store::read_crl(state)
        .map_err(|e| internal("cannot read its revocation list", &e))?
    {
        Some(der) => Crl::parse(&der, ca.cert_der())
            .map_err(|e| internal("cannot read its revocation list", &e))?
            .is_revoked(&current.serial),
        None => false,
    };
    if revoked {
        return Err(refuse(format!(
            "the certificate {} of {name} is revoked",
            current.serial
        )));
    }
    if !db
        .certificates
        .iter()
        .any(|c| c.name == *name && c.serial == current.serial)
    {
        return Err(refuse(format!(
            "this CA has no record of issuing certificate {} to {name}",
            current.serial
        )));
    }
    let grace_until = current.not_after + terms.grace;
    if now > grace_until {
        return Err(refuse(format!(
            "the certificate {} of {name} expired at {}, and the renewal grace window ended at \
             {grace_until}: it can no longer be renewed; on the CA holder run `meshd revoke \
             {name}`, `meshd ca free-name {name}` and invite it again",
            current.serial, current.not_after
        )));
    }
    let Some(allocation) = db.allocator.node(name).cloned() else {
        return Err(refuse(format!(
            "{name} is no longer a member of the mesh (revoked)"
        )));
    };
    let asked = pki::csr_public_key_der(csr_pem)
        .map_err(|e| refuse(format!("the certificate request was refused: {e}")))?;
    if asked != current.public_key_der {
        return Err(refuse(
            "the certificate request is for another key than the certificate being renewed; \
             a renewal keeps the node's key"
                .into(),
        ));
    }
    let lan_prefixes = db.lan_prefixes.get(name).cloned().unwrap_or_default();
    // From the database, so that approvals granted or withdrawn since take effect.
    let approvals = db.approvals.get(name).cloned().unwrap_or_default();
    let identity = node_identity(
        &allocation,
        &lan_prefixes,
        &approvals,
        current.identity.wireguard_key,
        current.identity.foreign,
    );
    let issued = ca
        .issue_node_certificate(csr_pem, &identity, now, terms.validity)
        .map_err(|e| refuse(format!("the certificate request was refused: {e}")))?;
    if current.not_after < now {
        tracing::info!(node = %name, expired_at = %current.not_after, %grace_until,
            "renewing an expired certificate within the grace window");
    }
    db.certificates.push(CertificateRecord {
        name: name.clone(),
        serial: issued.serial.clone(),
        not_before: issued.not_before,
        not_after: issued.not_after,
    });
    state
        .write_ca_db(&db)
        .map_err(|e| internal("cannot write its CA database", &e))?;
    tracing::info!(node = %name, serial = %issued.serial, not_after = %issued.not_after, "renewed a node certificate");
    Ok(issued)
}

/// A foreign router's invitation is redeemed by its core (`meshd router add`), any other by
/// the node itself (`meshd join`): the token says which, so a token cannot make a meshd node
/// out of a router entry, or the reverse.
fn check_host(invitation: &pki::InvitationRecord, request: &JoinRequest) -> Result<(), String> {
    let name = &invitation.name;
    let core = invitation.core.as_deref().unwrap_or("its core");
    match (&request.hosted_by, invitation.foreign) {
        (None, false) => Ok(()),
        (Some(host), true) if Some(host.as_str()) == invitation.core.as_deref() => Ok(()),
        (Some(host), true) => Err(format!(
            "{name} is a foreign router hosted by {core}, not by {host}; run `meshd router add` \
             on {core}"
        )),
        (None, true) => Err(format!(
            "{name} was invited as a foreign router (it runs no meshd): its core admits it with \
             `meshd router add TOKEN` on {core}"
        )),
        (Some(_), false) => Err(format!(
            "{name} was invited as a node that runs meshd (`meshd join TOKEN` on it); to let \
             {core} stand in for a router, invite it with --foreign"
        )),
    }
}

/// The CA holder's state, locked from reading to writing.
struct OpenCa {
    _lock: StateLock,
    db: CaDatabase,
    ca: CertificateAuthority,
}

/// Locks the state directory and loads the CA database and the CA.
fn open_ca(
    state: &StateDir,
    internal: &impl Fn(&str, &dyn std::fmt::Display) -> Refusal,
) -> Result<OpenCa, Refusal> {
    let lock = state
        .lock()
        .map_err(|e| internal("cannot lock its state", &e))?;
    let db = state
        .read_ca_db()
        .map_err(|e| internal("cannot read its CA database", &e))?;
    let ca = CertificateAuthority::from_pem(
        &state
            .read_certificate(&state.ca_cert_path())
            .map_err(|e| internal("cannot read the CA certificate", &e))?,
        &state
            .read_ca_key()
            .map_err(|e| internal("cannot read the CA key", &e))?,
    )
    .map_err(|e| internal("cannot load the CA", &e))?;
    Ok(OpenCa {
        _lock: lock,
        db,
        ca,
    })
}

/// A failure of the CA holder itself: the details go to its log, the member learns only
/// that it failed.
fn internal_failure<'a>(
    name: &'a str,
    what: &'static str,
) -> impl Fn(&str, &dyn std::fmt::Display) -> Refusal + 'a {
    move |step: &str, error: &dyn std::fmt::Display| {
        tracing::error!(%error, "{what} of {name}: {step}");
        Refusal(format!("the CA holder failed: {step} (see its log)"))
    }
}
