//! `meshd pubkey`: the node's WireGuard public key in base64, as `wg pubkey` prints it, so
//! scripts can configure peers (and the benchmark can set up wireguard-go against meshd).

use std::io::Write;

use super::{CommandError, Context, Output};
use crate::state::wireguard_public_key_base64;

/// Prints the public key of the state directory's `wireguard.key`.
pub fn pubkey<O: Write, N: Write>(
    context: &Context,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    let secret = context.state.read_wireguard_key()?;
    writeln!(output.out, "{}", wireguard_public_key_base64(&secret)).map_err(CommandError::Output)
}
