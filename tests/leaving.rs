//! Removing members from a running cluster the way an operator does (`DELETE /v1/cluster/{id}`,
//! `cete leave`), sent to whichever member is at hand, while clients keep writing. The answer
//! is what the operator acts on — a node that was removed is wiped and joined again — so it
//! must tell the outcome: success once the removal is committed, even when the node removed is
//! the leader that committed it.
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{eventually, node_state, try_http_within, Cluster, Node, FORM_TIMEOUT};
use serde_json::Value;

/// How long a removed node may take to learn it (its peers are polled once a second).
const LEARN_DEADLINE: Duration = Duration::from_secs(10);
/// How long a membership change may take to answer (a change in progress is waited for, 10 s).
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Over the server's own write timeout (10 s), so that a write gets the server's answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(12);
/// The prefix of the writer's keys.
const PREFIX: &str = "load/";

/// A client writing unique keys, one after another, through the nodes it is given, and keeping
/// what was acknowledged.
struct Writer {
    targets: Arc<Mutex<Vec<String>>>,
    acknowledged: Arc<Mutex<BTreeMap<String, String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<WriterReport>>,
}

/// What the writer saw.
#[derive(Debug, Default)]
struct WriterReport {
    acknowledged: usize,
    refused: usize,
    /// The longest time between two acknowledged writes.
    longest_stall: Duration,
}

impl Writer {
    /// Starts writing through the nodes listening for HTTP on `targets`, in turn.
    fn start(targets: Vec<String>) -> Writer {
        let targets = Arc::new(Mutex::new(targets));
        let acknowledged = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, a, s) = (targets.clone(), acknowledged.clone(), stop.clone());
        let thread = Some(thread::spawn(move || write_until(&t, &a, &s)));
        Writer { targets, acknowledged, stop, thread }
    }

    /// From now on, writes go through these nodes.
    fn write_through(&self, targets: Vec<String>) {
        *self.targets.lock().expect("writer targets") = targets;
    }

    /// Waits until `count` more writes are acknowledged: the cluster takes writes.
    fn wait_for_progress(&self, count: usize) {
        let start = self.acknowledged.lock().expect("acknowledged").len();
        eventually(&format!("{count} more acknowledged writes"), FORM_TIMEOUT, || {
            (self.acknowledged.lock().expect("acknowledged").len() >= start + count).then_some(())
        });
    }

    /// Stops the writer; what it saw and every write acknowledged, by key.
    fn finish(mut self) -> (WriterReport, BTreeMap<String, String>) {
        self.stop.store(true, Ordering::Relaxed);
        let report = self.thread.take().expect("the writer runs").join().expect("the writer thread");
        let acknowledged = std::mem::take(&mut *self.acknowledged.lock().expect("acknowledged"));
        (report, acknowledged)
    }
}

fn write_until(
    targets: &Mutex<Vec<String>>,
    acknowledged: &Mutex<BTreeMap<String, String>>,
    stop: &AtomicBool,
) -> WriterReport {
    let mut report = WriterReport::default();
    let mut last_ack = Instant::now();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let target = {
            let targets = targets.lock().expect("writer targets");
            targets[i % targets.len()].clone()
        };
        let (key, value) = (format!("{PREFIX}{i:06}"), format!("v{i}"));
        i += 1;
        let url = format!("http://{target}/v1/data/{key}");
        match try_http_within(reqwest::Method::PUT, &url, value.clone().into_bytes(), WRITE_TIMEOUT) {
            Ok(reply) if (200..300).contains(&reply.status) => {
                acknowledged.lock().expect("acknowledged").insert(key, value);
                report.acknowledged += 1;
                report.longest_stall = report.longest_stall.max(last_ack.elapsed());
                last_ack = Instant::now();
            }
            // Refused or unanswered: never acknowledged, so it may or may not be there.
            _ => report.refused += 1,
        }
    }
    report
}

