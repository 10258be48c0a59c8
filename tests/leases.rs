//! Leases (README, "Leases"): granted with a TTL, kept alive by their holder, revoked or
//! expired by the leader alone; a lease's keys vanish with it at one revision, and watchers
//! see the deletes. Run against real clusters, through followers, across leader kills and
//! restarts, with the CLI's keep-alive stream as the holder.
mod common;

use std::time::Duration;

use common::{
    block_on, cli, cli_ok, data, eventually, node_metric, wait_for_revisions, BackgroundCli, Cluster, NdjsonWatch,
    Node, FORM_TIMEOUT,
};

/// How long a lease whose holder stopped renewing may take to go: its TTL, the leader's
/// check, and the revoke's commit, with room for a slow machine.
const EXPIRY_DEADLINE: Duration = Duration::from_secs(20);

fn grant(node: &Node, ttl: u64) -> String {
    let reply = node.post("/v1/leases", format!("{{\"ttl\":{ttl}}}"));
    assert_eq!(reply.status, 201, "grant: {reply:?}");
    let id = reply.json()["id"].as_str().expect("the id as a string").to_string();
    assert_eq!(reply.json()["ttl"], ttl.max(2));
    id
}

fn put_leased(node: &Node, key: &str, value: &str, lease: &str) {
    node.put(&format!("{}?lease={lease}", data(key)), value).assert_success();
}

fn exists(node: &Node, key: &str) -> bool {
    match node.get(&data(key)).status {
        200 => true,
        404 => false,
        other => panic!("GET {key} answered {other}"),
    }
}

fn grpc_args(node: &Node) -> Vec<&str> {
    vec!["--grpc-address", node.addresses.grpc.as_str()]
}

/// `cete lease keepalive ID` through `node`, in the background.
fn keep_alive(node: &Node, id: &str) -> BackgroundCli {
    let mut args = vec!["lease", "keepalive", id];
    args.extend(grpc_args(node));
    BackgroundCli::spawn(&args)
}

/// Waits until `holder` has printed `more` renewals beyond `seen`; answers how many it has.
fn renewals_beyond(holder: &BackgroundCli, seen: usize, more: usize) -> usize {
    eventually(&format!("{more} more renewals"), EXPIRY_DEADLINE, || {
        let printed = holder.stdout().lines().count();
        assert!(!holder.stderr().contains("error"), "the keep-alive failed: {}", holder.stderr());
        (printed >= seen + more).then_some(printed)
    })
}

#[test]
fn a_revoke_deletes_every_key_of_the_lease_at_one_revision_and_watchers_see_it() {
    let cluster = Cluster::start(3);
    let follower = &cluster.nodes[cluster.followers()[0]];
    wait_for_revisions(follower);
    let id = grant(follower, 60);
    for key in ["svc/a", "svc/b", "svc/c"] {
        put_leased(follower, key, "up", &id);
    }
    follower.put(&data("svc/unleased"), "stays").assert_success();
    let read = follower.get(&data("svc/a"));
    assert_eq!(read.header("X-Cete-Lease"), Some(id.as_str()));

    let lease = follower.get(&format!("/v1/leases/{id}")).json();
    assert_eq!(lease["ttl"], 60);
    assert_eq!(lease["keys"], serde_json::json!(["svc/a", "svc/b", "svc/c"]));
    assert!(lease["remaining"].as_u64().is_some_and(|left| left > 0 && left <= 60), "{lease}");
    let listed = cluster.nodes[0].get("/v1/leases").json();
    assert!(listed["leases"].as_array().unwrap().iter().any(|l| l["id"] == id.as_str()), "{listed}");

    eventually("the lease counted on node3", FORM_TIMEOUT, || {
        (node_metric(&cluster.nodes[2], "cete_leases") == 1.0).then_some(())
    });
    let watch = NdjsonWatch::open(&cluster.nodes[2], "prefix=svc/");
    let revoked = follower.delete(&format!("/v1/leases/{id}"));
    revoked.assert_success();
    let revision = revoked.number("X-Cete-Revision");
    assert_eq!(revoked.json()["revision"], revision);
    let deletes: Vec<_> = (0..3).map(|_| watch.next_change(Duration::from_secs(10))).collect();
    for (line, key) in deletes.iter().zip(["svc/a", "svc/b", "svc/c"]) {
        assert_eq!((line["type"].as_str(), line["data"]["key"].as_str()), (Some("Delete"), Some(key)), "{line}");
        assert_eq!(line["revision"], revision, "every key of a lease goes at one revision: {line}");
    }
    for node in &cluster.nodes {
        assert!(!exists(node, "svc/a") && !exists(node, "svc/c"));
        assert!(exists(node, "svc/unleased"));
    }
    follower.get(&format!("/v1/leases/{id}")).assert_error(404);
    follower.put(&format!("/v1/leases/{id}/keepalive"), "").assert_error(404);
    follower.delete(&format!("/v1/leases/{id}")).assert_error(404);
}

