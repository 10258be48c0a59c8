#!/usr/bin/env bash
# Cete against etcd 3.4 as the store grows: a 3-node cluster of each on loopback, one after the
# other, loaded with N keys through their HTTP APIs from the same generator (`cete bench`).
# For each: random overwrites on a small store (the flat-cost baseline), the load rate of N
# unique keys, random overwrites across the N keys (rate and tail), memory and disk per node,
# the time to build a snapshot of the N keys, and how long a new (4th) node takes to join and
# catch up. Then a table of the two side by side.
#
#   benches/scale.sh              (or: make bench-scale)
#
# Settings (environment):
#   SCALE_KEYS=1000000      keys loaded (128-byte values, 16-character keys)
#   SCALE_DURATION=20s      length of each overwrite load
#   SCALE_CLIENTS=64        concurrent clients of every load
#   SCALE_SYSTEMS="cete etcd"   which systems to run (the table needs both)
#   SCALE_FLAT=             a duration (e.g. 3m): instead of the above, 64 clients of mixed
#                           reads and writes (half each) over 10,000 keys in 30-second rounds,
#                           memory and file sizes sampled after each round: at a fixed key set
#                           both must stay flat after the first minute
#   BENCH_PORT_BASE=32000   first of the loopback ports used (about 50 above it)
#   BENCH_RESULTS=target/bench-scale  where the JSON of every load and the table are kept
#   SKIP_BUILD=1            use ./bin/cete as it is instead of `make build`
#   KEEP_DATA=1             keep the temp data dirs and node logs
#
# Needs curl and jq; installs etcd-server and etcd-client with apt-get when missing (root).
set -euo pipefail

cd "$(dirname "$0")/.."
KEYS=${SCALE_KEYS:-1000000}
DURATION=${SCALE_DURATION:-20s}
CLIENTS=${SCALE_CLIENTS:-64}
SYSTEMS=${SCALE_SYSTEMS:-cete etcd}
FLAT=${SCALE_FLAT:-}
PORT_BASE=${BENCH_PORT_BASE:-32000}
RESULTS=${BENCH_RESULTS:-target/bench-scale}
CETE=./bin/cete
BASE_KEYS=10000
FLAT_KEYS=10000
FLAT_ROUND=30s

WORK=$(mktemp -d /tmp/cete-scale.XXXXXX)
. benches/lib.sh
trap cleanup EXIT
trap 'exit 130' INT TERM

kib() { du -sk "$@" 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }

# disk_kib SYSTEM I: "state snapshots log" of node I, KiB on disk. Cete: store.redb,
# snapshots/, raft-log/. etcd: member/snap/db (its state), the rest of member/snap/, member/wal/.
disk_kib() {
    local dir
    if [ "$1" = cete ]; then
        dir="$WORK/cete/node$2"
        echo "$(kib "$dir/store.redb") $(kib "$dir/snapshots") $(kib "$dir/raft-log")"
    else
        dir="$WORK/etcd/etcd$2/member"
        echo "$(kib "$dir/snap/db") $(($(kib "$dir/snap") - $(kib "$dir/snap/db"))) $(kib "$dir/wal")"
    fi
}

# record_nodes SYSTEM WHEN: RSS and disk of nodes 1-3 as JSON lines in RESULTS/SYSTEM-nodes.jsonl.
record_nodes() {
    local system=$1 when=$2 i
    for i in 1 2 3; do
        local pid=${PIDS[$((i - 1))]} state snaps wal kept=null
        read -r state snaps wal <<<"$(disk_kib "$system" "$i")"
        # Cete: the write sequences its client sessions keep (exactly-once record).
        [ "$system" = cete ] && kept=$(curl -sf "http://127.0.0.1:$(port $((20 + i)))/v1/metrics" |
            awk '$1 == "cete_store_session_sequences" { print $2 }')
        jq -cn --arg when "$when" --argjson node "$i" --argjson rss "$(rss_kib "$pid")" \
            --argjson peak "$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status")" \
            --argjson state "$state" --argjson snapshots "$snaps" --argjson log "$wal" --argjson kept "${kept:-null}" \
            '{when: $when, node: $node, rss_kib: $rss, peak_rss_kib: $peak, state_kib: $state, snapshots_kib: $snapshots, log_kib: $log, session_sequences: $kept}'
    done >>"$RESULTS/$system-nodes.jsonl"
}

