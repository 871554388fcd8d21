//! The one owner of the data plane's peer set.
//!
//! Four parts of the daemon decide who the data plane talks to and for which prefixes: the
//! configuration (`[[peer]]`), the local API (clients added at runtime), the control plane
//! (members) and the routing plane (BGP best routes, added to the peer carrying the next hop).
//! `DataplaneHandle::update_peers` replaces the whole set, so if each of them called it, each
//! would undo the others' peers. Instead each replaces only its own source here, and
//! [`PeerSet`] combines the sources ([`merge`]), is the only caller of `update_peers`, and
//! publishes the kernel routes the result wants ([`routes`]), which [`kernel`] installs.

pub mod kernel;
pub mod merge;
mod peer;
mod resolve;
pub mod routes;

use std::sync::{Mutex, MutexGuard, PoisonError};

use ipnet::IpNet;
use tokio::sync::watch;

pub use kernel::{ExitTable, KernelRoutes};
pub use merge::{BgpRoute, Combined, GatewayRoute, PeerSources};
pub use peer::{DataplaneControl, KnownPeer, PeerKind};
pub use resolve::{configured_peer, resolve_peer};
pub use routes::RoutePlan;

use crate::dataplane::{DataplaneError, DataplaneStats};

/// The combined peer set, applied to a data plane.
#[derive(Debug)]
pub struct PeerSet<'a, D> {
    dataplane: &'a D,
    plan: RoutePlan,
    applied: Mutex<Applied>,
    routes: watch::Sender<Vec<IpNet>>,
    exit_routes: watch::Sender<Vec<IpNet>>,
    gateway_routes: watch::Sender<Vec<GatewayRoute>>,
}

/// The sources and what the data plane was last given from them.
#[derive(Debug)]
struct Applied {
    sources: PeerSources,
    peers: Vec<KnownPeer>,
    conflicts: Vec<String>,
}

impl<'a, D: DataplaneControl> PeerSet<'a, D> {
    /// Takes over `dataplane`, which must have been started with `sources.combine().peers`
    /// (nothing is applied here, so sessions are not disturbed).
    pub fn new(dataplane: &'a D, sources: PeerSources, plan: RoutePlan) -> Self {
        let combined = sources.combine();
        log_conflicts(&[], &combined.conflicts);
        let wanted = plan.wanted_by_table(&combined.peers);
        let routes = watch::Sender::new(wanted.main);
        let exit_routes = watch::Sender::new(wanted.exit);
        let gateway_routes = watch::Sender::new(combined.gateway_routes.clone());
        Self {
            dataplane,
            plan,
            gateway_routes,
            applied: Mutex::new(Applied {
                sources,
                peers: combined.peers,
                conflicts: combined.conflicts,
            }),
            routes,
            exit_routes,
        }
    }

    /// The peers the data plane has now, in order of precedence.
    pub fn peers(&self) -> Vec<KnownPeer> {
        self.lock().peers.clone()
    }

    /// The peers with only the prefixes they carry by themselves (configuration, clients,
    /// certificates), without the BGP routes added to them: enough to find the tunnel that
    /// carries a member's address, and cheap even when BGP brings a full table.
    pub fn peers_without_bgp(&self) -> Vec<KnownPeer> {
        let applied = self.lock();
        let sources = PeerSources {
            configured: applied.sources.configured.clone(),
            clients: applied.sources.clients.clone(),
            members: applied.sources.members.clone(),
            bgp: Vec::new(),
        };
        drop(applied);
        sources.combine().peers
    }

    /// The data plane's counters.
    pub fn stats(&self) -> DataplaneStats {
        self.dataplane.stats()
    }

    /// Starts a new handshake with the peer `name` (every peer when `None`) now.
    pub fn request_rekey(&self, name: Option<&str>) -> Vec<crate::dataplane::RekeyRequest> {
        self.dataplane.request_rekey(name)
    }

    /// The routes into the TUN the current set wants; changes with the set.
    pub fn wanted_routes(&self) -> watch::Receiver<Vec<IpNet>> {
        self.routes.subscribe()
    }

    /// The routes into the TUN the current set wants in the exit table (empty unless the node
    /// uses exits); changes with the set.
    pub fn wanted_exit_routes(&self) -> watch::Receiver<Vec<IpNet>> {
        self.exit_routes.subscribe()
    }

    /// The kernel routes through next hops outside the mesh (BGP routes no peer carries).
    pub fn wanted_gateway_routes(&self) -> watch::Receiver<Vec<GatewayRoute>> {
        self.gateway_routes.subscribe()
    }

    /// Replaces the members (from the control plane). On error nothing changes.
    pub fn set_members(&self, members: Vec<KnownPeer>) -> Result<(), DataplaneError> {
        self.change(|sources| sources.members = members)
    }

