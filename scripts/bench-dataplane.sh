#!/bin/bash
# Data plane benchmark: two network namespaces joined by a veth pair (198.51.100.1/24 and .2),
# and in one run, over
#   (a) the plain veth,
#   (b) two wireguard-go peers configured with `wg`,
#   (c) two boringtun-cli peers (installed with cargo into a temporary root),
#   (d) two meshd peers, and the same with one data plane worker ([node] dataplane_workers = 1:
#       one TUN queue, one socket per family) and one tokio worker thread,
#   (e) optionally a second meshd binary (--baseline), for a before/after in the same run,
# iperf3 TCP throughput (one stream, one stream reversed, four streams), 64-byte UDP packets per
# second received (iperf3 -u -l 64 -b 0), ping RTT idle and during the single-stream run, plus
# the CPU time the tunnel daemons spend per Gbit/s and per million packets. Writes the results
# to docs/benchmarks.md.
#
# Not part of CI: about 45 s per setup at the default duration, 4.5 minutes for all six
# (plus the builds). Needs root, iproute2, iperf3, ping, wireguard-go,
# wireguard-tools, python3 (to read iperf3's JSON) and a Rust toolchain.
#
# Usage: scripts/bench-dataplane.sh [--duration SECONDS] [--output FILE] [--only LIST]
#                                   [--perf SETUP] [--baseline BIN]
#   --duration   seconds per iperf3 run (default 8)
#   --output     where to write the table (default docs/benchmarks.md; "-" for stdout only)
#   --only       comma-separated subset of veth,wireguard-go,boringtun,meshd,meshd-1worker
#                (default all; --baseline adds meshd-baseline)
#   --perf SETUP profile SETUP's daemons (its label in the table) with `perf record -g` during
#                its single-stream run (PERF_MODE=udp: its UDP run) and write the top symbols
#                to FILE.perf.txt (FILE from --output)
#   --baseline BIN  also measure the meshd binary BIN (row "meshd baseline"), e.g. a build of
#                main, to compare a change with what it replaces in one run
# Environment:
#   BORINGTUN_CLI   path to an existing boringtun-cli binary (skips the cargo install)
#   MESHD_BIN       path to an existing release meshd binary (skips the cargo build)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=bench/lib.sh
source "$repo/scripts/bench/lib.sh"

duration=8
output="$repo/docs/benchmarks.md"
only="veth,wireguard-go,boringtun,meshd,meshd-1worker"
perf_for=""
baseline=""
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) duration="$2"; shift 2 ;;
        --output) output="$2"; shift 2 ;;
        --only) only="$2"; shift 2 ;;
        --perf) perf_for="$2"; shift 2 ;;
        --baseline) baseline="$2"; only="$only,meshd-baseline"; shift 2 ;;
        -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (try --help)" ;;
    esac
done
case "$duration" in ''|*[!0-9]*) die "--duration needs a whole number of seconds, got '$duration'" ;; esac

perf_output="${output%.md}.perf.txt"
[ "$output" = "-" ] && perf_output="/dev/stderr"
[ -z "$perf_for" ] || command -v perf >/dev/null || die "--perf needs perf (Debian: linux-perf)"
bench_setup meshd-bench mb ip iperf3 ping python3 wg wireguard-go cargo

selected() { [[ ",$only," == *",$1,"* ]]; }

# --- binaries -------------------------------------------------------------------------------
if selected meshd || selected meshd-1worker; then
    build_meshd
fi
if selected meshd-baseline; then
    [ -x "$baseline" ] || die "--baseline: no executable at $baseline"
fi
if selected boringtun; then
    if [ -z "${BORINGTUN_CLI:-}" ]; then
        log "installing boringtun-cli 0.7.1 into $work/boringtun (a few minutes)"
        CARGO_TARGET_DIR="$work/boringtun-target" cargo install boringtun-cli --version 0.7.1 \
            --root "$work/boringtun" --quiet
        BORINGTUN_CLI="$work/boringtun/bin/boringtun-cli"
    fi
    [ -x "$BORINGTUN_CLI" ] || die "boringtun-cli not found at $BORINGTUN_CLI"
fi

# --- the underlay ---------------------------------------------------------------------------
start_underlay

results="$work/results.tsv"
: >"$results"

# --- (a) plain veth -------------------------------------------------------------------------
if selected veth; then
    measure "veth" 198.51.100.2 "" >>"$results"
fi

# --- (b) wireguard-go -----------------------------------------------------------------------
if selected wireguard-go; then
    start_wg_pair wireguard-go
    measure "wireguard-go" 10.2.0.1 "$(cat "$work/pids")" >>"$results"
    stop_tunnels
fi

# --- (c) boringtun-cli ----------------------------------------------------------------------
if selected boringtun; then
    start_wg_pair boringtun
    measure "boringtun-cli" 10.2.0.1 "$(cat "$work/pids")" >>"$results"
    stop_tunnels
fi

# --- (d, e) meshd ------------------------------------------------------------------------------
if selected meshd-baseline; then
    start_meshd_pair "$baseline"
    measure "meshd baseline" 10.2.0.1 "$(cat "$work/pids")" >>"$results"
    stop_tunnels
fi
if selected meshd; then
    start_meshd_pair "$MESHD_BIN"
    measure "meshd" 10.2.0.1 "$(cat "$work/pids")" >>"$results"
    stop_tunnels
fi
if selected meshd-1worker; then
    MESHD_NODE_EXTRA="dataplane_workers = 1" start_meshd_pair "$MESHD_BIN" TOKIO_WORKER_THREADS=1
    measure "meshd 1 worker" 10.2.0.1 "$(cat "$work/pids")" >>"$results"
    stop_tunnels
fi

# --- report ---------------------------------------------------------------------------------
report="$work/report.md"
python3 "$repo/scripts/bench/report.py" "$results" "$duration" >"$report"
cat "$report"
if [ "$output" != "-" ]; then
    python3 "$repo/scripts/bench/report.py" --merge "$output" "$report"
    log "wrote $output"
fi
