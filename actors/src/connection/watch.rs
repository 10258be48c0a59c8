//! Watch streams: one [`WatchActor`] per client stream, fed by the StoreActor with every change
//! it applies, forwarding the ones under the stream's prefix to a bounded channel that the
//! front door turns into a gRPC or HTTP stream.
//!
//! Backpressure is explicit: a consumer that falls behind its buffer is dropped with an
//! error, so a slow or vanished client can neither stall applies nor grow memory.

use actix::prelude::*;
use tokio::sync::mpsc;

use crate::error::{CeteError, CeteResult};
pub use crate::store::changes::{Change, WatchEvent};
use crate::store::{ReadHistory, StoreActor, Subscribe};

/// How many changes a watch stream may hold for its client before it is dropped.
pub const WATCH_BUFFER: usize = 4096;

/// How many changes a page of the history holds when a watch replays it.
const REPLAY_PAGE: usize = 512;

type ClientStream = mpsc::Receiver<Result<Change, CeteError>>;

/// One watch stream.
pub struct WatchActor {
    prefix: String,
    client: mpsc::Sender<Result<Change, CeteError>>,
    /// Live changes before this revision are not the client's (it started the watch later).
    from: Option<u64>,
    /// While the history is replayed: the live changes that came meanwhile, sent after it.
    held: Option<Vec<Change>>,
}

impl WatchActor {
    /// Starts a watcher subscribed to `store`; the receiver is the client's stream. With
    /// `from`, every change since that revision is replayed from the history first, then the
    /// live ones follow, none twice and none missing; a revision the history no longer holds
    /// is refused ([`CeteError::Compacted`]) before anything is streamed.
    pub async fn open(store: Addr<StoreActor>, prefix: String, from: Option<u64>) -> CeteResult<ClientStream> {
        // One slot more than changes may take: the last one is for the error that tells a
        // dropped client why.
        let (client, stream) = mpsc::channel(WATCH_BUFFER + 1);
        let watcher = WatchActor { prefix, client, from, held: from.map(|_| Vec::new()) }.start();
        let now = store.send(Subscribe { watcher: watcher.clone().recipient(), from }).await??;
        if let (Some(from), Some(now)) = (from, now) {
            watcher.do_send(Replay { store, from, upto: now });
        }
        Ok(stream)
    }

    fn drop_slow_client(&mut self, ctx: &mut Context<Self>) {
        let _ = self.client.try_send(Err(CeteError::Unavailable(
            "watch stream dropped: the client did not keep up with the changes".into(),
        )));
        ctx.stop();
    }

