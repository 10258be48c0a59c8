//! Stopping a whole cluster the way an operator does, with SIGTERM to every node at once: each
//! node stops promptly and cleanly, and nothing acknowledged is lost.
mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{eventually, metric_value, BackgroundCli, Cluster, NdjsonWatch, Node};

/// A graceful stop takes well under a second here; this bound is generous for a loaded CI host
/// and far below the 5 s grace period that in-flight calls get, so a node that had to wait it
/// out fails.
const STOP_DEADLINE: Duration = Duration::from_secs(3);
const WRITES: usize = 60;

#[test]
fn sigterm_to_every_node_at_once_stops_each_promptly_and_keeps_acknowledged_writes() {
    let mut cluster = Cluster::start(3);
    // Writes through every node, so that forward streams (followers to the leader) are open
    // beside the leader's replication streams when the signal comes.
    thread::scope(|scope| {
        for (n, node) in cluster.nodes.iter().enumerate() {
            scope.spawn(move || {
                for i in (n..WRITES).step_by(3) {
                    node.put(&format!("/v1/data/stop/{i}"), format!("v{i}")).assert_success();
                }
            });
        }
    });

    let signalled = Instant::now();
    for node in &cluster.nodes {
        node.terminate();
    }
    // Each node is waited for in parallel, so one slow node cannot hide behind another.
    let stops: Vec<(String, Duration, std::process::ExitStatus)> = thread::scope(|scope| {
        let waits: Vec<_> = cluster
            .nodes
            .iter_mut()
            .map(|node| {
                scope.spawn(move || {
                    let status = node.wait_exit_within(Duration::from_secs(30));
                    (node.id(), signalled.elapsed(), status)
                })
            })
            .collect();
        waits.into_iter().map(|wait| wait.join().expect("a waiting thread")).collect()
    });
    eprintln!("stop times after SIGTERM to all three: {stops:?}");
    for (id, took, status) in &stops {
        assert!(status.success(), "{id} exited with {status}");
        assert!(*took < STOP_DEADLINE, "{id} took {took:?} to stop (bound {STOP_DEADLINE:?})");
    }
    for node in &cluster.nodes {
        assert!(!node.log().contains("still had calls in flight"), "{} waited out its grace period", node.id());
    }

    // All three come back on their data (none is ready before a quorum is up) and every
    // acknowledged write is there.
    for node in &mut cluster.nodes {
        node.relaunch();
    }
    for node in &mut cluster.nodes {
        node.wait_ready();
    }
    cluster.wait_until_formed();
    for node in &cluster.nodes {
        for i in 0..WRITES {
            let got = node.get(&format!("/v1/data/stop/{i}"));
            assert_eq!((got.status, got.text()), (200, format!("v{i}")), "stop/{i} on {}", node.id());
        }
    }
}

/// Watch streams last as long as their clients want; a stopping node ends them (telling the
/// watcher why) instead of waiting for them through its grace period.
#[test]
fn a_node_with_open_watch_streams_stops_promptly_and_says_why() {
    let mut node = Node::start("node1");
    let grpc_watcher = BackgroundCli::spawn(&["watch", "--grpc-address", &node.addresses.grpc]);
    let http_watcher = NdjsonWatch::open(&node, "");
    // Both streams open: the CLI connects in its own time.
    eventually("two open watch streams", Duration::from_secs(10), || {
        let open = metric_value(&node.get("/v1/metrics").text(), "cete_watch_subscribers", &[]);
        (open == 2.0).then_some(())
    });

    let signalled = Instant::now();
    node.terminate();
    let status = node.wait_exit_within(Duration::from_secs(30));
    let took = signalled.elapsed();
    assert!(status.success(), "exited with {status}");
    assert!(took < STOP_DEADLINE, "took {took:?} to stop with watchers (bound {STOP_DEADLINE:?})");

    let last = http_watcher.next(Duration::from_secs(5)).expect("a last line on the HTTP watch");
    assert!(last["error"].as_str().is_some_and(|e| e.contains("stopping")), "{last}");
    eventually("the gRPC watcher to say why its stream ended", Duration::from_secs(10), || {
        grpc_watcher.stderr().contains("stopping").then_some(())
    });
}
