//! A meshd node for tests: its own config and state directory, `meshd init`, `meshd pubkey`,
//! `[[peer]]` entries, and `meshd run` inside a namespace.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::namespace::Namespace;
use crate::process::ChildGuard;
use crate::scrape::{Exposition, http_request, parse_exposition};
use crate::wait::wait_until;

static NEXT_NODE: AtomicU32 = AtomicU32::new(0);

/// What a node is set up with.
#[derive(Debug, Clone)]
pub struct MeshdSetup<'a> {
    /// Node name (a DNS label).
    pub name: &'a str,
    /// `HOST:PORT` other nodes reach it at (documentation-range underlay address).
    pub endpoint: &'a str,
    /// Overlay addresses with prefix length, written to `[interface] addresses`.
    pub addresses: &'a [&'a str],
}

/// One `[[peer]]` entry.
#[derive(Debug, Clone)]
pub struct MeshdPeer<'a> {
    pub name: &'a str,
    /// Base64 WireGuard public key.
    pub public_key: &'a str,
    /// `HOST:PORT` endpoints; may be empty (the peer calls us).
    pub endpoints: &'a [&'a str],
    pub allowed_prefixes: &'a [&'a str],
    pub persistent_keepalive: Option<u16>,
}

/// A node's files (deleted on drop) and, while it runs, its `meshd run` process.
#[derive(Debug)]
pub struct MeshdNode {
    binary: PathBuf,
    directory: PathBuf,
    /// The WireGuard public key (`meshd pubkey`).
    pub public_key: String,
    process: Option<ChildGuard>,
    name: String,
}

impl MeshdNode {
    /// [`Self::init`] for a node set up by hand: `name`, its endpoint and overlay addresses.
    pub fn with_addresses(
        binary: &Path,
        name: &str,
        endpoint: &str,
        addresses: &[&str],
    ) -> MeshdNode {
        MeshdNode::init(
            binary,
            &MeshdSetup {
                name,
                endpoint,
                addresses,
            },
        )
    }

    /// Writes the config and runs `meshd init` and `meshd pubkey` with `binary`. Panics with
    /// meshd's output if either fails.
    pub fn init(binary: &Path, setup: &MeshdSetup<'_>) -> MeshdNode {
        let directory = std::env::temp_dir().join(format!(
            "meshd-netns-{}-{}-{}",
            std::process::id(),
            NEXT_NODE.fetch_add(1, Ordering::Relaxed),
            setup.name
        ));
        std::fs::create_dir_all(&directory)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", directory.display()));
        let addresses = quoted_list(setup.addresses);
        let config = format!(
            "[node]\nname = \"{name}\"\nrole = \"core\"\nlisten_port = {port}\nendpoints = [\"{endpoint}\"]\n\n\
             [interface]\nname = \"mesh0\"\naddresses = {addresses}\n\n\
             [mesh]\npool6 = \"fd00:99::/48\"\n",
            name = setup.name,
            port = setup
                .endpoint
                .rsplit(':')
                .next()
                .expect("endpoint has a port"),
            endpoint = setup.endpoint,
        );
        std::fs::write(directory.join("meshd.toml"), config).expect("write meshd.toml");
        let mut node = MeshdNode {
            binary: binary.to_path_buf(),
            directory,
            public_key: String::new(),
            process: None,
            name: setup.name.to_owned(),
        };
        node.command(&["init", "--name", setup.name, "--endpoint", setup.endpoint]);
        node.public_key = node.command(&["pubkey"]).trim().to_owned();
        node
    }

    /// The node's config file.
    pub fn config_path(&self) -> PathBuf {
        self.directory.join("meshd.toml")
    }

