//! Watch streams: one [`WatchActor`] per client stream, fed by the StoreActor with every change
//! it applies, forwarding the ones under the stream's prefix to a bounded channel that the
//! front door turns into a gRPC or HTTP stream.
//!
//! Backpressure is explicit: a consumer that falls behind its buffer is dropped with an
//! error, so a slow or vanished client can neither stall applies nor grow memory.

use actix::prelude::*;
use tokio::sync::mpsc;

use crate::error::CeteError;
pub use crate::store::changes::{Change, WatchEvent};
use crate::store::{StoreActor, Subscribe};

/// How many changes a watch stream may hold for its client before it is dropped.
pub const WATCH_BUFFER: usize = 4096;

/// One watch stream.
pub struct WatchActor {
    prefix: String,
    client: mpsc::Sender<Result<Change, CeteError>>,
}

impl WatchActor {
    /// Starts a watcher subscribed to `store`; the receiver is the client's stream.
    pub fn spawn(store: &Addr<StoreActor>, prefix: String) -> mpsc::Receiver<Result<Change, CeteError>> {
        // One slot more than changes may take: the last one is for the error that tells a
        // dropped client why.
        let (client, stream) = mpsc::channel(WATCH_BUFFER + 1);
        let watcher = WatchActor { prefix, client }.start();
        store.do_send(Subscribe(watcher.recipient()));
        stream
    }

    fn drop_slow_client(&mut self, ctx: &mut Context<Self>) {
        let _ = self.client.try_send(Err(CeteError::Unavailable(
            "watch stream dropped: the client did not keep up with the changes".into(),
        )));
        ctx.stop();
    }
}

impl Actor for WatchActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(256);
    }
}

impl Handler<WatchEvent> for WatchActor {
    type Result = ();

    fn handle(&mut self, event: WatchEvent, ctx: &mut Self::Context) {
        let changes = match event {
            WatchEvent::Changes(changes) => changes,
            WatchEvent::Overflowed => return self.drop_slow_client(ctx),
        };
        for change in changes.iter().filter(|c| c.matches(&self.prefix)) {
            if self.client.capacity() <= 1 {
                return self.drop_slow_client(ctx);
            }
            match self.client.try_send(Ok(change.clone())) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => return self.drop_slow_client(ctx),
                Err(mpsc::error::TrySendError::Closed(_)) => return ctx.stop(),
            }
        }
    }
}

impl Change {
    /// The gRPC shape: an Event whose `data` packs the request that made the change.
    pub fn to_proto(&self) -> cete_proto::kvs::WatchResponse {
        use cete_proto::kvs::{event, DeleteMetadataRequest, DeleteRequest, Event, SetMetadataRequest, SetRequest};
        use prost::Message;
        fn pack(name: &str, message: impl Message) -> prost_types::Any {
            prost_types::Any { type_url: cete_proto::type_url(name), value: message.encode_to_vec() }
        }
        let (kind, data) = match self {
            Change::Set { key, value } => {
                (event::Type::Set, pack("SetRequest", SetRequest { key: key.clone(), value: value.clone() }))
            }
            Change::Delete { key } => (event::Type::Delete, pack("DeleteRequest", DeleteRequest { key: key.clone() })),
            Change::Join { id, metadata } => (
                event::Type::Join,
                pack(
                    "SetMetadataRequest",
                    SetMetadataRequest { id: id.clone(), metadata: Some(metadata.clone().into()) },
                ),
            ),
            Change::Leave { id } => {
                (event::Type::Leave, pack("DeleteMetadataRequest", DeleteMetadataRequest { id: id.clone() }))
            }
        };
        cete_proto::kvs::WatchResponse { event: Some(Event { r#type: kind as i32, data: Some(data) }) }
    }

    /// The JSON-lines shape (`cete watch`, `GET /v1/watch`): `{"type":"Set","data":{...}}`.
    /// A value that is not UTF-8 goes as `"value_base64"` ([`crate::wire::value_json`]).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Change::Set { key, value } => {
                serde_json::json!({"type": "Set", "data": crate::wire::value_json::key_value(key, value)})
            }
            Change::Delete { key } => serde_json::json!({"type": "Delete", "data": {"key": key}}),
            Change::Join { id, metadata } => serde_json::json!({
                "type": "Join",
                "data": {"id": id, "metadata": metadata},
            }),
            Change::Leave { id } => serde_json::json!({"type": "Leave", "data": {"id": id}}),
        }
    }
}
