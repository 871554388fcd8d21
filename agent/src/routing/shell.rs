//! The routing plane's tokio shell: starts the BGP speaker, keeps its iBGP sessions, its own
//! routes and its certificate check in step with the membership ([`super::plan`],
//! [`super::authority`]), and feeds the best routes into the peer set, which owns the data
//! plane's peers and the kernel routes (crate::peerset). It also keeps the view that
//! `meshd routes` shows.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use mesh_config::Config;
use mesh_config::routers::RoutersSection;
use pki::NodeIdentity;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::authority::Authority;
use super::exits::{self, DefaultPath, ExitChoice, default_prefixes, exit_name};
use super::igp_cost::{COST_REFRESH, IgpCosts, member_next_hops, reach_of};
use super::member::{MeshMember, members_of};
use super::multipath::Groups;
use super::plan::{self, neighbor_changes};
use super::view::{exit_entries, patch_routes, session_entries, view_of};
use crate::api::report::BgpView;
use crate::bgp::neighbor::{self, NeighborConfigError};
use crate::bgp::rib::{BestChange, LOCAL, Path};
use crate::bgp::speaker::{BGP_PORT, NeighborConfig, Speaker, SpeakerConfig, SpeakerError};
use crate::peerset::{BgpRoute, DataplaneControl, PeerSet};

/// Best-route changes are gathered this long before the peer set (and so the data plane and
/// the kernel) is updated: one update for a burst, such as a session's initial table.
const SETTLE: Duration = Duration::from_millis(100);
/// How often the view of the sessions (states, counts) is refreshed for `meshd routes`, and all
/// paths when best routes changed since the last time (paths that are not the best change
/// without a best-route change). The changed best routes themselves are in the view as soon as
/// they are flushed to the peer set (see [`RoutingPlane::flush_and_show`]); copying the whole
/// table that often would cost more than it shows.
const VIEW_REFRESH: Duration = Duration::from_secs(1);

/// What the routing plane needs from the daemon.
#[derive(Debug, Clone)]
pub struct RoutingSettings {
    pub node_name: String,
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// The overlay addresses, port 179 (none on a node that is no mesh member).
    pub listen: Vec<SocketAddr>,
    /// The mesh pools (nobody may announce unallocated space in them).
    pub pools: Vec<IpNet>,
    /// `[routing] lan_prefixes`.
    pub configured_lans: Vec<IpNet>,
    /// `[[bgp.neighbor]]`s.
    pub external: Vec<NeighborConfig>,
    /// `[[exit.route]]`s: destinations sent through preferred exits (a change waits for a
    /// restart, like the rest of `[exit]`).
    pub exit_rules: Vec<mesh_config::ExitRoute>,
    /// `[exit] serve`: announce the default routes the certificate approves.
    pub exit_serve: bool,
    /// `[routing] anycast_prefixes` (a change waits for a restart).
    pub anycast_prefixes: Vec<IpNet>,
    /// `[routing] max_paths`: how many equal-cost next hops one prefix may use.
    pub max_paths: usize,
    /// `[routers.NAME]`: what this core sends the foreign routers it stands in for.
    pub routers: RoutersSection,
}

