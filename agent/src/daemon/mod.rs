//! `meshd run`: builds the node from its configuration and state, runs until SIGINT/SIGTERM,
//! then tears down what it set up.
//!
//! Order of start-up, and why:
//! 1. load `meshd.toml`, the WireGuard key and (unless the configuration gives the addresses)
//!    the node's allocation from `node.json` (fail before touching the system);
//! 2. resolve peer endpoints (names are looked up once for now; re-resolution belongs to the
//!    path manager that follows);
//! 3. open the control socket (a second daemon stops here), flush routes tagged
//!    [`MESHD_ROUTE_PROTOCOL`] that a crashed run left behind;
//! 4. start the planes, one stage each ([`stages::STAGES`]: interface, data plane, control
//!    plane, routing plane); from then on the peer set (crate::peerset) is the only one to
//!    change the data plane's peers, and the kernel routes follow it (membership, clients and
//!    BGP best routes all go through it);
//! 5. tell systemd the node is ready, only now.
//!
//! Shutdown stops the stages in reverse (the routing plane first, the interface and our
//! routes last). If a stage fails to start, the stages before it are stopped the same way
//! before the error is returned, and systemd never hears READY.

mod stages;
mod uplinks;

use std::path::Path;

use anyhow::{Context, bail};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use mesh_config::{Config, NodeAllocation};

use tokio::sync::watch;

use crate::api::{ApiServer, NodeInfo};
use crate::dataplane::{DataplaneHandle, PeerConfig};
use crate::logging::LogFilterSetter;
use crate::metrics::DaemonMetrics;
use crate::netlink::{MESHD_ROUTE_PROTOCOL, Netlink};
use crate::peerset::{PeerSet, PeerSources, RoutePlan};
use crate::reload::Reloader;
use crate::routing::RoutingPlane;
use crate::state::StateDir;
use stages::Node;

/// Runs the daemon in the foreground until SIGINT or SIGTERM; SIGHUP reloads the
/// configuration (crate::reload). Logs go to the journal under systemd, to stderr otherwise
/// (crate::logging). `log_level` is `meshd run --log-level`.
pub fn run(
    config_path: &Path,
    state_dir: &Path,
    socket_path: &Path,
    log_level: Option<&str>,
) -> anyhow::Result<()> {
    let config = mesh_config::load(config_path)
        .with_context(|| format!("cannot load the configuration {}", config_path.display()))?;
    let log_filter = crate::logging::init(log_level, &config.log.level);
    // The whole state directory, once: a damaged one stops the start here, naming the file.
    let checked = crate::state::check::at_start(&StateDir::new(state_dir))
        .context("cannot start from the state directory")?;
    let identity = Identity {
        private_key: checked.wireguard_key.to_bytes(),
        approvals: checked.approvals,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("meshd")
        .build()
        .context("cannot start the async runtime")?;
    let allocation = load_allocation(&config, state_dir)?;
    let files = Files {
        config: config_path,
        state: state_dir,
        socket: socket_path,
    };
    runtime.block_on(serve(config, allocation, identity, files, log_filter))
}

/// What the daemon knows of itself from the state directory.
struct Identity {
    /// The WireGuard private key.
    private_key: [u8; 32],
    /// The certificate's approvals: which exit families its NAT serves.
    approvals: pki::Approvals,
}

/// Where the daemon's files are.
#[derive(Debug, Clone, Copy)]
struct Files<'a> {
    config: &'a Path,
    state: &'a Path,
    socket: &'a Path,
}

/// What the reloader needs besides the planes: SIGHUP, the log filter, the DNS resolver.
struct Reloading {
    log_filter: LogFilterSetter,
    hangup: tokio::signal::unix::Signal,
    resolver: crate::dns::Resolver,
}

