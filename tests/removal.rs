//! A node removed from its cluster (`cete leave`), seen from the node itself: it says it was
//! removed (`/v1/node` state `Removed`, readiness 503 with the reason, one log line), stops
//! taking part in Raft — no campaigns that would disturb the cluster, no writes or membership
//! changes taken — and stays that way when it is restarted on its data.
mod common;

use std::thread;
use std::time::{Duration, Instant};

use common::{cli, cli_ok, eventually, metric_value, node_state, Cluster, Node};
use serde_json::{json, Value};

/// How long a removed node may take to learn it (its peers are polled once a second).
const LEARN_DEADLINE: Duration = Duration::from_secs(10);
/// How long a removed node is watched for signs of life as a member: twice the longest
/// election timeout (2 s), so a node that would campaign has had the time to.
const WATCH_FOR: Duration = Duration::from_secs(4);
/// What a removed node logs, once, when it learns it.
const REMOVED_LINE: &str = "was removed from the cluster";

fn term(node: &Node) -> f64 {
    metric_value(&node.get("/v1/metrics").text(), "cete_raft_term", &[])
}

fn readiness(node: &Node) -> (u16, Value) {
    let reply = node.get("/v1/readiness_check");
    (reply.status, reply.json())
}

/// Asserts that `removed` reports itself Removed and not ready, with the reason.
fn assert_reports_removed(removed: &Node) {
    assert_eq!(node_state(removed).as_deref(), Some("Removed"), "{}'s /v1/node", removed.id());
    let (status, body) = readiness(removed);
    assert_eq!(status, 503, "readiness of a removed node: {body}");
    assert_eq!(body["ready"], false, "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("removed"), "the readiness answer does not say why: {body}");
    // `cete healthcheck`, the probe a supervisor runs, fails on it.
    let probe = cli(&["healthcheck", "--grpc-address", &removed.addresses.grpc]);
    assert!(!probe.status.success(), "`cete healthcheck` passed on a removed node: {probe:?}");
    let printed: Value = serde_json::from_slice(&probe.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {probe:?}"));
    assert_eq!(printed, json!({"alive": true, "ready": false}));
}

/// Watches `removed` and what is left of the cluster (`cluster`, without it) for
/// [`WATCH_FOR`]: the removed node must stay Removed, and the cluster keep its leader and term
/// (nobody campaigned).
fn assert_stays_removed_quietly(cluster: &Cluster, removed: &Node) {
    let leader = cluster.leader();
    let leader_node = &cluster.nodes[leader];
    let (term_before, own_term_before) = (term(leader_node), term(removed));
    let until = Instant::now() + WATCH_FOR;
    while Instant::now() < until {
        assert_eq!(node_state(removed).as_deref(), Some("Removed"), "{} came back to life", removed.id());
        thread::sleep(Duration::from_millis(200));
    }
    // A candidate starts each election in a term of its own.
    assert_eq!(term(removed), own_term_before, "{} campaigned", removed.id());
    assert_eq!(term(leader_node), term_before, "the term moved: someone campaigned");
    assert_eq!(cluster.agreed_leader(), Some(leader), "the cluster lost or changed its leader");
}

/// Nothing sent to `removed` is served as by a member: writes and membership changes are
/// refused, and nothing reaches the cluster.
fn assert_refuses_member_work(cluster: &Cluster, removed: &Node) {
    let leader = cluster.leader();
    let write = removed.put("/v1/data/through-a-removed-node", "lost");
    write.assert_error(503);
    assert!(write.json()["error"].as_str().is_some_and(|e| e.contains("removed")), "{write:?}");
    cluster.nodes[leader].get("/v1/data/through-a-removed-node").assert_error(404);

    let leave = removed.delete(&format!("/v1/cluster/{}", cluster.nodes[leader].id()));
    leave.assert_error(503);
    let stranger = json!({"raft_address": "127.0.0.1:1", "metadata": {"grpc_address": "127.0.0.1:2"}});
    removed.put("/v1/cluster/stranger", stranger.to_string()).assert_error(503);
    let members = cluster.nodes[leader].get("/v1/cluster").json();
    assert!(members["cluster"]["nodes"].get(cluster.nodes[leader].id()).is_some(), "{members}");
}

fn log_lines_with<'a>(log: &'a str, text: &str) -> Vec<&'a str> {
    log.lines().filter(|line| line.contains(text)).collect()
}

