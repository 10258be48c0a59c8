//! openraft's network, as an adapter: Raft RPCs travel to a peer's `--raft-address` over the
//! `cete.raft.Raft` gRPC service, each request and reply MessagePack-encoded inside a
//! `RaftPayload` (openraft owns those types; protobuf only frames them).
//!
//! A peer's channel is created lazily and reconnects by itself, so a peer that is down
//! simply shows up as `Unreachable` until it is back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cete_proto::raft::raft_client::RaftClient;
use cete_proto::raft::RaftPayload;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::command::{decode, encode, Member, NodeId, TypeConfig};
use crate::error::CeteResult;
use crate::tls::ClientTls;

/// Creates a [`PeerRaftClient`] per peer, sharing the node's TLS settings and one channel
/// (one HTTP/2 connection) per peer address among all clients.
///
/// openraft asks for a client per replication stream, but also one per peer for every
/// leadership confirmation of a linearizable read; a channel each would mean a TCP and
/// HTTP/2 handshake per confirmation.
#[derive(Clone, Default)]
pub struct Network {
    tls: Option<ClientTls>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Network {
    pub fn new(tls: Option<ClientTls>) -> Self {
        Network { tls, channels: Arc::default() }
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
    crate::tls::channel(address, tls, std::time::Duration::from_secs(2))
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerRaftClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerRaftClient {
        let client = match self.channel(&node.raft_address) {
            Ok(channel) => Ok(RaftClient::new(channel).max_decoding_message_size(usize::MAX)),
            Err(e) => Err(format!("bad raft address {:?} of {}: {e}", node.raft_address, node.name)),
        };
        PeerRaftClient { target, member: node.clone(), client, stream: None }
    }
}

/// The Raft RPC client for one peer.
pub struct PeerRaftClient {
    target: NodeId,
    member: Member,
    client: Result<RaftClient<Channel>, String>,
    /// The open AppendEntries stream, if any. Taken out for each call and put back only once
    /// its reply arrived: a call that fails or is abandoned (openraft times calls out) drops
    /// the stream, so a late reply can never be read as the answer to a later request.
    stream: Option<AppendStream>,
}

/// One side of an `AppendEntriesStream` call: requests go into `requests`, replies come back
/// in order on `replies`.
struct AppendStream {
    requests: mpsc::Sender<RaftPayload>,
    replies: tonic::Streaming<RaftPayload>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

// The error type is openraft's: what its `RaftNetwork` methods return.
#[allow(clippy::result_large_err)]
impl PeerRaftClient {
    fn client<E: std::error::Error>(&mut self) -> Result<&mut RaftClient<Channel>, RPCError<NodeId, Member, E>> {
        match &mut self.client {
            Ok(client) => Ok(client),
            Err(msg) => Err(RPCError::Unreachable(Unreachable::new(&TransportError(msg.clone())))),
        }
    }

    /// What a failed call means to openraft: the peer is unreachable, or the call broke.
    fn transport_error<E: std::error::Error>(&self, status: &tonic::Status) -> RPCError<NodeId, Member, E> {
        let err = TransportError(format!("{} at {}: {}", self.member.name, self.member.raft_address, status.message()));
        match status.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => RPCError::Unreachable(Unreachable::new(&err)),
            _ => RPCError::Network(NetworkError::new(&err)),
        }
    }

    /// Decodes a peer's reply: Raft's answer, or Raft's own error on the peer.
    fn answer<Resp, E>(&self, data: &[u8]) -> Result<Resp, RPCError<NodeId, Member, RaftError<NodeId, E>>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode(data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new_with_node(self.target, self.member.clone(), e)))
    }

    async fn call<Req, Resp, E>(
        &mut self,
        rpc: &'static str,
        request: &Req,
    ) -> Result<Resp, RPCError<NodeId, Member, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let data = encode(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let payload = tonic::Request::new(RaftPayload { data: data.into() });
        let client = self.client()?;
        let reply = match rpc {
            "append_entries" => client.append_entries(payload).await,
            "vote" => client.vote(payload).await,
            _ => client.install_snapshot(payload).await,
        };
        let reply = reply.map_err(|status| self.transport_error(&status))?;
        self.answer(&reply.into_inner().data)
    }

    /// Sends one AppendEntries on this client's stream (opened now if there is none) and
    /// waits for its reply.
    async fn call_on_stream(
        &mut self,
        request: &AppendEntriesRequest<TypeConfig>,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        let data = encode(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut stream = match self.stream.take() {
            Some(stream) => stream,
            None => {
                let (requests, outgoing) = mpsc::channel(1);
                let call = self.client()?.append_entries_stream(ReceiverStream::new(outgoing)).await;
                let replies = call.map_err(|status| self.transport_error(&status))?.into_inner();
                AppendStream { requests, replies }
            }
        };
        if stream.requests.send(RaftPayload { data: data.into() }).await.is_err() {
            let closed = tonic::Status::unavailable("the append stream closed");
            return Err(self.transport_error(&closed));
        }
        let reply = match stream.replies.message().await {
            Ok(Some(reply)) => reply,
            Ok(None) => return Err(self.transport_error(&tonic::Status::unavailable("the append stream ended"))),
            Err(status) => return Err(self.transport_error(&status)),
        };
        self.stream = Some(stream);
        self.answer(&reply.data)
    }
}

impl RaftNetwork<TypeConfig> for PeerRaftClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        // Replication (entries, or a stream already open) goes on the stream; a lone
        // heartbeat, such as the one openraft sends on a fresh client to confirm leadership
        // for a read, is cheaper as one call than as a stream opened for it.
        if self.stream.is_some() || !rpc.entries.is_empty() {
            return self.call_on_stream(&rpc).await;
        }
        self.call("append_entries", &rpc).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.call("install_snapshot", &rpc).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call("vote", &rpc).await
    }
}
