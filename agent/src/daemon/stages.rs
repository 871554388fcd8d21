//! The planes `meshd run` starts, as a list of stages: each starts one plane and keeps its
//! handle in [`Node`]; they start in the order of [`STAGES`] and stop in reverse, and a stage
//! that fails stops the ones started before it. Adding a plane is adding its line to
//! [`STAGES`] (and its handle to [`Node`]).
//!
//! Why this order: the interface (TUN, addresses, routes) first, since the data plane reads
//! and writes the TUN; the control plane after the data plane, since members it learns become
//! the data plane's peers; the uplink follower right after the data plane, which it tells
//! where paths can leave from; the routing plane last, since BGP listens on the overlay addresses
//! and its sessions run through the tunnels.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context;
use ipnet::IpNet;
use mesh_config::Config;

use crate::control::{ControlHandle, ControlPlane, ControlSettings};
use crate::dataplane::{
    ConfiguredPaths, Dataplane, DataplaneConfig, DataplaneHandle, PeerConfig, TunDevice,
};
use crate::netlink::mtu::DEFAULT_UNDERLAY_MTU;
use crate::netlink::{ExitNat, Families, HandshakeGuard, Netlink, tunnel_mtu};
use crate::peerset::KernelRoutes;
use crate::routing::{RoutingPlane, RoutingSettings};

use super::uplinks::{self, UplinkFollower};

/// A stage's start or stop, borrowing the node while it runs.
type StageFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// One plane: how it starts and how it stops.
pub(super) struct Stage {
    name: &'static str,
    start: for<'a, 'n> fn(&'a mut Node<'n>) -> StageFuture<'a, anyhow::Result<()>>,
    stop: for<'a, 'n> fn(&'a mut Node<'n>) -> StageFuture<'a, ()>,
}

/// In start order.
#[rustfmt::skip]
pub(super) const STAGES: &[Stage] = &[
    Stage { name: "interface", start: start_interface, stop: stop_interface },
    Stage { name: "data plane", start: start_dataplane, stop: stop_dataplane },
    Stage { name: "handshake guard", start: start_guard, stop: stop_guard },
    Stage { name: "uplinks", start: start_uplinks, stop: stop_uplinks },
    Stage { name: "exit", start: start_exit, stop: stop_exit },
    Stage { name: "control plane", start: start_control, stop: stop_control },
    Stage { name: "routing plane", start: start_routing, stop: stop_routing },
];

/// What the stages start from, and the handles of the planes they started.
pub(super) struct Node<'n> {
    pub config: &'n Config,
    pub netlink: &'n Netlink,
    /// The overlay addresses put on the TUN.
    pub addresses: Vec<IpNet>,
    pub private_key: [u8; 32],
    /// The data plane's first peers and the kernel routes they want.
    pub peers: Vec<PeerConfig>,
    pub routes: Vec<IpNet>,
    /// The mesh pools routed into the TUN (empty without a control plane).
    pub pools: Vec<IpNet>,
    /// Taken by the control-plane stage; `None`: the node has no certificate, no control plane.
    pub control_settings: Option<ControlSettings>,
    /// The certificate's approvals at start (the exit stage says when there is none).
    pub approvals: pki::Approvals,

    /// The TUN device's MTU, set by the interface stage.
    pub mtu: u16,
    /// The TUN from the interface stage until the data plane takes it over.
    tun: Option<TunDevice>,
    pub kernel: Option<KernelRoutes<'n>>,
    pub dataplane: Option<DataplaneHandle>,
    uplinks: Option<UplinkFollower>,
    exit_nat: Option<ExitNat>,
    /// The kernel handshake guard, when it could be installed.
    pub guard: Option<HandshakeGuard>,
    pub control: Option<ControlHandle>,
    pub routing: Option<RoutingPlane>,
}

