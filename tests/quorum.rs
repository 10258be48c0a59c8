//! What a cluster promises about its quorum, seen by its clients: a node that cannot reach a
//! majority says so with 503 (a write after 10 s, its outcome unknown; a linearizable read
//! likewise) while serializable reads still answer from its own copy, and `cete healthcheck`
//! fails there; a joining node becomes a voter that the quorum counts on; five nodes lose two,
//! the leader among them, and lose nothing.
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    cli, data, eventually, metric_value, node_state, serializable_get, Acknowledged, Cluster, Node, CATCH_UP_TIMEOUT,
    FAILOVER_DEADLINE,
};
use serde_json::{json, Value};

/// Generous bound on the 503 that the README promises "after 10 s" without a quorum.
const NO_QUORUM_ANSWER_WITHIN: Duration = Duration::from_secs(30);
/// Half the 10 s the README promises: a 503 sooner gave up on the first missed heartbeat,
/// where a quorum busy for a moment would have answered.
const NO_QUORUM_ANSWER_NOT_BEFORE: Duration = Duration::from_secs(5);
/// Generous bound on "at once" for a read from the node's own state.
const AT_ONCE: Duration = Duration::from_secs(5);

/// A request sent to a node without a quorum: how it was answered, and after how long.
fn timed(node: &Node, method: &str, path: &str, body: &str) -> (Result<common::Reply, String>, Duration) {
    let sent = Instant::now();
    let reply = node.try_request(method, path, body.into(), NO_QUORUM_ANSWER_WITHIN);
    (reply, sent.elapsed())
}

/// Asserts `answer` is a 503 with a JSON error that contains `says`.
fn assert_unavailable(what: &str, answer: &(Result<common::Reply, String>, Duration), says: &str) {
    let (reply, after) = answer;
    let reply = reply.as_ref().unwrap_or_else(|e| panic!("{what}: no answer within {after:?}: {e}"));
    eprintln!("{what} without a quorum: answered after {after:?}: {reply:?}");
    reply.assert_error(503);
    let error = reply.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains(says), "{what}: the error does not say {says:?}: {error}");
}

/// `cete healthcheck` against `node`: its exit status and the JSON it printed.
fn healthcheck(node: &Node) -> (bool, Value) {
    let output = cli(&["healthcheck", "--grpc-address", &node.addresses.grpc]);
    let printed = String::from_utf8_lossy(&output.stdout);
    let json =
        serde_json::from_str(&printed).unwrap_or_else(|e| panic!("healthcheck printed no JSON ({e}): {output:?}"));
    (output.status.success(), json)
}

#[test]
fn a_leader_cut_off_from_its_quorum_answers_503_and_still_serves_serializable_reads() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    let followers = cluster.followers();
    cluster.nodes[leader].put(&data("before"), "kept").assert_success();

    // One follower dies, the other freezes (a partition): the leader is alone.
    cluster.nodes[followers[0]].kill9();
    cluster.nodes[followers[1]].pause();
    let alone = &cluster.nodes[leader];

    // A serializable read answers at once from the leader's own state.
    let (read, after) = timed(alone, "GET", &format!("{}?consistency=serializable", data("before")), "");
    let read = read.expect("a serializable read without a quorum");
    assert_eq!((read.status, read.text()), (200, "kept".to_string()), "serializable read after {after:?}");
    assert!(after < AT_ONCE, "a serializable read waited {after:?}");

    // A write and a linearizable read, sent together: neither can be confirmed by a majority.
    let (write, linearizable) = thread::scope(|scope| {
        let write = scope.spawn(|| timed(alone, "PUT", &data("unconfirmed"), "maybe"));
        let read = scope.spawn(|| timed(alone, "GET", &data("before"), ""));
        (write.join().expect("the write"), read.join().expect("the read"))
    });
    assert_unavailable("a write", &write, "may or may not take effect");
    assert_unavailable("a linearizable read", &linearizable, "quorum");
    for (what, (_, after)) in [("the write", &write), ("the linearizable read", &linearizable)] {
        assert!(*after >= NO_QUORUM_ANSWER_NOT_BEFORE, "{what} was refused after only {after:?}");
    }
    // It still knows itself the leader, but a load balancer must not send it clients.
    let reply = alone.get("/v1/readiness_check");
    assert_eq!(reply.status, 503, "a leader without a quorum called itself ready: {reply:?}");
    let reason = reply.json();
    assert!(reason["reason"].as_str().is_some_and(|r| r.contains("quorum")), "{reason}");
    let (healthy, printed) = healthcheck(alone);
    assert!(!healthy, "`cete healthcheck` exited 0 on a leader without a quorum: {printed}");

    // The frozen follower back is a quorum again: ready once more.
    cluster.nodes[followers[1]].resume();
    eventually("the leader ready again with its quorum back", FAILOVER_DEADLINE, || {
        (cluster.nodes[leader].get("/v1/readiness_check").status == 200).then_some(())
    });
}