#[test]
fn a_removed_node_says_so_stops_campaigning_and_stays_removed_after_a_restart() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    let removed = cluster.followers()[1];
    let removed_id = cluster.nodes[removed].id();
    let rest: Vec<String> = cluster.ids().into_iter().filter(|id| *id != removed_id).collect();
    cluster.nodes[leader].put("/v1/data/before", "kept").assert_success();

    // cete leave --grpc-addr=<leader> node3
    cli_ok(&["leave", "--grpc-addr", &cluster.nodes[leader].addresses.grpc, &removed_id]);
    cluster.wait_for_members(&rest.iter().map(String::as_str).collect::<Vec<_>>());

    // From here on the cluster's helpers see only the members.
    let mut node = cluster.nodes.remove(removed);
    eventually(&format!("{removed_id} to report itself Removed"), LEARN_DEADLINE, || {
        (node_state(&node).as_deref() == Some("Removed")).then_some(())
    });
    assert_reports_removed(&node);
    assert_stays_removed_quietly(&cluster, &node);
    assert_refuses_member_work(&cluster, &node);
    let log = node.log();
    let said = log_lines_with(&log, REMOVED_LINE);
    assert_eq!(said.len(), 1, "one log line should say it, not {}: {said:#?}", said.len());
    assert!(said[0].contains(" WARN "), "not a warning: {}", said[0]);

    // Restarted on its data, it is Removed from its first answer on and does not resume.
    let status = node.stop();
    assert!(status.success(), "a removed node stopped with {status}");
    node.relaunch();
    let first = eventually("the restarted node to answer /v1/node", LEARN_DEADLINE, || node_state(&node));
    assert_eq!(first, "Removed", "the restarted removed node resumed as a member");
    assert_reports_removed(&node);
    assert_stays_removed_quietly(&cluster, &node);
    assert_refuses_member_work(&cluster, &node);

    // Joining it again on that data is refused: it says what to do instead.
    let leader_node = &cluster.nodes[cluster.leader()];
    let a = &node.addresses;
    let body = json!({"raft_address": a.raft, "metadata": {"grpc_address": a.grpc, "http_address": a.http}});
    let rejoin = leader_node.put(&format!("/v1/cluster/{removed_id}"), body.to_string());
    rejoin.assert_error(409);
    assert!(rejoin.json()["error"].as_str().is_some_and(|e| e.contains("empty data directory")), "{rejoin:?}");
    assert_eq!(node_state(&node).as_deref(), Some("Removed"));
    cluster.wait_for_members(&rest.iter().map(String::as_str).collect::<Vec<_>>());

    // The cluster it left is untouched.
    leader_node.put("/v1/data/after", "served").assert_success();
    assert_eq!(leader_node.get("/v1/data/before").text(), "kept");
}

#[test]
fn a_node_removed_while_it_was_down_learns_it_when_it_comes_back() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    let removed = cluster.followers()[0];
    let removed_id = cluster.nodes[removed].id();
    let rest: Vec<String> = cluster.ids().into_iter().filter(|id| *id != removed_id).collect();

    cluster.nodes[removed].kill9();
    cli_ok(&["leave", "--grpc-addr", &cluster.nodes[leader].addresses.grpc, &removed_id]);
    cluster.wait_for_members(&rest.iter().map(String::as_str).collect::<Vec<_>>());

    let mut node = cluster.nodes.remove(removed);
    node.relaunch();
    eventually(&format!("{removed_id} to learn it was removed"), LEARN_DEADLINE, || {
        (node_state(&node).as_deref() == Some("Removed")).then_some(())
    });
    assert_reports_removed(&node);
    assert_stays_removed_quietly(&cluster, &node);
    assert_refuses_member_work(&cluster, &node);
}

#[test]
fn a_leader_that_removes_itself_says_so_and_the_others_carry_on() {
    let mut cluster = Cluster::start(3);
    let old = cluster.leader();
    let old_id = cluster.nodes[old].id();
    let rest: Vec<String> = cluster.ids().into_iter().filter(|id| *id != old_id).collect();

    cli_ok(&["leave", "--grpc-addr", &cluster.nodes[old].addresses.grpc, &old_id]);
    cluster.wait_for_members(&rest.iter().map(String::as_str).collect::<Vec<_>>());
    let node = cluster.nodes.remove(old);
    eventually(&format!("{old_id} to report itself Removed"), LEARN_DEADLINE, || {
        (node_state(&node).as_deref() == Some("Removed")).then_some(())
    });
    assert_reports_removed(&node);
    assert_stays_removed_quietly(&cluster, &node);
    assert_refuses_member_work(&cluster, &node);
}
