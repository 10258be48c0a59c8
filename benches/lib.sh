# Shared by the benchmark scripts (compare.sh, scale.sh): starting and stopping 3-node Cete and
# etcd clusters on loopback, sampling their processes, and the arithmetic of the tables.
# Sourced, not run. The script sets WORK (temp dir), RESULTS, PORT_BASE and CETE first.
#
# Every process started here is recorded in PIDS (nodes) or SAMPLER, and only those are
# stopped: other people's cete and etcd processes on the same machine are never touched.

PIDS=()
SAMPLER=""

log() { printf '== %s\n' "$*" >&2; }
die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

cleanup() {
    [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
    stop_nodes
    if [ -n "${KEEP_DATA:-}" ]; then log "data and logs kept in $WORK"; else rm -rf "$WORK"; fi
}

stop_nodes() {
    [ "${#PIDS[@]}" -eq 0 ] && return 0
    kill "${PIDS[@]}" 2>/dev/null || true
    for _ in $(seq 100); do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ "$alive" -eq 0 ] && break
        sleep 0.1
    done
    kill -9 "${PIDS[@]}" 2>/dev/null || true
    wait "${PIDS[@]}" 2>/dev/null || true
    PIDS=()
}

# wait_until WHAT SECONDS COMMAND...: polls COMMAND until it succeeds.
wait_until() {
    local what=$1 seconds=$2
    shift 2
    for _ in $(seq $((seconds * 10))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "no $what within ${seconds}s (logs in $WORK)"
}

need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required"; }

# etcd 3.4 from Debian (etcd-server), and etcdctl (etcd-client) for its snapshots.
install_etcd() {
    command -v etcd >/dev/null 2>&1 && command -v etcdctl >/dev/null 2>&1 && return 0
    log "installing etcd-server and etcd-client (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null
    command -v etcd >/dev/null 2>&1 || die "etcd-server did not install an etcd binary"
}

build_cete() {
    if [ -z "${SKIP_BUILD:-}" ]; then
        log "building cete (release)"
        make build >&2
    fi
    [ -x "$CETE" ] || die "$CETE is missing; run make build"
}

port() { echo $((PORT_BASE + $1)); }

# CPU time (clock ticks) the running nodes have used so far, all together.
node_cpu_ticks() {
    for pid in "${PIDS[@]}"; do awk '{ print $14 + $15 }' "/proc/$pid/stat"; done | awk '{ s += $1 } END { print s }'
}

# Peak resident memory so far (VmHWM, KiB) of each running node, largest first.
peak_rss_kib() {
    for pid in "${PIDS[@]}"; do awk '/^VmHWM/ { print $2 }' "/proc/$pid/status"; done | sort -rn
}

# rss_kib PID: resident memory now (VmRSS, KiB).
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

# Samples VmRSS of the nodes twice a second into FILE until killed.
start_sampler() {
    local file=$1
    (
        while :; do
            for pid in "${PIDS[@]}"; do awk -v pid="$pid" '/^VmRSS/ { print pid, $2 }' "/proc/$pid/status" 2>/dev/null; done
            sleep 0.5
        done
    ) >>"$file" &
    SAMPLER=$!
}

stop_sampler() {
    kill "$SAMPLER" 2>/dev/null || true
    wait "$SAMPLER" 2>/dev/null || true
    SAMPLER=""
}

# bench_load SYSTEM NAME ENDPOINTS BENCH-ARGS...: one bounded `cete bench` load through HTTP; its
# JSON goes to RESULTS/SYSTEM-NAME.json, the nodes' CPU ticks meanwhile to .cpu.
bench_load() {
    local system=$1 name=$2 endpoints=$3
    shift 3
    local out="$RESULTS/$system-$name.json"
    log "$system: $name"
    local cpu_before
    cpu_before=$(node_cpu_ticks)
    "$CETE" bench "$@" --target "$system" --protocol http --http-address "$endpoints" --json >"$out"
    echo $(($(node_cpu_ticks) - cpu_before)) >"$RESULTS/$system-$name.cpu"
    jq -c '{target, workload, clients, requests, errors, throughput: (.throughput | floor), p50: .latency_ms.p50, p99: .latency_ms.p99, first_error: (.error_samples[0].message // null)}' "$out" >&2
}

# start_cete_node I [PEER-GRPC-PORT [READY-SECONDS]]: node I on ports PORT_BASE + I (raft),
# + 10 + I (gRPC), + 20 + I (HTTP), joining the cluster at the peer when one is given; waits
# until it is ready (60 s unless told).
start_cete_node() {
    local i=$1 peer=() ready=${3:-60}
    [ -n "${2:-}" ] && peer=(--peer-grpc-address "127.0.0.1:$2")
    "$CETE" start --id "node$i" --raft-address "127.0.0.1:$(port "$i")" \
        --grpc-address "127.0.0.1:$(port $((10 + i)))" --http-address "127.0.0.1:$(port $((20 + i)))" \
        --data-directory "$WORK/cete/node$i" --log-file "$WORK/cete/node$i.log" "${peer[@]}" \
        >>"$WORK/cete/node$i.out" 2>&1 &
    PIDS+=($!)
    wait_until "ready cete node$i" "$ready" curl -sf "http://127.0.0.1:$(port $((20 + i)))/v1/readiness_check"
}

# Starts a 3-node Cete cluster; sets CETE_ALL (the HTTP endpoints) and CETE_LEADER (its URL).
start_cete() {
    mkdir -p "$WORK/cete"
    CETE_ALL=""
    local i
    for i in 1 2 3; do
        start_cete_node "$i" "$([ "$i" -gt 1 ] && port 11)"
        CETE_ALL+="${CETE_ALL:+,}http://127.0.0.1:$(port $((20 + i)))"
    done
    wait_until "3-node cete cluster" 30 \
        sh -c "curl -sf http://127.0.0.1:$(port 21)/v1/cluster | jq -e '(.cluster.nodes | length) == 3 and .cluster.leader != \"\"'"
    CETE_LEADER="http://$(curl -sf "http://127.0.0.1:$(port 21)/v1/cluster" |
        jq -r '.cluster as $c | $c.nodes[$c.leader].metadata.http_address')"
}

