//! The HTTP API of one node, as the README walkthrough drives it with curl.
mod common;

use common::{applied_index, assert_snapshot_covers, node_json, Node};
use serde_json::json;

#[test]
fn liveness_and_readiness() {
    let node = Node::start("node1");

    let alive = node.get("/v1/liveness_check");
    assert_eq!(alive.status, 200);
    assert_eq!(alive.json(), json!({"alive": true}));

    let ready = node.get("/v1/readiness_check");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json(), json!({"ready": true}));
}

#[test]
fn node_describes_itself_as_leader() {
    let node = Node::start("node1");

    let reply = node.get("/v1/node");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json(), json!({"node": node_json(&node.addresses, "Leader")}));
}

#[test]
fn cluster_of_one_names_its_leader() {
    let node = Node::start("node1");

    let reply = node.get("/v1/cluster");
    assert_eq!(reply.status, 200);
    let expected = json!({"cluster": {
        "nodes": {"node1": node_json(&node.addresses, "Leader")},
        "leader": "node1",
    }});
    assert_eq!(reply.json(), expected);
}

#[test]
fn put_get_delete() {
    let node = Node::start("node1");

    node.put("/v1/data/1", "value1").assert_success();
    let got = node.get("/v1/data/1");
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "value1");
    assert!(got.content_type.starts_with("text/plain"), "detected Content-Type of \"value1\": {:?}", got.content_type);

    node.delete("/v1/data/1").assert_success();
    node.get("/v1/data/1").assert_error(404);
}

#[test]
fn binary_value_keeps_its_bytes_and_content_type() {
    let node = Node::start("node1");
    // A JPEG header followed by every byte value: nothing may be re-encoded on the way.
    let photo: Vec<u8> = [0xFF, 0xD8, 0xFF, 0xE0].into_iter().chain(0..=255u8).chain((0..=255u8).rev()).collect();

    node.put_typed("/v1/data/2", photo.clone(), "image/jpeg").assert_success();
    let got = node.get("/v1/data/2");
    assert_eq!(got.status, 200);
    assert_eq!(got.content_type, "image/jpeg");
    assert!(got.body == photo, "the value came back altered");
}

#[test]
fn content_type_is_detected_when_none_was_given() {
    let node = Node::start("node1");
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0".to_vec();
    let opaque: Vec<u8> = (0..=255u8).collect();

    node.put("/v1/data/png", png.clone()).assert_success();
    node.put("/v1/data/opaque", opaque.clone()).assert_success();

    let got_png = node.get("/v1/data/png");
    assert_eq!((got_png.content_type.as_str(), &got_png.body), ("image/png", &png));
    let got_opaque = node.get("/v1/data/opaque");
    assert_eq!(got_opaque.content_type, "application/octet-stream");
    assert!(got_opaque.body == opaque, "the value came back altered");
}

#[test]
fn keys_may_contain_slashes() {
    let node = Node::start("node1");

    node.put("/v1/data/users/42/name", "ada").assert_success();
    assert_eq!(node.get("/v1/data/users/42/name").text(), "ada");
    node.get("/v1/data/users/42").assert_error(404);

    node.delete("/v1/data/users/42/name").assert_success();
    node.get("/v1/data/users/42/name").assert_error(404);
}

#[test]
fn empty_value_is_stored_not_missing() {
    let node = Node::start("node1");

    node.put("/v1/data/empty", "").assert_success();
    let got = node.get("/v1/data/empty");
    assert_eq!((got.status, got.body.len()), (200, 0), "{got:?}");
}

#[test]
fn missing_key_is_404_and_empty_key_is_400() {
    let node = Node::start("node1");

    node.get("/v1/data/never-written").assert_error(404);
    node.put("/v1/data/", "value").assert_error(400);
    node.get("/v1/data/").assert_error(400);
}

#[test]
fn oversized_value_is_413_and_the_node_keeps_serving() {
    let node = Node::start_with("node1", &["--max-value-bytes=1024"]);

    node.put("/v1/data/fits", vec![b'x'; 1024]).assert_success();
    node.put("/v1/data/big", vec![b'x'; 1025]).assert_error(413);
    node.put("/v1/data/huge", vec![b'x'; 100 * 1024]).assert_error(413);

    node.get("/v1/data/big").assert_error(404);
    assert_eq!(node.get("/v1/data/fits").body.len(), 1024);
    node.put("/v1/data/after", "still serving").assert_success();
    assert_eq!(node.get("/v1/data/after").text(), "still serving");
}

#[test]
fn multi_megabyte_value_fits_under_the_default_limit() {
    let node = Node::start("node1");
    let value: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();

    node.put("/v1/data/large", value.clone()).assert_success();
    let got = node.get("/v1/data/large");
    assert_eq!(got.status, 200);
    assert!(got.body == value, "the 4 MiB value came back altered");
}

#[test]
fn unknown_route_is_404_json() {
    let node = Node::start("node1");

    node.get("/v1/no_such_thing").assert_error(404);
    node.get("/nowhere").assert_error(404);
}

#[test]
fn snapshot_on_demand_keeps_the_data() {
    let node = Node::start("node1");
    node.put("/v1/data/1", "value1").assert_success();
    let applied = applied_index(&node);
    assert!(applied > 0, "nothing applied before the snapshot");

    assert_eq!(node.get("/v1/snapshot").status, 200);
    assert_snapshot_covers(&node, applied);
    assert_eq!(node.get("/v1/data/1").text(), "value1");
}

#[test]
fn metrics_are_prometheus_text() {
    let node = Node::start("node1");

    let metrics = node.get("/v1/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.content_type.starts_with("text/plain"), "metrics Content-Type {:?}", metrics.content_type);
    assert!(metrics.text().contains("# TYPE"), "not Prometheus text:\n{}", metrics.text());
}

/// Every route answers a method it does not take with 405 and a JSON error, as the README's
/// error table says — not actix's bare 405 or a 404.
#[test]
fn a_method_a_route_does_not_take_is_405_json_on_every_route() {
    let node = Node::start("node1");
    let wrong: [(&str, &[&str]); 10] = [
        ("/v1/liveness_check", &["POST", "PUT", "DELETE"]),
        ("/v1/readiness_check", &["POST", "PUT", "DELETE"]),
        ("/v1/node", &["POST", "PUT", "DELETE"]),
        ("/v1/cluster", &["POST", "PUT", "DELETE"]),
        ("/v1/cluster/node2", &["GET", "POST", "PATCH"]),
        ("/v1/snapshot", &["POST", "PUT", "DELETE"]),
        ("/v1/data/key", &["POST", "PATCH"]),
        ("/v1/scan", &["POST", "PUT", "DELETE"]),
        ("/v1/watch", &["POST", "PUT", "DELETE"]),
        ("/v1/metrics", &["POST", "PUT", "DELETE"]),
    ];
    for (path, methods) in wrong {
        for method in methods {
            let reply = node
                .try_request(method, path, Vec::new(), std::time::Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            assert_eq!(reply.status, 405, "{method} {path}: {reply:?}");
            reply.assert_error(405);
            let error = reply.json()["error"].as_str().unwrap_or_default().to_string();
            assert!(error.contains(method) && error.contains(path), "{method} {path}: the error does not say: {error}");
        }
    }
    // Nothing was written, joined or removed by any of them.
    node.get("/v1/data/key").assert_error(404);
    assert_eq!(node.get("/v1/cluster").json()["cluster"]["nodes"].as_object().map(|n| n.len()), Some(1));
}
