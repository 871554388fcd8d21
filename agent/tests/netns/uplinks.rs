//! The uplink monitor against a real kernel (needs root): a namespace with two ISP veths, the
//! monitor running inside it, and every change made with `ip` reported within milliseconds.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use meshd::netlink::{UplinkMonitor, Uplinks};
use netns_tests::{Namespace, connect_veth, require_root, run_checked};
use tokio::sync::watch;

/// How soon a change must be reported after the `ip` command that made it returned. Events
/// arrive in well under a millisecond; this leaves room for a loaded CI machine.
const PROMPT: Duration = Duration::from_millis(250);

/// The same for changes of carrier (a link coming up, the far end going down): the kernel
/// itself applies them through its link watcher, which runs at most once a second, and only
/// then sets or clears `IFF_RUNNING` and notifies (seen here: 0.5 to 1013 ms).
const PROMPT_AFTER_LINKWATCH: Duration = Duration::from_millis(2000);

fn addresses(uplinks: &Uplinks) -> Vec<String> {
    uplinks.addresses().map(|a| a.to_string()).collect()
}

/// Runs `ip -n NAMESPACE args...`, panicking on failure.
fn ip(namespace: &str, args: &[&str]) {
    let mut full = vec!["-n", namespace];
    full.extend_from_slice(args);
    if let Err(error) = run_checked("ip", &full) {
        panic!("{error}");
    }
}

/// Runs `ip` in `namespace`, then waits for a snapshot that satisfies `wanted`, and returns it
/// with the time from the command's return to the snapshot.
async fn change(
    uplinks: &mut watch::Receiver<Uplinks>,
    namespace: &str,
    args: &[&str],
    wanted: impl Fn(&Uplinks) -> bool,
) -> (Uplinks, Duration) {
    ip(namespace, args);
    let done = Instant::now();
    let waited = tokio::time::timeout(Duration::from_secs(5), uplinks.wait_for(&wanted))
        .await
        .map(|snapshot| snapshot.expect("monitor stopped").clone());
    let took = done.elapsed();
    match waited {
        Ok(snapshot) => (snapshot, took),
        Err(_) => panic!(
            "`ip {}` was not reported within 5 s; last snapshot {:?}",
            args.join(" "),
            addresses(&uplinks.borrow())
        ),
    }
}

