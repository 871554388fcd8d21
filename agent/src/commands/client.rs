//! `meshd client add NAME [--qr] [--exit]`: creates a client device of this node (a laptop or
//! phone with a standard WireGuard app) and prints its wg-quick configuration, or the same as
//! a QR code for the phone apps. With `--exit` the client sends everything into the mesh and
//! its Internet traffic leaves through the exit this node uses.
//!
//! Order: the client is persisted first (addresses in `ca/db.json` on the CA holder, the
//! record in `clients.json`), then the configuration is printed (its private key exists only
//! there), then the running daemon is told to accept the client. A daemon that is not
//! running picks the client up from `clients.json` when it starts.

use std::io::Write;

use boringtun::x25519::PublicKey;
use ipnet::IpNet;
use pki::Crl;
use time::OffsetDateTime;

use super::own_config::{load_own_config, require_endpoints};
use super::{CommandError, Context, Output};
use crate::api::client_registry::{NewClient, add_client};
use crate::api::protocol::Request;
use crate::api::wg_quick::{ClientConfig, client_allowed_ips, qr_code, render};
use crate::cli::{ClientAddArgs, ClientCommand};
use crate::control::store;
use crate::state::{StateDir, StateError};

/// Runs `meshd client ...`.
pub fn client<O: Write, N: Write>(
    context: &Context,
    command: &ClientCommand,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    match command {
        ClientCommand::Add(args) => add(context, args, output),
    }
}

/// Every LAN prefix this node knows to be approved: its own (`own_lans`, from its
/// configuration), those in the certificates of the members it last heard of
/// (`members.json`; a member whose certificate no longer verifies, revoked or expired,
/// brings none) and, on the CA holder, those `ca/db.json` approved for live (not revoked)
/// nodes.
fn approved_lan_prefixes(
    state: &StateDir,
    own_lans: &[IpNet],
    now: OffsetDateTime,
) -> Result<Vec<IpNet>, CommandError> {
    let mut lans = own_lans.to_vec();
    let members = store::read_members(state)?;
    if !members.is_empty() {
        let ca_path = state.ca_cert_path();
        let ca_der =
            pki::certificate_der_from_pem(&state.read_certificate(&ca_path)?).map_err(|e| {
                StateError::Corrupt {
                    path: ca_path.clone(),
                    reason: format!("not a PEM certificate: {e}"),
                }
            })?;
        let crl = match store::read_crl(state)? {
            Some(der) => Some(Crl::parse(&der, &ca_der).map_err(|e| StateError::Corrupt {
                path: store::crl_path(state),
                reason: format!("not a revocation list of this mesh's CA: {e}"),
            })?),
            None => None,
        };
        for member in &members {
            if let Ok(member) = member.verify(&ca_der, crl.as_ref(), now) {
                lans.extend(member.identity.lan_prefixes);
            }
        }
    }
    if state.is_ca_holder() {
        let db = state.read_ca_db()?;
        for (node, approved) in &db.lan_prefixes {
            if db.allocator.node(node).is_some() {
                lans.extend(approved);
            }
        }
    }
    Ok(lans)
}

fn add<O: Write, N: Write>(
    context: &Context,
    args: &ClientAddArgs,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    let invalid = CommandError::invalid;
    mesh_config::names::check_node_name(&args.name).map_err(|reason| invalid("NAME", reason))?;
    let state = &context.state;
    let (config, record) = load_own_config(context)?;
    if config.peers.iter().any(|peer| peer.name == args.name) {
        return Err(invalid(
            "NAME",
            format!(
                "{:?} is the name of a [[peer]] in {}; a client needs a name of its own",
                args.name,
                context.config_path.display()
            ),
        ));
    }
    let endpoint = &require_endpoints(context, &config, "a client")?[0];
    let node_public_key = *PublicKey::from(&state.read_wireguard_key()?).as_bytes();
    // What the client routes into the tunnel: the whole mesh and the LANs behind its
    // members. Without a pool6 in the configuration (set by hand), at least this node's own
    // IPv6 prefix.
    let pool6 = config.mesh.pool6.unwrap_or(record.allocation.ipv6);
    let now = OffsetDateTime::now_utc();
    let allowed_ips = if args.exit {
        // Everything: the mesh and the Internet through its exits.
        vec![
            IpNet::V4(ipnet::Ipv4Net::default()),
            IpNet::V6(ipnet::Ipv6Net::default()),
        ]
    } else {
        client_allowed_ips(
            &[IpNet::V4(config.mesh.pool4), IpNet::V6(pool6)],
            approved_lan_prefixes(state, &config.routing.lan_prefixes, now)?,
        )
    };

    let NewClient {
        record: client,
        private_key,
    } = add_client(state, &record.allocation, &args.name, now)?;
    let text = render(&ClientConfig {
        client: &client,
        private_key: &private_key,
        node_name: &config.node.name,
        node_public_key,
        endpoint: endpoint.to_string(),
        allowed_ips,
    });
    if args.qr {
        let code = qr_code(&text).map_err(|error| {
            invalid(
                "--qr",
                format!("the configuration does not fit a QR code ({error}); run without --qr"),
            )
        })?;
        writeln!(output.out, "{}", code.as_str()).map_err(CommandError::Output)?;
    } else {
        output
            .out
            .write_all(text.as_bytes())
            .map_err(CommandError::Output)?;
    }
    output.out.flush().map_err(CommandError::Output)?;

    let note = |output: &mut Output<O, N>, text: String| {
        writeln!(output.note, "{text}").map_err(CommandError::Output)
    };
    note(
        output,
        format!(
            "Client {} of {} gets {} and {}; import the configuration into its WireGuard app. \
             Its private key is not kept anywhere else.",
            client.name, config.node.name, client.ipv4, client.ipv6
        ),
    )?;
    let socket = &context.socket_path;
    let told = crate::api::request::<serde_json::Value>(
        socket,
        &Request::AddClient {
            name: client.name.clone(),
        },
    );
    match told {
        Ok(_) => note(
            output,
            "The running daemon accepts the client now.".to_owned(),
        ),
        Err(error) if error.is_not_running() => note(
            output,
            format!(
                "meshd is not running (no daemon on {}); it will accept the client when it starts.",
                socket.display()
            ),
        ),
        Err(error) => note(
            output,
            format!(
                "warning: the running daemon was not told about the client ({error}); \
                 it will accept it after a restart."
            ),
        ),
    }
}
