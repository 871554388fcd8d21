//! The node's own uplinks: the local addresses a path to a peer can be sent from.
//!
//! [`UplinkMonitor`] subscribes to the kernel's rtnetlink notifications for links, IPv4 and IPv6
//! addresses and routes (events, never polling), dumps the current state once at start, and
//! publishes a new [`Uplinks`] snapshot as soon as a notification changes the set: an address
//! removed, a link down or up, a default route added or gone. Consumers keep the snapshot they
//! applied last and ask [`Uplinks::changes_since`] what changed, so nothing queues up behind a
//! slow consumer and a removal is never missed.
//!
//! Which addresses count and why is [`table::UplinkTable::uplinks`]; the decisions are pure and
//! tested on constructed messages, this file only moves messages from the kernel to the table.

mod table;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt, TryStreamExt};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{AsyncSocket, SocketAddr};
use rtnetlink::{Handle, MulticastGroup};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::error::NetlinkError;
use super::route::dump_request;
pub use table::UplinkTable;

/// One usable local address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    pub address: IpAddr,
    pub prefix_len: u8,
    /// The interface's name and index.
    pub interface: String,
    pub interface_index: u32,
    /// The routing tables that hold a default route of the address's family leaving through
    /// this interface (254 = main; with source-based routing, the ISP's own table). Empty: the
    /// address reaches only what its interface's other routes reach.
    pub default_route_tables: Vec<u32>,
}

impl Uplink {
    /// Whether some table has a default route through this uplink's interface.
    pub fn has_default_route(&self) -> bool {
        !self.default_route_tables.is_empty()
    }
}

impl fmt::Display for Uplink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.address, self.interface)?;
        match self.default_route_tables.as_slice() {
            [] => write!(f, " (no default route)"),
            tables => {
                let tables: Vec<String> = tables.iter().map(u32::to_string).collect();
                write!(f, " (default route in table {})", tables.join(", "))
            }
        }
    }
}

/// The set of usable local addresses at one moment, ordered by address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uplinks {
    by_address: BTreeMap<IpAddr, Uplink>,
}

/// How one uplink changed between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UplinkChange {
    /// A new usable address: paths from it become candidates.
    Added(Uplink),
    /// The address is gone or unusable: paths from it are down at once.
    Removed(Uplink),
    /// Still usable, but its interface or default routes changed.
    Changed { old: Uplink, new: Uplink },
}

impl fmt::Display for UplinkChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UplinkChange::Added(uplink) => write!(f, "uplink added: {uplink}"),
            UplinkChange::Removed(uplink) => write!(f, "uplink gone: {uplink}"),
            UplinkChange::Changed { new, .. } => write!(f, "uplink changed: {new}"),
        }
    }
}

impl Uplinks {
    fn from_map(by_address: BTreeMap<IpAddr, Uplink>) -> Self {
        Uplinks { by_address }
    }

    /// The uplinks in address order.
    pub fn iter(&self) -> impl Iterator<Item = &Uplink> {
        self.by_address.values()
    }

    /// The usable addresses, in order.
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.by_address.keys().copied()
    }

    pub fn get(&self, address: IpAddr) -> Option<&Uplink> {
        self.by_address.get(&address)
    }

    pub fn len(&self) -> usize {
        self.by_address.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }

    /// What changed from `earlier` to `self`: removals first (so a consumer takes paths down
    /// before it adds new ones), then additions and changes, each in address order.
    pub fn changes_since(&self, earlier: &Uplinks) -> Vec<UplinkChange> {
        let mut changes: Vec<UplinkChange> = earlier
            .iter()
            .filter(|old| !self.by_address.contains_key(&old.address))
            .map(|old| UplinkChange::Removed(old.clone()))
            .collect();
        for new in self.iter() {
            match earlier.get(new.address) {
                None => changes.push(UplinkChange::Added(new.clone())),
                Some(old) if old != new => changes.push(UplinkChange::Changed {
                    old: old.clone(),
                    new: new.clone(),
                }),
                Some(_) => {}
            }
        }
        changes
    }
}

/// The rtnetlink groups the monitor listens to.
const GROUPS: [MulticastGroup; 5] = [
    MulticastGroup::Link,
    MulticastGroup::Ipv4Ifaddr,
    MulticastGroup::Ipv6Ifaddr,
    MulticastGroup::Ipv4Route,
    MulticastGroup::Ipv6Route,
];

/// The notification socket's receive buffer: room for a burst (an interface with many routes
/// going down) before the kernel drops notifications; after a drop the monitor dumps again.
const RECEIVE_BUFFER: usize = 4 << 20;

