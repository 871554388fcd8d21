//! `meshd join TOKEN`: on a new node, create keys, ask the CA holder for admission over TLS
//! (the CA's fingerprint from the token is checked before anything is sent), and write the
//! config (if absent) and the state so that `meshd run` starts the node.

use std::io::Write;

use mesh_config::Config;
use pki::{InvitationToken, NodeKeyPair, NodeRole};
use time::OffsetDateTime;

use super::config_file::{self, ExistingConfig};
use super::{CommandError, Context, Output, pki_error};
use crate::cli::JoinArgs;
use crate::control::join_client::{JoinError, join};
use crate::control::message::{JoinAccepted, JoinRequest};
use crate::control::store;
use crate::identity::node_role;
use crate::state::{
    NodeRecord, Overwrite, StateDir, generate_wireguard_key, wireguard_public_key_base64,
};

/// Runs `meshd join`.
pub fn join_mesh<O: Write, N: Write>(
    context: &Context,
    args: &JoinArgs,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    let invalid = |flag: &str, reason: String| CommandError::InvalidArgument {
        flag: flag.to_owned(),
        reason,
    };
    let token = InvitationToken::parse(&args.token).map_err(|e| invalid("TOKEN", e.to_string()))?;
    let now = OffsetDateTime::now_utc();
    token
        .check_not_expired(now)
        .map_err(|e| invalid("TOKEN", e.to_string()))?;
    if let Some(name) = args.name.as_ref().filter(|name| **name != token.name) {
        return Err(invalid(
            "--name",
            format!(
                "the token was issued for {:?}, not {name:?}; use the token made for this node",
                token.name
            ),
        ));
    }
    if token.role == NodeRole::Core && args.endpoints.is_empty() {
        return Err(invalid(
            "--endpoint",
            "a core needs at least one public endpoint (HOST:PORT) where the other nodes reach it"
                .into(),
        ));
    }
    let found = ExistingConfig::of(&context.config_path);
    let config_exists = found == ExistingConfig::Settings;
    if config_exists {
        let config = mesh_config::load(&context.config_path)?;
        if config.node.name != token.name {
            return Err(invalid(
                &format!("{}: node.name", context.config_path.display()),
                format!(
                    "is {:?} but the token is for {:?}; remove the file or pass another --config",
                    config.node.name, token.name
                ),
            ));
        }
    }

    // A refused join (a used or expired token, an unreachable CA holder) leaves the state
    // directory as it found it: no empty directory, no lock file, no half an identity.
    let state = &context.state;
    let before = Before::of(state);
    state.create()?;
    let result = admit(context, args, &token, found, now, output);
    if result.is_err() {
        before.restore();
    }
    result
}

/// The part of a join that writes the state directory, under its lock.
fn admit<O: Write, N: Write>(
    context: &Context,
    args: &JoinArgs,
    token: &InvitationToken,
    found: ExistingConfig,
    now: OffsetDateTime,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    let invalid = |flag: &str, reason: String| CommandError::InvalidArgument {
        flag: flag.to_owned(),
        reason,
    };
    let config_exists = found == ExistingConfig::Settings;
    let state = &context.state;
    let _lock = state.lock()?;
    refuse_existing_identity(state)?;

    let wireguard_key = generate_wireguard_key();
    let node_key = NodeKeyPair::generate().map_err(pki_error("generating the node key"))?;
    let request = JoinRequest {
        name: token.name.clone(),
        secret: token.secret.clone(),
        csr_pem: node_key
            .csr(&token.name)
            .map_err(pki_error("creating the certificate request"))?,
        wireguard_key: *boringtun::x25519::PublicKey::from(&wireguard_key).as_bytes(),
        endpoints: args.endpoints.iter().map(ToString::to_string).collect(),
        hosted_by: None,
    };
    writeln!(
        output.note,
        "Joining as {} ({}) through {} ...",
        token.name,
        token.role,
        token.endpoints.join(", ")
    )
    .map_err(CommandError::Output)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| invalid("meshd join", format!("cannot start the async runtime: {e}")))?;
    let (accepted, ca_holder) =
        runtime
            .block_on(join(token, &request))
            .map_err(|e: JoinError| CommandError::InvalidArgument {
                flag: "meshd join".into(),
                reason: e.to_string(),
            })?;
    check_answer(token, &request, &accepted, now)?;

    // Config first (a failure below can be retried with a new token), keys, certificates,
    // membership, node.json last: node.json means "join completed".
    if !config_exists {
        write_config(context, token, args, &accepted, found)?;
    }
    state.write_wireguard_key(&wireguard_key)?;
    state.write_pem_key(&state.node_key_path(), &node_key.to_pem())?;
    state.create_ca_dir()?;
    state.write_certificate(
        &state.ca_cert_path(),
        &accepted.ca_certificate_pem,
        Overwrite::Refuse,
    )?;
    state.write_certificate(
        &state.node_cert_path(),
        &accepted.certificate_pem,
        Overwrite::Refuse,
    )?;
    store::write_members(state, &accepted.members)?;
    if let Some(crl) = &accepted.crl {
        store::write_crl(state, crl)?;
    }
    let record = NodeRecord {
        allocation: accepted.allocation.clone(),
        lan_prefixes: accepted.lan_prefixes.clone(),
        ca_fingerprint: pki::fingerprint_hex(&token.ca_fingerprint),
        mesh_name: accepted.mesh_name.clone(),
        created_at: now,
        ca_holder: Some(ca_holder),
    };
    state.write_node_record(&record)?;

    let a = &accepted.allocation;
    let out = &mut output.out;
    let lines = [
        format!(
            "Joined mesh {:?} as {} ({}, node {}).",
            accepted.mesh_name, a.name, token.role, a.index
        ),
        format!("  IPv4:           {} in {}", a.ipv4_address, a.ipv4),
        format!("  IPv6:           {} in {}", a.ipv6_address, a.ipv6),
        format!(
            "  WireGuard key:  {}",
            wireguard_public_key_base64(&wireguard_key)
        ),
        format!("  Members known:  {}", accepted.members.len()),
        format!("  State:          {}", state.root().display()),
        format!("  Config:         {}", context.config_path.display()),
        config_file::start_hint(context),
    ];
    for line in lines {
        writeln!(out, "{line}").map_err(CommandError::Output)?;
    }
    Ok(())
}

