//! `meshd invite`: on the CA holder, admits a new node by creating a one-time token.
//!
//! Everything the token promises is checked here, against the CA database, so that a token
//! that was printed can be redeemed: the name is free, a spoke's core exists, the LAN prefixes
//! are networks that collide with nothing already approved. Only the hash of the token's secret
//! is stored; the token itself is printed once, alone on stdout, so `TOKEN=$(meshd invite ...)`
//! works, and the note for people goes to stderr.

use std::io::Write;

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use mesh_config::Role;
use mesh_config::alloc::AddressPlan;
use mesh_config::validate::overlaps;
use pki::{CertificateAuthority, InvitationRequest, create_invitation, rfc3339};
use time::OffsetDateTime;

use super::own_config::{load_own_config, require_endpoints};
use super::{CommandError, Context, Output, invitations, pki_error};
use crate::cli::{ExitFamilies, InviteArgs};
use crate::control::record::SignedRecord;
use crate::control::store;
use crate::identity::node_role;
use crate::state::CaDatabase;

/// Runs `meshd invite`: a new invitation, or `--list` / `--cancel NAME`.
pub fn invite<O: Write, N: Write>(
    context: &Context,
    args: &InviteArgs,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    if args.list {
        return invitations::list(context, args.json, output);
    }
    if let Some(name) = &args.cancel {
        return invitations::cancel(context, name, output);
    }
    // clap requires both unless --list or --cancel is given.
    let (Some(name), Some(role)) = (&args.name, args.role) else {
        return Err(CommandError::invalid(
            "NAME",
            "give the new node's name and --role, or --list, or --cancel NAME",
        ));
    };
    create(context, name, role, args, output)
}

/// Creates the invitation for node `name` as a `role`, with the terms in `args`.
pub(super) fn create<O: Write, N: Write>(
    context: &Context,
    name: &str,
    role: Role,
    args: &InviteArgs,
    output: &mut Output<O, N>,
) -> Result<(), CommandError> {
    let invalid = CommandError::invalid;
    mesh_config::names::check_node_name(name).map_err(|reason| invalid("NAME", reason))?;

    let state = &context.state;
    // Fail early, with the "not the CA holder" hint, before taking the lock or the config.
    super::refuse_standby(&state.read_ca_db()?)?;
    // The token tells the joiner where to reach this node, from the config.
    let (config, _) = load_own_config(context)?;
    let endpoints: Vec<String> = require_endpoints(context, &config, "a joining node")?
        .iter()
        .map(ToString::to_string)
        .collect();

    let _lock = state.lock()?;
    // Re-read under the lock: another command may have changed it in between.
    let mut db = state.read_ca_db()?;
    super::refuse_standby(&db)?;
    let ca = CertificateAuthority::from_pem(
        &state.read_certificate(&state.ca_cert_path())?,
        &state.read_ca_key()?,
    )
    .map_err(pki_error("loading the mesh CA from the state directory"))?;
    let now = OffsetDateTime::now_utc();

    check_name_is_free(&db, name, now).map_err(|reason| invalid("NAME", reason))?;
    let core =
        core_of(&db, role, args.core.as_ref(), now).map_err(|reason| invalid("--core", reason))?;
    check_routes(&db, db.allocator.plan(), &args.routes, now)
        .map_err(|reason| invalid("--route", reason))?;
    let underlay = underlay_endpoints(&config.node.name, &endpoints, &store::read_members(state)?);
    check_routes_avoid_underlay(&args.routes, &underlay)
        .map_err(|reason| invalid("--route", reason))?;
    check_anycast(&db, db.allocator.plan(), &args.anycast, &args.routes, now)
        .map_err(|reason| invalid("--anycast", reason))?;
    let approvals = pki::Approvals {
        exit_ipv4: args.exit.is_some_and(ExitFamilies::ipv4),
        exit_ipv6: args.exit.is_some_and(ExitFamilies::ipv6),
        anycast: args.anycast.clone(),
    };
    if args.foreign && role != Role::Spoke {
        return Err(invalid(
            "--foreign",
            "only a spoke can be a foreign router (its core stands in for it); use --role spoke --core CORE"
                .into(),
        ));
    }
    let ttl =
        time::Duration::try_from(args.ttl).map_err(|err| invalid("--ttl", err.to_string()))?;

    let request = InvitationRequest {
        name: name.to_owned(),
        role: node_role(role),
        core: core.clone(),
        lan_prefixes: args.routes.clone(),
        approvals: approvals.clone(),
        foreign: args.foreign,
        endpoints,
        ttl,
    };
    let (token, record) = create_invitation(&request, ca.fingerprint(), now)
        .map_err(|err| invalid("meshd invite", err.to_string()))?;
    let text = token
        .encode()
        .map_err(|err| invalid("meshd invite", err.to_string()))?;
    db.invitations.push(record);
    state.write_ca_db(&db)?;

    writeln!(output.out, "{text}").map_err(CommandError::Output)?;
    let expires = rfc3339(token.expires_at);
    let behind = core
        .as_ref()
        .map_or(String::new(), |core| format!(" behind {core}"));
    let lans = if args.routes.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = args.routes.iter().map(ToString::to_string).collect();
        format!(", may announce {}", list.join(", "))
    };
    let exit = match args.exit {
        Some(families) => format!(", may serve as an Internet exit for {families}"),
        None => String::new(),
    };
    let anycast = if args.anycast.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = args.anycast.iter().map(ToString::to_string).collect();
        format!(", shares {}", list.join(", "))
    };
    let (kind, run) = match (&core, args.foreign) {
        (Some(core), true) => (
            "foreign router",
            format!(
                "On {core} (which stands in for it), run: meshd router add TOKEN --wg-key \
                 ROUTER_PUBLIC_KEY\nthen `meshd export routeros|wg-quick|bird|frr {name}` there \
                 prints the router's configuration"
            ),
        ),
        _ => (role.as_str(), format!("On {name}, run: meshd join TOKEN")),
    };
    writeln!(
        output.note,
        "Invited {name} as a {kind}{behind}{lans}{exit}{anycast}. The token works once, until \
         {expires} (`meshd invite --cancel {name}` takes it back).\n{run}"
    )
    .map_err(CommandError::Output)
}