    /// Replaces the configured peers (`[[peer]]`, after a reload). Peers whose key stays keep
    /// their sessions. On error nothing changes.
    pub fn set_configured(&self, configured: Vec<KnownPeer>) -> Result<(), DataplaneError> {
        self.change(|sources| sources.configured = configured)
    }

    /// Replaces the local clients (from `clients.json`). On error nothing changes.
    pub fn set_clients(&self, clients: Vec<KnownPeer>) -> Result<(), DataplaneError> {
        self.change(|sources| sources.clients = clients)
    }

    /// Replaces the BGP best routes (from the routing plane). On error nothing changes.
    /// The prefixes this node's own kernel handles (its own routes, and routes through its
    /// own external neighbours): the data plane delivers packets for them to the TUN.
    pub fn set_own_prefixes(&self, prefixes: &[IpNet]) {
        self.dataplane.set_own_prefixes(prefixes);
    }

    pub fn set_bgp_routes(&self, routes: Vec<BgpRoute>) -> Result<(), DataplaneError> {
        self.change(|sources| sources.bgp = routes)
    }

    /// Applies every membership change until the sender (the control plane) goes away.
    pub async fn follow_members(&self, mut members: watch::Receiver<Vec<KnownPeer>>) {
        loop {
            let current = members.borrow_and_update().clone();
            let count = current.len();
            match self.set_members(current) {
                Ok(()) => tracing::info!(members = count, "tunnels updated from membership"),
                Err(error) => tracing::warn!(%error, "tunnel update refused by the data plane"),
            }
            if members.changed().await.is_err() {
                return;
            }
        }
    }