/// Every write in `acknowledged` reads back on `node` (one linearizable scan).
fn assert_holds(node: &Node, acknowledged: &BTreeMap<String, String>) {
    let scan = node.get(&format!("/v1/scan?prefix={PREFIX}"));
    assert_eq!(scan.status, 200, "scan on {}: {scan:?}", node.id());
    let stored: BTreeMap<String, String> = scan.json()["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .map(|pair| {
            (pair["key"].as_str().unwrap_or_default().into(), pair["value"].as_str().unwrap_or_default().into())
        })
        .collect();
    let lost: Vec<&String> = acknowledged.iter().filter(|(k, v)| stored.get(*k) != Some(v)).map(|(k, _)| k).collect();
    assert!(
        lost.is_empty(),
        "{} lost {} of {} acknowledged writes: {lost:?}",
        node.id(),
        lost.len(),
        acknowledged.len()
    );
}

fn http_addresses(nodes: &[&Node]) -> Vec<String> {
    nodes.iter().map(|node| node.addresses.http.clone()).collect()
}

fn leave(via: &Node, id: &str) -> Result<common::Reply, String> {
    via.try_request("DELETE", &format!("/v1/cluster/{id}"), Vec::new(), CHANGE_TIMEOUT)
}

fn members(cluster: &Value) -> Vec<String> {
    cluster["cluster"]["nodes"].as_object().map(|nodes| nodes.keys().cloned().collect()).unwrap_or_default()
}

#[test]
fn removing_the_leader_through_a_follower_answers_success_and_the_others_carry_on() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    let via = cluster.followers()[0];
    let leader_id = cluster.nodes[leader].id();
    let rest: Vec<String> = cluster.ids().into_iter().filter(|id| *id != leader_id).collect();
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();

    let writer = Writer::start(http_addresses(&cluster.nodes.iter().collect::<Vec<_>>()));
    writer.wait_for_progress(50);

    // curl -X DELETE http://<a follower>/v1/cluster/<the leader>
    let asked_at = Instant::now();
    let answer = leave(&cluster.nodes[via], &leader_id);
    let answered_after = asked_at.elapsed();
    match &answer {
        Ok(reply) if (200..300).contains(&reply.status) => {}
        other => panic!("removing the leader {leader_id} answered, after {answered_after:?}: {other:?}"),
    }

    // From here on the cluster's helpers see only the members; the writer writes through them.
    let mut removed = cluster.nodes.remove(leader);
    writer.write_through(http_addresses(&cluster.nodes.iter().collect::<Vec<_>>()));
    let formed = cluster.wait_for_members(&rest);
    let new_leader = formed["cluster"]["leader"].as_str().unwrap_or_default().to_string();
    let led_after = asked_at.elapsed();
    eventually(&format!("{leader_id} to report itself Removed"), LEARN_DEADLINE, || {
        (node_state(&removed).as_deref() == Some("Removed")).then_some(())
    });
    writer.wait_for_progress(50);
    let (report, acknowledged) = writer.finish();
    eprintln!(
        "removing the leader {leader_id}: answered after {answered_after:?}, {new_leader} led {led_after:?} after \
         the request; writer: {report:?}"
    );

    assert_eq!(members(&formed), rest, "{formed}");
    for node in &cluster.nodes {
        assert_holds(node, &acknowledged);
    }

    // An operator who restarts it on its data anyway (as one told "may or may not have taken
    // effect" would) gets a node that knows it was removed, and a cluster that carries on.
    removed.stop();
    removed.relaunch();
    let first = eventually("the restarted node to answer /v1/node", LEARN_DEADLINE, || node_state(&removed));
    assert_eq!(first, "Removed", "the removed leader, restarted on its data, resumed as a member");
    assert_eq!(cluster.wait_for_members(&rest), formed, "the cluster changed when the removed node came back");
}

/// The leader commits its own removal and crashes before it answers (failpoint
/// `routed-leave-before-reply`): the follower that routed the removal lost the answer, asks the
/// next leader, finds the node gone and answers success.
#[cfg(feature = "failpoints")]
#[test]
fn a_removal_whose_answer_is_lost_with_the_leader_is_found_to_have_taken_effect() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    let via = cluster.followers()[0];
    let leader_id = cluster.nodes[leader].id();
    let rest: Vec<String> = cluster.ids().into_iter().filter(|id| *id != leader_id).collect();
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    cluster.nodes[leader].arm_failpoint("routed-leave-before-reply", "return(crash)");

    let answer = leave(&cluster.nodes[via], &leader_id);
    let mut crashed = cluster.nodes.remove(leader);
    let status = crashed.wait_exit();
    assert!(!status.success(), "the leader was to crash before answering; it exited with {status}");
    match &answer {
        Ok(reply) if (200..300).contains(&reply.status) => {}
        other => panic!("a removal that took effect, its answer lost with the leader, answered {other:?}"),
    }
    let formed = cluster.wait_for_members(&rest);
    assert_eq!(members(&formed), rest, "{formed}");
}