impl<'n> Node<'n> {
    /// A node with nothing started yet.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &'n Config,
        netlink: &'n Netlink,
        addresses: Vec<IpNet>,
        private_key: [u8; 32],
        peers: Vec<PeerConfig>,
        routes: Vec<IpNet>,
        pools: Vec<IpNet>,
        control_settings: Option<ControlSettings>,
    ) -> Self {
        Self {
            config,
            netlink,
            addresses,
            private_key,
            peers,
            routes,
            pools,
            control_settings,
            approvals: pki::Approvals::default(),
            mtu: 0,
            tun: None,
            kernel: None,
            dataplane: None,
            uplinks: None,
            exit_nat: None,
            guard: None,
            control: None,
            routing: None,
        }
    }

    /// Starts every stage in order; if one fails, stops those already started and returns
    /// its error.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        for (started, stage) in STAGES.iter().enumerate() {
            if let Err(error) = (stage.start)(self).await {
                tracing::debug!(
                    stage = stage.name,
                    "start failed, stopping the stages before it"
                );
                self.stop_stages(&STAGES[..started]).await;
                return Err(error);
            }
            tracing::debug!(stage = stage.name, "started");
        }
        Ok(())
    }

    /// Stops every stage, last started first.
    pub async fn stop(&mut self) {
        self.stop_stages(STAGES).await;
    }

    async fn stop_stages(&mut self, stages: &[Stage]) {
        for stage in stages.iter().rev() {
            (stage.stop)(self).await;
        }
    }

    /// The kernel routes into the TUN, once the interface stage has started.
    pub fn kernel(&mut self) -> &mut KernelRoutes<'n> {
        self.kernel
            .as_mut()
            .expect("the interface stage has started")
    }
}

/// Creates the TUN, puts the overlay addresses on it, sets its MTU, brings it up and routes
/// into it what the peer set wants. Routes left by an earlier run were flushed before.
fn start_interface<'a>(node: &'a mut Node<'_>) -> StageFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let mtu = match node.config.interface.mtu {
            Some(mtu) => mtu,
            None => computed_mtu(node.netlink, &node.peers).await?,
        };
        let interface = &node.config.interface.name;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = node.config.node.dataplane_workers_or(cores);
        let tun = create_tun(interface, mtu, workers)?;
        let exit = crate::peerset::ExitTable::from_config(&node.config.exit);
        let mut kernel = KernelRoutes::new(node.netlink, tun.ifindex()).with_exit_table(exit);
        if let Err(error) =
            configure_interface(node.netlink, tun.ifindex(), mtu, &node.addresses).await
        {
            return Err(error.context(format!("cannot configure interface {interface}")));
        }
        if let Err(error) = kernel.sync(&node.routes).await {
            kernel.remove_all().await;
            return Err(anyhow::Error::new(error).context(format!("cannot route into {interface}")));
        }
        // Stale exit rules go; with [exit] use = "nearest" ours are added (the exit table
        // fills as exits are learnt).
        if let Err(error) = kernel.set_up_exit_rules().await {
            kernel.remove_all().await;
            return Err(anyhow::Error::new(error).context("cannot set up the exit policy rules"));
        }
        tracing::info!(%interface, mtu, addresses = ?node.addresses, routes = node.routes.len(), "interface configured");
        node.mtu = mtu;
        node.tun = Some(tun);
        node.kernel = Some(kernel);
        Ok(())
    })
}

fn create_tun(interface: &str, mtu: u16, workers: usize) -> anyhow::Result<TunDevice> {
    crate::dataplane::create_tun(interface, mtu, workers)
        .with_context(|| format!("cannot create the TUN device {interface:?}"))
}

/// Removes our routes; the kernel deletes the interface with its addresses when the TUN is
/// closed (by the data plane, or here if the data plane never took it).
fn stop_interface<'a>(node: &'a mut Node<'_>) -> StageFuture<'a, ()> {
    Box::pin(async move {
        if let Some(mut kernel) = node.kernel.take() {
            kernel.remove_all().await;
        }
        node.tun = None;
    })
}

