//! Crash tests at the points where durability is decided (the failpoints of
//! `cete_actors::failpoints`, compiled into the test build): a node, or the whole cluster,
//! crashes there, comes back, and must (a) still hold every acknowledged write on every node
//! and (b) answer a linearizable read started after an acknowledged write with that write,
//! on every node, from the first answer it gives after the restart.
//!
//! kill -9 alone cannot show what a power cut loses (the page cache outlives the process):
//! the `skip` points leave out the writes that would not have reached the disk, and the kill
//! that follows loses the rest (redb's commits without fsync live only in the process).
// The points exist only in a failpoints build (`make test` builds one).
#![cfg(feature = "failpoints")]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::{eventually, Cluster, NdjsonWatch, Node, FORM_TIMEOUT};

const KEYS: usize = 5;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a restarted node may take to answer its first read.
const FIRST_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long writers may run before an armed crash point fires.
const CRASH_TIMEOUT: Duration = Duration::from_secs(30);

fn key(i: usize) -> String {
    format!("/v1/data/crash/{i}")
}

/// The first answer `node` gives to a linearizable read of `path` once it answers at all (a
/// node coming back may refuse with 503 or not listen yet; any other answer counts).
fn first_answer(node: &Node, path: &str) -> (u16, String) {
    let deadline = Instant::now() + FIRST_ANSWER_TIMEOUT;
    loop {
        match node.try_request("GET", path, Vec::new(), REQUEST_TIMEOUT) {
            Ok(reply) if reply.status != 503 => return (reply.status, reply.text()),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "{} gave no answer to GET {path} within {FIRST_ANSWER_TIMEOUT:?}",
            node.id()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Asserts that the first answer of every node in `nodes` to each acknowledged write's key is
/// that write.
fn assert_reads_see(cluster: &Cluster, nodes: &[usize], acknowledged: &[(String, String)]) {
    for &i in nodes {
        let node = &cluster.nodes[i];
        for (path, value) in acknowledged {
            let (status, text) = first_answer(node, path);
            assert_eq!(
                (status, text.as_str()),
                (200, value.as_str()),
                "{} answered a read of {path} started after `{value}` was acknowledged with a stale value",
                node.id()
            );
        }
    }
}

/// The cluster loses power at once: every node crashes with what it had not fsynced lost.
/// The nodes come back one by one, the old leader first, as machines boot after an outage.
#[test]
fn a_power_cut_of_the_whole_cluster_serves_no_stale_read() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    for i in 0..KEYS {
        cluster.nodes[leader].put(&key(i), format!("before-{i}")).assert_success();
    }
    // From here on, what a power cut would lose is not written at all: the committed log id
    // (a hint written without fsync) and the store's durable commits.
    for node in &cluster.nodes {
        node.arm_failpoint("raft-log-commit-hint", "return(skip)");
        node.arm_failpoint("store-before-durable-commit", "return(skip)");
    }
    let mut acknowledged = Vec::new();
    for i in 0..KEYS {
        let value = format!("after-{i}");
        cluster.nodes[i % 3].put(&key(i), value.clone()).assert_success();
        acknowledged.push((key(i), value));
    }
    for node in &mut cluster.nodes {
        node.kill9();
    }

    // The old leader first: it comes back as the leader of its term, with its peers still down.
    cluster.nodes[leader].relaunch();
    eventually("the old leader listening", FORM_TIMEOUT, || {
        cluster.nodes[leader].try_request("GET", "/v1/liveness_check", Vec::new(), REQUEST_TIMEOUT).ok()
    });
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    cluster.nodes[followers[0]].relaunch();
    assert_reads_see(&cluster, &[leader, followers[0]], &acknowledged);
    cluster.nodes[followers[1]].relaunch();
    assert_reads_see(&cluster, &followers[1..], &acknowledged);
}

/// Which nodes a crash point is armed on.
#[derive(Clone, Copy, PartialEq)]
enum Crashing {
    /// The leader crashes there; the others go on.
    Leader,
    /// The whole cluster goes down there: the first node to reach the point crashes, the
    /// others are killed at that moment.
    All,
}

/// Writes unique keys through every node from a few threads until `stop`; returns the
/// acknowledged ones (a write that failed or timed out may or may not have happened).
fn write_until(cluster: &Cluster, stop: &AtomicBool) -> Vec<(String, String)> {
    let acknowledged = Mutex::new(Vec::new());
    thread::scope(|scope| {
        for writer in 0..6 {
            let acknowledged = &acknowledged;
            scope.spawn(move || {
                let node = &cluster.nodes[writer % cluster.nodes.len()];
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (path, value) = (format!("/v1/data/crash/{writer}/{n}"), format!("value-{writer}-{n}"));
                    let reply = node.try_request("PUT", &path, value.clone().into_bytes(), Duration::from_secs(3));
                    if reply.is_ok_and(|r| r.status == 200 || r.status == 204) {
                        acknowledged.lock().unwrap().push((path, value));
                    }
                }
            });
        }
    });
    acknowledged.into_inner().unwrap()
}

/// Arms `point` to crash (`return(crash)` after a few passes) on the leader or on every node,
/// writes until it fires, restarts what went down and checks every acknowledged write on
/// every node.
fn crash_at(point: &str, crashing: Crashing) {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    cluster.nodes[leader].put("/v1/data/crash/first", "first").assert_success();
    let armed: Vec<usize> = match crashing {
        Crashing::Leader => vec![leader],
        Crashing::All => (0..3).collect(),
    };
    for &i in &armed {
        // A few passes first, so that writes are acknowledged before it fires (the store's
        // durable commit comes once a second, the log's fsync at every write).
        let passes = if point.starts_with("store-") { 1 } else { 20 };
        cluster.nodes[i].arm_failpoint(point, &format!("{passes}*off->return(crash)"));
    }

    let stop = AtomicBool::new(false);
    let (mut acknowledged, crashed) = thread::scope(|scope| {
        let writers = scope.spawn(|| write_until(&cluster, &stop));
        let deadline = Instant::now() + CRASH_TIMEOUT;
        let crashed = loop {
            let down = armed
                .iter()
                .copied()
                .find(|&i| cluster.nodes[i].log().contains(&format!("failpoint {point}: crashing")));
            if let Some(i) = down {
                break i;
            }
            assert!(Instant::now() < deadline, "failpoint {point} did not fire within {CRASH_TIMEOUT:?}");
            thread::sleep(Duration::from_millis(20));
        };
        stop.store(true, Ordering::Relaxed);
        (writers.join().expect("writers"), crashed)
    });
    acknowledged.push(("/v1/data/crash/first".into(), "first".into()));
    assert!(acknowledged.len() > 1, "no write was acknowledged before {point} fired");

    let down: Vec<usize> = if crashing == Crashing::All { (0..3).collect() } else { vec![crashed] };
    for &i in &down {
        let node = &mut cluster.nodes[i];
        if i == crashed {
            let status = node.wait_exit();
            assert!(!status.success(), "{} was to crash at {point}, exited with {status}", node.id());
        } else {
            node.kill9();
        }
    }
    for &i in &down {
        cluster.nodes[i].relaunch();
    }
    assert_reads_see(&cluster, &[0, 1, 2], &acknowledged);
    cluster.wait_until_formed();
}

#[test]
fn the_leader_crashing_before_its_log_fsync_loses_no_acknowledged_write() {
    crash_at("raft-log-before-fsync", Crashing::Leader);
}

#[test]
fn the_cluster_crashing_before_a_log_fsync_loses_no_acknowledged_write() {
    crash_at("raft-log-before-fsync", Crashing::All);
}

#[test]
fn the_cluster_crashing_after_a_log_fsync_loses_no_acknowledged_write() {
    crash_at("raft-log-after-fsync", Crashing::All);
}

#[test]
fn the_cluster_crashing_before_the_committed_id_is_written_loses_no_acknowledged_write() {
    crash_at("raft-log-commit-hint", Crashing::All);
}

#[test]
fn the_leader_crashing_before_the_store_is_made_durable_loses_no_acknowledged_write() {
    crash_at("store-before-durable-commit", Crashing::Leader);
}

#[test]
fn the_cluster_crashing_after_the_store_is_made_durable_loses_no_acknowledged_write() {
    crash_at("store-after-durable-commit", Crashing::All);
}

/// A follower routes a write to the leader, which applies it and crashes before it answers:
/// the follower cannot know its fate and sends it again to the next leader, where it must not
/// be applied a second time (a watcher would see the key set twice).
#[test]
fn a_routed_write_whose_leader_crashes_before_answering_is_applied_once() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let (sender, watcher) = (followers[0], followers[1]);
    cluster.nodes[sender].put("/v1/data/once/warm-up", "routed").assert_success();
    let watch = NdjsonWatch::open(&cluster.nodes[watcher], "prefix=once/");
    cluster.nodes[leader].arm_failpoint("routed-write-before-reply", "return(crash)");

    let reply = cluster.nodes[sender].try_request("PUT", "/v1/data/once/key", b"v".to_vec(), Duration::from_secs(30));
    match reply {
        Ok(reply) if reply.status == 200 || reply.status == 204 => {}
        other => panic!("a write whose leader crashed before answering: {other:?}"),
    }
    let status = cluster.nodes[leader].wait_exit();
    assert!(!status.success(), "the leader was to crash before answering; it exited with {status}");

    // Everything the watcher sees before this write is all it will ever see of the first.
    cluster.nodes[sender].put("/v1/data/once/sentinel", "last").assert_success();
    let mut sets = 0;
    loop {
        let change = watch.next_change(Duration::from_secs(30));
        match change["data"]["key"].as_str() {
            Some("once/key") => sets += 1,
            Some("once/sentinel") => break,
            _ => {}
        }
    }
    assert_eq!(sets, 1, "the resent write was applied {sets} times");
    cluster.nodes[leader].restart();
    for node in &cluster.nodes {
        assert_eq!(node.get("/v1/data/once/key").text(), "v", "on {}", node.id());
    }
}
