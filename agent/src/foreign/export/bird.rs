//! A complete BIRD 2 `bird.conf`: the router's own prefixes as static routes that stay inside
//! BIRD (announced, never installed), the core's tunnel addresses as device routes BGP's next
//! hops resolve through, kernel protocols that install only what BGP learnt, and the session
//! with its filters.

use std::fmt::Write as _;

use super::{Format, Header, RouterExport, TUNNEL_INTERFACE, header, join, one_line, tunnel_first};

pub(super) fn render(view: &RouterExport) -> String {
    let mut out = header(
        view,
        &Header {
            format: Format::Bird,
            comment: "#",
            title: "BIRD 2 configuration (bird.conf)",
            before: vec![
                tunnel_first(view),
                "Save this file as /etc/bird/bird.conf (it replaces the whole configuration; to\n\
                 merge it into yours, keep one `router id` and one kernel protocol per table),\n\
                 check it with `bird -p -c /etc/bird/bird.conf`, then `birdc configure`."
                    .to_string(),
                format!(
                    "`birdc show protocols` shows meshd_core Established once the core ({})\n\
                     has admitted this router.",
                    one_line(&view.core.name)
                ),
            ],
        },
    );
    let announce4 = view.announces4();
    let announce6 = view.announces6();
    let tunnel6 = view.tunnel6();
    let exact = |p: &dyn std::fmt::Display| p.to_string();
    let or_longer = |p: &dyn std::fmt::Display| format!("{p}+");

    let _ = writeln!(out);
    let _ = writeln!(out, "log syslog all;");
    let _ = writeln!(
        out,
        "\n# The router id must be this router's tunnel address: the core reflects its routes with\n\
         # ORIGINATOR_ID set from it, and every member checks that against its certificate."
    );
    let _ = writeln!(out, "router id {};", view.router.router_id);

    let _ = writeln!(
        out,
        "\n# What this router announces, exactly, and what it never takes from the mesh: its own\n\
         # prefixes and anything inside them."
    );
    let _ = writeln!(
        out,
        "define MESHD_ANNOUNCE4 = [ {} ];",
        join(announce4.iter().map(|p| exact(p)))
    );
    let _ = writeln!(
        out,
        "define MESHD_OWN4 = [ {} ];",
        join(announce4.iter().map(|p| or_longer(p)))
    );
    if !announce6.is_empty() {
        let _ = writeln!(
            out,
            "define MESHD_ANNOUNCE6 = [ {} ];",
            join(announce6.iter().map(|p| exact(p)))
        );
        let _ = writeln!(
            out,
            "define MESHD_OWN6 = [ {} ];",
            join(announce6.iter().map(|p| or_longer(p)))
        );
    }

    let _ = writeln!(out, "\n# Interfaces, for the kernel and static protocols.");
    let _ = writeln!(out, "protocol device {{\n}}");

    let _ = writeln!(
        out,
        "\n# The announced prefixes, as blackhole routes that stay inside BIRD (the kernel\n\
         # protocols below export only BGP routes): BGP announces them whether or not a LAN is up,\n\
         # as meshd does."
    );
    let _ = writeln!(out, "protocol static meshd_announce4 {{\n    ipv4;");
    for p in &announce4 {
        let _ = writeln!(out, "    route {p} blackhole;");
    }
    let _ = writeln!(out, "}}");
    if !announce6.is_empty() {
        let _ = writeln!(out, "protocol static meshd_announce6 {{\n    ipv6;");
        for p in &announce6 {
            let _ = writeln!(out, "    route {p} blackhole;");
        }
        let _ = writeln!(out, "}}");
    }

    let _ = writeln!(
        out,
        "\n# The core's tunnel addresses are on the tunnel: the next hops of its routes resolve\n\
         # through these (also inside BIRD only; wg-quick's PostUp puts them in the kernel)."
    );
    let _ = writeln!(
        out,
        "protocol static meshd_core4 {{\n    ipv4;\n    route {}/32 via \"{TUNNEL_INTERFACE}\";\n}}",
        view.core.router_id
    );
    if let Some(t6) = tunnel6 {
        let _ = writeln!(
            out,
            "protocol static meshd_core6 {{\n    ipv6;\n    route {}/128 via \"{TUNNEL_INTERFACE}\";\n}}",
            t6.core
        );
    }

    let kernel_export = if view.default_only() {
        let _ = writeln!(
            out,
            "\n# The kernel gets nothing from BIRD: the core sends only its default routes, and\n\
             # wg-quick (Table = auto) already routes everything through the tunnel while keeping\n\
             # the tunnel's own packets on the host's default route; the core's default in the\n\
             # main table would pull those packets into the tunnel too."
        );
        "export none;"
    } else {
        let _ = writeln!(
            out,
            "\n# The kernel gets what BGP learnt, nothing else, and BIRD reads nothing back from it."
        );
        "export where source = RTS_BGP;"
    };
    let _ = writeln!(
        out,
        "protocol kernel meshd_kernel4 {{\n    ipv4 {{\n        import none;\n        \
         {kernel_export}\n    }};\n}}"
    );
    if tunnel6.is_some() {
        let _ = writeln!(
            out,
            "protocol kernel meshd_kernel6 {{\n    ipv6 {{\n        import none;\n        \
             {kernel_export}\n    }};\n}}"
        );
    }

    let families: Vec<(&str, &str)> = if tunnel6.is_some() {
        vec![("4", "0.0.0.0/0"), ("6", "::/0")]
    } else {
        vec![("4", "0.0.0.0/0")]
    };
    for (family, default) in &families {
        if view.default_only() {
            let _ = writeln!(
                out,
                "\n# From the core: its default route {default}, nothing else (send = \"default\" on\n\
                 # the core); it shows the session works and stays inside BIRD."
            );
            let _ = writeln!(
                out,
                "filter meshd_import{family} {{\n    if net = {default} then accept;\n    reject;\n}}"
            );
        } else {
            let _ = writeln!(
                out,
                "\n# From the core: everything but this router's own prefixes, and no default route: a\n\
                 # mesh exit's {default} would pull this router's Internet traffic, the tunnel's own\n\
                 # packets included, into the tunnel. Delete the {default} line to use the exit, once\n\
                 # the route to the core's endpoint no longer depends on the default route."
            );
            let _ = writeln!(
                out,
                "filter meshd_import{family} {{\n    if net ~ MESHD_OWN{family} then reject;\n    \
                 if net = {default} then reject;\n    accept;\n}}"
            );
        }
        let _ = writeln!(
            out,
            "# To the core: exactly the announced prefixes (the core refuses anything else anyway)."
        );
        let _ = writeln!(
            out,
            "filter meshd_export{family} {{\n    \
             if source = RTS_STATIC && net ~ MESHD_ANNOUNCE{family} then accept;\n    reject;\n}}"
        );
    }

    let _ = writeln!(
        out,
        "\n# The session, as the core runs it: iBGP (multihop, next hops resolved through the routes\n\
         # above) between the tunnel addresses, both ends connecting and listening; one IPv4\n\
         # session carries both families; no password (WireGuard authenticates the core)."
    );
    let _ = writeln!(out, "protocol bgp meshd_core {{");
    let _ = writeln!(
        out,
        "    description \"meshd core {} of mesh {}\";",
        bird_string(&view.core.name),
        bird_string(&view.mesh_name)
    );
    let _ = writeln!(out, "    local {} as {};", view.router.router_id, view.asn);
    let _ = writeln!(out, "    neighbor {} as {};", view.core.router_id, view.asn);
    let _ = writeln!(out, "    hold time {};", view.hold_time_secs);
    let _ = writeln!(out, "    keepalive time {};", view.bgp_keepalive_secs());
    let _ = writeln!(
        out,
        "    # Retry soon: the first attempt often comes before the tunnel's first handshake."
    );
    let _ = writeln!(out, "    connect retry time 5;");
    let _ = writeln!(
        out,
        "    ipv4 {{\n        gateway recursive;\n        next hop self;\n        \
         import filter meshd_import4;\n        export filter meshd_export4;\n    }};"
    );
    if let Some(t6) = tunnel6 {
        let _ = writeln!(
            out,
            "    # IPv6 routes on an IPv4 session need an IPv6 next hop: this router's on the tunnel."
        );
        let _ = writeln!(
            out,
            "    ipv6 {{\n        gateway recursive;\n        next hop self;\n        \
             next hop address {};\n        import filter meshd_import6;\n        \
             export filter meshd_export6;\n    }};",
            t6.router
        );
    }
    let _ = writeln!(out, "}}");
    out
}

/// `text` inside a BIRD string literal.
fn bird_string(text: &str) -> String {
    one_line(text).replace('\\', "\\\\").replace('"', "\\\"")
}
