//! Transactions over gRPC: the `Txn` rpc and `cete txn [FILE]`, which reads the JSON a user
//! writes (from a file or stdin) and prints the answer as JSON. Compares that hold run the
//! success list and ones that do not the failure list, both exit 0; every write of one
//! transaction makes one revision; a transaction the node refuses, or a file that is not one,
//! exits 1 saying why; through a follower it runs on the leader.
mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use bytes::Bytes;
use cete_proto::kvs::{self, txn_op, txn_result};
use common::{assert_cli_success, block_on, cli, cli_with_stdin, data, temp_dir, wait_for_revisions, Cluster, Node};
use serde_json::{json, Value};
use tonic::Code;

/// Writes `json` to a file in `dir` and gives its path.
fn txn_file(dir: &Path, name: &str, json: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, json.to_string()).expect("write the transaction file");
    path
}

fn txn_cli(node: &Node, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut all = vec!["txn"];
    all.extend_from_slice(args);
    all.extend(["--grpc-address", node.addresses.grpc.as_str()]);
    match stdin {
        Some(input) => cli_with_stdin(&all, input),
        None => cli(&all),
    }
}

/// The answer `cete txn` printed, after checking it exited 0.
fn answered(output: &Output) -> Value {
    assert_cli_success(&["txn"], output);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {output:?}"))
}

/// The one line a failed `cete txn` printed, after checking it exited 1 and printed nothing else.
fn refused(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(said.lines().count(), 1, "one line: {said:?}");
    said
}

/// A key's revisions as the answer of a get or a scan has them, with its value.
fn pair(node: &Node, key: &str, value: &str) -> Value {
    let read = node.get(&data(key));
    read.assert_success();
    json!({
        "key": key,
        "value": value,
        "create_revision": read.number("X-Cete-Create-Revision"),
        "mod_revision": read.number("X-Cete-Mod-Revision"),
        "version": read.number("X-Cete-Version"),
        "lease": 0,
    })
}

/// A pair as a get that found it answers it.
fn found(mut pair: Value) -> Value {
    pair["found"] = true.into();
    pair
}

#[test]
fn cete_txn_runs_the_success_list_or_the_failure_list_from_a_file_or_stdin() {
    let cluster = Cluster::start(1);
    let node = &cluster.nodes[0];
    wait_for_revisions(node);
    for (key, value) in [("config/a", "1"), ("config/b", "2"), ("tmp/1", "x"), ("tmp/2", "y")] {
        node.put(&data(key), value).assert_success();
    }
    let a = node.get(&data("config/a"));
    let (a_created, before) = (a.number("X-Cete-Create-Revision"), a.number("X-Cete-Revision"));

    // Only while config/a is as read: rewrite it, store bytes that are not UTF-8, clear tmp/,
    // and read back what the transaction wrote.
    let update = json!({
        "compare": [
            {"key": "config/a", "target": "mod_revision", "op": "=", "value": a.number("X-Cete-Mod-Revision")},
        ],
        "success": [
            {"put": {"key": "config/a", "value": "3"}},
            {"put": {"key": "bin", "value_base64": "/wA="}},
            {"delete": {"prefix": "tmp/"}},
            {"get": {"key": "bin"}},
            {"scan": {"prefix": "config/"}},
        ],
        "failure": [{"get": {"key": "config/a"}}],
    });
    let dir = temp_dir();
    let file = txn_file(dir.path(), "update.json", &update);
    let ran = answered(&txn_cli(node, &[file.to_str().expect("a UTF-8 path")], None));
    let revision = before + 1;
    let a_now = json!({
        "key": "config/a", "value": "3",
        "create_revision": a_created, "mod_revision": revision, "version": 2, "lease": 0,
    });
    let bin = json!({
        "key": "bin", "value_base64": "/wA=",
        "create_revision": revision, "mod_revision": revision, "version": 1, "lease": 0,
    });
    assert_eq!(
        ran,
        json!({
            "succeeded": true,
            "revision": revision,
            "results": [
                {"put": {"key": "config/a"}},
                {"put": {"key": "bin"}},
                {"delete": {"deleted": 2}},
                {"get": found(bin)},
                {"scan": {"pairs": [a_now, pair(node, "config/b", "2")], "more": false, "count": 2}},
            ],
        }),
        "every write of one transaction at one revision, and its reads see them"
    );
    let stored = node.get(&data("bin"));
    assert_eq!((stored.body.as_slice(), stored.number("X-Cete-Revision")), (&b"\xff\x00"[..], revision));
    node.get(&data("tmp/1")).assert_error(404);

    // The same again from stdin: config/a has changed since, so the failure list runs. That
    // is an answer too (exit 0), and writes nothing.
    let text = update.to_string();
    for args in [&[][..], &["-"][..]] {
        let again = answered(&txn_cli(node, args, Some(text.as_bytes())));
        assert_eq!(
            again,
            json!({"succeeded": false, "revision": revision, "results": [{"get": found(pair(node, "config/a", "3"))}]}),
            "cete txn {args:?} < update.json"
        );
    }
    let missing = json!({"success": [{"get": {"key": "nobody"}}]});
    let absent = answered(&txn_cli(node, &[], Some(missing.to_string().as_bytes())));
    assert_eq!(absent["results"], json!([{"get": {"key": "nobody", "found": false}}]));
}

