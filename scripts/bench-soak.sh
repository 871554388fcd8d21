#!/bin/bash
# Soak benchmark (issue #15): two meshd cores in network namespaces joined by a veth pair (the
# underlay of scripts/bench-dataplane.sh, 198.51.100.1/24 and .2), one iperf3 TCP stream
# through the tunnel for SOAK_SECONDS (default 600), and every SOAK_INTERVAL seconds (default
# 10) each daemon's resident set (VmRSS of /proc/PID/status), open file descriptors
# (/proc/PID/fd), thread count and the stream's throughput in that interval. Then, for
# reference in the same run, the same for a wireguard-go pair for SOAK_REF_SECONDS (default
# 180; 0 skips it). Writes the "Soak" section of docs/benchmarks.md, between the markers
#   <!-- soak:begin --> and <!-- soak:end -->
# and keeps the rest of the file.
#
# The verdict: no growth when, for each meshd daemon, the resident set grows by at most
# SOAK_MAX_RSS_KIB_PER_MIN (default 128) KiB per minute (least-squares line through the samples
# after the first minute, which is warm-up) and the fd and thread counts at the end are no
# higher than their highest in the first minute. The script exits non-zero when iperf3 fails
# (the stream broke) or a daemon exits, not on a growth verdict.
#
# Not part of CI: about SOAK_SECONDS + SOAK_REF_SECONDS plus the build. Needs root, iproute2,
# iperf3, ping, python3, a Rust toolchain, and for the reference wireguard-go and
# wireguard-tools.
#
# Usage: scripts/bench-soak.sh [--output FILE|-]
#   --output   where to write (default docs/benchmarks.md; "-" prints the section only)
# Environment:
#   SOAK_SECONDS, SOAK_INTERVAL, SOAK_REF_SECONDS, SOAK_MAX_RSS_KIB_PER_MIN   as above
#   SOAK_NOTE  one more line for the section (e.g. what else the machine was doing)
#   MESHD_BIN  path to an existing release meshd binary (skips the cargo build)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=bench/lib.sh
source "$repo/scripts/bench/lib.sh"

output="$repo/docs/benchmarks.md"
while [ $# -gt 0 ]; do
    case "$1" in
        --output) output="${2:?--output needs a file or -}"; shift 2 ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (try --help)" ;;
    esac
done
seconds="${SOAK_SECONDS:-600}"
interval="${SOAK_INTERVAL:-10}"
ref_seconds="${SOAK_REF_SECONDS:-180}"
max_growth="${SOAK_MAX_RSS_KIB_PER_MIN:-128}"
for number in "$seconds" "$interval" "$ref_seconds" "$max_growth"; do
    case "$number" in ''|*[!0-9]*) die "SOAK_* need whole numbers, got '$number'" ;; esac
done
if [ "$interval" -eq 0 ] || [ "$seconds" -lt $((2 * interval)) ]; then
    die "SOAK_SECONDS must be at least two intervals of SOAK_INTERVAL > 0"
fi
tools=(ip iperf3 ping python3 cargo)
[ "$ref_seconds" -eq 0 ] || tools+=(wg wireguard-go)
bench_setup meshd-soak soak "${tools[@]}"
build_meshd

samples="$work/samples.tsv"
: >"$samples"

# sample LABEL T PID_A PID_B: one line per daemon (label, side, seconds since the stream
# started, VmRSS in KiB, open fds, threads, 1-minute load average) into $samples.
sample() {
    local label="$1" t="$2" side=a pid rss threads load
    shift 2
    local -a fds
    load="$(cut -d' ' -f1 /proc/loadavg)"
    for pid in "$@"; do
        [ -r "/proc/$pid/status" ] || die "$label: the daemon in namespace $side (pid $pid) is gone at ${t} s"
        read -r rss threads < <(awk '/^VmRSS:/ {r = $2} /^Threads:/ {t = $2} END {print r, t}' "/proc/$pid/status")
        fds=("/proc/$pid/fd/"*)
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$side" "$t" "$rss" "${#fds[@]}" "$threads" "$load" >>"$samples"
        side=b
    done
}

# soak LABEL SLUG SECONDS: with the pair of $work/pids up, one sample before the stream, then
# iperf3 for SECONDS with a sample at the end of each interval (on a fixed schedule from the
# stream's start, so the sampling time does not add up). iperf3's JSON goes to
# $work/iperf-SLUG.json.
soak() {
    local label="$1" slug="$2" length="$3" k start now delay
    local -a pids
    # The file may lack a final newline (start_meshd_pair writes "PID PID ").
    read -ra pids <"$work/pids" || [ "${#pids[@]}" -eq 2 ] || die "$label: no pids in $work/pids"
    wait_ping "$ns_a" 10.2.0.1 || die "$label: no ping to 10.2.0.1 through the tunnel"
    sample "$label" 0 "${pids[@]}"
    log "$label: iperf3 for $length s, sampling every $interval s"
    ip netns exec "$ns_a" iperf3 -c 10.2.0.1 -t "$length" -i "$interval" -J \
        >"$work/iperf-$slug.json" 2>"$work/iperf-$slug.err" &
    local iperf=$!
    start="$(date +%s%N)"
    for k in $(seq 1 $((length / interval))); do
        now="$(date +%s%N)"
        delay=$((start + k * interval * 1000000000 - now))
        if [ "$delay" -gt 0 ]; then
            sleep "$((delay / 1000000000)).$(printf '%09d' $((delay % 1000000000)))"
        fi
        # iperf3 ends with the last interval; before that it must still be running.
        if [ "$k" -lt $((length / interval)) ] && ! kill -0 "$iperf" 2>/dev/null; then
            break
        fi
        sample "$label" $((k * interval)) "${pids[@]}"
        if [ $((k * interval % 60)) -eq 0 ]; then log "$label: $((k * interval)) s"; fi
    done
    wait "$iperf" || die "$label: iperf3 failed (the stream broke?): $(tail -c 400 "$work/iperf-$slug.json") $(cat "$work/iperf-$slug.err")"
}

start_underlay
load_before="$(cut -d' ' -f1 /proc/loadavg)"

start_meshd_pair "$MESHD_BIN"
soak meshd meshd "$seconds"
stop_tunnels
report_args=(--iperf "meshd=$work/iperf-meshd.json")

if [ "$ref_seconds" -gt 0 ]; then
    start_wg_pair wireguard-go
    soak wireguard-go wireguard-go "$ref_seconds"
    stop_tunnels
    report_args+=(--iperf "wireguard-go=$work/iperf-wireguard-go.json")
fi
load_after="$(cut -d' ' -f1 /proc/loadavg)"

python3 "$repo/scripts/bench/soak_report.py" --samples "$samples" "${report_args[@]}" \
    --interval "$interval" --max-growth "$max_growth" --load "$load_before" "$load_after" \
    --note "${SOAK_NOTE:-}" >"$work/section.md"
if [ "$output" = "-" ]; then
    cat "$work/section.md"
else
    python3 "$repo/scripts/bench/sections.py" "$output" "$work/section.md" soak
    log "wrote the soak section of $output"
    grep '^- verdict' "$work/section.md" >&2 || true
fi
