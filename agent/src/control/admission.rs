//! The CA side of a join: redeem the invitation, allocate, issue, persist. Blocking file I/O
//! on the state directory (call it from a blocking thread). Every refusal is a sentence for
//! the person running `meshd join`.

use mesh_config::alloc::AllocError;
use mesh_config::names::check_node_name;
use pki::{CertificateAuthority, TokenError};
use time::OffsetDateTime;

use super::message::{JoinAccepted, JoinRequest};
use super::record::SignedRecord;
use crate::commands::NODE_CERT_VALIDITY;
use crate::commands::identity::{node_identity, node_role};
use crate::state::{CertificateRecord, StateDir};

/// Why a join was refused; the text goes back to the joiner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// What the CA holder adds to an acceptance besides the issued certificate.
#[derive(Debug, Clone)]
pub struct MeshFacts {
    pub asn: u32,
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
    if !state.is_ca_holder() {
        return Err(refuse(
            "this node does not hold the mesh CA; use an endpoint of the CA holder (the token lists them)".into(),
        ));
    }
    let internal = |what: &str, e: &dyn std::fmt::Display| {
        tracing::error!(error = %e, "join of {}: {what}", request.name);
        Refusal(format!("the CA holder failed: {what} (see its log)"))
    };
    let _lock = state
        .lock()
        .map_err(|e| internal("cannot lock its state", &e))?;
    let mut db = state
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

    // The newest invitation under this name is the one that counts.
    let Some(invitation) = db
        .invitations
        .iter_mut()
        .rev()
        .find(|i| i.name == request.name)
    else {
        return Err(refuse(format!(
            "there is no invitation for {:?} at this CA; ask for one with `meshd invite {}`",
            request.name, request.name
        )));
    };
    pki::redeem(invitation, &request.secret, &request.name, now).map_err(|e| match e {
        TokenError::WrongSecret => refuse(
            "the token's secret does not match the invitation for this name; is it the latest token?".into(),
        ),
        other => refuse(other.to_string()),
    })?;
    let invitation = invitation.clone();
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
    let identity = node_identity(&allocation, &invitation.lan_prefixes, request.wireguard_key);
    let issued = ca
        .issue_node_certificate(&request.csr_pem, &identity, now, NODE_CERT_VALIDITY)
        .map_err(|e| refuse(format!("the certificate request was refused: {e}")))?;
    db.lan_prefixes
        .insert(request.name.clone(), invitation.lan_prefixes.clone());
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
