//! The wg-quick file (Linux, OpenWrt): the tunnel only. `Table = off`, so wg-quick adds no
//! route for `AllowedIPs`: routes come from BGP (the `bird` or `frr` export). The private key
//! is not in the file: PostUp reads it from a root-only file on the router.

use std::fmt::Write as _;

use super::{Format, Header, RouterExport, TUNNEL_INTERFACE, header, join, one_line};

pub(super) fn render(view: &RouterExport) -> String {
    let key_file = view.key_file();
    let mut out = header(
        view,
        &Header {
            format: Format::WgQuick,
            comment: "#",
            title: "wg-quick configuration (Linux, OpenWrt) of the tunnel to the core",
            before: vec![
                format!(
                    "Make this router's key pair, and give the public key it prints to the core's\n\
                     admin (`meshd router add TOKEN --wg-key PUBLIC_KEY` on {core}):\n  \
                     umask 077; wg genkey > {key_file}; wg pubkey < {key_file}\n\
                     (If meshd made the key pair, put the private key it printed in {key_file}.)",
                    core = one_line(&view.core.name),
                ),
                format!(
                    "Save this file as /etc/wireguard/{TUNNEL_INTERFACE}.conf (the file name is the\n\
                     interface name, which the BIRD and FRR exports use) and bring it up:\n  \
                     wg-quick up {TUNNEL_INTERFACE}     (or: systemctl enable --now wg-quick@{TUNNEL_INTERFACE})"
                ),
                "Run BGP on the tunnel: `meshd export bird` or `meshd export frr`.".to_string(),
                "Let the router forward between its LANs and the mesh (see Forwarding below)."
                    .to_string(),
            ],
        },
    );
    let tunnel6 = view.tunnel6();
    let mut addresses = vec![format!("{}/32", view.router.router_id)];
    if let Some(t6) = tunnel6 {
        addresses.push(format!("{}/128", t6.router));
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "[Interface]");
    let _ = writeln!(
        out,
        "# This router's tunnel addresses; {} is also its BGP router id.",
        view.router.router_id
    );
    let _ = writeln!(out, "Address = {}", join(&addresses));
    let _ = writeln!(out, "MTU = {}", view.mtu);
    if view.default_only() {
        let _ = writeln!(
            out,
            "# Everything goes through the tunnel: the core sends this router only the default\n\
             # routes (send = \"default\" on the core). wg-quick routes AllowedIPs in a table of\n\
             # its own and marks the tunnel's own packets, which keep the host's default route;\n\
             # BGP (bird, frr) carries this router's prefixes to the core and keeps the core's\n\
             # default out of the kernel."
        );
        let _ = writeln!(out, "Table = auto");
    } else {
        let _ = writeln!(
            out,
            "# No routes from AllowedIPs: the routes to the mesh come from BGP."
        );
        let _ = writeln!(out, "Table = off");
    }
    let _ = writeln!(
        out,
        "# The private key stays on this router, in a file only root can read."
    );
    let _ = writeln!(out, "PostUp = wg set %i private-key {key_file}");
    let _ = writeln!(
        out,
        "# The core's tunnel addresses, so the BGP session can come up before any route exists."
    );
    let _ = writeln!(
        out,
        "PostUp = ip -4 route add {}/32 dev %i",
        view.core.router_id
    );
    if let Some(t6) = tunnel6 {
        let _ = writeln!(out, "PostUp = ip -6 route add {}/128 dev %i", t6.core);
    }
    let _ = writeln!(
        out,
        "# Forwarding: the router must forward between its LANs and the mesh. Most routers\n\
         # already do; otherwise set it once, e.g. in /etc/sysctl.d/, or uncomment these lines:\n\
         # PostUp = sysctl -q -w net.ipv4.ip_forward=1"
    );
    if tunnel6.is_some() {
        let _ = writeln!(
            out,
            "# PostUp = sysctl -q -w net.ipv6.conf.all.forwarding=1"
        );
    }
    let _ = writeln!(
        out,
        "# A firewall must let the mesh ({}) and its members' LANs in and out\n\
         # of {TUNNEL_INTERFACE}, accept TCP port 179 from {} on it, and not masquerade\n\
         # what leaves through it, so the mesh sees the LANs' own addresses.",
        join(view.mesh_pools.iter().map(ToString::to_string)),
        view.core.router_id
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "[Peer]");
    let _ = writeln!(
        out,
        "# Core {} of the mesh {}.",
        one_line(&view.core.name),
        one_line(&view.mesh_name)
    );
    let _ = writeln!(out, "PublicKey = {}", view.core.wireguard_public_key);
    let _ = writeln!(out, "Endpoint = {}", one_line(&view.core.endpoint));
    if !view.core.other_endpoints.is_empty() {
        let _ = writeln!(
            out,
            "# If that endpoint stops answering, use one of: {}.",
            join(view.core.other_endpoints.iter().map(|e| one_line(e)))
        );
    }
    let _ = writeln!(
        out,
        "# Everything: BGP decides what goes into the tunnel, and the core forwards packets\n\
         # from the whole mesh."
    );
    let _ = writeln!(out, "AllowedIPs = 0.0.0.0/0, ::/0");
    let _ = writeln!(
        out,
        "# This router starts the tunnel and keeps its NAT mapping open."
    );
    let _ = writeln!(out, "PersistentKeepalive = {}", view.keepalive_secs);
    out
}