#[test]
fn what_a_lease_is_not_is_told_plainly() {
    let node = Node::start("node1");
    wait_for_revisions(&node);
    for body in ["{\"ttl\":0}", "{\"ttl\":-5}", "{}", "{\"ttl\":\"ten\"}", "{\"ttl\":5,\"extra\":1}", "not json"] {
        node.post("/v1/leases", body).assert_error(400);
    }
    node.get("/v1/leases/abc").assert_error(400);
    node.get("/v1/leases/0").assert_error(400);
    node.get("/v1/leases/12345").assert_error(404);
    // A write naming a lease that does not exist changes nothing.
    node.put(&format!("{}?lease=12345", data("k")), "v").assert_error(404);
    assert!(!exists(&node, "k"));
    node.put(&format!("{}?lease=x", data("k")), "v").assert_error(400);
    // An id given twice is refused the second time; a short TTL is raised to the minimum.
    let first = node.post("/v1/leases", "{\"ttl\":1,\"id\":\"77\"}");
    assert_eq!((first.status, first.json()["id"].as_str(), first.json()["ttl"].as_u64()), (201, Some("77"), Some(2)));
    node.post("/v1/leases", "{\"ttl\":10,\"id\":77}").assert_error(409);
    // A write without ?lease= detaches the key from its lease, as etcd's put does.
    let id = grant(&node, 60);
    put_leased(&node, "detached", "1", &id);
    node.put(&data("detached"), "2").assert_success();
    assert_eq!(node.get(&data("detached")).header("X-Cete-Lease"), None);
    node.delete(&format!("/v1/leases/{id}")).assert_success();
    assert!(exists(&node, "detached"));
}

#[test]
fn a_lease_expires_once_its_holder_is_killed() {
    let cluster = Cluster::start(3);
    let (first, second) = (&cluster.nodes[0], &cluster.nodes[1]);
    wait_for_revisions(first);
    let id = grant(second, 2);
    put_leased(first, "registry/web1", "10.0.0.5:80", &id);
    let holder = keep_alive(second, &id);
    // Renewed every TTL/3: six renewals span twice its TTL, and the key is still there.
    renewals_beyond(&holder, 0, 6);
    assert!(exists(first, "registry/web1"), "a lease kept alive expired");
    drop(holder); // SIGKILL: the holder dies without a word.
    eventually("the dead holder's key to vanish", EXPIRY_DEADLINE, || (!exists(first, "registry/web1")).then_some(()));
    eventually("the lease to be gone", EXPIRY_DEADLINE, || {
        (second.get(&format!("/v1/leases/{id}")).status == 404).then_some(())
    });
    let expiries: f64 = cluster.nodes.iter().map(|node| node_metric(node, "cete_lease_expiries_total")).sum();
    assert_eq!(expiries, 1.0, "one leader revoked the lease as expired");
    assert_eq!(node_metric(first, "cete_leases"), 0.0);
    let output = cli(&[&["lease", "keepalive", &id][..], &grpc_args(first)].concat());
    assert!(!output.status.success(), "keeping an expired lease alive must fail");
    assert!(String::from_utf8_lossy(&output.stderr).contains("expired"), "{output:?}");
}

