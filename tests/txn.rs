//! Transactions over HTTP (README, "Transactions"): `POST /v1/txn` with compares, a success
//! and a failure list, applied atomically at one revision. Clients moving units between two
//! keys through every node, while others read both, never see a unit made or lost.
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use common::{data, wait_for_revisions, Cluster, Node, Reply};
use serde_json::{json, Value};

fn txn(node: &Node, body: &Value) -> Reply {
    node.post("/v1/txn", body.to_string())
}

/// A transaction that must be answered 200; its answer.
fn txn_ok(node: &Node, body: &Value) -> Value {
    let reply = txn(node, body);
    reply.assert_success();
    reply.json()
}

/// The value and mod revision of `key` as a transaction's get found it.
fn got(result: &Value) -> (u64, u64) {
    let get = &result["get"];
    assert_eq!(get["found"], true, "not found: {result}");
    let value = get["value"].as_str().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("a number: {get}"));
    (value, get["mod_revision"].as_u64().expect("a mod revision"))
}

#[test]
fn moves_between_two_keys_are_atomic_under_concurrent_readers() {
    const TOTAL: u64 = 100;
    const MOVERS: usize = 4;
    const MOVES: u64 = 10;
    let cluster = Cluster::start(3);
    let leader = &cluster.nodes[cluster.leader()];
    wait_for_revisions(leader);
    let start = json!({"success": [
        {"put": {"key": "acct/a", "value": TOTAL.to_string()}},
        {"put": {"key": "acct/b", "value": "0"}}
    ]});
    txn_ok(leader, &start);

    let done = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let (moved, conflicts) = thread::scope(|scope| {
        // Readers: both keys in one transaction, and both under one scan, through every node.
        for node in &cluster.nodes {
            let (done, reads) = (&done, &reads);
            scope.spawn(move || {
                let read_both = json!({"success": [{"get": {"key": "acct/a"}}, {"get": {"key": "acct/b"}}]});
                while !done.load(Ordering::Relaxed) {
                    let answer = txn_ok(node, &read_both);
                    let (a, b) = (got(&answer["results"][0]).0, got(&answer["results"][1]).0);
                    assert_eq!(a + b, TOTAL, "a transaction read half a move: {answer}");
                    let scan = node.get("/v1/scan?prefix=acct/");
                    let sum: u64 = scan.json()["pairs"]
                        .as_array()
                        .expect("pairs")
                        .iter()
                        .map(|pair| pair["value"].as_str().and_then(|v| v.parse::<u64>().ok()).expect("a number"))
                        .sum();
                    assert_eq!(sum, TOTAL, "a scan read half a move: {}", scan.text());
                    reads.fetch_add(2, Ordering::Relaxed);
                }
            });
        }
        let movers: Vec<_> = (0..MOVERS)
            .map(|mover| {
                let node = &cluster.nodes[mover % 3];
                scope.spawn(move || {
                    let (mut moved, mut conflicts) = (0, 0);
                    while moved < MOVES {
                        let read = json!({"success": [{"get": {"key": "acct/a"}}, {"get": {"key": "acct/b"}}]});
                        let answer = txn_ok(node, &read);
                        let ((a, a_rev), (b, b_rev)) = (got(&answer["results"][0]), got(&answer["results"][1]));
                        let one_unit = json!({
                            "compare": [
                                {"key": "acct/a", "target": "mod_revision", "op": "=", "value": a_rev},
                                {"key": "acct/b", "target": "mod_revision", "op": "=", "value": b_rev}
                            ],
                            "success": [
                                {"put": {"key": "acct/a", "value": (a - 1).to_string()}},
                                {"put": {"key": "acct/b", "value": (b + 1).to_string()}}
                            ],
                            "failure": [{"get": {"key": "acct/a"}}]
                        });
                        let answer = txn_ok(node, &one_unit);
                        if answer["succeeded"] == true {
                            assert_eq!(answer["results"].as_array().map(Vec::len), Some(2));
                            moved += 1;
                        } else {
                            conflicts += 1;
                        }
                    }
                    (moved, conflicts)
                })
            })
            .collect();
        let totals = movers.into_iter().map(|m| m.join().expect("a mover")).fold((0, 0), |t, m| (t.0 + m.0, t.1 + m.1));
        done.store(true, Ordering::Relaxed);
        totals
    });
    eprintln!("{moved} moves, {conflicts} lost races retried, {} reads", reads.load(Ordering::Relaxed));
    for node in &cluster.nodes {
        let answer = txn_ok(node, &json!({"success": [{"get": {"key": "acct/a"}}, {"get": {"key": "acct/b"}}]}));
        let ((a, a_rev), (b, b_rev)) = (got(&answer["results"][0]), got(&answer["results"][1]));
        assert_eq!((a, b), (TOTAL - moved, moved), "moves were lost or made twice");
        assert_eq!(a_rev, b_rev, "both keys of a move change at one revision");
    }
}

