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

begin='<!-- membership-scale:begin -->'
end='<!-- membership-scale:end -->'

section="$(mktemp)"
trap 'rm -f "$section" "$section.new"' EXIT

(cd "$repo" && cargo run --quiet --release -p meshd --example membership_scale -- "${example_args[@]}") >"$section"

if [ "$output" = "-" ]; then
    cat "$section"
    exit 0
fi

# Replace between the markers (or append), into a temporary file renamed over the output,
# so an interrupted run never leaves a half-written document.
python3 - "$output" "$section" "$begin" "$end" <<'EOF'
import os, sys

output, section_path, begin, end = sys.argv[1:5]
with open(section_path) as f:
    section = f.read().rstrip("\n") + "\n"
block = f"{begin}\n{section}{end}\n"
try:
    with open(output) as f:
        existing = f.read()
except FileNotFoundError:
    existing = ""
if existing.count(begin) != existing.count(end) or existing.count(begin) > 1:
    sys.exit(f"{output}: the membership-scale markers are unbalanced or repeated; fix them by hand")
if begin in existing:
    head, rest = existing.split(begin, 1)
    tail = rest.split(end, 1)[1].lstrip("\n")
    updated = head + block + (("\n" + tail) if tail else "")
else:
    updated = existing.rstrip("\n") + ("\n\n" if existing else "") + block
tmp = output + ".membership-scale.tmp"
with open(tmp, "w") as f:
    f.write(updated)
os.replace(tmp, output)
EOF
echo "wrote the membership scale section of $output" >&2
