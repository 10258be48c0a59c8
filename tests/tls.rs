//! TLS everywhere, as Cete's README sets it up: one self-signed certificate made with openssl,
//! three nodes started with it, then `cete ... --certificate-file=cert.pem
//! --common-name=localhost` and `curl --cacert cert.pem https://localhost:PORT/...`. Also a
//! CA-signed certificate per node, and the ways a client must be refused.
mod common;

use std::time::{Duration, Instant};

use cete_proto::kvs::{kvs_client::KvsClient, GetRequest};
use common::{
    block_on, cli, curl, eventually, free_port, local, temp_dir, try_http_within, Addresses, CertificateAuthority,
    Cluster, Node, SelfSigned,
};
use serde_json::Value;

const CURL_TIMEOUT: Duration = Duration::from_secs(10);

fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
}

/// `--certificate-file=... --key-file=... --common-name=localhost`, as in the README.
fn tls_flags(cert: &SelfSigned) -> Vec<String> {
    vec![
        format!("--certificate-file={}", cert.cert.display()),
        format!("--key-file={}", cert.key.display()),
        "--common-name=localhost".to_string(),
    ]
}

fn as_strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

/// `:PORT` of a node's gRPC address, as the README writes addresses.
fn colon_port(address: &str) -> String {
    format!(":{}", address.rsplit(':').next().expect("a port"))
}

/// `cete ARGS --certificate-file=<trusted> --common-name=<name>`; the output, whatever happened.
fn cli_tls(args: &[&str], trusted: &std::path::Path, common_name: &str) -> std::process::Output {
    let mut all: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    all.push(format!("--certificate-file={}", trusted.display()));
    all.push(format!("--common-name={common_name}"));
    cli(&as_strs(&all))
}

