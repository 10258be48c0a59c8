//! What an operator watches: the stream of changes (gRPC Watch, `GET /v1/watch`, `cete watch`)
//! on any node of a cluster, its prefix filter and its bounded buffer, and the Prometheus
//! metrics (`GET /v1/metrics`, gRPC Metrics, `cete metrics`).
mod common;

use std::io::{BufRead, BufReader};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cete_proto::kvs::{event, DeleteMetadataRequest, DeleteRequest, SetMetadataRequest, SetRequest};
use common::{
    block_on, cli_ok, eventually, grpc_watch, is_membership, metric, metric_value, next_event, unpack, BackgroundCli,
    Cluster, NdjsonWatch, Node,
};
use serde_json::{json, Value};

const WATCH_TIMEOUT: Duration = Duration::from_secs(10);

fn set_request(key: &str, value: &str) -> SetRequest {
    SetRequest { key: key.to_string(), value: Bytes::copy_from_slice(value.as_bytes()), ..Default::default() }
}

fn metrics_of(node: &Node) -> String {
    let reply = node.get("/v1/metrics");
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.text()
}

fn watch_subscribers(node: &Node) -> f64 {
    metric_value(&metrics_of(node), "cete_watch_subscribers", &[])
}

#[test]
fn grpc_watch_on_a_follower_sees_writes_made_through_the_leader() {
    let cluster = Cluster::start(3);
    let (leader, follower) = (&cluster.nodes[cluster.leader()], &cluster.nodes[cluster.followers()[0]]);

    block_on(async {
        let (_everything_client, mut everything) = grpc_watch(follower, None).await;
        let (_users_client, mut users) = grpc_watch(follower, Some("user/")).await;

        let mut kvs = leader.grpc_client().await;
        kvs.set(set_request("other/x", "1")).await.expect("Set other/x");
        kvs.set(set_request("user/a", "2")).await.expect("Set user/a");
        kvs.delete(DeleteRequest { key: "user/a".into() }).await.expect("Delete user/a");

        // Everything, in the order it was applied.
        let first = next_event(&mut everything, WATCH_TIMEOUT, is_membership).await;
        assert_eq!(first.r#type, event::Type::Set as i32);
        assert_eq!(unpack::<SetRequest>(&first, "SetRequest"), set_request("other/x", "1"));
        let second = next_event(&mut everything, WATCH_TIMEOUT, is_membership).await;
        assert_eq!(unpack::<SetRequest>(&second, "SetRequest"), set_request("user/a", "2"));
        let third = next_event(&mut everything, WATCH_TIMEOUT, is_membership).await;
        assert_eq!(third.r#type, event::Type::Delete as i32);
        assert_eq!(unpack::<DeleteRequest>(&third, "DeleteRequest"), DeleteRequest { key: "user/a".into() });

        // Only what is under `cete-watch-prefix: user/`.
        let first = next_event(&mut users, WATCH_TIMEOUT, |_| false).await;
        assert_eq!(unpack::<SetRequest>(&first, "SetRequest"), set_request("user/a", "2"));
        let second = next_event(&mut users, WATCH_TIMEOUT, |_| false).await;
        assert_eq!(unpack::<DeleteRequest>(&second, "DeleteRequest"), DeleteRequest { key: "user/a".into() });
    });
}

#[test]
fn http_watch_on_a_follower_streams_ndjson_with_a_prefix_filter() {
    let cluster = Cluster::start(3);
    let (leader, follower) = (&cluster.nodes[cluster.leader()], &cluster.nodes[cluster.followers()[0]]);
    // Events have revisions from then on (the old shape with fields added).
    common::wait_for_revisions(leader);
    let everything = NdjsonWatch::open(follower, "");
    let users = NdjsonWatch::open(follower, "prefix=user/");

    leader.put("/v1/data/other/x", "1").assert_success();
    leader.put("/v1/data/user/a", "2").assert_success();
    leader.delete("/v1/data/user/a").assert_success();

    let expected = [
        json!({"type": "Set", "data": {"key": "other/x", "value": "1"}}),
        json!({"type": "Set", "data": {"key": "user/a", "value": "2"}}),
        json!({"type": "Delete", "data": {"key": "user/a"}}),
    ];
    for line in &expected {
        assert_eq!(&old_shape_with_revision(&everything.next_change(WATCH_TIMEOUT)), line);
    }
    for line in &expected[1..] {
        assert_eq!(&old_shape_with_revision(&users.next(WATCH_TIMEOUT).expect("a line under user/")), line);
    }
}

/// A watch line as the Go server gave it (`type` and `data`), after checking that it carries
/// the revision Cete adds.
fn old_shape_with_revision(line: &Value) -> Value {
    assert!(line["revision"].as_u64().is_some_and(|r| r > 0), "no revision in {line}");
    common::old_shape(line)
}

#[test]
fn cete_watch_on_a_follower_prints_the_leaders_writes() {
    let cluster = Cluster::start(3);
    let (leader, follower) = (&cluster.nodes[cluster.leader()], &cluster.nodes[cluster.followers()[0]]);
    common::wait_for_revisions(leader);
    let watch = BackgroundCli::spawn(&["watch", "--grpc-address", &follower.addresses.grpc]);
    let printed = |kind: &str| {
        let lines: Vec<Value> = watch.stdout().lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
        lines.into_iter().find(|line| line["type"] == kind)
    };

    // The watch may not be subscribed yet when the first write lands: write until it shows.
    let leader_grpc = leader.addresses.grpc.as_str();
    let set = eventually("Set line from `cete watch` on a follower", WATCH_TIMEOUT, || {
        cli_ok(&["set", "watched", "value1", "--grpc-address", leader_grpc]);
        printed("Set")
    });
    assert_eq!(old_shape_with_revision(&set), json!({"type": "Set", "data": {"key": "watched", "value": "value1"}}));
    cli_ok(&["delete", "watched", "--grpc-address", leader_grpc]);
    let delete = eventually("Delete line from `cete watch` on a follower", WATCH_TIMEOUT, || printed("Delete"));
    assert_eq!(
        old_shape_with_revision(&delete),
        json!({"type": "Delete", "data": {"key": "watched"}}),
        "stderr: {}",
        watch.stderr()
    );
}

#[test]
fn cete_watch_takes_a_prefix_filter() {
    let node = Node::start("node1");
    let grpc = node.addresses.grpc.as_str();
    let watch = BackgroundCli::spawn(&["watch", "--prefix", "user/", "--grpc-address", grpc]);
    let printed =
        || -> Vec<Value> { watch.stdout().lines().filter_map(|line| serde_json::from_str(line).ok()).collect() };

    eventually("a line from `cete watch --prefix user/`", WATCH_TIMEOUT, || {
        assert!(watch.stderr().is_empty(), "`cete watch --prefix` failed: {}", watch.stderr());
        cli_ok(&["set", "other/x", "1", "--grpc-address", grpc]);
        cli_ok(&["set", "user/a", "2", "--grpc-address", grpc]);
        (!printed().is_empty()).then_some(())
    });
    for line in printed() {
        assert_eq!(common::old_shape(&line), json!({"type": "Set", "data": {"key": "user/a", "value": "2"}}));
    }
}

#[test]
fn join_and_leave_are_watched_as_events() {
    let mut cluster = Cluster::start(1);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (_client, mut events) = runtime.block_on(grpc_watch(&cluster.nodes[0], None));
    let ndjson = NdjsonWatch::open(&cluster.nodes[0], "");
    // A key filter is about keys: membership changes do not pass it.
    let keys_only = NdjsonWatch::open(&cluster.nodes[0], "prefix=k");

    let node2 = cluster.add_node("node2");
    cluster.wait_until_formed();
    let addresses = cluster.nodes[node2].addresses.clone();
    let join = runtime.block_on(next_event(&mut events, WATCH_TIMEOUT, |e| e.r#type != event::Type::Join as i32));
    let joined: SetMetadataRequest = unpack(&join, "SetMetadataRequest");
    assert_eq!(joined.id, "node2");
    let metadata = joined.metadata.expect("Join event without metadata");
    assert_eq!((metadata.grpc_address, metadata.http_address), (addresses.grpc.clone(), addresses.http.clone()));
    let metadata = json!({"grpc_address": addresses.grpc, "http_address": addresses.http});
    let line = ndjson.next(WATCH_TIMEOUT).expect("a Join line");
    assert_eq!(line, json!({"type": "Join", "data": {"id": "node2", "metadata": metadata}}));

    cluster.nodes[0].delete("/v1/cluster/node2").assert_success();
    let leave = runtime.block_on(next_event(&mut events, WATCH_TIMEOUT, |e| e.r#type != event::Type::Leave as i32));
    assert_eq!(
        unpack::<DeleteMetadataRequest>(&leave, "DeleteMetadataRequest"),
        DeleteMetadataRequest { id: "node2".into() }
    );
    assert_eq!(ndjson.next(WATCH_TIMEOUT).expect("a Leave line"), json!({"type": "Leave", "data": {"id": "node2"}}));

    cluster.nodes[0].put("/v1/data/key", "v").assert_success();
    let first = keys_only.next(WATCH_TIMEOUT).expect("a line under k");
    assert_eq!(common::old_shape(&first), json!({"type": "Set", "data": {"key": "key", "value": "v"}}));
}

/// Writes `count` keys with 4 KB values from [`WRITERS`] threads, each write acknowledged.
fn write_batch(node: &Node, first: usize, count: usize) {
    const WRITERS: usize = 16;
    let value = "x".repeat(4096);
    thread::scope(|scope| {
        for writer in 0..WRITERS {
            let value = &value;
            scope.spawn(move || {
                for i in (first + writer..first + count).step_by(WRITERS) {
                    node.put(&format!("/v1/data/flood/{i:06}"), value.as_str()).assert_success();
                }
            });
        }
    });
}

#[test]
fn a_watcher_that_does_not_read_is_dropped_with_an_error_and_writes_go_on() {
    let node = Node::start("node1");
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    // Two watchers that open their streams and then read nothing.
    let (_client, grpc_stalled) = runtime.block_on(grpc_watch(&node, None));
    let http_stalled = NdjsonWatch::connect(&node, "");
    assert_eq!(http_stalled.status().as_u16(), 200);
    eventually("two watch subscribers", WATCH_TIMEOUT, || (watch_subscribers(&node) == 2.0).then_some(()));

    // Far more changes than a watch buffer (4096) plus the socket buffers hold; writes must
    // keep being acknowledged all along, and the stalled watchers be let go.
    const BATCH: usize = 500;
    const MOST: usize = 40_000;
    let started = Instant::now();
    let mut written = 0;
    while watch_subscribers(&node) > 0.0 {
        assert!(written < MOST, "after {written} changes the stalled watchers are still subscribed");
        let batch_started = Instant::now();
        write_batch(&node, written, BATCH);
        written += BATCH;
        let took = batch_started.elapsed();
        assert!(took < Duration::from_secs(10), "{BATCH} writes took {took:?} with stalled watchers");
    }
    eprintln!("stalled watchers dropped after {written} changes, written in {:?}", started.elapsed());
    node.put("/v1/data/after-the-drop", "served").assert_success();

    // What the stalled watchers read when they finally look: the changes they had room for,
    // then the reason their stream ended: a last `{"error":..}` line, a gRPC UNAVAILABLE.
    let lines: Vec<String> = BufReader::new(http_stalled).lines().map_while(Result::ok).collect();
    let last: Value = serde_json::from_str(lines.last().map_or("null", String::as_str)).expect("JSON line");
    let http_error = last["error"].as_str().is_some_and(|e| !e.is_empty());
    let grpc_end = runtime.block_on(async {
        let mut grpc_stalled = grpc_stalled;
        let mut events = 0;
        loop {
            match tokio::time::timeout(WATCH_TIMEOUT, grpc_stalled.message()).await {
                Ok(Ok(Some(_))) => events += 1,
                Ok(Ok(None)) => return format!("ended cleanly after {events} events"),
                Ok(Err(status)) => return format!("{:?} after {events} events: {}", status.code(), status.message()),
                Err(_) => return format!("still open after {events} events"),
            }
        }
    });
    let cut = |text: String| text.chars().take(120).collect::<String>();
    assert!(
        http_error && grpc_end.starts_with("Unavailable"),
        "stalled watchers not told why they were dropped:\n  HTTP: {} lines, the last: {}\n  gRPC: {grpc_end}",
        lines.len(),
        cut(last.to_string())
    );
}

/// The metric names Cete exposes, as an operator's dashboards expect them.
const METRIC_NAMES: &[&str] = &[
    "cete_requests_total",
    "cete_request_duration_seconds",
    "cete_raft_term",
    "cete_raft_is_leader",
    "cete_raft_has_leader",
    "cete_raft_last_log_index",
    "cete_raft_committed_index",
    "cete_raft_applied_index",
    "cete_raft_snapshot_index",
    "cete_raft_leader_changes_total",
    "cete_snapshot_duration_seconds",
    "cete_cluster_members",
    "cete_store_keys",
    "cete_watch_subscribers",
];

fn assert_names_present(text: &str, source: &str) {
    for name in METRIC_NAMES {
        assert!(text.contains(&format!("# TYPE {name} ")), "{source} lacks {name}:\n{text}");
    }
}

#[test]
fn metrics_describe_each_node_of_a_cluster() {
    let cluster = Cluster::start(3);
    let leader = cluster.leader();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let reply = node.get("/v1/metrics");
        assert_eq!(reply.status, 200);
        assert!(reply.content_type.starts_with("text/plain; version=0.0.4"), "Content-Type {:?}", reply.content_type);
        let text = reply.text();
        assert_names_present(&text, &format!("GET /v1/metrics on {}", node.id()));
        let value = |name: &str| metric_value(&text, name, &[]);
        assert_eq!(value("cete_raft_is_leader"), if i == leader { 1.0 } else { 0.0 }, "on {}", node.id());
        assert_eq!(value("cete_raft_has_leader"), 1.0, "on {}", node.id());
        assert_eq!(value("cete_cluster_members"), 3.0, "on {}", node.id());
        assert!(value("cete_raft_term") >= 1.0, "on {}", node.id());
        assert!(value("cete_raft_leader_changes_total") >= 1.0, "on {}", node.id());
        let (last_log, committed, applied) =
            (value("cete_raft_last_log_index"), value("cete_raft_committed_index"), value("cete_raft_applied_index"));
        assert!(applied > 0.0 && committed >= applied && last_log >= committed, "on {}:\n{text}", node.id());
    }

    // gRPC Metrics and `cete metrics` give the same text format.
    let follower = &cluster.nodes[cluster.followers()[0]];
    let grpc_text = block_on(async {
        let metrics = follower.grpc_client().await.metrics(()).await.expect("Metrics").into_inner().metrics;
        String::from_utf8(metrics.to_vec()).expect("UTF-8 metrics")
    });
    assert_names_present(&grpc_text, "gRPC Metrics");
    assert_names_present(&cli_ok(&["metrics", "--grpc-address", &follower.addresses.grpc]), "`cete metrics`");
}

#[test]
fn request_counters_key_count_and_snapshot_count_follow_what_happens() {
    let cluster = Cluster::start(3);
    let leader = &cluster.nodes[cluster.leader()];
    let follower = &cluster.nodes[cluster.followers()[0]];
    let http_puts = [("door", "http"), ("endpoint", "/v1/data*"), ("status", "200")];
    let grpc_sets = [("door", "grpc"), ("endpoint", "Set"), ("status", "Ok")];
    let count = |node: &Node, labels: &[(&str, &str)]| metric(&metrics_of(node), "cete_requests_total", labels);

    let http_before = count(follower, &http_puts).unwrap_or(0.0);
    let grpc_before = count(follower, &grpc_sets).unwrap_or(0.0);
    for i in 0..10 {
        follower.put(&format!("/v1/data/counted/{i}"), "v").assert_success();
    }
    block_on(async {
        let mut kvs = follower.grpc_client().await;
        for i in 0..15 {
            kvs.set(set_request(&format!("counted/grpc/{i}"), "v")).await.expect("Set");
        }
    });
    let text = metrics_of(follower);
    let http_after = metric_value(&text, "cete_requests_total", &http_puts);
    assert!(http_after >= http_before + 10.0, "HTTP PUTs counted {http_before} -> {http_after}");
    let grpc_after = metric_value(&text, "cete_requests_total", &grpc_sets);
    assert!(grpc_after >= grpc_before + 15.0, "gRPC Sets counted {grpc_before} -> {grpc_after}");
    let timed =
        metric_value(&text, "cete_request_duration_seconds_count", &[("door", "http"), ("endpoint", "/v1/data*")]);
    assert!(timed >= 10.0, "HTTP PUTs timed: {timed}");

    // Every node counts the same 25 keys once it has applied them.
    for node in &cluster.nodes {
        eventually(&format!("cete_store_keys 25 on {}", node.id()), WATCH_TIMEOUT, || {
            (metric_value(&metrics_of(node), "cete_store_keys", &[]) == 25.0).then_some(())
        });
    }

    let snapshots = |node: &Node| metric_value(&metrics_of(node), "cete_snapshot_duration_seconds_count", &[]);
    let before = snapshots(leader);
    assert_eq!(leader.get("/v1/snapshot").status, 200);
    eventually("one more snapshot counted", WATCH_TIMEOUT, || (snapshots(leader) > before).then_some(()));
    assert!(metric_value(&metrics_of(leader), "cete_raft_snapshot_index", &[]) > 0.0);
}

#[test]
fn watch_subscribers_count_open_streams() {
    let node = Node::start("node1");
    assert_eq!(watch_subscribers(&node), 0.0);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let (client, stream) = runtime.block_on(grpc_watch(&node, None));
    let ndjson = NdjsonWatch::open(&node, "");
    eventually("two watch subscribers", WATCH_TIMEOUT, || (watch_subscribers(&node) == 2.0).then_some(()));

    // Watchers that went away are let go (at the latest when the next change is due to them).
    drop((client, stream, ndjson));
    eventually("no watch subscriber after the watchers left", WATCH_TIMEOUT, || {
        node.put("/v1/data/tick", "tock").assert_success();
        (watch_subscribers(&node) == 0.0).then_some(())
    });
}