/// How long a dump may take before the monitor gives up on that connection and starts again.
const DUMP_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait before reconnecting after the netlink connection failed.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// The connection's unsolicited messages (boxed: rtnetlink's channel type is not re-exported).
type Notifications = BoxStream<'static, (NetlinkMessage<RouteNetlinkMessage>, SocketAddr)>;

/// The running monitor: a task following the kernel, and the latest snapshot. Dropping it
/// stops the task.
#[derive(Debug)]
pub struct UplinkMonitor {
    uplinks: watch::Receiver<Uplinks>,
    task: JoinHandle<()>,
}

impl Drop for UplinkMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl UplinkMonitor {
    /// Subscribes to the notifications, dumps links, addresses and routes, and returns once
    /// the first snapshot is complete; the task then follows every change. Addresses on the
    /// interfaces named in `excluded` (the TUN device) are never uplinks. Must run inside a
    /// tokio runtime.
    pub async fn start(
        excluded: impl IntoIterator<Item = String>,
    ) -> Result<UplinkMonitor, NetlinkError> {
        let mut table = UplinkTable::new(excluded);
        let mut connection = Connection::open()?;
        connection.dump_into(&mut table).await?;
        let first = table.uplinks();
        for uplink in first.iter() {
            tracing::info!("uplink: {uplink}");
        }
        if first.is_empty() {
            tracing::info!("no uplinks yet (no usable global address on an interface that is up)");
        }
        let (sender, uplinks) = watch::channel(first);
        let task = tokio::spawn(follow(connection, table, sender));
        Ok(UplinkMonitor { uplinks, task })
    }

    /// A receiver that is told of every new snapshot (`changed().await`).
    pub fn subscribe(&self) -> watch::Receiver<Uplinks> {
        self.uplinks.clone()
    }

    /// The current snapshot.
    pub fn current(&self) -> Uplinks {
        self.uplinks.borrow().clone()
    }
}