impl RoutingSettings {
    /// The settings for `meshd run`, or `None` when there is nothing to route: a node outside
    /// a mesh without `[[bgp.neighbor]]`s. `addresses` are the TUN's overlay addresses (the
    /// first IPv4 one is the router id); `mesh_member` says whether the control plane runs.
    /// Fails when a neighbour's TCP-MD5 key file cannot be used.
    pub fn for_daemon(
        config: &mesh_config::Config,
        addresses: &[IpNet],
        pools: Vec<IpNet>,
        mesh_member: bool,
    ) -> Result<Option<RoutingSettings>, NeighborConfigError> {
        if !mesh_member && config.bgp.neighbors.is_empty() {
            return Ok(None);
        }
        let external = config
            .bgp
            .neighbors
            .iter()
            .map(|n| neighbor::load(n, config))
            .collect::<Result<Vec<_>, _>>()?;
        let Some(router_id) = addresses.iter().find_map(|a| match a {
            IpNet::V4(net) => Some(net.addr()),
            IpNet::V6(_) => None,
        }) else {
            tracing::warn!("BGP not started: the interface has no IPv4 address for a router id");
            return Ok(None);
        };
        let mut listen: Vec<SocketAddr> = if mesh_member {
            addresses
                .iter()
                .map(|a| SocketAddr::new(a.addr(), BGP_PORT))
                .collect()
        } else {
            Vec::new()
        };
        listen.extend(passive_listeners(&external, &listen));
        Ok(Some(RoutingSettings {
            node_name: config.node.name.clone(),
            asn: config.routing.asn,
            router_id,
            listen,
            pools,
            configured_lans: config.routing.lan_prefixes.clone(),
            external,
            exit_rules: config.exit.routes.clone(),
            exit_serve: config.exit.serve,
            anycast_prefixes: config.routing.anycast_prefixes.clone(),
            max_paths: max_paths(config),
            routers: config.routers.clone(),
        }))
    }
}

/// `[routing] max_paths` as the speaker takes it (validated to 1..=64).
fn max_paths(config: &Config) -> usize {
    usize::try_from(config.routing.max_paths).unwrap_or(1)
}

/// Where passive `[[bgp.neighbor]]`s connect to: their `local_address`, port 179, besides the
/// overlay addresses already in `listen`. Only there: meshd never listens on every address of
/// the underlay. A passive neighbour without `local_address` could never connect; it is
/// reported.
fn passive_listeners(external: &[NeighborConfig], listen: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut extra: Vec<SocketAddr> = Vec::new();
    for n in external.iter().filter(|n| n.passive) {
        match n.local_address {
            Some(address) => {
                let at = SocketAddr::new(address, BGP_PORT);
                if !listen.contains(&at) && !extra.contains(&at) {
                    extra.push(at);
                }
            }
            None => tracing::warn!(
                neighbor = %n.name,
                "[[bgp.neighbor]] is passive but has no local_address: meshd listens only on \
                 the overlay addresses and on local addresses of passive neighbours, so this \
                 neighbour cannot connect"
            ),
        }
    }
    extra
}

/// The `[[bgp.neighbor]]`s of a reloaded `config`. A neighbour whose new settings cannot be
/// used (its key file) keeps its `running` ones, and the error is logged.
fn reloaded_neighbors(config: &Config, running: &[NeighborConfig]) -> Vec<NeighborConfig> {
    let mut neighbors = Vec::new();
    for n in &config.bgp.neighbors {
        match neighbor::load(n, config) {
            Ok(neighbor) => neighbors.push(neighbor),
            Err(error) => {
                let kept = running.iter().find(|r| r.name == n.name);
                tracing::error!(%error, kept = kept.is_some(), "BGP neighbour not changed by the reload");
                neighbors.extend(kept.cloned());
            }
        }
    }
    neighbors
}

/// A running routing plane.
#[derive(Debug)]
pub struct RoutingPlane {
    settings: RoutingSettings,
    speaker: Speaker,
    changes: mpsc::UnboundedReceiver<BestChange>,
    view: watch::Sender<BgpView>,
}

/// What the shell keeps between events.
#[derive(Debug, Default)]
struct Applied {
    /// The membership last applied.
    identities: Vec<NodeIdentity>,
    neighbors: Vec<NeighborConfig>,
    originated: BTreeSet<IpNet>,
    authority: Option<Authority>,
    unapproved: Vec<IpNet>,
    /// Configured defaults and shared prefixes the certificate does not approve.
    withheld: Vec<plan::Withheld>,
    /// The speaker's best paths, by prefix.
    best: BTreeMap<IpNet, Path>,
    /// Each prefix's multipath group.
    groups: Groups,
    /// Prefixes whose best path changed since the last flush: their paths are read again for
    /// the view.
    changed: BTreeSet<IpNet>,
    /// The members' next hops (their overlay addresses), for the IGP cost.
    member_hops: Vec<IpAddr>,
    /// The IGP costs told to the speaker.
    igp_costs: IgpCosts,
    /// The members, to name the exits behind default routes.
    members: Vec<MeshMember>,
    /// Where the tunnels run (peers' endpoint addresses), for the route check.
    underlay: Vec<(std::net::IpAddr, String)>,
    /// The exit each default route and `[[exit.route]]` destination uses.
    exits: Vec<ExitChoice>,
}

