//! `meshd init`: creates a new mesh with this node as its CA holder and first core.
//!
//! Everything is decided and checked before the first file is written (names, pools, the
//! config file if one exists), so a refused `init` leaves nothing behind. Files are then
//! written config first, keys next and `node.json` last: `node.json` means "init completed".

use std::io::Write;
use std::path::Path;

use ipnet::Ipv6Net;
use mesh_config::alloc::{AddressPlan, Allocator, NodeAllocation};
use mesh_config::{Config, Role};
use pki::{CertificateAuthority, NodeKeyPair};
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;

use super::config_file::{self, ExistingConfig};
use super::{CA_VALIDITY, CommandError, Context, Output, pki_error};
use crate::cli::InitArgs;
use crate::identity::{NODE_CERT_VALIDITY, node_identity};
use crate::state::{
    CaDatabase, CertificateRecord, NodeRecord, Overwrite, StateDir, generate_wireguard_key,
    wireguard_public_key_base64,
};

/// Runs `meshd init`.
pub fn init<O: Write, N: Write>(
    context: &Context,
    args: &InitArgs,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    mesh_config::names::check_node_name(&args.name).map_err(|reason| {
        CommandError::InvalidArgument {
            flag: "--name".to_owned(),
            reason,
        }
    })?;

    // The config: the existing one must agree with the flags; otherwise build it from them.
    let found = ExistingConfig::of(&context.config_path);
    let existing = found == ExistingConfig::Settings;
    let config = if existing {
        let config = mesh_config::load(&context.config_path)?;
        check_config_agrees(&config, args, &context.config_path)?;
        config
    } else {
        config_from_flags(args)?
    };
    let plan = plan_of(&config, &context.config_path)?;

    let state = &context.state;
    state.create()?;
    let _lock = state.lock()?;
    refuse_existing_state(state)?;

    // Decide the node's place in the mesh.
    let mut allocator = Allocator::new(plan).map_err(|err| CommandError::InvalidArgument {
        flag: "--pool4/--pool6".to_owned(),
        reason: err.to_string(),
    })?;
    let allocation = allocator.allocate_node(&args.name, Role::Core, None, config.mesh.native6)?;
    let lan_prefixes = config.routing.lan_prefixes.clone();

    // Keys and certificates.
    let now = OffsetDateTime::now_utc();
    let wireguard_key = generate_wireguard_key();
    let node_key = NodeKeyPair::generate().map_err(pki_error("generating the node key"))?;
    let ca = CertificateAuthority::create(&args.name, now, CA_VALIDITY)
        .map_err(pki_error("creating the mesh CA"))?;
    let identity = node_identity(
        &allocation,
        &lan_prefixes,
        &pki::Approvals::default(),
        *boringtun::x25519::PublicKey::from(&wireguard_key).as_bytes(),
        false,
    );
    let csr = node_key
        .csr(&args.name)
        .map_err(pki_error("creating the node's certificate request"))?;
    let issued = ca
        .issue_node_certificate(&csr, &identity, now, NODE_CERT_VALIDITY)
        .map_err(pki_error("issuing the node certificate"))?;

    let mut db = CaDatabase::new(allocator);
    db.lan_prefixes
        .insert(args.name.clone(), lan_prefixes.clone());
    db.certificates.push(CertificateRecord {
        name: args.name.clone(),
        serial: issued.serial.clone(),
        not_before: issued.not_before,
        not_after: issued.not_after,
    });
    let record = NodeRecord {
        allocation: allocation.clone(),
        lan_prefixes,
        ca_fingerprint: ca.fingerprint_hex(),
        mesh_name: ca.mesh_name().to_owned(),
        created_at: now,
        ca_holder: Some(args.name.clone()),
    };

    // Write: the config first (a re-run after a failure below finds it and, since it agrees,
    // goes on), then secrets (never overwritten), node.json last.
    if !existing {
        config_file::write_generated(&context.config_path, &config, "meshd init", found)?;
    }
    let ca_pem = ca.to_pem();
    state.write_wireguard_key(&wireguard_key)?;
    state.write_pem_key(&state.node_key_path(), &node_key.to_pem())?;
    state.create_ca_dir()?;
    state.write_pem_key(&state.ca_key_path(), &ca_pem.private_key)?;
    state.write_certificate(
        &state.ca_cert_path(),
        &ca_pem.certificate,
        Overwrite::Refuse,
    )?;
    state.write_ca_db(&db)?;
    state.write_certificate(&state.node_cert_path(), &issued.pem, Overwrite::Refuse)?;
    state.write_node_record(&record)?;

    print_summary(
        context,
        &record,
        &wireguard_public_key_base64(&wireguard_key),
        existing,
        output,
    )
    .map_err(CommandError::Output)
}

/// The config `meshd init` writes when there is none: the flags plus defaults.
fn config_from_flags(args: &InitArgs) -> Result<Config, CommandError> {
    let mut config = Config::new(&args.name, Role::Core);
    config.node.endpoints = args.endpoints.clone();
    if let Some(pool4) = args.pool4 {
        config.mesh.pool4 = pool4;
    }
    config.mesh.pool6 = Some(args.pool6.unwrap_or_else(random_ula48));
    if let Some(asn) = args.asn {
        config.routing.asn = asn;
    }
    // Report problems in terms of the flags that caused them, since no file exists yet.
    if let Some(issue) = mesh_config::validate(&config).into_iter().next() {
        return Err(CommandError::InvalidArgument {
            flag: flag_for_key(&issue.path.to_string()).to_owned(),
            reason: issue.message,
        });
    }
    Ok(config)
}

