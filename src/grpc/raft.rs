//! `cete.raft.Raft`: Raft RPCs from peers, decoded and delivered to the RaftActor (the
//! result, success or Raft's own error, is encoded back for the caller to interpret), and
//! requests peers route to this node, handed to the peer connection's actor.

use actix::Addr;
use cete_actors::cluster::peer::{ForwardReply, Forwarded};
use cete_actors::command::{decode, encode};
use cete_actors::connection::HandleForwarded;
use cete_actors::raft::network::SnapshotHeader;
use cete_actors::raft::peer_rpc::{
    DeliverAppendEntries, DeliverAppendStream, DeliverPreVote, DeliverSnapshot, DeliverTransferLeader, DeliverVote,
};
use cete_actors::raft::RaftActor;
use cete_actors::wire::identity::ClusterIdentity;
use cete_proto::raft::{raft_server::Raft, RaftPayload};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status, Streaming};

use crate::stopping::Stopping;

pub struct RaftService {
    raft: Addr<RaftActor>,
    /// This node's cluster: a request from a node of another is refused.
    identity: ClusterIdentity,
    /// Ends the peers' long-lived streams when this node stops (see [`Stopping`]).
    stopping: Stopping,
}

impl RaftService {
    pub fn new(raft: Addr<RaftActor>, identity: ClusterIdentity, stopping: Stopping) -> Self {
        RaftService { raft, identity, stopping }
    }

    /// Refuses a request from a node of another cluster ([`ClusterIdentity::admit`]).
    fn admit<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.identity.admit(request.metadata())
    }

    /// A stream of replies that ends when this node is stopping, telling the peer why.
    fn replies(&self, replies: impl futures::Stream<Item = Result<RaftPayload, Status>> + Send + 'static) -> Replies {
        Box::pin(self.stopping.cut_off(replies, Err(Status::unavailable("the node is stopping"))))
    }

    async fn deliver<Req, M, R>(
        &self,
        payload: RaftPayload,
        wrap: fn(Req) -> M,
    ) -> Result<Response<RaftPayload>, Status>
    where
        Req: DeserializeOwned,
        M: actix::Message<Result = R> + Send + 'static,
        R: Serialize + Send + 'static,
        RaftActor: actix::Handler<M>,
    {
        not_cut_off()?;
        deliver(&self.raft, payload, wrap).await.map(Response::new)
    }
}

/// Refuses Raft traffic while the `raft-isolate` failpoint cuts this node off (tests only).
fn not_cut_off() -> Result<(), Status> {
    match cete_actors::failpoints::isolated() {
        true => Err(Status::unavailable("cut off by the raft-isolate failpoint")),
        false => Ok(()),
    }
}

/// Decodes a Raft RPC, hands it to the RaftActor, and encodes the RaftActor's answer.
async fn deliver<Req, M, R>(
    raft: &Addr<RaftActor>,
    payload: RaftPayload,
    wrap: fn(Req) -> M,
) -> Result<RaftPayload, Status>
where
    Req: DeserializeOwned,
    M: actix::Message<Result = R> + Send + 'static,
    R: Serialize + Send + 'static,
    RaftActor: actix::Handler<M>,
{
    let request: Req =
        decode(&payload.data).map_err(|e| Status::invalid_argument(format!("undecodable raft rpc: {e}")))?;
    let reply = raft.send(wrap(request)).await.map_err(|e| Status::unavailable(e.to_string()))?;
    let data = encode(&reply).map_err(|e| Status::internal(format!("cannot encode raft reply: {e}")))?;
    Ok(RaftPayload { data: data.into() })
}

/// How many routed requests of one peer link are served at once (writes wait for commit).
const MAX_FORWARDS_SERVED_AT_ONCE: usize = 256;

type Replies = std::pin::Pin<Box<dyn futures::Stream<Item = Result<RaftPayload, Status>> + Send>>;

#[tonic::async_trait]
impl Raft for RaftService {
    async fn append_entries(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.admit(&request)?;
        self.deliver(request.into_inner(), DeliverAppendEntries).await
    }

    type AppendEntriesStreamStream = Replies;

