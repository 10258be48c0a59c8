//! A replicated cluster, brought up and exercised the way Cete's README does it: node1 alone,
//! node2 and node3 joining it with `--peer-grpc-address`, then writes and reads on any node,
//! joins and leaves, and the failures a quorum must survive (kill -9, SIGSTOP, a node so far
//! behind that only a snapshot can catch it up).
mod common;

use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cete_proto::kvs::{self, GetRequest, JoinRequest, SetRequest};
use common::{
    address_args, block_on, cli, cli_ok, data, eventually, metric_value, node_json, node_state, serializable_get,
    temp_dir, Acknowledged, Addresses, Cluster, Node, CATCH_UP_TIMEOUT, FAILOVER_DEADLINE, FORM_TIMEOUT,
};
use serde_json::{json, Value};

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

/// The `/v1/cluster` answer the README shows: every node with its addresses and live state.
fn expected_cluster(cluster: &Cluster, leader: usize, states: &[(usize, &str)]) -> Value {
    let mut nodes = serde_json::Map::new();
    for (i, node) in cluster.nodes.iter().enumerate() {
        let state =
            states.iter().find(|(j, _)| *j == i).map_or(if i == leader { "Leader" } else { "Follower" }, |s| s.1);
        nodes.insert(node.id(), node_json(&node.addresses, state));
    }
    json!({"cluster": {"nodes": nodes, "leader": cluster.nodes[leader].id()}})
}

/// The body of `PUT /v1/cluster/{id}`: where the joining node listens.
fn join_body(node: &Node) -> String {
    let a = &node.addresses;
    json!({"raft_address": a.raft, "metadata": {"grpc_address": a.grpc, "http_address": a.http}}).to_string()
}

#[test]
fn three_nodes_started_with_a_peer_form_one_cluster() {
    let cluster = Cluster::start(3);
    let leader = cluster.leader();
    let expected = expected_cluster(&cluster, leader, &[]);

    // `curl /v1/cluster` and `cete cluster | jq .`, on every node.
    for node in &cluster.nodes {
        assert_eq!(node.get("/v1/cluster").json(), expected, "GET /v1/cluster on {}", node.id());
        let printed = cli_ok(&["cluster", "--grpc-address", &node.addresses.grpc]);
        assert_eq!(parse_json(&printed), expected, "`cete cluster` on {}", node.id());
    }
}

/// A `--peer-grpc-address` that names the node's own gRPC address, in any of the ways an address
/// of this host's port can be written, means "form the cluster", as it did in Go: the node must
/// not wait forever to join itself.
#[test]
fn a_peer_address_naming_the_node_itself_forms_a_new_cluster() {
    let forms: [fn(u16) -> String; 4] = [
        |port| format!("127.0.0.1:{port}"),
        |port| format!(":{port}"),
        |port| format!("localhost:{port}"),
        |port| format!("0.0.0.0:{port}"),
    ];
    // Started together, then each waited for: they are independent one-node clusters.
    let mut nodes: Vec<(String, Node)> = forms
        .iter()
        .map(|form| {
            let dir = temp_dir();
            let addresses = Addresses::free();
            let port: u16 = addresses.grpc.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
            let peer = form(port);
            let mut args = vec!["--id=node1".to_string()];
            args.extend(address_args(&addresses, dir.path()));
            args.push(format!("--peer-grpc-address={peer}"));
            (peer, Node::spawn(dir, args, Vec::new(), addresses))
        })
        .collect();
    for (peer, node) in &mut nodes {
        let own = node.addresses.grpc.clone();
        node.try_wait_ready().unwrap_or_else(|why| panic!("--grpc-address={own} --peer-grpc-address={peer}: {why}"));
        let alone = json!({"cluster": {
            "nodes": {"node1": node_json(&node.addresses, "Leader")},
            "leader": "node1",
        }});
        assert_eq!(node.get("/v1/cluster").json(), alone, "--peer-grpc-address={peer}");
        node.put("/v1/data/formed", "by itself").assert_success();
        assert!(
            node.log().contains("own gRPC address"),
            "no word of why it formed a cluster (--peer-grpc-address={peer})"
        );
    }
}

