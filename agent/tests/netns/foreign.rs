//! Foreign routers in network namespaces (needs root): a router that runs no meshd joins as
//! a spoke of core alpha, configured only from `meshd export` output.
//!
//! Two cores alpha (the CA) and beta on a documentation-range underlay; a router namespace
//! on the same underlay with a LAN namespace behind it (192.168.77.0/24). On alpha:
//! `meshd invite mikro --role spoke --core alpha --foreign --route 192.168.77.0/24`, then
//! `meshd router add TOKEN --wg-key KEY` (the key from `wg genkey` on the router) and
//! `meshd export wg-quick|bird|frr mikro`. The router runs those files unchanged:
//! `wg-quick up` with wireguard-go, and BIRD 2 (or FRR as user frr). Then:
//! - alpha's `meshd peers` shows the router (role router, up, BGP established);
//! - the LAN host and beta reach each other through alpha, both ways;
//! - a prefix outside the router's certificate that it announces (its owner edits the BIRD
//!   file) is refused by alpha and never reaches beta;
//! - `meshd revoke mikro` cuts it off: no tunnel, no session, the LAN unreachable.

#[path = "member_node.rs"]
mod member_node;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use member_node::{Node, attach, invite, two_cores, underlay};
use meshd::api::report::PeersReport;
use netns_tests::{
    Bird, ChildGuard, Namespace, connect_veth, require_root, run_checked, wait_until,
};

/// Bound for the tunnel and BGP to come up (BIRD retries its connection every 5 s).
const UP_TIMEOUT: Duration = Duration::from_secs(40);
/// Bound for a route change or a revocation to show.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(10);

const ROUTER: &str = "mikro";

/// One router at a time: wireguard-go's control socket is `/run/wireguard/wg-meshd.sock`
/// whatever the namespace, so the two tests of this file cannot both have the tunnel up.
static ONE_ROUTER: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_router() -> std::sync::MutexGuard<'static, ()> {
    // A test that panicked while holding it has cleaned up by the time the lock is free.
    ONE_ROUTER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
const LAN_HOST: &str = "192.168.77.2";
const ROGUE: &str = "203.0.113.128/25";

/// `/etc/netns/NS/wireguard/`: what `ip netns exec NS` shows as `/etc/wireguard`, so the key
/// file the wg-quick export names exists only for the router's namespace. Removed on drop.
struct RouterEtc {
    directory: PathBuf,
}

impl RouterEtc {
    fn with_key(namespace: &str, name: &str, private_key: &str) -> RouterEtc {
        // The bind mount needs the mount point; wireguard-tools creates it, but say so.
        assert!(
            Path::new("/etc/wireguard").is_dir(),
            "/etc/wireguard is missing (install wireguard-tools)"
        );
        let directory = PathBuf::from("/etc/netns").join(namespace);
        let guard = RouterEtc {
            directory: directory.clone(),
        };
        let wireguard = directory.join("wireguard");
        std::fs::create_dir_all(&wireguard).unwrap();
        std::fs::write(
            wireguard.join(format!("{name}.key")),
            format!("{private_key}\n"),
        )
        .unwrap();
        guard
    }
}

