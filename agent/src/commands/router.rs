//! `meshd router add TOKEN [--wg-key KEY]`: on a core, admits a foreign router (one that runs
//! no meshd: MikroTik RouterOS, wg-quick with BIRD or FRR) with the token `meshd invite NAME
//! --role spoke --core THIS-CORE --foreign` printed on the CA holder. On a core that holds the
//! CA, `meshd router add --name NAME [--route CIDR]...` does both steps: it makes that
//! invitation itself and redeems it at once (and takes it back if the admission fails).
//!
//! This core redeems the token on the router's behalf: it makes the TLS key pair the
//! router's certificate is issued for (and keeps it, since the router runs no meshd), sends
//! the router's WireGuard public key, and stores what it got in `routers/NAME/`. From then on
//! it signs the router's membership record, terminates its tunnel and runs its BGP session.
//! The router's WireGuard private key never passes through meshd, unless `--wg-key` is left
//! out: then meshd makes the pair and prints the private key once, for routers where pasting
//! one is easier than reading one out.

use std::io::Write;

use boringtun::x25519::PublicKey;
use mesh_config::Role;
use pki::{InvitationToken, NodeKeyPair, NodeRole};
use time::OffsetDateTime;

use super::own_config::{load_own_config, require_endpoints};
use super::{CommandError, Context, Output, pki_error};
use crate::api::protocol::Request;
use crate::cli::{ExportArgs, InviteArgs, RouterAddArgs, RouterCommand};
use crate::control::join_client::join;
use crate::control::message::JoinRequest;
use crate::control::store;
use crate::foreign::export::{CoreSide, Format, RouterExport, RouterSide, render};
use crate::netlink::mtu::{DEFAULT_UNDERLAY_MTU, MIN_TUNNEL_MTU, tunnel_mtu};
use crate::routing::member::MeshMember;
use crate::routing::plan::MESH_HOLD_TIME;
use crate::state::{decode_key, encode_key, generate_wireguard_key};

/// Runs `meshd router ...`.
pub fn router<O: Write, N: Write>(
    context: &Context,
    command: &RouterCommand,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    match command {
        RouterCommand::Add(args) => add(context, args, output),
    }
}

/// The router's WireGuard public key from `--wg-key`, or a new pair (with the private key
/// to print).
fn router_key(wg_key: Option<&str>) -> Result<([u8; 32], Option<String>), CommandError> {
    match wg_key {
        Some(text) => decode_key(text.trim())
            .map(|key| (key, None))
            .ok_or_else(|| {
                CommandError::invalid(
                    "--wg-key",
                    format!(
                        "{text:?} is not a WireGuard public key: 44 characters of base64 for 32 \
                     bytes, as `wg pubkey` or RouterOS's `/interface wireguard print` show it"
                    ),
                )
            }),
        None => {
            let secret = generate_wireguard_key();
            let public = *PublicKey::from(&secret).as_bytes();
            Ok((public, Some(encode_key(&secret.to_bytes()))))
        }
    }
}

fn add<O: Write, N: Write>(
    context: &Context,
    args: &RouterAddArgs,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    if args.name.is_none() && !args.routes.is_empty() {
        return Err(CommandError::invalid(
            "--route",
            "goes with --name; a token carries the routes its invitation approved",
        ));
    }
    let (Some(name), None) = (&args.name, &args.token) else {
        // clap requires the token unless --name is given.
        let token = args.token.as_deref().unwrap_or_default();
        return add_with_token(context, token, args.wg_key.as_deref(), output);
    };
    // Refuse a bad key before an invitation exists.
    router_key(args.wg_key.as_deref())?;
    let token = invite_here(context, name, &args.routes)?;
    let added = add_with_token(context, &token, args.wg_key.as_deref(), output);
    if added.is_err() {
        // Nothing of the attempt stays: the name is free again for the next one.
        let mut quiet = Output {
            out: std::io::sink(),
            note: std::io::sink(),
        };
        if let Err(error) = super::invitations::cancel(context, name, &mut quiet) {
            writeln!(
                output.note,
                "warning: the invitation of {name} is still pending ({error}); `meshd invite \
                 --cancel {name}` takes it back"
            )
            .map_err(CommandError::Output)?;
        }
    }
    added
}

