//! Watches that resume (README, "Watches that resume"): every event carries its revision,
//! `start_revision` replays the history from there and then follows live changes, with no
//! gap and no duplicate across a reconnect, even while writes go on; a revision older than
//! the history kept (`--history-retention`) answers 410 / OUT_OF_RANGE naming the oldest one.
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use common::{cli, cli_ok, data, eventually, wait_for_revisions, Cluster, NdjsonWatch, Node};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// The revision of a watch line of a key's change.
fn revision(line: &Value) -> u64 {
    line["revision"].as_u64().unwrap_or_else(|| panic!("an event without a revision: {line}"))
}

/// The store's revision, as a linearizable read answers it.
fn store_revision(node: &Node) -> u64 {
    node.get("/v1/scan?prefix=&count_only=true").json()["revision"].as_u64().expect("a revision")
}

#[test]
fn a_watch_resumed_on_another_node_misses_nothing_and_repeats_nothing() {
    let cluster = Cluster::start(3);
    let leader = &cluster.nodes[cluster.leader()];
    wait_for_revisions(leader);
    let first = store_revision(leader) + 1;
    let watch = NdjsonWatch::open(&cluster.nodes[0], "prefix=r/");
    for i in 0..5 {
        leader.put(&data(&format!("r/{i}")), format!("v{i}")).assert_success();
    }
    let mut seen: Vec<(u64, String, String)> = Vec::new();
    let note = |seen: &mut Vec<_>, line: &Value| {
        seen.push((revision(line), line["type"].to_string(), line["data"]["key"].to_string()))
    };
    for _ in 0..5 {
        note(&mut seen, &watch.next_change(WAIT));
    }
    let last_seen = seen.last().expect("events").0;
    drop(watch);

    // While nobody watches: a transaction of two keys (one revision, two events), a delete,
    // a key outside the prefix, and a delete of a missing key (no change at all).
    let txn = json!({"success": [
        {"put": {"key": "r/t1", "value": "a"}},
        {"put": {"key": "r/t2", "value": "b"}}
    ]});
    leader.post("/v1/txn", txn.to_string()).assert_success();
    leader.delete(&data("r/0")).assert_success();
    leader.put(&data("other"), "x").assert_success();
    leader.delete(&data("r/never-there")).assert_success();

    // Resume on another node while a writer goes on: the replay and the live changes meet.
    let writing = AtomicBool::new(true);
    let resumed = thread::scope(|scope| {
        scope.spawn(|| {
            for i in 0..200 {
                cluster.nodes[2].put(&data(&format!("r/live/{i}")), "v").assert_success();
            }
            writing.store(false, Ordering::Relaxed);
        });
        let resumed = NdjsonWatch::open(&cluster.nodes[1], &format!("prefix=r/&start_revision={}", last_seen + 1));
        while writing.load(Ordering::Relaxed) {
            thread::yield_now();
        }
        resumed
    });
    let end = store_revision(&cluster.nodes[1]);
    loop {
        let line = resumed.next_change(WAIT);
        note(&mut seen, &line);
        if revision(&line) == end {
            break;
        }
    }
    // Every revision from the first write on, once each, except the one outside the prefix;
    // the transaction's twice (two keys).
    let revisions: Vec<u64> = seen.iter().map(|(r, _, _)| *r).collect();
    let mut expected: Vec<u64> = (first..=end).collect();
    let txn_revision = last_seen + 1;
    let other = last_seen + 3;
    expected.retain(|r| *r != other);
    expected.insert(expected.iter().position(|r| *r == txn_revision).expect("the transaction") + 1, txn_revision);
    assert_eq!(revisions, expected, "a gap or a duplicate across the reconnect: {seen:?}");
    assert_eq!(seen[6].1, "\"Set\"");
    assert_eq!(seen[7], (last_seen + 2, "\"Delete\"".to_string(), "\"r/0\"".to_string()));
}

