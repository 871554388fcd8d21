#!/usr/bin/env python3
"""Turns the benchmark's TSV results into the markdown of docs/benchmarks.md.

report.py RESULTS.tsv DURATION        prints the generated section
report.py --merge OUTPUT SECTION.md   writes SECTION.md into OUTPUT, keeping the hand-written
                                      notes below the NOTES_MARKER line of an existing OUTPUT
"""
import datetime
import os
import platform
import sys

NOTES_MARKER = "<!-- Notes below this line are written by hand and kept by the script. -->"
REFERENCES = ("wireguard-go", "boringtun-cli")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def gbps(bps):
    return float(bps) / 1e9


def read_results(path):
    rows = {}
    with open(path) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 5:
                continue
            label = fields[0]
            single, reverse, parallel = (gbps(x) for x in fields[1:4])
            rtt = float(fields[4]) if fields[4] else None
            extra = (fields[5:] + [""] * 6)[:6]
            cpu = [float(x) if x else None for x in extra[0:3]]
            rtt_load = float(extra[3]) if extra[3] else None
            pps = float(extra[4]) if extra[4] else None
            cpu_udp = float(extra[5]) if extra[5] else None
            rows[label] = {"single": single, "reverse": reverse, "parallel": parallel, "rtt": rtt, "cpu": cpu,
                           "rtt_load": rtt_load, "pps": pps, "cpu_udp": cpu_udp}
    return rows


def cpu_per_gbps(row, key, index, duration):
    """CPU (in cores, i.e. CPU-seconds per second) the daemons of both ends use per Gbit/s."""
    seconds = row["cpu"][index]
    if seconds is None or row[key] <= 0:
        return None
    # iperf3 runs `duration` seconds plus the one omitted warm-up second.
    return seconds / (duration + 1) / row[key]


def cpu_per_mpps(row, duration):
    """CPU (cores) both daemons use per million 64-byte packets per second received."""
    if row["cpu_udp"] is None or not row["pps"]:
        return None
    return row["cpu_udp"] / (duration + 1) / (row["pps"] / 1e6)


def fmt(value, digits=2, suffix=""):
    return "n/a" if value is None else f"{value:.{digits}f}{suffix}"


def generate(results_path, duration):
    rows = read_results(results_path)
    out = []
    out.append("# Data plane benchmark")
    out.append("")
    out.append("Written by `scripts/bench-dataplane.sh`; rerun it to refresh this section.")
    out.append("")
    out.append(f"- date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    out.append(f"- kernel: {platform.release()}")
    out.append(f"- CPU: {cpu_model()}, {os.cpu_count()} cores")
    out.append(f"- iperf3 TCP, {duration} s per run (plus 1 s omitted warm-up), between two network "
               "namespaces joined by a veth pair; tunnels at MTU 1420 over IPv4")
    out.append("")
    out.append("| setup | TCP 1 stream (Gbit/s) | TCP reverse (Gbit/s) | TCP 4 streams (Gbit/s) | "
               "ping RTT avg (ms) | CPU per Gbit/s, 1 stream (cores) | CPU per Gbit/s, 4 streams (cores) |")
    out.append("|---|---:|---:|---:|---:|---:|---:|")
    for label, row in rows.items():
        out.append(
            f"| {label} | {fmt(row['single'])} | {fmt(row['reverse'])} | {fmt(row['parallel'])} | "
            f"{fmt(row['rtt'], 3)} | {fmt(cpu_per_gbps(row, 'single', 0, duration))} | "
            f"{fmt(cpu_per_gbps(row, 'parallel', 2, duration))} |"
        )
    out.append("")
    out.append("CPU per Gbit/s is the user+system time of both tunnel daemons (from `/proc/PID/stat`) "
               "per second of the run, divided by the throughput: 1.00 means one core busy per Gbit/s. "
               "The veth row has no daemon (its cost is in the kernel, not counted).")
    out.append("")
    out.append("| setup | 64-byte UDP (kpackets/s received) | CPU per Mpackets/s (cores) | "
               "ping RTT idle (ms) | idle RTT added over the veth (ms) | ping RTT during 1-stream TCP (ms) |")
    out.append("|---|---:|---:|---:|---:|---:|")
    veth_rtt = rows.get("veth", {}).get("rtt")
    for label, row in rows.items():
        added = row["rtt"] - veth_rtt if row["rtt"] is not None and veth_rtt is not None and label != "veth" else None
        out.append(
            f"| {label} | {fmt(row['pps'] / 1e3 if row['pps'] else None, 0)} | {fmt(cpu_per_mpps(row, duration))} | "
            f"{fmt(row['rtt'], 3)} | {fmt(added, 3)} | {fmt(row['rtt_load'], 3)} |"
        )
    out.append("")
    out.append("64-byte UDP is `iperf3 -u -l 64 -b 0` (92-byte IP packets, sent as fast as one iperf3 "
               "client can): what the server received per second, losses excluded. The RTT under load is "
               "ping every 50 ms during the single-stream TCP run, from the sending side.")
    out.append("")
    meshd_rows = [label for label in rows if label.startswith("meshd")]
    if meshd_rows:
        refs = [rows[r] for r in REFERENCES if r in rows]
        keys = ("single", "reverse", "parallel", "pps")
        out.append("| ratio | 1 stream | reverse | 4 streams | 64-byte UDP |")
        out.append("|---|---:|---:|---:|---:|")
        for label in meshd_rows:
            row = rows[label]
            if refs:
                best = {k: max((r[k] or 0) for r in refs) for k in keys}
                out.append(f"| {label} / best userspace reference | " + " | ".join(
                    fmt(row[k] / best[k] if best[k] and row[k] else None, 2, "x") for k in keys) + " |")
            if "veth" in rows:
                veth = rows["veth"]
                out.append(f"| {label} / veth | " + " | ".join(
                    fmt(row[k] / veth[k] if veth[k] and row[k] else None, 2, "x") for k in keys) + " |")
        out.append("")
    return "\n".join(out) + "\n"


def merge(output_path, section_path):
    with open(section_path) as f:
        section = f.read()
    notes = ""
    if os.path.exists(output_path):
        with open(output_path) as f:
            existing = f.read()
        if NOTES_MARKER in existing:
            notes = existing.split(NOTES_MARKER, 1)[1]
    tmp = output_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(section + "\n" + NOTES_MARKER + (notes if notes else "\n"))
    os.replace(tmp, output_path)


def main(argv):
    if len(argv) == 4 and argv[1] == "--merge":
        merge(argv[2], argv[3])
    elif len(argv) == 3:
        sys.stdout.write(generate(argv[1], int(argv[2])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
