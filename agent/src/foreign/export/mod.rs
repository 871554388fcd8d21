//! `meshd export FORMAT NAME`: the configuration of a foreign router as a complete, commented
//! file, ready to paste. Pure text generation: a [`RouterExport`] (what the hosting core knows
//! about the router and about itself) goes in, the file comes out; nothing is read or checked
//! here, so the caller decides what an unknown router or a wrong core means.
//!
//! Every format sets up the session exactly as the core runs it (the same as for a meshd spoke,
//! `routing::plan`):
//! - iBGP: the mesh's AS on both sides, TCP port 179, inside the tunnel between the overlay
//!   addresses. The router's [`RouterSide::router_id`] is its local address *and* its BGP
//!   identifier: the core reflects its routes with ORIGINATOR_ID set from that identifier, and
//!   every member checks it against the router's certificate.
//! - One IPv4 session carries IPv4 and IPv6 unicast (MP-BGP).
//! - Hold time [`RouterExport::hold_time_secs`], keepalives every third of it; no TCP-MD5 (the
//!   tunnel authenticates both ends). Both ends connect and listen.
//! - The core sends every route with itself as next hop ([`CoreSide::router_id`],
//!   [`CoreSide::address6`]); the router sends its own with itself as next hop.
//! - The router announces exactly [`RouterExport::announces`]. It takes everything the core
//!   sends except its own prefixes (and anything inside them) and the default routes: a mesh
//!   exit's `0.0.0.0/0` and `::/0` would pull the router's Internet traffic, the tunnel's own
//!   packets to the core included, into the tunnel. Each file says which lines to delete to use
//!   an exit.
//! - Sent only the default routes ([`RouterExport::send`], `[routers.NAME] send = "default"` on
//!   the core), the router is a full tunnel instead: wg-quick routes everything into the tunnel
//!   (`Table = auto`, whose rules keep the tunnel's own packets out), BIRD and FRR take exactly
//!   the defaults and keep them out of the kernel, RouterOS takes them and says what to set.
//!
//! The tunnel is one WireGuard interface named [`TUNNEL_INTERFACE`] whose peer is the core,
//! with `0.0.0.0/0, ::/0` as allowed addresses (routes come from BGP, so WireGuard must accept
//! any mesh source from the core) and host routes to the core's tunnel addresses, so the session
//! can come up before any BGP route exists.

mod bird;
mod frr;
mod routeros;
mod wg_quick;

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
pub use mesh_config::routers::RouterRoutes;

/// The WireGuard interface every format creates. The BIRD and FRR files route to the core
/// through it, so the wg-quick file must be saved as `wg-meshd.conf` (wg-quick names the
/// interface after the file).
pub const TUNNEL_INTERFACE: &str = "wg-meshd";

/// Everything an export says: the router, its core, and the mesh around them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterExport {
    /// The mesh's name, for the header and comments.
    pub mesh_name: String,
    /// The mesh's iBGP AS (`[routing] asn`); the router uses the same one (iBGP).
    pub asn: u32,
    pub router: RouterSide,
    pub core: CoreSide,
    /// The mesh's address pools (e.g. `10.0.0.0/8` and its IPv6 /48): shown in the header and
    /// in the firewall notes, never used as a filter (the mesh's LANs lie outside them).
    pub mesh_pools: Vec<IpNet>,
    /// The tunnel MTU (`netlink::mtu::tunnel_mtu(1500)` = 1420, as on meshd's own TUN).
    pub mtu: u16,
    /// WireGuard persistent keepalive from the router to the core (25 s): the router is the
    /// one that starts the tunnel, and the keepalives hold its NAT mapping open.
    pub keepalive_secs: u16,
    /// The hold time the core proposes on the session (`routing::plan::MESH_HOLD_TIME`, 30 s);
    /// the router proposes the same, with keepalives every third of it.
    pub hold_time_secs: u16,
    /// What the core sends the router (`[routers.NAME] send` in the core's meshd.toml): the
    /// mesh's routes, or only the default routes (then the router sends everything to the
    /// core, as a full tunnel).
    pub send: RouterRoutes,
}

