//! The gRPC API (`kvs.KVS`) of one node, called the way existing Cete clients call it.
mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use cete_proto::kvs::{
    self, event, kvs_client::KvsClient, DeleteRequest, GetRequest, KeyValuePair, ScanRequest, SetRequest, WatchResponse,
};
use common::{applied_index, assert_snapshot_covers, block_on, Addresses, Node};
use prost::Message;
use tonic::{transport::Channel, Code, Streaming};

const WATCH_TIMEOUT: Duration = Duration::from_secs(10);

fn node_message(addresses: &Addresses, state: &str) -> kvs::Node {
    kvs::Node {
        raft_address: addresses.raft.clone(),
        metadata: Some(kvs::Metadata { grpc_address: addresses.grpc.clone(), http_address: addresses.http.clone() }),
        state: state.to_string(),
    }
}

async fn set(kvs: &mut KvsClient<Channel>, key: &str, value: &'static str) {
    let request =
        SetRequest { key: key.to_string(), value: Bytes::from_static(value.as_bytes()), ..Default::default() };
    kvs.set(request).await.expect("Set");
}

async fn get(kvs: &mut KvsClient<Channel>, key: &str) -> Result<Vec<u8>, tonic::Status> {
    let request = GetRequest { key: key.to_string() };
    Ok(kvs.get(request).await?.into_inner().value.to_vec())
}

#[test]
fn liveness_and_readiness() {
    let node = Node::start("node1");
    block_on(async {
        let mut kvs = node.grpc_client().await;
        let liveness = kvs.liveness_check(()).await.expect("LivenessCheck");
        assert!(liveness.into_inner().alive);
        let readiness = kvs.readiness_check(()).await.expect("ReadinessCheck");
        assert!(readiness.into_inner().ready);
    });
}

#[test]
fn node_and_cluster() {
    let node = Node::start("node1");
    block_on(async {
        let mut kvs = node.grpc_client().await;
        let me = node_message(&node.addresses, "Leader");

        let described = kvs.node(()).await.expect("Node").into_inner();
        assert_eq!(described.node, Some(me.clone()));

        let cluster = kvs.cluster(()).await.expect("Cluster").into_inner();
        let expected = kvs::Cluster { nodes: HashMap::from([("node1".to_string(), me)]), leader: "node1".to_string() };
        assert_eq!(cluster.cluster, Some(expected));
    });
}

#[test]
fn set_get_delete() {
    let node = Node::start("node1");
    block_on(async {
        let mut kvs = node.grpc_client().await;

        set(&mut kvs, "1", "value1").await;
        assert_eq!(get(&mut kvs, "1").await.expect("Get"), b"value1");

        let request = DeleteRequest { key: "1".to_string() };
        kvs.delete(request).await.expect("Delete");
        let missing = get(&mut kvs, "1").await.expect_err("Get after Delete");
        assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    });
}

#[test]
fn get_of_a_missing_key_is_not_found() {
    let node = Node::start("node1");
    block_on(async {
        let mut kvs = node.grpc_client().await;
        let missing = get(&mut kvs, "never-written").await.expect_err("Get");
        assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    });
}

#[test]
fn oversized_set_is_refused_and_the_node_keeps_serving() {
    let node = Node::start_with("node1", &["--max-value-bytes=1024"]);
    block_on(async {
        let mut kvs = node.grpc_client().await;
        let request = SetRequest { key: "big".to_string(), value: Bytes::from(vec![b'x'; 1025]), ..Default::default() };

        let refused = kvs.set(request).await.expect_err("Set over --max-value-bytes");
        assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
        let missing = get(&mut kvs, "big").await.expect_err("Get of the refused key");
        assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
        set(&mut kvs, "small", "fits").await;
    });
}