    /// One change of one source: combine, give the data plane the whole set, and only if it
    /// accepts, keep the change and publish the routes. The lock is held throughout so that
    /// two sources changing at once cannot apply their sets in the wrong order.
    fn change(&self, edit: impl FnOnce(&mut PeerSources)) -> Result<(), DataplaneError> {
        let mut applied = self.lock();
        let mut sources = applied.sources.clone();
        edit(&mut sources);
        let combined = sources.combine();
        let configs: Vec<_> = combined.peers.iter().map(|p| p.config.clone()).collect();
        self.dataplane.update_peers(&configs)?;
        log_conflicts(&applied.conflicts, &combined.conflicts);
        let wanted = self.plan.wanted_by_table(&combined.peers);
        for (sender, wanted) in [
            (&self.routes, wanted.main),
            (&self.exit_routes, wanted.exit),
        ] {
            sender.send_if_modified(|routes| {
                let modified = *routes != wanted;
                *routes = wanted;
                modified
            });
        }
        self.gateway_routes.send_if_modified(|routes| {
            let modified = *routes != combined.gateway_routes;
            routes.clone_from(&combined.gateway_routes);
            modified
        });
        *applied = Applied {
            sources,
            peers: combined.peers,
            conflicts: combined.conflicts,
        };
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Applied> {
        // Nothing panics while holding the lock; if something did, the state is still whole.
        self.applied.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Logs each conflict once, when it first appears.
fn log_conflicts(before: &[String], now: &[String]) {
    for conflict in now.iter().filter(|c| !before.contains(c)) {
        tracing::warn!("{conflict}");
    }
}

#[cfg(test)]
mod tests {
    use super::merge::tests::peer;
    use super::*;
    use crate::dataplane::PeerConfig;
    use mesh_config::Role;

    /// Records the names of every set it accepts; refuses sets containing "bad".
    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<Vec<String>>>);

    impl DataplaneControl for Recorder {
        // Forwards no packets, so has nothing to keep local.
        fn set_own_prefixes(&self, _prefixes: &[ipnet::IpNet]) {}

        // Has no sessions to renew.
        fn request_rekey(&self, _name: Option<&str>) -> Vec<crate::dataplane::RekeyRequest> {
            Vec::new()
        }

        fn stats(&self) -> DataplaneStats {
            DataplaneStats {
                peers: Vec::new(),
                drops: Default::default(),
            }
        }

        fn update_peers(&self, peers: &[PeerConfig]) -> Result<(), DataplaneError> {
            if peers.iter().any(|p| p.name == "bad") {
                return Err(DataplaneError::config("refused for the test"));
            }
            self.0
                .lock()
                .unwrap()
                .push(peers.iter().map(|p| p.name.clone()).collect());
            Ok(())
        }
    }

    impl Recorder {
        fn last(&self) -> Vec<String> {
            self.0.lock().unwrap().last().cloned().unwrap_or_default()
        }
    }

    const CORE: PeerKind = PeerKind::Node(Some(Role::Core));
    const SPOKE: PeerKind = PeerKind::Node(Some(Role::Spoke));

    fn plan() -> RoutePlan {
        RoutePlan {
            own_addresses: vec!["10.1.0.1/16".parse().unwrap()],
            pools: vec!["10.0.0.0/8".parse().unwrap()],
            ..RoutePlan::default()
        }
    }

    #[test]
    fn a_runtime_client_survives_membership_changes_and_members_survive_clients() {
        let dataplane = Recorder::default();
        let sources = PeerSources::from_local(vec![peer("bird", 1, PeerKind::Node(None), &[])]);
        let set = PeerSet::new(&dataplane, sources, plan());

        set.set_members(vec![peer("beta", 2, CORE, &["10.2.0.0/16"])])
            .unwrap();
        assert_eq!(dataplane.last(), ["bird", "beta"]);

        let phone = peer("phone", 3, PeerKind::Client, &["10.1.0.2/32"]);
        set.set_clients(vec![phone.clone()]).unwrap();
        assert_eq!(dataplane.last(), ["bird", "phone", "beta"], "members kept");

        set.set_members(vec![
            peer("beta", 2, CORE, &["10.2.0.0/16"]),
            peer("gamma", 4, SPOKE, &["10.3.0.0/16"]),
        ])
        .unwrap();
        assert_eq!(
            dataplane.last(),
            ["bird", "phone", "beta", "gamma"],
            "the client survives a membership change"
        );

        set.set_members(Vec::new()).unwrap();
        assert_eq!(dataplane.last(), ["bird", "phone"]);
        assert_eq!(set.peers()[1], phone);
    }

    #[test]
    fn a_refused_set_changes_nothing() {
        let dataplane = Recorder::default();
        let set = PeerSet::new(&dataplane, PeerSources::default(), plan());
        set.set_members(vec![peer("beta", 2, CORE, &["10.2.0.0/16"])])
            .unwrap();
        let error = set
            .set_clients(vec![peer("bad", 3, PeerKind::Client, &["10.1.0.2/32"])])
            .unwrap_err();
        assert!(
            error.to_string().contains("refused for the test"),
            "{error}"
        );
        assert_eq!(set.peers().len(), 1);
        // The next change starts from the sources that were accepted.
        set.set_members(Vec::new()).unwrap();
        assert_eq!(dataplane.last(), Vec::<String>::new());
    }

    #[test]
    fn a_member_lan_gets_a_route_while_it_is_there() {
        let dataplane = Recorder::default();
        let set = PeerSet::new(&dataplane, PeerSources::default(), plan());
        let mut routes = set.wanted_routes();
        assert_eq!(*routes.borrow_and_update(), plan().pools);

        set.set_members(vec![peer(
            "beta",
            2,
            CORE,
            &["10.2.0.0/16", "10.3.0.0/16", "192.168.42.0/24"],
        )])
        .unwrap();
        assert!(routes.has_changed().unwrap());
        let nets =
            |list: &[&str]| -> Vec<IpNet> { list.iter().map(|p| p.parse().unwrap()).collect() };
        assert_eq!(
            *routes.borrow_and_update(),
            nets(&[
                "10.0.0.0/8",
                "10.2.0.0/16",
                "10.3.0.0/16",
                "192.168.42.0/24"
            ])
        );

        // The spoke behind beta is revoked: its prefixes and its LAN go with it.
        set.set_members(vec![peer("beta", 2, CORE, &["10.2.0.0/16"])])
            .unwrap();
        assert_eq!(
            *routes.borrow_and_update(),
            nets(&["10.0.0.0/8", "10.2.0.0/16"])
        );

        // A client added meanwhile lies inside the node's own network: no route of its own.
        set.set_clients(vec![peer("phone", 3, PeerKind::Client, &["10.1.0.2/32"])])
            .unwrap();
        assert!(!routes.has_changed().unwrap());
    }

    #[test]
    fn a_default_route_learnt_over_bgp_goes_to_the_exit_table_only() {
        let dataplane = Recorder::default();
        let plan = RoutePlan {
            use_exits: true,
            ..plan()
        };
        let set = PeerSet::new(&dataplane, PeerSources::default(), plan.clone());
        let mut routes = set.wanted_routes();
        let mut exit = set.wanted_exit_routes();
        assert!(exit.borrow_and_update().is_empty());
        set.set_members(vec![peer("exit", 2, CORE, &["10.2.0.0/16"])])
            .unwrap();
        routes.borrow_and_update();
        set.set_bgp_routes(vec![BgpRoute::via(
            "0.0.0.0/0".parse().unwrap(),
            "10.2.0.1".parse().unwrap(),
        )])
        .unwrap();
        assert!(!routes.has_changed().unwrap(), "main table unchanged");
        assert!(exit.has_changed().unwrap());
        let default: IpNet = "0.0.0.0/0".parse().unwrap();
        assert_eq!(*exit.borrow_and_update(), vec![default]);
        // The data plane carries it either way.
        assert!(
            set.peers()[0].config.allowed_ips.contains(&default),
            "{:?}",
            set.peers()
        );

        // The exit goes away: the exit table empties.
        set.set_bgp_routes(Vec::new()).unwrap();
        assert!(exit.borrow_and_update().is_empty());
    }
}
