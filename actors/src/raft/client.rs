//! Client traffic through Raft: proposing writes and the read-index barrier of
//! linearizable reads.

use std::time::Duration;

use actix::prelude::*;
use openraft::error::{CheckIsLeaderError, RaftError};

use super::{from_client_write_error, RaftActor, WriteRejection};
use crate::command::{Command, CommandResponse, LogId, Member};
use crate::error::{CeteError, CeteResult};

/// How long a read waits for this node to apply up to the leader's read index.
const APPLY_WAIT: Duration = Duration::from_secs(10);
/// How long a request waits for a leader to be elected before giving up.
const LEADER_WAIT: Duration = Duration::from_secs(5);

/// Propose a command through the Raft log; resolves once it is committed and applied here.
#[derive(Message)]
#[rtype(result = "Result<CommandResponse, WriteRejection>")]
pub struct ClientWrite(pub Command);

impl Handler<ClientWrite> for RaftActor {
    type Result = ResponseFuture<Result<CommandResponse, WriteRejection>>;

    fn handle(&mut self, msg: ClientWrite, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        Box::pin(async move {
            match raft.client_write(msg.0).await {
                Ok(reply) => Ok(reply.data),
                Err(err) => Err(from_client_write_error(err)),
            }
        })
    }
}

/// The leader's half of a linearizable read (Raft's ReadIndex): confirm leadership with a
/// quorum and answer the index every read started now must see applied. Elsewhere: NotLeader.
#[derive(Message)]
#[rtype(result = "Result<Option<LogId>, WriteRejection>")]
pub struct ReadIndex;

impl Handler<ReadIndex> for RaftActor {
    type Result = ResponseFuture<Result<Option<LogId>, WriteRejection>>;

    fn handle(&mut self, _: ReadIndex, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        Box::pin(async move {
            match raft.get_read_log_id().await {
                Ok((read_log_id, _applied)) => Ok(read_log_id),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    Err(WriteRejection::NotLeader { leader: f.leader_node })
                }
                Err(RaftError::APIError(e)) => Err(CeteError::unavailable("cannot confirm leadership", e).into()),
                Err(RaftError::Fatal(e)) => Err(CeteError::unavailable("raft has stopped", e).into()),
            }
        })
    }
}

/// The reader's half: wait until this node has applied up to the read index.
#[derive(Message)]
#[rtype(result = "CeteResult<()>")]
pub struct AwaitApplied(pub Option<LogId>);

impl Handler<AwaitApplied> for RaftActor {
    type Result = ResponseFuture<CeteResult<()>>;

    fn handle(&mut self, msg: AwaitApplied, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        Box::pin(async move {
            let Some(index) = msg.0.map(|id| id.index) else {
                return Ok(());
            };
            if raft.metrics().borrow().last_applied.map(|l| l.index) >= Some(index) {
                return Ok(());
            }
            raft.wait(Some(APPLY_WAIT))
                .applied_index_at_least(Some(index), "linearizable read")
                .await
                .map(|_| ())
                .map_err(|e| CeteError::unavailable("this node is too far behind the leader to read", e))
        })
    }
}

/// Wait (a few seconds at most) until a leader is known; its member record, if one is.
#[derive(Message)]
#[rtype(result = "Option<Member>")]
pub struct AwaitLeader;

impl Handler<AwaitLeader> for RaftActor {
    type Result = ResponseFuture<Option<Member>>;

    fn handle(&mut self, _: AwaitLeader, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        Box::pin(async move {
            let metrics =
                raft.wait(Some(LEADER_WAIT)).metrics(|m| m.current_leader.is_some(), "a leader").await.ok()?;
            let leader = metrics.current_leader?;
            metrics.membership_config.membership().get_node(&leader).cloned()
        })
    }
}