    /// Sends live changes to the client, without waiting: one that cannot keep up is dropped.
    fn forward<'c>(&mut self, changes: impl Iterator<Item = &'c Change>, ctx: &mut Context<Self>) {
        for change in changes {
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

    /// Sends the live changes held during the replay, paced by the client as the replay was
    /// (it may still be reading the replay's last changes), holding those that come meanwhile;
    /// once none are held, live changes go straight to the client.
    fn send_held(&mut self, ctx: &mut Context<Self>) {
        let held = self.held.as_mut().map(std::mem::take).unwrap_or_default();
        if held.is_empty() {
            self.held = None;
            return;
        }
        let client = self.client.clone();
        let send = async move {
            for change in held {
                if client.send(Ok(change)).await.is_err() {
                    return false;
                }
            }
            true
        };
        ctx.spawn(send.into_actor(self).map(|sent, watcher, ctx| match sent {
            true => watcher.send_held(ctx),
            false => ctx.stop(),
        }));
    }

    /// Whether a live change is one for this stream.
    fn wants(&self, change: &Change) -> bool {
        change.matches(&self.prefix) && !matches!((change.revision(), self.from), (Some(r), Some(from)) if r < from)
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
        let wanted: Vec<&Change> = changes.iter().filter(|c| self.wants(c)).collect();
        match &mut self.held {
            Some(held) => {
                held.extend(wanted.into_iter().cloned());
                if held.len() > WATCH_BUFFER {
                    self.drop_slow_client(ctx);
                }
            }
            None => self.forward(wanted.into_iter(), ctx),
        }
    }
}

/// Replay the history from revision `from` up to `upto` (the store's revision when the watch
/// subscribed: every change after it comes live), then send what was held meanwhile.
#[derive(Message)]
#[rtype(result = "()")]
struct Replay {
    store: Addr<StoreActor>,
    from: u64,
    upto: u64,
}

impl Handler<Replay> for WatchActor {
    type Result = ();

    fn handle(&mut self, msg: Replay, ctx: &mut Self::Context) {
        let client = self.client.clone();
        let prefix = self.prefix.clone();
        // Paced by the client: a page is read once the one before it has been taken.
        let replay = async move {
            let mut from = msg.from;
            while from <= msg.upto {
                let page = msg.store.send(ReadHistory { from, prefix: prefix.clone(), limit: REPLAY_PAGE }).await;
                let page = match page.map_err(CeteError::from).and_then(|page| page) {
                    Ok(page) => page,
                    Err(e) => return Err(e),
                };
                for change in page.changes.into_iter().filter(|c| c.revision().is_some_and(|r| r <= msg.upto)) {
                    if client.send(Ok(change)).await.is_err() {
                        return Ok(false);
                    }
                }
                match page.next {
                    Some(next) => from = next,
                    None => break,
                }
            }
            Ok(true)
        };
        ctx.spawn(replay.into_actor(self).map(|replayed, watcher, ctx| match replayed {
            Ok(true) => watcher.send_held(ctx),
            Ok(false) => ctx.stop(),
            Err(e) => {
                let _ = watcher.client.try_send(Err(e));
                ctx.stop();
            }
        }));
    }
}

use crate::command::KeyRevisions;

impl Change {
    /// The gRPC shape: an Event whose `data` packs the request that made the change.
    pub fn to_proto(&self) -> cete_proto::kvs::WatchResponse {
        use cete_proto::kvs::{event, DeleteMetadataRequest, DeleteRequest, Event, SetMetadataRequest, SetRequest};
        use prost::Message;
        fn pack(name: &str, message: impl Message) -> prost_types::Any {
            prost_types::Any { type_url: cete_proto::type_url(name), value: message.encode_to_vec() }
        }
        let (kind, data) = match self {
            Change::Set { key, value, revisions } => {
                // The lease as the write set it (0, not encoded, when none: the Go shape).
                let lease = revisions.map_or(0, |r| r.lease) as i64;
                (event::Type::Set, pack("SetRequest", SetRequest { key: key.clone(), value: value.clone(), lease }))
            }
            Change::Delete { key, .. } => {
                (event::Type::Delete, pack("DeleteRequest", DeleteRequest { key: key.clone() }))
            }
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
        let revisions = self.key_revisions().unwrap_or_default();
        cete_proto::kvs::WatchResponse {
            event: Some(Event { r#type: kind as i32, data: Some(data) }),
            revision: self.revision().unwrap_or(0) as i64,
            create_revision: revisions.create_revision as i64,
            mod_revision: revisions.mod_revision as i64,
            version: revisions.version as i64,
            lease: revisions.lease as i64,
        }
    }

    /// The key's revisions after the change: for a delete, only its mod revision (the
    /// delete's).
    fn key_revisions(&self) -> Option<KeyRevisions> {
        match self {
            Change::Set { revisions, .. } => *revisions,
            Change::Delete { revision: Some(revision), .. } => {
                Some(KeyRevisions { mod_revision: *revision, ..KeyRevisions::default() })
            }
            _ => None,
        }
    }

    /// The JSON-lines shape (`cete watch`, `GET /v1/watch`): `{"type":"Set","data":{...}}`,
    /// and for a key's change (once revisions have started) its `revision` and the key's
    /// `create_revision`, `mod_revision`, `version` and `lease` after it. A value that is not
    /// UTF-8 goes as `"value_base64"` ([`crate::wire::value_json`]).
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = self.to_json_without_revisions();
        if let (Some(revision), Some(key)) = (self.revision(), self.key_revisions()) {
            json["revision"] = revision.into();
            json["create_revision"] = key.create_revision.into();
            json["mod_revision"] = key.mod_revision.into();
            json["version"] = key.version.into();
            json["lease"] = key.lease.into();
        }
        json
    }

    fn to_json_without_revisions(&self) -> serde_json::Value {
        match self {
            Change::Set { key, value, .. } => {
                serde_json::json!({"type": "Set", "data": crate::wire::value_json::key_value(key, value)})
            }
            Change::Delete { key, .. } => serde_json::json!({"type": "Delete", "data": {"key": key}}),
            Change::Join { id, metadata } => serde_json::json!({
                "type": "Join",
                "data": {"id": id, "metadata": metadata},
            }),
            Change::Leave { id } => serde_json::json!({"type": "Leave", "data": {"id": id}}),
        }
    }
}
