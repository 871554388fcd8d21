#!/usr/bin/env bash
# Membership scale benchmark (issue #4): runs the in-process simulation
# (agent/examples/membership_scale.rs) in release mode and writes its markdown into the
# "Membership scale" section of docs/benchmarks.md, between the markers
#   <!-- membership-scale:begin --> and <!-- membership-scale:end -->
# Everything else in the file is kept as it is. Without the markers yet, the section is
# appended at the end (below the data plane script's notes marker, which that script keeps).
#
# Usage: scripts/bench-membership.sh [--output FILE|-] [-- ARGS FOR THE EXAMPLE]
#   --output   where to write (default docs/benchmarks.md; "-" prints the section only)
#   ARGS       passed on, e.g. -- --sizes 50,200 --trials 5 --seed 1
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
output="$repo/docs/benchmarks.md"
example_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --output) output="${2:?--output needs a file or -}"; shift 2 ;;
        --) shift; example_args=("$@"); break ;;
        *) echo "bench-membership.sh: unknown argument $1 (see the header)" >&2; exit 2 ;;
    esac
done

section="$(mktemp)"
trap 'rm -f "$section"' EXIT

(cd "$repo" && cargo run --quiet --release -p meshd --example membership_scale -- "${example_args[@]}") >"$section"

if [ "$output" = "-" ]; then
    cat "$section"
    exit 0
fi

python3 "$repo/scripts/bench/sections.py" "$output" "$section" membership-scale
echo "wrote the membership scale section of $output" >&2