impl RoutingPlane {
    /// Binds the listeners (overlay addresses: the TUN must be up) and starts the external
    /// sessions; the mesh's own sessions follow from the membership in [`Self::run`].
    pub async fn start(settings: RoutingSettings) -> Result<RoutingPlane, SpeakerError> {
        let (tx, changes) = mpsc::unbounded_channel();
        let speaker = Speaker::start(
            SpeakerConfig {
                asn: settings.asn,
                router_id: settings.router_id,
                listen: settings.listen.clone(),
                neighbors: settings.external.clone(),
            },
            tx,
        )
        .await?;
        // Before any session: the first routes already come with their groups.
        speaker.set_max_paths(settings.max_paths);
        tracing::info!(
            asn = settings.asn,
            router_id = %settings.router_id,
            listen = ?speaker.local_addrs(),
            external = settings.external.len(),
            max_paths = settings.max_paths,
            "BGP speaker started"
        );
        let (view, _) = watch::channel(BgpView::running(settings.asn, settings.router_id));
        Ok(RoutingPlane {
            settings,
            speaker,
            changes,
            view,
        })
    }

    /// What `meshd routes` shows, kept up to date while [`Self::run`] runs.
    pub fn view(&self) -> watch::Receiver<BgpView> {
        self.view.subscribe()
    }