/// The daemon proper, inside the runtime.
async fn serve(
    config: Config,
    allocation: Option<NodeAllocation>,
    identity: Identity,
    files: Files<'_>,
    log_filter: LogFilterSetter,
) -> anyhow::Result<()> {
    let (state_dir, socket_path) = (files.state, files.socket);
    // At once: until a handler is installed, SIGHUP (a reload) would end the process.
    let hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot install the SIGHUP (reload) handler")?;
    let addresses = overlay_addresses(&config, allocation.as_ref())?;
    let mut configured = Vec::with_capacity(config.peers.len());
    for peer in &config.peers {
        configured.push(crate::peerset::resolve_peer(peer, &config.dns).await);
    }
    // The control socket before touching the system: a second daemon stops here. It also
    // brings the client devices from clients.json (covered by the node's own prefixes, so
    // they need no kernel routes of their own).
    let api = ApiServer::open(socket_path, state_dir, &configured)
        .context("cannot open the local control socket")?;
    // One resolver for every endpoint name: [[peer]]s (the reloader) and members (control).
    let resolver = crate::dns::Resolver::start(&config.dns);
    let control_settings =
        crate::control::ControlSettings::for_daemon(&config, state_dir).map(|settings| {
            crate::control::ControlSettings {
                resolver: Some(resolver.clone()),
                ..settings
            }
        });
    let plan = RoutePlan {
        own_addresses: addresses.clone(),
        pools: if control_settings.is_some() {
            crate::control::mesh_pool_routes(&config)
        } else {
            Vec::new()
        },
        exit_destinations: config.exit.routes.iter().map(|r| r.destination).collect(),
        use_exits: config.exit.use_exits == mesh_config::exit::UseExits::Nearest,
    };
    let sources = PeerSources::from_local(api.known_peers());
    let initial = sources.combine().peers;
    let peers: Vec<PeerConfig> = initial.iter().map(|p| p.config.clone()).collect();
    let routes = plan.wanted(&initial);

    let netlink = Netlink::connect().context("cannot talk to the kernel over rtnetlink")?;
    let stale = netlink
        .flush_routes(MESHD_ROUTE_PROTOCOL)
        .await
        .context("cannot remove routes left by an earlier run")?;
    if !stale.is_empty() {
        tracing::info!(count = stale.len(), "removed routes left by an earlier run");
    }

    let mut node = Node::new(
        &config,
        &netlink,
        addresses,
        identity.private_key,
        peers,
        routes,
        plan.pools.clone(),
        control_settings,
    );
    node.approvals = identity.approvals;
    node.start().await?;
    tracing::info!(node = %config.node.name, "meshd running");
    let interface = &config.interface.name;
    // The interface, its routes, the data plane and the control socket are all up: tell
    // systemd (Type=notify), so that `systemctl start` returns only now.
    crate::service_manager::ready(&format!(
        "running: {interface} up, {} peers configured, {} routes",
        initial.len(),
        node.kernel().installed().len()
    ));
    let reloading = Reloading {
        log_filter,
        hangup,
        resolver,
    };
    let signal = run_planes(&mut node, api, sources, plan, files, reloading).await;
    tracing::info!(signal, "shutting down");
    crate::service_manager::stopping(&format!(
        "stopping on {signal}: removing routes and {interface}"
    ));
    node.stop().await;
    signal_result(signal)
}

