//! openraft's network, as an adapter: Raft RPCs travel to a peer's `--raft-address` over the
//! `cete.raft.Raft` gRPC service, each request and reply MessagePack-encoded inside a
//! `RaftPayload` (openraft owns those types; protobuf only frames them). The receiving end is
//! [`crate::raft::peer_rpc`].
//!
//! Replication is pipelined ([`RaftNetworkV2::stream_append`]): openraft's replication hands
//! over a stream of AppendEntries requests, produced as the leader submits entries (before its
//! own fsync), and each goes out on one `AppendEntriesStream` call as soon as it is produced;
//! the follower hands the stream to its Raft, which also takes the next request before the
//! previous is flushed, and the replies come back in request order. Heartbeats and lone calls
//! are unary.
//!
//! A peer's channel is created lazily and reconnects by itself, so a peer that is down
//! simply shows up as `Unreachable` until it is back.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cete_proto::raft::RaftPayload;
use futures::{Stream, StreamExt};
use openraft::base::{BoxFuture, BoxStream};
use openraft::error::{Fatal, NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::OptionalSend;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tonic::transport::Channel;

use crate::command::{decode, encode, Member, NodeId, SnapshotMeta, TypeConfig, Vote};
use crate::error::CeteResult;
use crate::raft::state_machine::Snapshot;
use crate::wire::identity::{ClusterIdentity, PeerClient};
use crate::wire::tls::ClientTls;

type RpcError = RPCError<TypeConfig>;

/// How long a replication stream waits for the next reply while requests are outstanding
/// before it gives up on the peer (openraft then opens a new stream). Generous: a follower
/// busy applying a large batch on a loaded machine must not look like a dead one.
const STREAM_REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// The size of one message of a snapshot's data.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// What the first message of a `Snapshot` call carries.
#[derive(Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub vote: Vote,
    pub meta: SnapshotMeta,
    /// The data's length: the receiver refuses a transfer that ends short.
    pub data_bytes: u64,
}

/// Creates a [`PeerRaftClient`] per peer, sharing the node's TLS settings and one channel
/// (one HTTP/2 connection) per peer address among all clients.
///
/// openraft asks for a client per replication stream, but also one per peer for its heartbeats
/// and each election; a channel each would mean a TCP and HTTP/2 handshake each time.
#[derive(Clone)]
pub struct Network {
    tls: Option<ClientTls>,
    identity: ClusterIdentity,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Network {
    pub fn new(tls: Option<ClientTls>, identity: ClusterIdentity) -> Self {
        Network { tls, identity, channels: Arc::default() }
    }

    /// The channel to `address`, made on first use; it reconnects by itself.
    fn channel(&self, address: &str) -> CeteResult<Channel> {
        let mut channels = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let channel = peer_channel(address, self.tls.as_ref())?;
        channels.insert(address.to_string(), channel.clone());
        Ok(channel)
    }
}

/// A lazily connecting channel to a peer's address; it reconnects by itself.
pub fn peer_channel(address: &str, tls: Option<&ClientTls>) -> CeteResult<Channel> {
    crate::wire::tls::channel(address, tls, std::time::Duration::from_secs(2))
}

/// A client of the Raft service at `address` whose requests carry this node's cluster id.
pub fn peer_client(address: &str, tls: Option<&ClientTls>, identity: &ClusterIdentity) -> CeteResult<PeerClient> {
    peer_channel(address, tls).map(|channel| identity.client(channel))
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerRaftClient;

    async fn new_client(&mut self, _target: NodeId, node: &Member) -> PeerRaftClient {
        let client = match self.channel(&node.raft_address) {
            Ok(channel) => Ok(self.identity.client(channel)),
            Err(e) => Err(format!("bad raft address {:?} of {}: {e}", node.raft_address, node.name)),
        };
        PeerRaftClient { member: node.clone(), client }
    }
}

/// The Raft RPC client for one peer.
pub struct PeerRaftClient {
    member: Member,
    client: Result<PeerClient, String>,
}

/// Encodes a message for the wire, or says why it cannot go.
fn payload<T: Serialize>(value: &T) -> Result<RaftPayload, NetworkError<TypeConfig>> {
    encode(value).map(|data| RaftPayload { data: data.into() }).map_err(|e| NetworkError::new(&e))
}

impl PeerRaftClient {
    fn client(&self) -> Result<PeerClient, Unreachable<TypeConfig>> {
        if crate::failpoints::isolated() {
            return Err(Unreachable::from_string(self.describe("cut off by the raft-isolate failpoint")));
        }
        self.client.clone().map_err(Unreachable::from_string)
    }

