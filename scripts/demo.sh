#!/bin/bash
# A first look at meshd without touching the machine's configuration: builds meshd, creates a
# mesh (`meshd init`) in a temporary state directory, invites a second node (`meshd invite`)
# and prints the invitation token. Nothing is installed, no interface or route is created,
# and the temporary directory is removed at the end.
#
# Usage: scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --bin meshd
meshd="${CARGO_TARGET_DIR:-$PWD/target}/debug/meshd"

demo="$(mktemp -d -t meshd-demo.XXXXXX)"
trap 'rm -rf "$demo"' EXIT
run() {
    echo "\$ meshd $*" >&2
    "$meshd" --config "$demo/meshd.toml" --state-dir "$demo/state" "$@"
}

echo "== Creating a mesh whose first core, alpha, is reachable at 203.0.113.1:51820" >&2
run init --name alpha --endpoint 203.0.113.1:51820
echo >&2
echo "== The config meshd wrote ($demo/meshd.toml):" >&2
cat "$demo/meshd.toml" >&2
echo >&2
echo "== Inviting beta, a spoke behind alpha that routes its LAN 192.168.42.0/24" >&2
token="$(run invite beta --role spoke --route 192.168.42.0/24 --ttl 2h)"
echo >&2
echo "== The token (give it to beta's owner, who runs \`meshd join TOKEN\`):" >&2
echo "$token"