/// `meshd router add --name NAME`: the invitation `meshd invite NAME --role spoke --core
/// THIS-NODE --foreign --route ...` would make, made here (this node must hold the CA and be a
/// core); its token.
fn invite_here(
    context: &Context,
    name: &str,
    routes: &[ipnet::IpNet],
) -> Result<String, CommandError> {
    let (config, _) = load_own_config(context)?;
    let own = &config.node.name;
    if config.node.role != Role::Core {
        return Err(CommandError::invalid(
            "meshd router add",
            format!("{own} is a spoke; only a core stands in for foreign routers"),
        ));
    }
    if !context.state.ca_db_path().exists() {
        return Err(CommandError::invalid(
            "--name",
            format!(
                "{own} does not hold the mesh CA, and only the CA holder invites: run `meshd \
                 invite {name} --role spoke --core {own} --foreign` there, then `meshd router \
                 add TOKEN` here"
            ),
        ));
    }
    let args = InviteArgs {
        name: Some(name.to_owned()),
        role: Some(Role::Spoke),
        list: false,
        cancel: None,
        json: false,
        core: Some(own.clone()),
        routes: routes.to_vec(),
        exit: None,
        anycast: Vec::new(),
        foreign: true,
        // Redeemed at once: a token that outlives the command is of no use.
        ttl: ONE_STEP_TOKEN_TTL,
    };
    let mut captured = Output {
        out: Vec::new(),
        note: std::io::sink(),
    };
    super::invite::create(context, name, Role::Spoke, &args, &mut captured)?;
    Ok(String::from_utf8_lossy(&captured.out).trim().to_owned())
}