    fn describe(&self, what: impl std::fmt::Display) -> String {
        format!("{} at {}: {what}", self.member.name, self.member.raft_address)
    }

    /// What a failed call means to openraft: the peer is unreachable, or the call broke.
    fn transport_error(&self, status: &tonic::Status) -> RpcError {
        let message = self.describe(status.message());
        match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
                RPCError::Unreachable(Unreachable::from_string(message))
            }
            _ => RPCError::Network(NetworkError::from_string(message)),
        }
    }

    /// Decodes a peer's answer: Raft's, or word that the peer's Raft has stopped (it is
    /// shutting down or was removed), which is as good as unreachable.
    fn answer<Resp: DeserializeOwned>(&self, data: &[u8]) -> Result<Resp, RpcError> {
        let result: Result<Resp, Fatal<TypeConfig>> =
            decode(data).map_err(|e| RPCError::Network(NetworkError::from_string(self.describe(e))))?;
        result.map_err(|fatal| RPCError::Unreachable(Unreachable::from_string(self.describe(fatal))))
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        rpc: UnaryRpc,
        request: &Req,
    ) -> Result<Resp, RpcError> {
        let payload = tonic::Request::new(payload(request)?);
        let mut client = self.client()?;
        let reply = match rpc {
            UnaryRpc::AppendEntries => client.append_entries(payload).await,
            UnaryRpc::Vote => client.vote(payload).await,
            UnaryRpc::PreVote => client.pre_vote(payload).await,
            UnaryRpc::TransferLeader => client.transfer_leader(payload).await,
        };
        let reply = reply.map_err(|status| self.transport_error(&status))?;
        self.answer(&reply.into_inner().data)
    }
}

#[derive(Clone, Copy)]
enum UnaryRpc {
    AppendEntries,
    Vote,
    PreVote,
    TransferLeader,
}

