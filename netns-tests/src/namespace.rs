//! Network namespaces that clean up after themselves, and veth links between them.

use std::net::IpAddr;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::command::{CommandError, run_checked};
use crate::process::ChildGuard;
use crate::wait::wait_until;

/// Where `ip netns` keeps its named namespaces.
const NETNS_DIR: &str = "/run/netns";
/// Every namespace this harness creates starts with this, then the creating process's pid.
const NAME_PREFIX: &str = "mt-";

static NEXT_NAMESPACE: AtomicU32 = AtomicU32::new(0);

/// A named network namespace (`ip netns add`), deleted on drop together with every process
/// still running inside it. Its loopback interface is up.
#[derive(Debug)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// Creates a namespace whose name contains `label` (for people reading `ip netns list`).
    /// Panics with the reason if it cannot: a test cannot go on without it.
    pub fn new(label: &str) -> Namespace {
        sweep_stale_namespaces();
        let number = NEXT_NAMESPACE.fetch_add(1, Ordering::Relaxed);
        let label: String = label
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(12)
            .collect();
        let name = format!("{NAME_PREFIX}{}-{number}-{label}", std::process::id());
        if let Err(error) = run_checked("ip", &["netns", "add", &name]) {
            panic!("cannot create network namespace {name}: {error}");
        }
        let namespace = Namespace { name };
        namespace.ip(&["link", "set", "lo", "up"]);
        namespace
    }

    /// The namespace's name, as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `program args...` inside the namespace to completion.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output, CommandError> {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        run_checked("ip", &full)
    }

    /// Runs `program args...` inside the namespace and returns its standard output; panics with
    /// the command and its output if it fails.
    pub fn exec_ok(&self, program: &str, args: &[&str]) -> String {
        match self.exec(program, args) {
            Ok(output) => String::from_utf8_lossy(&output.stdout).into_owned(),
            Err(error) => panic!("in namespace {}: {error}", self.name),
        }
    }

    /// Runs `ip -n <namespace> args...` and returns its standard output; panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend_from_slice(args);
        match run_checked("ip", &full) {
            Ok(output) => String::from_utf8_lossy(&output.stdout).into_owned(),
            Err(error) => panic!("in namespace {}: {error}", self.name),
        }
    }

    /// Writes `value` to `/proc/sys/<key>` inside the namespace (e.g. `net/ipv4/ip_forward`),
    /// without needing the `sysctl` program; panics on failure.
    pub fn set_sysctl(&self, key: &str, value: &str) {
        assert!(
            !key.contains("..") && key.starts_with("net/"),
            "only network sysctls of the namespace: {key}"
        );
        let script = format!("echo {value} > /proc/sys/{key}");
        self.exec_ok("sh", &["-c", &script]);
        let read_back = self.exec_ok("cat", &[&format!("/proc/sys/{key}")]);
        assert_eq!(read_back.trim(), value, "sysctl {key} did not take {value}");
    }

    /// Starts `program args...` inside the namespace with `env` added to its environment,
    /// standard output and error going to a log file. The process is killed when the guard
    /// drops (and, as a backstop, when the namespace drops).
    pub fn spawn(
        &self,
        label: &str,
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> ChildGuard {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        ChildGuard::spawn(&format!("{}-{label}", self.name), "ip", &full, env)
    }

    /// Sends one ICMP echo per second to `destination` until one is answered or `timeout`
    /// passes. Returns whether one was answered.
    pub fn ping_until(&self, destination: IpAddr, timeout: Duration) -> bool {
        let destination = destination.to_string();
        wait_until(timeout, || {
            self.exec("ping", &["-n", "-q", "-c", "1", "-W", "1", &destination])
                .is_ok()
        })
    }

    /// Sends `count` pings 0.2 s apart to `destination` and returns whether all were answered.
    /// (With `-c` alone ping succeeds on any reply; with a deadline `-w` as well it fails
    /// unless all `count` replies came by then.)
    pub fn ping_all(&self, destination: IpAddr, count: u32) -> bool {
        let deadline = (count / 5 + 3).to_string();
        let count = count.to_string();
        let destination = destination.to_string();
        self.exec(
            "ping",
            &[
                "-n",
                "-q",
                "-c",
                &count,
                "-i",
                "0.2",
                "-W",
                "2",
                "-w",
                &deadline,
                &destination,
            ],
        )
        .is_ok()
    }

    /// Runs `f` on a new thread that has entered this namespace (`setns`), and returns its
    /// result. Sockets that `f` opens (netlink, UDP) live in the namespace. Panics in `f` are
    /// propagated.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = Path::new(NETNS_DIR).join(&self.name);
        let name = self.name.clone();
        let thread = std::thread::spawn(move || {
            let file = std::fs::File::open(&path)
                .unwrap_or_else(|error| panic!("cannot open {}: {error}", path.display()));
            // setns on a thread moves only this thread; it ends when f returns, so nothing
            // else in the test process ever runs in the namespace.
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|error| panic!("cannot enter namespace {name}: {error}"));
            f()
        });
        match thread.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        delete_namespace(&self.name);
    }
}

