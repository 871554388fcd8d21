# Helpers for scripts/bench-dataplane.sh and scripts/bench-soak.sh (sourced; they use the
# caller's variables: repo, work, ns_a, ns_b (bench_setup sets the last three), and for
# measure and its helpers duration and perf_for/perf_output).

log() { echo "bench: $*" >&2; }
die() { echo "bench: error: $*" >&2; exit 1; }

# Kills every process we started and deletes the namespaces, on every exit path.
cleanup() {
    local status=$?
    set +e
    stop_tunnels 2>/dev/null
    [ -f "$work/iperf3.pid" ] && kill "$(cat "$work/iperf3.pid")" 2>/dev/null
    for ns in "$ns_a" "$ns_b"; do
        if ip netns list | grep -qw "$ns"; then
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
            ip netns delete "$ns"
        fi
    done
    if [ "$status" -ne 0 ]; then
        log "failed; logs kept in $work"
    else
        rm -rf "$work"
    fi
}

# bench_setup WORK_NAME NS_PREFIX TOOL...: needs root and every TOOL; makes the work directory
# (/tmp/WORK_NAME.XXXXXX) and names the namespaces NS_PREFIX-PID-a and -b (each script its
# own prefix, apart from the other's and the netns tests'); cleanup runs on every exit.
bench_setup() {
    local work_name="$1" prefix="$2" tool
    shift 2
    [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, TUN devices)"
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool not found (see the header of this script)"
    done
    work="$(mktemp -d "/tmp/$work_name.XXXXXX")"
    ns_a="$prefix-$$-a"
    ns_b="$prefix-$$-b"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

# build_meshd: builds the release meshd binary unless MESHD_BIN names one; sets MESHD_BIN.
build_meshd() {
    if [ -z "${MESHD_BIN:-}" ]; then
        log "building meshd (release)"
        (cd "$repo" && cargo build --release -p meshd --bin meshd --quiet)
        MESHD_BIN="${CARGO_TARGET_DIR:-$repo/target}/release/meshd"
    fi
    [ -x "$MESHD_BIN" ] || die "meshd binary not found at $MESHD_BIN"
}

# start_underlay: the namespaces $ns_a and $ns_b joined by a veth pair (ul0 on both sides,
# 198.51.100.1/24 in A and .2 in B, documentation range), and an iperf3 server in B on port
# 5201 (its pid in $work/iperf3.pid, which cleanup stops).
start_underlay() {
    log "creating namespaces $ns_a and $ns_b joined by a veth pair"
    ip netns add "$ns_a"
    ip netns add "$ns_b"
    ip -n "$ns_a" link set lo up
    ip -n "$ns_b" link set lo up
    ip -n "$ns_a" link add ul0 type veth peer name ul0 netns "$ns_b"
    ip -n "$ns_a" addr add 198.51.100.1/24 dev ul0
    ip -n "$ns_b" addr add 198.51.100.2/24 dev ul0
    ip -n "$ns_a" link set ul0 up
    ip -n "$ns_b" link set ul0 up
    wait_ping "$ns_a" 198.51.100.2 || die "the veth underlay does not carry pings"

    ip netns exec "$ns_b" iperf3 -s -D --pidfile "$work/iperf3.pid" --logfile "$work/iperf3.log"
    wait_port "$ns_b" 5201 || die "iperf3 server did not start"
}

# wait_ping NS ADDRESS: up to 15 s for one answered ping.
wait_ping() {
    local i
    for i in $(seq 1 15); do
        ip netns exec "$1" ping -n -q -c 1 -W 1 "$2" >/dev/null 2>&1 && return 0
    done
    return 1
}

# wait_port NS PORT: up to 5 s for a TCP listener.
wait_port() {
    local i
    for i in $(seq 1 50); do
        ip netns exec "$1" ss -Hltn "sport = :$2" 2>/dev/null | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

# wait_file PATH: up to 5 s for a file (a control socket) to appear.
wait_file() {
    local i
    for i in $(seq 1 50); do
        [ -e "$1" ] && return 0
        sleep 0.1
    done
    return 1
}

# cpu_ticks PID...: user+system clock ticks of the processes (all threads), summed.
cpu_ticks() {
    local total=0 pid stat
    local -a fields
    for pid in "$@"; do
        # utime and stime are fields 14 and 15 of /proc/PID/stat; the command name (field 2)
        # may contain spaces, so split after its closing parenthesis (field 3 is index 0).
        stat="$(cat "/proc/$pid/stat")"
        read -ra fields <<<"${stat##*) }"
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}

# iperf_run TARGET ARGS...: one iperf3 run from namespace A; prints bits per second received.
iperf_run() {
    local target="$1"; shift
    ip netns exec "$ns_a" iperf3 -c "$target" -t "$duration" -O 1 -J "$@" >"$work/iperf.json" \
        || die "iperf3 -c $target $* failed: $(tail -c 400 "$work/iperf.json")"
    python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"]))' \
        "$work/iperf.json"
}

# udp_run TARGET: one iperf3 UDP run of 64-byte payloads (92-byte IP packets) sent as fast as
# the client can from namespace A; prints the packets per second the server received.
udp_run() {
    ip netns exec "$ns_a" iperf3 -c "$1" -u -l 64 -b 0 -t "$duration" -O 1 -J >"$work/iperf-udp.json" \
        || die "iperf3 -u -c $1 failed: $(tail -c 400 "$work/iperf-udp.json")"
    python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["end"]["sum_received"]
print(int(s["bytes"] / 64 / s["seconds"]))' "$work/iperf-udp.json"
}

# ping_during NS TARGET SECONDS: starts pinging every 50 ms for SECONDS after a 1.5 s delay (past
# iperf3's warm-up second), in the background: RTT under load. ping_result waits for it and
# prints the average RTT in ms.
ping_during() {
    (sleep 1.5 && exec ip netns exec "$1" ping -n -q -i 0.05 -w "$3" "$2") >"$work/ping-load.txt" 2>&1 &
    echo $! >"$work/ping.pid"
}
ping_result() {
    wait "$(cat "$work/ping.pid")" 2>/dev/null || true
    rm -f "$work/ping.pid"
    sed -n 's|^rtt [^=]*= [^/]*/\([^/]*\)/.*|\1|p' "$work/ping-load.txt"
}

# measure LABEL TARGET "PIDS": prints one TSV line:
# label, bps single, bps reverse, bps 4 streams, idle ping avg ms, CPU seconds of PIDS during
# each of the three TCP runs (empty without PIDS), ping avg ms during the single-stream run,
# 64-byte UDP packets per second received, CPU seconds of PIDS during the UDP run.
measure() {
    local label="$1" target="$2" pids="$3" hz
    hz="$(getconf CLK_TCK)"
    wait_ping "$ns_a" "$target" || die "$label: no ping to $target through the tunnel"
    local line="$label" mode before after cpu="" rtt_load="" udp=""
    for mode in "" "-R" "-P 4" "udp"; do
        log "$label: iperf3 ${mode:-single stream} (${duration}s)"
        [ -n "$pids" ] && before="$(cpu_ticks $pids)"
        if [ -n "$perf_for" ] && [ "$label" = "$perf_for" ] && [ "$mode" = "${PERF_MODE:-}" ]; then
            profile_during_run "$label" "$pids"
        fi
        if [ "$mode" = udp ]; then
            udp="$(udp_run "$target")"
        elif [ -z "$mode" ]; then
            # Pings after the warm-up second, for the measured part of the run.
            ping_during "$ns_a" "$target" "$((duration - 1))"
            line="$line	$(iperf_run "$target")"
            rtt_load="$(ping_result)"
        else
            # shellcheck disable=SC2086
            line="$line	$(iperf_run "$target" $mode)"
        fi
        wait_profile
        if [ -n "$pids" ]; then
            after="$(cpu_ticks $pids)"
            cpu="$cpu	$(python3 -c "print(($after - $before) / $hz)")"
        else
            cpu="$cpu	"
        fi
    done
    log "$label: ping"
    local rtt cpu_tcp cpu_udp
    rtt="$(ip netns exec "$ns_a" ping -n -q -c 50 -i 0.02 "$target" | sed -n 's|^rtt [^=]*= [^/]*/\([^/]*\)/.*|\1|p')"
    cpu_tcp="$(echo "$cpu" | cut -f1-4)"
    cpu_udp="$(echo "$cpu" | cut -f5)"
    echo "$line	$rtt$cpu_tcp	$rtt_load	$udp	$cpu_udp"
}

# profile_during_run LABEL "PIDS": samples the daemons with perf (call graphs) for the length of
# the run that starts next; wait_profile waits for it and writes the report next to the output.
profile_during_run() {
    local pid_list
    pid_list="$(echo "$2" | xargs | tr ' ' ',')"
    perf record -F 499 -g -p "$pid_list" -o "$work/perf.data" -- sleep "$duration" \
        >"$work/perf-record.log" 2>&1 &
    echo $! >"$work/perf.pid"
}

wait_profile() {
    [ -f "$work/perf.pid" ] || return 0
    wait "$(cat "$work/perf.pid")" || log "perf record failed: $(tail -3 "$work/perf-record.log")"
    rm -f "$work/perf.pid"
    perf report -i "$work/perf.data" --no-children --percent-limit 1 --stdio --sort symbol \
        -g none 2>/dev/null | grep -v "^#" | grep -v "^$" | sed "s/[[:space:]-]*$//" | head -40 >"$perf_output"
    log "profile written to $perf_output"
}

# Interface name unique on the host: wireguard-go and boringtun keep their control sockets in
# /var/run/wireguard/, which all namespaces share.
wg_ifname() { echo "mbw$$$1"; }

# start_wg_pair wireguard-go|boringtun: one peer in each namespace, 10.1.0.1/16 (A) and
# 10.2.0.1/16 (B), configured with `wg`. Writes the daemons' pids to $work/pids.
start_wg_pair() {
    local kind="$1" side ns ifname key other_pub endpoint addr peer_net
    : >"$work/pids"
    (umask 077 && wg genkey >"$work/a.key" && wg genkey >"$work/b.key")
    for side in a b; do
        if [ "$side" = a ]; then ns="$ns_a"; else ns="$ns_b"; fi
        ifname="$(wg_ifname "$side")"
        case "$kind" in
            wireguard-go)
                ip netns exec "$ns" env WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 \
                    wireguard-go -f "$ifname" >"$work/$kind-$side.log" 2>&1 &
                ;;
            boringtun)
                ip netns exec "$ns" "$BORINGTUN_CLI" --disable-drop-privileges --foreground \
                    "$ifname" >"$work/$kind-$side.log" 2>&1 &
                ;;
        esac
        echo $! >>"$work/pids"
        echo $! >>"$work/tunnel-pids"
        wait_file "/var/run/wireguard/$ifname.sock" || die "$kind did not start: $(cat "$work/$kind-$side.log")"
    done
    for side in a b; do
        if [ "$side" = a ]; then
            ns="$ns_a"; key="$work/a.key"; other_pub="$(wg pubkey <"$work/b.key")"
            endpoint="endpoint 198.51.100.2:51820"; addr=10.1.0.1/16; peer_net=10.2.0.0/16
        else
            ns="$ns_b"; key="$work/b.key"; other_pub="$(wg pubkey <"$work/a.key")"
            endpoint=""; addr=10.2.0.1/16; peer_net=10.1.0.0/16
        fi
        ifname="$(wg_ifname "$side")"
        # shellcheck disable=SC2086
        ip netns exec "$ns" wg set "$ifname" listen-port 51820 private-key "$key" \
            peer "$other_pub" allowed-ips "$peer_net" $endpoint
        ip -n "$ns" addr add "$addr" dev "$ifname"
        ip -n "$ns" link set "$ifname" mtu 1420 up
        ip -n "$ns" route add "$peer_net" dev "$ifname"
    done
    pids="$(tr '\n' ' ' <"$work/pids")"
    echo "$pids" >"$work/pids"
}

