//! `meshd ca ...` (on the CA holder):
//! - `free-name NAME` lets the name of a revoked node be invited again. Only the name: the
//!   revoked node's numbers and prefixes stay burnt.
//! - `approve NAME` changes what a member's certificate approves (Internet exit, shared
//!   prefixes) in the registry; renewals read it from there, so the member's next
//!   certificate says it (`meshd renew` on the member brings it at once).
//! - `backup FILE` and `restore FILE` carry the CA to another core (see `ca_backup`).
//! - `take-over` makes a standby copy of the CA the active holder (see `ca_takeover`).

use std::io::Write;

use time::OffsetDateTime;

use super::{CommandError, Context, Output};
use crate::cli::{ApproveArgs, CaCommand};

/// Runs `meshd ca ...`.
pub fn ca<O: Write, N: Write>(
    context: &Context,
    command: &CaCommand,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    match command {
        CaCommand::FreeName(args) => free_name(context, &args.name, output),
        CaCommand::Approve(args) => approve(context, args, output),
        CaCommand::Backup(args) => super::ca_backup::backup(context, args, output),
        CaCommand::Restore(args) => super::ca_backup::restore(context, args, output),
        CaCommand::TakeOver(args) => super::ca_takeover::take_over(context, args, output),
    }
}

fn approve<O: Write, N: Write>(
    context: &Context,
    args: &ApproveArgs,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    let name = &args.name;
    if args.exit.is_none() && !args.no_exit && args.anycast.is_empty() && args.no_anycast.is_empty()
    {
        return Err(CommandError::invalid(
            "NAME",
            "nothing to change: give --exit, --no-exit, --anycast CIDR or --no-anycast CIDR",
        ));
    }
    let state = &context.state;
    let (_lock, mut db) = super::locked_ca_db(state)?;
    if db.allocator.node(name).is_none() {
        let why = if db.allocator.is_revoked(name) {
            format!("{name:?} was revoked")
        } else {
            format!(
                "there is no member named {name:?} (an invitation is approved with `meshd invite --exit/--anycast`)"
            )
        };
        return Err(CommandError::invalid("NAME", why));
    }
    let mut approvals = db.approvals.get(name).cloned().unwrap_or_default();
    for prefix in &args.no_anycast {
        if !approvals.anycast.contains(prefix) {
            return Err(CommandError::invalid(
                "--no-anycast",
                format!("{prefix} is not a shared prefix of {name}"),
            ));
        }
    }
    let now = OffsetDateTime::now_utc();
    let new_shared: Vec<ipnet::IpNet> = args
        .anycast
        .iter()
        .filter(|p| !approvals.anycast.contains(p))
        .copied()
        .collect();
    super::invite::check_anycast(&db, db.allocator.plan(), &new_shared, &[], now)
        .map_err(|reason| CommandError::invalid("--anycast", reason))?;
    if let Some(families) = args.exit {
        approvals.exit_ipv4 |= families.ipv4();
        approvals.exit_ipv6 |= families.ipv6();
    }
    if args.no_exit {
        approvals.exit_ipv4 = false;
        approvals.exit_ipv6 = false;
    }
    approvals.anycast.retain(|p| !args.no_anycast.contains(p));
    approvals.anycast.extend(new_shared);
    let summary = describe(&approvals);
    if approvals.is_empty() {
        db.approvals.remove(name);
    } else {
        db.approvals.insert(name.clone(), approvals);
    }
    state.write_ca_db(&db)?;
    writeln!(
        output.out,
        "{name} is now approved for: {summary}. Its next certificate says so: run `meshd renew` \
         on {name} to get it now (else it comes with the automatic renewal)."
    )
    .map_err(CommandError::Output)
}

/// The approvals in words.
fn describe(approvals: &pki::Approvals) -> String {
    let mut parts = Vec::new();
    match (approvals.exit_ipv4, approvals.exit_ipv6) {
        (true, true) => parts.push("Internet exit for IPv4 and IPv6".to_owned()),
        (true, false) => parts.push("Internet exit for IPv4".to_owned()),
        (false, true) => parts.push("Internet exit for IPv6".to_owned()),
        (false, false) => {}
    }
    if !approvals.anycast.is_empty() {
        let list: Vec<String> = approvals.anycast.iter().map(ToString::to_string).collect();
        parts.push(format!("shared prefixes {}", list.join(", ")));
    }
    if parts.is_empty() {
        "nothing beyond its prefixes and LANs".to_owned()
    } else {
        parts.join("; ")
    }
}

fn free_name<O: Write, N: Write>(
    context: &Context,
    name: &str,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    let state = &context.state;
    let (_lock, mut db) = super::locked_ca_db(state)?;
    if db.allocator.node(name).is_some() {
        return Err(CommandError::invalid(
            "NAME",
            format!(
                "{name:?} is a live member of the mesh; revoke it first (`meshd revoke {name}`)"
            ),
        ));
    }
    if !db.allocator.is_revoked(name) {
        return Err(CommandError::invalid(
            "NAME",
            format!("no node named {name:?} was ever revoked; the name is free already"),
        ));
    }
    if db.name_is_burnt(name) {
        db.freed_names.push(name.to_owned());
        state.write_ca_db(&db)?;
    }
    writeln!(
        output.out,
        "Freed the name {name}: `meshd invite {name}` may give it to a new node (with new prefixes)."
    )
    .map_err(CommandError::Output)
}
