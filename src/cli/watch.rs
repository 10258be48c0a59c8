//! `cete watch`: follow the node's stream of changes and print each as one JSON line,
//! `{"type":"Set","data":{"key":"1","value":"value1"}}`, until interrupted or the stream ends.

use std::process::ExitCode;

use anyhow::anyhow;
use cete_actors::cluster::node::Metadata;
use cete_actors::wire::value_json;
use cete_proto::kvs::{event, DeleteMetadataRequest, DeleteRequest, Event, SetMetadataRequest, SetRequest};
use prost::Message;
use serde::Serialize;
use serde_json::{json, Value};

use super::dial::status_error;
use super::{emit, ClientArgs};
use cete_proto::{WATCH_PREFIX_METADATA as WATCH_PREFIX_KEY, WATCH_START_REVISION_METADATA};

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Only changes to keys under this prefix (membership changes are then left out)
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    /// Replay every change from this revision on first, then follow live ones (resuming a
    /// watch: the revision after the last one seen)
    #[arg(long, value_name = "REVISION")]
    pub start_revision: Option<u64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.client.connect().await?;
    let mut request = tonic::Request::new(());
    if let Some(prefix) = args.prefix.filter(|p| !p.is_empty()) {
        let value = prefix.parse().map_err(|_| anyhow!("the prefix {prefix:?} cannot travel as gRPC metadata"))?;
        request.metadata_mut().insert(WATCH_PREFIX_KEY, value);
    }
    if let Some(revision) = args.start_revision {
        request.metadata_mut().insert(WATCH_START_REVISION_METADATA, revision.into());
    }
    let mut stream = client.watch(request).await.map_err(status_error)?.into_inner();
    // Interrupting a watch is how it normally ends. One listener for the whole loop, so an
    // interrupt that arrives while a line is being printed is not missed.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let next = tokio::select! {
            next = stream.message() => next,
            _ = &mut interrupted => return Ok(ExitCode::SUCCESS),
        };
        let next = next.map_err(|status| anyhow!("the watch stream broke: {}", status_error(status)));
        let Some(response) = next? else {
            return Ok(ExitCode::SUCCESS);
        };
        let Some(event) = response.event.clone() else {
            continue;
        };
        let mut line = serde_json::to_string(&event_line(event).with_revisions(&response))
            .map_err(|err| anyhow!("cannot encode an event as JSON: {err}"))?;
        line.push('\n');
        if !emit(line.as_bytes())? {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// One line of output; a struct so that `type` comes before `data`, and the revisions after
/// them (as `GET /v1/watch` has them), for a key's change once revisions have started.
#[derive(Serialize)]
struct WatchLine {
    r#type: &'static str,
    data: Value,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    revisions: Option<LineRevisions>,
}

#[derive(Serialize)]
struct LineRevisions {
    revision: i64,
    create_revision: i64,
    mod_revision: i64,
    version: i64,
    lease: i64,
}

impl WatchLine {
    fn with_revisions(mut self, response: &cete_proto::kvs::WatchResponse) -> Self {
        if response.revision != 0 {
            self.revisions = Some(LineRevisions {
                revision: response.revision,
                create_revision: response.create_revision,
                mod_revision: response.mod_revision,
                version: response.version,
                lease: response.lease,
            });
        }
        self
    }
}

/// `data` is decoded by its type URL, and is `null` when absent.
fn event_line(event: Event) -> WatchLine {
    let kind = event::Type::try_from(event.r#type).unwrap_or(event::Type::Unknown);
    let data = event.data.map_or(Value::Null, |any| data_json(&any.type_url, &any.value));
    WatchLine { r#type: kind.as_str_name(), data, revisions: None }
}

fn data_json(type_url: &str, bytes: &[u8]) -> Value {
    let message = type_url.rsplit('/').next().unwrap_or_default();
    let decoded = match message {
        "kvs.SetRequest" => SetRequest::decode(bytes).map(|m| value_json::key_value(&m.key, &m.value)),
        "kvs.DeleteRequest" => DeleteRequest::decode(bytes).map(|m| json!({ "key": m.key })),
        "kvs.SetMetadataRequest" => SetMetadataRequest::decode(bytes).map(|m| {
            let metadata = m.metadata.map(Metadata::from).unwrap_or_default();
            json!({ "id": m.id, "metadata": metadata })
        }),
        "kvs.DeleteMetadataRequest" => DeleteMetadataRequest::decode(bytes).map(|m| json!({ "id": m.id })),
        _ => return json!({ "type_url": type_url }),
    };
    decoded.unwrap_or_else(|err| json!({ "type_url": type_url, "error": err.to_string() }))
}

#[cfg(test)]
mod tests {
    use prost_types::Any;

    use super::*;

    fn packed(message: &str, bytes: Vec<u8>) -> Option<Any> {
        Some(Any { type_url: cete_proto::type_url(message), value: bytes })
    }

    #[test]
    fn a_set_event_is_one_json_line() {
        let set = SetRequest { key: "1".into(), value: "value1".into(), ..Default::default() };
        let event = Event { r#type: event::Type::Set as i32, data: packed("SetRequest", set.encode_to_vec()) };
        let line = serde_json::to_string(&event_line(event)).expect("encodes");
        assert_eq!(line, r#"{"type":"Set","data":{"key":"1","value":"value1"}}"#);
    }

    #[test]
    fn a_join_event_carries_the_metadata() {
        let join = SetMetadataRequest {
            id: "node2".into(),
            metadata: Some(cete_proto::kvs::Metadata { grpc_address: ":9001".into(), http_address: ":8001".into() }),
        };
        let event =
            Event { r#type: event::Type::Join as i32, data: packed("SetMetadataRequest", join.encode_to_vec()) };
        let line = event_line(event);
        assert_eq!(line.r#type, "Join");
        assert_eq!(line.data["id"], "node2");
        assert_eq!(line.data["metadata"]["grpc_address"], ":9001");
    }

    #[test]
    fn unknown_or_broken_data_does_not_stop_the_watch() {
        let event = Event { r#type: 99, data: packed("Mystery", vec![1, 2, 3]) };
        assert_eq!(event_line(event).r#type, "Unknown");
        let broken = Event { r#type: event::Type::Delete as i32, data: packed("DeleteRequest", vec![0xff]) };
        assert!(event_line(broken).data["error"].is_string());
    }
}