# start_meshd_pair BIN [VAR=VALUE...]: `meshd init` in two state directories with [interface]
# addresses and [[peer]] entries using `meshd pubkey`, then `meshd run` in each namespace, with
# the environment variables given (e.g. TOKIO_WORKER_THREADS=1). MESHD_NODE_EXTRA, if set, is
# one more line for [node] (e.g. "dataplane_workers = 1"; a binary older than the key refuses it).
start_meshd_pair() {
    local bin="$1"; shift
    local side ns dir name endpoint addr
    : >"$work/pids"
    rm -rf "$work/meshd-a" "$work/meshd-b"
    for side in a b; do
        dir="$work/meshd-$side"
        mkdir -p "$dir"
        if [ "$side" = a ]; then endpoint=198.51.100.1:51820; addr=10.1.0.1/16
        else endpoint=198.51.100.2:51820; addr=10.2.0.1/16; fi
        cat >"$dir/meshd.toml" <<TOML
[node]
name = "bench-$side"
role = "core"
listen_port = 51820
endpoints = ["$endpoint"]
${MESHD_NODE_EXTRA:-}

[interface]
name = "mesh0"
addresses = ["$addr"]

[mesh]
pool6 = "fd00:99::/48"
TOML
        "$bin" --config "$dir/meshd.toml" --state-dir "$dir/state" init \
            --name "bench-$side" --endpoint "$endpoint" >"$dir/init.log" 2>&1 \
            || die "meshd init failed: $(cat "$dir/init.log")"
        "$bin" --config "$dir/meshd.toml" --state-dir "$dir/state" pubkey >"$dir/pubkey" \
            || die "meshd pubkey failed"
    done
    for side in a b; do
        dir="$work/meshd-$side"
        if [ "$side" = a ]; then
            name=bench-b; endpoint='"198.51.100.2:51820"'; addr=10.2.0.0/16; other="$work/meshd-b"
        else
            name=bench-a; endpoint=''; addr=10.1.0.0/16; other="$work/meshd-a"
        fi
        cat >>"$dir/meshd.toml" <<TOML

[[peer]]
name = "$name"
public_key = "$(cat "$other/pubkey")"
endpoints = [$endpoint]
allowed_prefixes = ["$addr"]
TOML
    done
    for side in a b; do
        dir="$work/meshd-$side"
        if [ "$side" = a ]; then ns="$ns_a"; else ns="$ns_b"; fi
        ip netns exec "$ns" env RUST_LOG=warn "$@" "$bin" --config "$dir/meshd.toml" \
            --state-dir "$dir/state" run >"$dir/run.log" 2>&1 &
        echo $! >>"$work/tunnel-pids"
        echo -n "$! " >>"$work/pids"
    done
    local i
    for i in $(seq 1 50); do
        ip -n "$ns_a" link show mesh0 >/dev/null 2>&1 && ip -n "$ns_b" link show mesh0 >/dev/null 2>&1 && break
        sleep 0.1
    done
    ip -n "$ns_a" link show mesh0 >/dev/null 2>&1 || die "meshd did not create mesh0: $(cat "$work/meshd-a/run.log")"
}

# Stops the tunnel daemons of the current setup (SIGTERM, then SIGKILL after 5 s).
stop_tunnels() {
    [ -f "$work/tunnel-pids" ] || return 0
    local pid i
    for pid in $(cat "$work/tunnel-pids"); do kill "$pid" 2>/dev/null; done
    for i in $(seq 1 50); do
        local alive=0
        for pid in $(cat "$work/tunnel-pids"); do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" -eq 0 ] && break
        sleep 0.1
    done
    for pid in $(cat "$work/tunnel-pids"); do kill -9 "$pid" 2>/dev/null || true; done
    rm -f "$work/tunnel-pids"
    return 0
}
