//! Raft RPCs arriving from peers on `--raft-address`, delivered to this node's Raft (the
//! sending side is [`crate::raft::network`]). Every answer is Raft's, or [`Fatal`] when this node's
//! Raft has stopped; the gRPC service encodes either for the peer.

use std::path::PathBuf;

use actix::prelude::*;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use openraft::base::BoxStream;
use openraft::error::{Fatal, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendResult, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use tokio::io::AsyncWriteExt;

use super::RaftActor;
use crate::command::TypeConfig;
use crate::raft::network::SnapshotHeader;
use crate::raft::state_machine::{receiving_file, Snapshot};

type Answer<T> = Result<T, Fatal<TypeConfig>>;

/// A Raft API error whose only possible kind is "Raft has stopped".
fn fatal(e: RaftError<TypeConfig>) -> Fatal<TypeConfig> {
    match e {
        RaftError::Fatal(fatal) => fatal,
        RaftError::APIError(never) => match never {},
    }
}

/// A lone AppendEntries (a heartbeat).
#[derive(Message)]
#[rtype(result = "Answer<AppendEntriesResponse<TypeConfig>>")]
pub struct DeliverAppendEntries(pub AppendEntriesRequest<TypeConfig>);

impl Handler<DeliverAppendEntries> for RaftActor {
    type Result = ResponseFuture<Answer<AppendEntriesResponse<TypeConfig>>>;

    fn handle(&mut self, msg: DeliverAppendEntries, _: &mut Self::Context) -> Self::Result {
        if !msg.0.entries.is_empty() {
            self.observers.appending.do_send(super::LeaderAppending);
        }
        let raft = self.raft.clone();
        Box::pin(async move { raft.append_entries(msg.0).await.map_err(fatal) })
    }
}

/// The replies of a replication stream, one per request, in request order.
pub type AppendReplies = BoxStream<'static, Answer<StreamAppendResult<TypeConfig>>>;

/// A leader's replication stream: its requests go to Raft as they arrive, each taken before
/// the previous one is flushed (see [`crate::raft::network`]).
#[derive(Message)]
#[rtype(result = "AppendReplies")]
pub struct DeliverAppendStream(pub BoxStream<'static, AppendEntriesRequest<TypeConfig>>);

impl Handler<DeliverAppendStream> for RaftActor {
    type Result = MessageResult<DeliverAppendStream>;

    fn handle(&mut self, msg: DeliverAppendStream, _: &mut Self::Context) -> Self::Result {
        let appending = self.observers.appending.clone();
        let requests = msg.0.inspect(move |request| {
            if !request.entries.is_empty() {
                // Writes this node holds for the leader catch its next proposal if sent now.
                appending.do_send(super::LeaderAppending);
            }
        });
        let replies: AppendReplies = Box::pin(self.raft.stream_append(requests));
        MessageResult(replies)
    }
}

#[derive(Message)]
#[rtype(result = "Answer<VoteResponse<TypeConfig>>")]
pub struct DeliverVote(pub VoteRequest<TypeConfig>);

impl Handler<DeliverVote> for RaftActor {
    type Result = ResponseFuture<Answer<VoteResponse<TypeConfig>>>;

    fn handle(&mut self, msg: DeliverVote, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        Box::pin(async move { raft.vote(msg.0).await.map_err(fatal) })
    }
}

/// Would this node vote for the candidate? Changes no vote or term here.
#[derive(Message)]
#[rtype(result = "Answer<VoteResponse<TypeConfig>>")]
pub struct DeliverPreVote(pub VoteRequest<TypeConfig>);

impl Handler<DeliverPreVote> for RaftActor {
    type Result = ResponseFuture<Answer<VoteResponse<TypeConfig>>>;

    fn handle(&mut self, msg: DeliverPreVote, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        Box::pin(async move { raft.pre_vote(msg.0).await.map_err(fatal) })
    }
}

/// The leader hands its leadership over: the node the request names campaigns at once (once
/// its log holds what the leader's did); every other drops its lease on the old leader.
#[derive(Message)]
#[rtype(result = "Answer<TransferLeaderResponse<TypeConfig>>")]
pub struct DeliverTransferLeader(pub TransferLeaderRequest<TypeConfig>);

impl Handler<DeliverTransferLeader> for RaftActor {
    type Result = ResponseFuture<Answer<TransferLeaderResponse<TypeConfig>>>;

    fn handle(&mut self, msg: DeliverTransferLeader, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        Box::pin(async move { raft.handle_transfer_leader(msg.0).await })
    }
}

/// A whole snapshot from the leader: its data is written into a new file of the snapshot
/// directory (fsynced, and refused if it ends short of the length the header gives), then
/// handed to Raft, which installs it if the leader's vote still holds.
pub struct DeliverSnapshot {
    pub header: SnapshotHeader,
    pub data: BoxStream<'static, std::io::Result<Bytes>>,
}

impl Message for DeliverSnapshot {
    type Result = std::io::Result<Answer<SnapshotResponse<TypeConfig>>>;
}

impl Handler<DeliverSnapshot> for RaftActor {
    type Result = ResponseFuture<std::io::Result<Answer<SnapshotResponse<TypeConfig>>>>;

    fn handle(&mut self, msg: DeliverSnapshot, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        let dir = self.parts.snapshot_dir.clone();
        Box::pin(async move {
            let (path, file) = receiving_file(&dir).await?;
            let result = receive(file, &path, msg.data, msg.header.data_bytes).await;
            let answer = match result {
                Ok(file) => {
                    let snapshot = Snapshot { meta: msg.header.meta, snapshot: file };
                    Ok(raft.install_full_snapshot(msg.header.vote, snapshot).await)
                }
                Err(e) => Err(e),
            };
            // Installed, the file was renamed into place; otherwise it is of no use.
            let _ = tokio::fs::remove_file(&path).await;
            answer
        })
    }
}

/// Writes `data` into `file` (at `path`), fsyncs it, and opens it again for reading.
async fn receive(
    mut file: tokio::fs::File,
    path: &PathBuf,
    mut data: impl Stream<Item = std::io::Result<Bytes>> + Unpin,
    expected_bytes: u64,
) -> std::io::Result<tokio::fs::File> {
    let mut received = 0u64;
    while let Some(chunk) = data.next().await {
        let chunk = chunk?;
        received += chunk.len() as u64;
        if received > expected_bytes {
            break;
        }
        file.write_all(&chunk).await?;
    }
    if received != expected_bytes {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("a snapshot of {expected_bytes} bytes arrived with {received}"),
        ));
    }
    file.sync_all().await?;
    drop(file);
    tokio::fs::File::open(path).await
}
