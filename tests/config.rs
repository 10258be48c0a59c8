//! Configuration of `cete start`, observed from outside: flag > `CETE_*` environment > YAML
//! file (`--config-file`) > default, and a bad file refused before anything starts.
mod common;

use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use common::{
    address_args, answers_http, block_on, free_port, grpc_client, local, node_json, temp_dir, Addresses, Node,
};
use serde_json::json;

fn write_config(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("write the config file");
    path
}

fn config_flag(path: &Path) -> String {
    format!("--config-file={}", path.display())
}

/// Asserts a value of exactly `limit` bytes is stored and one byte more is refused.
fn assert_max_value_bytes(node: &Node, limit: usize) {
    node.put("/v1/data/at-limit", vec![b'x'; limit]).assert_success();
    node.put("/v1/data/over-limit", vec![b'x'; limit + 1]).assert_error(413);
}

#[test]
fn flag_beats_env_beats_yaml_for_addresses() {
    let dir = temp_dir();
    let (in_yaml, in_env, in_flag) = (Addresses::free(), Addresses::free(), Addresses::free());
    let yaml = format!(
        "id: yamlnode\nraft_address: \"{}\"\ngrpc_address: \"{}\"\nhttp_address: \"{}\"\n\
         data_directory: \"{}\"\n",
        in_yaml.raft,
        in_yaml.grpc,
        in_yaml.http,
        dir.path().join("data").display()
    );
    let config = write_config(dir.path(), "cete.yaml", &yaml);
    let envs = vec![
        ("CETE_GRPC_ADDRESS".to_string(), in_env.grpc.clone()),
        ("CETE_HTTP_ADDRESS".to_string(), in_env.http.clone()),
    ];
    let args = vec![config_flag(&config), format!("--http-address={}", in_flag.http)];
    let expected = Addresses { raft: in_yaml.raft.clone(), grpc: in_env.grpc.clone(), http: in_flag.http.clone() };

    let mut node = Node::spawn(dir, args, envs, expected.clone());
    node.wait_ready();

    assert_eq!(node.get("/v1/node").json(), json!({"node": node_json(&expected, "Leader")}));
    assert_eq!(node.get("/v1/cluster").json()["cluster"]["leader"], "yamlnode");
    assert!(!answers_http(&in_yaml.http), "HTTP answers on the YAML address");
    assert!(!answers_http(&in_env.http), "HTTP answers on the env address");
    block_on(async {
        let mut kvs = grpc_client(&in_env.grpc).await;
        let liveness = kvs.liveness_check(()).await.expect("gRPC on the env address");
        assert!(liveness.into_inner().alive);
    });
}

#[test]
fn max_value_bytes_flag_beats_env_beats_yaml() {
    let config_dir = temp_dir();
    let config = write_config(config_dir.path(), "cete.yaml", "max_value_bytes: 1000\n");
    let config = config_flag(&config);
    let env = [("CETE_MAX_VALUE_BYTES", "2000")];

    let yaml_only = Node::start_with("node1", &[&config]);
    assert_max_value_bytes(&yaml_only, 1000);

    let env_over_yaml = Node::start_with_env("node1", &[&config], &env);
    assert_max_value_bytes(&env_over_yaml, 2000);

    let flag_over_env = Node::start_with_env("node1", &[&config, "--max-value-bytes=3000"], &env);
    assert_max_value_bytes(&flag_over_env, 3000);
}

#[test]
fn defaults_apply_when_not_overridden() {
    // Only the listen addresses and the data directory are given: their defaults are shared by
    // the whole machine. The id, log level and log destination are left to their defaults.
    let dir = temp_dir();
    let addresses = Addresses::free();
    let args = address_args(&addresses, dir.path());
    let mut node = Node::spawn(dir, args, Vec::new(), addresses);
    node.wait_ready();

    let cluster = node.get("/v1/cluster").json();
    assert_eq!(cluster["cluster"]["leader"], "node1");
    assert_eq!(cluster["cluster"]["nodes"]["node1"], node_json(&node.addresses, "Leader"));
    assert!(!node.log().trim().is_empty(), "nothing logged to stderr at the default INFO level");
}

#[test]
fn colon_port_listens_on_all_interfaces_and_is_reported_as_written() {
    let dir = temp_dir();
    let (raft, grpc, http) = (free_port(), free_port(), free_port());
    let written = Addresses { raft: format!(":{raft}"), grpc: format!(":{grpc}"), http: format!(":{http}") };
    let dialled = Addresses { raft: local(raft), grpc: local(grpc), http: local(http) };
    let args = address_args(&written, dir.path());
    let mut node = Node::spawn(dir, args, Vec::new(), dialled);
    node.wait_ready();

    assert_eq!(node.get("/v1/node").json(), json!({"node": node_json(&written, "Leader")}));
}

/// Runs `cete start` with `config_flag` and waits for it to give up.
fn start_expecting_refusal(config_flag: String) -> (ExitStatus, String) {
    let dir = temp_dir();
    let addresses = Addresses::free();
    let mut args = address_args(&addresses, dir.path());
    args.push(config_flag);
    let mut node = Node::spawn(dir, args, Vec::new(), addresses);
    let status = node.wait_exit();
    (status, node.log())
}

fn assert_refused(status: ExitStatus, output: &str, must_mention: &str) {
    assert!(!status.success(), "`cete start` accepted it:\n{output}");
    assert!(!output.contains("panicked"), "`cete start` panicked:\n{output}");
    assert!(output.contains(must_mention), "the message does not mention {must_mention:?}:\n{output}");
}

#[test]
fn malformed_yaml_is_refused_with_a_clear_message() {
    let config_dir = temp_dir();
    let config = write_config(config_dir.path(), "broken.yaml", "id: [node1\nlog_level: \"\n");

    let (status, output) = start_expecting_refusal(config_flag(&config));
    assert_refused(status, &output, "broken.yaml");
}

#[test]
fn unknown_config_key_is_refused_and_named() {
    let config_dir = temp_dir();
    let config = write_config(config_dir.path(), "cete.yaml", "max_vaule_bytes: 10\n");

    let (status, output) = start_expecting_refusal(config_flag(&config));
    assert_refused(status, &output, "max_vaule_bytes");
}

#[test]
fn missing_config_file_is_refused() {
    let config_dir = temp_dir();
    let absent = config_dir.path().join("absent.yaml");

    let (status, output) = start_expecting_refusal(config_flag(&absent));
    assert_refused(status, &output, "absent.yaml");
}