# timed COMMAND...: runs it, prints its wall time in seconds.
timed() {
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }'
}

# Cete: build a snapshot on the leader (GET /v1/snapshot answers once it is written).
snapshot_cete() { timed curl -sf --max-time 600 "$CETE_LEADER/v1/snapshot"; }
# etcd: `etcdctl snapshot save` from the leader (its whole backend, as a new member is sent).
snapshot_etcd() { timed etcdctl --endpoints "$ETCD_LEADER" snapshot save "$WORK/etcd/snapshot.db"; }

# The applied index of node URL has reached the leader's (both read now).
cete_caught_up() {
    local applied leader
    applied=$(cete_applied "$1") leader=$(cete_applied "$CETE_LEADER")
    [ -n "$applied" ] && [ -n "$leader" ] && [ "$applied" -ge "$leader" ]
}

etcd_applied() { etcd_status "$1" | jq -r '(.raftAppliedIndex // .raftIndex) | tonumber'; }

etcd_caught_up() {
    local applied leader
    applied=$(etcd_applied "$1") leader=$(etcd_applied "$ETCD_LEADER")
    [ -n "$applied" ] && [ -n "$leader" ] && [ "$applied" -ge "$leader" ]
}

# A 4th node joins; seconds from its start until its applied index reaches the leader's.
catch_up_cete() {
    local start
    start=$(date +%s.%N)
    start_cete_node 4 "$(port 11)" 900
    wait_until "caught-up cete node4" 900 cete_caught_up "http://127.0.0.1:$(port 24)"
    awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'
}

catch_up_etcd() {
    local start
    start=$(date +%s.%N)
    etcdctl --endpoints "$ETCD_LEADER" member add etcd4 --peer-urls "http://127.0.0.1:$(port 44)" >/dev/null
    start_etcd_node 4 "$(etcd_cluster_spec 4)" existing
    wait_until "caught-up etcd4" 900 etcd_caught_up "http://127.0.0.1:$(port 34)"
    awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'
}

leader_of() { if [ "$1" = cete ]; then echo "$CETE_LEADER"; else echo "$ETCD_LEADER"; fi; }
all_of() { if [ "$1" = cete ]; then echo "$CETE_ALL"; else echo "$ETCD_ALL"; fi; }

scale_run() {
    local system=$1 all
    "start_$system"
    all=$(all_of "$system")
    record_nodes "$system" started
    bench_load "$system" base "$all" put --clients "$CLIENTS" --duration "$DURATION" \
        --key-space random --keys $BASE_KEYS
    bench_load "$system" load "$all" put --clients "$CLIENTS" --total "$KEYS" --key-space unique
    record_nodes "$system" loaded
    start_sampler "$RESULTS/$system-rss.txt"
    bench_load "$system" overwrite "$all" put --clients "$CLIENTS" --duration "$DURATION" \
        --key-space random --keys "$KEYS"
    stop_sampler
    record_nodes "$system" overwritten
    log "$system: snapshot"
    "snapshot_$system" >"$RESULTS/$system-snapshot.seconds"
    record_nodes "$system" snapshot
    log "$system: a 4th node joins"
    "catch_up_$system" >"$RESULTS/$system-catch-up.seconds"
    stop_nodes
}