/// Starts the userspace WireGuard data plane on the TUN.
fn start_dataplane<'a>(node: &'a mut Node<'_>) -> StageFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let tun = node
            .tun
            .take()
            .expect("the interface stage created the TUN");
        let config = DataplaneConfig {
            private_key: node.private_key,
            listen_port: node.config.node.listen_port,
            bind_addresses: Vec::new(),
            mtu: node.mtu,
            peers: node.peers.clone(),
            // Only while the node uses exits: then the exit rules need it to let the tunnels
            // through; otherwise nothing on the host is changed for nothing.
            fwmark: (node.config.exit.use_exits == mesh_config::exit::UseExits::Nearest)
                .then_some(node.config.exit.fwmark),
        };
        let dataplane = Dataplane::start(config, tun)
            .await
            .context("cannot start the data plane")?;
        dataplane.set_path_policy(Arc::new(ConfiguredPaths::new(node.config.paths.clone())));
        node.dataplane = Some(dataplane);
        Ok(())
    })
}

/// Follows the uplinks (rtnetlink) into the data plane. Without it the node still works,
/// with the kernel choosing every path's source address, so a failure is a warning.
fn start_uplinks<'a>(node: &'a mut Node<'_>) -> StageFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let dataplane = node
            .dataplane
            .as_ref()
            .expect("the data plane stage has started");
        match uplinks::follow(&node.config.interface.name, dataplane.uplinks()).await {
            Ok(follower) => node.uplinks = Some(follower),
            Err(error) => tracing::warn!(
                "cannot follow the uplinks ({error}); paths leave from the address the kernel chooses"
            ),
        }
        Ok(())
    })
}

fn stop_uplinks<'a>(node: &'a mut Node<'_>) -> StageFuture<'a, ()> {
    Box::pin(async move {
        node.uplinks = None;
    })
}

/// With `[exit] serve`, masquerades mesh traffic out of the uplinks (`[exit] interfaces`, else
/// those of the default routes) and turns forwarding on; undone at stop. Before the control
/// plane, so that the exit works before it is announced.
fn start_exit<'a>(node: &'a mut Node<'_>) -> StageFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let exit = &node.config.exit;
        if !exit.serve {
            return Ok(());
        }
        let approved = node.approvals.exit_ipv4 || node.approvals.exit_ipv6;
        if !approved {
            tracing::warn!(
                "[exit] serve: this node's certificate does not approve it as an Internet exit, \
                 so no default route is announced until it does (on the CA holder: `meshd ca \
                 approve NAME --exit`, then `meshd renew` here); the masquerade is set up \
                 already, so the exit works as soon as the approval arrives"
            );
        }
        let tun = &node.config.interface.name;
        let mut uplinks = exit.interfaces.clone();
        if uplinks.is_empty() {
            uplinks = node
                .netlink
                .default_route_interfaces()
                .await
                .context("cannot find the default routes' interfaces for [exit] serve")?;
            uplinks.retain(|uplink| uplink != tun);
        }
        if uplinks.is_empty() && !approved {
            // Nothing is announced, so nothing would leave: not worth refusing to start.
            tracing::warn!(
                "[exit] serve: no uplink to masquerade out of (no default route, no [exit] \
                 interfaces); once the exit is approved, restart meshd with an uplink"
            );
            return Ok(());
        }
        let nat = ExitNat::install(tun, &uplinks, Families::BOTH)
            .context("cannot set up the exit's masquerade")?;
        node.exit_nat = Some(nat);
        Ok(())
    })
}

/// Installs the kernel handshake guard on the listen port, unless `[node] handshake_guard`
/// is off. Without nftables (no nft, no kernel support, no permission) meshd says so once and
/// runs with its userspace limiter only.
fn start_guard<'a>(node: &'a mut Node<'_>) -> StageFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        if !node.config.node.handshake_guard {
            tracing::info!("[node] handshake_guard is off: no kernel handshake guard");
            return Ok(());
        }
        let port = node.config.node.listen_port;
        match tokio::task::spawn_blocking(move || HandshakeGuard::install(port)).await? {
            Ok(guard) => node.guard = Some(guard),
            Err(error) => tracing::warn!(
                %error,
                "no kernel handshake guard; a handshake flood reaches meshd's socket and only \
                 the userspace per-source limit cuts it"
            ),
        }
        Ok(())
    })
}