/// Kills every process in namespace `name` and deletes it. Best effort: it runs in `Drop`.
fn delete_namespace(name: &str) {
    if let Ok(output) = run_checked("ip", &["netns", "pids", name]) {
        for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    if let Err(error) = run_checked("ip", &["netns", "delete", name]) {
        eprintln!("warning: could not delete network namespace {name}: {error}");
    }
}

/// Deletes namespaces that an earlier test process created and did not delete because it was
/// killed (a Drop that never ran). Recognised by the name prefix and a pid that no longer runs.
fn sweep_stale_namespaces() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(NAME_PREFIX) else {
            continue;
        };
        let Some(pid) = rest
            .split('-')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            delete_namespace(&name);
        }
    }
}

/// The two ends of a veth pair joining two namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethLink {
    /// Interface name in the first namespace.
    pub a_interface: String,
    /// Interface name in the second namespace.
    pub b_interface: String,
}

/// Two new namespaces `LABELa` and `LABELb` joined by one underlay link, `ul0` on both sides:
/// `198.51.100.1/24` and `2001:db8:100::1/64` in the first, `.2` and `::2` in the second. The
/// setup most two-node tests start from.
pub fn underlay_pair(label: &str) -> (Namespace, Namespace) {
    let a = Namespace::new(&format!("{label}a"));
    let b = Namespace::new(&format!("{label}b"));
    connect_veth(
        &a,
        "ul0",
        &["198.51.100.1/24", "2001:db8:100::1/64"],
        &b,
        "ul0",
        &["198.51.100.2/24", "2001:db8:100::2/64"],
    );
    (a, b)
}

/// Three new namespaces `LABELh` (the hub), `LABELl` and `LABELr` with the hub in the middle:
/// the hub's `ul1` (`198.51.100.1/24`) goes to `ul0` of the left one (`198.51.100.2/24`), its
/// `ul2` (`203.0.113.1/24`) to `ul0` of the right one (`203.0.113.2/24`). Returned as
/// (hub, left, right).
pub fn underlay_hub(label: &str) -> (Namespace, Namespace, Namespace) {
    let hub = Namespace::new(&format!("{label}h"));
    let left = Namespace::new(&format!("{label}l"));
    let right = Namespace::new(&format!("{label}r"));
    connect_veth(
        &hub,
        "ul1",
        &["198.51.100.1/24"],
        &left,
        "ul0",
        &["198.51.100.2/24"],
    );
    connect_veth(
        &hub,
        "ul2",
        &["203.0.113.1/24"],
        &right,
        "ul0",
        &["203.0.113.2/24"],
    );
    (hub, left, right)
}

/// Joins namespaces `a` and `b` with a veth pair created directly between them (the root
/// namespace never sees it), named `a_interface` in `a` and `b_interface` in `b`, puts the given
/// addresses (CIDR strings from the documentation ranges, e.g. `198.51.100.1/24`,
/// `2001:db8:1::1/64`) on each end and brings both up. IPv6 addresses skip duplicate address
/// detection so that they are usable at once. Panics on failure.
pub fn connect_veth(
    a: &Namespace,
    a_interface: &str,
    a_addresses: &[&str],
    b: &Namespace,
    b_interface: &str,
    b_addresses: &[&str],
) -> VethLink {
    a.ip(&[
        "link",
        "add",
        a_interface,
        "type",
        "veth",
        "peer",
        "name",
        b_interface,
        "netns",
        b.name(),
    ]);
    for (namespace, interface, addresses) in
        [(a, a_interface, a_addresses), (b, b_interface, b_addresses)]
    {
        for address in addresses {
            let mut args = vec!["addr", "add", address, "dev", interface];
            if address.contains(':') {
                args.push("nodad");
            }
            namespace.ip(&args);
        }
        namespace.ip(&["link", "set", interface, "up"]);
    }
    VethLink {
        a_interface: a_interface.to_owned(),
        b_interface: b_interface.to_owned(),
    }
}