/// The command-line flag that sets config key `key` in `meshd init`.
fn flag_for_key(key: &str) -> &'static str {
    const FLAGS: [(&str, &str); 5] = [
        ("node.name", "--name"),
        ("node.endpoints", "--endpoint"),
        ("mesh.pool4", "--pool4"),
        ("mesh.pool6", "--pool6"),
        ("routing.asn", "--asn"),
    ];
    FLAGS
        .iter()
        .find(|(prefix, _)| key.starts_with(prefix))
        .map_or("meshd init", |(_, flag)| flag)
}

/// An existing config must describe the node `init` is asked to create.
fn check_config_agrees(config: &Config, args: &InitArgs, path: &Path) -> Result<(), CommandError> {
    let mismatch = |key: &str, in_file: String, flag: &str, given: String| {
        Err(CommandError::ConfigMismatch {
            path: path.to_path_buf(),
            key: key.to_owned(),
            in_file,
            flag: flag.to_owned(),
            given,
        })
    };
    if config.node.name != args.name {
        return mismatch(
            "node.name",
            config.node.name.clone(),
            "--name",
            args.name.clone(),
        );
    }
    if config.node.role != Role::Core {
        return mismatch(
            "node.role",
            config.node.role.to_string(),
            "meshd init (which creates a core)",
            Role::Core.to_string(),
        );
    }
    let mut in_file = config.node.endpoints.clone();
    let mut given = args.endpoints.clone();
    in_file.sort();
    given.sort();
    if in_file != given {
        let list = |endpoints: &[mesh_config::Endpoint]| {
            endpoints
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        return mismatch(
            "node.endpoints",
            list(&config.node.endpoints),
            "--endpoint",
            list(&args.endpoints),
        );
    }
    if let Some(pool4) = args.pool4.filter(|pool4| *pool4 != config.mesh.pool4) {
        return mismatch(
            "mesh.pool4",
            config.mesh.pool4.to_string(),
            "--pool4",
            pool4.to_string(),
        );
    }
    if let Some(pool6) = args.pool6.filter(|pool6| Some(*pool6) != config.mesh.pool6) {
        let in_file = config
            .mesh
            .pool6
            .map_or("(not set)".to_owned(), |p| p.to_string());
        return mismatch("mesh.pool6", in_file, "--pool6", pool6.to_string());
    }
    if let Some(asn) = args.asn.filter(|asn| *asn != config.routing.asn) {
        return mismatch(
            "routing.asn",
            config.routing.asn.to_string(),
            "--asn",
            asn.to_string(),
        );
    }
    Ok(())
}

/// The address plan of `config`, which must name its IPv6 pool: the pool is shared by the
/// whole mesh, so it is chosen once and written down, never re-drawn.
fn plan_of(config: &Config, path: &Path) -> Result<AddressPlan, CommandError> {
    match AddressPlan::from_mesh(&config.mesh) {
        Some(Ok(plan)) => Ok(plan),
        Some(Err(err)) => Err(CommandError::InvalidArgument {
            flag: format!("{}: [mesh]", path.display()),
            reason: err.to_string(),
        }),
        None => Err(CommandError::InvalidArgument {
            flag: format!("{}: mesh.pool6", path.display()),
            reason: format!(
                "is not set; add a mesh IPv6 /48 to the file (for example pool6 = \"{}\", a random unique local prefix) or remove the file so `meshd init` writes one",
                random_ula48()
            ),
        }),
    }
}

/// Refuses to run over an existing identity: that would orphan a mesh's CA or keys.
fn refuse_existing_state(state: &StateDir) -> Result<(), CommandError> {
    for path in [
        state.node_record_path(),
        state.wireguard_key_path(),
        state.node_key_path(),
        state.node_cert_path(),
        state.ca_dir(),
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

/// What `init` did and what to do next.
fn print_summary<O: Write, N: Write>(
    context: &Context,
    record: &NodeRecord,
    wireguard_public_key: &str,
    config_existed: bool,
    output: &mut Output<O, N>,
) -> std::io::Result<()> {
    let NodeAllocation {
        name,
        index,
        ipv4,
        ipv4_clients,
        ipv4_address,
        ipv6,
        ipv6_clients,
        ipv6_address,
        ..
    } = &record.allocation;
    let out = &mut output.out;
    writeln!(
        out,
        "Created mesh {:?} with {name} as its first core (node {index}).",
        record.mesh_name
    )?;
    writeln!(
        out,
        "  IPv4:           {ipv4_address} in {ipv4} (clients from {ipv4_clients})"
    )?;
    writeln!(
        out,
        "  IPv6:           {ipv6_address} in {ipv6} (clients from {ipv6_clients})"
    )?;
    writeln!(out, "  WireGuard key:  {wireguard_public_key}")?;
    writeln!(out, "  CA fingerprint: {}", record.ca_fingerprint)?;
    writeln!(out, "  State:          {}", context.state.root().display())?;
    let config_note = if config_existed {
        "existing, checked"
    } else {
        "written"
    };
    writeln!(
        out,
        "  Config:         {} ({config_note})",
        context.config_path.display()
    )?;
    let meshd = context.command_prefix();
    writeln!(
        out,
        "Next: `{meshd} invite NAME --role core|spoke` for each node to admit."
    )?;
    writeln!(out, "{}", config_file::start_hint(context))
}

/// A random RFC 4193 unique local /48, with the global ID drawn from the OS's secure RNG.
fn random_ula48() -> Ipv6Net {
    let mut global_id = [0u8; 5];
    // ring's SystemRandom reads getrandom(2); it fails only if the kernel has no entropy
    // source at all, in which case nothing meshd does with keys could work either.
    SystemRandom::new()
        .fill(&mut global_id)
        .expect("the operating system's random number generator failed");
    mesh_config::alloc::random_ula48(global_id)
}