    /// Follows the membership (when the node is a mesh member), the configuration (reloads:
    /// `[[bgp.neighbor]]`s and `[routing] lan_prefixes`) and the speaker's best routes until the
    /// future is dropped.
    pub async fn run<D: DataplaneControl>(
        &mut self,
        peer_set: &PeerSet<'_, D>,
        mut members: Option<watch::Receiver<Vec<NodeIdentity>>>,
        mut config: Option<watch::Receiver<Arc<Config>>>,
    ) -> Infallible {
        let mut applied = Applied::default();
        // The configuration the daemon started with is the one the settings came from.
        if let Some(rx) = config.as_mut() {
            rx.borrow_and_update();
        }
        // Without membership only the configured LANs are this node's own routes.
        let first = members.as_mut().map(|rx| rx.borrow_and_update().clone());
        applied.underlay = tunnel_endpoints(peer_set);
        self.apply_membership(&mut applied, &first.unwrap_or_default());
        let mut flush_at: Option<Instant> = None;
        let mut refresh = tokio::time::interval(VIEW_REFRESH);
        let mut paths_changed = false;
        // A default route's best path changed: the exit choices are made again before the
        // next flush.
        let mut exits_stale = false;
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut costs = tokio::time::interval(COST_REFRESH);
        costs.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let membership = async {
                let changed = match members.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => false,
                };
                if !changed {
                    // No control plane, or it is gone: the membership stays as it is.
                    std::future::pending::<()>().await;
                }
            };
            let reloaded = async {
                let changed = match config.as_mut() {
                    Some(rx) => rx.changed().await.is_ok(),
                    None => false,
                };
                if !changed {
                    std::future::pending::<()>().await;
                }
            };
            let settle = async {
                match flush_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = membership => {
                    let current = members.as_mut().map(|rx| rx.borrow_and_update().clone());
                    self.apply_membership(&mut applied, &current.unwrap_or_default());
                }
                () = reloaded => {
                    if let Some(current) = config.as_mut().map(|rx| rx.borrow_and_update().clone()) {
                        self.apply_config(&mut applied, &current);
                    }
                }
                Some(change) = self.changes.recv() => {
                    exits_stale |= change.prefix.prefix_len() == 0;
                    if let Some(line) = applied.groups.note(&applied.members, &change) {
                        tracing::info!("{line}");
                    }
                    match change.best {
                        Some(path) => applied.best.insert(change.prefix, path),
                        None => applied.best.remove(&change.prefix),
                    };
                    applied.changed.insert(change.prefix);
                    flush_at.get_or_insert_with(|| Instant::now() + SETTLE);
                }
                () = settle => {
                    flush_at = None;
                    if std::mem::take(&mut exits_stale) {
                        self.update_exits(&mut applied).await;
                    }
                    self.flush_and_show(&mut applied, peer_set).await;
                    paths_changed = true;
                }
                _ = refresh.tick() => {
                    self.refresh_view(paths_changed, &applied).await;
                    paths_changed = false;
                }
                _ = costs.tick() => {
                    // New costs: the paths' costs and standings in the view are read again.
                    paths_changed |= self.update_igp_costs(&mut applied, peer_set);
                    // Endpoints follow DNS, roaming and membership: the route check too.
                    let underlay = tunnel_endpoints(peer_set);
                    if underlay != applied.underlay {
                        applied.underlay = underlay;
                        self.install_guard(&mut applied);
                    }
                    // Also what no best-route change shows: a preferred exit that is not
                    // the nearest appears, or its next hop becomes (un)reachable.
                    if self.update_exits(&mut applied).await {
                        flush_at.get_or_insert_with(|| Instant::now() + SETTLE);
                    }
                    // A choice that needs no new routes (the exit of a default route) is
                    // shown now too.
                    self.show_exits(&applied.exits);
                }
            }
        }
    }

    /// A reloaded configuration: `[[bgp.neighbor]]`s that changed restart (only theirs), new
    /// ones start, removed ones stop; changed `[routing] lan_prefixes` change the own routes;
    /// a changed `[routers.NAME]` restarts that router's session.
    fn apply_config(&mut self, applied: &mut Applied, config: &Config) {
        let max_paths = max_paths(config);
        if max_paths != self.settings.max_paths {
            tracing::info!(
                from = self.settings.max_paths,
                to = max_paths,
                "[routing] max_paths changed: equal-cost groups follow"
            );
            self.speaker.set_max_paths(max_paths);
            self.settings.max_paths = max_paths;
        }
        let external = reloaded_neighbors(config, &self.settings.external);
        for n in external.iter().filter(|n| n.passive) {
            let listening = n
                .local_address
                .is_some_and(|a| self.settings.listen.contains(&SocketAddr::new(a, BGP_PORT)));
            if !listening {
                tracing::warn!(neighbor = %n.name, "a passive [[bgp.neighbor]] on a new local_address needs a restart of meshd to be listened for");
            }
        }
        let (add, remove) = neighbor_changes(&self.settings.external, &external);
        for address in remove {
            self.speaker.remove_neighbor(address);
        }
        for neighbor in add {
            self.speaker.add_neighbor(neighbor);
        }
        self.settings.external = external;
        let lans_changed = config.routing.lan_prefixes != self.settings.configured_lans;
        // A router whose `send` changed gets its session restarted with the new table.
        let routers_changed = config.routers != self.settings.routers;
        if lans_changed || routers_changed {
            self.settings
                .configured_lans
                .clone_from(&config.routing.lan_prefixes);
            self.settings.routers.clone_from(&config.routers);
            let identities = applied.identities.clone();
            self.apply_membership(applied, &identities);
        }
    }

    /// Re-plans sessions, own routes and the route check for a new membership.
    fn apply_membership(&self, applied: &mut Applied, identities: &[NodeIdentity]) {
        applied.identities = identities.to_vec();
        let (members, problems) = members_of(identities);
        for problem in problems {
            tracing::warn!("{problem}");
        }
        applied.member_hops = member_next_hops(&self.settings.node_name, &members);
        applied.members.clone_from(&members);
        let own = members.iter().find(|m| m.name == self.settings.node_name);
        let configured = plan::OwnRoutes {
            lans: &self.settings.configured_lans,
            exit_serve: self.settings.exit_serve,
            anycast: &self.settings.anycast_prefixes,
        };
        let (neighbors, originate, unapproved, withheld) = match own {
            Some(own) => {
                let plan = plan::plan(
                    own,
                    &members,
                    self.settings.asn,
                    configured,
                    &self.settings.routers,
                );
                (
                    plan.neighbors,
                    plan.originate,
                    plan.unapproved_lans,
                    plan.withheld,
                )
            }
            None => {
                if !identities.is_empty() {
                    tracing::warn!(node = %self.settings.node_name, "this node is not in its own membership; no iBGP sessions");
                }
                let lans: Vec<IpNet> = self
                    .settings
                    .configured_lans
                    .iter()
                    .map(IpNet::trunc)
                    .collect();
                (Vec::new(), lans, Vec::new(), Vec::new())
            }
        };

        let (add, remove) = neighbor_changes(&applied.neighbors, &neighbors);
        for address in remove {
            self.speaker.remove_neighbor(address);
        }
        for neighbor in add {
            self.speaker.add_neighbor(neighbor);
        }
        applied.neighbors = neighbors;

        let originate: BTreeSet<IpNet> = originate.into_iter().collect();
        for prefix in applied.originated.difference(&originate) {
            self.speaker.withdraw(*prefix);
        }
        for prefix in originate.difference(&applied.originated) {
            self.speaker.originate(*prefix);
        }
        applied.originated = originate;

        if unapproved != applied.unapproved {
            for lan in &unapproved {
                tracing::warn!(%lan, "[routing] lan_prefixes: not approved in this node's certificate; announced, but the other members will refuse it (the CA holder approves LANs with `meshd invite --route`)");
            }
            applied.unapproved = unapproved;
        }
        // Said once per change: a renewal that approves them brings them (and a new line).
        if withheld != applied.withheld {
            for route in withheld.iter().filter(|w| !applied.withheld.contains(w)) {
                tracing::warn!("{route}");
            }
            applied.withheld = withheld;
        }

        self.install_guard(applied);
    }

    /// The route check for the current members and tunnel endpoints, if it changed.
    fn install_guard(&self, applied: &mut Applied) {
        let authority = Authority::new(
            &self.settings.node_name,
            applied.members.clone(),
            self.settings.pools.clone(),
        )
        .with_underlay(applied.underlay.clone());
        if applied.authority.as_ref() != Some(&authority) {
            self.speaker.set_guard(Some(Arc::new(authority.clone())));
            applied.authority = Some(authority);
        }
    }

    /// Tells the speaker how costly each member's next hop is now: the RTT of the tunnel that
    /// carries it (changes only, see [`super::igp_cost`]). True when a cost changed.
    fn update_igp_costs<D: DataplaneControl>(
        &self,
        applied: &mut Applied,
        peer_set: &PeerSet<'_, D>,
    ) -> bool {
        let reach = reach_of(
            &applied.member_hops,
            &peer_set.peers_without_bgp(),
            &peer_set.stats(),
        );
        let changes = applied.igp_costs.update(&reach);
        for (next_hop, cost) in &changes {
            tracing::debug!(%next_hop, ?cost, "IGP cost of a next hop changed");
            self.speaker.set_igp_cost(*next_hop, *cost);
        }
        !changes.is_empty()
    }

    /// Chooses again which exit each default route and `[[exit.route]]` destination uses,
    /// from the speaker's selectable default paths (the IGP costs just set included: the
    /// speaker handles commands in order), and logs what changed. True when the routes for
    /// rule destinations changed (the peer set needs them).
    async fn update_exits(&self, applied: &mut Applied) -> bool {
        let paths = self.speaker.usable_paths(default_prefixes().to_vec()).await;
        let defaults: Vec<DefaultPath> = paths
            .iter()
            .map(|p| {
                let own = p.entry.path.peer == LOCAL;
                DefaultPath {
                    prefix: p.entry.prefix,
                    next_hop: (!own).then_some(p.entry.path.next_hop),
                    exit: if own {
                        Some(self.settings.node_name.clone())
                    } else {
                        exit_name(
                            &applied.members,
                            p.entry.path.attrs.originator_id,
                            p.entry.path.next_hop,
                            p.entry.from.as_ref().map(|f| f.address),
                        )
                    },
                    igp_cost: p.igp_cost,
                    best: p.entry.best,
                }
            })
            .collect();
        let choices = exits::choose(&defaults, &self.settings.exit_rules);
        for line in exits::log_lines(&applied.exits, &choices) {
            tracing::info!("{line}");
        }
        let routes_changed = exits::rule_routes(&applied.exits) != exits::rule_routes(&choices);
        applied.exits = choices;
        routes_changed
    }

    /// Gives the peer set the best routes learnt from peers (own routes need no forwarding),
    /// with the `[[exit.route]]` destinations through their exits.
    fn flush<D: DataplaneControl>(&self, applied: &mut Applied, peer_set: &PeerSet<'_, D>) {
        let best: Vec<BgpRoute> = applied
            .best
            .iter()
            .filter(|(_, path)| path.peer != LOCAL)
            .map(|(prefix, path)| BgpRoute {
                prefix: *prefix,
                next_hops: applied.groups.data_plane_hops(*prefix, path),
            })
            .collect();
        let routes = exits::with_rules(&best, &applied.exits);
        if let Err(error) = peer_set.set_bgp_routes(routes) {
            tracing::warn!(%error, "BGP routes refused by the data plane");
        }
        // What this node routes itself: its own routes, and routes whose next hop is no
        // member (an external neighbour's). A member's wider route (an exit's default)
        // must not pull them into the mesh.
        let own: Vec<IpNet> = applied
            .best
            .iter()
            .filter(|(_, path)| path.peer == LOCAL || !applied.member_hops.contains(&path.next_hop))
            .map(|(prefix, _)| *prefix)
            .collect();
        peer_set.set_own_prefixes(&own);
    }

    /// Flushes the best routes to the peer set and puts them in the view in one step: the
    /// changed prefixes' paths and the sessions are read from the speaker first, then the view
    /// is patched and the routes handed over with no await in between, so `meshd routes` is
    /// never behind what the data plane and the kernel are given. (The speaker may be a few
    /// changes ahead: those follow with the next flush, [`SETTLE`] later.)
    async fn flush_and_show<D: DataplaneControl>(
        &self,
        applied: &mut Applied,
        peer_set: &PeerSet<'_, D>,
    ) {
        let changed = std::mem::take(&mut applied.changed);
        let fresh = self
            .speaker
            .paths_of(changed.iter().copied().collect())
            .await;
        let sessions = session_entries(self.settings.asn, &self.speaker.sessions().await);
        let exits = exit_entries(&applied.exits);
        self.view.send_if_modified(|view| {
            let modified = !changed.is_empty() || view.sessions != sessions || view.exits != exits;
            patch_routes(&mut view.routes, &changed, &fresh, &applied.members);
            view.sessions = sessions;
            view.exits = exits;
            modified
        });
        self.flush(applied, peer_set);
    }

    /// The exits chosen now, into the view.
    fn show_exits(&self, exits: &[ExitChoice]) {
        let exits = exit_entries(exits);
        self.view.send_if_modified(|view| {
            let modified = view.exits != exits;
            view.exits = exits;
            modified
        });
    }

    /// The sessions, the exits, and the paths when `paths_changed`, into the view.
    async fn refresh_view(&self, paths_changed: bool, applied: &Applied) {
        let sessions = session_entries(self.settings.asn, &self.speaker.sessions().await);
        let routes = if paths_changed {
            let paths = self.speaker.all_paths().await;
            let view = view_of(
                self.settings.asn,
                self.settings.router_id,
                &[],
                &paths,
                &applied.members,
            );
            Some(view.routes)
        } else {
            None
        };
        let exits = exit_entries(&applied.exits);
        // In place: the routes, a full table's worth, are not copied to be compared.
        self.view.send_if_modified(|view| {
            let mut modified = view.sessions != sessions || view.exits != exits;
            view.sessions = sessions;
            view.exits = exits;
            if let Some(routes) = routes {
                modified |= view.routes != routes;
                view.routes = routes;
            }
            modified
        });
    }

    /// Ends every session (Cease) and stops the speaker.
    pub async fn shutdown(self) {
        self.speaker.shutdown().await;
    }
}