/// How many members are removed, wiped and joined again in the churn test.
const CHURN_ROUNDS: usize = 10;

/// Whether `id` is a member, as `via` sees the cluster once it names a leader it lists (not
/// while a change is settling).
fn is_member(via: &Node, id: &str) -> bool {
    let settled = eventually(&format!("{}'s view of the cluster with a leader", via.id()), FORM_TIMEOUT, || {
        let cluster = common::cluster_status(via)?;
        let leader = cluster["cluster"]["leader"].as_str()?.to_string();
        members(&cluster).contains(&leader).then_some(cluster)
    });
    members(&settled).iter().any(|member| member == id)
}

/// The nemesis that once shrank a cluster to one voter: under a steady writer, remove a member
/// (the leader every other round) through another one, and act on the answer as an operator
/// does — removed: stop it, wipe its data and join it again; refused: it is still a member.
/// An answer that says the change failed when it took effect is the defect.
#[test]
fn membership_churn_under_writes_keeps_three_voters_and_every_acknowledged_write() {
    let mut cluster = Cluster::start(3);
    let ids = cluster.ids();
    let all: Vec<&str> = ids.iter().map(String::as_str).collect();
    let everyone = |cluster: &Cluster| http_addresses(&cluster.nodes.iter().collect::<Vec<_>>());
    let writer = Writer::start(everyone(&cluster));
    writer.wait_for_progress(20);
    let started = Instant::now();

    let mut misleading = Vec::new();
    let mut refusals = Vec::new();
    for round in 0..CHURN_ROUNDS {
        let leader = cluster.leader();
        let followers = cluster.followers();
        // The leader in even rounds, else each follower in turn; through a follower when the
        // leader goes, else alternately through the leader and the other follower.
        let (target, via) = if round % 2 == 0 {
            (leader, followers[round / 2 % 2])
        } else {
            let target = followers[round / 2 % 2];
            let other = followers[(round / 2 + 1) % 2];
            (target, if round / 2 % 2 == 0 { leader } else { other })
        };
        let (target_id, via_id) = (ids[target].as_str(), ids[via].as_str());
        let answer = leave(&cluster.nodes[via], target_id);
        let removed = match &answer {
            Ok(reply) if (200..300).contains(&reply.status) => true,
            other => {
                // An error is not taken at its word: the membership says what happened.
                let removed = !is_member(&cluster.nodes[via], target_id);
                let line = format!("round {round}: removing {target_id} through {via_id} answered {other:?}");
                if removed {
                    misleading.push(format!("{line}, yet it was removed"));
                } else {
                    refusals.push(line);
                }
                removed
            }
        };
        if removed {
            let rest: Vec<&Node> = cluster.nodes.iter().filter(|node| node.id() != target_id).collect();
            writer.write_through(http_addresses(&rest));
            cluster.nodes[target].stop();
            let peer = cluster.nodes[via].addresses.grpc.clone();
            cluster.nodes[target].restart_fresh(&peer);
            writer.write_through(everyone(&cluster));
        }
        cluster.wait_for_members(&all);
    }
    let churned_for = started.elapsed();
    writer.wait_for_progress(20);
    let (report, acknowledged) = writer.finish();
    eprintln!("{CHURN_ROUNDS} rounds of churn in {churned_for:?}; refused changes: {refusals:#?}; writer: {report:?}");

    assert!(misleading.is_empty(), "answers that said a removal failed when it took effect: {misleading:#?}");
    let agreed = cluster.wait_for_members(&all);
    assert_eq!(members(&agreed), ids, "{agreed}");
    for node in &cluster.nodes {
        assert_holds(node, &acknowledged);
    }
}
