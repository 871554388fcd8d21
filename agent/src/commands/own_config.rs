//! What `invite` and `client add` both need before they hand anything out: this node's
//! configuration, checked to belong to the same node as the state directory, and the
//! endpoints through which others reach it.

use mesh_config::{Config, Endpoint};

use super::{CommandError, Context};
use crate::state::NodeRecord;

/// `meshd.toml` and `node.json`, after checking they describe the same node: a token or a
/// client configuration built from another node's endpoints would point nowhere useful.
pub(super) fn load_own_config(context: &Context) -> Result<(Config, NodeRecord), CommandError> {
    // The record first: on a node that never ran `init` or `join`, its error says so.
    let record = context.state.read_node_record()?;
    let config = mesh_config::load(&context.config_path)?;
    if config.node.name != record.allocation.name {
        return Err(CommandError::ConfigOfOtherNode {
            config: context.config_path.clone(),
            config_name: config.node.name.clone(),
            record: context.state.node_record_path(),
            record_name: record.allocation.name.clone(),
        });
    }
    Ok((config, record))
}

/// The configured `node.endpoints`, refused when empty: `who` ("a joining node", "a client")
/// would have no way to reach this node.
pub(super) fn require_endpoints<'c>(
    context: &Context,
    config: &'c Config,
    who: &str,
) -> Result<&'c [Endpoint], CommandError> {
    if config.node.endpoints.is_empty() {
        return Err(CommandError::invalid(
            format!("{}: node.endpoints", context.config_path.display()),
            format!("is empty; {who} needs at least one endpoint to reach this node"),
        ));
    }
    Ok(&config.node.endpoints)
}