impl RaftNetworkV2<TypeConfig> for PeerRaftClient {
    type SnapshotData = tokio::fs::File;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RpcError> {
        self.call(UnaryRpc::AppendEntries, &rpc).await
    }

    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        _option: RPCOption,
    ) -> BoxFuture<'s, Result<BoxStream<'s, Result<StreamAppendResult<TypeConfig>, RpcError>>, RpcError>>
    where
        S: Stream<Item = AppendEntriesRequest<TypeConfig>> + OptionalSend + Unpin + 'static,
    {
        Box::pin(async move {
            let mut client = self.client()?;
            // Requests on their way minus replies received: a silent peer only counts as dead
            // while it owes replies (an idle stream waits for new entries as long as it takes).
            let outstanding = Arc::new(AtomicU64::new(0));
            let sent = outstanding.clone();
            let target = self.member.name.clone();
            let requests = input.filter_map(move |request| {
                let encoded = payload(&request);
                if let Err(e) = &encoded {
                    log::error!("cannot encode an AppendEntries for {target}: {e}");
                }
                let encoded = encoded.ok();
                if encoded.is_some() {
                    sent.fetch_add(1, Ordering::SeqCst);
                }
                // An undecodable request ends nothing here; the peer answers the others.
                std::future::ready(encoded)
            });
            let call = client.append_entries_stream(requests).await;
            let replies = call.map_err(|status| self.transport_error(&status))?.into_inner();
            let this: &'s PeerRaftClient = self;
            let replies = futures::stream::unfold(Some(replies), move |replies| {
                let outstanding = outstanding.clone();
                async move {
                    let mut replies = replies?;
                    let item = this.next_reply(&mut replies, &outstanding).await?;
                    let keep_going = matches!(item, Ok(Ok(_)));
                    Some((item, keep_going.then_some(replies)))
                }
            });
            Ok(Box::pin(replies) as BoxStream<'s, _>)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RpcError> {
        self.call(UnaryRpc::Vote, &rpc).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RpcError> {
        self.call(UnaryRpc::PreVote, &rpc).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let send = self.send_snapshot(vote, snapshot);
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = send => result,
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RpcError> {
        self.call(UnaryRpc::TransferLeader, &req).await
    }
}

impl PeerRaftClient {
    /// The next item of a replication stream's replies: `None` once the stream has ended.
    async fn next_reply(
        &self,
        replies: &mut tonic::Streaming<RaftPayload>,
        outstanding: &AtomicU64,
    ) -> Option<Result<StreamAppendResult<TypeConfig>, RpcError>> {
        loop {
            let reply = match tokio::time::timeout(STREAM_REPLY_TIMEOUT, replies.message()).await {
                Ok(reply) => reply,
                Err(_) if outstanding.load(Ordering::SeqCst) == 0 => continue,
                Err(_) => {
                    let silent = format!("no reply to an AppendEntries within {STREAM_REPLY_TIMEOUT:?}");
                    return Some(Err(RPCError::Unreachable(Unreachable::from_string(self.describe(silent)))));
                }
            };
            return match reply {
                Ok(Some(reply)) => {
                    outstanding.fetch_sub(1, Ordering::SeqCst);
                    Some(self.answer(&reply.data))
                }
                Ok(None) => None,
                Err(status) => Some(Err(self.transport_error(&status))),
            };
        }
    }

    /// Streams the snapshot's header and data file to the peer, which installs it whole.
    async fn send_snapshot(
        &self,
        vote: Vote,
        snapshot: Snapshot,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        use tokio::io::AsyncSeekExt;
        let unreachable = |e: String| StreamingError::Unreachable(Unreachable::from_string(self.describe(e)));
        let mut file = snapshot.snapshot;
        let data_bytes = file.metadata().await.map_err(|e| unreachable(format!("snapshot file: {e}")))?.len();
        file.seek(std::io::SeekFrom::Start(0)).await.map_err(|e| unreachable(format!("snapshot file: {e}")))?;
        let header = payload(&SnapshotHeader { vote, meta: snapshot.meta, data_bytes })?;
        // A read error ends the data early; the peer, short of `data_bytes`, refuses it.
        let chunks = futures::stream::unfold(Some(file), |file| async move {
            let mut file = file?;
            let mut chunk = vec![0u8; SNAPSHOT_CHUNK_BYTES];
            match file.read(&mut chunk).await {
                Ok(0) => None,
                Ok(n) => {
                    chunk.truncate(n);
                    Some((RaftPayload { data: Bytes::from(chunk) }, Some(file)))
                }
                Err(e) => {
                    log::error!("reading a snapshot to send: {e}");
                    None
                }
            }
        });
        let messages = futures::stream::iter([header]).chain(chunks);
        let mut client = self.client()?;
        let reply = client.snapshot(messages).await.map_err(|status| match self.transport_error(&status) {
            RPCError::Unreachable(e) => StreamingError::Unreachable(e),
            other => StreamingError::Network(NetworkError::from_string(other)),
        })?;
        self.answer(&reply.into_inner().data).map_err(|e| match e {
            RPCError::Unreachable(e) => StreamingError::Unreachable(e),
            other => StreamingError::Network(NetworkError::from_string(other)),
        })
    }
}