/// Runs what works on the started planes (the control socket, the peer set and its kernel
/// routes, metrics, reloads, membership and routing) until SIGINT or SIGTERM, whose name it
/// returns.
async fn run_planes(
    node: &mut Node<'_>,
    api: ApiServer,
    sources: PeerSources,
    plan: RoutePlan,
    files: Files<'_>,
    reloading: Reloading,
) -> &'static str {
    let Reloading {
        log_filter,
        hangup,
        resolver,
    } = reloading;
    let Node {
        config,
        mtu,
        addresses,
        kernel,
        dataplane,
        control,
        routing,
        guard,
        ..
    } = node;
    let kernel = kernel.as_mut().expect("the interface stage has started");
    let dataplane = dataplane
        .as_ref()
        .expect("the data-plane stage has started");
    let mut info = node_info(config, dataplane, *mtu, addresses, kernel.installed());
    info.handshake_guard = guard.is_some();
    let api = match routing {
        Some(routing) => api.with_bgp(routing.view()),
        None => api,
    };
    let api = match control.as_ref() {
        Some(control) => {
            use crate::api::server::{ControlAsk, ControlTrigger};
            let trigger = control.renewal_trigger();
            api.with_control(ControlTrigger::new(move |what| {
                let (taken, message) = match what {
                    ControlAsk::Renew => (
                        trigger.request(),
                        "asked for a new certificate; the log says `node certificate renewed` \
                         once it is in use",
                    ),
                    ControlAsk::LoadRouters => (
                        trigger.load_routers(),
                        "standing in for the routers in the state directory; `meshd peers` \
                         shows their tunnels",
                    ),
                };
                if taken {
                    Ok(message.to_owned())
                } else {
                    Err("the control plane did not take the request; try again".to_owned())
                }
            }))
        }
        None => api,
    };
    let peer_set = PeerSet::new(dataplane, sources, plan);
    let wanted_routes = peer_set.wanted_routes();
    let gateway_routes = peer_set.wanted_gateway_routes();
    let exit_routes = peer_set.wanted_exit_routes();
    let members = control.as_ref().map(crate::control::ControlHandle::members);
    let metrics_address = watch::Sender::new(config.metrics.address());
    let metrics = DaemonMetrics {
        peer_set: &peer_set,
        control: control.as_ref(),
        bgp: routing.as_ref().map(RoutingPlane::view),
        started_at_unix: info.started_at.unix_timestamp(),
        node_certificate: control
            .as_ref()
            .map(|_| StateDir::new(files.state).node_cert_path()),
        handshake_guard: node.guard.is_some(),
    };
    let reloader = Reloader::new(
        files.config.to_path_buf(),
        StateDir::new(files.state),
        (*config).clone(),
        &peer_set,
        &metrics_address,
        log_filter,
        // [paths] changes re-rank every peer's paths in the running data plane.
        |paths| {
            let policy = crate::dataplane::ConfiguredPaths::new(paths);
            dataplane.set_path_policy(std::sync::Arc::new(policy));
        },
    )
    // [[peer]] endpoint names follow their DNS records (crate::dns) while the daemon runs.
    .with_resolver(resolver);
    // Members' names are asked again too when every path to that member fails, and new
    // [node] endpoints are advertised in a new membership record.
    let reloader = match control.as_ref() {
        Some(control) => reloader
            .with_member_names(control.member_names())
            .with_endpoints(|endpoints| control.set_endpoints(endpoints)),
        None => reloader,
    };
    // Only a routing plane follows reloads of [[bgp.neighbor]] and [routing] lan_prefixes;
    // without one (nobody subscribed) the reloader reports them as needing a restart.
    let routing_config = routing.is_some().then(|| reloader.config());
    tokio::select! {
        signal = wait_for_shutdown_signal() => signal,
        never = api.serve(info, &peer_set) => match never {},
        never = kernel.follow(wanted_routes, gateway_routes, exit_routes) => match never {},
        never = crate::metrics::serve(metrics_address.subscribe(), &metrics) => match never {},
        never = reloader.on_hangup(hangup) => match never {},
        never = reloader.follow_names() => match never {},
        never = reloader.follow_path_resolves(|| dataplane.take_resolve_requests()) => match never {},
        () = follow_membership(control.as_ref(), &peer_set) => wait_for_shutdown_signal().await,
        never = follow_routing(routing.as_mut(), &peer_set, members, routing_config) => match never {},
    }
}

/// Feeds membership changes into the peer set (forever pending without a control plane).
async fn follow_membership(
    control: Option<&crate::control::ControlHandle>,
    peer_set: &PeerSet<'_, DataplaneHandle>,
) {
    match control {
        Some(control) => peer_set.follow_members(control.peers()).await,
        None => std::future::pending().await,
    }
}

/// Runs the routing plane (forever pending without one).
async fn follow_routing(
    routing: Option<&mut RoutingPlane>,
    peer_set: &PeerSet<'_, DataplaneHandle>,
    members: Option<tokio::sync::watch::Receiver<Vec<pki::NodeIdentity>>>,
    config: Option<watch::Receiver<std::sync::Arc<Config>>>,
) -> std::convert::Infallible {
    match routing {
        Some(routing) => routing.run(peer_set, members, config).await,
        None => std::future::pending().await,
    }
}

