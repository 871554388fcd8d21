//! `meshd ca take-over [--force]` on a standby copy of the CA: it becomes the active holder of
//! the next term. The registry first learns what this node knows (membership, revocation
//! list, own clients, as a restore does), then `node.json` names this node the holder and
//! `ca/db.json`, written last (the commit point), loses its standby mark and gets the new
//! term. A running meshd admits and renews at once (it reads `ca/db.json` for each) and
//! publishes the new term's registry record; the old holder, when it hears of it, steps down
//! to standby (`control::shell::registry`). docs/operations.md, "A standby CA holder".
//!
//! Two holders admitting at once is what the command guards against: unless `--force`, it
//! asks the running meshd when the active holder was last heard from, and refuses if that was
//! less than [`QUIET_BEFORE_TAKE_OVER`] ago or cannot be told.

use std::io::Write;
use std::time::Duration;

use pki::{CertificateAuthority, Crl};

use super::ca_backup::{CaMoveError, Known, own_certificate};
use super::{CommandError, Context, Output, pki_error};
use crate::api::human;
use crate::api::protocol::Request;
use crate::api::report::{PeersReport, StatusReport};
use crate::cli::CaTakeOverArgs;
use crate::control::store;
use crate::state::ca_registry;

/// How long the active holder must have been silent before a take-over without `--force`:
/// longer than a reboot or a short outage of its line, which a take-over would turn into two
/// holders for as long as they cannot hear each other.
pub const QUIET_BEFORE_TAKE_OVER: Duration = Duration::from_secs(600);

/// What this node's running meshd knows of the active holder's life.
#[derive(Debug, Clone, PartialEq)]
pub enum LastSeen {
    /// No meshd runs here to ask.
    NotRunning,
    /// meshd runs but has no peer of that name.
    NotAPeer,
    /// An authenticated packet came from it this long ago.
    Heard(Duration),
    /// Nothing came from it since meshd started, this long ago.
    NotSinceStart(Duration),
}

/// Ok if the holder has been silent long enough for a take-over without `--force`; else the
/// reason, saying when it was last seen.
pub fn quiet_enough(holder: &str, seen: &LastSeen) -> Result<(), String> {
    let ago = |d: &Duration| human::duration(d.as_secs());
    let limit = human::duration(QUIET_BEFORE_TAKE_OVER.as_secs());
    match seen {
        LastSeen::Heard(d) if *d >= QUIET_BEFORE_TAKE_OVER => Ok(()),
        LastSeen::NotSinceStart(d) if *d >= QUIET_BEFORE_TAKE_OVER => Ok(()),
        LastSeen::Heard(d) => Err(format!(
            "{holder}, the active CA holder, was last heard from {} ago (less than {limit})",
            ago(d)
        )),
        LastSeen::NotSinceStart(d) => Err(format!(
            "nothing was heard from {holder}, the active CA holder, in the {} since meshd \
             started here (less than {limit})",
            ago(d)
        )),
        LastSeen::NotAPeer => Err(format!(
            "the meshd running here has no peer {holder}, so when the active CA holder was \
             last seen cannot be told"
        )),
        LastSeen::NotRunning => Err(format!(
            "meshd is not running on this node, so when {holder}, the active CA holder, was \
             last heard from cannot be told (start it and run this again)"
        )),
    }
}

/// Asks the running meshd when `holder` was last heard from.
fn last_seen(context: &Context, holder: &str) -> Result<LastSeen, CommandError> {
    let peers: PeersReport = match crate::api::request(&context.socket_path, &Request::Peers) {
        Ok(peers) => peers,
        Err(error) if error.is_not_running() => return Ok(LastSeen::NotRunning),
        Err(error) => return Err(error.into()),
    };
    let Some(peer) = peers.peers.iter().find(|p| p.name == holder) else {
        return Ok(LastSeen::NotAPeer);
    };
    if let Some(seconds) = peer.last_received_seconds_ago {
        return Ok(LastSeen::Heard(Duration::from_secs_f64(seconds.max(0.0))));
    }
    let status: StatusReport = crate::api::request(&context.socket_path, &Request::Status)?;
    Ok(LastSeen::NotSinceStart(Duration::from_secs(
        status.daemon.uptime_seconds,
    )))
}

