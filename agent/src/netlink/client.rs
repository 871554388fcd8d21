//! The rtnetlink client: one connection, one method per kernel operation meshd needs.
//!
//! Adding is idempotent (replace semantics) so that a restart converges on the wanted state
//! whatever the previous run left; removing something that is already gone is not an error,
//! because shutdown after a partial start must still succeed.

use std::net::IpAddr;

use futures_util::TryStreamExt;
use ipnet::IpNet;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::{AddressMessageBuilder, Handle, LinkUnspec, RouteMessageBuilder};
use tokio::task::JoinHandle;

use super::error::NetlinkError;
use super::route::{KernelRoute, device_route, dump_request, gateway_route, parse_route};
use super::rule::{KernelRule, PolicyRule, parse_rule, rule_message};

/// `ENODEV`: the kernel's answer to a lookup of an interface name that does not exist.
const ENODEV: i32 = 19;
/// `ESRCH`: the route to delete does not exist.
const ESRCH: i32 = 3;
/// `EADDRNOTAVAIL`: the address to delete is not on the interface.
const EADDRNOTAVAIL: i32 = 99;
/// `ENETUNREACH`: no route to the network.
const ENETUNREACH: i32 = 101;
/// `EHOSTUNREACH`: no route to the host.
const EHOSTUNREACH: i32 = 113;
/// `ENOENT`: returned by some kernels for the two cases above.
const ENOENT: i32 = 2;
/// `EEXIST`: an equal rule is there already.
const EEXIST: i32 = 17;

/// A connection to the kernel's routing netlink in the current network namespace.
///
/// Must be created inside a tokio runtime: the connection runs as a task, aborted on drop.
#[derive(Debug)]
pub struct Netlink {
    handle: Handle,
    connection: JoinHandle<()>,
}