impl Drop for RouterEtc {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// The router's tunnel: `wg-quick up` with wireguard-go; `wg-quick down` on drop (which ends
/// wireguard-go).
struct WgQuick {
    namespace: String,
    file: PathBuf,
}

impl WgQuick {
    fn up(namespace: &Namespace, file: &Path) -> WgQuick {
        let tunnel = WgQuick {
            namespace: namespace.name().to_owned(),
            file: file.to_owned(),
        };
        let out = run_checked(
            "ip",
            &[
                "netns",
                "exec",
                namespace.name(),
                "env",
                "WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go",
                "WG_SUDO=1",
                "wg-quick",
                "up",
                &file.display().to_string(),
            ],
        );
        if let Err(error) = out {
            panic!("wg-quick up {}: {error}", file.display());
        }
        tunnel
    }
}

impl Drop for WgQuick {
    fn drop(&mut self) {
        let _ = run_checked(
            "ip",
            &[
                "netns",
                "exec",
                &self.namespace,
                "wg-quick",
                "down",
                &self.file.display().to_string(),
            ],
        );
    }
}

/// The router and the LAN behind it: namespaces, the router's WireGuard key.
struct Site {
    router: Namespace,
    lan: Namespace,
    private_key: String,
    public_key: String,
    dir: tempfile::TempDir,
}

fn site(isp: &Namespace, label: &str) -> Site {
    let router = Namespace::new(&format!("{label}-router"));
    attach(&router, isp, &["198.51.100.3/24"], "n3");
    let lan = Namespace::new(&format!("{label}-lan"));
    connect_veth(
        &lan,
        "eth0",
        &[&format!("{LAN_HOST}/24")],
        &router,
        "lan0",
        &["192.168.77.1/24"],
    );
    lan.ip(&["route", "add", "default", "via", "192.168.77.1"]);
    router.set_sysctl("net/ipv4/ip_forward", "1");
    router.set_sysctl("net/ipv6/conf/all/forwarding", "1");
    let private_key = netns_tests::wg_genkey();
    let public_key = netns_tests::wg_pubkey(&private_key);
    Site {
        router,
        lan,
        private_key,
        public_key,
        dir: tempfile::tempdir().unwrap(),
    }
}

/// alpha's report on the router, once it lists it.
fn router_report(alpha: &Node) -> Option<meshd::api::report::PeerReport> {
    let json = alpha.meshd(&["peers", "--json"]);
    let report: PeersReport = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    report.peers.into_iter().find(|p| p.name == ROUTER)
}

fn lan_pings(site: &Site, destination: IpAddr) -> bool {
    site.lan
        .exec(
            "ping",
            &["-n", "-q", "-c", "1", "-W", "1", &destination.to_string()],
        )
        .is_ok()
}

/// How alpha admits the router.
#[derive(Clone, Copy)]
enum Admission {
    /// `meshd invite ... --foreign`, then `meshd router add TOKEN`.
    Token,
    /// `meshd router add --name` (alpha holds the CA).
    OneStep,
}

/// Admits the router on alpha and writes the wg-quick file and `format`'s BGP file into the
/// site's directory; brings the tunnel up. Returns the tunnel, its key-file guard and the BGP
/// file's text.
fn admit_and_configure(
    alpha: &Node,
    site: &Site,
    format: &str,
    admission: Admission,
) -> (WgQuick, RouterEtc, String) {
    let out = match admission {
        Admission::Token => {
            let token = invite(
                alpha,
                &[
                    ROUTER,
                    "--role",
                    "spoke",
                    "--core",
                    "alpha",
                    "--foreign",
                    "--route",
                    "192.168.77.0/24",
                ],
            );
            alpha.meshd(&["router", "add", &token, "--wg-key", &site.public_key])
        }
        Admission::OneStep => alpha.meshd(&[
            "router",
            "add",
            "--name",
            ROUTER,
            "--route",
            "192.168.77.0/24",
            "--wg-key",
            &site.public_key,
        ]),
    };
    assert!(out.contains("Router mikro admitted behind alpha"), "{out}");
    assert!(!out.contains("Private key"), "{out}");

    let wg_quick = alpha.meshd(&["export", "wg-quick", ROUTER]);
    assert!(
        !wg_quick.contains(&site.private_key),
        "the export holds no private key"
    );
    let etc = RouterEtc::with_key(site.router.name(), ROUTER, &site.private_key);
    // wg-quick names the interface after the file.
    let file = site.dir.path().join("wg-meshd.conf");
    std::fs::write(&file, &wg_quick).unwrap();
    // wg-quick warns about a world-readable file, as it would on a router.
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let tunnel = WgQuick::up(&site.router, &file);
    let bgp = alpha.meshd(&["export", format, ROUTER]);
    (tunnel, etc, bgp)
}

/// What every variant checks once the router's BGP speaker runs: the router shows on alpha,
/// the LAN and beta reach each other.
fn check_router_is_a_spoke(alpha: &Node, beta: &Node, site: &Site) {
    let up = wait_until(UP_TIMEOUT, || {
        router_report(alpha).is_some_and(|p| {
            p.role.as_deref() == Some("router")
                && p.bgp
                    .as_ref()
                    .is_some_and(|b| b.state == "established" && b.accepted >= 1)
        })
    });
    let report = router_report(alpha);
    assert!(
        up,
        "alpha's view of the router: {report:#?}\n{}",
        alpha.log()
    );
    let report = report.unwrap();
    assert_eq!(report.state.to_string(), "up", "{report:#?}");
    assert!(report.last_handshake_seconds_ago.is_some(), "{report:#?}");
    let human = alpha.meshd(&["peers"]);
    assert!(human.contains("peer: mikro (router), up"), "{human}");
    assert!(human.contains("bgp: established"), "{human}");

    let [beta_v4, _] = beta.overlay();
    let lan_host: IpAddr = LAN_HOST.parse().unwrap();
    assert!(
        wait_until(CHANGE_TIMEOUT, || lan_pings(site, beta_v4)),
        "the LAN host cannot reach beta at {beta_v4}"
    );
    assert!(beta.pings(lan_host), "beta cannot reach the LAN host");
    assert!(
        site.lan.ping_all(beta_v4, 5),
        "pings from the LAN host to beta were lost"
    );
    let route = beta.best_bgp_route("192.168.77.0/24");
    assert!(
        route.is_some_and(|r| r.kernel),
        "beta's route to the LAN: {:?}",
        beta.routes().bgp_routes
    );
}

/// `meshd revoke mikro` on alpha: tunnel, session and routes go.
fn check_revocation_cuts_it_off(alpha: &Node, beta: &Node, site: &Site) {
    let out = alpha.meshd(&["revoke", ROUTER]);
    assert!(out.contains("Revoked mikro"), "{out}");
    let gone = wait_until(CHANGE_TIMEOUT, || {
        router_report(alpha).is_none()
            && !alpha.established().contains(&ROUTER.to_owned())
            && beta.best_bgp_route("192.168.77.0/24").is_none()
    });
    assert!(
        gone,
        "after the revocation: alpha {:?}, sessions {:?}, beta's LAN route {:?}",
        router_report(alpha),
        alpha.established(),
        beta.best_bgp_route("192.168.77.0/24")
    );
    let [beta_v4, _] = beta.overlay();
    assert!(!lan_pings(site, beta_v4), "the LAN still reaches beta");
    let files = alpha.state().join("routers").join(ROUTER);
    assert!(
        wait_until(CHANGE_TIMEOUT, || !files.exists()),
        "alpha kept the revoked router's files in {}",
        files.display()
    );
}

#[test]
fn a_foreign_router_with_wg_quick_and_bird_joins_from_the_exported_files() {
    if !require_root("a_foreign_router_with_wg_quick_and_bird_joins_from_the_exported_files") {
        return;
    }
    let _one = one_router();
    let isp = underlay("fb-isp");
    let (alpha, beta) = two_cores(&isp, "fb");
    let site = site(&isp, "fb");
    let (_tunnel, _etc, bird_conf) = admit_and_configure(&alpha, &site, "bird", Admission::Token);
    let bird = Bird::start(&site.router, site.dir.path(), &bird_conf);
    check_router_is_a_spoke(&alpha, &beta, &site);

    // The owner edits the file to announce what the certificate does not allow.
    let rogue =
        bird_conf.replacen(
            "define MESHD_ANNOUNCE4 = [ ",
            &format!("define MESHD_ANNOUNCE4 = [ {ROGUE}, "),
            1,
        ) + &format!("\nprotocol static rogue4 {{\n    ipv4;\n    route {ROGUE} blackhole;\n}}\n");
    assert_ne!(
        rogue, bird_conf,
        "the export's announce list moved: update this test"
    );
    std::fs::write(&bird.config, rogue).unwrap();
    bird.birdc(&site.router, &["configure"]);
    let refused = wait_until(CHANGE_TIMEOUT, || {
        router_report(&alpha)
            .and_then(|p| p.bgp)
            .is_some_and(|b| b.refused >= 1)
    });
    assert!(
        refused,
        "alpha did not refuse {ROGUE}: {:?}",
        router_report(&alpha)
    );
    assert!(alpha.best_bgp_route(ROGUE).is_none(), "alpha took {ROGUE}");
    assert!(beta.best_bgp_route(ROGUE).is_none(), "beta got {ROGUE}");
    assert!(
        alpha.log().contains(ROGUE),
        "alpha's log does not name the refused prefix:\n{}",
        alpha.log()
    );

    check_revocation_cuts_it_off(&alpha, &beta, &site);
}

/// FRR's daemons in the router's namespace, as user frr in a directory it owns.
struct Frr {
    daemons: Vec<ChildGuard>,
}

fn start_frr(site: &Site, frr_conf: &str) -> Frr {
    let dir = site.dir.path().join("frr");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("frr.conf");
    std::fs::write(&conf, frr_conf).unwrap();
    // Each daemon starts empty; vtysh then applies the integrated file, as `frr-reload` does.
    let empty = dir.join("empty.conf");
    std::fs::write(&empty, "").unwrap();
    // The temporary directory is root's 0700: let frr through to its own directory.
    run_checked("chmod", &["0755", &site.dir.path().display().to_string()]).unwrap();
    run_checked("chown", &["-R", "frr:frr", &dir.display().to_string()]).unwrap();
    let dir_arg = dir.display().to_string();
    let empty_arg = empty.display().to_string();
    let zserv = format!("{dir_arg}/zserv.api");
    let mut daemons = Vec::new();
    for daemon in ["zebra", "staticd", "bgpd"] {
        let program = format!("/usr/lib/frr/{daemon}");
        let pid = format!("{dir_arg}/{daemon}.pid");
        let args = [
            "-u",
            "frr",
            "-g",
            "frr",
            "--vty_socket",
            &dir_arg,
            "-i",
            &pid,
            "-f",
            &empty_arg,
            "-z",
            &zserv,
            "-P",
            "0",
            "--log",
            "stdout",
        ];
        daemons.push(site.router.spawn(daemon, &program, &args, &[]));
        let vty = PathBuf::from(format!("{dir_arg}/{daemon}.vty"));
        assert!(
            wait_until(Duration::from_secs(10), || vty.exists()),
            "{daemon} did not start:\n{}",
            daemons.last().unwrap().log().contents()
        );
    }
    let applied = site.router.exec(
        "vtysh",
        &["--vty_socket", &dir_arg, "-f", &conf.display().to_string()],
    );
    if let Err(error) = applied {
        panic!("vtysh -f frr.conf: {error}");
    }
    Frr { daemons }
}

#[test]
fn a_foreign_router_with_wg_quick_and_frr_joins_from_the_exported_files() {
    if !require_root("a_foreign_router_with_wg_quick_and_frr_joins_from_the_exported_files") {
        return;
    }
    let _one = one_router();
    let isp = underlay("ff-isp");
    let (alpha, beta) = two_cores(&isp, "ff");
    let site = site(&isp, "ff");
    let (_tunnel, _etc, frr_conf) = admit_and_configure(&alpha, &site, "frr", Admission::Token);
    let frr = start_frr(&site, &frr_conf);
    let logs = || {
        frr.daemons
            .iter()
            .map(|d| d.log().contents())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let up = wait_until(UP_TIMEOUT, || {
        router_report(&alpha)
            .and_then(|p| p.bgp)
            .is_some_and(|b| b.state == "established")
    });
    assert!(
        up,
        "FRR's session did not come up:\n{}\n{}",
        logs(),
        alpha.log()
    );
    check_router_is_a_spoke(&alpha, &beta, &site);
    check_revocation_cuts_it_off(&alpha, &beta, &site);
}

/// `[routers.mikro] send = "default"` on alpha (set by a reload before the router is added,
/// in one step with `meshd router add --name`):
/// the router gets only the default routes, runs wg-quick's full tunnel (`Table = auto`) and
/// BIRD from the exports unchanged, and its LAN still reaches the mesh, now through the
/// default; BIRD holds the core's default but keeps it out of the kernel's main table, where
/// it would pull the tunnel's own packets in.
#[test]
fn a_foreign_router_sent_only_the_default_routes_is_a_full_tunnel() {
    if !require_root("a_foreign_router_sent_only_the_default_routes_is_a_full_tunnel") {
        return;
    }
    let _one = one_router();
    let isp = underlay("fd-isp");
    let (alpha, beta) = two_cores(&isp, "fd");
    let mut config = std::fs::read_to_string(alpha.config()).unwrap();
    config.push_str("\n[routers.mikro]\nsend = \"default\"\n");
    std::fs::write(alpha.config(), config).unwrap();
    let pid = alpha.daemon.as_ref().expect("alpha runs").pid();
    run_checked("kill", &["-HUP", &pid.to_string()]).expect("kill -HUP meshd");
    assert!(
        wait_until(CHANGE_TIMEOUT, || alpha
            .log()
            .contains("configuration reloaded: routers: [mikro send=default]")),
        "alpha did not apply [routers.mikro]:\n{}",
        alpha.log()
    );

    let site = site(&isp, "fd");
    let (_tunnel, _etc, bird_conf) = admit_and_configure(&alpha, &site, "bird", Admission::OneStep);
    assert!(bird_conf.contains("export none;"), "{bird_conf}");
    let bird = Bird::start(&site.router, site.dir.path(), &bird_conf);
    check_router_is_a_spoke(&alpha, &beta, &site);

    // Only the two default routes went to the router, and BIRD took them.
    let sent = router_report(&alpha)
        .and_then(|p| p.bgp)
        .map(|b| b.advertised);
    assert_eq!(
        sent,
        Some(2),
        "alpha sent the router {sent:?} routes, not 0/0 and ::/0"
    );
    let routes = bird.birdc(&site.router, &["show", "route", "protocol", "meshd_core"]);
    assert!(
        routes.contains("0.0.0.0/0") && routes.contains("::/0"),
        "BIRD's routes from the core:\n{routes}"
    );
    // The default stays in BIRD; wg-quick's own table carries the traffic.
    let main = site
        .router
        .exec_ok("ip", &["route", "show", "table", "main"]);
    assert!(
        !main.contains("default"),
        "a default in the main table:\n{main}"
    );
    let full_tunnel = site
        .router
        .exec_ok("ip", &["route", "show", "table", "all"]);
    assert!(
        full_tunnel.contains("default dev wg-meshd table"),
        "wg-quick's full-tunnel route is missing:\n{full_tunnel}"
    );

    check_revocation_cuts_it_off(&alpha, &beta, &site);
}
