//! Following a node's watch streams from a test: gRPC `Watch` and `GET /v1/watch` (NDJSON).

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use cete_proto::kvs::kvs_client::KvsClient;
use cete_proto::kvs::{self, event, WatchResponse};
use prost::Message;
use tonic::transport::Channel;
use tonic::Streaming;

use super::Node;

/// gRPC metadata key restricting a Watch to keys under a prefix.
pub const WATCH_PREFIX_KEY: &str = "cete-watch-prefix";

/// A gRPC Watch on `node`, restricted to `prefix` when given. The client is returned too: it
/// keeps the connection the stream runs on.
pub async fn grpc_watch(node: &Node, prefix: Option<&str>) -> (KvsClient<Channel>, Streaming<WatchResponse>) {
    let mut client = node.grpc_client().await;
    let mut request = tonic::Request::new(());
    if let Some(prefix) = prefix {
        request.metadata_mut().insert(WATCH_PREFIX_KEY, prefix.parse().expect("ASCII prefix"));
    }
    let stream = client.watch(request).await.expect("Watch").into_inner();
    (client, stream)
}

/// The next event on `events` within `timeout`, skipping those `skip` says to skip.
pub async fn next_event(
    events: &mut Streaming<WatchResponse>,
    timeout: Duration,
    skip: impl Fn(&kvs::Event) -> bool,
) -> kvs::Event {
    let receive = async {
        loop {
            let message = events.message().await.expect("Watch stream error");
            let event = message.expect("Watch stream ended").event.expect("WatchResponse without an event");
            if !skip(&event) {
                return event;
            }
        }
    };
    tokio::time::timeout(timeout, receive).await.unwrap_or_else(|_| panic!("no watch event within {timeout:?}"))
}

/// Whether `event` is a membership change (Join, Leave) rather than a change of keys.
pub fn is_membership(event: &kvs::Event) -> bool {
    [event::Type::Join as i32, event::Type::Leave as i32].contains(&event.r#type)
}

/// The request packed in `event`, checked to be the `kvs.<message>` it should be.
pub fn unpack<M: Message + Default>(event: &kvs::Event, message: &str) -> M {
    let data = event.data.as_ref().expect("event without data");
    assert_eq!(data.type_url, format!("type.googleapis.com/kvs.{message}"));
    M::decode(data.value.as_slice()).expect("decode the event data")
}

/// A watch line as the Go server gave it, `type` and `data`: without the revisions Cete adds
/// once the cluster has started them (whether it has when the line comes is a race the tests
/// that check only the old shape do not wait for).
pub fn old_shape(line: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({"type": line["type"], "data": line["data"]})
}

/// `GET /v1/watch?...` on a node, read line by line on a thread of its own.
pub struct NdjsonWatch {
    lines: mpsc::Receiver<serde_json::Value>,
}

impl NdjsonWatch {
    /// Opens the stream (`query` like `prefix=user/`, or empty) and waits for its headers.
    pub fn open(node: &Node, query: &str) -> NdjsonWatch {
        let response = NdjsonWatch::connect(node, query);
        assert_eq!(response.status().as_u16(), 200, "GET /v1/watch?{query}");
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(response).lines() {
                let Ok(line) = line else { break };
                let json = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"));
                if sender.send(json).is_err() {
                    break;
                }
            }
        });
        NdjsonWatch { lines }
    }

    /// The response with its body unread: a watcher that does not keep up.
    pub fn connect(node: &Node, query: &str) -> reqwest::blocking::Response {
        // No overall timeout: the stream lasts as long as the test wants it.
        let client = reqwest::blocking::Client::builder().no_proxy().timeout(None).build().expect("HTTP client");
        client.get(node.url(&format!("/v1/watch?{query}"))).send().expect("GET /v1/watch")
    }

    /// The next line within `timeout`; `None` when the stream ended or nothing came.
    pub fn next(&self, timeout: Duration) -> Option<serde_json::Value> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// The next line that is not a membership change, failing the test after `timeout`.
    pub fn next_change(&self, timeout: Duration) -> serde_json::Value {
        loop {
            let line = self.next(timeout).unwrap_or_else(|| panic!("no NDJSON watch line within {timeout:?}"));
            if line["type"] != "Join" && line["type"] != "Leave" {
                return line;
            }
        }
    }
}
