#!/usr/bin/env python3
"""Turns the output of the failover benchmark into the "Path failover" section of
docs/benchmarks.md (used by scripts/bench-failover.sh).

failover_report.py TEST_OUTPUT BENCH_OUTPUT LOAD_BEFORE LOAD_AFTER BUILD
    prints the section: TEST_OUTPUT holds the `bench-failover:` and `bench-idle:` lines of
    the netns test, BENCH_OUTPUT criterion's output of `cargo bench --bench prober` (or an
    empty file), LOAD_* the 1-minute load averages around the run, BUILD release or debug
failover_report.py --merge OUTPUT SECTION.md
    writes SECTION.md into OUTPUT between the path-failover markers (appended at the end
    when the markers are not there yet); the rest of OUTPUT is kept
"""
import datetime
import os
import platform
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import cpu_model  # noqa: E402  (the data plane report's helper)
import sections  # noqa: E402

GOAL_MEDIAN = 0.5
GOAL_WORST = 1.0
GOAL_IDLE = 100.0
KINDS = {"link-down": "link down (alpha's ISP1 link)", "isp-drop": "ISP1 silently drops everything"}
UNITS = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def fields(line, prefix):
    """The key=value pairs of one of the test's lines, or None for other lines."""
    if not line.startswith(prefix):
        return None
    return dict(item.split("=", 1) for item in line[len(prefix):].split() if "=" in item)