/// The addresses the tunnels run to: every peer's configured or learnt endpoints, with the
/// peer's name (sorted, for comparing).
fn tunnel_endpoints<D: DataplaneControl>(
    peer_set: &PeerSet<'_, D>,
) -> Vec<(std::net::IpAddr, String)> {
    let mut endpoints: Vec<(std::net::IpAddr, String)> = peer_set
        .peers()
        .iter()
        .flat_map(|p| {
            p.config
                .endpoints
                .iter()
                .map(|e| (e.ip(), p.config.name.clone()))
        })
        .collect();
    endpoints.sort();
    endpoints.dedup();
    endpoints
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_keeps_a_neighbour_whose_key_file_cannot_be_read() {
        let text = format!(
            "{CONFIG}\n[[bgp.neighbor]]\nname = \"keyed\"\naddress = \"198.51.100.7\"\n\
             remote_asn = 65044\npassword_file = \"/nonexistent/meshd-test.key\"\n"
        );
        let config = mesh_config::parse(&text, std::path::Path::new("meshd.toml")).unwrap();
        let mut keyed = neighbor::load(&config.bgp.neighbors[0], &config).unwrap();
        keyed.name = "keyed".into();
        keyed.address = "198.51.100.7".parse().unwrap();
        let reloaded = reloaded_neighbors(&config, std::slice::from_ref(&keyed));
        let names: Vec<&str> = reloaded.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["friend", "upstream", "keyed"]);
        assert_eq!(reloaded[2], keyed, "the running settings stay");
        // Unknown before: it is left out until its key file can be read.
        let fresh = reloaded_neighbors(&config, &[]);
        assert_eq!(fresh.len(), 2);
    }

    const CONFIG: &str = r#"
