//! An acknowledged write survives the process: `kill -9`, a graceful stop, a snapshot.
mod common;

use std::ops::Range;
use std::thread;

use common::{free_port, local, node_json, Node};
use serde_json::json;

const WRITES: usize = 500;
const WRITERS: usize = 8;

fn path(i: usize) -> String {
    format!("/v1/data/durable/{i:04}")
}

fn value(i: usize) -> String {
    format!("value-{i}")
}

/// PUTs `keys` from [`WRITERS`] threads at once; returns once every PUT was acknowledged.
fn write_concurrently(node: &Node, keys: Range<usize>) {
    thread::scope(|scope| {
        for writer in 0..WRITERS {
            let keys = keys.clone();
            scope.spawn(move || {
                for i in keys.skip(writer).step_by(WRITERS) {
                    node.put(&path(i), value(i)).assert_success();
                }
            });
        }
    });
}

fn assert_present(node: &Node, keys: impl Iterator<Item = usize>) {
    for i in keys {
        let got = node.get(&path(i));
        assert_eq!(got.status, 200, "{} after restart: {}", path(i), got.text());
        assert_eq!(got.text(), value(i), "{} after restart", path(i));
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let mut node = Node::start("node1");
    write_concurrently(&node, 0..WRITES);

    node.kill9();
    node.restart();

    assert_present(&node, 0..WRITES);
}

#[test]
fn writes_survive_a_graceful_stop() {
    let mut node = Node::start("node1");
    write_concurrently(&node, 0..WRITES);

    let status = node.stop();
    assert!(status.success(), "graceful stop exited with {status}");
    node.restart();

    assert_present(&node, 0..WRITES);
}

#[test]
fn writes_and_deletes_after_a_snapshot_survive_kill_9() {
    let mut node = Node::start("node1");
    write_concurrently(&node, 0..WRITES / 2);
    assert_eq!(node.get("/v1/snapshot").status, 200);
    write_concurrently(&node, WRITES / 2..WRITES);
    for i in (0..WRITES).step_by(10) {
        node.delete(&path(i)).assert_success();
    }

    node.kill9();
    node.restart();

    let kept = (0..WRITES).filter(|i| i % 10 != 0);
    assert_present(&node, kept);
    for i in (0..WRITES).step_by(10) {
        node.get(&path(i)).assert_error(404);
    }
}

#[test]
fn restart_on_existing_data_keeps_its_own_cluster() {
    let mut node = Node::start("node1");
    node.put("/v1/data/1", "value1").assert_success();

    node.kill9();
    // A node with data rejoins the cluster it belongs to, whatever the flags say about peers:
    // this peer does not even exist.
    let nowhere = format!("--peer-grpc-address={}", local(free_port()));
    node.restart_with(&[&nowhere]);

    let expected = json!({"cluster": {
        "nodes": {"node1": node_json(&node.addresses, "Leader")},
        "leader": "node1",
    }});
    assert_eq!(node.get("/v1/cluster").json(), expected);
    assert_eq!(node.get("/v1/data/1").text(), "value1");
}
