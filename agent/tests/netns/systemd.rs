//! `meshd run` under systemd's readiness protocol (needs root): the test plays the service
//! manager by binding the `NOTIFY_SOCKET` datagram socket itself, and checks that `READY=1`
//! comes only once the interface, its addresses and the control socket are up, and
//! `STOPPING=1` when the daemon is told to stop.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use netns_tests::{ChildGuard, MeshdNode, MeshdSetup, Namespace, Signal, require_root};

const MESHD: &str = env!("CARGO_BIN_EXE_meshd");

/// The service manager's end of `NOTIFY_SOCKET`, in a directory deleted on drop.
struct FakeServiceManager {
    socket: UnixDatagram,
    path: std::path::PathBuf,
    _directory: tempfile::TempDir,
}

impl FakeServiceManager {
    fn bind() -> FakeServiceManager {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = directory.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("set a read timeout");
        FakeServiceManager {
            socket,
            path,
            _directory: directory,
        }
    }

    fn path(&self) -> &str {
        self.path.to_str().expect("temp paths are UTF-8")
    }

    /// The next notification, or `None` if none comes within 200 ms.
    fn receive(&self) -> Option<String> {
        let mut buffer = [0u8; 4096];
        match self.socket.recv(&mut buffer) {
            Ok(length) => Some(String::from_utf8_lossy(&buffer[..length]).into_owned()),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(error) => panic!("cannot read the notify socket: {error}"),
        }
    }

    /// Notifications until one has `wanted` in it (returned last) or `timeout` passes.
    fn receive_until(&self, wanted: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut received = Vec::new();
        while Instant::now() < deadline {
            if let Some(message) = self.receive() {
                let done = message.lines().any(|line| line == wanted);
                received.push(message);
                if done {
                    break;
                }
            }
        }
        received
    }
}

/// Node alpha (with `addresses`) initialised, and `meshd run` started in `namespace` under a
/// fake service manager: the manager and the running daemon.
fn start_under_service_manager(
    namespace: &Namespace,
    addresses: &[&str],
    prepare: impl FnOnce(&Namespace),
) -> (MeshdNode, FakeServiceManager, ChildGuard) {
    let node = MeshdNode::init(
        Path::new(MESHD),
        &MeshdSetup {
            name: "alpha",
            endpoint: "198.51.100.1:51820",
            addresses,
        },
    );
    prepare(namespace);
    let manager = FakeServiceManager::bind();
    let config = node.config_path().display().to_string();
    let state = node.state_dir().display().to_string();
    let args = ["--config", &config, "--state-dir", &state, "run"];
    let daemon = namespace.spawn(
        "meshd-alpha",
        MESHD,
        &args,
        &[("RUST_LOG", "info"), ("NOTIFY_SOCKET", manager.path())],
    );
    (node, manager, daemon)
}

#[test]
fn ready_comes_after_the_interface_and_control_socket_and_stopping_at_shutdown() {
    if !require_root("ready_comes_after_the_interface_and_control_socket_and_stopping_at_shutdown")
    {
        return;
    }
    let namespace = Namespace::new("sdnotify");
    let (node, manager, mut daemon) =
        start_under_service_manager(&namespace, &["10.1.0.1/16", "fd00:1::1/64"], |_| {});

    let before_ready = manager.receive_until("READY=1", Duration::from_secs(15));
    // Checked the moment READY=1 is read: a daemon that said it too early fails here.
    let ip = |args: &[&str]| {
        namespace
            .exec("ip", args)
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
            .unwrap_or_default()
    };
    let link = ip(&["-o", "link", "show", "mesh0", "up"]);
    let addresses = ip(&["-o", "addr", "show", "dev", "mesh0"]);
    let log_at_ready = daemon.log().contents();
    let status = Command::new(MESHD)
        .arg("--state-dir")
        .arg(node.state_dir())
        .args(["status", "--json"])
        .output()
        .expect("run meshd status");
    assert!(
        before_ready
            .last()
            .is_some_and(|m| m.lines().any(|l| l == "READY=1")),
        "no READY=1 within 15 s; got {before_ready:?}; log:\n{}",
        daemon.log().contents()
    );
    assert!(
        !link.is_empty(),
        "READY=1 came before mesh0 was up; log:\n{}",
        daemon.log().contents()
    );
    assert!(
        addresses.contains("10.1.0.1/16") && addresses.contains("fd00:1::1/64"),
        "READY=1 came before mesh0 had its addresses: {addresses}"
    );
    assert!(
        status.status.success() && String::from_utf8_lossy(&status.stdout).contains("\"alpha\""),
        "READY=1 came before the control socket answered: {}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        log_at_ready.contains("interface configured") && log_at_ready.contains("meshd running"),
        "READY=1 came before the daemon logged that it runs:\n{log_at_ready}"
    );
    let ready = before_ready.last().expect("checked above");
    assert!(
        ready.lines().any(|l| l.starts_with("STATUS=running")),
        "READY=1 without a STATUS line: {ready:?}"
    );

    let exit = daemon.stop_with(Signal::SIGTERM, Duration::from_secs(10));
    assert!(
        exit.is_some_and(|status| status.success()),
        "meshd did not stop cleanly on SIGTERM ({exit:?}); log:\n{}",
        daemon.log().contents()
    );
    let at_shutdown = manager.receive_until("STOPPING=1", Duration::from_secs(2));
    assert!(
        at_shutdown
            .iter()
            .any(|m| m.lines().any(|l| l == "STOPPING=1")),
        "no STOPPING=1 at shutdown; got {at_shutdown:?}"
    );
}

#[test]
fn a_failed_start_never_reports_ready() {
    if !require_root("a_failed_start_never_reports_ready") {
        return;
    }
    let namespace = Namespace::new("sdfail");
    // mesh0 already exists and is no TUN device: start-up fails after the configuration, keys
    // and control socket, when the TUN is created.
    let (_node, manager, mut daemon) =
        start_under_service_manager(&namespace, &["10.1.0.1/16"], |namespace| {
            namespace.ip(&[
                "link",
                "add",
                "mesh0",
                "type",
                "veth",
                "peer",
                "name",
                "mesh0-peer",
            ]);
        });
    let exited = netns_tests::wait_until(Duration::from_secs(10), || {
        daemon.try_exit_status().is_some()
    });
    assert!(exited, "meshd kept running with a bad interface name");
    assert!(
        !daemon.try_exit_status().expect("exited").success(),
        "meshd exited 0 although it could not start"
    );
    let log = daemon.log().contents();
    assert!(
        log.contains("cannot create the TUN device"),
        "meshd failed, but not where this test expects (creating the TUN):\n{log}"
    );
    let received = manager.receive_until("READY=1", Duration::from_millis(500));
    assert!(
        received.iter().all(|m| !m.lines().any(|l| l == "READY=1")),
        "READY=1 sent by a daemon that failed to start: {received:?}"
    );
}
