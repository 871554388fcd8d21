//! Keeps the kernel's routes equal to what the peer set wants, over rtnetlink, each route
//! tagged with [`MESHD_ROUTE_PROTOCOL`]: routes into the TUN, and routes through next hops
//! outside the mesh (BGP routes learnt from an eBGP neighbour).
//!
//! Routes through the mesh's exits go into their own table, [`ExitTable::table`], and while
//! the node uses exits two policy rules per family send traffic there (see
//! [`crate::netlink::rule`]): the main table minus its default routes first, then the exit
//! table for every packet without meshd's mark. meshd's own underlay sockets carry the mark,
//! so the tunnels keep using the host's default route. When no exit is left the exit table is
//! empty and lookups fall through to the main table: the host's own uplink.

use std::convert::Infallible;

use ipnet::IpNet;
use tokio::sync::watch;

use super::merge::GatewayRoute;
use super::routes::route_changes;
use crate::netlink::{MESHD_ROUTE_PROTOCOL, Netlink, NetlinkError, exit_rules};

/// Where the routes through exits go, and whether the policy rules that use them are wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitTable {
    /// `[exit] table`.
    pub table: u32,
    /// `[exit] fwmark`: the mark of meshd's underlay sockets, which the rules let through.
    pub fwmark: u32,
    /// Whether the node uses exits (`[exit] use = "nearest"`): the rules are installed.
    pub rules: bool,
}

impl ExitTable {
    /// From the `[exit]` section.
    pub fn from_config(exit: &mesh_config::exit::ExitSection) -> Self {
        ExitTable {
            table: exit.table,
            fwmark: exit.fwmark,
            rules: exit.use_exits == mesh_config::exit::UseExits::Nearest,
        }
    }
}

impl Default for ExitTable {
    fn default() -> Self {
        Self::from_config(&mesh_config::exit::ExitSection::default())
    }
}

/// The routes this run installed towards one interface.
#[derive(Debug)]
pub struct KernelRoutes<'a> {
    netlink: &'a Netlink,
    index: u32,
    installed: Vec<IpNet>,
    /// Routes through a gateway, by prefix (one next hop per prefix: the best route's).
    gateways: Vec<GatewayRoute>,
    exit: ExitTable,
    /// Routes into the TUN in the exit table.
    exit_installed: Vec<IpNet>,
    /// Whether this run added the exit rules.
    rules_installed: bool,
}

impl<'a> KernelRoutes<'a> {
    /// Nothing installed yet, towards interface `index`; exits not used.
    pub fn new(netlink: &'a Netlink, index: u32) -> Self {
        Self {
            netlink,
            index,
            installed: Vec::new(),
            gateways: Vec::new(),
            exit: ExitTable::default(),
            exit_installed: Vec::new(),
            rules_installed: false,
        }
    }

    /// Routes through exits go to `exit.table`, behind rules if `exit.rules`.
    pub fn with_exit_table(self, exit: ExitTable) -> Self {
        Self { exit, ..self }
    }

    /// The routes installed in the exit table now.
    pub fn installed_exit(&self) -> &[IpNet] {
        &self.exit_installed
    }

    /// Removes the exit rules an earlier run left behind (a crash, or a run with another
    /// `[exit]`), then adds them if the node uses exits. Call once at start.
    pub async fn set_up_exit_rules(&mut self) -> Result<(), NetlinkError> {
        let table = self.exit.table;
        let stale = self
            .netlink
            .remove_rules(|rule| rule.is_meshd_exit_rule(MESHD_ROUTE_PROTOCOL, table))
            .await?;
        if !stale.is_empty() {
            tracing::info!(
                count = stale.len(),
                "removed policy rules left by an earlier run"
            );
        }
        if !self.exit.rules {
            return Ok(());
        }
        // Recorded before adding, so that a partial failure is still cleaned up.
        self.rules_installed = true;
        for rule in exit_rules(table, self.exit.fwmark) {
            self.netlink.add_rule(&rule, MESHD_ROUTE_PROTOCOL).await?;
        }
        tracing::info!(
            table,
            fwmark = format_args!("{:#x}", self.exit.fwmark),
            "policy rules for the exit table installed"
        );
        Ok(())
    }

    /// Removes the exit rules this run added; failures are logged.
    async fn remove_exit_rules(&mut self) {
        if !std::mem::take(&mut self.rules_installed) {
            return;
        }
        let table = self.exit.table;
        if let Err(error) = self
            .netlink
            .remove_rules(|rule| rule.is_meshd_exit_rule(MESHD_ROUTE_PROTOCOL, table))
            .await
        {
            tracing::warn!(%error, "cannot remove the exit policy rules");
        }
    }

    /// The routes installed now.
    pub fn installed(&self) -> &[IpNet] {
        &self.installed
    }

    /// Installs what is missing and removes what is no longer wanted. Every change is tried;
    /// the first failure is returned, and what did succeed is recorded, so a later sync or
    /// [`Self::remove_all`] starts from the truth.
    pub async fn sync(&mut self, wanted: &[IpNet]) -> Result<(), NetlinkError> {
        let target = Target::Main;
        sync_table(
            self.netlink,
            self.index,
            target,
            &mut self.installed,
            wanted,
        )
        .await
    }

    /// Like [`Self::sync`], for the routes in the exit table.
    pub async fn sync_exit(&mut self, wanted: &[IpNet]) -> Result<(), NetlinkError> {
        let target = Target::Table(self.exit.table);
        let installed = &mut self.exit_installed;
        sync_table(self.netlink, self.index, target, installed, wanted).await
    }