#[test]
fn address_removal_link_down_and_up_are_reported_at_once() {
    if !require_root("address_removal_link_down_and_up_are_reported_at_once") {
        return;
    }
    let core = Namespace::new("uplinks");
    let isp = Namespace::new("isp");
    connect_veth(
        &core,
        "isp1",
        &["198.51.100.1/24"],
        &isp,
        "c1",
        &["198.51.100.254/24"],
    );
    connect_veth(
        &core,
        "isp2",
        &["203.0.113.1/24", "2001:db8:2::1/64"],
        &isp,
        "c2",
        &["203.0.113.254/24", "2001:db8:2::fe/64"],
    );
    // Stands in for the TUN device, which must never count.
    connect_veth(
        &core,
        "mesh0",
        &["10.1.0.1/16"],
        &isp,
        "m0",
        &["10.1.0.2/16"],
    );
    // Two default routes, ISP2's in its own table as source-based routing has it.
    core.ip(&["route", "add", "default", "via", "198.51.100.254"]);
    core.ip(&[
        "route",
        "add",
        "default",
        "via",
        "203.0.113.254",
        "table",
        "102",
    ]);
    let core_name = core.name().to_owned();
    let isp_name = isp.name().to_owned();

    let timings = core.run_in(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let monitor = UplinkMonitor::start(["mesh0".to_owned()])
                .await
                .expect("start the uplink monitor");
            let first = monitor.current();
            assert_eq!(
                addresses(&first),
                ["198.51.100.1", "203.0.113.1", "2001:db8:2::1"]
            );
            let isp1: IpAddr = "198.51.100.1".parse().unwrap();
            let isp2: IpAddr = "203.0.113.1".parse().unwrap();
            let v6: IpAddr = "2001:db8:2::1".parse().unwrap();
            assert_eq!(first.get(isp1).unwrap().interface, "isp1");
            assert_eq!(first.get(isp1).unwrap().default_route_tables, [254]);
            assert_eq!(first.get(isp2).unwrap().default_route_tables, [102]);
            assert!(!first.get(v6).unwrap().has_default_route());

            let mut uplinks = monitor.subscribe();
            let mut timings = Vec::new();
            let (_, took) = change(
                &mut uplinks,
                &core_name,
                &["addr", "del", "198.51.100.1/24", "dev", "isp1"],
                |u| u.get(isp1).is_none(),
            )
            .await;
            timings.push(("address removed", took));

            let (_, took) = change(
                &mut uplinks,
                &core_name,
                &["addr", "add", "198.51.100.1/24", "dev", "isp1"],
                |u| u.get(isp1).is_some(),
            )
            .await;
            timings.push(("address added", took));
            // Its default route went with the interface's last IPv4 address; put it back.
            let (_, took) = change(
                &mut uplinks,
                &core_name,
                &["route", "add", "default", "via", "198.51.100.254"],
                |u| u.get(isp1).is_some_and(|up| up.has_default_route()),
            )
            .await;
            timings.push(("default route added", took));

            // Administratively down: both of isp2's addresses go (the IPv6 one is deleted by
            // the kernel, the IPv4 one stays on a link that is down).
            let (snapshot, took) = change(
                &mut uplinks,
                &core_name,
                &["link", "set", "isp2", "down"],
                |u| u.get(isp2).is_none() && u.get(v6).is_none(),
            )
            .await;
            assert_eq!(addresses(&snapshot), ["198.51.100.1"]);
            timings.push(("link down", took));

            let (snapshot, took) = change(
                &mut uplinks,
                &core_name,
                &["link", "set", "isp2", "up"],
                |u| u.get(isp2).is_some(),
            )
            .await;
            timings.push(("link up (linkwatch)", took));
            // The kernel flushed the table-102 default route with the link, silently.
            assert!(!snapshot.get(isp2).unwrap().has_default_route());

            // Carrier loss: the far end goes down, our side stays administratively up.
            let (_, took) = change(
                &mut uplinks,
                &isp_name,
                &["link", "set", "c1", "down"],
                |u| u.get(isp1).is_none(),
            )
            .await;
            timings.push(("carrier lost (linkwatch)", took));
            let (snapshot, took) =
                change(&mut uplinks, &isp_name, &["link", "set", "c1", "up"], |u| {
                    u.get(isp1).is_some()
                })
                .await;
            timings.push(("carrier back (linkwatch)", took));
            // Carrier loss keeps the routes (marked linkdown), and so does the monitor.
            assert_eq!(snapshot.get(isp1).unwrap().default_route_tables, [254]);

            let (snapshot, took) = change(
                &mut uplinks,
                &core_name,
                &["route", "del", "default", "via", "198.51.100.254"],
                |u| u.get(isp1).is_some_and(|up| !up.has_default_route()),
            )
            .await;
            timings.push(("default route removed", took));
            assert!(snapshot.get(isp1).is_some());

            // An IPv6 address under duplicate address detection is not usable until DAD ends.
            ip(
                &core_name,
                &["addr", "add", "2001:db8:2::7/64", "dev", "isp2"],
            );
            let added: IpAddr = "2001:db8:2::7".parse().unwrap();
            assert!(
                monitor.current().get(added).is_none(),
                "a tentative address was reported usable"
            );
            tokio::time::timeout(
                Duration::from_secs(10),
                uplinks.wait_for(|u| u.get(added).is_some()),
            )
            .await
            .expect("the address was not reported after DAD")
            .unwrap();
            timings
        })
    });

    for (what, took) in &timings {
        eprintln!(
            "{what}: reported {:.1} ms after `ip` returned",
            took.as_secs_f64() * 1e3
        );
        let bound = if what.contains("linkwatch") {
            PROMPT_AFTER_LINKWATCH
        } else {
            PROMPT
        };
        assert!(*took < bound, "{what} took {took:?} to be reported");
    }
}