#[test]
fn compares_judge_missing_keys_and_one_revision_covers_every_write() {
    let cluster = Cluster::start(1);
    let node = &cluster.nodes[0];
    wait_for_revisions(node);
    // A key that does not exist has version 0, and no value: "!=" a value does not hold.
    let create = json!({
        "compare": [{"key": "cfg/a", "target": "version", "op": "=", "value": 0}],
        "success": [
            {"put": {"key": "cfg/a", "value": "1"}},
            {"put": {"key": "cfg/b", "value_base64": "/9j/"}},
            {"put": {"key": "cfg/c", "value": "3"}},
            {"get": {"key": "cfg/b"}},
            {"scan": {"prefix": "cfg/", "limit": 2}}
        ]
    });
    let reply = txn(node, &create);
    reply.assert_success();
    let answer = reply.json();
    assert_eq!(answer["succeeded"], true, "{answer}");
    let revision = answer["revision"].as_u64().expect("a revision");
    assert_eq!(reply.number("X-Cete-Revision"), revision);
    let results = &answer["results"];
    assert_eq!(results[0], json!({"put": {"key": "cfg/a"}}));
    assert_eq!(results[3]["get"]["value_base64"], "/9j/", "bytes that are not UTF-8 travel as base64");
    assert_eq!(results[3]["get"]["mod_revision"], revision, "a read sees the transaction's own writes");
    assert_eq!((results[4]["scan"]["more"].clone(), results[4]["scan"]["count"].clone()), (json!(true), json!(3)));
    for key in ["cfg/a", "cfg/b", "cfg/c"] {
        let read = node.get(&data(key));
        assert_eq!(read.number("X-Cete-Mod-Revision"), revision, "{key} was written at another revision");
    }

    // The same compare fails now; so does any compare of a missing key's value.
    let again = txn_ok(node, &create.clone());
    assert_eq!((again["succeeded"].clone(), again["results"].clone()), (json!(false), json!([])));
    assert_eq!(again["revision"], revision, "a transaction that wrote nothing makes no revision");
    for op in ["=", "!=", "<", ">"] {
        let missing = json!({
            "compare": [{"key": "nothing", "target": "value", "op": op, "value": "x"}],
            "failure": [{"delete": {"prefix": "cfg/"}}]
        });
        let answer = txn_ok(node, &missing);
        assert_eq!(answer["succeeded"], false, "{op} held for the value of a missing key");
        if op == "=" {
            assert_eq!(answer["results"][0]["delete"]["deleted"], 3);
            assert_eq!(answer["revision"], revision + 1, "three deletes, one revision");
            node.get(&data("cfg/a")).assert_error(404);
        }
    }
}

#[test]
fn transactions_that_cannot_be_applied_get_400_with_the_reason() {
    let cluster = Cluster::start(1);
    let node = &cluster.nodes[0];
    wait_for_revisions(node);
    let put = |key: &str| json!({"put": {"key": key, "value": "v"}});
    let too_many: Vec<Value> = (0..129).map(|i| put(&format!("k{i}"))).collect();
    for (body, says) in [
        (json!({"success": [put("a"), put("a")]}).to_string(), "twice"),
        (json!({"success": [{"delete": {"prefix": "a"}}, put("a/b")]}).to_string(), "twice"),
        (json!({"success": too_many}).to_string(), "limit of 128"),
        (json!({"success": [{"put": {"key": "", "value": "v"}}]}).to_string(), "key"),
        (json!({"compare": [{"key": "a", "target": "colour", "op": "=", "value": 1}]}).to_string(), "target"),
        (json!({"success": [{"scan": {"prefix": "a", "limit": 0}}]}).to_string(), "limit"),
        ("{\"success\": [".to_string(), "JSON"),
        (String::new(), "JSON"),
    ] {
        let reply = node.post("/v1/txn", body.clone());
        reply.assert_error(400);
        let error = reply.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(error.contains(says), "{body:?} answered {error:?}");
    }
    node.get("/v1/txn").assert_error(405);
    // Nothing of the refused ones was written.
    assert_eq!(node.get("/v1/scan?count_only=true").json()["count"], 1, "only the probe is stored");
}