/// How long the invitation `meshd router add --name` makes itself is good for.
const ONE_STEP_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// `meshd router add TOKEN`.
fn add_with_token<O: Write, N: Write>(
    context: &Context,
    token_text: &str,
    wg_key: Option<&str>,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    let invalid = CommandError::invalid;
    let token =
        InvitationToken::parse(token_text.trim()).map_err(|e| invalid("TOKEN", e.to_string()))?;
    let now = OffsetDateTime::now_utc();
    token
        .check_not_expired(now)
        .map_err(|e| invalid("TOKEN", e.to_string()))?;
    let (config, _record) = load_own_config(context)?;
    let own = &config.node.name;
    if config.node.role != Role::Core {
        return Err(invalid(
            "meshd router add",
            format!("{own} is a spoke; only a core stands in for foreign routers"),
        ));
    }
    if token.role != NodeRole::Spoke || token.core.as_deref() != Some(own.as_str()) {
        let hosted_by = token.core.as_deref().unwrap_or("no core");
        return Err(invalid(
            "TOKEN",
            format!(
                "the invitation of {} is for a {} behind {hosted_by}, not a foreign router of \
                 {own}; run this on its core, or invite it with `meshd invite {} --role spoke \
                 --core {own} --foreign`",
                token.name, token.role, token.name
            ),
        ));
    }
    let (wireguard_key, private_key) = router_key(wg_key)?;

    let state = &context.state;
    if state.is_hosted(&token.name) {
        return Err(invalid(
            "TOKEN",
            format!(
                "this node already stands in for a router called {} ({}); revoke it first",
                token.name,
                state.hosted_dir().join(&token.name).display()
            ),
        ));
    }
    let key = NodeKeyPair::generate().map_err(pki_error("generating the router's TLS key"))?;
    let request = JoinRequest {
        name: token.name.clone(),
        secret: token.secret.clone(),
        csr_pem: key
            .csr(&token.name)
            .map_err(pki_error("creating the certificate request"))?,
        wireguard_key,
        endpoints: Vec::new(),
        hosted_by: Some(own.clone()),
    };
    writeln!(
        output.note,
        "Admitting router {} behind {own} through {} ...",
        token.name,
        token.endpoints.join(", ")
    )
    .map_err(CommandError::Output)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            invalid(
                "meshd router add",
                format!("cannot start the async runtime: {e}"),
            )
        })?;
    let (accepted, _ca_holder) = runtime
        .block_on(join(&token, &request))
        .map_err(|e| invalid("meshd router add", e.to_string()))?;
    super::join::check_answer(&token, &request, &accepted, now)?;

    {
        let _lock = state.lock()?;
        state.write_hosted(&token.name, &accepted.certificate_pem, &key.to_pem())?;
    }

    let a = &accepted.allocation;
    let lans: Vec<String> = accepted
        .lan_prefixes
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut lines = vec![
        format!(
            "Router {} admitted behind {own} (node {}).",
            a.name, a.index
        ),
        format!("  IPv4:           {} in {}", a.ipv4_address, a.ipv4),
        format!("  IPv6:           {} in {}", a.ipv6_address, a.ipv6),
        format!(
            "  LANs:           {}",
            if lans.is_empty() {
                "none".to_owned()
            } else {
                lans.join(", ")
            }
        ),
        format!("  WireGuard key:  {}", encode_key(&wireguard_key)),
    ];
    if let Some(private) = &private_key {
        lines.push(format!(
            "  Private key:    {private}\n  (shown this once and kept nowhere: put it into the \
             router's WireGuard interface now)"
        ));
    }
    lines.push(format!(
        "Its configuration: meshd export routeros|wg-quick|bird|frr {}",
        a.name
    ));
    for line in lines {
        writeln!(output.out, "{line}").map_err(CommandError::Output)?;
    }

    let socket = &context.socket_path;
    let note = match crate::api::request::<serde_json::Value>(socket, &Request::AddRouter) {
        Ok(_) => "The running daemon stands in for the router now.".to_owned(),
        Err(error) if error.is_not_running() => format!(
            "meshd is not running (no daemon on {}); it stands in for the router when it starts.",
            socket.display()
        ),
        Err(error) => format!(
            "warning: the running daemon was not told about the router ({error}); it stands in \
             for it after a restart."
        ),
    };
    writeln!(output.note, "{note}").map_err(CommandError::Output)
}

/// How often the router sends a keepalive: it sits behind NAT more often than not, and its
/// core learns its address only from its packets.
const ROUTER_KEEPALIVE_SECS: u16 = 25;