#[test]
fn events_carry_the_key_revisions_and_the_cli_resumes_from_a_revision() {
    let cluster = Cluster::start(1);
    let node = &cluster.nodes[0];
    wait_for_revisions(node);
    node.put(&data("k"), "1").assert_success();
    let created = store_revision(node);
    node.put(&data("k"), "2").assert_success();
    node.delete(&data("k")).assert_success();
    let watch = NdjsonWatch::open(node, &format!("prefix=k&start_revision={created}"));
    let set = watch.next_change(WAIT);
    assert_eq!(
        (set["type"].clone(), set["revision"].clone(), set["create_revision"].clone(), set["version"].clone()),
        (json!("Set"), json!(created), json!(created), json!(1)),
        "{set}"
    );
    let second = watch.next_change(WAIT);
    assert_eq!((second["mod_revision"].clone(), second["version"].clone()), (json!(created + 1), json!(2)));
    let delete = watch.next_change(WAIT);
    assert_eq!((delete["type"].clone(), delete["revision"].clone()), (json!("Delete"), json!(created + 2)));

    // The CLI over gRPC: the same three events, then it follows (stopped by the test).
    let background = common::BackgroundCli::spawn(&[
        "watch",
        "--prefix",
        "k",
        "--start-revision",
        &created.to_string(),
        "--grpc-address",
        &node.addresses.grpc,
    ]);
    let lines = eventually("the CLI replays three events", WAIT, || {
        let out = background.stdout();
        let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
        (lines.len() >= 3).then_some(lines)
    });
    drop(background);
    assert_eq!(lines[0]["revision"], created);
    assert_eq!(lines[0]["data"], json!({"key": "k", "value": "1"}));
    assert_eq!((lines[2]["type"].clone(), lines[2]["revision"].clone()), (json!("Delete"), json!(created + 2)));

    let bad = node.get("/v1/watch?start_revision=soon");
    bad.assert_error(400);
}

#[test]
fn a_revision_older_than_the_history_is_gone_and_says_the_oldest_kept() {
    let cluster = Cluster::start_with(1, &["--history-retention", "2s"]);
    let node = &cluster.nodes[0];
    wait_for_revisions(node);
    node.put(&data("old"), "1").assert_success();
    let old = store_revision(node);
    // The compaction needs newer revisions to move to: keep writing until it has.
    let mut i = 0;
    let gone = eventually("the history compacted past the first write", Duration::from_secs(60), || {
        i += 1;
        node.put(&data(&format!("new/{i}")), "v").assert_success();
        let reply = NdjsonWatch::connect(node, &format!("start_revision={old}"));
        (reply.status().as_u16() == 410)
            .then(|| serde_json::from_str::<Value>(&reply.text().expect("a body")).expect("a JSON body"))
    });
    let oldest = gone["compact_revision"].as_u64().unwrap_or_else(|| panic!("no compact_revision in {gone}"));
    assert!(oldest > old, "{gone}");
    assert!(gone["error"].as_str().is_some_and(|e| e.contains("compacted")), "{gone}");

    // From the oldest kept on, it replays; over gRPC the old one is OUT_OF_RANGE.
    let watch = NdjsonWatch::open(node, &format!("start_revision={oldest}"));
    assert!(revision(&watch.next_change(WAIT)) >= oldest);
    let refused = cli(&["watch", "--start-revision", &old.to_string(), "--grpc-address", &node.addresses.grpc]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("compacted"), "{stderr}");
    // What an operator sees of it.
    let floor = common::node_metric(node, "cete_history_compact_revision") as u64;
    assert!(floor >= oldest, "the floor metric {floor} is below the oldest kept {oldest}");
    assert!(common::node_metric(node, "cete_history_changes") >= 1.0);
    assert!(common::node_metric(node, "cete_store_revision") as u64 >= floor - 1);
    // The compaction is in the log: the count of keys and their values are untouched.
    assert_eq!(cli_ok(&["get", "old", "--grpc-address", &node.addresses.grpc]).trim(), "1");
}