impl Drop for Netlink {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl Netlink {
    /// Opens the rtnetlink socket and spawns its connection task.
    pub fn connect() -> Result<Self, NetlinkError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Connect)?;
        let connection = tokio::spawn(connection);
        Ok(Netlink { handle, connection })
    }

    /// The index of the interface called `name`.
    pub async fn link_index(&self, name: &str) -> Result<u32, NetlinkError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match links.try_next().await {
            Ok(Some(link)) => Ok(link.header.index),
            Ok(None) => Err(NetlinkError::LinkNotFound {
                name: name.to_owned(),
            }),
            Err(error) => {
                let error =
                    NetlinkError::from_rtnetlink(format!("look up interface {name:?}"), error);
                if error.errno() == Some(ENODEV) {
                    Err(NetlinkError::LinkNotFound {
                        name: name.to_owned(),
                    })
                } else {
                    Err(error)
                }
            }
        }
    }

    /// The MTU of interface `index`, as the kernel reports it.
    pub async fn link_mtu(&self, index: u32) -> Result<u32, NetlinkError> {
        self.link_attribute(index, "MTU", |attribute| match attribute {
            LinkAttribute::Mtu(mtu) => Some(mtu),
            _ => None,
        })
        .await
    }

    /// The interface the kernel would send a packet to `destination` out of (`ip route get`),
    /// or `None` if it has no route there.
    pub async fn route_interface(&self, destination: IpAddr) -> Result<Option<u32>, NetlinkError> {
        let message = match destination {
            IpAddr::V4(addr) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .destination_prefix(addr, 32)
                .build(),
            IpAddr::V6(addr) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
                .destination_prefix(addr, 128)
                .build(),
        };
        let mut replies = self.handle.route().get(message).execute();
        match replies.try_next().await {
            Ok(reply) => Ok(reply
                .as_ref()
                .and_then(parse_route)
                .and_then(|r| r.interface_index)),
            Err(error) => {
                let error = NetlinkError::from_rtnetlink(
                    format!("look up the route to {destination}"),
                    error,
                );
                // ENETUNREACH / EHOSTUNREACH: no route, which is an answer, not a failure.
                if matches!(error.errno(), Some(ENETUNREACH | EHOSTUNREACH)) {
                    Ok(None)
                } else {
                    Err(error)
                }
            }
        }
    }

    /// The MTU of the interface that leads to `destination`, `None` without a route there.
    pub async fn underlay_mtu_towards(
        &self,
        destination: IpAddr,
    ) -> Result<Option<u32>, NetlinkError> {
        match self.route_interface(destination).await? {
            Some(index) => Ok(Some(self.link_mtu(index).await?)),
            None => Ok(None),
        }
    }

    /// Sets the MTU of interface `index` and brings it up, in one request.
    pub async fn set_mtu_and_up(&self, index: u32, mtu: u16) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_index(index)
            .mtu(u32::from(mtu))
            .up()
            .build();
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(|e| {
                NetlinkError::from_rtnetlink(
                    format!("set MTU {mtu} and up on interface {index}"),
                    e,
                )
            })
    }

    /// Brings interface `index` down.
    pub async fn set_down(&self, index: u32) -> Result<(), NetlinkError> {
        let message = LinkUnspec::new_with_index(index).down().build();
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(|e| NetlinkError::from_rtnetlink(format!("set interface {index} down"), e))
    }

    /// Puts `address` (with its prefix length, e.g. `10.1.0.1/16`) on interface `index`.
    /// Replaces an equal address, so calling it twice is fine. IPv6 addresses skip duplicate
    /// address detection: the TUN has no neighbours, and DAD would hold the address tentative.
    pub async fn add_address(&self, index: u32, address: IpNet) -> Result<(), NetlinkError> {
        let mut request = self
            .handle
            .address()
            .add(index, address.addr(), address.prefix_len())
            .replace();
        if address.addr().is_ipv6() {
            let message = request.message_mut();
            message.header.flags |= AddressHeaderFlags::Nodad;
            message
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        request.execute().await.map_err(|e| {
            NetlinkError::from_rtnetlink(format!("add address {address} to interface {index}"), e)
        })
    }

    /// Removes `address` from interface `index`; an address that is not there is not an error.
    pub async fn remove_address(&self, index: u32, address: IpNet) -> Result<(), NetlinkError> {
        let message = match address.addr() {
            IpAddr::V4(addr) => AddressMessageBuilder::<std::net::Ipv4Addr>::new()
                .index(index)
                .address(addr, address.prefix_len())
                .build(),
            IpAddr::V6(addr) => AddressMessageBuilder::<std::net::Ipv6Addr>::new()
                .index(index)
                .address(addr, address.prefix_len())
                .build(),
        };
        let result = self
            .handle
            .address()
            .del(message)
            .execute()
            .await
            .map_err(|e| {
                NetlinkError::from_rtnetlink(
                    format!("remove address {address} from interface {index}"),
                    e,
                )
            });
        ignore_errnos(result, &[EADDRNOTAVAIL, ENOENT])
    }

    /// The addresses on interface `index`, with their prefix lengths.
    pub async fn addresses(&self, index: u32) -> Result<Vec<IpNet>, NetlinkError> {
        let operation = || format!("list the addresses of interface {index}");
        let mut messages = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut addresses = Vec::new();
        while let Some(message) = messages
            .try_next()
            .await
            .map_err(|e| NetlinkError::from_rtnetlink(operation(), e))?
        {
            // The dump filter is applied in user space by rtnetlink on some versions; check again.
            if message.header.index != index {
                continue;
            }
            // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on
            // point-to-point links. Prefer the former when both are present.
            let local = message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let address = local.or_else(|| {
                message.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            });
            if let Some(ip) = address
                && let Ok(net) = IpNet::new(ip, message.header.prefix_len)
            {
                addresses.push(net);
            }
        }
        Ok(addresses)
    }

    /// Installs (or replaces) a route for `destination` out of interface `index`, tagged with
    /// `protocol`.
    pub async fn replace_route(
        &self,
        index: u32,
        destination: IpNet,
        protocol: u8,
    ) -> Result<(), NetlinkError> {
        let message = device_route(destination, index, protocol);
        self.handle
            .route()
            .add(message)
            .replace()
            .execute()
            .await
            .map_err(|e| {
                NetlinkError::from_rtnetlink(
                    format!("add route {destination} via interface {index}"),
                    e,
                )
            })
    }

    /// Removes the route for `destination` out of interface `index` with `protocol`; a route
    /// that is not there is not an error.
    pub async fn remove_route(
        &self,
        index: u32,
        destination: IpNet,
        protocol: u8,
    ) -> Result<(), NetlinkError> {
        let message = device_route(destination, index, protocol);
        self.delete_route(
            message,
            format!("remove route {destination} via interface {index}"),
        )
        .await
    }

    /// Installs (or replaces) a route for `destination` out of interface `index` in routing
    /// table `table`, tagged with `protocol`.
    pub async fn replace_route_in_table(
        &self,
        index: u32,
        destination: IpNet,
        table: u32,
        protocol: u8,
    ) -> Result<(), NetlinkError> {
        let mut message = device_route(destination, index, protocol);
        set_table(&mut message, table);
        self.handle
            .route()
            .add(message)
            .replace()
            .execute()
            .await
            .map_err(|e| {
                NetlinkError::from_rtnetlink(
                    format!("add route {destination} via interface {index} in table {table}"),
                    e,
                )
            })
    }

    /// Removes the route for `destination` out of interface `index` from table `table`; a
    /// route that is not there is not an error.
    pub async fn remove_route_in_table(
        &self,
        index: u32,
        destination: IpNet,
        table: u32,
        protocol: u8,
    ) -> Result<(), NetlinkError> {
        let mut message = device_route(destination, index, protocol);
        set_table(&mut message, table);
        self.delete_route(
            message,
            format!("remove route {destination} via interface {index} from table {table}"),
        )
        .await
    }

    /// Adds the policy rule `rule`, tagged with `protocol`; an equal rule already there is
    /// not an error.
    pub async fn add_rule(&self, rule: &PolicyRule, protocol: u8) -> Result<(), NetlinkError> {
        let mut request = self.handle.rule().add();
        *request.message_mut() = rule_message(rule, protocol);
        let result = request.execute().await.map_err(|e| {
            NetlinkError::from_rtnetlink(
                format!("add policy rule {} lookup {}", rule.priority, rule.table()),
                e,
            )
        });
        ignore_errnos(result, &[EEXIST])
    }

    /// Every IPv4 and IPv6 policy rule.
    pub async fn rules(&self) -> Result<Vec<KernelRule>, NetlinkError> {
        Ok(self
            .rule_messages()
            .await?
            .iter()
            .filter_map(parse_rule)
            .collect())
    }

    /// Removes every IPv4 and IPv6 policy rule for which `doomed` is true and returns them.
    /// Each is deleted with the kernel's own description of it, so exactly that rule goes.
    pub async fn remove_rules(
        &self,
        doomed: impl Fn(&KernelRule) -> bool,
    ) -> Result<Vec<KernelRule>, NetlinkError> {
        let mut removed = Vec::new();
        for message in self.rule_messages().await? {
            let Some(rule) = parse_rule(&message).filter(|rule| doomed(rule)) else {
                continue;
            };
            let result = self.handle.rule().del(message).execute().await;
            ignore_errnos(
                result.map_err(|e| {
                    NetlinkError::from_rtnetlink(
                        format!("remove policy rule {} lookup {}", rule.priority, rule.table),
                        e,
                    )
                }),
                &[ENOENT, ESRCH],
            )?;
            removed.push(rule);
        }
        Ok(removed)
    }

    /// The kernel's IPv4 and IPv6 rule messages.
    async fn rule_messages(
        &self,
    ) -> Result<Vec<rtnetlink::packet_route::rule::RuleMessage>, NetlinkError> {
        let mut all = Vec::new();
        for version in [rtnetlink::IpVersion::V4, rtnetlink::IpVersion::V6] {
            let mut messages = self.handle.rule().get(version).execute();
            while let Some(message) = messages
                .try_next()
                .await
                .map_err(|e| NetlinkError::from_rtnetlink("list policy rules", e))?
            {
                all.push(message);
            }
        }
        Ok(all)
    }

    /// Installs (or replaces) a route for `destination` through the neighbour `gateway`,
    /// tagged with `protocol`.
    pub async fn replace_gateway_route(
        &self,
        destination: IpNet,
        gateway: IpAddr,
        protocol: u8,
    ) -> Result<(), NetlinkError> {
        let operation = format!("add route {destination} via {gateway}");
        let message = gateway_route(destination, gateway, protocol).ok_or_else(|| {
            NetlinkError::Protocol {
                operation: operation.clone(),
                detail: "an IPv6 route cannot go through an IPv4 gateway".to_owned(),
            }
        })?;
        self.handle
            .route()
            .add(message)
            .replace()
            .execute()
            .await
            .map_err(|e| NetlinkError::from_rtnetlink(operation, e))
    }

    /// Removes the route for `destination` through `gateway` with `protocol`; a route that is
    /// not there is not an error.
    pub async fn remove_gateway_route(
        &self,
        destination: IpNet,
        gateway: IpAddr,
        protocol: u8,
    ) -> Result<(), NetlinkError> {
        let operation = format!("remove route {destination} via {gateway}");
        let Some(message) = gateway_route(destination, gateway, protocol) else {
            return Ok(());
        };
        self.delete_route(message, operation).await
    }

    /// Sends a route deletion; a route that is already gone is not an error.
    async fn delete_route(
        &self,
        message: rtnetlink::packet_route::route::RouteMessage,
        operation: String,
    ) -> Result<(), NetlinkError> {
        let result = self.handle.route().del(message).execute().await;
        ignore_errnos(
            result.map_err(|e| NetlinkError::from_rtnetlink(operation, e)),
            &[ESRCH, ENOENT],
        )
    }

    /// Every IPv4 and IPv6 route in any table whose protocol is `protocol`.
    pub async fn routes_with_protocol(
        &self,
        protocol: u8,
    ) -> Result<Vec<KernelRoute>, NetlinkError> {
        let mut routes = Vec::new();
        for ipv6 in [false, true] {
            let family = if ipv6 { "IPv6" } else { "IPv4" };
            let mut messages = self.handle.route().get(dump_request(ipv6)).execute();
            while let Some(message) = messages
                .try_next()
                .await
                .map_err(|e| NetlinkError::from_rtnetlink(format!("list {family} routes"), e))?
            {
                if let Some(route) = parse_route(&message)
                    && route.protocol == protocol
                {
                    routes.push(route);
                }
            }
        }
        Ok(routes)
    }

    /// The names of the interfaces the main table's IPv4 and IPv6 default routes leave
    /// through, each once, IPv4 first. A multipath default (no single output interface) is
    /// not listed.
    pub async fn default_route_interfaces(&self) -> Result<Vec<String>, NetlinkError> {
        let mut indexes: Vec<u32> = Vec::new();
        for ipv6 in [false, true] {
            let family = if ipv6 { "IPv6" } else { "IPv4" };
            let mut messages = self.handle.route().get(dump_request(ipv6)).execute();
            while let Some(message) = messages
                .try_next()
                .await
                .map_err(|e| NetlinkError::from_rtnetlink(format!("list {family} routes"), e))?
            {
                if let Some(route) = parse_route(&message)
                    && route.destination.prefix_len() == 0
                    && route.table == super::route::MAIN_TABLE
                    && let Some(index) = route.interface_index
                    && !indexes.contains(&index)
                {
                    indexes.push(index);
                }
            }
        }
        let mut names = Vec::with_capacity(indexes.len());
        for index in indexes {
            names.push(self.link_name(index).await?);
        }
        Ok(names)
    }

    /// The name of interface `index`.
    pub async fn link_name(&self, index: u32) -> Result<String, NetlinkError> {
        self.link_attribute(index, "name", |attribute| match attribute {
            LinkAttribute::IfName(name) => Some(name),
            _ => None,
        })
        .await
    }

    /// The first attribute of interface `index` that `pick` takes (its `what`, for errors).
    async fn link_attribute<T>(
        &self,
        index: u32,
        what: &str,
        pick: impl FnMut(LinkAttribute) -> Option<T>,
    ) -> Result<T, NetlinkError> {
        let operation = || format!("read the {what} of interface {index}");
        let mut links = self.handle.link().get().match_index(index).execute();
        let link = links
            .try_next()
            .await
            .map_err(|e| NetlinkError::from_rtnetlink(operation(), e))?
            .ok_or_else(|| NetlinkError::Protocol {
                operation: operation(),
                detail: "the kernel returned no link".into(),
            })?;
        link.attributes
            .into_iter()
            .find_map(pick)
            .ok_or_else(|| NetlinkError::Protocol {
                operation: operation(),
                detail: format!("the link has no {what} attribute"),
            })
    }

    /// Removes every route whose protocol is `protocol` (what a crashed run left behind) and
    /// returns them.
    pub async fn flush_routes(&self, protocol: u8) -> Result<Vec<KernelRoute>, NetlinkError> {
        let routes = self.routes_with_protocol(protocol).await?;
        for route in &routes {
            let mut message = match route.interface_index {
                Some(index) => device_route(route.destination, index, protocol),
                None => {
                    let mut message = device_route(route.destination, 0, protocol);
                    message.attributes.retain(|a| {
                        !matches!(a, rtnetlink::packet_route::route::RouteAttribute::Oif(_))
                    });
                    message
                }
            };
            set_table(&mut message, route.table);
            self.delete_route(message, format!("remove stale route {}", route.destination))
                .await?;
        }
        Ok(routes)
    }
}

/// Points a route message at routing table `table`.
fn set_table(message: &mut rtnetlink::packet_route::route::RouteMessage, table: u32) {
    use rtnetlink::packet_route::route::{RouteAttribute, RouteHeader};
    message
        .attributes
        .retain(|a| !matches!(a, RouteAttribute::Table(_)));
    if let Ok(small) = u8::try_from(table) {
        message.header.table = small;
    } else {
        message.header.table = RouteHeader::RT_TABLE_UNSPEC;
    }
    message.attributes.push(RouteAttribute::Table(table));
}

/// Turns the listed errnos ("already gone") into success.
fn ignore_errnos(result: Result<(), NetlinkError>, errnos: &[i32]) -> Result<(), NetlinkError> {
    match result {
        Err(error) if error.errno().is_some_and(|errno| errnos.contains(&errno)) => Ok(()),
        other => other,
    }
}