/// Runs `meshd export FORMAT NAME`: the configuration of a router this core stands in for,
/// from its certificate and this node's own facts. Nothing is written.
pub fn export<O: Write, N: Write>(
    context: &Context,
    args: &ExportArgs,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    let invalid = CommandError::invalid;
    let format: Format = args
        .format
        .parse()
        .map_err(|e: crate::foreign::export::FormatError| invalid("FORMAT", e.to_string()))?;
    let (config, record) = load_own_config(context)?;
    let state = &context.state;
    let own = &config.node.name;
    if !state.is_hosted(&args.name) {
        return Err(invalid("NAME", not_hosted_here(context, &args.name, own)?));
    }
    let hosted = state.read_one_hosted(&args.name)?;
    let router_cert =
        certificate_identity(&hosted.certificate_pem, &state.hosted_cert_path(&args.name))?;
    let own_cert = certificate_identity(
        &state.read_certificate(&state.node_cert_path())?,
        &state.node_cert_path(),
    )?;
    let as_member = |identity: &pki::NodeIdentity| {
        MeshMember::from_identity(identity).map_err(|e| invalid("meshd export", e.to_string()))
    };
    let router = as_member(&router_cert)?;
    let core = as_member(&own_cert)?;
    let endpoints: Vec<String> = require_endpoints(context, &config, "the router")?
        .iter()
        .map(ToString::to_string)
        .collect();
    let core_key = *PublicKey::from(&state.read_wireguard_key()?).as_bytes();
    let mut mesh_pools = vec![ipnet::IpNet::V4(config.mesh.pool4)];
    mesh_pools.extend(config.mesh.pool6.map(ipnet::IpNet::V6));
    let view = RouterExport {
        mesh_name: record.mesh_name,
        asn: config.routing.asn,
        router: RouterSide {
            name: router.name.clone(),
            wireguard_public_key: encode_key(&router_cert.wireguard_key),
            router_id: router.router_id,
            address6: router.address6,
            allocated: router.allocated.clone(),
            lans: router.lans.clone(),
        },
        core: CoreSide {
            name: own.clone(),
            wireguard_public_key: encode_key(&core_key),
            endpoint: endpoints[0].clone(),
            other_endpoints: endpoints[1..].to_vec(),
            router_id: core.router_id,
            address6: core.address6,
        },
        mesh_pools,
        // The core's own tunnel MTU, or what it computes for an Ethernet underlay: both ends
        // of a tunnel should agree, and the router cannot measure the core's path.
        mtu: config
            .interface
            .mtu
            .or_else(|| tunnel_mtu(DEFAULT_UNDERLAY_MTU))
            .unwrap_or(MIN_TUNNEL_MTU),
        keepalive_secs: ROUTER_KEEPALIVE_SECS,
        hold_time_secs: MESH_HOLD_TIME,
        // What this core's routing plane sends the router, from the same meshd.toml.
        send: mesh_config::routers::router_settings(&config.routers, &router.name).send,
    };
    output
        .out
        .write_all(render(format, &view).as_bytes())
        .map_err(CommandError::Output)?;
    output.out.flush().map_err(CommandError::Output)
}

/// Why `name` cannot be exported here: another core stands in for it, it is no foreign
/// router, or nobody knows it.
fn not_hosted_here(context: &Context, name: &str, own: &str) -> Result<String, CommandError> {
    let known = store::read_members(&context.state)?
        .into_iter()
        .filter_map(|record| pki::NodeCertificate::parse(&record.certificate).ok())
        .find(|cert| cert.identity.name == name);
    Ok(match known {
        Some(cert) if cert.identity.foreign => format!(
            "{name} is a foreign router hosted by {}; run `meshd export` on {}",
            cert.identity.core.as_deref().unwrap_or("another core"),
            cert.identity.core.as_deref().unwrap_or("that core"),
        ),
        Some(cert) => format!(
            "{name} is a {} that runs meshd itself; only foreign routers (`meshd router add`) \
             have an exported configuration",
            cert.identity.role
        ),
        None => {
            format!("{own} stands in for no router called {name:?} (`meshd router add` admits one)")
        }
    })
}

/// The identity in a PEM certificate file.
fn certificate_identity(
    pem: &str,
    path: &std::path::Path,
) -> Result<pki::NodeIdentity, CommandError> {
    pki::NodeCertificate::from_pem(pem)
        .map(|cert| cert.identity)
        .map_err(|e| {
            CommandError::State(crate::state::StateError::Corrupt {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wireguard_key_is_checked_and_a_missing_one_made() {
        let (key, private) =
            router_key(Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")).unwrap();
        assert_eq!(key, [0; 32]);
        assert!(private.is_none());
        let error = router_key(Some("not-a-key")).unwrap_err().to_string();
        assert!(error.contains("--wg-key"), "{error}");
        assert!(error.contains("is not a WireGuard public key"), "{error}");
        let (public, private) = router_key(None).unwrap();
        let private = decode_key(&private.unwrap()).unwrap();
        let secret = boringtun::x25519::StaticSecret::from(private);
        assert_eq!(*PublicKey::from(&secret).as_bytes(), public);
    }
}
