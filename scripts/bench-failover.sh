#!/bin/bash
# Path failover benchmark (issue #12): on one running two-core mesh in network namespaces
# (the harness of agent/tests/netns/paths.rs), 20 cuts of each kind (alpha's primary uplink
# goes down; its ISP silently drops everything), each gap between ping replies (20 pings/s)
# measured from ping's timestamps, median and worst per kind; then the probe traffic of the
# idle peer on alpha's uplinks over 60 s, by kind of packet; then the CPU cost of probing 50
# peers (criterion, tunnel/benches/prober.rs). Writes the "Path failover" section of
# docs/benchmarks.md, between the markers
#   <!-- path-failover:begin --> and <!-- path-failover:end -->
# and keeps the rest of the file.
#
# Not part of CI (about 15 minutes; CI's netns_paths test makes one cut of each kind).
# Needs root, iproute2, ping (iputils-ping), python3 and a Rust toolchain.
#
# Usage: scripts/bench-failover.sh [--cuts N] [--idle-seconds S] [--debug] [--no-cpu] [--output FILE|-]
#   --cuts          cuts of each kind (default 20)
#   --idle-seconds  how long the idle peer's underlay is counted (default 60)
#   --debug         use the debug (test profile) build instead of release
#   --no-cpu        skip the criterion benchmark
#   --output        where to write (default docs/benchmarks.md; "-" prints the section only)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
log() { echo "bench-failover: $*" >&2; }
die() { echo "bench-failover: error: $*" >&2; exit 1; }

cuts=20
idle_seconds=60
profile=(--release)
build=release
cpu=yes
output="$repo/docs/benchmarks.md"
while [ $# -gt 0 ]; do
    case "$1" in
        --cuts) cuts="${2:?--cuts needs a number}"; shift 2 ;;
        --idle-seconds) idle_seconds="${2:?--idle-seconds needs a number}"; shift 2 ;;
        --debug) profile=(); build=debug; shift ;;
        --no-cpu) cpu=no; shift ;;
        --output) output="${2:?--output needs a file or -}"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (try --help)" ;;
    esac
done
for number in "$cuts" "$idle_seconds"; do
    case "$number" in ''|*[!0-9]*|0) die "--cuts and --idle-seconds need a positive whole number, got '$number'" ;; esac
done
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, TUN devices)"
for tool in ip ping python3 cargo; do
    command -v "$tool" >/dev/null || die "$tool not found (see the header of this script)"
done

work="$(mktemp -d /tmp/meshd-bench-failover.XXXXXX)"
# The test cleans up its own namespaces and processes (also when it fails); only our
# temporary files are left to remove, and they are kept when something failed.
trap 'status=$?; if [ $status -eq 0 ]; then rm -rf "$work"; else log "failed; output kept in $work"; fi' EXIT

test_args=(-p meshd --test netns_paths)
log "building meshd and the netns_paths test ($build)"
(cd "$repo" && cargo test "${profile[@]}" "${test_args[@]}" --no-run --quiet)

load_before="$(cut -d' ' -f1 /proc/loadavg)"
log "$cuts cuts of each kind and ${idle_seconds} s of idle tunnel (about $(( (cuts * 2 * 21 + idle_seconds + 30) / 60 )) minutes)"
# One line per cut goes to the terminal as it comes; all of it to the file for the report.
(cd "$repo" && MESHD_BENCH_CUTS="$cuts" MESHD_BENCH_IDLE_SECONDS="$idle_seconds" \
    cargo test "${profile[@]}" "${test_args[@]}" --quiet -- --ignored --exact --nocapture \
    bench_failover_gaps_and_idle_probe_traffic) 2>&1 | tee "$work/test.out" | grep --line-buffered '^bench-' >&2 \
    || die "the benchmark test failed; its output is in $work/test.out"
grep -q '^bench-idle: seconds=' "$work/test.out" || die "the test printed no results ($work/test.out)"
load_after="$(cut -d' ' -f1 /proc/loadavg)"

: >"$work/bench.out"
if [ "$cpu" = yes ]; then
    log "CPU cost of probing 50 peers (cargo bench -p meshd-tunnel --bench prober)"
    (cd "$repo" && cargo bench --quiet -p meshd-tunnel --bench prober) >"$work/bench.out" 2>&1 \
        || die "the prober benchmark failed; its output is in $work/bench.out"
fi

python3 "$repo/scripts/bench/failover_report.py" "$work/test.out" "$work/bench.out" \
    "$load_before" "$load_after" "$build" >"$work/section.md"
if [ "$output" = "-" ]; then
    cat "$work/section.md"
else
    python3 "$repo/scripts/bench/failover_report.py" --merge "$output" "$work/section.md"
    log "wrote the path failover section of $output"
fi