/// The foreign router, as its certificate describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterSide {
    /// Its node name (a DNS label): also the name of its key file on Linux.
    pub name: String,
    /// Its WireGuard public key, base64. Its private key never leaves the router.
    pub wireguard_public_key: String,
    /// Its overlay IPv4 address, the first host of its /16 (`10.N.0.1`): the BGP router id
    /// *and* the session's local address. It must be the router id: the core's route
    /// reflection sets ORIGINATOR_ID from it and every node checks that against the certificate.
    pub router_id: Ipv4Addr,
    /// Its overlay IPv6 address (the first host of its /80): the next hop of the IPv6 routes
    /// it sends. With `None` (or a core without one) the export is IPv4 only and says so.
    pub address6: Option<Ipv6Addr>,
    /// Its allocated prefixes, as in the certificate: the IPv4 /16, the IPv6 /80 and the /96
    /// client pool inside it (which is not announced on its own, see [`RouterExport::announces`]).
    pub allocated: Vec<IpNet>,
    /// The LAN prefixes its certificate approves.
    pub lans: Vec<IpNet>,
}

/// The core that hosts the router: the far end of its tunnel and of its BGP session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreSide {
    pub name: String,
    /// The core's WireGuard public key, base64.
    pub wireguard_public_key: String,
    /// `HOST:PORT` (an IPv6 address as `[ADDR]:PORT`): the first of the core's endpoints.
    pub endpoint: String,
    /// The core's other endpoints, named in a comment as fallbacks.
    pub other_endpoints: Vec<String>,
    /// `10.C.0.1`: the core's session address and the next hop of every route it sends.
    pub router_id: Ipv4Addr,
    /// The next hop of the IPv6 routes the core sends.
    pub address6: Option<Ipv6Addr>,
}

/// The IPv6 addresses of both tunnel ends, when both have one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tunnel6 {
    router: Ipv6Addr,
    core: Ipv6Addr,
}

impl RouterExport {
    /// What the router announces, in this order: its allocated prefixes except those inside
    /// another allocated one (the /96 client pool lies inside the /80 and adds nothing), then its
    /// approved LANs; each once, as networks. Every format announces exactly this list, as
    /// `routing::plan::originations` does for a meshd node.
    pub fn announces(&self) -> Vec<IpNet> {
        let allocated = &self.router.allocated;
        let mut list: Vec<IpNet> = Vec::new();
        let outermost = allocated.iter().filter(|prefix| {
            !allocated
                .iter()
                .any(|other| other != *prefix && other.contains(*prefix))
        });
        for prefix in outermost.chain(&self.router.lans).map(IpNet::trunc) {
            if !list.contains(&prefix) {
                list.push(prefix);
            }
        }
        list
    }

    fn announces4(&self) -> Vec<Ipv4Net> {
        self.announces()
            .into_iter()
            .filter_map(|p| match p {
                IpNet::V4(p) => Some(p),
                IpNet::V6(_) => None,
            })
            .collect()
    }

    /// The IPv6 prefixes announced; none when the tunnel has no IPv6 (see [`Self::tunnel6`]).
    fn announces6(&self) -> Vec<Ipv6Net> {
        if self.tunnel6().is_none() {
            return Vec::new();
        }
        self.ipv6_prefixes()
    }

    /// The IPv6 prefixes of [`Self::announces`], whether or not the tunnel carries IPv6.
    fn ipv6_prefixes(&self) -> Vec<Ipv6Net> {
        let (_, v6): (Vec<IpNet>, Vec<IpNet>) = self
            .announces()
            .into_iter()
            .partition(|p| matches!(p, IpNet::V4(_)));
        v6.into_iter()
            .filter_map(|p| if let IpNet::V6(p) = p { Some(p) } else { None })
            .collect()
    }

    /// Both tunnel ends' IPv6 addresses: without both, IPv6 routes have no next hop on one side
    /// and the export is IPv4 only.
    fn tunnel6(&self) -> Option<Tunnel6> {
        Some(Tunnel6 {
            router: self.router.address6?,
            core: self.core.address6?,
        })
    }

    /// BGP keepalive interval: a third of the hold time, as RFC 4271 suggests.
    fn bgp_keepalive_secs(&self) -> u16 {
        (self.hold_time_secs / 3).max(1)
    }

    /// Whether the core sends only the default routes.
    fn default_only(&self) -> bool {
        self.send == RouterRoutes::Default
    }

    /// The default routes of the families the tunnel carries.
    fn defaults(&self) -> Vec<&'static str> {
        if self.tunnel6().is_some() {
            vec!["0.0.0.0/0", "::/0"]
        } else {
            vec!["0.0.0.0/0"]
        }
    }

    /// Where the wg-quick file's PostUp reads the private key from.
    fn key_file(&self) -> String {
        format!("/etc/wireguard/{}.key", self.router.name)
    }
}

