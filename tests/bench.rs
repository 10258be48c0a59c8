//! `cete bench` against a real node, as the README runs it: the report it prints with `--json`
//! must count what it really did — every request it calls successful is a key in the store.
mod common;

use std::collections::BTreeMap;

use common::{cli_ok, Node};
use serde_json::Value;

/// The value `cete bench` writes: `size` bytes cycling through a-z0-9.
fn bench_value(size: usize) -> String {
    "abcdefghijklmnopqrstuvwxyz0123456789".chars().cycle().take(size).collect()
}

fn bench_json(args: &[&str]) -> Value {
    let printed = cli_ok(args);
    serde_json::from_str(printed.trim())
        .unwrap_or_else(|e| panic!("`cete {}` printed no JSON ({e}): {printed}", args.join(" ")))
}

/// Every key in the store, by the number its hex name stands for, with its value.
fn stored(node: &Node) -> BTreeMap<u64, String> {
    let scan = node.get("/v1/scan?prefix=").json();
    let pairs = scan["pairs"].as_array().cloned().unwrap_or_default();
    pairs
        .iter()
        .map(|pair| {
            let key = pair["key"].as_str().expect("a key");
            assert_eq!(key.len(), 16, "not a 16-character bench key: {key:?}");
            let index = u64::from_str_radix(key, 16).unwrap_or_else(|_| panic!("not a hex bench key: {key:?}"));
            (index, pair["value"].as_str().expect("a text value").to_string())
        })
        .collect()
}

#[test]
fn bench_put_reports_the_requests_it_made_and_they_are_in_the_store() {
    let node = Node::start("node1");
    let grpc = node.addresses.grpc.clone();

    // cete bench put --total 200 --clients 4 --json, over gRPC (the default).
    let args =
        ["bench", "put", "--total", "200", "--clients", "4", "--threads", "1", "--json", "--grpc-address", &grpc];
    let report = bench_json(&args);
    assert_eq!((report["requests"].as_u64(), report["errors"].as_u64()), (Some(200), Some(0)), "{report}");
    assert_eq!(
        (&report["workload"], &report["protocol"], &report["clients"]),
        (&"put".into(), &"grpc".into(), &4.into())
    );
    assert!(report["throughput"].as_f64().is_some_and(|t| t > 0.0), "{report}");
    assert!(report["latency_ms"]["p99"].as_f64().is_some_and(|p99| p99 > 0.0), "{report}");

    // 200 distinct keys, client c writing c, c+4, c+8, ...: each client's keys run without a gap.
    let keys = stored(&node);
    assert_eq!(keys.len(), 200, "keys in the store after 200 acknowledged puts");
    assert!(keys.values().all(|value| *value == bench_value(128)), "a value is not the 128 bytes bench writes");
    for client in 0..4u64 {
        let mine: Vec<u64> = keys.keys().copied().filter(|index| index % 4 == client).collect();
        let expected: Vec<u64> = (0..mine.len() as u64).map(|n| client + 4 * n).collect();
        assert_eq!(mine, expected, "client {client}'s keys");
    }

    // Over HTTP, 50 more with 10-byte values: they overwrite the first keys of each client.
    let http = node.addresses.http.clone();
    let args = [
        "bench",
        "put",
        "--protocol",
        "http",
        "--http-address",
        &http,
        "--total",
        "50",
        "--clients",
        "2",
        "--value-size",
        "10",
        "--threads",
        "1",
        "--json",
    ];
    let report = bench_json(&args);
    assert_eq!((report["requests"].as_u64(), report["errors"].as_u64()), (Some(50), Some(0)), "{report}");
    assert_eq!(report["protocol"], "http");
    let keys = stored(&node);
    assert_eq!(keys.len(), 200, "the HTTP run wrote keys the gRPC run had not: {:?}", keys.keys().last());
    let overwritten = keys.values().filter(|value| **value == bench_value(10)).count();
    assert_eq!(overwritten, 50, "keys holding the HTTP run's 10-byte value");
}