/// One rtnetlink connection subscribed to [`GROUPS`]: the handle for dumps and the stream of
/// notifications (everything the kernel sends that answers no request of ours).
struct Connection {
    handle: Handle,
    notifications: Notifications,
    task: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Connection {
    fn open() -> Result<Connection, NetlinkError> {
        let (mut connection, handle, notifications) =
            rtnetlink::new_multicast_connection(&GROUPS).map_err(NetlinkError::Connect)?;
        // Best effort: the default buffer works too, only sooner into a re-dump.
        let _ = connection
            .socket_mut()
            .socket_mut()
            .set_rx_buf_sz(RECEIVE_BUFFER);
        let task = tokio::spawn(connection);
        Ok(Connection {
            handle,
            notifications: notifications.boxed(),
            task,
        })
    }

    /// Fills `table` from dumps of links, addresses and both families' routes. Notifications
    /// that arrive meanwhile wait in the channel and are applied afterwards, which converges
    /// because each message carries the full state of its object.
    async fn dump_into(&mut self, table: &mut UplinkTable) -> Result<(), NetlinkError> {
        match tokio::time::timeout(DUMP_TIMEOUT, self.dump(table)).await {
            Ok(result) => result,
            Err(_) => Err(NetlinkError::Protocol {
                operation: "dump links, addresses and routes".into(),
                detail: format!("no complete answer within {DUMP_TIMEOUT:?}"),
            }),
        }
    }

    async fn dump(&mut self, table: &mut UplinkTable) -> Result<(), NetlinkError> {
        let failed = |what: &str| {
            let operation = format!("dump {what}");
            move |error| NetlinkError::from_rtnetlink(operation, error)
        };
        let mut links = self.handle.link().get().execute();
        while let Some(link) = links.try_next().await.map_err(failed("links"))? {
            table.apply(&RouteNetlinkMessage::NewLink(link));
        }
        let mut addresses = self.handle.address().get().execute();
        while let Some(address) = addresses.try_next().await.map_err(failed("addresses"))? {
            table.apply(&RouteNetlinkMessage::NewAddress(address));
        }
        for ipv6 in [false, true] {
            let mut routes = self.handle.route().get(dump_request(ipv6)).execute();
            while let Some(route) = routes.try_next().await.map_err(failed("routes"))? {
                table.apply(&RouteNetlinkMessage::NewRoute(route));
            }
        }
        Ok(())
    }
}

/// What the next batch of notifications asks of the monitor.
enum Batch {
    /// Apply these messages.
    Messages(Vec<RouteNetlinkMessage>),
    /// The kernel dropped notifications (socket buffer full): dump everything again.
    Overrun,
    /// The connection ended.
    Closed,
}

/// Waits for a notification, then takes every one already queued, so that a burst (a link
/// going down removes addresses and routes in a row) becomes one snapshot.
async fn next_batch(notifications: &mut Notifications) -> Batch {
    let mut messages = Vec::new();
    let Some(first) = notifications.next().await else {
        return Batch::Closed;
    };
    let mut next = Some(first);
    while let Some((message, _)) = next {
        match message.payload {
            NetlinkPayload::InnerMessage(message) => messages.push(message),
            NetlinkPayload::Overrun(_) => return Batch::Overrun,
            _ => {}
        }
        next = notifications.next().now_or_never().flatten();
    }
    Batch::Messages(messages)
}

/// The monitor task: applies notifications and publishes each changed snapshot at once;
/// re-dumps after an overrun and reconnects after a failure, keeping the last snapshot
/// meanwhile.
async fn follow(
    mut connection: Connection,
    mut table: UplinkTable,
    sender: watch::Sender<Uplinks>,
) {
    loop {
        match next_batch(&mut connection.notifications).await {
            Batch::Messages(messages) => {
                for message in &messages {
                    table.apply(message);
                }
            }
            Batch::Overrun => {
                tracing::warn!("the kernel dropped uplink notifications; reading its state again");
                table.clear();
                if let Err(error) = connection.dump_into(&mut table).await {
                    tracing::warn!("uplinks: {error}; reconnecting");
                    connection = reconnect(&mut table).await;
                }
            }
            Batch::Closed => {
                tracing::warn!("the uplink notification socket closed; reconnecting");
                connection = reconnect(&mut table).await;
            }
        }
        publish(&sender, table.uplinks());
    }
}

/// Opens a new connection and dumps into a cleared table, retrying every second until it
/// works.
async fn reconnect(table: &mut UplinkTable) -> Connection {
    loop {
        tokio::time::sleep(RECONNECT_DELAY).await;
        let result = async {
            let mut connection = Connection::open()?;
            table.clear();
            connection.dump_into(table).await?;
            Ok::<_, NetlinkError>(connection)
        }
        .await;
        match result {
            Ok(connection) => return connection,
            Err(error) => tracing::warn!("uplinks: {error}; retrying"),
        }
    }
}

/// Replaces the published snapshot if it differs, logging each change once.
fn publish(sender: &watch::Sender<Uplinks>, uplinks: Uplinks) {
    sender.send_if_modified(|current| {
        let changes = uplinks.changes_since(current);
        for change in &changes {
            tracing::info!("{change}");
        }
        if changes.is_empty() {
            return false;
        }
        *current = uplinks;
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uplink(address: &str, interface: &str, tables: &[u32]) -> Uplink {
        Uplink {
            address: address.parse().unwrap(),
            prefix_len: 24,
            interface: interface.to_owned(),
            interface_index: 2,
            default_route_tables: tables.to_vec(),
        }
    }

    fn set(uplinks: &[Uplink]) -> Uplinks {
        Uplinks::from_map(
            uplinks
                .iter()
                .map(|uplink| (uplink.address, uplink.clone()))
                .collect(),
        )
    }

    #[test]
    fn changes_list_removals_first_then_additions_and_changes() {
        let isp1 = uplink("198.51.100.1", "eth0", &[254]);
        let isp2 = uplink("203.0.113.1", "eth1", &[102]);
        let isp2_no_route = uplink("203.0.113.1", "eth1", &[]);
        let v6 = uplink("2001:db8::1", "eth1", &[]);
        let before = set(&[isp1.clone(), isp2.clone()]);
        let after = set(&[isp2_no_route.clone(), v6.clone()]);
        assert_eq!(
            after.changes_since(&before),
            [
                UplinkChange::Removed(isp1),
                UplinkChange::Changed {
                    old: isp2,
                    new: isp2_no_route
                },
                UplinkChange::Added(v6),
            ]
        );
        assert!(after.changes_since(&after).is_empty());
    }

    #[test]
    fn changes_read_as_log_lines() {
        let change = UplinkChange::Removed(uplink("198.51.100.1", "eth0", &[254]));
        assert_eq!(
            change.to_string(),
            "uplink gone: 198.51.100.1 on eth0 (default route in table 254)"
        );
        let change = UplinkChange::Added(uplink("2001:db8::1", "eth1", &[]));
        assert_eq!(
            change.to_string(),
            "uplink added: 2001:db8::1 on eth1 (no default route)"
        );
    }
}
