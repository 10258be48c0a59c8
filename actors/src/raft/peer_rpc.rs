//! Raft RPCs arriving from peers on `--raft-address`, delivered to this node's Raft.

use actix::prelude::*;
use openraft::error::RaftError;

use super::RaftActor;
use crate::command::NodeId;
use openraft::error::InstallSnapshotError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};

use crate::command::TypeConfig;

#[derive(Message)]
#[rtype(result = "Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>")]
pub struct DeliverAppendEntries(pub AppendEntriesRequest<TypeConfig>);

impl Handler<DeliverAppendEntries> for RaftActor {
    type Result = ResponseFuture<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>>;

    fn handle(&mut self, msg: DeliverAppendEntries, _: &mut Self::Context) -> Self::Result {
        if !msg.0.entries.is_empty() {
            // Writes this node holds for the leader catch its next proposal if sent now.
            self.cluster.do_send(crate::cluster::LeaderAppending);
        }
        let raft = self.raft.clone();
        Box::pin(async move { raft.append_entries(msg.0).await })
    }
}

#[derive(Message)]
#[rtype(result = "Result<VoteResponse<NodeId>, RaftError<NodeId>>")]
pub struct DeliverVote(pub VoteRequest<NodeId>);

impl Handler<DeliverVote> for RaftActor {
    type Result = ResponseFuture<Result<VoteResponse<NodeId>, RaftError<NodeId>>>;

    fn handle(&mut self, msg: DeliverVote, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        Box::pin(async move { raft.vote(msg.0).await })
    }
}

#[derive(Message)]
#[rtype(result = "Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>")]
pub struct DeliverSnapshotChunk(pub InstallSnapshotRequest<TypeConfig>);

impl Handler<DeliverSnapshotChunk> for RaftActor {
    type Result = ResponseFuture<Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>>;

    fn handle(&mut self, msg: DeliverSnapshotChunk, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        Box::pin(async move { raft.install_snapshot(msg.0).await })
    }
}
