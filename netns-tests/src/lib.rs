//! Root tests in network namespaces: real TUN devices, kernel routes and real peers.
//!
//! This crate is the harness; the tests that drive meshd live next to its binary
//! (`agent/tests/netns/*.rs`, test targets `netns_*`, which get the binary's path from cargo) and this crate's own
//! `tests/` check the harness itself.
//!
//! Rules it enforces (see the test network rules in the brief):
//! - every namespace has a unique name (`mt-<pid>-<n>-<label>`), is deleted on drop, also when
//!   the test panics, and the processes inside it are killed first; namespaces left by a test
//!   process that died are swept the next time a namespace is created;
//! - underlay links are veth pairs created directly between two test namespaces (never in the
//!   root namespace), addressed from the documentation ranges;
//! - every wait is bounded ([`wait_until`]).
//!
//! The tests need root. Without it they fail with a message saying so, unless
//! `MESHD_SKIP_NETNS_TESTS=1` is set (for local development only): then [`require_root`] returns
//! `false` and the test returns early, after printing that it was skipped.

mod bird;
mod command;
mod dashboard;
mod dns;
mod meshd;
mod namespace;
mod process;
mod root;
mod scrape;
mod wait;
mod wireguard_go;

pub use bird::Bird;
pub use command::{COMMAND_TIMEOUT, CommandError, run_checked, run_with_timeout};
pub use dashboard::{
    DashboardQuery, dashboard_metrics, dashboard_queries, histogram_family, promql_metric_names,
};
pub use dns::{Dnsmasq, NetnsResolvConf};
pub use meshd::{MeshdNode, MeshdPeer, MeshdSetup};
pub use namespace::{Namespace, VethLink, connect_veth, underlay_hub, underlay_pair};
/// The signals [`ChildGuard::stop_with`] sends, so tests need no `nix` of their own.
pub use nix::sys::signal::Signal;
pub use process::{ChildGuard, LogFile};
pub use root::require_root;
pub use scrape::{Exposition, HttpResponse, Sample, http_request, parse_exposition};
pub use wait::wait_until;

/// An address written in a test; panics if it is not one.
pub fn ip(text: &str) -> std::net::IpAddr {
    text.parse()
        .unwrap_or_else(|_| panic!("{text:?} is not an IP address"))
}
pub use wireguard_go::{Interop, WgGoPeer, WgGoPeerConfig, wg_genkey, wg_pubkey};