/// A name may be invited if no live node has it and no pending invitation reserves it.
fn check_name_is_free(db: &CaDatabase, name: &str, now: OffsetDateTime) -> Result<(), String> {
    if db.allocator.node(name).is_some() {
        return Err(format!("a node named {name:?} is already in the mesh"));
    }
    if db.name_is_burnt(name) {
        return Err(format!(
            "{name:?} was revoked, and names of revoked nodes are not handed out again; to give \
             it to a new node on purpose, run `meshd ca free-name {name}` first"
        ));
    }
    if let Some(pending) = db.pending_invitations(now).find(|inv| inv.name == name) {
        return Err(format!(
            "{name:?} already has an invitation, valid until {}; cancel it with `meshd invite \
             --cancel {name}`, or choose another name",
            rfc3339(pending.expires_at)
        ));
    }
    Ok(())
}

/// The core a spoke attaches to: `--core`, or the only core when there is exactly one.
fn core_of(
    db: &CaDatabase,
    role: Role,
    core: Option<&String>,
    now: OffsetDateTime,
) -> Result<Option<String>, String> {
    let cores: Vec<&str> = db
        .allocator
        .nodes()
        .filter(|node| node.role == Role::Core)
        .map(|node| node.name.as_str())
        .collect();
    match (role, core) {
        (Role::Core, None) => Ok(None),
        (Role::Core, Some(_)) => {
            Err("only a spoke attaches to a core; a core meshes with every other core".into())
        }
        (Role::Spoke, Some(core)) if cores.contains(&core.as_str()) => Ok(Some(core.clone())),
        (Role::Spoke, Some(core)) if db.allocator.node(core).is_some() => Err(format!(
            "{core:?} is a spoke; a spoke attaches to a core (cores: {})",
            cores.join(", ")
        )),
        // Only a pending invitation: a cancelled or expired one will not bring the core.
        (Role::Spoke, Some(core)) if db.pending_invitations(now).any(|inv| &inv.name == core) => {
            Err(format!(
                "core {core:?} is invited but has not joined yet; invite its spokes once it has"
            ))
        }
        (Role::Spoke, Some(core)) => Err(format!(
            "there is no core named {core:?} in the mesh (cores: {})",
            cores.join(", ")
        )),
        (Role::Spoke, None) => match cores.as_slice() {
            [only] => Ok(Some((*only).to_owned())),
            _ => Err(format!(
                "a spoke needs the core it attaches to: add --core NAME (cores: {})",
                cores.join(", ")
            )),
        },
    }
}

/// LAN prefixes must be networks that overlap neither the mesh pools, nor each other, nor
/// any LAN already approved for a node or promised by a pending invitation.
fn check_routes(
    db: &CaDatabase,
    plan: &AddressPlan,
    routes: &[IpNet],
    now: OffsetDateTime,
) -> Result<(), String> {
    let taken = taken_prefixes(db, plan, now);
    for (i, route) in routes.iter().enumerate() {
        if route.trunc() != *route {
            return Err(format!(
                "{route} has host bits set (did you mean {}?)",
                route.trunc()
            ));
        }
        if let Some((other, owner)) = taken.iter().find(|(other, _)| overlaps(route, other)) {
            return Err(format!("{route} overlaps {other}, {owner}"));
        }
        if let Some(other) = routes[..i].iter().find(|other| overlaps(route, other)) {
            return Err(format!("{route} overlaps {other}, given earlier"));
        }
    }
    Ok(())
}

