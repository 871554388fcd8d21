#!/usr/bin/env python3
"""Turns the samples of scripts/bench-soak.sh into the "Soak" section of docs/benchmarks.md.

soak_report.py --samples SAMPLES.tsv --iperf LABEL=IPERF.json [--iperf ...] --interval S
               --max-growth KIB_PER_MIN --load BEFORE AFTER [--note TEXT]
    prints the section. SAMPLES.tsv has one line per daemon and sample: label, side (a sends,
    b receives), seconds since the stream started (0 is just before it), VmRSS in KiB, open
    fds, threads, 1-minute load average. Each IPERF.json is iperf3's -J output of that label's
    stream (-i S).
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import cpu_model  # noqa: E402  (the data plane report's helper)

WARMUP = 60  # seconds: the samples before this are warm-up, not growth
SIDES = {"a": "A (sends)", "b": "B (receives)"}


def read_samples(path):
    daemons = {}
    with open(path) as f:
        for line in f:
            label, side, t, rss, fds, threads, load = line.rstrip("\n").split("\t")
            daemons.setdefault((label, side), []).append(
                {"t": int(t), "rss": int(rss), "fds": int(fds), "threads": int(threads), "load": float(load)})
    return daemons


def slope_per_minute(points):
    """Least-squares slope of (t, value) points, per minute; None with fewer than two."""
    if len(points) < 2:
        return None
    mt = statistics.fmean(t for t, _ in points)
    mv = statistics.fmean(v for _, v in points)
    var = sum((t - mt) ** 2 for t, _ in points)
    if var == 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in points) / var * 60


def analyse(samples):
    """The figures of one daemon's samples (sorted by time)."""
    end_t = samples[-1]["t"]
    start, end = samples[0], samples[-1]
    first_minute = [s for s in samples if 0 < s["t"] <= WARMUP]
    last_minute = [s for s in samples if s["t"] > end_t - WARMUP]
    after_warmup = [s for s in samples if s["t"] >= WARMUP]
    first_vs_last = None
    if first_minute and last_minute and end_t > WARMUP:
        diff = statistics.fmean(s["rss"] for s in last_minute) - statistics.fmean(s["rss"] for s in first_minute)
        # The two minutes' centres are end_t - WARMUP seconds apart.
        first_vs_last = diff / ((end_t - WARMUP) / 60)
    return {
        "seconds": end_t,
        "rss_start": start["rss"],
        "rss_1min": first_minute[-1]["rss"] if first_minute else None,
        "rss_end": end["rss"],
        "rss_max": max(s["rss"] for s in samples),
        "slope": slope_per_minute([(s["t"], s["rss"]) for s in after_warmup]),
        "first_vs_last": first_vs_last,
        "fds": (start["fds"], end["fds"], max(s["fds"] for s in samples),
                max(s["fds"] for s in first_minute) if first_minute else start["fds"]),
        "threads": (start["threads"], end["threads"], max(s["threads"] for s in samples),
                    max(s["threads"] for s in first_minute) if first_minute else start["threads"]),
        "by_minute": [s["rss"] for s in samples if s["t"] % 60 == 0],
    }


def throughput(path, interval):
    """Gbit/s of each full interval of iperf3's stream (a short last interval is left out)."""
    with open(path) as f:
        intervals = json.load(f)["intervals"]
    return [i["sum"]["bits_per_second"] / 1e9 for i in intervals
            if i["sum"]["end"] - i["sum"]["start"] >= interval / 2]


def mib(kib):
    return "n/a" if kib is None else f"{kib / 1024:.1f}"


def signed(value, digits=0):
    return "n/a" if value is None else f"{value:+.{digits}f}"