    /// Makes the routes through gateways equal to `wanted`: a route whose next hop changed
    /// is replaced. Like [`Self::sync`], every change is tried and the truth recorded.
    pub async fn sync_gateways(&mut self, wanted: &[GatewayRoute]) -> Result<(), NetlinkError> {
        let mut first_error = None;
        let gone: Vec<GatewayRoute> = self
            .gateways
            .iter()
            .filter(|r| !wanted.iter().any(|w| w.prefix == r.prefix))
            .copied()
            .collect();
        for route in gone {
            match self
                .netlink
                .remove_gateway_route(route.prefix, route.next_hop, MESHD_ROUTE_PROTOCOL)
                .await
            {
                Ok(()) => {
                    self.gateways.retain(|r| *r != route);
                    tracing::info!(route = %route.prefix, via = %route.next_hop, "kernel route removed");
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        let new: Vec<GatewayRoute> = wanted
            .iter()
            .filter(|r| !self.gateways.contains(r))
            .copied()
            .collect();
        for route in &new {
            match self
                .netlink
                .replace_gateway_route(route.prefix, route.next_hop, MESHD_ROUTE_PROTOCOL)
                .await
            {
                Ok(()) => {
                    self.gateways.retain(|r| r.prefix != route.prefix);
                    self.gateways.push(*route);
                    tracing::info!(route = %route.prefix, via = %route.next_hop, "kernel route installed");
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        self.gateways.sort();
        first_error.map_or(Ok(()), Err)
    }

    /// Follows the peer set's wanted routes (into the TUN, and through gateways) until the
    /// future is dropped. A failure is logged and retried at the next change (the data plane
    /// still drops what no peer claims).
    pub async fn follow(
        &mut self,
        mut wanted: watch::Receiver<Vec<IpNet>>,
        mut gateways: watch::Receiver<Vec<GatewayRoute>>,
        mut exit: watch::Receiver<Vec<IpNet>>,
    ) -> Infallible {
        let mut open = (true, true, true);
        loop {
            let current = wanted.borrow_and_update().clone();
            if let Err(error) = self.sync(&current).await {
                tracing::warn!(%error, "cannot bring the kernel routes up to date");
            }
            let current = exit.borrow_and_update().clone();
            if let Err(error) = self.sync_exit(&current).await {
                tracing::warn!(%error, "cannot bring the exit table up to date");
            }
            let current = gateways.borrow_and_update().clone();
            if let Err(error) = self.sync_gateways(&current).await {
                tracing::warn!(%error, "cannot bring the kernel routes through gateways up to date");
            }
            // Until the peer set is gone (then nothing changes any more).
            tokio::select! {
                changed = wanted.changed(), if open.0 => open.0 = changed.is_ok(),
                changed = gateways.changed(), if open.1 => open.1 = changed.is_ok(),
                changed = exit.changed(), if open.2 => open.2 = changed.is_ok(),
                else => return std::future::pending().await,
            }
        }
    }

    /// Removes every route and rule this run installed; failures are logged, not fatal (the
    /// TUN's deletion takes its routes with it anyway).
    pub async fn remove_all(&mut self) {
        self.remove_exit_rules().await;
        let table = self.exit.table;
        for route in std::mem::take(&mut self.exit_installed) {
            if let Err(error) = self
                .netlink
                .remove_route_in_table(self.index, route, table, MESHD_ROUTE_PROTOCOL)
                .await
            {
                tracing::warn!(%route, %error, "cannot remove route");
            }
        }
        for route in std::mem::take(&mut self.gateways) {
            if let Err(error) = self
                .netlink
                .remove_gateway_route(route.prefix, route.next_hop, MESHD_ROUTE_PROTOCOL)
                .await
            {
                tracing::warn!(route = %route.prefix, %error, "cannot remove route");
            }
        }
        for route in std::mem::take(&mut self.installed) {
            if let Err(error) = self
                .netlink
                .remove_route(self.index, route, MESHD_ROUTE_PROTOCOL)
                .await
            {
                tracing::warn!(%route, %error, "cannot remove route");
            }
        }
    }
}

/// Which table a route set lives in.
#[derive(Debug, Clone, Copy)]
enum Target {
    Main,
    Table(u32),
}

/// Brings the routes into interface `index` in `target` from `installed` to `wanted`; every
/// change is tried, `installed` keeps what did happen, the first failure is returned.
async fn sync_table(
    netlink: &Netlink,
    index: u32,
    target: Target,
    installed: &mut Vec<IpNet>,
    wanted: &[IpNet],
) -> Result<(), NetlinkError> {
    let (add, remove) = route_changes(installed, wanted);
    let mut first_error = None;
    for route in remove {
        let result = match target {
            Target::Main => {
                netlink
                    .remove_route(index, route, MESHD_ROUTE_PROTOCOL)
                    .await
            }
            Target::Table(table) => {
                netlink
                    .remove_route_in_table(index, route, table, MESHD_ROUTE_PROTOCOL)
                    .await
            }
        };
        match result {
            Ok(()) => {
                installed.retain(|r| *r != route);
                tracing::info!(%route, table = ?target, "kernel route removed");
            }
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    for route in add {
        let result = match target {
            Target::Main => {
                netlink
                    .replace_route(index, route, MESHD_ROUTE_PROTOCOL)
                    .await
            }
            Target::Table(table) => {
                netlink
                    .replace_route_in_table(index, route, table, MESHD_ROUTE_PROTOCOL)
                    .await
            }
        };
        match result {
            Ok(()) => {
                installed.push(route);
                tracing::debug!(%route, table = ?target, "kernel route installed");
            }
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    installed.sort();
    first_error.map_or(Ok(()), Err)
}