#[test]
fn a_node_may_join_through_any_member_not_only_the_leader() {
    let mut cluster = Cluster::start(2);
    let follower = cluster.followers()[0];
    let peer = format!("--peer-grpc-address={}", cluster.nodes[follower].addresses.grpc);
    let node3 = cluster.spawn_node("node3", &[&peer]);
    cluster.nodes.push(node3);

    let formed = cluster.wait_until_formed();
    assert_eq!(formed["cluster"]["nodes"].as_object().map(|nodes| nodes.len()), Some(3), "{formed}");
    cluster.nodes[2].put("/v1/data/joined-through", "a follower").assert_success();
    assert_eq!(cluster.nodes[0].get("/v1/data/joined-through").text(), "a follower");
}

#[test]
fn set_on_one_node_get_on_the_others() {
    let cluster = Cluster::start(3);
    let grpc = |i: usize| cluster.nodes[i].addresses.grpc.clone();

    // The README: `cete set 1 value1 --grpc-address=:9000`, then `cete get 1` on :9001 and :9002.
    cli_ok(&["set", "1", "value1", "--grpc-address", &grpc(0)]);
    for i in 0..3 {
        assert_eq!(cli_ok(&["get", "1", "--grpc-address", &grpc(i)]), "value1", "on {}", cluster.nodes[i].id());
    }

    // The same over HTTP, written on the last node this time.
    cluster.nodes[2].put("/v1/data/2", "value2").assert_success();
    for node in &cluster.nodes {
        let got = node.get("/v1/data/2");
        assert_eq!((got.status, got.text()), (200, "value2".to_string()), "on {}", node.id());
    }
    cluster.nodes[1].delete("/v1/data/2").assert_success();
    for node in &cluster.nodes {
        node.get("/v1/data/2").assert_error(404);
    }
}

#[test]
fn standalone_nodes_join_later_over_rest_cli_and_grpc() {
    let mut cluster = Cluster::start(1);
    cluster.nodes[0].put("/v1/data/before-join", "kept").assert_success();
    for id in ["node2", "node3", "node4"] {
        let standalone = cluster.spawn_node(id, &[]);
        cluster.nodes.push(standalone);
    }
    let (node1, node2, node3, node4) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2], &cluster.nodes[3]);

    // curl -X PUT http://node1/v1/cluster/node2 --data-binary '{"raft_address":..,"metadata":{..}}'
    node1.put("/v1/cluster/node2", join_body(node2)).assert_success();
    // cete join --grpc-addr=<node1> node3 <node3's gRPC address>, sent to node2, a follower now.
    cli_ok(&["join", "--grpc-addr", &node2.addresses.grpc, "node3", &node3.addresses.grpc]);
    // gRPC Join, as existing Cete clients call it.
    block_on(async {
        let a = &node4.addresses;
        let node = kvs::Node {
            raft_address: a.raft.clone(),
            metadata: Some(kvs::Metadata { grpc_address: a.grpc.clone(), http_address: a.http.clone() }),
            state: String::new(),
        };
        let request = JoinRequest { id: "node4".to_string(), node: Some(node) };
        node3.grpc_client().await.join(request).await.expect("gRPC Join of node4 through node3");
    });

    cluster.wait_until_formed();
    // The joiners took the cluster's data, and a write on one of them reaches all.
    node4.put("/v1/data/after-join", "everywhere").assert_success();
    for node in &cluster.nodes {
        assert_eq!(node.get("/v1/data/before-join").text(), "kept", "on {}", node.id());
        assert_eq!(node.get("/v1/data/after-join").text(), "everywhere", "on {}", node.id());
    }
}