    /// The node's state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.directory.join("state")
    }

    /// Runs `meshd --config .. --state-dir .. args...` (outside any namespace: for commands that
    /// only touch files) and returns its standard output; panics if it fails.
    pub fn command(&self, args: &[&str]) -> String {
        let output = Command::new(&self.binary)
            .arg("--config")
            .arg(self.config_path())
            .arg("--state-dir")
            .arg(self.state_dir())
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("cannot run {}: {error}", self.binary.display()));
        assert!(
            output.status.success(),
            "meshd {args:?} for node {} failed ({}):\n{}{}",
            self.name,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Appends a `[[peer]]` entry to the config (takes effect at the next start).
    pub fn add_peer(&self, peer: &MeshdPeer<'_>) {
        let mut entry = format!(
            "\n[[peer]]\nname = \"{}\"\npublic_key = \"{}\"\nendpoints = {}\nallowed_prefixes = {}\n",
            peer.name,
            peer.public_key,
            quoted_list(peer.endpoints),
            quoted_list(peer.allowed_prefixes)
        );
        if let Some(seconds) = peer.persistent_keepalive {
            let _ = writeln!(entry, "persistent_keepalive = {seconds}");
        }
        let path = self.config_path();
        let mut config = std::fs::read_to_string(&path).expect("read meshd.toml");
        config.push_str(&entry);
        std::fs::write(&path, config).expect("write meshd.toml");
    }

    /// Appends a `[[peer]]` entry for `other` (its name and key) to this node's config.
    pub fn add_peer_node(
        &self,
        other: &MeshdNode,
        endpoints: &[&str],
        allowed_prefixes: &[&str],
        persistent_keepalive: Option<u16>,
    ) {
        self.add_peer(&MeshdPeer {
            name: &other.name,
            public_key: &other.public_key,
            endpoints,
            allowed_prefixes,
            persistent_keepalive,
        });
    }

    /// Starts `meshd run` in `namespace` and waits (up to 10 s) until it reports that it runs
    /// and its TUN `mesh0` is up with addresses.
    /// Panics with the daemon's log if it does not come up.
    pub fn start(&mut self, namespace: &Namespace) {
        assert!(
            self.process.is_none(),
            "node {} is already running",
            self.name
        );
        let config = self.config_path();
        let state = self.state_dir();
        let mut process = namespace.spawn(
            &format!("meshd-{}", self.name),
            self.binary.to_str().expect("binary path is UTF-8"),
            &[
                "--config",
                config.to_str().expect("temp paths are UTF-8"),
                "--state-dir",
                state.to_str().expect("temp paths are UTF-8"),
                "run",
            ],
            &[("RUST_LOG", "info")],
        );
        // "meshd running" is logged once the interface, its routes and the data plane are all
        // set up; the interface checks make sure it is this namespace's mesh0 that is up.
        let up = wait_until(Duration::from_secs(10), || {
            process.try_exit_status().is_none()
                && process.log().contents().contains("meshd running")
                && namespace
                    .exec("ip", &["-o", "link", "show", "mesh0", "up"])
                    .is_ok_and(|o| !o.stdout.is_empty())
                && namespace
                    .exec("ip", &["-o", "addr", "show", "dev", "mesh0"])
                    .is_ok_and(|o| !o.stdout.is_empty())
        });
        assert!(
            up,
            "meshd {} did not bring mesh0 up within 10 s (exit: {:?}); its log:\n{}",
            self.name,
            process.try_exit_status(),
            process.log().contents()
        );
        self.process = Some(process);
    }

    /// Stops `meshd run` with SIGTERM and returns its exit status (`None`: it had to be
    /// killed after 10 s).
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut process = self.process.take()?;
        process.stop_with(Signal::SIGTERM, Duration::from_secs(10))
    }

    /// Kills `meshd run` with SIGKILL, as a crash or `kill -9` would: nothing is sent on the
    /// way out. Returns its exit status (`None`: it was not running or did not die in 10 s).
    pub fn kill(&mut self) -> Option<ExitStatus> {
        let mut process = self.process.take()?;
        process.stop_with(Signal::SIGKILL, Duration::from_secs(10))
    }

    /// Asks the running daemon to reload its config (SIGHUP) and waits (up to 10 s) until it
    /// logs the outcome; returns the log from that line on.
    pub fn reload(&mut self) -> String {
        let process = self.process.as_mut().expect("the node runs");
        let outcomes = |log: &str| {
            log.lines()
                .filter(|l| l.contains("configuration reloaded") || l.contains("reload refused"))
                .count()
        };
        let before = outcomes(&process.log().contents());
        process.signal(Signal::SIGHUP);
        let done = wait_until(Duration::from_secs(10), || {
            outcomes(&process.log().contents()) > before
        });
        let log = process.log().contents();
        assert!(
            done,
            "meshd {} did not report a reload within 10 s:\n{log}",
            self.name
        );
        let outcome = log
            .lines()
            .filter(|l| l.contains("configuration reloaded") || l.contains("reload refused"))
            .nth(before)
            .unwrap_or_default();
        // An error's diagnostics follow its line.
        let start = log.find(outcome).unwrap_or(0);
        log[start..].to_owned()
    }

    /// Scrapes the running daemon's metrics (default address, 127.0.0.1:9474 in `namespace`)
    /// and parses them; panics with the text if it does not parse.
    pub fn metrics(&self, namespace: &Namespace) -> Exposition {
        let scrape =
            || namespace.run_in(|| http_request(([127, 0, 0, 1], 9474).into(), "GET", "/metrics"));
        // The listener starts right after "meshd running": allow it a moment.
        wait_until(Duration::from_secs(5), || scrape().is_ok());
        let response = scrape().unwrap_or_else(|error| {
            panic!("cannot scrape meshd {}: {error}\n{}", self.name, self.log())
        });
        assert_eq!(response.status, 200, "{}", response.body);
        parse_exposition(&response.body)
            .unwrap_or_else(|error| panic!("{error}\n{}", response.body))
    }

    /// What the running daemon has logged so far.
    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(|p| p.log().contents())
            .unwrap_or_default()
    }
}

impl Drop for MeshdNode {
    fn drop(&mut self) {
        drop(self.process.take());
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// `["a", "b"]` in TOML.
fn quoted_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("\"{item}\"")).collect();
    format!("[{}]", quoted.join(", "))
}
