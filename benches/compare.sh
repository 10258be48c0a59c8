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
# Needs curl and jq; installs etcd-server and etcd-client with apt-get when missing (root).
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
. benches/lib.sh
trap cleanup EXIT
trap 'exit 130' INT TERM

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

# run_load SYSTEM NAME ENDPOINTS BENCH-ARGS...: one bounded load, the nodes' memory sampled.
run_load() {
    start_sampler "$RESULTS/$1-rss.txt"
    bench_load "$@"
    stop_sampler
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

bench_cete() {
    start_cete
    run_loads cete "$CETE_ALL" "$CETE_LEADER"
    stop_nodes
}

bench_etcd() {
    start_etcd
    run_loads etcd "$ETCD_ALL" "$ETCD_LEADER"
    stop_nodes
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
        ">= 3.00x etcd" "$(holds "$(ratio "$c" "$e")" '>=' 3)"
    c=$(field cete-put .latency_ms.p99) e=$(field etcd-put .latency_ms.p99)
    row "write p99 latency, $CLIENTS clients (ms)" "$c" "$e" "$(ratio "$c" "$e")" "<= 1.00x etcd" "$(holds "$c" '<=' "$e")"
    c=$(field cete-put .latency_ms.p50) e=$(field etcd-put .latency_ms.p50)
    row "write p50 latency, $CLIENTS clients (ms)" "$c" "$e" "$(ratio "$c" "$e")" "-" ""
    c=$(field cete-get .throughput) e=$(field etcd-get .throughput)
    row "linearizable reads, $CLIENTS clients (req/s)" "$(printf %.0f "$c")" "$(printf %.0f "$e")" "$(ratio "$c" "$e")" \
        ">= 5.00x etcd" "$(holds "$(ratio "$c" "$e")" '>=' 5)"
    c=$(field cete-get .latency_ms.p99) e=$(field etcd-get .latency_ms.p99)
    row "read p99 latency, $CLIENTS clients (ms)" "$c" "$e" "$(ratio "$c" "$e")" "-" ""
    c=$(cpu_us_per_request cete-put) e=$(cpu_us_per_request etcd-put)
    row "node CPU per write, 3 nodes (us)" "$c" "$e" "$(ratio "$c" "$e")" "-" ""
    c=$(cpu_us_per_request cete-get) e=$(cpu_us_per_request etcd-get)
    row "node CPU per linearizable read, 3 nodes (us)" "$c" "$e" "$(ratio "$c" "$e")" "-" ""
    local fsync_ms limit met
    fsync_ms=$(awk '{ s += $2; n++ } END { printf "%.3f", s / n }' "$RESULTS/fsync.txt")
    limit=$(awk -v f="$fsync_ms" 'BEGIN { printf "%.3f", 3 * f }')
    c=$(field cete-put1 .latency_ms.p50) e=$(field etcd-put1 .latency_ms.p50)
    met=$(holds "$(ratio "$c" "$e")" '<=' 0.6)
    [ "$met" = yes ] && met=$(holds "$c" '<=' "$limit")
    row "1-client sequential write, p50 (ms)" "$c" "$e" "$(ratio "$c" "$e")" "<= 0.6x etcd, <= 3 fsyncs ($limit)" "$met"
    c=$(field cete-put1 '.latency_ms.mean * 1000 | round / 1000') e=$(field etcd-put1 '.latency_ms.mean * 1000 | round / 1000')
    row "1-client sequential write, mean (ms)" "$c" "$e" "$(ratio "$c" "$e")" "-" ""
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
    build_cete
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