/// The formats `meshd export` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// A RouterOS 7 script (`/interface wireguard`, `/routing bgp`, ...).
    RouterOs,
    /// A wg-quick file for Linux or OpenWrt: the tunnel only, BGP comes from BIRD or FRR.
    WgQuick,
    /// A complete BIRD 2 `bird.conf`.
    Bird,
    /// A complete FRR `frr.conf` (zebra, staticd and bgpd).
    Frr,
}

impl Format {
    /// Every format, in the order the help and errors name them.
    pub const ALL: [Format; 4] = [Format::RouterOs, Format::WgQuick, Format::Bird, Format::Frr];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Format::RouterOs => "routeros",
            Format::WgQuick => "wg-quick",
            Format::Bird => "bird",
            Format::Frr => "frr",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A format name `meshd export` does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("unknown export format {given:?}: the formats are routeros, wg-quick, bird and frr")]
    Unknown { given: String },
}

impl FromStr for Format {
    type Err = FormatError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|format| format.name() == text)
            .ok_or_else(|| FormatError::Unknown {
                given: text.to_string(),
            })
    }
}

/// The configuration of `view.router` in `format`: a complete file that starts with a comment
/// header (what it is, for which mesh, router and core, what to do first) and holds no
/// private key.
pub fn render(format: Format, view: &RouterExport) -> String {
    match format {
        Format::RouterOs => routeros::render(view),
        Format::WgQuick => wg_quick::render(view),
        Format::Bird => bird::render(view),
        Format::Frr => frr::render(view),
    }
}

/// What a header says besides the facts every format shares.
struct Header<'a> {
    format: Format,
    /// The comment marker of the format (`#`, `!`).
    comment: &'a str,
    /// What the file is: "RouterOS 7 script", ...
    title: &'a str,
    /// The steps before the file is used, one item each (may span lines with `\n`).
    before: Vec<String>,
}

/// The comment header every file starts with.
fn header(view: &RouterExport, h: &Header<'_>) -> String {
    let c = h.comment;
    let router = &view.router;
    let core = &view.core;
    let mut out = String::new();
    let mut line = |text: &str| {
        if text.is_empty() {
            let _ = writeln!(out, "{c}");
        }
        for part in text.lines() {
            let _ = writeln!(out, "{c} {part}");
        }
    };
    line(&format!(
        "{} for router {} of the meshd mesh {}.",
        h.title,
        one_line(&router.name),
        one_line(&view.mesh_name)
    ));
    line(&format!(
        "Generated by `meshd export {} {}` on its core, {}: export again when the\n\
         router's certificate or the core's endpoints change. It holds no private key.",
        h.format,
        one_line(&router.name),
        one_line(&core.name)
    ));
    line("");
    line(&format!(
        "Router {}: tunnel address {}, its BGP router id and session address{}.",
        one_line(&router.name),
        router.router_id,
        router
            .address6
            .map(|a6| format!(",\n  and {a6}"))
            .unwrap_or_default()
    ));
    let announced = view
        .announces4()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>();
    let announced6 = view
        .announces6()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>();
    line("  It announces its allocation and approved LANs (the core refuses anything else):");
    line(&wrap_list("    ", announced.iter().chain(&announced6)));
    if view.tunnel6().is_none() {
        let left_out: Vec<String> = view
            .ipv6_prefixes()
            .iter()
            .map(ToString::to_string)
            .collect();
        line("  IPv4 only: the router or its core has no IPv6 tunnel address.");
        if !left_out.is_empty() {
            line("  Not announced for that reason:");
            line(&wrap_list("    ", &left_out));
        }
    }
    line(&format!(
        "Core {}: WireGuard endpoint {},\n  tunnel address {}{}.",
        one_line(&core.name),
        one_line(&core.endpoint),
        core.router_id,
        core.address6
            .map(|a6| format!(" and {a6}"))
            .unwrap_or_default()
    ));
    if !core.other_endpoints.is_empty() {
        line("  Its other endpoints, if that one stops answering:");
        let others: Vec<String> = core.other_endpoints.iter().map(|e| one_line(e)).collect();
        line(&wrap_list("    ", &others));
    }
    line(&format!(
        "Session: iBGP in AS {asn}, {} to {} on TCP port 179 inside the tunnel,\n  \
         IPv4{} unicast on the one session, hold time {} s, no TCP-MD5\n  \
         (WireGuard authenticates both ends).",
        router.router_id,
        core.router_id,
        if view.tunnel6().is_some() {
            " and IPv6"
        } else {
            ""
        },
        view.hold_time_secs,
        asn = view.asn,
    ));
    if !view.mesh_pools.is_empty() {
        let pools: Vec<String> = view.mesh_pools.iter().map(ToString::to_string).collect();
        line("Mesh pools (the members' LANs come on top):");
        line(&wrap_list("  ", &pools));
    }
    line("");
    line("Before you use it:");
    for (n, step) in h.before.iter().enumerate() {
        let mut lines = step.lines();
        if let Some(first) = lines.next() {
            line(&format!("  {}. {first}", n + 1));
        }
        for more in lines {
            line(&format!("     {more}"));
        }
    }
    out
}

