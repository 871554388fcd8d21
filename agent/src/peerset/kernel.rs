//! Keeps the kernel's routes into the TUN equal to what the peer set wants, over rtnetlink,
//! each route tagged with [`MESHD_ROUTE_PROTOCOL`].

use std::convert::Infallible;

use ipnet::IpNet;
use tokio::sync::watch;

use super::routes::route_changes;
use crate::netlink::{MESHD_ROUTE_PROTOCOL, Netlink, NetlinkError};

/// The routes this run installed towards one interface.
#[derive(Debug)]
pub struct KernelRoutes<'a> {
    netlink: &'a Netlink,
    index: u32,
    installed: Vec<IpNet>,
}

impl<'a> KernelRoutes<'a> {
    /// Nothing installed yet, towards interface `index`.
    pub fn new(netlink: &'a Netlink, index: u32) -> Self {
        Self {
            netlink,
            index,
            installed: Vec::new(),
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

    /// Follows the peer set's wanted routes until the future is dropped. A failure is logged
    /// and retried at the next change (the data plane still drops what no peer claims).
    pub async fn follow(&mut self, mut wanted: watch::Receiver<Vec<IpNet>>) -> Infallible {
        loop {
            let current = wanted.borrow_and_update().clone();
            if let Err(error) = self.sync(&current).await {
                tracing::warn!(%error, "cannot bring the kernel routes up to date");
            }
            if wanted.changed().await.is_err() {
                // The peer set is gone: nothing will change any more.
                return std::future::pending().await;
            }
        }
    }

    /// Removes every route this run installed; failures are logged, not fatal (the TUN's
    /// deletion takes its routes with it anyway).
    pub async fn remove_all(&mut self) {
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
