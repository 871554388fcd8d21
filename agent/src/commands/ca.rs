//! `meshd ca free-name NAME` (on the CA holder): lets the name of a revoked node be invited
//! again. Only the name: the revoked node's numbers and prefixes stay burnt.

use std::io::Write;

use super::{CommandError, Context, Output};
use crate::cli::CaCommand;

/// Runs `meshd ca ...`.
pub fn ca<O: Write, N: Write>(
    context: &Context,
    command: &CaCommand,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    match command {
        CaCommand::FreeName(args) => free_name(context, &args.name, output),
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
