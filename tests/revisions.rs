//! Revisions, as a client sees them (README, "Coordination"): the store's revision advances by
//! one per change; each key answers its create and mod revision and its version, over HTTP
//! headers, gRPC and `cete get --show-revisions`; and every node, including one that caught
//! up from a snapshot, answers the same numbers for the same key, because they come from the
//! log alone.
mod common;

use cete_proto::kvs::{DeleteRequest, SetRequest};
use common::{cli_ok, data, eventually, wait_for_revisions, Cluster, Node, Reply, CATCH_UP_TIMEOUT};
use serde_json::Value;

/// A key's revisions as a GET answers them: (create, mod, version, the store's revision).
fn revisions(reply: &Reply) -> (u64, u64, u64, u64) {
    reply.assert_success();
    assert_eq!(reply.header("ETag"), Some(format!("\"{}\"", reply.number("X-Cete-Mod-Revision")).as_str()));
    (
        reply.number("X-Cete-Create-Revision"),
        reply.number("X-Cete-Mod-Revision"),
        reply.number("X-Cete-Version"),
        reply.number("X-Cete-Revision"),
    )
}

/// What `cete get KEY --show-revisions` prints, through `node`'s gRPC door.
fn shown(node: &Node, key: &str) -> Value {
    let printed = cli_ok(&["get", key, "--show-revisions", "--grpc-address", &node.addresses.grpc]);
    serde_json::from_str(&printed).unwrap_or_else(|e| panic!("not JSON ({e}): {printed:?}"))
}

#[test]
fn every_change_advances_the_revision_by_one_and_each_key_keeps_its_history() {
    let cluster = Cluster::start(1);
    let node = &cluster.nodes[0];
    wait_for_revisions(node);

    let put = node.put(&data("a"), "1");
    let (create, modified, version, store) = revisions(&node.get(&data("a")));
    // The write answered the revision it made, and the ETag the value now has.
    assert_eq!((put.number("X-Cete-Revision"), put.header("ETag")), (create, Some(format!("\"{create}\"").as_str())));
    assert_eq!(
        (modified, version, store),
        (create, 1, create),
        "a new key: created and changed at the latest revision"
    );

    node.put(&data("a"), "2").assert_success();
    assert_eq!(revisions(&node.get(&data("a"))), (create, create + 1, 2, create + 1));

    // Deleting a missing key changes nothing (it answers the revision as it stands); a write
    // to another key advances the store alone.
    assert_eq!(node.delete(&data("missing")).number("X-Cete-Revision"), create + 1);
    node.put(&data("b"), "x").assert_success();
    assert_eq!(revisions(&node.get(&data("b"))), (create + 2, create + 2, 1, create + 2));
    assert_eq!(revisions(&node.get(&data("a"))), (create, create + 1, 2, create + 2));

    // Deleted and written again: a new life, from version 1.
    assert_eq!(node.delete(&data("a")).number("X-Cete-Revision"), create + 3);
    node.get(&data("a")).assert_error(404);
    node.put(&data("a"), "3").assert_success();
    assert_eq!(revisions(&node.get(&data("a"))), (create + 4, create + 4, 1, create + 4));

    // The same numbers over gRPC, as the CLI prints them, beside the value.
    let json = shown(node, "a");
    assert_eq!(json["key"], "a");
    assert_eq!(json["value"], "3");
    for (field, expected) in [
        ("create_revision", create + 4),
        ("mod_revision", create + 4),
        ("version", 1),
        ("lease", 0),
        ("revision", create + 4),
    ] {
        assert_eq!(json[field].as_u64(), Some(expected), "{field} in {json}");
    }
    // A value that is not UTF-8 is shown as base64.
    node.put(&data("bin"), vec![0xff, 0x00]).assert_success();
    assert_eq!(shown(node, "bin")["value_base64"], "/wA=");
}

#[test]
fn every_node_answers_the_same_revisions_even_one_caught_up_from_a_snapshot() {
    let mut cluster = Cluster::start_with(3, &["--snapshot-every=50"]);
    let leader = cluster.leader();
    wait_for_revisions(&cluster.nodes[leader]);
    // Two writes in three reach a follower, which routes them to the leader: every one still
    // answers the revision it made, each later than the one before.
    let mut last = 0;
    for i in 0..120 {
        let node = &cluster.nodes[i % 3];
        let revision = node.put(&data(&format!("k{}", i % 7)), format!("v{i}")).number("X-Cete-Revision");
        assert!(revision > last, "write {i} through {} answered revision {revision} after {last}", node.id());
        last = revision;
    }
    assert_eq!(cluster.nodes[leader].get("/v1/snapshot").status, 200);
    let expected: Vec<_> = (0..7).map(|i| revisions(&cluster.nodes[leader].get(&data(&format!("k{i}"))))).collect();

    let joined = cluster.add_node("node4");
    cluster.wait_until_formed();
    for node in &cluster.nodes {
        let what = format!("{}'s own copy at the leader's revisions", node.id());
        eventually(&what, CATCH_UP_TIMEOUT, || {
            let seen: Vec<_> = (0..7)
                .map(|i| node.get(&format!("{}?consistency=serializable", data(&format!("k{i}")))))
                .map(|reply| (reply.status == 200).then(|| revisions(&reply)))
                .collect::<Option<_>>()?;
            (seen == expected).then_some(())
        });
    }
    assert!(cluster.nodes[joined].log().contains("installed snapshot"), "node4 did not catch up from a snapshot");
}

#[test]
fn a_grpc_set_and_delete_answer_their_revision_in_metadata() {
    let cluster = Cluster::start(1);
    let node = &cluster.nodes[0];
    wait_for_revisions(node);
    let revision = |metadata: &tonic::metadata::MetadataMap| -> u64 {
        let value = metadata.get("cete-revision").unwrap_or_else(|| panic!("no cete-revision in {metadata:?}"));
        value.to_str().expect("ASCII").parse().expect("a number")
    };
    common::block_on(async {
        let mut kvs = node.grpc_client().await;
        let set = SetRequest { key: "g".into(), value: bytes::Bytes::from_static(b"1"), ..Default::default() };
        let first = revision(kvs.set(set.clone()).await.expect("Set").metadata());
        let second = revision(kvs.set(set).await.expect("Set").metadata());
        assert_eq!(second, first + 1);
        let deleted = revision(kvs.delete(DeleteRequest { key: "g".into() }).await.expect("Delete").metadata());
        assert_eq!(deleted, second + 1);
    });
}
