//! Checks of `[exit]` (uplink interfaces, destination rules, table and mark) and of
//! `[routing] anycast_prefixes`.

use ipnet::IpNet;

use super::{Checker, overlaps};
use crate::exit::ExitSection;
use crate::names::{check_ifname, check_node_name};
use crate::path::KeyPath;
use crate::schema::{MeshSection, RoutingSection};

/// Routing tables the kernel gives a meaning of its own (`/etc/iproute2/rt_tables`).
const RESERVED_TABLES: [(u32, &str); 4] = [
    (0, "unspec"),
    (253, "default"),
    (254, "main"),
    (255, "local"),
];

impl Checker {
    pub(super) fn exit(&mut self, exit: &ExitSection, mesh: &MeshSection, path: &KeyPath) {
        let interfaces = path.key("interfaces");
        self.unique(&interfaces, &exit.interfaces, (None, "interface"), |s| s);
        for (i, name) in exit.interfaces.iter().enumerate() {
            if let Err(message) = check_ifname(name) {
                self.report(&interfaces.index(i), message);
            }
        }
        let pools = mesh_pools(mesh);
        let routes = path.key("route");
        self.unique(
            &routes,
            &exit.routes,
            (Some("destination"), "destination"),
            |r| &r.destination,
        );
        for (i, route) in exit.routes.iter().enumerate() {
            let here = routes.index(i);
            let destination = here.key("destination");
            if self.network(&destination, route.destination) {
                for (pool_name, pool) in &pools {
                    if overlaps(&route.destination, pool) {
                        self.report(
                            &destination,
                            format!(
                                "{} overlaps {pool_name} {pool}; traffic inside the mesh goes \
                                 to the node that holds the address, never through an exit",
                                route.destination
                            ),
                        );
                    }
                }
            }
            if route.via.is_empty() {
                self.report(
                    &here.key("via"),
                    "empty; name the exits to prefer, most preferred first",
                );
            }
            for (j, name) in route.via.iter().enumerate() {
                if let Err(message) = check_node_name(name) {
                    self.report(&here.key("via").index(j), message);
                }
            }
        }
        if let Some((_, what)) = RESERVED_TABLES.iter().find(|(t, _)| *t == exit.table) {
            self.report(
                &path.key("table"),
                format!(
                    "table {} is the kernel's {what:?} table; pick a free one (default {})",
                    exit.table,
                    crate::exit::DEFAULT_EXIT_TABLE
                ),
            );
        }
        if exit.fwmark == 0 {
            self.report(
                &path.key("fwmark"),
                format!(
                    "0 marks nothing; pick a mark no other program uses (default {:#x})",
                    crate::exit::DEFAULT_EXIT_FWMARK
                ),
            );
        }
    }

    pub(super) fn anycast(&mut self, routing: &RoutingSection, path: &KeyPath) {
        let list = path.key("anycast_prefixes");
        self.unique(&list, &routing.anycast_prefixes, (None, "prefix"), |p| p);
        for (i, prefix) in routing.anycast_prefixes.iter().enumerate() {
            let here = list.index(i);
            if !self.network(&here, *prefix) {
                continue;
            }
            if prefix.prefix_len() == 0 {
                self.report(
                    &here,
                    "a default route is no anycast service; exits announce it ([exit] serve)",
                );
            }
            for (j, lan) in routing.lan_prefixes.iter().enumerate() {
                if overlaps(prefix, lan) {
                    self.report(
                        &here,
                        format!(
                            "{prefix} overlaps lan_prefixes[{j}] {lan}; a shared prefix must \
                             be separate from this node's own LANs"
                        ),
                    );
                }
            }
        }
    }
}

fn mesh_pools(mesh: &MeshSection) -> Vec<(&'static str, IpNet)> {
    [
        Some(("mesh.pool4", IpNet::from(mesh.pool4))),
        mesh.pool6.map(|p| ("mesh.pool6", p.into())),
        mesh.native6.map(|p| ("mesh.native6", p.into())),
    ]
    .into_iter()
    .flatten()
    .collect()
}