fn stop_guard<'a>(node: &'a mut Node<'_>) -> StageFuture<'a, ()> {
    Box::pin(async move {
        if let Some(guard) = node.guard.take()
            && let Err(error) = guard.remove()
        {
            tracing::warn!(%error, "cannot remove the kernel handshake guard");
        }
    })
}

fn stop_exit<'a>(node: &'a mut Node<'_>) -> StageFuture<'a, ()> {
    Box::pin(async move {
        if let Some(nat) = node.exit_nat.take()
            && let Err(error) = nat.remove()
        {
            tracing::warn!(%error, "cannot remove the exit's masquerade");
        }
    })
}

/// Stops the data plane and leaves a summary of its counters in the log.
fn stop_dataplane<'a>(node: &'a mut Node<'_>) -> StageFuture<'a, ()> {
    Box::pin(async move {
        if let Some(dataplane) = node.dataplane.take() {
            let stats = dataplane.stats();
            dataplane.shutdown().await;
            tracing::info!(stats = ?stats, "final data plane counters");
        }
    })
}

/// Starts the control plane (join, membership, renewal) when the node has a certificate.
fn start_control<'a>(node: &'a mut Node<'_>) -> StageFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        if let Some(settings) = node.control_settings.take() {
            let control = ControlPlane::start(settings)
                .await
                .context("cannot start the control plane")?;
            node.control = Some(control);
        }
        Ok(())
    })
}

fn stop_control<'a>(node: &'a mut Node<'_>) -> StageFuture<'a, ()> {
    Box::pin(async move {
        if let Some(control) = node.control.take() {
            control.shutdown().await;
        }
    })
}

/// Starts BGP when the node has iBGP sessions or `[[bgp.neighbor]]`s. A neighbour's unusable
/// key file and a speaker that cannot listen both stop the start.
fn start_routing<'a>(node: &'a mut Node<'_>) -> StageFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let settings = RoutingSettings::for_daemon(
            node.config,
            &node.addresses,
            node.pools.clone(),
            node.control.is_some(),
        )
        .context("cannot start BGP")?;
        if let Some(settings) = settings {
            let routing = RoutingPlane::start(settings)
                .await
                .context("cannot start BGP")?;
            node.routing = Some(routing);
        }
        Ok(())
    })
}

fn stop_routing<'a>(node: &'a mut Node<'_>) -> StageFuture<'a, ()> {
    Box::pin(async move {
        if let Some(routing) = node.routing.take() {
            routing.shutdown().await;
        }
    })
}

/// Addresses, MTU and up.
async fn configure_interface(
    netlink: &Netlink,
    index: u32,
    mtu: u16,
    addresses: &[IpNet],
) -> anyhow::Result<()> {
    for address in addresses {
        netlink.add_address(index, *address).await?;
    }
    netlink.set_mtu_and_up(index, mtu).await?;
    Ok(())
}

/// The tunnel MTU for the smallest underlay MTU towards any peer endpoint (Ethernet's 1500
/// when no endpoint is known yet).
async fn computed_mtu(netlink: &Netlink, peers: &[PeerConfig]) -> anyhow::Result<u16> {
    let mut underlay: Option<u32> = None;
    let endpoints: BTreeSet<IpAddr> = peers
        .iter()
        .flat_map(|p| p.endpoints.iter().map(SocketAddr::ip))
        .collect();
    for endpoint in endpoints {
        match netlink.underlay_mtu_towards(endpoint).await {
            Ok(Some(mtu)) => underlay = Some(underlay.map_or(mtu, |m| m.min(mtu))),
            Ok(None) => tracing::warn!(%endpoint, "no route to peer endpoint"),
            Err(error) => tracing::warn!(%endpoint, %error, "cannot find the underlay MTU"),
        }
    }
    let underlay = underlay.map_or(DEFAULT_UNDERLAY_MTU, |mtu| {
        u16::try_from(mtu).unwrap_or(u16::MAX)
    });
    tunnel_mtu(underlay).with_context(|| {
        format!(
            "the underlay MTU towards the peers is {underlay}, too small for a 1280-byte tunnel MTU; \
             set [interface] mtu to override"
        )
    })
}