/// Runs `meshd ca take-over`.
pub fn take_over<O: Write, N: Write>(
    context: &Context,
    args: &CaTakeOverArgs,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    let state = &context.state;
    if !state.has_ca_copy() {
        return Err(CaMoveError::NoCopy.into());
    }
    let record = state.read_node_record()?;
    let own_name = record.allocation.name.clone();
    let early = state.read_ca_db()?;
    let Some(standby) = early.standby.clone() else {
        let head = early.registry_head(&own_name);
        return Err(CaMoveError::NotStandby { term: head.term }.into());
    };
    let holder = standby.active_holder;
    // Asked before the lock: the daemon answers without it, but a command waiting on the
    // lock should not hold a stale answer for long either.
    let seen = last_seen(context, &holder)?;
    if !args.force
        && let Err(why) = quiet_enough(&holder, &seen)
    {
        return Err(CaMoveError::HolderMayBeAlive { why }.into());
    }

    let _lock = state.lock()?;
    let record = state.read_node_record()?;
    let mut db = state.read_ca_db()?;
    let ca_pem = state.read_certificate(&state.ca_cert_path())?;
    let ca_key = state.read_ca_key()?;
    let ca = CertificateAuthority::from_pem(&ca_pem, &ca_key)
        .map_err(pki_error("loading the mesh CA from the state directory"))?;
    let revoked: Vec<_> = match store::read_crl(state)? {
        Some(der) => Crl::parse(&der, ca.cert_der())
            .map_err(pki_error("reading crl.der"))?
            .entries()
            .map(|e| e.serial)
            .collect(),
        None => Vec::new(),
    };
    let known = Known::read(
        state,
        ca.cert_der(),
        own_certificate(state, ca.cert_der())?,
        &own_name,
    )?;
    let report = known.merge_into(state, &mut db, &revoked, &record)?;
    let Some(taken) = ca_registry::take_over(&mut db, &own_name) else {
        let head = db.registry_head(&own_name);
        return Err(CaMoveError::NotStandby { term: head.term }.into());
    };
    // node.json first, ca/db.json last: interrupted in between, the node is still a standby
    // (the start-up check accepts a standby naming itself holder) and the command runs again.
    let mut holder_record = record.clone();
    holder_record.ca_holder = Some(own_name.clone());
    if holder_record != record {
        state.write_node_record(&holder_record)?;
    }
    if let Err(error) = state.write_ca_db(&db) {
        let _ = state.write_node_record(&record);
        return Err(error.into());
    }

    let learnt = if report.added.is_empty() && report.revoked.is_empty() {
        String::new()
    } else {
        format!(
            " The registry learnt from this node's membership: {} added, {} revoked.",
            report.added.len(),
            report.revoked.len()
        )
    };
    let seen_text = match (&seen, args.force) {
        (LastSeen::Heard(d), _) => format!(
            "{} was last heard from {} ago",
            taken.previous,
            human::duration(d.as_secs())
        ),
        (LastSeen::NotSinceStart(d), _) => format!(
            "nothing was heard from {} in the {} since meshd started here",
            taken.previous,
            human::duration(d.as_secs())
        ),
        (_, _) => format!("when {} was last seen is not known", taken.previous),
    };
    writeln!(
        output.out,
        "{own_name} holds the mesh CA now (term {}, taken over from {}; {seen_text}): it \
         admits, renews and revokes, and hands out {}.{learnt}",
        taken.term,
        taken.previous,
        db.allocator.share(),
    )
    .map_err(CommandError::Output)?;
    writeln!(
        output.note,
        "A running meshd here spreads the new term to the mesh at once (else when it starts). \
         Should {} come back, it steps down to standby as soon as it hears of term {}; until \
         then, while the two cannot reach each other, both may admit (never with the same \
         numbers). Invite new nodes here: {} invite NAME --role ...",
        taken.previous,
        taken.term,
        context.command_prefix()
    )
    .map_err(CommandError::Output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_take_over_waits_until_the_holder_was_silent_long_enough() {
        let minute = Duration::from_secs(60);
        assert!(quiet_enough("alpha", &LastSeen::Heard(11 * minute)).is_ok());
        assert!(quiet_enough("alpha", &LastSeen::NotSinceStart(10 * minute)).is_ok());
        let why = quiet_enough("alpha", &LastSeen::Heard(Duration::from_secs(4))).unwrap_err();
        assert!(
            why.contains("alpha, the active CA holder, was last heard from 4 seconds ago"),
            "{why}"
        );
        let why = quiet_enough("alpha", &LastSeen::NotSinceStart(2 * minute)).unwrap_err();
        assert!(
            why.contains("in the 2 minutes since meshd started"),
            "{why}"
        );
        assert!(
            quiet_enough("alpha", &LastSeen::NotRunning)
                .unwrap_err()
                .contains("meshd is not running")
        );
        assert!(
            quiet_enough("alpha", &LastSeen::NotAPeer)
                .unwrap_err()
                .contains("no peer alpha")
        );
    }
}
