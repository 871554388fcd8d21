//! `meshd renew`: asks the running daemon for a certificate renewal now, e.g. after the CA
//! holder changed the node's approvals with `meshd ca approve`.

use std::io::Write;

use super::{CommandError, Context, Output};
use crate::api::protocol::Request;

/// What the daemon answers.
#[derive(serde::Deserialize)]
struct Answer {
    message: String,
}

/// Runs `meshd renew`.
pub fn renew<O: Write, N: Write>(
    context: &Context,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    let answer: Answer = crate::api::request(&context.socket_path, &Request::Renew)?;
    let mut text = answer.message;
    if let Some(first) = text.get(..1) {
        text.replace_range(..1, &first.to_uppercase());
    }
    writeln!(output.out, "{text}.").map_err(CommandError::Output)
}