#[test]
fn a_standalone_node_holding_data_is_refused_and_left_intact() {
    let cluster = Cluster::start(1);
    let node1 = &cluster.nodes[0];
    let loner = cluster.spawn_node("node2", &[]);
    loner.put("/v1/data/mine", "precious").assert_success();

    let refused = node1.put("/v1/cluster/node2", join_body(&loner));
    refused.assert_error(409);
    assert!(refused.json()["error"].as_str().is_some_and(|e| e.contains("node2")), "{refused:?}");

    let args = ["join", "--grpc-addr", &node1.addresses.grpc, "node2", &loner.addresses.grpc];
    let output = cli(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "`cete {}` succeeded: {stderr}", args.join(" "));
    assert!(stderr.contains("node2") && stderr.contains("data"), "unclear refusal: {stderr}");

    // Both sides are as they were: nothing lost, nothing merged.
    let alone = |node: &Node| {
        let nodes = serde_json::Map::from_iter([(node.id(), node_json(&node.addresses, "Leader"))]);
        json!({"cluster": {"nodes": nodes, "leader": node.id()}})
    };
    assert_eq!(loner.get("/v1/cluster").json(), alone(&loner));
    assert_eq!(loner.get("/v1/data/mine").text(), "precious");
    loner.put("/v1/data/still-mine", "yes").assert_success();
    assert_eq!(node1.get("/v1/cluster").json(), alone(node1));
    node1.get("/v1/data/mine").assert_error(404);
}

#[test]
fn nodes_leave_over_rest_and_cli_and_the_cluster_shrinks() {
    let cluster = Cluster::start(3);
    let leader = cluster.leader();
    let followers = cluster.followers();
    let ids: Vec<String> = cluster.ids();
    let (leader_id, first_id, second_id) = (&ids[leader], &ids[followers[0]], &ids[followers[1]]);

    // curl -X DELETE http://<a follower>/v1/cluster/<the other follower>: routed to the leader.
    cluster.nodes[followers[1]].delete(&format!("/v1/cluster/{first_id}")).assert_success();
    let two = cluster.wait_for_members(&[leader_id, second_id]);
    assert!(two["cluster"]["nodes"].get(first_id.as_str()).is_none(), "{two}");

    // cete leave --grpc-addr=<leader> <the last follower>
    cli_ok(&["leave", "--grpc-addr", &cluster.nodes[leader].addresses.grpc, second_id]);
    cluster.wait_for_members(&[leader_id]);

    // What is left is a working cluster of one.
    let survivor = &cluster.nodes[leader];
    survivor.put("/v1/data/after-leave", "still served").assert_success();
    assert_eq!(survivor.get("/v1/data/after-leave").text(), "still served");
    survivor.delete("/v1/cluster/nobody").assert_error(404);
}

#[test]
fn writes_on_followers_succeed_over_http_and_grpc() {
    let cluster = Cluster::start(3);
    let leader = cluster.leader();
    let followers = cluster.followers();
    const WRITES: usize = 40;

    // Concurrent HTTP writes on both followers: each one routed to the leader, none refused.
    thread::scope(|scope| {
        for &f in &followers {
            for writer in 0..4 {
                let node = &cluster.nodes[f];
                scope.spawn(move || {
                    for i in (writer..WRITES).step_by(4) {
                        let reply = node.put(&data(&format!("http/{}/{i}", node.id())), format!("v{i}"));
                        assert_eq!(reply.status, 200, "PUT on follower {}: {reply:?}", node.id());
                    }
                });
            }
        }
    });

    // gRPC Set and Delete on the followers.
    block_on(async {
        for &f in &followers {
            let node = &cluster.nodes[f];
            let mut kvs = node.grpc_client().await;
            for i in 0..WRITES {
                let request = SetRequest {
                    key: format!("grpc/{}/{i}", node.id()),
                    value: Bytes::from(format!("v{i}")),
                    ..Default::default()
                };
                if let Err(status) = kvs.set(request).await {
                    panic!("gRPC Set on follower {}: {status:?}", node.id());
                }
            }
            let request = kvs::DeleteRequest { key: format!("grpc/{}/0", node.id()) };
            kvs.delete(request).await.unwrap_or_else(|s| panic!("gRPC Delete on follower {}: {s:?}", node.id()));
        }
    });

    let on_leader = &cluster.nodes[leader];
    for &f in &followers {
        let id = cluster.nodes[f].id();
        for i in 0..WRITES {
            assert_eq!(on_leader.get(&data(&format!("http/{id}/{i}"))).text(), format!("v{i}"));
            let got = on_leader.get(&data(&format!("grpc/{id}/{i}")));
            if i == 0 {
                got.assert_error(404);
            } else {
                assert_eq!(got.text(), format!("v{i}"));
            }
        }
    }
}

