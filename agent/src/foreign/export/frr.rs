//! A complete FRR `frr.conf` (integrated configuration: zebra, staticd and bgpd): forwarding,
//! host routes to the core's tunnel addresses, prefix lists and route maps for the filters, and
//! the session with `network` statements for the announced prefixes. `no bgp network
//! import-check` makes them announced whether or not a LAN is up, as meshd and the BIRD export
//! do, without blackhole routes in the kernel.

use std::fmt::Write as _;

use super::{Format, Header, RouterExport, TUNNEL_INTERFACE, header, one_line, tunnel_first};

pub(super) fn render(view: &RouterExport) -> String {
    let mut out = header(
        view,
        &Header {
            format: Format::Frr,
            comment: "!",
            title: "FRR configuration (frr.conf)",
            before: vec![
                tunnel_first(view),
                "Enable bgpd (and staticd) in /etc/frr/daemons: bgpd=yes, staticd=yes.".to_string(),
                "Save this file as /etc/frr/frr.conf (it replaces the whole configuration),\n\
                 check it with `vtysh --dryrun -f /etc/frr/frr.conf`, then\n\
                 `systemctl restart frr` (or `/usr/lib/frr/frr-reload.py --reload /etc/frr/frr.conf`)."
                    .to_string(),
                format!(
                    "`vtysh -c 'show bgp summary'` shows the core ({}) Established once it has\n\
                     admitted this router.",
                    one_line(&view.core.name)
                ),
            ],
        },
    );
    let announce4 = view.announces4();
    let announce6 = view.announces6();
    let tunnel6 = view.tunnel6();
    let core = view.core.router_id;

    let _ = writeln!(out, "!");
    let _ = writeln!(out, "frr defaults traditional");
    let _ = writeln!(out, "hostname {}", one_line(&view.router.name));
    let _ = writeln!(out, "log syslog informational");
    let _ = writeln!(out, "service integrated-vtysh-config");
    let _ = writeln!(
        out,
        "!\n! The router forwards between its LANs and the mesh."
    );
    let _ = writeln!(out, "ip forwarding");
    if tunnel6.is_some() {
        let _ = writeln!(out, "ipv6 forwarding");
    }
    let _ = writeln!(
        out,
        "!\n! The core's tunnel addresses are on the tunnel (wg-quick's PostUp adds the same routes):\n\
         ! the session runs to them, and the next hops of the core's routes resolve through them."
    );
    let _ = writeln!(out, "ip route {core}/32 {TUNNEL_INTERFACE}");
    if let Some(t6) = tunnel6 {
        let _ = writeln!(out, "ipv6 route {}/128 {TUNNEL_INTERFACE}", t6.core);
    }

    let _ = writeln!(
        out,
        "!\n! What this router announces, exactly, and what it never takes from the mesh: its own\n\
         ! prefixes and anything inside them."
    );
    let text4: Vec<String> = announce4.iter().map(ToString::to_string).collect();
    let text6: Vec<String> = announce6.iter().map(ToString::to_string).collect();
    prefix_lists(&mut out, "ip", "4", &text4, 32, "0.0.0.0/0");
    if !text6.is_empty() {
        prefix_lists(&mut out, "ipv6", "6", &text6, 128, "::/0");
    }

    let families: Vec<(&str, &str, &str)> = if tunnel6.is_some() {
        vec![("4", "ip", "0.0.0.0/0"), ("6", "ipv6", "::/0")]
    } else {
        vec![("4", "ip", "0.0.0.0/0")]
    };
    for (family, match_kind, default) in &families {
        if view.default_only() {
            default_only_import(&mut out, family, match_kind, default);
        } else {
            let _ = writeln!(
                out,
                "!\n! From the core: everything but this router's own prefixes, and no default route: a\n\
                 ! mesh exit's {default} would pull this router's Internet traffic, the tunnel's own\n\
                 ! packets included, into the tunnel. Delete entry 20 to use the exit, once the route\n\
                 ! to the core's endpoint no longer depends on the default route."
            );
            let import = format!("meshd-import{family}");
            let own = (*match_kind, format!("meshd-own{family}"));
            let default = (*match_kind, format!("meshd-default{family}"));
            route_map_entry(&mut out, &import, "deny 10", Some(&own));
            route_map_entry(&mut out, &import, "deny 20", Some(&default));
            route_map_entry(&mut out, &import, "permit 30", None);
        }
        let _ = writeln!(
            out,
            "! To the core: exactly the announced prefixes (the core refuses anything else anyway)."
        );
        let announce = (*match_kind, format!("meshd-announce{family}"));
        route_map_head(
            &mut out,
            &format!("meshd-export{family}"),
            "permit 10",
            Some(&announce),
        );
        if let (Some(t6), "6") = (tunnel6, *family) {
            let _ = writeln!(
                out,
                " ! IPv6 routes on an IPv4 session: this router's IPv6 address is their next hop."
            );
            let _ = writeln!(out, " set ipv6 next-hop global {}", t6.router);
        }
        let _ = writeln!(out, "exit");
    }

    let _ = writeln!(
        out,
        "!\n! The session, as the core runs it: iBGP between the tunnel addresses, both ends\n\
         ! connecting and listening; one IPv4 session carries both families; no password\n\
         ! (WireGuard authenticates the core). The router id must be this router's tunnel\n\
         ! address: the core reflects its routes with ORIGINATOR_ID set from it, and every member\n\
         ! checks that against its certificate."
    );
    let _ = writeln!(out, "router bgp {}", view.asn);
    let _ = writeln!(out, " bgp router-id {}", view.router.router_id);
    let _ = writeln!(out, " no bgp default ipv4-unicast");
    let _ = writeln!(out, " no bgp network import-check");
    let _ = writeln!(out, " neighbor {core} remote-as {}", view.asn);
    let _ = writeln!(
        out,
        " neighbor {core} description meshd core {} of mesh {}",
        one_line(&view.core.name),
        one_line(&view.mesh_name)
    );
    let _ = writeln!(
        out,
        " neighbor {core} update-source {}",
        view.router.router_id
    );
    let _ = writeln!(
        out,
        " neighbor {core} timers {} {}",
        view.bgp_keepalive_secs(),
        view.hold_time_secs
    );
    let _ = writeln!(
        out,
        " ! Retry soon: the first attempt often comes before the tunnel's first handshake."
    );
    let _ = writeln!(out, " neighbor {core} timers connect 5");
    let _ = writeln!(out, " !\n address-family ipv4 unicast");
    for p in &announce4 {
        let _ = writeln!(out, "  network {p}");
    }
    address_family_neighbor(&mut out, core, "4");
    if tunnel6.is_some() {
        let _ = writeln!(out, " !\n address-family ipv6 unicast");
        for p in &announce6 {
            let _ = writeln!(out, "  network {p}");
        }
        address_family_neighbor(&mut out, core, "6");
    }
    let _ = writeln!(out, "exit\n!");
    out
}