/// What existed in the state directory before a join, so that a failed one can remove what
/// it created and nothing else.
struct Before {
    /// The paths a join may create, in the order to remove them (files before their
    /// directories), each with whether it existed.
    paths: Vec<(std::path::PathBuf, bool)>,
}

impl Before {
    fn of(state: &StateDir) -> Self {
        let paths = [
            state.node_record_path(),
            state.crl_path(),
            state.members_path(),
            state.node_cert_path(),
            state.ca_cert_path(),
            state.node_key_path(),
            state.wireguard_key_path(),
            state.lock_path(),
            state.ca_dir(),
            state.root().to_path_buf(),
        ];
        Before {
            paths: paths
                .into_iter()
                .map(|path| {
                    let existed = path.exists();
                    (path, existed)
                })
                .collect(),
        }
    }

    /// Best effort: removes what did not exist before (a directory only if it is empty).
    fn restore(&self) {
        for (path, existed) in &self.paths {
            if *existed {
                continue;
            }
            let _ = if path.is_dir() {
                std::fs::remove_dir(path)
            } else {
                std::fs::remove_file(path)
            };
        }
    }
}

/// The answer must be for us: issued by the token's CA, for our name and keys.
pub(super) fn check_answer(
    token: &InvitationToken,
    request: &JoinRequest,
    accepted: &JoinAccepted,
    now: OffsetDateTime,
) -> Result<(), CommandError> {
    let bad = |reason: String| CommandError::InvalidArgument {
        flag: "meshd join".into(),
        reason: format!("the CA holder's answer is not usable: {reason}"),
    };
    let der = |pem: &str| -> Result<Vec<u8>, CommandError> {
        pki::certificate_der_from_pem(pem).map_err(|e| bad(format!("certificate is not PEM: {e}")))
    };
    let ca = der(&accepted.ca_certificate_pem)?;
    pki::check_ca(token, &ca).map_err(|e| bad(e.to_string()))?;
    let cert = pki::verify_node_certificate(&der(&accepted.certificate_pem)?, &ca, None, now)
        .map_err(|e| bad(e.to_string()))?;
    if cert.identity.name != token.name || cert.identity.wireguard_key != request.wireguard_key {
        return Err(bad("the certificate is for another name or key".into()));
    }
    if node_role(accepted.allocation.role) != token.role || accepted.allocation.name != token.name {
        return Err(bad("the allocation does not match the invitation".into()));
    }
    Ok(())
}

/// Refuses to join over an existing identity.
fn refuse_existing_identity(state: &StateDir) -> Result<(), CommandError> {
    for path in [
        state.node_record_path(),
        state.wireguard_key_path(),
        state.node_key_path(),
        state.node_cert_path(),
    ] {
        if path.exists() {
            return Err(CommandError::AlreadyInitialised {
                path,
                state_dir: state.root().to_path_buf(),
            });
        }
    }
    Ok(())
}

/// The config of a node that joined: its name, role, endpoints and the mesh's plan.
fn write_config(
    context: &Context,
    token: &InvitationToken,
    args: &JoinArgs,
    accepted: &JoinAccepted,
    existing: ExistingConfig,
) -> Result<(), CommandError> {
    let role = accepted.allocation.role;
    let mut config = Config::new(&token.name, role);
    config.node.endpoints = args.endpoints.clone();
    if let Some(first) = args.endpoints.first() {
        config.node.listen_port = first.port;
    }
    config.mesh.pool4 = accepted.pool4;
    config.mesh.node_prefix_len4 = accepted.node_prefix_len4;
    config.mesh.pool6 = Some(accepted.pool6);
    config.routing.asn = accepted.asn;
    config.routing.lan_prefixes = accepted.lan_prefixes.clone();
    config_file::write_generated(&context.config_path, &config, "meshd join", existing)
}