#[test]
fn http_and_grpc_share_one_store() {
    let node = Node::start("node1");
    node.put("/v1/data/a%20b", "from http").assert_success();

    block_on(async {
        let mut kvs = node.grpc_client().await;
        assert_eq!(get(&mut kvs, "a b").await.expect("Get"), b"from http");
        set(&mut kvs, "from/grpc", "value").await;
    });
    assert_eq!(node.get("/v1/data/from/grpc").text(), "value");
}

#[test]
fn scan_returns_values_and_pairs_in_key_order() {
    let node = Node::start("node1");
    block_on(async {
        let mut kvs = node.grpc_client().await;
        for (key, value) in [("user/b", "2"), ("user/c", "3"), ("other", "x"), ("user/a", "1")] {
            set(&mut kvs, key, value).await;
        }

        let request = ScanRequest { prefix: "user/".to_string(), ..Default::default() };
        let scan = kvs.scan(request).await.expect("Scan").into_inner();
        assert_eq!(scan.values, [&b"1"[..], b"2", b"3"]);
        let pairs: Vec<(&str, &[u8])> =
            scan.pairs.iter().map(|p: &KeyValuePair| (p.key.as_str(), &p.value[..])).collect();
        assert_eq!(pairs, [("user/a", &b"1"[..]), ("user/b", b"2"), ("user/c", b"3")]);
        assert_eq!((scan.count, scan.more), (3, false));
    });
}

#[test]
fn snapshot_and_metrics() {
    let node = Node::start("node1");
    block_on(async { set(&mut node.grpc_client().await, "1", "value1").await });
    // The blocking HTTP client that reads the metrics stays outside the async blocks.
    let applied = applied_index(&node);
    block_on(async { node.grpc_client().await.snapshot(()).await.expect("Snapshot") });
    assert_snapshot_covers(&node, applied);
    block_on(async {
        let mut kvs = node.grpc_client().await;
        assert_eq!(get(&mut kvs, "1").await.expect("Get"), b"value1");

        let metrics = kvs.metrics(()).await.expect("Metrics").into_inner().metrics;
        let text = String::from_utf8_lossy(&metrics);
        assert!(text.contains("# TYPE"), "not Prometheus text:\n{text}");
    });
}

/// The next event of type `wanted`, skipping others; fails after [`WATCH_TIMEOUT`].
async fn next_event(events: &mut Streaming<WatchResponse>, wanted: event::Type) -> kvs::Event {
    let receive = async {
        loop {
            let message = events.message().await.expect("Watch stream error");
            let response = message.expect("Watch stream ended");
            let event = response.event.expect("WatchResponse without an event");
            if event.r#type == wanted as i32 {
                return event;
            }
        }
    };
    tokio::time::timeout(WATCH_TIMEOUT, receive)
        .await
        .unwrap_or_else(|_| panic!("no {wanted:?} event within {WATCH_TIMEOUT:?}"))
}

fn unpack<M: Message + Default>(event: &kvs::Event, message: &str) -> M {
    let data = event.data.as_ref().expect("event without data");
    assert_eq!(data.type_url, format!("type.googleapis.com/kvs.{message}"));
    M::decode(data.value.as_slice()).expect("decode the event data")
}

#[test]
fn watch_streams_sets_and_deletes() {
    let node = Node::start("node1");
    block_on(async {
        let mut kvs = node.grpc_client().await;
        let mut events = kvs.watch(()).await.expect("Watch").into_inner();

        set(&mut kvs, "watched", "value1").await;
        let event = next_event(&mut events, event::Type::Set).await;
        let expected =
            SetRequest { key: "watched".to_string(), value: Bytes::from_static(b"value1"), ..Default::default() };
        assert_eq!(unpack::<SetRequest>(&event, "SetRequest"), expected);

        let request = DeleteRequest { key: "watched".to_string() };
        kvs.delete(request.clone()).await.expect("Delete");
        let event = next_event(&mut events, event::Type::Delete).await;
        assert_eq!(unpack::<DeleteRequest>(&event, "DeleteRequest"), request);
    });
}