/// The import route-map of one family when the core sends only its default route, and the
/// zebra route-map that keeps that default out of the kernel.
fn default_only_import(out: &mut String, family: &str, match_kind: &str, default: &str) {
    let _ = writeln!(
        out,
        "!\n! From the core: its default route {default}, nothing else (send = \"default\" on the\n\
         ! core). zebra keeps it out of the kernel: wg-quick (Table = auto) already routes\n\
         ! everything through the tunnel while keeping the tunnel's own packets on the host's\n\
         ! default route, and the core's default in the main table would pull those in too."
    );
    let default_list = (match_kind, format!("meshd-default{family}"));
    let fib = format!("meshd-fib{family}");
    route_map_entry(
        out,
        &format!("meshd-import{family}"),
        "permit 10",
        Some(&default_list),
    );
    route_map_entry(out, &fib, "deny 10", Some(&default_list));
    route_map_entry(out, &fib, "permit 20", None);
    let _ = writeln!(out, "{match_kind} protocol bgp route-map meshd-fib{family}");
}

/// One route-map entry, `route-map MAP ACTION SEQ` (`rule` is "permit 10", "deny 20"...), with
/// a match on a prefix list (`(match_kind, list)`: `ip`/`ipv6` and the list's name) if given,
/// and its `exit`.
fn route_map_entry(out: &mut String, map: &str, rule: &str, prefix_list: Option<&(&str, String)>) {
    route_map_head(out, map, rule, prefix_list);
    let _ = writeln!(out, "exit");
}

/// [`route_map_entry`] without its `exit`, for an entry that sets something too.
fn route_map_head(out: &mut String, map: &str, rule: &str, prefix_list: Option<&(&str, String)>) {
    let _ = writeln!(out, "route-map {map} {rule}");
    if let Some((match_kind, list)) = prefix_list {
        let _ = writeln!(out, " match {match_kind} address prefix-list {list}");
    }
}

/// The prefix lists of one family: exactly the announced prefixes, the same or longer (own),
/// and the default route.
fn prefix_lists(
    out: &mut String,
    kind: &str,
    family: &str,
    announced: &[String],
    max_len: u8,
    default: &str,
) {
    for (list, le) in [
        ("announce", String::new()),
        ("own", format!(" le {max_len}")),
    ] {
        for (n, p) in announced.iter().enumerate() {
            let seq = (n + 1) * 10;
            let _ = writeln!(
                out,
                "{kind} prefix-list meshd-{list}{family} seq {seq} permit {p}{le}"
            );
        }
    }
    let _ = writeln!(
        out,
        "{kind} prefix-list meshd-default{family} seq 10 permit {default}"
    );
}

/// The core's lines in one address family, and its end.
fn address_family_neighbor(out: &mut String, core: std::net::Ipv4Addr, family: &str) {
    let _ = writeln!(out, "  neighbor {core} activate");
    let _ = writeln!(out, "  neighbor {core} next-hop-self");
    let _ = writeln!(out, "  neighbor {core} route-map meshd-import{family} in");
    let _ = writeln!(out, "  neighbor {core} route-map meshd-export{family} out");
    let _ = writeln!(out, " exit-address-family");
}
