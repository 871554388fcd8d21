//! `meshd revoke NAME` (on the CA holder): revokes every certificate issued to the node,
//! signs a new revocation list and frees nothing (its numbers stay burnt). A running daemon
//! on the CA holder picks the new list up from `crl.der` within a second and spreads it;
//! every node then drops its tunnel and control connection to the revoked node. For a name
//! that was invited but has not joined, it cancels the invitation instead.

use std::io::Write;

use pki::{CertificateAuthority, Crl, RevokedEntry};
use time::{Duration, OffsetDateTime};

use super::{CommandError, Context, Output, pki_error};
use crate::cli::RevokeArgs;
use crate::control::store;

/// How long a CRL says it is current. Nodes honour it past that too (see pki's crl module);
/// the CA holder re-signs whenever it revokes.
const CRL_VALIDITY: Duration = Duration::days(7);

/// Runs `meshd revoke`.
pub fn revoke<O: Write, N: Write>(
    context: &Context,
    args: &RevokeArgs,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    let state = &context.state;
    let (_lock, mut db) = super::locked_ca_db(state)?;
    // Invited but never joined: nothing was issued to revoke, and what the operator wants
    // is the token dead, so the invitation is cancelled (as `meshd invite --cancel` does).
    if db.allocator.node(&args.name).is_none() && db.open_invitations().any(|i| i.name == args.name)
    {
        let text = super::invitations::cancel_in(&mut db, &args.name, OffsetDateTime::now_utc())
            .map_err(|err| CommandError::invalid("NAME", err.to_string()))?;
        state.write_ca_db(&db)?;
        return writeln!(
            output.out,
            "{} has not joined, so there is no certificate to revoke. {text}",
            args.name
        )
        .map_err(CommandError::Output);
    }
    let ca = CertificateAuthority::from_pem(
        &state.read_certificate(&state.ca_cert_path())?,
        &state.read_ca_key()?,
    )
    .map_err(pki_error("loading the mesh CA from the state directory"))?;
    let record = state.read_node_record()?;
    if record.allocation.name == args.name {
        return Err(CommandError::InvalidArgument {
            flag: "NAME".into(),
            reason: format!(
                "{} is this node, the CA holder; it cannot revoke itself",
                args.name
            ),
        });
    }
    let allocation =
        db.allocator
            .revoke(&args.name)
            .map_err(|e| CommandError::InvalidArgument {
                flag: "NAME".into(),
                reason: e.to_string(),
            })?;

    // Freed before and admitted again: revoking burns the name again.
    db.freed_names.retain(|name| *name != args.name);
    let now = OffsetDateTime::now_utc();
    let previous = match store::read_crl(state)? {
        Some(der) => Some(
            Crl::parse(&der, ca.cert_der()).map_err(pki_error("reading the current crl.der"))?,
        ),
        None => None,
    };
    let mut entries: Vec<RevokedEntry> = previous
        .as_ref()
        .map(|crl| crl.entries().collect())
        .unwrap_or_default();
    let mut count = 0;
    for certificate in db.certificates.iter().filter(|c| c.name == args.name) {
        if !entries.iter().any(|e| e.serial == certificate.serial) {
            entries.push(RevokedEntry {
                serial: certificate.serial.clone(),
                revoked_at: now,
            });
            count += 1;
        }
    }
    let number = previous.as_ref().map_or(1, |crl| crl.crl_number() + 1);
    let der = ca
        .issue_crl(&entries, number, now, now + CRL_VALIDITY)
        .map_err(pki_error("signing the revocation list"))?;
    // The CRL first: if writing the database fails afterwards, the node is still revoked
    // and a re-run finds it gone from the allocator.
    store::write_crl(state, &der)?;
    state.write_ca_db(&db)?;

    writeln!(
        output.out,
        "Revoked {} ({}, node {}): {count} certificate(s), revocation list {number}.",
        args.name, allocation.role, allocation.index
    )
    .map_err(CommandError::Output)?;
    writeln!(
        output.note,
        "A running meshd on this node spreads the list; every node drops its tunnel to {} within seconds.",
        args.name
    )
    .map_err(CommandError::Output)
}