/// A PUT sent on a connection of its own, left waiting for its answer.
fn waiting_put(node: &Node, key: &str) -> TcpStream {
    let mut stream = TcpStream::connect(&node.addresses.http).expect("connect");
    let request = format!("PUT /v1/data/{key} HTTP/1.1\r\nHost: cete\r\nContent-Length: 1\r\n\r\nv");
    stream.write_all(request.as_bytes()).expect("send the PUT");
    stream
}

fn in_flight(node: &Node) -> f64 {
    metric_value(&node.get("/v1/metrics").text(), "cete_client_requests_in_flight", &[("door", "http")])
}

#[test]
fn a_client_that_hangs_up_leaves_nothing_waiting_for_it() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    let followers = cluster.followers();
    cluster.nodes[followers[0]].kill9();
    cluster.nodes[followers[1]].pause();
    let alone = &cluster.nodes[leader];

    // Writes that cannot commit: two clients keep waiting, then three more come and hang up.
    let kept: Vec<TcpStream> = (0..2).map(|i| waiting_put(alone, &format!("kept{i}"))).collect();
    let dropped: Vec<TcpStream> = (0..3).map(|i| waiting_put(alone, &format!("dropped{i}"))).collect();
    eventually("five writes in flight", NO_QUORUM_ANSWER_WITHIN, || (in_flight(alone) == 5.0).then_some(()));
    drop(dropped);

    // The three that hung up stop waiting at once. The two kept are still unanswered then: they
    // were sent first, so no deadline can have ended the later three before them.
    eventually("the hung-up writes given up", NO_QUORUM_ANSWER_WITHIN, || (in_flight(alone) == 2.0).then_some(()));
    for (i, mut stream) in kept.into_iter().enumerate() {
        stream.set_nonblocking(true).expect("nonblocking");
        let mut byte = [0u8; 1];
        match stream.read(&mut byte) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => panic!("kept write {i} was answered before the hung-up ones were given up: {other:?}"),
        }
    }
    cluster.nodes[followers[1]].resume();
}