    /// A leader's replication stream, handed to Raft whole: requests are taken as they
    /// arrive, and answered in order.
    async fn append_entries_stream(
        &self,
        request: Request<Streaming<RaftPayload>>,
    ) -> Result<Response<Replies>, Status> {
        not_cut_off()?;
        self.admit(&request)?;
        // A request that does not decode ends the stream: the leader sees it end and retries.
        let requests = request
            .into_inner()
            .map(|payload| match payload {
                Ok(_) if cete_actors::failpoints::isolated() => Err(()),
                Ok(payload) => decode(&payload.data).map_err(|e| log::warn!("undecodable AppendEntries: {e}")),
                Err(status) => {
                    log::debug!("replication stream broke: {status}");
                    Err(())
                }
            })
            .take_while(|request| std::future::ready(request.is_ok()))
            .filter_map(|request| std::future::ready(request.ok()));
        let replies = self
            .raft
            .send(DeliverAppendStream(Box::pin(requests)))
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let replies = replies.map(|reply| {
            let data = encode(&reply).map_err(|e| Status::internal(format!("cannot encode raft reply: {e}")))?;
            Ok(RaftPayload { data: data.into() })
        });
        Ok(Response::new(self.replies(replies)))
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.admit(&request)?;
        self.deliver(request.into_inner(), DeliverVote).await
    }

    async fn pre_vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.admit(&request)?;
        self.deliver(request.into_inner(), DeliverPreVote).await
    }

    /// A whole snapshot: the header, then the data, written to disk as it arrives.
    async fn snapshot(&self, request: Request<Streaming<RaftPayload>>) -> Result<Response<RaftPayload>, Status> {
        not_cut_off()?;
        self.admit(&request)?;
        let mut messages = request.into_inner();
        let header = messages.message().await?.ok_or_else(|| Status::invalid_argument("a snapshot without header"))?;
        let header: SnapshotHeader =
            decode(&header.data).map_err(|e| Status::invalid_argument(format!("undecodable snapshot header: {e}")))?;
        let data = messages.map(|message| message.map(|m| m.data).map_err(std::io::Error::other));
        let delivered = DeliverSnapshot { header, data: Box::pin(data) };
        let reply = self.raft.send(delivered).await.map_err(|e| Status::unavailable(e.to_string()))?;
        let reply = reply.map_err(|e| Status::unavailable(format!("cannot receive the snapshot: {e}")))?;
        let data = encode(&reply).map_err(|e| Status::internal(format!("cannot encode raft reply: {e}")))?;
        Ok(Response::new(RaftPayload { data: data.into() }))
    }

    async fn transfer_leader(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.admit(&request)?;
        self.deliver(request.into_inner(), DeliverTransferLeader).await
    }

    type ForwardStreamStream = Replies;

    /// A peer link's stream of routed requests: each is handed to this connection's actor as
    /// it arrives, and answered, under its id, when done (several are served at once).
    async fn forward_stream(&self, request: Request<Streaming<RaftPayload>>) -> Result<Response<Replies>, Status> {
        self.admit(&request)?;
        let connection = super::connection_of(&request)?;
        let replies = request
            .into_inner()
            .map(move |payload| {
                let connection = connection.clone();
                async move {
                    let (id, forwarded): (u64, Forwarded) = decode(&payload?.data)
                        .map_err(|e| Status::invalid_argument(format!("undecodable forwarded request: {e}")))?;
                    let reply = match connection.send(HandleForwarded(forwarded)).await {
                        Ok(reply) => reply,
                        Err(e) => ForwardReply::Failed(e.into()),
                    };
                    let data =
                        encode(&(id, reply)).map_err(|e| Status::internal(format!("cannot encode reply: {e}")))?;
                    Ok(RaftPayload { data: data.into() })
                }
            })
            .buffer_unordered(MAX_FORWARDS_SERVED_AT_ONCE);
        Ok(Response::new(self.replies(replies)))
    }

    /// A request routed here by a peer: handed to this connection's actor.
    async fn forward(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let connection = super::connection_of(&request)?;
        let metadata = request.metadata().clone();
        let forwarded: Forwarded = decode(&request.into_inner().data)
            .map_err(|e| Status::invalid_argument(format!("undecodable forwarded request: {e}")))?;
        // A node is asked to give up its own one-node cluster by the cluster that adds it.
        if !matches!(forwarded, Forwarded::PrepareToJoin) {
            self.identity.admit(&metadata)?;
        }
        let reply =
            connection.send(HandleForwarded(forwarded)).await.map_err(|e| Status::unavailable(e.to_string()))?;
        let data = encode(&reply).map_err(|e| Status::internal(format!("cannot encode reply: {e}")))?;
        Ok(Response::new(RaftPayload { data: data.into() }))
    }
}
