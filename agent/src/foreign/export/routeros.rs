//! A RouterOS 7 script, for RouterOS 7.20 and newer (the first with `/routing bgp instance`;
//! the header says what to change on 7.1 to 7.19). There is no RouterOS to run here: the
//! syntax follows MikroTik's manual (help.mikrotik.com, ROS space: "WireGuard", "BGP" with its
//! instance, connection and template menus, "Route Selection and Filters" / routing filter
//! rules, "IP Routing"), checked as docs/foreign-routers.md says, and the export tests hold
//! every command to the menus and properties that manual documents.
//!
//! The WireGuard interface keeps the private key RouterOS made when it was created: the script
//! creates the interface only if it is missing, so pasting it again keeps the key the core
//! admitted.

use std::fmt::Write as _;

use super::{Format, Header, RouterExport, TUNNEL_INTERFACE, header, one_line, split_endpoint};

/// The address lists `output.network` announces from.
const ANNOUNCE_LIST: &str = "meshd-announce";
const IN_CHAIN: &str = "meshd-in";
const OUT_CHAIN: &str = "meshd-out";
const INSTANCE: &str = "meshd";

pub(super) fn render(view: &RouterExport) -> String {
    let core_name = one_line(&view.core.name);
    let mut out = header(
        view,
        &Header {
            format: Format::RouterOs,
            comment: "#",
            title: "RouterOS 7 script (RouterOS 7.20 or newer)",
            before: vec![
                format!(
                    "Create the tunnel interface; RouterOS makes its key pair, and the private key\n\
                     never leaves the router:\n  \
                     /interface wireguard add name={TUNNEL_INTERFACE} mtu={mtu}\n  \
                     /interface wireguard print where name={TUNNEL_INTERFACE}\n\
                     Give the public-key it shows to the core's admin (`meshd router add TOKEN\n\
                     --wg-key PUBLIC_KEY` on {core_name}). (If meshd made the key pair instead, set\n\
                     it: /interface wireguard set {TUNNEL_INTERFACE} private-key=\"PRIVATE_KEY\".)",
                    mtu = view.mtu,
                ),
                "Paste the rest of this file into a terminal (or upload it and `/import file-name=...`).\n\
                 It adds, so remove an earlier meshd export's entries (comment \"meshd ...\") first."
                    .to_string(),
                format!(
                    "Let the core's BGP session in: see Firewall at the end. `/routing bgp session\n\
                     print` shows it established once {core_name} has admitted this router."
                ),
                format!(
                    "On RouterOS 7.1 to 7.19 (no /routing bgp instance menu): leave out the\n\
                     instance line, and on the connection write router-id={} instead of\n\
                     instance={INSTANCE}, and address-families= instead of afi=.",
                    view.router.router_id
                ),
            ],
        },
    );
    if view.default_only() {
        out = with_default_only_steps(out, view);
    }
    let announce4 = view.announces4();
    let announce6 = view.announces6();
    let tunnel6 = view.tunnel6();
    let mesh = one_line(&view.mesh_name);
    let tag = |what: &str| ros_string(&format!("meshd {mesh}: {what}"));

    let _ = writeln!(out, "\n# --- The tunnel to core {core_name}");
    let _ = writeln!(
        out,
        ":if ([:len [/interface wireguard find where name=\"{TUNNEL_INTERFACE}\"]] = 0) do={{ \
         /interface wireguard add name=\"{TUNNEL_INTERFACE}\" }}"
    );
    let _ = writeln!(
        out,
        "/interface wireguard set [find where name=\"{TUNNEL_INTERFACE}\"] mtu={} comment={}",
        view.mtu,
        tag("tunnel to its core")
    );
    let (host, port) = split_endpoint(&view.core.endpoint);
    let _ = writeln!(
        out,
        "# allowed-address is everything: BGP decides what goes into the tunnel, and the core\n\
         # forwards packets from the whole mesh."
    );
    if !view.core.other_endpoints.is_empty() {
        let _ = writeln!(
            out,
            "# If {} stops answering, set endpoint-address and endpoint-port to one of:\n{}",
            one_line(&view.core.endpoint),
            super::wrap_list(
                "#   ",
                &view
                    .core
                    .other_endpoints
                    .iter()
                    .map(|e| one_line(e))
                    .collect::<Vec<_>>()
            )
        );
    }
    let _ = writeln!(out, "/interface wireguard peers");
    let _ = writeln!(
        out,
        "add interface={TUNNEL_INTERFACE} public-key=\"{}\" endpoint-address={}{} \
         allowed-address=0.0.0.0/0,::/0 persistent-keepalive={}s comment={}",
        ros_string_body(&view.core.wireguard_public_key),
        ros_value(host),
        port.map(|p| format!(" endpoint-port={p}"))
            .unwrap_or_default(),
        view.keepalive_secs,
        tag(&format!("core {core_name}"))
    );

    let _ = writeln!(
        out,
        "\n# --- Tunnel addresses; {} is also the BGP router id",
        view.router.router_id
    );
    let _ = writeln!(out, "/ip address");
    let _ = writeln!(
        out,
        "add address={}/32 interface={TUNNEL_INTERFACE} comment={}",
        view.router.router_id,
        tag("router id and BGP session address")
    );
    if let Some(t6) = tunnel6 {
        let _ = writeln!(out, "/ipv6 address");
        let _ = writeln!(
            out,
            "add address={}/128 interface={TUNNEL_INTERFACE} advertise=no comment={}",
            t6.router,
            tag("next hop of the IPv6 routes it announces")
        );
    }

    let _ = writeln!(
        out,
        "\n# --- Routes: the core's tunnel addresses (the session runs to them and the next hops of\n\
         # its routes resolve through them), and a blackhole for each announced prefix (BGP sends\n\
         # only networks that have a route; distance 254 lets any real route win)"
    );
    let _ = writeln!(out, "/ip route");
    let _ = writeln!(
        out,
        "add dst-address={}/32 gateway={TUNNEL_INTERFACE} comment={}",
        view.core.router_id,
        tag(&format!("core {core_name}"))
    );
    for p in &announce4 {
        let _ = writeln!(
            out,
            "add dst-address={p} blackhole distance=254 comment={}",
            tag("announced")
        );
    }
    if let Some(t6) = tunnel6 {
        let _ = writeln!(out, "/ipv6 route");
        let _ = writeln!(
            out,
            "add dst-address={}/128 gateway={TUNNEL_INTERFACE} comment={}",
            t6.core,
            tag(&format!("core {core_name}"))
        );
        for p in &announce6 {
            let _ = writeln!(
                out,
                "add dst-address={p} blackhole distance=254 comment={}",
                tag("announced")
            );
        }
    }

    let _ = writeln!(
        out,
        "\n# --- What BGP announces (output.network): exactly this router's prefixes"
    );
    let _ = writeln!(out, "/ip firewall address-list");
    for p in &announce4 {
        let _ = writeln!(
            out,
            "add list={ANNOUNCE_LIST} address={p} comment={}",
            tag("announced")
        );
    }
    if !announce6.is_empty() {
        let _ = writeln!(out, "/ipv6 firewall address-list");
        for p in &announce6 {
            let _ = writeln!(
                out,
                "add list={ANNOUNCE_LIST} address={p} comment={}",
                tag("announced")
            );
        }
    }

    let _ = writeln!(
        out,
        "{}",
        if view.default_only() {
            "\n# --- Filters. From the core: its default routes, nothing else (send = \"default\" on the\n\
             # core; see the steps above for what makes them carry this router's traffic).\n\
             # To the core: exactly the announced prefixes (the core refuses anything else anyway)."
        } else {
            "\n# --- Filters. From the core: everything but this router's own prefixes, and no default\n\
         # route: a mesh exit's 0.0.0.0/0 and ::/0 would pull this router's Internet traffic, the\n\
         # tunnel's own packets included, into the tunnel (remove those two rules to use the exit,\n\
         # once the route to the core's endpoint no longer depends on the default route).\n\
         # To the core: exactly the announced prefixes (the core refuses anything else anyway)."
        }
    );
    let _ = writeln!(out, "/routing filter rule");
    let own = announce4
        .iter()
        .map(ToString::to_string)
        .chain(announce6.iter().map(ToString::to_string));
    if view.default_only() {
        for default in view.defaults() {
            let _ = writeln!(
                out,
                "add chain={IN_CHAIN} rule=\"if (dst == {default}) {{ accept }}\" comment={}",
                tag("the core's default route")
            );
        }
        let _ = writeln!(
            out,
            "add chain={IN_CHAIN} rule=\"reject\" comment={}",
            tag("nothing else")
        );
    } else {
        for p in own.clone() {
            let _ = writeln!(
                out,
                "add chain={IN_CHAIN} rule=\"if (dst in {p}) {{ reject }}\" comment={}",
                tag("own prefix")
            );
        }
        for default in view.defaults() {
            let _ = writeln!(
                out,
                "add chain={IN_CHAIN} rule=\"if (dst == {default}) {{ reject }}\" comment={}",
                tag("no default route")
            );
        }
        let _ = writeln!(
            out,
            "add chain={IN_CHAIN} rule=\"accept\" comment={}",
            tag("the mesh's routes")
        );
    }
    for p in own {
        let _ = writeln!(
            out,
            "add chain={OUT_CHAIN} rule=\"if (dst == {p}) {{ accept }}\" comment={}",
            tag("announced")
        );
    }
    let _ = writeln!(
        out,
        "add chain={OUT_CHAIN} rule=\"reject\" comment={}",
        tag("nothing else")
    );

    let afi = if tunnel6.is_some() { "ip,ipv6" } else { "ip" };
    let _ = writeln!(
        out,
        "\n# --- The session, as the core runs it: iBGP between the tunnel addresses, both ends\n\
         # connecting and listening; one IPv4 session carries both families; next hop self; no\n\
         # tcp-md5-key (WireGuard authenticates the core). The router id must be this router's\n\
         # tunnel address: the core reflects its routes with ORIGINATOR_ID set from it, and every\n\
         # member checks that against its certificate."
    );
    let _ = writeln!(out, "/routing bgp instance");
    let _ = writeln!(
        out,
        "add name={INSTANCE} as={} router-id={} comment={}",
        view.asn,
        view.router.router_id,
        tag("iBGP with its core")
    );
    let _ = writeln!(out, "/routing bgp connection");
    let _ = writeln!(
        out,
        "add name={} instance={INSTANCE} as={asn} local.role=ibgp local.address={} \
         remote.address={} remote.as={asn} connect=yes listen=yes hold-time={}s \
         keepalive-time={}s afi={afi} nexthop-choice=force-self output.network={ANNOUNCE_LIST} \
         output.filter-chain={OUT_CHAIN} input.filter={IN_CHAIN} comment={}",
        ros_value(&format!("meshd-{core_name}")),
        view.router.router_id,
        view.core.router_id,
        view.hold_time_secs,
        view.bgp_keepalive_secs(),
        tag(&format!("core {core_name}")),
        asn = view.asn,
    );

    let mesh_pools = super::join(view.mesh_pools.iter().map(ToString::to_string));
    let _ = writeln!(
        out,
        "\n# --- Firewall (not applied by this script; check against your rules)\n\
         # The default configuration drops input from interfaces outside the LAN interface list,\n\
         # and the core's BGP session arrives on {TUNNEL_INTERFACE}. Allow it:\n\
         #   /ip firewall filter add chain=input in-interface={TUNNEL_INTERFACE} protocol=tcp dst-port=179 \
         action=accept place-before=0 comment=\"meshd: BGP from core {core}\"\n\
         # (or add {TUNNEL_INTERFACE} to the LAN list: /interface list member add list=LAN \
         interface={TUNNEL_INTERFACE}).\n\
         # Forwarding between the LANs and the mesh ({mesh_pools} and the members' LANs)\n\
         # passes the default forward chain as long as {TUNNEL_INTERFACE} is not in the WAN list;\n\
         # keep it out of the WAN list and of any masquerade rule, so the mesh sees the LANs'\n\
         # own addresses. The tunnel is started from this router (persistent-keepalive), so\n\
         # no port forwarding is needed for it.",
        core = ros_string_body(&core_name),
    );
    out
}

