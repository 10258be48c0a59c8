//! Read consistency as a client asks for it on gRPC, with the `cete-consistency` metadata
//! (and on HTTP with `?consistency=`): `serializable` answers at once from the node's own copy,
//! stale as it may be; `linearizable` (the default) never answers from a stale copy, and waits
//! for a leader to confirm it; any other value is refused.
mod common;

use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cete_proto::kvs::{kvs_client::KvsClient, GetRequest, ScanRequest, SetRequest};
use cete_proto::CONSISTENCY_METADATA;
use common::{block_on, data, eventually, serializable_get, Cluster, Node, CATCH_UP_TIMEOUT, FAILOVER_DEADLINE};
use tonic::transport::Channel;
use tonic::Code;

/// Generous bound on "at once" for a read from the node's own copy.
const AT_ONCE: Duration = Duration::from_secs(5);
/// Generous bound on the 503 / UNAVAILABLE promised after 10 s without a leader.
const NO_LEADER_ANSWER_WITHIN: Duration = Duration::from_secs(30);

fn with_consistency<T>(message: T, consistency: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(consistency) = consistency {
        let value = consistency.parse().expect("an ASCII metadata value");
        request.metadata_mut().insert(CONSISTENCY_METADATA, value);
    }
    request.set_timeout(NO_LEADER_ANSWER_WITHIN);
    request
}

async fn get(kvs: &mut KvsClient<Channel>, key: &str, consistency: Option<&str>) -> Result<Bytes, tonic::Status> {
    let request = with_consistency(GetRequest { key: key.into() }, consistency);
    Ok(kvs.get(request).await?.into_inner().value)
}

/// A gRPC Get on `node` from a fresh connection; `None` while it does not answer yet.
fn try_get(node: &Node, key: &str, consistency: Option<&str>) -> Option<Result<Bytes, tonic::Status>> {
    block_on(async {
        let mut kvs = KvsClient::connect(format!("http://{}", node.addresses.grpc)).await.ok()?;
        Some(get(&mut kvs, key, consistency).await)
    })
}

/// The follower's copy is made stale on purpose: it is stopped, the others acknowledge a
/// newer value, then they freeze and it comes back alone on its data. Its own copy says
/// "old"; a linearizable read there must never say so.
#[test]
fn serializable_reads_answer_from_the_node_s_own_copy_and_linearizable_ones_never_do() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.leader();
    let (reader, other) = (cluster.followers()[0], cluster.followers()[1]);
    block_on(async {
        let mut kvs = cluster.nodes[leader].grpc_client().await;
        kvs.set(SetRequest { key: "key".into(), value: Bytes::from_static(b"old"), ..Default::default() })
            .await
            .expect("Set old");
    });
    let copied = || serializable_get(&cluster.nodes[reader], "key").filter(|value| value == "old");
    eventually("the old value in the reader's own copy", CATCH_UP_TIMEOUT, copied);

    cluster.nodes[reader].stop();
    block_on(async {
        let mut kvs = cluster.nodes[leader].grpc_client().await;
        kvs.set(SetRequest { key: "key".into(), value: Bytes::from_static(b"new"), ..Default::default() })
            .await
            .expect("Set new");
    });
    cluster.nodes[leader].pause();
    cluster.nodes[other].pause();
    cluster.nodes[reader].relaunch();
    let reader_node = &cluster.nodes[reader];

    // `cete-consistency: serializable`: the stale copy, at once.
    let first = eventually("a serializable gRPC Get on the lone reader", FAILOVER_DEADLINE, || {
        try_get(reader_node, "key", Some("serializable"))
    });
    assert_eq!(first.expect("a serializable Get"), "old", "not the reader's own copy");
    let asked = Instant::now();
    let again = try_get(reader_node, "key", Some("serializable")).expect("the reader answers");
    assert_eq!((again.expect("a serializable Get"), asked.elapsed() < AT_ONCE), ("old".into(), true));
    let scanned = block_on(async {
        let mut kvs = reader_node.grpc_client().await;
        let request = with_consistency(ScanRequest { prefix: "k".into(), ..Default::default() }, Some("serializable"));
        kvs.scan(request).await.expect("a serializable Scan").into_inner().values
    });
    assert_eq!(scanned, ["old"]);
    let over_http = reader_node.get(&format!("{}?consistency=serializable", data("key")));
    assert_eq!((over_http.status, over_http.text()), (200, "old".to_string()));

    // An unknown consistency is bad input, not a default.
    let refused = try_get(reader_node, "key", Some("eventual")).expect("the reader answers");
    assert_eq!(refused.map_err(|s| s.code()), Err(Code::InvalidArgument));

    // Linearizable, asked for and by default, over gRPC and HTTP: no leader can confirm the
    // read, so it is refused after 10 s — never answered from the stale copy.
    let (explicit, default, http) = thread::scope(|scope| {
        let explicit = scope.spawn(|| try_get(reader_node, "key", Some("linearizable")));
        let default = scope.spawn(|| try_get(reader_node, "key", None));
        let http = scope.spawn(|| reader_node.try_request("GET", &data("key"), Vec::new(), NO_LEADER_ANSWER_WITHIN));
        (explicit.join().expect("explicit"), default.join().expect("default"), http.join().expect("http"))
    });
    for (what, answer) in [("cete-consistency: linearizable", explicit), ("no cete-consistency", default)] {
        let status =
            answer.expect("the reader answers").expect_err(&format!("a linearizable Get ({what}) with no leader"));
        assert_eq!(status.code(), Code::Unavailable, "{what}: {status:?}");
    }
    http.expect("an HTTP answer").assert_error(503);

    // The others come back: a leader confirms the read, and it sees the acknowledged value.
    cluster.nodes[leader].resume();
    cluster.nodes[other].resume();
    let confirmed = eventually("a linearizable Get on the reader once a leader is back", FAILOVER_DEADLINE, || {
        try_get(&cluster.nodes[reader], "key", Some("linearizable")).and_then(Result::ok)
    });
    assert_eq!(confirmed, "new");
}
