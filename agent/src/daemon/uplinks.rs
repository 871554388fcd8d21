//! The node's uplinks, followed from rtnetlink into the data plane: which local addresses a
//! path to a peer can leave from. The monitor itself (and its log lines) is
//! crate::netlink::uplinks; this is the glue that orders the addresses and hands them on.

use meshd_tunnel::path::LocalUplink;
use tokio::task::JoinHandle;

use crate::dataplane::UplinkSink;
use crate::netlink::{UplinkMonitor, Uplinks};

/// The main routing table: an uplink whose default route lives there is the primary one.
const MAIN_TABLE: u32 = 254;

/// The running follower; dropping it stops following.
#[derive(Debug)]
pub(super) struct UplinkFollower {
    _monitor: UplinkMonitor,
    task: JoinHandle<()>,
}

impl Drop for UplinkFollower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts following the uplinks (not counting the TUN `interface`) into `sink`.
pub(super) async fn follow(
    interface: &str,
    sink: UplinkSink,
) -> Result<UplinkFollower, crate::netlink::NetlinkError> {
    let monitor = UplinkMonitor::start([interface.to_string()]).await?;
    let mut updates = monitor.subscribe();
    sink.set(ordered(&monitor.current()));
    let task = tokio::spawn(async move {
        while updates.changed().await.is_ok() {
            let uplinks = updates.borrow_and_update().clone();
            sink.set(ordered(&uplinks));
        }
    });
    Ok(UplinkFollower {
        _monitor: monitor,
        task,
    })
}

/// The addresses paths may leave from, primary first: only uplinks with a default route
/// (an address that reaches only its own link is no way to a peer elsewhere), those whose
/// default route is in the main table before those reached by source routing alone, then by
/// address so the order is stable.
fn ordered(uplinks: &Uplinks) -> Vec<LocalUplink> {
    let mut usable: Vec<_> = uplinks.iter().filter(|u| u.has_default_route()).collect();
    usable.sort_by_key(|u| (!u.default_route_tables.contains(&MAIN_TABLE), u.address));
    usable
        .into_iter()
        .map(|u| LocalUplink {
            address: u.address,
            interface: u.interface.clone(),
        })
        .collect()
}