fn cli_tls_ok(args: &[&str], trusted: &std::path::Path, common_name: &str) -> String {
    let output = cli_tls(args, trusted, common_name);
    assert!(output.status.success(), "`cete {}` over TLS failed: {output:?}", args.join(" "));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn assert_three_nodes(cluster_json: &Value, members: &[Node]) {
    let nodes = cluster_json["cluster"]["nodes"].as_object().expect("nodes");
    assert_eq!(nodes.len(), 3, "{cluster_json}");
    for node in members {
        assert_eq!(nodes[&node.id()]["metadata"]["grpc_address"], node.addresses.grpc.as_str(), "{cluster_json}");
    }
    let leader = cluster_json["cluster"]["leader"].as_str().expect("a leader");
    assert_eq!(nodes[leader]["state"], "Leader", "{cluster_json}");
}

#[test]
fn readme_walkthrough_with_a_self_signed_certificate_on_three_nodes() {
    // openssl req -x509 -nodes -newkey rsa:4096 -keyout key.pem -out cert.pem -days 365 -subj '/CN=localhost'
    let cert = SelfSigned::new("localhost");
    let cluster = Cluster::start_https(3, &as_strs(&tls_flags(&cert)), &cert.cert);
    let node1 = &cluster.nodes[0];

    // cete cluster --grpc-address=:9000 --certificate-file=./cert.pem --common-name=localhost | jq .
    let grpc1 = format!("--grpc-address={}", colon_port(&node1.addresses.grpc));
    let printed = parse_json(&cli_tls_ok(&["cluster", &grpc1], &cert.cert, "localhost"));
    assert_three_nodes(&printed, &cluster.nodes);

    // curl -X GET https://localhost:8000/v1/cluster --cacert ./cert.pem | jq .
    let reply = curl("GET", &node1.url("/v1/cluster"), b"", &cert.cert, CURL_TIMEOUT).expect("curl --cacert cert.pem");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_three_nodes(&reply.json(), &cluster.nodes);

    // Set on one node, get on the others, over TLS: CLI (gRPC) and HTTPS.
    cli_tls_ok(&["set", "1", "value1", &grpc1], &cert.cert, "localhost");
    for node in &cluster.nodes {
        let got = cli_tls_ok(&["get", "1", "--grpc-address", &node.addresses.grpc], &cert.cert, "localhost");
        assert_eq!(got, "value1", "on {}", node.id());
    }
    cluster.nodes[2].put("/v1/data/2", "value2").assert_success();
    for node in &cluster.nodes {
        let got = node.get("/v1/data/2");
        assert_eq!((got.status, got.text()), (200, "value2".to_string()), "on {}", node.id());
    }
}

/// The Go README's TLS walkthrough, flag for flag (its ports replaced by free ones): node1 is
/// started with `--peer-grpc-address` naming its own `--grpc-address`, which means "form the
/// cluster", as it did in Go; node2 and node3 join it; the CLI and curl reach it over TLS.
#[test]
fn the_go_readme_tls_walkthrough_works_verbatim() {
    // openssl req -x509 -nodes -newkey rsa:4096 -keyout ./etc/cete-key.pem -out ./etc/cete-cert.pem -days 365 -subj '/CN=localhost'
    let cert = SelfSigned::new("localhost");
    let grpc1 = format!(":{}", free_port());
    let mut nodes = Vec::new();
    for n in 1..=3 {
        // ./bin/cete start --id=nodeN --raft-address=:700N --grpc-address=:900N --http-address=:800N
        //   --data-directory=/tmp/cete/nodeN --peer-grpc-address=:9000 --certificate-file=./etc/cert.pem
        //   --key-file=./etc/key.pem --common-name=localhost
        let grpc = if n == 1 { grpc1.clone() } else { format!(":{}", free_port()) };
        let addresses = Addresses { raft: format!(":{}", free_port()), grpc, http: format!(":{}", free_port()) };
        let dir = temp_dir();
        let mut args = vec![
            format!("--id=node{n}"),
            format!("--raft-address={}", addresses.raft),
            format!("--grpc-address={}", addresses.grpc),
            format!("--http-address={}", addresses.http),
            format!("--data-directory={}", dir.path().join(format!("node{n}")).display()),
            format!("--peer-grpc-address={grpc1}"),
        ];
        args.extend(tls_flags(&cert));
        let mut node = Node::spawn_https(dir, args, addresses, &cert.cert);
        node.try_wait_ready().unwrap_or_else(|why| panic!("node{n} of the walkthrough is not ready: {why}"));
        nodes.push(node);
    }

    // ./bin/cete cluster --grpc-address=:9000 --certificate-file=./cert.pem --common-name=localhost | jq .
    let grpc_flag = format!("--grpc-address={grpc1}");
    let printed = eventually("`cete cluster` to list the three nodes", Duration::from_secs(15), || {
        let printed = parse_json(&cli_tls_ok(&["cluster", &grpc_flag], &cert.cert, "localhost"));
        let listed = printed["cluster"]["nodes"].as_object().map(|nodes| nodes.len());
        (listed == Some(3)).then_some(printed)
    });
    assert_three_nodes(&printed, &nodes);
    assert_eq!(printed["cluster"]["leader"], "node1", "{printed}");

    // curl -X GET https://localhost:8000/v1/cluster --cacert ./cert.pem | jq .
    let reply = curl("GET", &nodes[0].url("/v1/cluster"), b"", &cert.cert, CURL_TIMEOUT).expect("curl --cacert");
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_three_nodes(&reply.json(), &nodes);

    cli_tls_ok(&["set", "1", "value1", &grpc_flag], &cert.cert, "localhost");
    for node in &nodes {
        let got = cli_tls_ok(&["get", "1", "--grpc-address", &node.addresses.grpc], &cert.cert, "localhost");
        assert_eq!(got, "value1", "on {}", node.id());
    }
}

#[test]
fn plaintext_clients_get_no_data_from_a_tls_node() {
    let cert = SelfSigned::new("localhost");
    let node = Node::start_https("node1", &as_strs(&tls_flags(&cert)), &cert.cert);
    node.put("/v1/data/secret", "s3cret").assert_success();

    // A plaintext gRPC client.
    let plaintext_grpc = block_on(async {
        let mut client = KvsClient::connect(format!("http://{}", node.addresses.grpc)).await?;
        Ok::<_, Box<dyn std::error::Error>>(client.get(GetRequest { key: "secret".into() }).await?.into_inner().value)
    });
    assert!(plaintext_grpc.is_err(), "plaintext gRPC got an answer: {plaintext_grpc:?}");

    // http:// instead of https://.
    let url = format!("http://{}/v1/data/secret", node.addresses.http);
    match try_http_within(reqwest::Method::GET, &url, Vec::new(), Duration::from_secs(5)) {
        Err(_) => {}
        Ok(reply) => {
            assert_ne!(reply.status, 200, "plain HTTP got an answer: {reply:?}");
            assert!(!reply.text().contains("s3cret"), "plain HTTP got the data: {reply:?}");
        }
    }
}

#[test]
fn the_cli_without_a_certificate_file_says_the_node_wants_tls() {
    let cert = SelfSigned::new("localhost");
    let node = Node::start_https("node1", &as_strs(&tls_flags(&cert)), &cert.cert);
    // Every time, not only when the connection happens to fail one way rather than another.
    for attempt in 1..=10 {
        let output = cli(&["get", "secret", "--grpc-address", &node.addresses.grpc]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && output.stdout.is_empty(), "{output:?}");
        assert!(stderr.contains("TLS") || stderr.contains("certificate"), "attempt {attempt}, unclear error: {stderr}");
    }
}

#[test]
fn a_different_certificate_is_refused_with_a_clear_message() {
    let cert = SelfSigned::new("localhost");
    let impostor_trust = SelfSigned::new("localhost");
    let node = Node::start_https("node1", &as_strs(&tls_flags(&cert)), &cert.cert);
    node.put("/v1/data/secret", "s3cret").assert_success();

    let output = cli_tls(&["get", "secret", "--grpc-address", &node.addresses.grpc], &impostor_trust.cert, "localhost");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && output.stdout.is_empty(), "{output:?}");
    assert!(stderr.contains("certificate"), "the refusal does not mention the certificate: {stderr}");

    // curl: (60) SSL certificate problem
    let refused = curl("GET", &node.url("/v1/data/secret"), b"", &impostor_trust.cert, CURL_TIMEOUT);
    let error = refused.expect_err("curl trusted another certificate");
    assert_eq!(error.exit_code, Some(60), "{error:?}");
}