#[test]
fn a_write_acknowledged_on_one_node_is_read_at_once_on_another() {
    let cluster = Cluster::start(3);
    // Linearizable reads by default: no waiting, no retry, on whichever node.
    for round in 0..200 {
        let (writer, reader) = (&cluster.nodes[round % 3], &cluster.nodes[(round + 1) % 3]);
        writer.put("/v1/data/read-your-writes", round.to_string()).assert_success();
        let got = reader.get("/v1/data/read-your-writes");
        assert_eq!(
            (got.status, got.text()),
            (200, round.to_string()),
            "round {round}: written on {}, read on {}",
            writer.id(),
            reader.id()
        );
    }

    // The same over gRPC, writer and reader each on their own connection.
    block_on(async {
        let mut clients = Vec::new();
        for node in &cluster.nodes {
            clients.push(node.grpc_client().await);
        }
        for round in 0..50 {
            let value = Bytes::from(round.to_string());
            let set = SetRequest { key: "grpc-read-your-writes".into(), value: value.clone(), ..Default::default() };
            clients[round % 3].set(set).await.expect("gRPC Set");
            let get = GetRequest { key: "grpc-read-your-writes".into() };
            let got = clients[(round + 2) % 3].get(get).await.expect("gRPC Get").into_inner().value;
            assert_eq!(got, value, "gRPC round {round}");
        }
    });
}

#[test]
fn killing_the_leader_fails_over_and_the_restarted_node_catches_up() {
    let mut cluster = Cluster::start(3);
    let mut acknowledged = Acknowledged::default();
    for i in 0..20 {
        acknowledged.put(&cluster, &[i % 3], &format!("before/{i}"), &format!("v{i}"));
    }

    let old = cluster.leader();
    let old_id = cluster.nodes[old].id();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let killed_at = Instant::now();
    cluster.nodes[old].kill9();

    // Clients keep writing through the survivors from the moment the leader dies.
    acknowledged.put(&cluster, &survivors, "first-after-failover", "served");
    let serving_after = killed_at.elapsed();
    let new = eventually("a new leader among the survivors", FAILOVER_DEADLINE, || cluster.agreed_leader());
    eprintln!(
        "failover after kill -9 of {old_id}: first write acknowledged after {serving_after:?}, by {} as leader",
        cluster.nodes[new].id()
    );
    assert!(serving_after < FAILOVER_DEADLINE, "writes resumed only after {serving_after:?}");

    // `cete cluster` on a survivor shows the dead node as Shutdown.
    let survivor_grpc = cluster.nodes[survivors[0]].addresses.grpc.clone();
    eventually(&format!("{old_id} listed as Shutdown"), Duration::from_secs(10), || {
        let printed = parse_json(&cli_ok(&["cluster", "--grpc-address", &survivor_grpc]));
        (printed["cluster"]["nodes"][&old_id]["state"] == "Shutdown").then_some(printed)
    });
    // And so does GET /v1/cluster on the other, once its once-a-second poll of the peers ran.
    let expected = expected_cluster(&cluster, new, &[(old, "Shutdown")]);
    let other = &cluster.nodes[survivors[1]];
    eventually("the other survivor's /v1/cluster to show the new roles", Duration::from_secs(10), || {
        (other.get("/v1/cluster").json() == expected).then_some(())
    });

    // Writes while it is down, then it comes back on its data and catches up.
    for i in 0..50 {
        acknowledged.put(&cluster, &survivors, &format!("while-down/{i}"), &format!("w{i}"));
    }
    cluster.nodes[old].restart();
    acknowledged.wait_replicated_to(&cluster.nodes[old]);
    cluster.wait_until_formed();
    for node in &cluster.nodes {
        acknowledged.assert_on(node);
    }
}