/// Shared prefixes must be networks (not a default route: that is what exits announce) apart
/// from the mesh pools, every LAN (approved, promised, or given with this invitation) and any
/// other shared prefix, except the very same one: that is how several nodes share it.
pub(super) fn check_anycast(
    db: &CaDatabase,
    plan: &AddressPlan,
    anycast: &[IpNet],
    routes: &[IpNet],
    now: OffsetDateTime,
) -> Result<(), String> {
    let mut taken = taken_prefixes(db, plan, now);
    taken.extend(
        routes
            .iter()
            .map(|lan| (*lan, "a LAN of this invitation".to_owned())),
    );
    let shared = db
        .approvals
        .iter()
        .flat_map(|(node, a)| a.anycast.iter().map(move |p| (*p, node.clone())))
        .chain(db.pending_invitations(now).flat_map(|invitation| {
            let name = invitation.name.clone();
            invitation
                .approvals
                .anycast
                .iter()
                .map(move |p| (*p, name.clone()))
        }));
    let shared: Vec<(IpNet, String)> = shared.collect();
    for (i, prefix) in anycast.iter().enumerate() {
        if prefix.trunc() != *prefix {
            return Err(format!(
                "{prefix} has host bits set (did you mean {}?)",
                prefix.trunc()
            ));
        }
        if prefix.prefix_len() == 0 {
            return Err(format!(
                "{prefix} is a default route; make the node an Internet exit with --exit"
            ));
        }
        if let Some((other, owner)) = taken.iter().find(|(other, _)| overlaps(prefix, other)) {
            return Err(format!("{prefix} overlaps {other}, {owner}"));
        }
        if let Some((other, node)) = shared
            .iter()
            .find(|(other, _)| other != prefix && overlaps(prefix, other))
        {
            return Err(format!(
                "{prefix} overlaps {other}, shared by {node}; a shared prefix is shared whole"
            ));
        }
        if anycast[..i].contains(prefix) {
            return Err(format!("{prefix} is given twice"));
        }
    }
    Ok(())
}

/// What new LANs and shared prefixes must stay clear of: the mesh pools, the approved LANs,
/// and those promised by pending invitations.
fn taken_prefixes(
    db: &CaDatabase,
    plan: &AddressPlan,
    now: OffsetDateTime,
) -> Vec<(IpNet, String)> {
    [
        (IpNet::V4(plan.pool4), "the mesh IPv4 pool".to_owned()),
        (IpNet::V6(plan.pool6), "the mesh IPv6 pool".to_owned()),
    ]
    .into_iter()
    .chain(db.lan_prefixes.iter().flat_map(|(node, lans)| {
        lans.iter()
            .map(move |lan| (*lan, format!("a LAN of node {node}")))
    }))
    .chain(db.pending_invitations(now).flat_map(|invitation| {
        invitation.lan_prefixes.iter().map(move |lan| {
            (
                *lan,
                format!(
                    "a LAN promised to {} by a pending invitation",
                    invitation.name
                ),
            )
        })
    }))
    .collect()
}

/// The underlay addresses the tunnels run over, as far as this node knows them: its own
/// endpoints and those in the members' records (endpoints given by name are left out: what
/// they resolve to can change).
fn underlay_endpoints(
    own_name: &str,
    own: &[String],
    members: &[SignedRecord],
) -> Vec<(IpAddr, String)> {
    let own = own.iter().map(|e| (e.as_str(), own_name.to_owned()));
    let theirs = members.iter().flat_map(|record| {
        let name = pki::NodeCertificate::parse(&record.certificate)
            .map_or_else(|_| "a member".to_owned(), |c| c.identity.name);
        record
            .endpoints
            .iter()
            .map(move |e| (e.as_str(), name.clone()))
    });
    own.chain(theirs)
        .filter_map(|(endpoint, node)| {
            let ip = endpoint.parse::<SocketAddr>().ok()?.ip();
            Some((ip, node))
        })
        .collect()
}

/// A LAN prefix may not cover an address the tunnels run over: announcing it would route the
/// tunnels into themselves.
fn check_routes_avoid_underlay(
    routes: &[IpNet],
    underlay: &[(IpAddr, String)],
) -> Result<(), String> {
    for route in routes {
        if let Some((ip, node)) = underlay.iter().find(|(ip, _)| route.contains(ip)) {
            return Err(format!(
                "{route} covers {ip}, an underlay endpoint of node {node}: the tunnels run over \
                 it, and announcing it through the mesh would route them into themselves"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_that_cover_a_member_endpoint_are_refused_with_the_member() {
        let underlay = vec![
            ("198.51.100.1".parse().unwrap(), "alpha".to_owned()),
            ("2001:db8::7".parse().unwrap(), "beta".to_owned()),
        ];
        let nets =
            |list: &[&str]| -> Vec<IpNet> { list.iter().map(|n| n.parse().unwrap()).collect() };
        let err = check_routes_avoid_underlay(&nets(&["198.51.100.0/24"]), &underlay).unwrap_err();
        assert!(
            err.contains("198.51.100.1") && err.contains("alpha"),
            "{err}"
        );
        let err = check_routes_avoid_underlay(&nets(&["10.9.0.0/16", "2001:db8::/32"]), &underlay)
            .unwrap_err();
        assert!(err.contains("2001:db8::7") && err.contains("beta"), "{err}");
        check_routes_avoid_underlay(&nets(&["192.168.42.0/24", "2001:db9::/32"]), &underlay)
            .unwrap();
    }
}
