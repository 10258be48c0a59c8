//! The README walkthrough through the `cete` client commands, against a real node.
mod common;

use std::time::Duration;

use common::{
    applied_index, assert_cli_success, assert_snapshot_covers, cli, cli_ok, cli_with_stdin, eventually, free_port,
    local, node_json, BackgroundCli, Node,
};
use serde_json::{json, Value};

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

#[test]
fn node_cluster_and_healthcheck_print_json() {
    let node = Node::start("node1");
    let grpc = node.addresses.grpc.as_str();

    let described = parse_json(&cli_ok(&["node", "--grpc-address", grpc]));
    assert_eq!(described, json!({"node": node_json(&node.addresses, "Leader")}));

    let cluster = parse_json(&cli_ok(&["cluster", "--grpc-address", grpc]));
    assert_eq!(cluster["cluster"]["leader"], "node1");
    assert_eq!(cluster["cluster"]["nodes"]["node1"], node_json(&node.addresses, "Leader"));

    let health = parse_json(&cli_ok(&["healthcheck", "--grpc-address", grpc]));
    assert_eq!(health, json!({"alive": true, "ready": true}));
}

#[test]
fn set_get_delete_walkthrough() {
    let node = Node::start("node1");
    let grpc = node.addresses.grpc.as_str();

    cli_ok(&["set", "1", "value1", "--grpc-address", grpc]);
    // No newline after the value: stdout is a file here, not a terminal.
    assert_eq!(cli_ok(&["get", "1", "--grpc-address", grpc]), "value1");
    cli_ok(&["delete", "1", "--grpc-address", grpc]);

    let missing = cli(&["get", "1", "--grpc-address", grpc]);
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert!(missing.stdout.is_empty(), "{missing:?}");
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("key not found"), "stderr: {stderr}");
}

#[test]
fn grpc_addr_alias_and_colon_port_address() {
    let node = Node::start("node1");
    let port = node.addresses.grpc.rsplit(':').next().expect("a port");
    let colon_port = format!(":{port}");

    cli_ok(&["set", "--grpc-addr", &node.addresses.grpc, "1", "value1"]);
    // `:PORT` means localhost when dialled, as in the README.
    let got = cli_ok(&["get", "1", &format!("--grpc-address={colon_port}")]);
    assert_eq!(got, "value1");
}

#[test]
fn set_reads_the_value_from_stdin_when_omitted() {
    let node = Node::start("node1");
    let grpc = node.addresses.grpc.as_str();

    let args = ["set", "piped", "--grpc-address", grpc];
    assert_cli_success(&args, &cli_with_stdin(&args, b"value from stdin"));
    let got = cli_ok(&["get", "piped", "--grpc-address", grpc]);
    assert_eq!(got, "value from stdin");
}

#[test]
fn scan_prints_one_json_line_per_pair_in_key_order() {
    let node = Node::start("node1");
    let grpc = node.addresses.grpc.as_str();
    for (key, value) in [("user/b", "2"), ("other", "x"), ("user/a", "1")] {
        cli_ok(&["set", key, value, "--grpc-address", grpc]);
    }

    let scanned = cli_ok(&["scan", "user/", "--grpc-address", grpc]);
    let lines: Vec<Value> = scanned.lines().map(parse_json).collect();
    let expected = [json!({"key": "user/a", "value": "1"}), json!({"key": "user/b", "value": "2"})];
    assert_eq!(lines, expected, "scan output:\n{scanned}");
}

#[test]
fn watch_prints_each_change_as_a_json_line() {
    let node = Node::start("node1");
    let grpc = node.addresses.grpc.as_str();
    let watch = BackgroundCli::spawn(&["watch", "--grpc-address", grpc]);
    let printed = |kind: &str| {
        let lines: Vec<Value> = watch.stdout().lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
        lines.into_iter().find(|line| line["type"] == kind)
    };

    // The watch may not be subscribed yet when the first write lands: write until it shows.
    let set = eventually("Set line from `cete watch`", Duration::from_secs(10), || {
        cli_ok(&["set", "watched", "value1", "--grpc-address", grpc]);
        printed("Set")
    });
    assert_eq!(common::old_shape(&set), json!({"type": "Set", "data": {"key": "watched", "value": "value1"}}));

    cli_ok(&["delete", "watched", "--grpc-address", grpc]);
    let delete = eventually("Delete line from `cete watch`", Duration::from_secs(10), || printed("Delete"));
    assert_eq!(
        common::old_shape(&delete),
        json!({"type": "Delete", "data": {"key": "watched"}}),
        "stderr: {}",
        watch.stderr()
    );
}

#[test]
fn snapshot_and_metrics() {
    let node = Node::start("node1");
    let grpc = node.addresses.grpc.as_str();

    cli_ok(&["set", "1", "value1", "--grpc-address", grpc]);
    let applied = applied_index(&node);
    cli_ok(&["snapshot", "--grpc-address", grpc]);
    assert_snapshot_covers(&node, applied);
    let metrics = cli_ok(&["metrics", "--grpc-address", grpc]);
    assert!(metrics.contains("# TYPE"), "not Prometheus text:\n{metrics}");
}

#[test]
fn version_prints_the_crate_version() {
    let version = cli_ok(&["version"]);
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "version output: {version:?}");
}

#[test]
fn dead_address_is_a_clear_error_not_a_panic() {
    let dead = local(free_port());

    let output = cli(&["get", "1", "--grpc-address", &dead]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "succeeded against {dead}");
    assert!(!stderr.contains("panicked"), "the CLI panicked:\n{stderr}");
    assert!(stderr.contains(&dead), "the error does not name the address {dead}:\n{stderr}");
}