/// Peer links and replication run on long-lived streams: each leader killed here breaks the
/// streams to it, and the restarted node may lead again, so writes through every node must
/// go over streams opened anew.
#[test]
fn writes_through_every_node_survive_leaders_killed_and_restarted_in_turn() {
    let mut cluster = Cluster::start(3);
    let mut acknowledged = Acknowledged::default();
    let everyone: Vec<usize> = (0..3).collect();
    for round in 0..3 {
        for i in 0..15 {
            acknowledged.put(&cluster, &[i % 3], &format!("round{round}/{i}"), &format!("v{round}.{i}"));
        }
        let old = cluster.leader();
        cluster.nodes[old].kill9();
        let survivors: Vec<usize> = everyone.iter().copied().filter(|&i| i != old).collect();
        for i in 0..5 {
            acknowledged.put(&cluster, &survivors, &format!("round{round}/down/{i}"), "w");
        }
        cluster.nodes[old].restart();
        cluster.wait_until_formed();
    }
    for i in 0..15 {
        acknowledged.put(&cluster, &[i % 3], &format!("after/{i}"), "a");
    }
    for node in &cluster.nodes {
        acknowledged.wait_replicated_to(node);
        acknowledged.assert_on(node);
    }
}

#[test]
fn a_new_node_catches_up_from_a_snapshot_after_the_log_was_purged() {
    let mut cluster = Cluster::start_with(1, &["--snapshot-every=100"]);
    const KEYS: usize = 1000;
    let node1 = &cluster.nodes[0];
    thread::scope(|scope| {
        for writer in 0..4 {
            scope.spawn(move || {
                for i in (writer..KEYS).step_by(4) {
                    node1.put(&data(&format!("snap/{i:04}")), format!("value-{i}")).assert_success();
                }
            });
        }
    });
    assert_eq!(node1.get("/v1/snapshot").status, 200);
    let snapshot_index = metric_value(&node1.get("/v1/metrics").text(), "cete_raft_snapshot_index", &[]);
    assert!(snapshot_index > 0.0, "no snapshot on node1 after GET /v1/snapshot");

    let joined_at = Instant::now();
    let node2 = cluster.add_node("node2");
    cluster.wait_until_formed();
    let node2 = &cluster.nodes[node2];
    eventually("all keys in node2's own copy", CATCH_UP_TIMEOUT, || {
        let reply = node2.get("/v1/scan?prefix=snap/&consistency=serializable");
        let pairs = reply.json()["pairs"].as_array().cloned().unwrap_or_default();
        (pairs.len() == KEYS).then_some(pairs)
    });
    eprintln!("node2 joined and caught up on {KEYS} keys in {:?}", joined_at.elapsed());
    for i in (0..KEYS).step_by(97) {
        assert_eq!(serializable_get(node2, &format!("snap/{i:04}")), Some(format!("value-{i}")));
    }
    // The log behind the snapshot was gone: node2 can only have caught up by installing it.
    assert!(node2.log().contains("installed snapshot"), "node2 did not install a snapshot; its log:\n{}", node2.log());
}