flat_run() {
    local system=$1 all rounds elapsed=0 round=1
    "start_$system"
    all=$(all_of "$system")
    rounds=$(awk -v f="$(seconds "$FLAT")" -v r="$(seconds $FLAT_ROUND)" 'BEGIN { n = int(f / r); print n < 1 ? 1 : n }')
    bench_load "$system" flat-preload "$all" get --clients "$CLIENTS" --keys $FLAT_KEYS --total 1
    record_nodes "$system" 0s
    for round in $(seq "$rounds"); do
        bench_load "$system" "flat-$round" "$all" mixed --clients "$CLIENTS" --duration $FLAT_ROUND \
            --keys $FLAT_KEYS --key-space random --read-ratio 0.5 --consistency linearizable --skip-preload
        elapsed=$((elapsed + $(seconds $FLAT_ROUND)))
        record_nodes "$system" "${elapsed}s"
    done
    stop_nodes
}

# seconds 30s|3m: whole seconds.
seconds() { awk -v d="$1" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; if (d ~ /h$/) n *= 3600; print int(n) }'; }

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
# node_max SYSTEM WHEN FIELD: the largest FIELD among nodes 1-3 at WHEN.
node_max() { jq -s --arg w "$2" "map(select(.when == \$w) | .$3) | max" "$RESULTS/$1-nodes.jsonl"; }
node_mean() { jq -s --arg w "$2" "map(select(.when == \$w) | .$3) | add / length" "$RESULTS/$1-nodes.jsonl"; }

print_table() {
    local row c e
    row() { printf '%-48s %12s %12s %10s  %-22s %s\n' "$@"; }
    row "metric ($KEYS keys, $CLIENTS clients)" "cete" "etcd" "cete/etcd" "target" "met"
    c=$(field cete-base .throughput) e=$(field etcd-base .throughput)
    row "overwrites, $BASE_KEYS-key store (req/s)" "$(printf %.0f "$c")" "$(printf %.0f "$e")" "$(ratio "$c" "$e")" "-" ""
    c=$(field cete-base .latency_ms.p99) e=$(field etcd-base .latency_ms.p99)
    row "  p99 (ms)" "$c" "$e" "$(ratio "$c" "$e")" "-" ""
    c=$(field cete-load .throughput) e=$(field etcd-load .throughput)
    row "loading $KEYS unique keys (req/s)" "$(printf %.0f "$c")" "$(printf %.0f "$e")" "$(ratio "$c" "$e")" "-" ""
    c=$(field cete-overwrite .throughput) e=$(field etcd-overwrite .throughput)
    row "random overwrites across $KEYS keys (req/s)" "$(printf %.0f "$c")" "$(printf %.0f "$e")" \
        "$(ratio "$c" "$e")" "-" ""
    local base flat
    base=$(field cete-base .throughput)
    flat=$(ratio "$c" "$base")
    row "  cete: of its $BASE_KEYS-key rate" "$flat" "$(ratio "$e" "$(field etcd-base .throughput)")" "-" \
        ">= 0.85" "$(holds "$flat" '>=' 0.85)"
    c=$(field cete-overwrite .latency_ms.p99) e=$(field etcd-overwrite .latency_ms.p99)
    row "  p99 (ms)" "$c" "$e" "$(ratio "$c" "$e")" "<= 1.00x etcd" "$(holds "$c" '<=' "$e")"
    c=$(field cete-overwrite .latency_ms.p999) e=$(field etcd-overwrite .latency_ms.p999)
    row "  p999 (ms)" "$c" "$e" "$(ratio "$c" "$e")" "-" ""
    c=$(mib "$(node_max cete overwritten rss_kib)") e=$(mib "$(node_max etcd overwritten rss_kib)")
    row "RSS of the largest node, after (MiB)" "$c" "$e" "$(ratio "$c" "$e")" "<= 0.70x etcd" \
        "$(holds "$(ratio "$c" "$e")" '<=' 0.70)"
    c=$(mib "$(node_max cete snapshot peak_rss_kib)") e=$(mib "$(node_max etcd snapshot peak_rss_kib)")
    row "peak RSS of the largest node (MiB)" "$c" "$e" "$(ratio "$c" "$e")" "-" ""
    c=$(mib "$(node_mean cete overwritten state_kib)") e=$(mib "$(node_mean etcd overwritten state_kib)")
    row "state on disk per node (MiB; store.redb | db)" "$c" "$e" "$(ratio "$c" "$e")" "-" ""
    c=$(mib "$(node_mean cete snapshot snapshots_kib)") e=$(mib "$(node_mean etcd snapshot snapshots_kib)")
    row "snapshots per node, after one (MiB)" "$c" "$e" "$(ratio "$c" "$e")" "-" ""
    c=$(mib "$(node_mean cete overwritten log_kib)") e=$(mib "$(node_mean etcd overwritten log_kib)")
    row "log per node (MiB; raft-log | wal)" "$c" "$e" "$(ratio "$c" "$e")" "-" ""
    c=$(cat "$RESULTS/cete-snapshot.seconds") e=$(cat "$RESULTS/etcd-snapshot.seconds")
    row "building a snapshot (s)" "$c" "$e" "$(ratio "$c" "$e")" "-" ""
    c=$(cat "$RESULTS/cete-catch-up.seconds") e=$(cat "$RESULTS/etcd-catch-up.seconds")
    row "a 4th node joins and catches up (s)" "$c" "$e" "$(ratio "$c" "$e")" "-" ""
    c=$(jq -s 'map(.errors) | add' "$RESULTS"/cete-*.json)
    e=$(jq -s 'map(.errors) | add' "$RESULTS"/etcd-*.json)
    row "failed requests, all loads" "$c" "$e" "-" "0" "$(holds "$c" '<=' 0)"
    echo
    echo "overwrites: $DURATION each over HTTP, 128-byte values, spread over the 3 nodes;" \
        "snapshot: Cete's /v1/snapshot on the leader, etcd's etcdctl snapshot save"
    echo "$(nproc) cores; load average before: $LOAD_BEFORE, after: $LOAD_AFTER"
}