/// What the control socket reports about this node.
fn node_info(
    config: &Config,
    dataplane: &DataplaneHandle,
    mtu: u16,
    addresses: &[IpNet],
    kernel_routes: &[IpNet],
) -> NodeInfo {
    NodeInfo {
        name: config.node.name.clone(),
        role: config.node.role,
        public_key: dataplane.public_key(),
        interface: config.interface.name.clone(),
        mtu,
        listen_port: config.node.listen_port,
        addresses: addresses.to_vec(),
        endpoints: config.node.endpoint_strings(),
        listening: dataplane.local_addrs().to_vec(),
        // Set by the caller, which knows whether the guard stage installed it.
        handshake_guard: false,
        kernel_routes: kernel_routes.to_vec(),
        started_at: time::OffsetDateTime::now_utc(),
    }
}

/// A signal that could not even be installed is an error; a received one is a clean stop.
fn signal_result(signal: &str) -> anyhow::Result<()> {
    if signal == "none" {
        bail!("cannot install the SIGINT/SIGTERM handlers");
    }
    Ok(())
}

/// The node's overlay addresses: `[interface] addresses` if given, else the node's own
/// addresses from its allocation (`node.json`): `10.N.0.1/16` and its IPv6 address with the
/// length of its IPv6 prefix (a core's /64, a spoke's /80).
fn overlay_addresses(
    config: &Config,
    allocation: Option<&NodeAllocation>,
) -> anyhow::Result<Vec<IpNet>> {
    if !config.interface.addresses.is_empty() {
        return Ok(config.interface.addresses.clone());
    }
    let Some(allocation) = allocation else {
        bail!(
            "no overlay addresses: the state directory has no node.json (run `meshd init` or \
             `meshd join`), and [interface] addresses is not set in the configuration"
        );
    };
    Ok(addresses_of(allocation))
}

/// A node's own overlay addresses from its allocation.
fn addresses_of(allocation: &NodeAllocation) -> Vec<IpNet> {
    let v4 = Ipv4Net::new(allocation.ipv4_address, allocation.ipv4.prefix_len())
        .expect("a prefix length taken from an Ipv4Net is valid");
    let v6 = Ipv6Net::new(allocation.ipv6_address, allocation.ipv6.prefix_len())
        .expect("a prefix length taken from an Ipv6Net is valid");
    vec![IpNet::V4(v4), IpNet::V6(v6)]
}

/// The node's allocation from `node.json`, needed only when the configuration does not give
/// the addresses (a node set up by hand may have no `node.json`).
fn load_allocation(config: &Config, state_dir: &Path) -> anyhow::Result<Option<NodeAllocation>> {
    if !config.interface.addresses.is_empty() {
        return Ok(None);
    }
    let record = StateDir::new(state_dir)
        .read_node_record()
        .context("cannot read the node's allocation to address the interface")?;
    Ok(Some(record.allocation))
}

/// Waits for SIGINT or SIGTERM and returns its name; `"none"` if the handlers could not be
/// installed.
async fn wait_for_shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return "none";
    };
    tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    #[test]
    fn missing_addresses_are_a_clear_error() {
        let config = Config::new("alpha", mesh_config::Role::Core);
        let error = overlay_addresses(&config, None).unwrap_err().to_string();
        assert!(
            error.contains("[interface] addresses") && error.contains("node.json"),
            "{error}"
        );
    }

    /// A spoke's allocation (10.3.0.0/16, fd00:1:2:1:1::/80): the client registry's fixture.
    fn allocation() -> NodeAllocation {
        crate::api::client_registry::tests::spoke()
    }

    #[test]
    fn addresses_default_to_the_allocation() {
        let config = Config::new("alpha", mesh_config::Role::Spoke);
        assert_eq!(
            overlay_addresses(&config, Some(&allocation())).unwrap(),
            nets(&["10.3.0.1/16", "fd00:1:2:1:1::1/80"])
        );
    }

    #[test]
    fn configured_addresses_override_the_allocation() {
        let mut config = Config::new("alpha", mesh_config::Role::Spoke);
        config.interface.addresses = nets(&["10.9.0.1/24"]);
        assert_eq!(
            overlay_addresses(&config, Some(&allocation())).unwrap(),
            nets(&["10.9.0.1/24"])
        );
    }
}
