//! Keeps the kernel's routes equal to what the peer set wants, over rtnetlink, each route
//! tagged with [`MESHD_ROUTE_PROTOCOL`]: routes into the TUN, and routes through next hops
//! outside the mesh (BGP routes learnt from an eBGP neighbour).

use std::convert::Infallible;

use ipnet::IpNet;
use tokio::sync::watch;

use super::merge::BgpRoute;
use super::routes::route_changes;
use crate::netlink::{MESHD_ROUTE_PROTOCOL, Netlink, NetlinkError};

/// The routes this run installed towards one interface.
#[derive(Debug)]
pub struct KernelRoutes<'a> {
    netlink: &'a Netlink,
    index: u32,
    installed: Vec<IpNet>,
    /// Routes through a gateway, by prefix (one next hop per prefix: the best route's).
    gateways: Vec<BgpRoute>,
}

impl<'a> KernelRoutes<'a> {
    /// Nothing installed yet, towards interface `index`.
    pub fn new(netlink: &'a Netlink, index: u32) -> Self {
        Self {
            netlink,
            index,
            installed: Vec::new(),
            gateways: Vec::new(),
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
        let (add, remove) = route_changes(&self.installed, wanted);
        let mut first_error = None;
        for route in remove {
            match self
                .netlink
                .remove_route(self.index, route, MESHD_ROUTE_PROTOCOL)
                .await
            {
                Ok(()) => {
                    self.installed.retain(|r| *r != route);
                    tracing::info!(%route, "kernel route removed");
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        for route in add {
            match self
                .netlink
                .replace_route(self.index, route, MESHD_ROUTE_PROTOCOL)
                .await
            {
                Ok(()) => {
                    self.installed.push(route);
                    tracing::debug!(%route, "kernel route installed");
                }
                Err(error) => {
                    first_error.get_or_insert(error);
                }
            }
        }
        self.installed.sort();
        first_error.map_or(Ok(()), Err)
    }

    /// Makes the routes through gateways equal to `wanted`: a route whose next hop changed
    /// is replaced. Like [`Self::sync`], every change is tried and the truth recorded.
    pub async fn sync_gateways(&mut self, wanted: &[BgpRoute]) -> Result<(), NetlinkError> {
        let mut first_error = None;
        let gone: Vec<BgpRoute> = self
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
        let new: Vec<BgpRoute> = wanted
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
        mut gateways: watch::Receiver<Vec<BgpRoute>>,
    ) -> Infallible {
        let mut open = (true, true);
        loop {
            let current = wanted.borrow_and_update().clone();
            if let Err(error) = self.sync(&current).await {
                tracing::warn!(%error, "cannot bring the kernel routes up to date");
            }
            let current = gateways.borrow_and_update().clone();
            if let Err(error) = self.sync_gateways(&current).await {
                tracing::warn!(%error, "cannot bring the kernel routes through gateways up to date");
            }
            // Until the peer set is gone (then nothing changes any more).
            tokio::select! {
                changed = wanted.changed(), if open.0 => open.0 = changed.is_ok(),
                changed = gateways.changed(), if open.1 => open.1 = changed.is_ok(),
                else => return std::future::pending().await,
            }
        }
    }

    /// Removes every route this run installed; failures are logged, not fatal (the TUN's
    /// deletion takes its routes with it anyway).
    pub async fn remove_all(&mut self) {
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