def generate(args):
    daemons = read_samples(args.samples)
    streams = dict(item.split("=", 1) for item in args.iperf)
    loads = [s["load"] for samples in daemons.values() for s in samples]
    labels = list(streams)
    figures = {key: analyse(sorted(samples, key=lambda s: s["t"])) for key, samples in daemons.items()}
    rates = {label: throughput(path, args.interval) for label, path in streams.items()}

    out = ["## Soak: memory, file descriptors and threads under a long stream", ""]
    out.append("Written by `scripts/bench-soak.sh` (as root); rerun it to refresh this section.")
    out.append("")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out.append(f"- date: {now}; kernel {platform.release()}; CPU: {cpu_model()}, {os.cpu_count()} cores; "
               f"load average (1 min) {args.load[0]} before the run, {args.load[1]} after it, "
               f"{min(loads):.2f} to {max(loads):.2f} (median {statistics.median(loads):.2f}) at the samples; "
               "meshd release build")
    lengths = ", ".join(f"{label} {figures[(label, 'a')]['seconds']} s" for label in labels)
    out.append("- setup: two namespaces joined by a veth pair (198.51.100.1/24 and .2), the underlay of "
               "`scripts/bench-dataplane.sh`; two meshd cores (default settings), then for reference a "
               "wireguard-go pair configured with `wg`, one after the other in the same run; one iperf3 TCP "
               f"stream from A to B through the tunnel ({lengths}); every {args.interval} s each daemon's "
               "VmRSS (`/proc/PID/status`), open fds (`/proc/PID/fd`), threads, and the stream's throughput "
               "in that interval (iperf3's own intervals). \"start\" is the sample just before the stream, "
               "with the tunnel up and idle. WireGuard sessions rekey every 120 s: meshd's stream "
               f"went through {figures[('meshd', 'a')]['seconds'] // 120} rekeys.")
    if args.note:
        out.append(f"- {args.note}")
    out.append("")
    out.append("| daemon | RSS start (MiB) | RSS at 1 min | RSS end | RSS max | RSS growth after the first "
               "minute (KiB/min, least squares) | last minute vs first (KiB/min) | fds start / end (max) | "
               "threads start / end (max) |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label in labels:
        for side in SIDES:
            f = figures.get((label, side))
            if not f:
                continue
            out.append(
                f"| {label} {SIDES[side]} | {mib(f['rss_start'])} | {mib(f['rss_1min'])} | {mib(f['rss_end'])} "
                f"| {mib(f['rss_max'])} | {signed(f['slope'])} | {signed(f['first_vs_last'])} "
                f"| {f['fds'][0]} / {f['fds'][1]} ({f['fds'][2]}) "
                f"| {f['threads'][0]} / {f['threads'][1]} ({f['threads'][2]}) |")
    out.append("")
    out.append("| stream | intervals | throughput min (Gbit/s) | median | max | mean |")
    out.append("|---|---:|---:|---:|---:|---:|")
    for label in labels:
        r = rates[label]
        out.append(f"| {label} | {len(r)} x {args.interval} s | {min(r):.2f} | {statistics.median(r):.2f} "
                   f"| {max(r):.2f} | {statistics.fmean(r):.2f} |")
    out.append("")
    for label in labels:
        for side in SIDES:
            f = figures.get((label, side))
            if f:
                out.append(f"- {label} {SIDES[side]}, RSS every minute (MiB): "
                           + " ".join(mib(v) for v in f["by_minute"]))
    out.append("")
    out.append(verdict(figures, args.max_growth))
    out.append("")
    out.append("Throughput depends on what else the machine runs; the resident set, fd and thread counts "
               "do not, and a leak per packet or per handshake would show as a steady growth over the "
               "minutes. Reproduce: `sudo scripts/bench-soak.sh` (`SOAK_SECONDS`, `SOAK_INTERVAL`, "
               "`SOAK_REF_SECONDS`, `--output -` to print only).")
    return "\n".join(out) + "\n"


def verdict(figures, max_growth):
    problems, growth = [], []
    for side in SIDES:
        f = figures.get(("meshd", side))
        if not f:
            continue
        who = f"meshd {side.upper()}"
        if f["slope"] is None:
            return "- verdict: none: the run is too short (fewer than two samples after the first minute)"
        else:
            growth.append(f"{f['slope']:+.0f}")
            if f["slope"] > max_growth:
                problems.append(f"{who}: RSS grows {f['slope']:+.0f} KiB/min")
        for name in ("fds", "threads"):
            _, end, _, first_max = f[name]
            if end > first_max:
                problems.append(f"{who}: {name} end at {end}, above the first minute's {first_max}")
    if problems:
        return "- verdict: **growth** (limit " + f"{max_growth} KiB/min): " + "; ".join(problems)
    return (f"- verdict: **no growth** in meshd: RSS after the first minute {' and '.join(growth)} KiB/min "
            f"(limit {max_growth} KiB/min), fd and thread counts at the end no higher than in the first minute")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", required=True)
    parser.add_argument("--iperf", action="append", required=True, metavar="LABEL=JSON")
    parser.add_argument("--interval", type=int, required=True)
    parser.add_argument("--max-growth", type=int, required=True)
    parser.add_argument("--load", nargs=2, required=True, metavar=("BEFORE", "AFTER"))
    parser.add_argument("--note", default="")
    sys.stdout.write(generate(parser.parse_args()))


if __name__ == "__main__":
    main()