#[test]
fn a_wrong_common_name_is_refused() {
    let cert = SelfSigned::new("localhost");
    let node = Node::start_https("node1", &as_strs(&tls_flags(&cert)), &cert.cert);

    let output = cli_tls(&["cluster", "--grpc-address", &node.addresses.grpc], &cert.cert, "wrong.example");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && output.stdout.is_empty(), "{output:?}");
    assert!(stderr.contains("wrong.example") && stderr.contains("certificate"), "unclear refusal: {stderr}");
}

#[test]
fn a_node_with_another_certificate_cannot_join() {
    let cert = SelfSigned::new("localhost");
    let node1 = Node::start_https("node1", &as_strs(&tls_flags(&cert)), &cert.cert);
    let other = SelfSigned::new("localhost");

    // node2 trusts only its own certificate: it must refuse to talk to node1.
    let dir = temp_dir();
    let addresses = Addresses::free();
    let mut args = vec!["--id=node2".to_string()];
    args.extend(common::address_args(&addresses, dir.path()));
    args.extend(tls_flags(&other));
    args.push(format!("--peer-grpc-address={}", node1.addresses.grpc));
    let node2 = Node::spawn(dir, args, Vec::new(), addresses);
    let started = Instant::now();
    let why = eventually("node2 to log why it cannot join", Duration::from_secs(15), || {
        node2.log().lines().find(|line| line.contains("certificate")).map(str::to_string)
    });
    eprintln!("node2 after {:?}: {why}", started.elapsed());

    let cluster = node1.get("/v1/cluster").json();
    let members = cluster["cluster"]["nodes"].as_object().expect("nodes");
    assert_eq!(members.keys().collect::<Vec<_>>(), ["node1"], "{cluster}");
}

#[test]
fn ca_signed_certificates_with_subject_alt_names() {
    let ca = CertificateAuthority::new("CeteTestCA");
    // Each node its own certificate, named node1.. in the CN and localhost only in the SANs.
    let cluster = Cluster::start_https_each(3, &ca.cert, &|id| {
        let issued = ca.issue(id, id, "DNS:localhost,IP:127.0.0.1");
        vec![
            format!("--certificate-file={}", issued.chain.display()),
            format!("--key-file={}", issued.key.display()),
            "--common-name=localhost".to_string(),
        ]
    });
    let grpc1 = format!("--grpc-address={}", cluster.nodes[0].addresses.grpc);

    let printed = parse_json(&cli_tls_ok(&["cluster", &grpc1], &ca.cert, "localhost"));
    assert_three_nodes(&printed, &cluster.nodes);
    let reply =
        curl("GET", &cluster.nodes[1].url("/v1/cluster"), b"", &ca.cert, CURL_TIMEOUT).expect("curl --cacert ca");
    assert_three_nodes(&reply.json(), &cluster.nodes);

    cli_tls_ok(&["set", "ca", "signed", &grpc1], &ca.cert, "localhost");
    for node in &cluster.nodes {
        let got = cli_tls_ok(&["get", "ca", "--grpc-address", &node.addresses.grpc], &ca.cert, "localhost");
        assert_eq!(got, "signed", "on {}", node.id());
    }

    // With subjectAltNames, the CN is not a name the certificate is valid for.
    let output = cli_tls(&["cluster", &grpc1], &ca.cert, "node1");
    assert!(!output.status.success(), "accepted a name only in the CN: {output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("certificate"), "{output:?}");
}

#[test]
fn a_missing_certificate_file_is_named() {
    let missing = local(free_port());
    let output = cli(&["node", "--grpc-address", &missing, "--certificate-file=/nonexistent/cert.pem"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{output:?}");
    assert!(stderr.contains("/nonexistent/cert.pem"), "the error does not name the file: {stderr}");
}