#[test]
fn a_transaction_that_is_not_one_or_that_the_node_refuses_exits_1_saying_why() {
    let node = Node::start("node1");
    wait_for_revisions(&node);
    let dir = temp_dir();

    let malformed = dir.path().join("malformed.json");
    std::fs::write(&malformed, r#"{"success": [{"put": {"key": "a", "value": "1"}}"#).expect("write the file");
    let malformed = malformed.to_str().expect("a UTF-8 path");
    let said = refused(&txn_cli(&node, &[malformed], None));
    assert!(said.starts_with(&format!("error: {malformed}: ")) && said.contains("JSON"), "{said}");
    let said = refused(&txn_cli(&node, &[], Some(br#"{"success": [{"rename": {"key": "a"}}]}"#)));
    assert!(said.starts_with("error: stdin: ") && said.contains("rename"), "{said}");
    let missing = dir.path().join("missing.json");
    let said = refused(&txn_cli(&node, &[missing.to_str().expect("a UTF-8 path")], None));
    assert!(said.contains("cannot read") && said.contains("missing.json"), "{said}");

    // Which of two writes of one key would win is not for a client to guess: refused whole.
    let twice = json!({"success": [{"put": {"key": "a", "value": "1"}}, {"put": {"key": "a", "value": "2"}}]});
    let file = txn_file(dir.path(), "twice.json", &twice);
    let said = refused(&txn_cli(&node, &[file.to_str().expect("a UTF-8 path")], None));
    assert!(said.contains("twice"), "{said}");
    node.get(&data("a")).assert_error(404);
    let put = |value: &'static [u8]| kvs::TxnOp {
        op: Some(txn_op::Op::Put(kvs::TxnPut { key: "a".into(), value: Bytes::from_static(value), lease: 0 })),
    };
    block_on(async {
        let mut kvs = node.grpc_client().await;
        let twice = kvs::TxnRequest { success: vec![put(b"1"), put(b"2")], ..Default::default() };
        let status = kvs.txn(twice).await.expect_err("a key written twice");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let empty = kvs::TxnRequest { success: vec![kvs::TxnOp { op: None }], ..Default::default() };
        let status = kvs.txn(empty).await.expect_err("an operation of no kind");
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, "success operation 0: an operation sets one of put, delete, get, scan")
        );
    });
    node.get(&data("a")).assert_error(404);
}

#[test]
fn the_txn_rpc_answers_its_revision_in_metadata_too() {
    let node = Node::start("node1");
    wait_for_revisions(&node);
    let put = kvs::TxnOp {
        op: Some(txn_op::Op::Put(kvs::TxnPut { key: "k".into(), value: Bytes::from_static(b"v"), lease: 0 })),
    };
    let get = kvs::TxnOp { op: Some(txn_op::Op::Get(kvs::TxnGet { key: "k".into() })) };
    block_on(async {
        let mut kvs = node.grpc_client().await;
        let response = kvs.txn(kvs::TxnRequest { success: vec![put, get], ..Default::default() }).await.expect("Txn");
        let metadata = response.metadata().get(cete_proto::REVISION_METADATA).expect("cete-revision");
        let revision: i64 = metadata.to_str().expect("ASCII").parse().expect("a number");
        let answer = response.into_inner();
        assert!(answer.succeeded && answer.revision == revision, "{answer:?}");
        let Some(txn_result::Result::Get(got)) = &answer.results[1].result else { panic!("not a get: {answer:?}") };
        let kv = got.kv.as_ref().expect("the key as written");
        assert!(got.found && kv.value == "v" && kv.mod_revision == revision && kv.version == 1, "{got:?}");
    });
}

#[test]
fn a_txn_through_a_follower_runs_on_the_leader() {
    let cluster = Cluster::start(3);
    let leader = cluster.leader();
    wait_for_revisions(&cluster.nodes[leader]);
    let follower = &cluster.nodes[cluster.followers()[0]];

    // A lock: taken only while nobody holds it.
    let take = json!({
        "compare": [{"key": "lock", "target": "version", "op": "=", "value": 0}],
        "success": [{"put": {"key": "lock", "value": follower.id()}}],
        "failure": [{"get": {"key": "lock"}}],
    })
    .to_string();
    let first = answered(&txn_cli(follower, &[], Some(take.as_bytes())));
    assert_eq!((&first["succeeded"], &first["results"]), (&json!(true), &json!([{"put": {"key": "lock"}}])), "{first}");
    let held = cluster.nodes[leader].get(&data("lock"));
    assert_eq!(
        (held.text(), held.number("X-Cete-Mod-Revision")),
        (follower.id(), first["revision"].as_u64().expect("a revision"))
    );
    let second = answered(&txn_cli(follower, &[], Some(take.as_bytes())));
    assert_eq!(second["succeeded"], false, "{second}");
    assert_eq!(second["results"][0]["get"]["value"], follower.id(), "{second}");
}