print_flat() {
    local system
    for system in $SYSTEMS; do
        echo "$system: 64 clients, half reads (linearizable), half writes over $FLAT_KEYS keys; per node after each round"
        jq -rs 'group_by(.when) | sort_by(.[0].when | rtrimstr("s") | tonumber) | .[] |
            "  \(.[0].when | (. + "     ")[0:6]) RSS MiB \(map(.rss_kib / 1024 | floor) | join(" / "))   state MiB \(map(.state_kib / 1024 * 10 | floor / 10) | join(" / "))   snapshots MiB \(map(.snapshots_kib / 1024 * 10 | floor / 10) | join(" / "))   log MiB \(map(.log_kib / 1024 * 10 | floor / 10) | join(" / "))\(if .[0].session_sequences == null then "" else "   session rows \(map(.session_sequences) | join(" / "))" end)"' \
            "$RESULTS/$system-nodes.jsonl"
        jq -rs 'map(select(.workload == "mixed")) | "  throughput per round: \(map(.throughput | floor) | join(" ")) req/s; errors \(map(.errors) | add)"' \
            "$RESULTS"/$system-flat-*.json
    done
}

main() {
    need curl
    need jq
    install_etcd
    build_cete
    rm -rf "$RESULTS"
    mkdir -p "$RESULTS"
    LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
    log "$("$CETE" version 2>/dev/null | head -1) against etcd $(etcd --version | awk 'NR == 1 { print $3 }')"
    local system
    for system in $SYSTEMS; do
        if [ -n "$FLAT" ]; then flat_run "$system"; else scale_run "$system"; fi
    done
    LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
    if [ -n "$FLAT" ]; then
        print_flat | tee "$RESULTS/flat.txt"
    elif [ "$SYSTEMS" = "cete etcd" ]; then
        print_table | tee "$RESULTS/table.txt"
    fi
    log "JSON of every load and the table are in $RESULTS"
}

main "$@"