#[test]
fn a_lease_survives_a_leader_kill_and_its_keep_alive_follows_the_new_leader() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    let via = cluster.followers()[0];
    wait_for_revisions(&cluster.nodes[via]);
    let kept = grant(&cluster.nodes[via], 3);
    let idle = grant(&cluster.nodes[via], 30);
    put_leased(&cluster.nodes[via], "kept", "1", &kept);
    put_leased(&cluster.nodes[via], "idle", "1", &idle);
    let holder = keep_alive(&cluster.nodes[via], &kept);
    let seen = renewals_beyond(&holder, 0, 1);

    cluster.nodes[leader].kill9();
    eventually("a new leader", FORM_TIMEOUT, || cluster.agreed_leader().filter(|l| *l != leader));
    // Renewals go on through the follower to whichever node leads, for over twice the TTL.
    renewals_beyond(&holder, seen, 6);
    let node = &cluster.nodes[via];
    assert!(exists(node, "kept"), "a lease kept alive across a leader change expired");
    let lease = node.get(&format!("/v1/leases/{idle}")).json();
    assert_eq!(lease["keys"], serde_json::json!(["idle"]), "the new leader knows the lease: {lease}");
    assert!(exists(node, "idle"));

    // The killed leader comes back, and the lease is still the cluster's.
    cluster.nodes[leader].restart();
    drop(holder);
    let node = &cluster.nodes[via];
    eventually("the kept lease to expire", EXPIRY_DEADLINE, || (!exists(node, "kept")).then_some(()));
    cli_ok(&[&["lease", "revoke", &idle][..], &grpc_args(&cluster.nodes[leader])].concat());
    assert!(!exists(&cluster.nodes[leader], "idle"));
}

#[test]
fn leases_survive_a_restart_and_travel_in_snapshots() {
    let mut cluster = Cluster::start_with(1, &["--snapshot-every", "5"]);
    wait_for_revisions(&cluster.nodes[0]);
    let id = grant(&cluster.nodes[0], 600);
    for i in 0..10 {
        put_leased(&cluster.nodes[0], &format!("held/{i}"), "x", &id);
    }
    cli_ok(&[&["snapshot"][..], &grpc_args(&cluster.nodes[0])].concat());
    cluster.nodes[0].stop();
    cluster.nodes[0].restart();
    let lease = eventually("the lease after a restart", FORM_TIMEOUT, || {
        let reply = cluster.nodes[0].get(&format!("/v1/leases/{id}"));
        (reply.status == 200).then(|| reply.json())
    });
    assert_eq!(lease["keys"].as_array().map(Vec::len), Some(10), "{lease}");
    assert_eq!(lease["ttl"], 600);

    // A node that joins now is sent the state as a snapshot, leases included: revoked through
    // it, the lease's keys go everywhere.
    let joined = cluster.add_node("node2");
    cluster.wait_for_members(&["node1", "node2"]);
    let revoked = cluster.nodes[joined].delete(&format!("/v1/leases/{id}"));
    revoked.assert_success();
    for node in &cluster.nodes {
        eventually("the revoke applied", FORM_TIMEOUT, || (!exists(node, "held/0")).then_some(()));
        assert_eq!(node.get("/v1/scan?prefix=held/&count_only=true").json()["count"], 0);
    }
}

#[test]
fn the_keep_alive_stream_answers_ttl_zero_for_a_lease_that_is_gone() {
    use cete_proto::kvs::{LeaseGrantRequest, LeaseKeepAliveRequest, LeaseTimeToLiveRequest};
    let node = Node::start("node1");
    wait_for_revisions(&node);
    block_on(async {
        let mut client = node.grpc_client().await;
        let granted = client.lease_grant(LeaseGrantRequest { ttl: 10, id: 0 }).await.expect("grant").into_inner();
        assert!(granted.id > 0 && granted.ttl == 10);
        let asks = futures::stream::iter([
            LeaseKeepAliveRequest { id: granted.id },
            LeaseKeepAliveRequest { id: 424242 },
            LeaseKeepAliveRequest { id: granted.id },
        ]);
        let mut answers = client.lease_keep_alive(asks).await.expect("keep-alive stream").into_inner();
        let mut ttls = Vec::new();
        while let Some(answer) = answers.message().await.expect("an answer") {
            ttls.push((answer.id, answer.ttl));
        }
        assert_eq!(ttls, vec![(granted.id, 10), (424242, 0), (granted.id, 10)]);
        let missing = client.lease_time_to_live(LeaseTimeToLiveRequest { id: 424242 }).await.unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound);
        let bad = client.lease_grant(LeaseGrantRequest { ttl: 0, id: 0 }).await.unwrap_err();
        assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    });
}