/// `text` as a quoted RouterOS string: `"`, `\` and `$` (variable substitution) escaped.
fn ros_string(text: &str) -> String {
    format!("\"{}\"", ros_string_body(text))
}

fn ros_string_body(text: &str) -> String {
    let mut out = String::new();
    for ch in one_line(text).chars() {
        if matches!(ch, '"' | '\\' | '$') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// A value as is when it needs no quotes (names, addresses), quoted otherwise.
fn ros_value(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '.' | '-' | '_' | ':'));
    if plain {
        text.to_string()
    } else {
        ros_string(text)
    }
}

/// The steps a RouterOS router needs before the core's default route (iBGP, distance 200)
/// can carry its traffic: its own default must lose, and the tunnel's packets to the core
/// must keep the ISP's way out. Both depend on the router's uplink, which the core does not
/// know, so they are written as steps with the values to fill in, after the header's steps.
fn with_default_only_steps(mut out: String, view: &RouterExport) -> String {
    let (host, _) = split_endpoint(&view.core.endpoint);
    let _ = writeln!(
        out,
        "#\n\
         # The core sends this router only its default routes (send = \"default\" on the core),\n\
         # as a full tunnel. RouterOS prefers its own default route (distance 1) to one from\n\
         # iBGP (200), so before the core's can carry traffic:\n\
         #   a. Keep the tunnel's own packets on the ISP: a route to the core's endpoint\n\
         #      {host} (its address, if that is a name) through the ISP's gateway:\n\
         #        /ip route add dst-address=ENDPOINT-ADDRESS/32 gateway=ISP-GATEWAY\n\
         #   b. Let the core's default win while the session is up, and the ISP's take over\n\
         #      when it is down: raise the distance of the router's own default route above\n\
         #      200, e.g. /ip dhcp-client set [find] default-route-distance=210.",
        host = one_line(host)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_and_escaped() {
        assert_eq!(ros_string("a \"b\" $c \\d"), "\"a \\\"b\\\" \\$c \\\\d\"");
        assert_eq!(ros_value("vpn.example.net"), "vpn.example.net");
        assert_eq!(ros_value("2001:db8::1"), "2001:db8::1");
        assert_eq!(ros_value("two words"), "\"two words\"");
        assert_eq!(ros_string("line\nbreak"), "\"line break\"");
    }
}