# cete_applied URL: the node's last applied log index.
cete_applied() { curl -sf "$1/v1/metrics" | awk '$1 == "cete_raft_applied_index" { print $2 }'; }

# etcd_cluster_spec N: the --initial-cluster value of members 1..N.
etcd_cluster_spec() {
    local spec="" i
    for i in $(seq "$1"); do spec+="${spec:+,}etcd$i=http://127.0.0.1:$(port $((40 + i)))"; done
    echo "$spec"
}

# start_etcd_node I CLUSTER STATE: member I on ports PORT_BASE + 30 + I (client) and + 40 + I
# (peer), with defaults otherwise, as a user would run it (snapshot count, quota, heartbeat).
start_etcd_node() {
    local i=$1 cluster=$2 state=$3
    etcd --name "etcd$i" --data-dir "$WORK/etcd/etcd$i" \
        --listen-client-urls "http://127.0.0.1:$(port $((30 + i)))" \
        --advertise-client-urls "http://127.0.0.1:$(port $((30 + i)))" \
        --listen-peer-urls "http://127.0.0.1:$(port $((40 + i)))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$(port $((40 + i)))" \
        --initial-cluster "$cluster" --initial-cluster-state "$state" --initial-cluster-token cete-compare \
        --logger zap --log-outputs stderr >>"$WORK/etcd/etcd$i.log" 2>&1 &
    PIDS+=($!)
}

# Starts a 3-node etcd cluster; sets ETCD_ALL and ETCD_LEADER like start_cete.
start_etcd() {
    mkdir -p "$WORK/etcd"
    ETCD_ALL=""
    local i url cluster
    cluster=$(etcd_cluster_spec 3)
    for i in 1 2 3; do
        start_etcd_node "$i" "$cluster" new
        ETCD_ALL+="${ETCD_ALL:+,}http://127.0.0.1:$(port $((30 + i)))"
    done
    for i in 1 2 3; do
        url="http://127.0.0.1:$(port $((30 + i)))"
        wait_until "healthy etcd$i" 30 sh -c "curl -sf $url/health | jq -e '.health == \"true\"'"
    done
    ETCD_LEADER=""
    for i in 1 2 3; do
        url="http://127.0.0.1:$(port $((30 + i)))"
        if etcd_status "$url" | jq -e '.leader == .header.member_id' >/dev/null; then ETCD_LEADER=$url; fi
    done
    [ -n "$ETCD_LEADER" ] || die "etcd has no leader"
}

etcd_status() { curl -sf -X POST -d '{}' "$1/v3/maintenance/status"; }

# ratio A B: A / B with two decimals ("-" when B is zero).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f", a / b }'; }
# holds "A OP B": "yes" or "NO".
holds() { awk -v a="$1" -v b="$3" -v op="$2" 'BEGIN { ok = (op == ">=") ? a >= b : a <= b; print ok ? "yes" : "NO" }'; }

field() { jq -r "$2" "$RESULTS/$1.json"; }

# Node CPU (all 3 nodes) per successful request of a load, in microseconds.
cpu_us_per_request() {
    awk -v ticks="$(cat "$RESULTS/$1.cpu")" -v hz="$(getconf CLK_TCK)" -v n="$(field "$1" .requests)" \
        'BEGIN { if (n) printf "%.0f", ticks * 1e6 / hz / n; else print "-" }'
}
