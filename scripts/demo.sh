#!/bin/bash
# A small meshd mesh on this machine, inside network namespaces (needs root):
#
#   alpha, beta, gamma  three cores (alpha holds the CA), full mesh of tunnels
#   spoke               a small router behind beta, with its LAN 192.168.42.0/24 and a host on it
#   phone               a standard WireGuard client (wireguard-go + wg) attached to gamma,
#                       configured from `meshd client add`
#
# The "Internet" is a bridge in its own namespace with documentation addresses
# (198.51.100.0/24). Every node is admitted with a real token: `meshd init` on alpha,
# `meshd invite` there, `meshd join TOKEN` on the new node. The script then shows
# `meshd peers` and pings across the mesh, and removes everything it created when it ends
# (also on Ctrl-C or an error). Nothing is added to the machine's own network namespace.
#
# Usage: scripts/demo.sh          (KEEP=1 waits for Enter before cleaning up)
#
# It installs the Debian packages it needs (as root, or through sudo) and builds meshd with
# cargo as the user who runs it; the namespaces need root, so run as another user it goes on
# under sudo with the binary it built.
set -euo pipefail
self="$(realpath "$0")"
cd "$(dirname "$self")/.."

if [[ $EUID -ne 0 ]] && ! command -v sudo >/dev/null; then
    echo "demo.sh: error: needs root (it installs packages, creates network namespaces, veth pairs and TUN devices); run it as root" >&2
    exit 1
fi
# shellcheck source=lib/install-packages.sh
. scripts/lib/install-packages.sh
# ip/netns (iproute2), ping, and wireguard-go + wg for the phone; build_packages to build meshd.
install_packages demo.sh iproute2 iputils-ping wireguard-tools wireguard-go "${build_packages[@]}"

if [[ -n "${MESHD_DEMO_BINARY:-}" ]]; then
    # Started again under sudo by the lines below, with what the user built.
    meshd=$MESHD_DEMO_BINARY
else
    if ! command -v cargo >/dev/null; then
        echo "demo.sh: error: cargo not found; install a Rust toolchain (1.88 or newer) with rustup" >&2
        exit 1
    fi
    echo "demo.sh: building meshd (cargo build --bin meshd)" >&2
    cargo build --quiet --bin meshd
    meshd="${CARGO_TARGET_DIR:-$PWD/target}/debug/meshd"
fi
if [[ $EUID -ne 0 ]]; then
    echo "demo.sh: the network namespaces need root: going on with sudo" >&2
    exec sudo MESHD_DEMO_BINARY="$meshd" KEEP="${KEEP:-0}" "$self"
fi