#[test]
fn a_follower_without_a_quorum_is_not_ready_and_healthcheck_fails_until_it_is_back() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    let (kept, other) = (cluster.followers()[0], cluster.followers()[1]);
    assert_eq!(healthcheck(&cluster.nodes[kept]), (true, json!({"alive": true, "ready": true})));
    cluster.nodes[leader].put(&data("before"), "kept").assert_success();
    let what = "the write in the follower's own copy";
    eventually(what, CATCH_UP_TIMEOUT, || serializable_get(&cluster.nodes[kept], "before").filter(|v| v == "kept"));

    cluster.nodes[leader].kill9();
    cluster.nodes[other].kill9();
    let follower = &cluster.nodes[kept];
    let (status, reason) = eventually("the lone follower to say it is not ready", FAILOVER_DEADLINE, || {
        let reply = follower.get("/v1/readiness_check");
        (reply.status != 200).then(|| (reply.status, reply.json()))
    });
    assert_eq!(status, 503, "{reason}");
    assert_eq!(reason["ready"], false, "{reason}");
    assert!(reason["reason"].as_str().is_some_and(|r| r.contains("no leader")), "{reason}");
    let (healthy, printed) = healthcheck(follower);
    assert!(!healthy, "`cete healthcheck` exited 0 on a node with no leader: {printed}");
    assert_eq!(printed, json!({"alive": true, "ready": false}));
    assert_eq!(serializable_get(follower, "before").as_deref(), Some("kept"), "its own copy, without a leader");
    let write = timed(follower, "PUT", &data("unconfirmed"), "maybe");
    assert_unavailable("a write on a follower without a leader", &write, "");

    // One peer back is a quorum again: a leader is elected and the probe passes.
    cluster.nodes[other].restart();
    let healthy = eventually("`cete healthcheck` to pass again", FAILOVER_DEADLINE, || {
        let (healthy, printed) = healthcheck(&cluster.nodes[kept]);
        healthy.then_some(printed)
    });
    assert_eq!(healthy, json!({"alive": true, "ready": true}));
}

/// A joining node enters as a learner and is promoted: it must end up a voter, or a cluster
/// that loses one of its first two nodes has no majority left.
#[test]
fn a_node_that_joins_two_becomes_a_voter_the_quorum_counts_on() {
    let mut cluster = Cluster::start(2);
    let joiner = cluster.add_node("node3");
    eventually("node3 listed as a Follower (a voter), not a Learner, by every node", FAILOVER_DEADLINE, || {
        cluster
            .nodes
            .iter()
            .all(|node| {
                common::cluster_status(node).is_some_and(|c| {
                    let state = &c["cluster"]["nodes"]["node3"]["state"];
                    state == "Follower" || state == "Leader"
                })
            })
            .then_some(())
    });
    assert_eq!(node_state(&cluster.nodes[joiner]).as_deref(), Some("Follower"), "node3 about itself");

    // Stop an original node that does not lead: the leader and node3 must be a majority of 3.
    let leader = cluster.leader();
    let stopped = (0..2).find(|&i| i != leader).expect("an original node that does not lead");
    cluster.nodes[stopped].kill9();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != stopped).collect();
    let mut acknowledged = Acknowledged::default();
    for i in 0..10 {
        acknowledged.put(&cluster, &survivors, &format!("after-stop/{i}"), &format!("v{i}"));
    }
    for &i in &survivors {
        acknowledged.assert_on(&cluster.nodes[i]);
    }
}

#[test]
fn five_nodes_lose_two_with_the_leader_keep_serving_and_the_two_catch_up() {
    let mut cluster = Cluster::start(5);
    let mut acknowledged = Acknowledged::default();
    for i in 0..10 {
        acknowledged.put(&cluster, &[i % 5], &format!("before/{i}"), &format!("v{i}"));
    }

    let leader = cluster.leader();
    let follower = cluster.followers()[0];
    cluster.nodes[leader].kill9();
    cluster.nodes[follower].kill9();
    let survivors: Vec<usize> = (0..5).filter(|&i| i != leader && i != follower).collect();
    for i in 0..30 {
        acknowledged.put(&cluster, &survivors, &format!("down/{i}"), &format!("w{i}"));
    }
    // Linearizable reads on each of the three see everything acknowledged, before and after.
    for &i in &survivors {
        acknowledged.assert_on(&cluster.nodes[i]);
    }

    cluster.nodes[leader].restart();
    cluster.nodes[follower].restart();
    for node in &cluster.nodes {
        acknowledged.wait_replicated_to(node);
    }
    cluster.wait_until_formed();
    for node in &cluster.nodes {
        acknowledged.assert_on(node);
    }
}
