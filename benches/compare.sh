#!/usr/bin/env bash
# Cete against etcd 3.4 on this machine: a 3-node cluster of each on loopback, one after the
# other, the same loads through their HTTP APIs from the same generator (`cete bench`, which
# speaks etcd's JSON gateway with --target etcd), then a table of the two side by side.
#
#   benches/compare.sh            (or: make bench-compare)
#
# Settings (environment):
#   BENCH_DURATION=10s   length of each measured load (each stops by itself)
#   BENCH_CLIENTS=64     concurrent clients of the write and read loads
#   BENCH_PORT_BASE=31000  first of the loopback ports used (about 30 above it)
#   BENCH_RESULTS=target/bench-compare  where the JSON of every load and the table are kept
#   SKIP_BUILD=1         use ./bin/cete as it is instead of `make build`
#   KEEP_DATA=1          keep the temp data dirs and node logs
#
# Needs curl and jq; installs etcd-server with apt-get when etcd is missing (root).
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION=${BENCH_DURATION:-10s}
CLIENTS=${BENCH_CLIENTS:-64}
PORT_BASE=${BENCH_PORT_BASE:-31000}
RESULTS=${BENCH_RESULTS:-target/bench-compare}
CETE=./bin/cete
READ_KEYS=10000
FSYNC_WRITES=500

WORK=$(mktemp -d /tmp/cete-compare.XXXXXX)
PIDS=()
SAMPLER=""

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }

# Every process this script started, and only those, is stopped on the way out.
cleanup() {
    [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
    stop_nodes
    if [ -n "${KEEP_DATA:-}" ]; then log "data and logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

stop_nodes() {
    [ "${#PIDS[@]}" -eq 0 ] && return 0
    kill "${PIDS[@]}" 2>/dev/null || true
    for _ in $(seq 50); do
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

install_etcd() {
    command -v etcd >/dev/null 2>&1 && return 0
    log "installing etcd-server (Debian package)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
    command -v etcd >/dev/null 2>&1 || die "etcd-server did not install an etcd binary"
}

# ms_per_sync FILE FLAGS...: mean milliseconds of one 4 KiB O_DSYNC write (dd's own timing).
ms_per_sync() {
    local file=$1
    shift
    dd if=/dev/zero of="$file" bs=4k count=$FSYNC_WRITES oflag=dsync "$@" 2>&1 |
        awk -v n=$FSYNC_WRITES '/copied/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^s,?$/) { printf "%.3f", $i * 1000 / n; exit } }'
}

# One fsync on the disk the data dirs are on, appended to FSYNC_LOG as "append overwrite" (ms):
# appending (the file grows, as a log does without preallocation) and overwriting (preallocated
# space, data only). Timed before and after the loads: this disk's latency drifts.
measure_fsync() {
    local append overwrite
    append=$(ms_per_sync "$WORK/fsync.probe")
    overwrite=$(ms_per_sync "$WORK/fsync.probe" conv=notrunc)
    rm -f "$WORK/fsync.probe"
    [ -n "$append" ] && [ -n "$overwrite" ] || die "could not time fsync with dd"
    echo "$append $overwrite" >>"$RESULTS/fsync.txt"
}

# CPU time (clock ticks) the running nodes have used so far, all together.
node_cpu_ticks() {
    for pid in "${PIDS[@]}"; do awk '{ print $14 + $15 }' "/proc/$pid/stat"; done | awk '{ s += $1 } END { print s }'
}

# Peak resident memory so far (VmHWM, KiB) of each running node, largest first.
peak_rss_kib() {
    for pid in "${PIDS[@]}"; do awk '/^VmHWM/ { print $2 }' "/proc/$pid/status"; done | sort -rn
}

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

# run_load SYSTEM NAME ENDPOINTS BENCH-ARGS...: one bounded load; its JSON goes to RESULTS.
run_load() {
    local system=$1 name=$2 endpoints=$3
    shift 3
    local out="$RESULTS/$system-$name.json"
    log "$system: $name"
    start_sampler "$RESULTS/$system-rss.txt"
    local cpu_before
    cpu_before=$(node_cpu_ticks)
    "$CETE" bench "$@" --target "$system" --protocol http --http-address "$endpoints" --json >"$out"
    echo $(($(node_cpu_ticks) - cpu_before)) >"$RESULTS/$system-$name.cpu"
    stop_sampler
    jq -c '{target, workload, clients, requests, errors, throughput: (.throughput | floor), p50: .latency_ms.p50, p99: .latency_ms.p99, first_error: (.error_samples[0].message // null)}' "$out" >&2
}

# The three loads, identical for both systems.
run_loads() {
    local system=$1 all=$2 leader=$3
    run_load "$system" put "$all" put --clients "$CLIENTS" --duration "$DURATION" --value-size 128
    # Write the keys the reads will ask for (one read, unmeasured), then read them.
    run_load "$system" preload "$all" get --clients "$CLIENTS" --keys $READ_KEYS --total 1
    run_load "$system" get "$all" get --clients "$CLIENTS" --duration "$DURATION" --keys $READ_KEYS \
        --consistency linearizable --skip-preload
    # One client, one write at a time, sent to the leader: the latency of one replicated commit.
    run_load "$system" put1 "$leader" put --clients 1 --duration "$DURATION" --value-size 128
    peak_rss_kib >"$RESULTS/$system-peak-rss.txt"
}

port() { echo $((PORT_BASE + $1)); }

bench_cete() {
    local data="$WORK/cete" all="" i
    mkdir -p "$data"
    for i in 1 2 3; do
        local peer=()
        [ "$i" -gt 1 ] && peer=(--peer-grpc-address "127.0.0.1:$(port 11)")
        "$CETE" start --id "node$i" --raft-address "127.0.0.1:$(port "$i")" \
            --grpc-address "127.0.0.1:$(port $((10 + i)))" --http-address "127.0.0.1:$(port $((20 + i)))" \
            --data-directory "$data/node$i" --log-file "$data/node$i.log" "${peer[@]}" \
            >>"$data/node$i.out" 2>&1 &
        PIDS+=($!)
        wait_until "ready cete node$i" 30 curl -sf "http://127.0.0.1:$(port $((20 + i)))/v1/readiness_check"
        all+="${all:+,}http://127.0.0.1:$(port $((20 + i)))"
    done
    wait_until "3-node cete cluster" 30 \
        sh -c "curl -sf http://127.0.0.1:$(port 21)/v1/cluster | jq -e '(.cluster.nodes | length) == 3 and .cluster.leader != \"\"'"
    local leader
    leader=$(curl -sf "http://127.0.0.1:$(port 21)/v1/cluster" |
        jq -r '.cluster as $c | $c.nodes[$c.leader].metadata.http_address')
    run_loads cete "$all" "http://$leader"
    stop_nodes
}

bench_etcd() {
    local data="$WORK/etcd" all="" cluster="" i
    mkdir -p "$data"
    for i in 1 2 3; do cluster+="${cluster:+,}etcd$i=http://127.0.0.1:$(port $((40 + i)))"; done
    for i in 1 2 3; do
        # Defaults otherwise, as a user would run it (snapshot count, quota, heartbeat).
        etcd --name "etcd$i" --data-dir "$data/etcd$i" \
            --listen-client-urls "http://127.0.0.1:$(port $((30 + i)))" \
            --advertise-client-urls "http://127.0.0.1:$(port $((30 + i)))" \
            --listen-peer-urls "http://127.0.0.1:$(port $((40 + i)))" \
            --initial-advertise-peer-urls "http://127.0.0.1:$(port $((40 + i)))" \
            --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token cete-compare \
            --logger zap --log-outputs stderr >>"$data/etcd$i.log" 2>&1 &
        PIDS+=($!)
        all+="${all:+,}http://127.0.0.1:$(port $((30 + i)))"
    done
    local leader="" url
    for i in 1 2 3; do
        url="http://127.0.0.1:$(port $((30 + i)))"
        wait_until "healthy etcd$i" 30 sh -c "curl -sf $url/health | jq -e '.health == \"true\"'"
    done
    for i in 1 2 3; do
        url="http://127.0.0.1:$(port $((30 + i)))"
        if curl -sf -X POST -d '{}' "$url/v3/maintenance/status" | jq -e '.leader == .header.member_id' >/dev/null; then
            leader=$url
        fi
    done
    [ -n "$leader" ] || die "etcd has no leader"
    run_loads etcd "$all" "$leader"
    stop_nodes
}

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
mean_rss_mib() { awk '{ s += $2; n++ } END { if (n) printf "%.1f", s / n / 1024; else print 0 }' "$RESULTS/$1-rss.txt"; }
peak_rss_mib() { awk 'NR == 1 { printf "%.1f", $1 / 1024 }' "$RESULTS/$1-peak-rss.txt"; }

print_table() {
    local row
    row() { printf '%-44s %12s %12s %10s  %-26s %s\n' "$@"; }
    local c e
    row "metric" "cete" "etcd" "cete/etcd" "target" "met"
    c=$(field cete-put .throughput) e=$(field etcd-put .throughput)
    row "write throughput, $CLIENTS clients (req/s)" "$(printf %.0f "$c")" "$(printf %.0f "$e")" "$(ratio "$c" "$e")" \
        ">= 2.00x etcd" "$(holds "$(ratio "$c" "$e")" '>=' 2)"
    c=$(field cete-put .latency_ms.p99) e=$(field etcd-put .latency_ms.p99)
    row "write p99 latency, $CLIENTS clients (ms)" "$c" "$e" "$(ratio "$c" "$e")" "<= 1.00x etcd" "$(holds "$c" '<=' "$e")"
    c=$(field cete-put .latency_ms.p50) e=$(field etcd-put .latency_ms.p50)
    row "write p50 latency, $CLIENTS clients (ms)" "$c" "$e" "$(ratio "$c" "$e")" "-" ""
    c=$(field cete-get .throughput) e=$(field etcd-get .throughput)
    row "linearizable reads, $CLIENTS clients (req/s)" "$(printf %.0f "$c")" "$(printf %.0f "$e")" "$(ratio "$c" "$e")" \
        ">= 2.00x etcd" "$(holds "$(ratio "$c" "$e")" '>=' 2)"
    c=$(field cete-get .latency_ms.p99) e=$(field etcd-get .latency_ms.p99)
    row "read p99 latency, $CLIENTS clients (ms)" "$c" "$e" "$(ratio "$c" "$e")" "-" ""
    c=$(cpu_us_per_request cete-put) e=$(cpu_us_per_request etcd-put)
    row "node CPU per write, 3 nodes (us)" "$c" "$e" "$(ratio "$c" "$e")" "-" ""
    c=$(cpu_us_per_request cete-get) e=$(cpu_us_per_request etcd-get)
    row "node CPU per linearizable read, 3 nodes (us)" "$c" "$e" "$(ratio "$c" "$e")" "-" ""
    local fsync_ms limit
    fsync_ms=$(awk '{ s += $2; n++ } END { printf "%.3f", s / n }' "$RESULTS/fsync.txt")
    limit=$(awk -v f="$fsync_ms" 'BEGIN { printf "%.3f", 1.5 * f }')
    c=$(field cete-put1 '.latency_ms.mean * 1000 | round / 1000') e=$(field etcd-put1 '.latency_ms.mean * 1000 | round / 1000')
    row "1-client sequential write, mean (ms)" "$c" "$e" "$(ratio "$c" "$e")" "<= 1.5 x fsync = $limit ms" \
        "$(holds "$c" '<=' "$limit")"
    c=$(field cete-put1 .latency_ms.p99) e=$(field etcd-put1 .latency_ms.p99)
    row "1-client sequential write, p99 (ms)" "$c" "$e" "$(ratio "$c" "$e")" "-" ""
    c=$(peak_rss_mib cete) e=$(peak_rss_mib etcd)
    row "peak RSS of the largest node (MiB)" "$c" "$e" "$(ratio "$c" "$e")" "<= 1.00x etcd" "$(holds "$c" '<=' "$e")"
    c=$(mean_rss_mib cete) e=$(mean_rss_mib etcd)
    row "mean RSS per node under load (MiB)" "$c" "$e" "$(ratio "$c" "$e")" "-" ""
    c=$(jq -s 'map(.errors) | add' "$RESULTS"/cete-*.json)
    e=$(jq -s 'map(.errors) | add' "$RESULTS"/etcd-*.json)
    row "failed requests, all loads" "$c" "$e" "-" "0" "$(holds "$c" '<=' 0)"
    echo
    echo "one fsync on this disk (4 KiB O_DSYNC write, mean of $FSYNC_WRITES), before and after the loads:" \
        "$(awk '{ printf "%s%s ms overwriting, %s ms appending", (NR > 1 ? "; " : ""), $2, $1 }' "$RESULTS/fsync.txt")" \
        "(target uses the mean overwriting figure, $fsync_ms ms)"
    echo "loads: $DURATION each over HTTP, 128-byte values, writes and reads spread over the 3 nodes," \
        "the 1-client load sent to the leader"
    echo "$(nproc) cores; load average before: $LOAD_BEFORE, after: $LOAD_AFTER (other work on the machine skews all of this)"
}

main() {
    need curl
    need jq
    need dd
    install_etcd
    if [ -z "${SKIP_BUILD:-}" ]; then
        log "building cete (release)"
        make build >&2
    fi
    [ -x "$CETE" ] || die "$CETE is missing; run make build"
    rm -rf "$RESULTS"
    mkdir -p "$RESULTS"
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    log "timing fsync on the data disk"
    measure_fsync
    log "$("$CETE" version 2>/dev/null | head -1) against etcd $(etcd --version | awk 'NR == 1 { print $3 }')"
    bench_cete
    bench_etcd
    measure_fsync
    LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
    print_table | tee "$RESULTS/table.txt"
    log "JSON of every load and the table are in $RESULTS"
}

main "$@"
