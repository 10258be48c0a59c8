//! `GET /v1/status` (README, "A cluster"): every member's Raft progress, asked of them all at
//! once over the peer links; a member that does not answer shows why.
mod common;

use common::{cli, data, eventually, wait_for_revisions, Cluster, FORM_TIMEOUT};
use serde_json::Value;

#[test]
fn status_shows_every_members_progress_and_who_does_not_answer() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.nodes[cluster.leader()].id();
    wait_for_revisions(&cluster.nodes[0]);
    for n in 0..20 {
        cluster.nodes[n % 3].put(&data(&format!("s/{n}")), "x").assert_success();
    }
    let asked = cluster.followers()[0];
    // Every member answers, and once the writes are applied everywhere none lags.
    let status = eventually("every member caught up", FORM_TIMEOUT, || {
        let status = cluster.nodes[asked].get("/v1/status").json();
        let members = status["members"].as_object()?;
        (members.len() == 3 && members.values().all(|m| m["lag"] == 0)).then_some(status)
    });
    assert_eq!(status["id"], cluster.nodes[asked].id());
    assert_eq!(status["leader"], leader.as_str());
    assert_eq!(status["state"], "Follower");
    let members = status["members"].as_object().unwrap();
    let on_leader = &members[&leader];
    assert_eq!(on_leader["state"], "Leader");
    assert!(on_leader["committed_index"].as_u64().unwrap() >= 20, "{status}");
    for (name, member) in members {
        assert_eq!(member["term"], status["term"], "{name}: {status}");
        assert_eq!(member["applied_index"], on_leader["committed_index"], "{name}: {status}");
    }
    // The CLI (gRPC Status) says the same.
    let output = cli(&["status", "--grpc-address", &cluster.nodes[asked].addresses.grpc]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let said: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((&said["id"], &said["leader"]), (&status["id"], &status["leader"]), "{said}");
    assert_eq!(said["members"].as_object().unwrap().len(), 3, "{said}");
    assert_eq!(said["members"][&leader]["state"], "Leader", "{said}");
    assert_eq!(said["revision"], status["revision"], "{said}");
    assert!(said["revision"].as_u64().is_some_and(|r| r >= 20), "{said}");

    // A member killed shows why it did not answer; the others still do.
    let gone = cluster.followers().into_iter().find(|i| *i != asked).unwrap();
    let gone_id = cluster.nodes[gone].id();
    cluster.nodes[gone].kill9();
    let status: Value = cluster.nodes[asked].get("/v1/status").json();
    let members = status["members"].as_object().unwrap();
    assert!(members[&gone_id]["error"].as_str().is_some_and(|e| !e.is_empty()), "{status}");
    assert!(members[&gone_id].get("state").is_none(), "{status}");
    assert_eq!(members[&leader]["state"], "Leader", "{status}");
}