#[test]
fn a_paused_leader_is_replaced_then_steps_down_and_catches_up() {
    let mut cluster = Cluster::start(3);
    let mut acknowledged = Acknowledged::default();
    for i in 0..20 {
        acknowledged.put(&cluster, &[i % 3], &format!("before/{i}"), &format!("v{i}"));
    }

    let old = cluster.leader();
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let paused_at = Instant::now();
    cluster.nodes[old].pause();

    let new = eventually("a new leader while the old one is paused", FAILOVER_DEADLINE, || cluster.agreed_leader());
    for i in 0..50 {
        acknowledged.put(&cluster, &others, &format!("while-paused/{i}"), &format!("p{i}"));
    }
    eprintln!(
        "SIGSTOP of {}: {} leads, 50 writes acknowledged after {:?}",
        cluster.nodes[old].id(),
        cluster.nodes[new].id(),
        paused_at.elapsed()
    );

    cluster.nodes[old].resume();
    let old_node = &cluster.nodes[old];
    eventually("the resumed old leader to step down", FORM_TIMEOUT, || {
        (node_state(old_node).as_deref() == Some("Follower")).then_some(())
    });
    acknowledged.wait_replicated_to(old_node);
    // Writes through the old leader are routed to the new one.
    acknowledged.put(&cluster, &[old], "through-the-old-leader", "routed");
    cluster.wait_until_formed();
    for node in &cluster.nodes {
        acknowledged.assert_on(node);
    }
}

#[test]
fn a_read_sent_to_a_follower_as_the_leader_freezes_is_confirmed_by_the_new_leader() {
    let mut cluster = Cluster::start(3);
    let old = cluster.leader();
    let followers = cluster.followers();
    let (reader, other) = (followers[0], followers[1]);
    cluster.nodes[reader].put("/v1/data/key", "before").assert_success();
    // One read through the old leader first, so that a read-index request to it is what the
    // reader has in flight when it freezes.
    assert_eq!(cluster.nodes[reader].get("/v1/data/key").text(), "before");

    // The reader misses a write (the leader and the other follower acknowledge it), then the
    // leader freezes before it could catch the reader up: the reader's own copy is stale, and
    // only a read index from the new leader (the other follower) makes it wait for the write.
    cluster.nodes[reader].pause();
    cluster.nodes[old].put("/v1/data/key", "after").assert_success();
    cluster.nodes[old].pause();
    cluster.nodes[reader].resume();
    let reply = cluster.nodes[reader].try_request("GET", "/v1/data/key", Vec::new(), FAILOVER_DEADLINE);
    match reply {
        Ok(reply) if reply.status == 200 => {
            assert_eq!(reply.text(), "after", "the reader answered from its own stale copy")
        }
        other => panic!("a linearizable read sent as the leader froze: {other:?}"),
    }
    // Either follower may lead now: the old leader sent the write into the frozen reader's
    // socket, so on resuming the reader may hold it too and win the election.
    let new = cluster.leader();
    assert!(new == reader || new == other, "a follower leads now, not {}", cluster.nodes[new].id());
    cluster.nodes[old].resume();
}

#[test]
fn a_write_sent_to_a_follower_as_the_leader_freezes_follows_the_new_leader() {
    let mut cluster = Cluster::start(3);
    let old = cluster.leader();
    let follower = cluster.followers()[0];
    cluster.nodes[follower].put("/v1/data/warm-up", "routed").assert_success();

    let paused_at = Instant::now();
    cluster.nodes[old].pause();
    // The follower hands the write to the leader it knows, which froze with the request in
    // its socket. The write carries a request id (applied at most once), so once a new leader
    // is elected the follower sends it there instead of waiting on the frozen one.
    let reply =
        cluster.nodes[follower].try_request("PUT", "/v1/data/in-flight", b"followed".to_vec(), FAILOVER_DEADLINE);
    let answered_after = paused_at.elapsed();
    eprintln!("a write sent as the leader froze was answered after {answered_after:?}: {reply:?}");
    match reply {
        Ok(reply) if reply.status == 200 => {}
        other => panic!("a write sent as the leader froze, answered after {answered_after:?}: {other:?}"),
    }
    let new = cluster.leader();
    assert_eq!(cluster.nodes[new].get("/v1/data/in-flight").text(), "followed");
    // The old leader comes back, learns it was replaced, and every node agrees.
    cluster.nodes[old].resume();
    cluster.wait_until_formed();
    for node in &cluster.nodes {
        assert_eq!(node.get("/v1/data/in-flight").text(), "followed", "on {}", node.id());
    }
}
