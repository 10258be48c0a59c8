//! Paged ranges (README, "Coordination"): `limit`, `start_after`, `keys_only`, `count_only`
//! over HTTP, and `cete scan --limit/--start-after/--keys-only/--count` over gRPC; a client
//! pages through 10,000 keys and sees each exactly once, in order.
mod common;

use std::process::Command;
use std::thread;

use common::{cete_bin, cli_ok, data, Cluster, Node};
use serde_json::Value;

const KEYS: usize = 10_000;

fn key(i: usize) -> String {
    format!("page/{i:05}")
}

fn load(node: &Node) {
    thread::scope(|scope| {
        for writer in 0..8 {
            scope.spawn(move || {
                for i in (writer..KEYS).step_by(8) {
                    node.put(&data(&key(i)), format!("v{i}")).assert_success();
                }
            });
        }
    });
}

fn scan(node: &Node, query: &str) -> Value {
    let reply = node.get(&format!("/v1/scan?{query}"));
    reply.assert_success();
    reply.json()
}

#[test]
fn a_client_pages_through_ten_thousand_keys_and_sees_each_once_in_order() {
    let cluster = Cluster::start(1);
    let node = &cluster.nodes[0];
    load(node);
    node.put(&data("pagf"), "after the prefix").assert_success();

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = "prefix=page/&limit=999".to_string();
        if let Some(after) = &after {
            query.push_str(&format!("&start_after={after}"));
        }
        let page = scan(node, &query);
        pages += 1;
        assert_eq!(page["count"], KEYS, "count is every key under the prefix, on every page: {}", page["count"]);
        let pairs = page["pairs"].as_array().expect("pairs");
        for pair in pairs {
            let key = pair["key"].as_str().expect("a key").to_string();
            let i: usize = key["page/".len()..].parse().expect("a number");
            assert_eq!(pair["value"], format!("v{i}"));
            assert!(pair["mod_revision"].as_u64().is_some_and(|r| r > 0), "no revisions in {pair}");
            seen.push(key);
        }
        if page["more"] == false {
            break;
        }
        assert_eq!(pairs.len(), 999, "a page with more after it is full");
        after = seen.last().cloned();
    }
    assert_eq!(pages, KEYS.div_ceil(999));
    let expected: Vec<String> = (0..KEYS).map(key).collect();
    assert_eq!(seen, expected, "every key once, in key order");

    // Keys only, and the count alone.
    let keys_only = scan(node, "prefix=page/&limit=2&keys_only=true");
    assert_eq!(keys_only["pairs"][0].as_object().map(|o| o.contains_key("value")), Some(false), "{keys_only}");
    let count = scan(node, "prefix=page/&count_only=true");
    assert_eq!((count["count"].as_u64(), count["pairs"].as_array().map(Vec::len)), (Some(KEYS as u64), Some(0)));
    // Nonsense is refused, saying why.
    for bad in ["limit=0", "limit=many", "keys_only=perhaps"] {
        let reply = node.get(&format!("/v1/scan?prefix=page/&{bad}"));
        reply.assert_error(400);
    }

    // The CLI: a page, with the next page's start on stderr; keys only; the count.
    let grpc = &node.addresses.grpc;
    let output = Command::new(cete_bin())
        .args(["scan", "page/", "--limit", "2", "--start-after", &key(9997), "--grpc-address", grpc])
        .output()
        .expect("run cete scan");
    assert!(output.status.success(), "{output:?}");
    let lines: Vec<Value> =
        String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    assert_eq!(
        lines,
        [
            serde_json::json!({"key": key(9998), "value": "v9998"}),
            serde_json::json!({"key": key(9999), "value": "v9999"})
        ]
    );
    assert!(String::from_utf8_lossy(&output.stderr).is_empty(), "nothing follows the last page: {output:?}");
    let output = Command::new(cete_bin())
        .args(["scan", "page/", "--limit", "1", "--keys-only", "--grpc-address", grpc])
        .output()
        .expect("run cete scan");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), format!(r#"{{"key":"{}"}}"#, key(0)));
    let hint = String::from_utf8_lossy(&output.stderr);
    assert!(hint.contains(&format!("--start-after \"{}\"", key(0))), "{hint}");
    let counted = cli_ok(&["scan", "page/", "--count", "--grpc-address", grpc]);
    assert_eq!(counted.trim(), format!(r#"{{"count":{KEYS}}}"#));
}