readonly prefix="mdemo"
work="$(mktemp -d -t meshd-demo.XXXXXX)"
pids=()

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    echo >&2
    echo "== Cleaning up" >&2
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        # Bounded: a daemon that does not stop within 5 s is killed.
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    # Backstop: anything still running in our namespaces goes with them.
    for namespace in $(ip netns list | awk '{print $1}' | grep "^$prefix-" || true); do
        for pid in $(ip netns pids "$namespace" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null || true
        done
        ip netns delete "$namespace" || true
    done
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ns() { echo "$prefix-$1"; }
say() { echo -e "\n== $*" >&2; }
# Shows a command, then runs it.
show() {
    echo "\$ $*" >&2
    "$@"
}
# meshd with node $1's files, inside node $1's namespace.
node() {
    local name=$1
    shift
    ip netns exec "$(ns "$name")" "$meshd" --config "$work/$name/meshd.toml" \
        --state-dir "$work/$name/state" "$@"
}
# Like `node`, printed the way a user would type it on that router.
on() {
    local name=$1
    shift
    echo "[$name]\$ meshd $*" >&2
    node "$name" "$@"
}
# Starts `meshd run` for node $1 in the background and waits until it runs.
start() {
    local name=$1
    # Not through `node`: a backgrounded function is a subshell, and its pid is not meshd's.
    ip netns exec "$(ns "$name")" "$meshd" --config "$work/$name/meshd.toml" \
        --state-dir "$work/$name/state" run >"$work/$name.log" 2>&1 &
    pids+=("$!")
    for _ in $(seq 100); do
        if grep -q "meshd running" "$work/$name.log"; then
            echo "[$name] meshd run: started (log: $work/$name.log)" >&2
            return
        fi
        if ! kill -0 "${pids[-1]}" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "meshd run on $name did not start; its log:" >&2
    cat "$work/$name.log" >&2
    exit 1
}
# Pings $2 from namespace $1 until it answers (at most ~25 s), then shows three pings.
ping_from() {
    local from=$1 to=$2
    for _ in $(seq 15); do
        ip netns exec "$(ns "$from")" ping -n -q -c 1 -W 1 "$to" >/dev/null 2>&1 && break
        sleep 0.5
    done
    echo "[$from]\$ ping -c 3 $to" >&2
    ip netns exec "$(ns "$from")" ping -n -c 3 -i 0.3 -W 2 "$to"
}

say "Network namespaces: an 'Internet' bridge (198.51.100.0/24), three cores, a spoke with a LAN, a phone"
ip netns add "$(ns isp)"
ip -n "$(ns isp)" link add br0 type bridge
ip -n "$(ns isp)" link set br0 up
host=0
for name in alpha beta gamma spoke phone; do
    host=$((host + 1))
    ip netns add "$(ns "$name")"
    ip -n "$(ns "$name")" link set lo up
    ip -n "$(ns "$name")" link add ul0 type veth peer name "n$host" netns "$(ns isp)"
    ip -n "$(ns "$name")" addr add "198.51.100.$host/24" dev ul0
    ip -n "$(ns "$name")" link set ul0 up
    ip -n "$(ns isp)" link set "n$host" master br0 up
    mkdir -p "$work/$name"
    echo "  $name: 198.51.100.$host" >&2
done
ip netns add "$(ns lan)"
ip -n "$(ns lan)" link set lo up
ip -n "$(ns spoke)" link add lan0 type veth peer name eth0 netns "$(ns lan)"
ip -n "$(ns spoke)" addr add 192.168.42.1/24 dev lan0
ip -n "$(ns spoke)" link set lan0 up
ip -n "$(ns lan)" addr add 192.168.42.2/24 dev eth0
ip -n "$(ns lan)" link set eth0 up
ip -n "$(ns lan)" route add default via 192.168.42.1
ip netns exec "$(ns spoke)" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward'
echo "  spoke's LAN: 192.168.42.0/24, a host at 192.168.42.2" >&2

say "alpha creates the mesh (it holds the CA) and starts"
on alpha init --name alpha --endpoint 198.51.100.1:51820
start alpha

say "alpha invites two more cores; each joins with its token and starts"
for entry in beta:2 gamma:3; do
    name=${entry%:*}
    token="$(on alpha invite "$name" --role core --ttl 10m)"
    on "$name" join "$token" --endpoint "198.51.100.${entry#*:}:51820"
    start "$name"
done

say "alpha invites a spoke behind beta with its LAN; the spoke joins (no public endpoint needed)"
token="$(on alpha invite spoke --role spoke --core beta --route 192.168.42.0/24 --ttl 10m)"
on spoke join "$token"
start spoke

say "The spoke calls its core; every core reaches it, and its LAN, through the mesh"
ping_from spoke 10.2.0.1
ping_from alpha 10.4.0.1
ping_from alpha 192.168.42.2

say "A phone-style WireGuard client on gamma, from 'meshd client add'"
on gamma client add phone | tee "$work/phone.conf"
# wg-quick's Address line is for wg-quick; plain `wg setconf` wants the rest.
address4="$(sed -n 's/^Address = \([^/]*\)\/32.*/\1/p' "$work/phone.conf")"
allowed="$(sed -n 's/^AllowedIPs = //p' "$work/phone.conf" | tr -d ' ')"
grep -v '^Address' "$work/phone.conf" >"$work/phone.wg"
WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 ip netns exec "$(ns phone)" \
    wireguard-go -f mdemo0 >"$work/phone.log" 2>&1 &
pids+=("$!")
for _ in $(seq 50); do ip netns exec "$(ns phone)" wg show mdemo0 >/dev/null 2>&1 && break; sleep 0.1; done
ip netns exec "$(ns phone)" wg setconf mdemo0 "$work/phone.wg"
ip -n "$(ns phone)" addr add "$address4/32" dev mdemo0
ip -n "$(ns phone)" link set mdemo0 mtu 1420 up
for route in ${allowed//,/ }; do
    ip -n "$(ns phone)" route add "$route" dev mdemo0
done
ping_from phone 10.4.0.1

say "What the nodes see"
on beta peers
on gamma peers
echo "[gamma]\$ ip route show proto 241   (meshd's routes)" >&2
ip -n "$(ns gamma)" route show proto 241

say "Done: four meshd nodes, a LAN behind the spoke and a phone, all talking"
if [[ "${KEEP:-0}" == 1 ]]; then
    echo "Namespaces: $(ip netns list | awk '{print $1}' | grep "^$prefix-" | tr '\n' ' ')" >&2
    echo "Try: sudo ip netns exec $(ns alpha) $meshd --config $work/alpha/meshd.toml --state-dir $work/alpha/state status" >&2
    read -r -p "Press Enter to clean up. " _
fi