/// The first step of the BIRD and FRR files: the tunnel they route through.
fn tunnel_first(view: &RouterExport) -> String {
    format!(
        "Bring up the tunnel first: `meshd export wg-quick {}` makes the interface\n\
         {TUNNEL_INTERFACE} this file routes through.",
        one_line(&view.router.name)
    )
}

/// `items` as `a, b, c`, in lines of at most 88 characters that start with `indent`.
fn wrap_list<'a>(indent: &str, items: impl IntoIterator<Item = &'a String>) -> String {
    let mut text = String::new();
    let mut width = 0;
    for item in items {
        if width > 0 && width + 2 + item.len() > 88 {
            text.push_str(",\n");
            width = 0;
        } else if width > 0 {
            text.push_str(", ");
            width += 2;
        }
        if width == 0 {
            text.push_str(indent);
            width = indent.len();
        }
        text.push_str(item);
        width += item.len();
    }
    text
}

/// `a, b, c`.
fn join(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let items: Vec<String> = items.into_iter().map(|s| s.as_ref().to_string()).collect();
    items.join(", ")
}

/// `text` fit for a comment or a quoted value: control characters (a newline would end the
/// comment) become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|ch| if ch.is_control() { ' ' } else { ch })
        .collect()
}

/// `HOST:PORT` (or `[ADDR]:PORT`) split into host and port; the whole text as host, and no
/// port, if there is no port.
fn split_endpoint(endpoint: &str) -> (&str, Option<&str>) {
    match endpoint.rsplit_once(':') {
        Some((host, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (host.starts_with('[') == host.ends_with(']'))
                && (host.starts_with('[') || !host.contains(':')) =>
        {
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            (host, Some(port))
        }
        _ => (endpoint, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    fn view(allocated: &[&str], lans: &[&str]) -> RouterExport {
        RouterExport {
            mesh_name: "friends".into(),
            asn: 64512,
            router: RouterSide {
                name: "gamma".into(),
                wireguard_public_key: "RkidVfweX7wx1upBKInKu6UBasEyx6WG46PS1uw4uzg=".into(),
                router_id: "10.3.0.1".parse().unwrap(),
                address6: Some("fd12:3456:789a:1:1::1".parse().unwrap()),
                allocated: allocated.iter().map(|p| net(p)).collect(),
                lans: lans.iter().map(|p| net(p)).collect(),
            },
            core: CoreSide {
                name: "alpha".into(),
                wireguard_public_key: "hBVTMQn6+a3NCnV6wmr5scTqOFpg1yoqcFysGfV/FjI=".into(),
                endpoint: "vpn.example.net:51820".into(),
                other_endpoints: vec![],
                router_id: "10.1.0.1".parse().unwrap(),
                address6: Some("fd12:3456:789a:1::1".parse().unwrap()),
            },
            mesh_pools: vec![net("10.0.0.0/8"), net("fd12:3456:789a::/48")],
            mtu: 1420,
            keepalive_secs: 25,
            hold_time_secs: 30,
            send: RouterRoutes::Mesh,
        }
    }

    const ALLOCATED: [&str; 3] = [
        "10.3.0.0/16",
        "fd12:3456:789a:1:1::/80",
        "fd12:3456:789a:1:1:1::/96",
    ];

    #[test]
    fn announces_the_allocation_without_the_client_pool_and_the_lans() {
        let v = view(&ALLOCATED, &["192.168.42.0/24", "192.168.43.0/24"]);
        let announced: Vec<String> = v.announces().iter().map(ToString::to_string).collect();
        assert_eq!(
            announced,
            [
                "10.3.0.0/16",
                "fd12:3456:789a:1:1::/80",
                "192.168.42.0/24",
                "192.168.43.0/24"
            ]
        );
        assert!(!v.announces().contains(&net("fd12:3456:789a:1:1:1::/96")));
    }

    #[test]
    fn announces_each_prefix_once_and_as_a_network() {
        // A LAN repeated, one written with host bits, one equal to the allocation: each once.
        let v = view(
            &ALLOCATED,
            &["192.168.42.1/24", "192.168.42.0/24", "10.3.0.0/16"],
        );
        let announced: Vec<String> = v.announces().iter().map(ToString::to_string).collect();
        assert_eq!(
            announced,
            ["10.3.0.0/16", "fd12:3456:789a:1:1::/80", "192.168.42.0/24"]
        );
    }

    #[test]
    fn a_lan_inside_the_allocation_is_still_announced() {
        // Only allocated prefixes fold into each other; an approved LAN is the certificate's.
        let v = view(&ALLOCATED, &["10.3.7.0/24"]);
        assert!(v.announces().contains(&net("10.3.7.0/24")));
    }

    #[test]
    fn without_ipv6_on_both_ends_nothing_ipv6_is_announced() {
        let mut v = view(&ALLOCATED, &["192.168.42.0/24"]);
        v.core.address6 = None;
        assert!(v.announces6().is_empty());
        assert_eq!(v.announces4().len(), 2);
        for format in Format::ALL {
            let text = render(format, &v);
            assert!(!text.contains("fd12:3456:789a:1::1"), "{format}:\n{text}");
            assert!(
                text.contains("Not announced for that reason:\n"),
                "{format}:\n{text}"
            );
            assert!(
                text.contains("    fd12:3456:789a:1:1::/80\n"),
                "{format}:\n{text}"
            );
        }
    }

    #[test]
    fn formats_parse_by_name_and_print_it_back() {
        for format in Format::ALL {
            assert_eq!(format.name().parse::<Format>(), Ok(format));
            assert_eq!(format.to_string(), format.name());
        }
        assert_eq!("wg-quick".parse(), Ok(Format::WgQuick));
    }

    #[test]
    fn an_unknown_format_names_the_accepted_ones() {
        let error = "mikrotik".parse::<Format>().unwrap_err();
        assert_eq!(
            error,
            FormatError::Unknown {
                given: "mikrotik".into()
            }
        );
        let message = error.to_string();
        assert_eq!(
            message,
            "unknown export format \"mikrotik\": the formats are routeros, wg-quick, bird and frr"
        );
        for format in Format::ALL {
            assert!(message.contains(format.name()), "{message}");
        }
        // Names are exact: no case folding, no aliases.
        assert!("RouterOS".parse::<Format>().is_err());
        assert!("".parse::<Format>().is_err());
    }

    #[test]
    fn endpoints_split_into_host_and_port() {
        assert_eq!(
            split_endpoint("vpn.example.net:51820"),
            ("vpn.example.net", Some("51820"))
        );
        assert_eq!(
            split_endpoint("203.0.113.1:51820"),
            ("203.0.113.1", Some("51820"))
        );
        assert_eq!(
            split_endpoint("[2001:db8::1]:51820"),
            ("2001:db8::1", Some("51820"))
        );
        assert_eq!(split_endpoint("2001:db8::1"), ("2001:db8::1", None));
        assert_eq!(split_endpoint("vpn.example.net"), ("vpn.example.net", None));
    }

    #[test]
    fn the_only_keys_in_a_file_are_the_public_ones() {
        let v = view(&ALLOCATED, &["192.168.42.0/24"]);
        let public = [
            v.router.wireguard_public_key.as_str(),
            v.core.wireguard_public_key.as_str(),
        ];
        for format in Format::ALL {
            let text = render(format, &v);
            // Every WireGuard-key-shaped word (44 base64 characters ending in `=`).
            let base64 = |ch: char| ch.is_ascii_alphanumeric() || matches!(ch, '+' | '/' | '=');
            for word in text.split(|ch: char| !base64(ch)) {
                if word.len() == 44 && word.ends_with('=') {
                    assert!(public.contains(&word), "{format}: {word}");
                }
            }
            assert!(!text.contains("PrivateKey"), "{format}");
        }
        // The files that set up the tunnel name the core's key.
        for format in [Format::RouterOs, Format::WgQuick] {
            assert!(render(format, &v).contains(public[1]), "{format}");
        }
    }

    #[test]
    fn every_file_starts_with_its_header() {
        let v = view(&ALLOCATED, &["192.168.42.0/24"]);
        for format in Format::ALL {
            let text = render(format, &v);
            let first = text.lines().next().unwrap();
            assert!(
                first.starts_with('#') || first.starts_with('!'),
                "{format}: {first}"
            );
            assert!(
                first.contains("router gamma of the meshd mesh friends"),
                "{format}: {first}"
            );
            assert!(
                text.contains(&format!(
                    "Generated by `meshd export {format} gamma` on its core, alpha"
                )),
                "{format}"
            );
            assert!(text.contains("Before you use it:"), "{format}");
        }
    }
}
