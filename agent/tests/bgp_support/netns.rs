//! What the BGP interop tests share: a namespace for meshd and one for the other daemon on a
//! veth link, the speaker's neighbours written as meshd.toml (so the tests go through the same
//! parsing, validation and `bgp::neighbor::load` as the daemon), and running the test
//! body inside meshd's namespace with the other daemon's log printed when it fails.

use std::future::Future;

use meshd::bgp::speaker::NeighborConfig;
use netns_tests::{Namespace, connect_veth};

/// meshd's side of the veth link (the first address of each family is its router id's).
pub const MESHD_V4: &str = "198.51.100.1";
pub const MESHD_V6: &str = "2001:db8:1::1";

/// Two namespaces, `meshd` and `label`, joined by `eth0` on both sides with meshd's addresses
/// (plus `extra_meshd`, CIDRs for further sessions) and the peer's.
pub fn meshd_and_peer(label: &str, extra_meshd: &[&str], peer: &[&str]) -> (Namespace, Namespace) {
    let meshd_ns = Namespace::new("bgpmeshd");
    let peer_ns = Namespace::new(label);
    let mut meshd = vec!["198.51.100.1/24", "2001:db8:1::1/64"];
    meshd.extend_from_slice(extra_meshd);
    connect_veth(&meshd_ns, "eth0", &meshd, &peer_ns, "eth0", peer);
    (meshd_ns, peer_ns)
}

/// Runs `body` on a current-thread runtime inside `namespace`. If it panics, `logs()` (the other
/// daemon's log) is printed before the panic goes on.
pub fn run_in<F, Fut>(namespace: &Namespace, body: F, logs: impl FnOnce() -> String)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        namespace.run_in(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(body())
        })
    }));
    if let Err(panic) = result {
        eprintln!("peer log:\n{}", logs());
        std::panic::resume_unwind(panic);
    }
}

/// A `[[bgp.neighbor]]` with the usual test settings (short hold time and retry) and the import
/// and export the plain interop tests use: BIRD's/GoBGP's 192.168/16 and 2001:db8::/32 routes in,
/// meshd's 10/8 and fd00::/8 routes out, nothing else either way.
pub fn plain_neighbor(name: &str, address: &str, remote_asn: u32) -> String {
    format!(
        r#"
[[bgp.neighbor]]
name = "{name}"
address = "{address}"
remote_asn = {remote_asn}
hold_time = 9
connect_retry = 1
import = {{ prefixes = ["192.168.0.0/16 le 24", "2001:db8::/32 le 64"] }}
export = {{ prefixes = ["10.0.0.0/8 le 24", "fd00::/8 le 64"] }}
"#
    )
}

/// The neighbours of a meshd.toml for AS `asn` whose `[bgp]` part is `bgp`, read as the daemon
/// reads its config. Panics with the diagnostics if the config is invalid.
pub fn neighbors(asn: u32, bgp: &str) -> Vec<NeighborConfig> {
    let text = format!("[node]\nname = \"meshd\"\nrole = \"core\"\n[routing]\nasn = {asn}\n{bgp}");
    let config = mesh_config::parse(&text, std::path::Path::new("meshd.toml"))
        .unwrap_or_else(|e| panic!("test config is invalid:\n{e}\n{text}"));
    config
        .bgp
        .neighbors
        .iter()
        .map(|n| meshd::bgp::neighbor::load(n, &config).unwrap())
        .collect()
}
