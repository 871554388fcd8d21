//! `[dns]` and `[paths]`: what they accept, and that each mistake is reported at its key
//! with file, line and column.

use std::path::Path;
use std::time::Duration;

use mesh_config::{ConfigError, parse};

const FILE: &str = "/etc/meshd/meshd.toml";
const NODE: &str = "[node]\nname = \"alpha\"\nrole = \"core\"\n";

fn config(rest: &str) -> Result<mesh_config::Config, ConfigError> {
    parse(&format!("{NODE}{rest}"), Path::new(FILE))
}

fn errors(rest: &str) -> Vec<String> {
    match config(rest) {
        Ok(config) => panic!("accepted invalid config: {config:?}"),
        Err(error) => error.diagnostics().iter().map(|d| d.to_string()).collect(),
    }
}

#[test]
fn dns_and_paths_sections_parse() {
    let config = config(
        "[dns]\nservers = [\"192.0.2.53\", \"[2001:db8::53]:5353\"]\nmin_ttl = 5\n\
         [paths]\nprobe_interval_ms = 200\nfailback_hold = 20\n\
         [[paths.uplink]]\ninterface = \"wan2\"\ndistance = 2\n\
         [[paths.peer]]\nname = \"beta\"\npreferred_uplink = \"198.51.100.1\"\n\
         preferred_endpoint = \"vpn2.example.net:51820\"\nprobe_misses = 5\n",
    )
    .unwrap();
    assert_eq!(config.dns.servers[0].to_string(), "192.0.2.53:53");
    assert_eq!(config.dns.min_ttl, 5);
    assert_eq!(config.dns.max_ttl, 3600);
    let beta = config.paths.timers("beta");
    assert_eq!(beta.probe_interval, Duration::from_millis(200));
    assert_eq!(beta.probe_misses, 5);
    assert_eq!(beta.failback_hold, Duration::from_secs(20));
    let again = parse(&config.to_toml_string(), Path::new(FILE)).unwrap();
    assert_eq!(again, config);
}

#[test]
fn dns_mistakes_point_at_their_key() {
    assert_eq!(
        errors("[dns]\nservers = [\"ns.example.net\"]\n"),
        [
            "/etc/meshd/meshd.toml:5:12: dns.servers[0]: \"ns.example.net\" is not a name server \
          address; write an IP address, optionally with a port: \"192.0.2.53\", \
          \"192.0.2.53:53\" or \"[2001:db8::53]:53\""
        ]
    );
    assert_eq!(
        errors("[dns]\nmin_ttl = 60\nmax_ttl = 30\n"),
        ["/etc/meshd/meshd.toml:6:11: dns.max_ttl: 30 seconds is less than min_ttl (60 seconds)"]
    );
    let both = errors("[dns]\nmin_ttl = 0\nservers = [\"192.0.2.1\", \"192.0.2.1:53\"]\n");
    assert_eq!(both.len(), 2, "{both:#?}");
    assert!(both[0].contains("dns.min_ttl"), "{both:#?}");
    assert!(
        both[1].contains("dns.servers[1]: duplicate server"),
        "{both:#?}"
    );
}

#[test]
fn paths_mistakes_point_at_their_key() {
    assert_eq!(
        errors("[paths]\nprobe_interval_ms = 1\n"),
        [
            "/etc/meshd/meshd.toml:5:21: paths.probe_interval_ms: 1 ms is out of range; expected \
          10 to 3600000 milliseconds"
        ]
    );
    let uplink =
        errors("[[paths.uplink]]\ninterface = \"wan1\"\naddress = \"192.0.2.1\"\ndistance = 0\n");
    assert_eq!(uplink.len(), 2, "{uplink:#?}");
    assert!(
        uplink[0].contains("either interface or address"),
        "{uplink:#?}"
    );
    assert!(
        uplink[1].starts_with("/etc/meshd/meshd.toml:7:12: paths.uplink[0].distance: distance 0"),
        "{uplink:#?}"
    );
    let peer = errors(
        "[[paths.peer]]\nname = \"beta\"\nprobe_misses = 0\n[[paths.peer]]\nname = \"beta\"\n",
    );
    assert_eq!(peer.len(), 2, "{peer:#?}");
    assert!(peer[0].contains("paths.peer[0].probe_misses"), "{peer:#?}");
    assert!(
        peer[1].contains("paths.peer[1].name: duplicate name"),
        "{peer:#?}"
    );
    let bad = errors("[[paths.peer]]\nname = \"beta\"\npreferred_uplink = \"not an interface\"\n");
    assert!(
        bad[0].contains("paths.peer[0].preferred_uplink") && bad[0].contains("neither"),
        "{bad:#?}"
    );
}