[node]
name = "spoke"
role = "spoke"

[routing]
lan_prefixes = ["192.168.42.0/24"]

[[bgp.neighbor]]
name = "friend"
address = "192.168.42.2"
remote_asn = 65042
passive = true
local_address = "192.168.42.1"

[[bgp.neighbor]]
name = "upstream"
address = "198.51.100.9"
remote_asn = 65043
"#;

    #[test]
    fn the_daemon_listens_on_overlay_addresses_and_passive_neighbours_local_addresses() {
        let config = mesh_config::parse(CONFIG, std::path::Path::new("meshd.toml")).unwrap();
        let addresses: Vec<IpNet> = vec![
            "10.4.0.1/16".parse().unwrap(),
            "fd00:0:0:1:4::1/80".parse().unwrap(),
        ];
        let settings = RoutingSettings::for_daemon(&config, &addresses, Vec::new(), true)
            .unwrap()
            .expect("a mesh member routes");
        assert_eq!(settings.router_id, Ipv4Addr::new(10, 4, 0, 1));
        let expected: Vec<SocketAddr> =
            ["10.4.0.1:179", "[fd00:0:0:1:4::1]:179", "192.168.42.1:179"]
                .iter()
                .map(|a| a.parse().unwrap())
                .collect();
        assert_eq!(settings.listen, expected);
        assert_eq!(settings.external.len(), 2);
        assert_eq!(settings.configured_lans.len(), 1);

        // Outside a mesh only the passive neighbour's address is listened on.
        let settings = RoutingSettings::for_daemon(&config, &addresses, Vec::new(), false)
            .unwrap()
            .expect("[[bgp.neighbor]]s route");
        assert_eq!(settings.listen, ["192.168.42.1:179".parse().unwrap()]);
    }

    #[test]
    fn nothing_to_route_starts_nothing() {
        let config = mesh_config::Config::new("alpha", mesh_config::Role::Core);
        let addresses: Vec<IpNet> = vec!["10.1.0.1/16".parse().unwrap()];
        assert!(
            RoutingSettings::for_daemon(&config, &addresses, Vec::new(), false)
                .unwrap()
                .is_none()
        );
    }
}
