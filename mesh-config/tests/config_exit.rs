//! `[exit]` and `[routing] anycast_prefixes`: what they accept, and that each mistake is
//! reported at its key.

use std::path::Path;

use mesh_config::exit::{DEFAULT_EXIT_FWMARK, DEFAULT_EXIT_TABLE};
use mesh_config::{ConfigError, UseExits, parse};

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
fn exit_section_parses_and_round_trips() {
    let config = config(
        "[routing]\nanycast_prefixes = [\"198.18.53.53/32\"]\n\
         [exit]\nserve = true\ninterfaces = [\"wan0\", \"wan1\"]\nuse = \"nearest\"\n\
         [[exit.route]]\ndestination = \"203.0.113.0/24\"\nvia = [\"tokyo\", \"paris\"]\n",
    )
    .unwrap();
    assert!(config.exit.serve);
    assert_eq!(config.exit.use_exits, UseExits::Nearest);
    assert_eq!(config.exit.routes[0].via, ["tokyo", "paris"]);
    assert_eq!(config.exit.table, DEFAULT_EXIT_TABLE);
    assert_eq!(config.exit.fwmark, DEFAULT_EXIT_FWMARK);
    assert_eq!(config.routing.anycast_prefixes.len(), 1);
    let again = parse(&config.to_toml_string(), Path::new(FILE)).unwrap();
    assert_eq!(again, config);
}

#[test]
fn without_exit_section_nothing_changes_on_the_host() {
    let config = config("").unwrap();
    assert!(!config.exit.serve);
    assert_eq!(config.exit.use_exits, UseExits::None);
    assert!(!config.to_toml_string().contains("[exit]"));
}

#[test]
fn exit_mistakes_are_reported_at_their_keys() {
    let all = errors(
        "[exit]\ninterfaces = [\"wan0\", \"wan0\"]\ntable = 254\nfwmark = 0\nuse = \"nearest\"\n\
         [[exit.route]]\ndestination = \"10.7.0.0/16\"\nvia = [\"tokyo\"]\n\
         [[exit.route]]\ndestination = \"203.0.113.1/24\"\nvia = []\n",
    );
    let text = all.join("\n");
    for expected in [
        "exit.interfaces[1]",
        "duplicate interface wan0",
        "exit.table",
        "\"main\" table",
        "exit.fwmark",
        "exit.route[0].destination",
        "overlaps mesh.pool4",
        "exit.route[1].destination",
        "not a network address",
        "exit.route[1].via",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

#[test]
fn a_wrong_use_value_names_the_choices() {
    let text = errors("[exit]\nuse = \"fastest\"\n").join("\n");
    assert!(text.contains("exit.use") || text.contains("use"), "{text}");
    assert!(text.contains("nearest"), "{text}");
}

#[test]
fn anycast_prefixes_must_be_networks_apart_from_the_lans() {
    let text = errors(
        "[routing]\nlan_prefixes = [\"192.168.42.0/24\"]\n\
         anycast_prefixes = [\"192.168.42.53/32\", \"0.0.0.0/0\", \"198.18.0.1/24\"]\n",
    )
    .join("\n");
    for expected in [
        "routing.anycast_prefixes[0]",
        "overlaps lan_prefixes[0]",
        "routing.anycast_prefixes[1]",
        "[exit] serve",
        "routing.anycast_prefixes[2]",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }
}

#[test]
fn max_paths_defaults_to_eight_round_trips_and_is_checked() {
    assert_eq!(config("").unwrap().routing.max_paths, 8);
    let one = config("[routing]\nmax_paths = 1\n").unwrap();
    assert_eq!(one.routing.max_paths, 1);
    let again = parse(&one.to_toml_string(), Path::new(FILE)).unwrap();
    assert_eq!(again, one);
    // The default is not written out.
    assert!(!config("").unwrap().to_toml_string().contains("max_paths"));
    for bad in ["0", "65"] {
        let text = errors(&format!("[routing]\nmax_paths = {bad}\n")).join("\n");
        assert!(
            text.contains("routing.max_paths") && text.contains("1..=64") && text.contains("ECMP"),
            "{text}"
        );
    }
}

#[test]
fn router_sections_parse_and_their_mistakes_are_reported() {
    use mesh_config::routers::{RouterRoutes, router_settings};
    let config = config("[routers.shop]\nsend = \"default\"\n[routers.home]\n").unwrap();
    assert_eq!(
        router_settings(&config.routers, "shop").send,
        RouterRoutes::Default
    );
    assert_eq!(
        router_settings(&config.routers, "home").send,
        RouterRoutes::Mesh
    );
    assert_eq!(
        router_settings(&config.routers, "other").send,
        RouterRoutes::Mesh
    );
    let again = parse(&config.to_toml_string(), Path::new(FILE)).unwrap();
    assert_eq!(again, config);

    let text = errors("[routers.shop]\nsend = \"everything\"\n").join("\n");
    assert!(text.contains("routers.shop.send"), "{text}");
    let text = errors("[routers.Bad_Name]\n").join("\n");
    assert!(
        text.contains("routers.Bad_Name") && text.contains("not a router name"),
        "{text}"
    );
    let spoke = parse(
        "[node]\nname = \"beta\"\nrole = \"spoke\"\n[routers.shop]\n",
        Path::new(FILE),
    );
    let text = match spoke {
        Ok(config) => panic!("accepted: {config:?}"),
        Err(error) => error
            .diagnostics()
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    };
    assert!(text.contains("only a core stands in"), "{text}");
}
