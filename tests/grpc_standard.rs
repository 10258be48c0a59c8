//! The standard gRPC services on `--grpc-address`, checked with clients nobody on the project
//! wrote: grpcio's health-checking and reflection packages (tests/python/, installed by
//! `make test` into a virtualenv of its own). Health is SERVING only while the node is ready;
//! reflection describes `kvs.KVS` well enough to call it without the .proto files.
mod common;

use std::process::Command;

use common::{data, eventually, wait_for_revisions, Cluster, Node, FORM_TIMEOUT};
use serde_json::Value;

/// The virtualenv's Python, or None (and a loud notice) where it was not installed: `make
/// test` installs it and sets `CETE_TEST_PYTHON`, and then a missing one is a failure.
fn python() -> Option<String> {
    match std::env::var("CETE_TEST_PYTHON") {
        Ok(path) if std::path::Path::new(&path).exists() => Some(path),
        Ok(path) => panic!("CETE_TEST_PYTHON={path} does not exist: run `make pydeps`"),
        Err(_) => {
            eprintln!(
                "\n######## SKIPPED: the Python gRPC clients are not installed; `make test` installs them \
                 (tests/python/requirements.txt) ########\n"
            );
            None
        }
    }
}

fn run(python: &str, args: &[&str]) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/grpc_standard.py");
    let output = Command::new(python).arg(script).args(args).output().expect("run the Python client");
    assert!(
        output.status.success(),
        "grpc_standard.py {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("its JSON")
}

fn health(python: &str, node: &Node) -> Value {
    run(python, &["health", &node.addresses.grpc])
}

#[test]
fn health_is_serving_only_while_the_node_is_ready() {
    let Some(python) = python() else { return };
    let mut cluster = Cluster::start(3);
    let serving = serde_json::json!({"": "SERVING", "kvs.KVS": "SERVING"});
    for node in &cluster.nodes {
        eventually("SERVING", FORM_TIMEOUT, || (health(&python, node) == serving).then_some(()));
    }
    // Two of three gone: the last cannot serve (no quorum, no leader), and says so.
    let last = cluster.followers()[0];
    for i in 0..3 {
        if i != last {
            cluster.nodes[i].kill9();
        }
    }
    let not_serving = serde_json::json!({"": "NOT_SERVING", "kvs.KVS": "NOT_SERVING"});
    eventually("NOT_SERVING", FORM_TIMEOUT, || (health(&python, &cluster.nodes[last]) == not_serving).then_some(()));
    assert_eq!(cluster.nodes[last].get("/v1/readiness_check").status, 503, "the probes agree");
}

#[test]
fn reflection_describes_kvs_well_enough_to_call_it() {
    let Some(python) = python() else { return };
    let node = Node::start("node1");
    wait_for_revisions(&node);
    node.put(&data("reflected"), "from a client without the .proto").assert_success();
    let found = run(&python, &["reflect", &node.addresses.grpc, "reflected"]);
    let services: Vec<&str> = found["services"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(services.contains(&"kvs.KVS") && services.contains(&"grpc.health.v1.Health"), "{found}");
    assert!(!services.contains(&"cete.raft.Raft"), "peers' service is not served here: {found}");
    let methods: Vec<&str> = found["methods"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for method in ["Get", "Set", "Scan", "Txn", "Watch", "LeaseGrant", "LeaseKeepAlive"] {
        assert!(methods.contains(&method), "{method} missing: {found}");
    }
    assert_eq!(found["value"], "from a client without the .proto");
    assert!(found["mod_revision"].as_u64().is_some_and(|r| r > 0), "{found}");
}
