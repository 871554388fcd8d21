#!/bin/bash
# Checks the architecture rules the compiler cannot see (docs/architecture.md, "Layers"):
# 1. In the agent crate, a module uses (`crate::MODULE`) only modules of lower layers. The
#    layers are the data below, top first; modules on one line are one layer and do not use
#    each other. A new top-level module must be given a layer here.
# 2. The protocol crates have no tokio, netlink or socket crate among their normal
#    dependencies (`cargo tree -e normal`): their purity is a fact, not a convention.
# 3. Every test in agent/tests/netns/ (and netns-tests/tests/) starts with `require_root`, so a run without root fails
#    (or is skipped on request) instead of passing silently.
# Fails naming the file, the line and the rule broken. Usage: scripts/check-layers.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# Top first. commands run what cli parses; daemon wires the planes; the planes' shells; the
# peer set they all hand peers to; at the bottom what knows nothing of the rest.
layers='
commands
cli
daemon
metrics reload
routing control
api
peerset
dataplane bgp netlink state logging service_manager identity dns foreign
'

# Crates that must stay free of I/O runtimes (those that exist in this tree).
pure_crates=(tunnel bgp membership pki mesh-config) # directories
# (nix is not listed: boringtun, the WireGuard implementation the tunnel core wraps, always
# depends on it; what would make a crate do I/O is a runtime, a socket or netlink crate.)
forbidden_dependencies='tokio|mio|rtnetlink|netlink-[a-z-]+|socket2|quinn-udp|tun-rs|hyper|async-std|smol'

failed=0

# --- 1. module layers --------------------------------------------------------------------
# edges.pl prints "FILE:LINE FROM TO" for every `crate::TO` path in FILE (module FROM), also
# inside `use crate::{a::X, b::{Y, Z}}` groups over several lines; comments are skipped.
edges=$(perl -e '
for my $file (@ARGV) {
    open my $fh, "<", $file or die "$file: $!";
    my @lines = <$fh>;
    my ($from) = $file =~ m{^agent/src/([^/.]+)};
    next if $from eq "lib" || $from eq "main";
    my ($text, @line_of) = ("");
    for my $i (0 .. $#lines) {
        (my $l = $lines[$i]) =~ s{(^|\s)//.*}{$1};
        push @line_of, ($i + 1) x length $l;
        $text .= $l;
    }
    while ($text =~ /\bcrate::/g) {
        my $pos = pos $text;
        my @to;
        if (substr($text, $pos, 1) eq "{") {
            my ($depth, $item) = (0, "");
            for my $ch (split //, substr($text, $pos)) {
                if ($ch eq "{") { next if ++$depth == 1 }
                if ($ch eq "}" && --$depth == 0) { push @to, $item; last }
                if ($ch eq "," && $depth == 1) { push @to, $item; $item = ""; next }
                $item .= $ch;
            }
            @to = map { /^\s*(\w+)/ ? $1 : () } @to;
        } elsif (substr($text, $pos, 40) =~ /^(\w+)/) {
            @to = ($1);
        }
        print "$file:$line_of[$pos] $from $_\n" for grep { $_ ne $from && $_ ne "self" } @to;
    }
}' $(find agent/src -name '*.rs' | sort))

declare -A layer_of
n=0
while read -r line; do
    [ -z "$line" ] && continue
    n=$((n + 1))
    for module in $line; do layer_of[$module]=$n; done
done <<< "$layers"

for path in agent/src/*; do
    module=$(basename "$path" .rs)
    case $module in lib | main) continue ;; esac
    if [ -z "${layer_of[$module]:-}" ]; then
        echo "check-layers: $path: module $module has no layer; add it to the layers in $0" >&2
        failed=1
    fi
done

while read -r location from to; do
    [ -z "$location" ] && continue
    from_layer=${layer_of[$from]:-}
    to_layer=${layer_of[$to]:-}
    [ -z "$from_layer" ] || [ -z "$to_layer" ] && continue # reported above
    if [ "$to_layer" -le "$from_layer" ]; then
        if [ "$to_layer" -eq "$from_layer" ]; then
            why="$to is in the same layer"
        else
            why="$to is in a higher layer"
        fi
        echo "check-layers: $location: upward import: $from uses crate::$to ($why; see $0)" >&2
        failed=1
    fi
done <<< "$edges"

# --- 2. pure crates ----------------------------------------------------------------------
for crate in "${pure_crates[@]}"; do
    [ -f "$crate/Cargo.toml" ] || continue
    package=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$crate/Cargo.toml" | head -1)
    if ! tree=$(cargo tree --quiet --offline -p "$package" -e normal --prefix none --format '{p}'); then
        echo "check-layers: $crate/Cargo.toml: cargo tree -p $package failed" >&2
        failed=1
        continue
    fi
    found=$(echo "$tree" | awk '{print $1}' | sort -u | grep -Ex "$forbidden_dependencies" || true)
    if [ -n "$found" ]; then
        echo "check-layers: $crate/Cargo.toml: the pure crate $package depends on $(echo $found | tr ' ' ',') (\`cargo tree -p $package -e normal -i NAME\` says through what)" >&2
        failed=1
    fi
done

# --- 3. root tests call require_root -------------------------------------------------------
for file in agent/tests/netns/*.rs netns-tests/tests/*.rs; do
    [ -f "$file" ] || continue
    # Each #[test] / #[tokio::test] function must call require_root before its next sibling.
    perl -ne '
        if (/^\s*#\[(tokio::)?test/) { check(); $name = undef; $in = 1; next }
        if ($in && !defined $name && /fn\s+(\w+)/) { $name = $1; $line = $.; $ok = 0; next }
        $ok = 1 if $in && /require_root\(/;
        sub check { if ($in && defined $name && !$ok) { print "$ARGV:$line: test $name does not start with require_root\n"; $bad = 1 } }
        END { check(); exit($bad ? 1 : 0) }
    ' "$file" >&2 || failed=1
done

if [ "$failed" -ne 0 ]; then
    echo "check-layers: failed" >&2
    exit 1
fi
echo "check-layers: ok ($(echo "$edges" | grep -c . || true) crate:: paths in agent/src, layers hold; pure crates have no I/O dependencies)"