def read_test(path):
    cuts, idle, meta = {}, {}, {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            cut = fields(line, "bench-failover:")
            if cut is not None:
                cuts.setdefault(cut["kind"], []).append(cut)
                continue
            item = fields(line, "bench-idle:")
            if item is None:
                continue
            if "class" in item:
                idle[(item["class"], item["dir"])] = (
                    int(item["packets"]), int(item["l3_bytes"]), int(item["udp_payload_bytes"]))
            else:
                meta.update(item)
    return cuts, idle, meta


def read_bench(path):
    """(seconds per iteration, probes per virtual second) from criterion's output."""
    text = open(path).read() if os.path.exists(path) else ""
    time = re.search(r"time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", text)
    probes = re.search(r"steady state: ([\d.]+) probes per virtual second", text)
    seconds = float(time.group(1)) * UNITS[time.group(2)] if time else None
    return seconds, float(probes.group(1)) if probes else None


def ratio(value, reference):
    return f"{value / reference:.2f}x"


def failover_rows(cuts):
    out = [
        "| cut | cuts | median gap (s) | worst gap (s) | median / goal (0.5 s) | worst / goal (1 s) "
        "| cuts where each node switched exactly twice (away, back) "
        "| both failed back after the restore, median (s) "
        "| worst gap during failback (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    sorted_gaps = []
    for kind, label in KINDS.items():
        rows = cuts.get(kind, [])
        if not rows:
            continue
        gaps = sorted(float(r["gap"]) for r in rows)
        median, worst = statistics.median(gaps), gaps[-1]
        clean = sum(1 for r in rows if r["alpha_switches"] == "2" and r["beta_switches"] == "2")
        failback_after = statistics.median(
            max(float(r["alpha_back"]), float(r["beta_back"])) for r in rows)
        failback_gap = max(float(r["failback_gap"]) for r in rows)
        out.append(
            f"| {label} | {len(rows)} | {median:.3f} | {worst:.3f} | {ratio(median, GOAL_MEDIAN)} "
            f"| {ratio(worst, GOAL_WORST)} | {clean} of {len(rows)} | {failback_after:.1f} "
            f"| {failback_gap:.3f} |")
        sorted_gaps.append(f"- {label}, every gap sorted (s): " + " ".join(f"{g:.3f}" for g in gaps))
    return out, sorted_gaps


def rate(idle, seconds, keys, column):
    return sum(idle.get(key, (0, 0, 0))[column] for key in keys) / seconds


def idle_rows(idle, seconds):
    rows = [
        ("probe requests alpha sends (its own probing of beta)", [("probe-request", "out")]),
        ("probe replies alpha receives (beta answering them)", [("probe-reply", "in")]),
        ("probe requests alpha receives (beta's probing of alpha)", [("probe-request", "in")]),
        ("probe replies alpha sends", [("probe-reply", "out")]),
        ("WireGuard keepalives, both directions", [("keepalive", "out"), ("keepalive", "in")]),
        ("WireGuard handshakes and cookies, both directions",
         [(k, d) for k in ("handshake", "cookie") for d in ("out", "in")]),
        ("WireGuard data, both directions", [("tunnel-data", "out"), ("tunnel-data", "in")]),
        ("ICMP, both directions", [("icmp", "out"), ("icmp", "in")]),
        ("ARP, both directions", [("arp", "out"), ("arp", "in")]),
    ]
    listed = {key for _, keys in rows for key in keys}
    rows.append(("anything else", [key for key in idle if key not in listed]))
    out = [
        "| on alpha's two uplinks, idle tunnel | packets/s | bytes/s, IP packets | bytes/s, UDP payload |",
        "|---|---:|---:|---:|",
    ]
    for label, keys in rows:
        out.append(f"| {label} | {rate(idle, seconds, keys, 0):.2f} | {rate(idle, seconds, keys, 1):.1f} "
                   f"| {rate(idle, seconds, keys, 2):.1f} |")
    return out


def generate(test_path, bench_path, load_before, load_after, build):
    cuts, idle, meta = read_test(test_path)
    seconds = float(meta.get("seconds", "0")) or None
    iteration, probes = read_bench(bench_path)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "## Path failover",
        "",
        "Written by `scripts/bench-failover.sh` (as root); rerun it to refresh this section.",
        "",
        f"- date: {now}; kernel {platform.release()}; CPU: {cpu_model()}, {os.cpu_count()} cores; "
        f"load average (1 min) {load_before} before the run, {load_after} after it; meshd {build} build",
        "- mesh: the netns test's (`agent/tests/netns/paths.rs`, "
        "`bench_failover_gaps_and_idle_probe_traffic`): cores alpha and beta with two uplinks "
        "each, ISP1 198.51.100.0/24 and ISP2 203.0.113.0/24, each ISP a router namespace, source "
        "rules per uplink; beta is alpha's only peer, with 4 paths (2 local x 2 remote; the two "
        "ISPs do not route to each other, so the cross paths are down). Default `[paths]` "
        "settings: the active path is probed every 100 ms while traffic flows, down after 3 "
        "lost probes; failback after 10 s without loss.",
        "- failover: alpha pings beta's overlay address 20 times a second (`ping -i 0.05 -D`); "
        "on one running mesh (after 4 s of traffic), every cut comes 1.5 s into a 4 s ping and is "
        "undone as the ping ends, 2.5 s after the cut, with a second ping running until both "
        "nodes have logged their failback and 2 s after that; then the next cut follows. The gap is the longest time between two ping replies (ping's receive "
        "timestamps), so it includes up to one ping interval (50 ms) of granularity. Link down "
        "is `ip link set ul1 down` in alpha (routes put back when it comes up); the ISP drop "
        "turns off forwarding in ISP1's router, every link stays up.",
        "",
    ]
    rows, sorted_gaps = failover_rows(cuts)
    out += rows + [""] + sorted_gaps + [""]
    if seconds:
        requests = rate(idle, seconds, [("probe-request", "out")], 1)
        upload = rate(idle, seconds, [("probe-request", "out"), ("probe-reply", "out")], 1)
        both = rate(idle, seconds, [(k, d) for k in ("probe-request", "probe-reply") for d in ("out", "in")], 1)
        cpu = float(meta.get("meshd_cpu_seconds", "0")) / seconds
        out += [
            f"Idle probing: every frame on alpha's two uplinks for {seconds:.0f} s with no traffic "
            "in the tunnel (after the cuts, 5 s after the last ping), counted by a packet socket "
            "in alpha's namespace and classified by the UDP payload's first byte (probes are 64 "
            "bytes of payload, 92 as IPv4 packets; a WireGuard keepalive is 32 bytes of "
            "payload). \"IP packets\" counts from the IP header on, without the 14-byte Ethernet "
            "header.",
            "",
        ]
        out += idle_rows(idle, seconds)
        out += [
            "",
            "| idle probing of one peer (IPv4, IP packet bytes) | bytes/s | goal (bytes/s) | ratio |",
            "|---|---:|---:|---:|",
            f"| requests one node sends for its probing of the peer | {requests:.1f} | {GOAL_IDLE:.0f} "
            f"| {ratio(requests, GOAL_IDLE)} |",
            f"| what one node sends for the peer: its requests and its replies to the peer's "
            f"| {upload:.1f} | {GOAL_IDLE:.0f} | {ratio(upload, GOAL_IDLE)} |",
            f"| all probe traffic between the two, both directions | {both:.1f} | {GOAL_IDLE:.0f} "
            f"| {ratio(both, GOAL_IDLE)} |",
            "",
            f"meshd's own CPU time in alpha over the idle window (one peer, all of the daemon: "
            f"timers, probes, metrics): {cpu * 100:.3f} % of one core.",
            "",
        ]
    if iteration is not None:
        peers = 50
        out += [
            "CPU cost of probing (`cargo bench -p meshd-tunnel --bench prober`, "
            "`tunnel/benches/prober.rs`): the path state machines of 50 peers with 3 paths each, "
            "10 of them with traffic (active path every 100 ms), replies after 10-30 ms, driven "
            "for one second of virtual time (criterion's median). The reference is one "
            "core-second: the ratio is the share of one core that probing 50 peers takes. It "
            "counts the state machine only, not the HMAC of each probe or its system calls.",
            "",
            "| probing 50 peers x 3 paths | CPU per second of probing | per peer | probes sent per second "
            "| reference (one core-second) | ratio |",
            "|---|---:|---:|---:|---:|---:|",
            f"| state machine | {iteration * 1e6:.1f} µs | {iteration * 1e6 / peers:.2f} µs "
            f"| {probes if probes is not None else 'n/a'} | 1 s | {iteration:.6f} ({iteration * 100:.4f} %) |",
            "",
        ]
    out.append("Reproduce: `sudo scripts/bench-failover.sh` (about 15 minutes; `--cuts N`, "
               "`--idle-seconds S`, `--output -` to print only). The normal CI test "
               "(`cargo test -p meshd --test netns_paths`) makes one cut of each kind.")
    return "\n".join(out) + "\n"


def merge(output, section_path):
    sections.merge(output, section_path, "path-failover")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--merge":
        merge(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 6:
        sys.stdout.write(generate(*sys.argv[1:6]))
    else:
        sys.exit(__doc__)
