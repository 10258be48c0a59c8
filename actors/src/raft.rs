//! RaftActor: the owner of the openraft instance. Client writes, linearizable read barriers,
//! snapshots and membership changes all enter Raft here.
//!
//! Handlers never block the actor: each one clones the `Raft` handle (an `Arc`) into a future,
//! so many writes are in flight at once and openraft and the log store batch them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use actix::prelude::*;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, RaftMetrics};

use crate::command::{node_id, Command, CommandResponse, Member, NodeId, Raft};
use crate::error::{CeteError, CeteResult};

/// How long a snapshot request waits for the snapshot to be built.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(300);

pub struct RaftActor {
    raft: Raft,
    me: Member,
}

impl RaftActor {
    pub fn new(raft: Raft, me: Member) -> Self {
        RaftActor { raft, me }
    }
}

impl Actor for RaftActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
    }
}

/// Why a write could not be taken here: either a real error, or "the leader is elsewhere",
/// which the caller routes to the leader instead of answering the client with it.
#[derive(Debug)]
pub enum WriteRejection {
    Failed(CeteError),
    NotLeader { leader: Option<Member> },
}

impl From<CeteError> for WriteRejection {
    fn from(e: CeteError) -> Self {
        WriteRejection::Failed(e)
    }
}

fn from_client_write_error(err: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> WriteRejection {
    match err {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            WriteRejection::NotLeader { leader: forward.leader_node }
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => WriteRejection::Failed(membership_error(e)),
        RaftError::Fatal(fatal) => WriteRejection::Failed(CeteError::unavailable("raft has stopped", fatal)),
    }
}

fn membership_error(e: ChangeMembershipError<NodeId>) -> CeteError {
    match e {
        ChangeMembershipError::InProgress(_) => {
            CeteError::Unavailable(format!("another membership change is in progress: {e}"))
        }
        _ => CeteError::InvalidArgument(format!("membership change refused: {e}")),
    }
}

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

/// A linearizable read barrier: resolves once this node is sure it is the leader and has
/// applied everything committed before the barrier, so a read of the store after it sees
/// every write acknowledged before the barrier began.
#[derive(Message)]
#[rtype(result = "Result<(), WriteRejection>")]
pub struct LinearizableRead;

impl Handler<LinearizableRead> for RaftActor {
    type Result = ResponseFuture<Result<(), WriteRejection>>;

    fn handle(&mut self, _: LinearizableRead, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        Box::pin(async move {
            match raft.ensure_linearizable().await {
                Ok(_) => Ok(()),
                Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                    Err(WriteRejection::NotLeader { leader: f.leader_node })
                }
                Err(RaftError::APIError(e)) => Err(CeteError::unavailable("cannot confirm leadership", e).into()),
                Err(RaftError::Fatal(e)) => Err(CeteError::unavailable("raft has stopped", e).into()),
            }
        })
    }
}

/// Take a snapshot now and wait until it covers everything applied when asked.
#[derive(Message)]
#[rtype(result = "CeteResult<()>")]
pub struct TakeSnapshot;

impl Handler<TakeSnapshot> for RaftActor {
    type Result = ResponseFuture<CeteResult<()>>;

    fn handle(&mut self, _: TakeSnapshot, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        Box::pin(async move {
            let applied = raft.metrics().borrow().last_applied;
            raft.trigger().snapshot().await.map_err(|e| CeteError::unavailable("raft has stopped", e))?;
            if applied.is_some() {
                raft.wait(Some(SNAPSHOT_WAIT))
                    .metrics(|m| m.snapshot >= applied, "snapshot built")
                    .await
                    .map_err(|e| CeteError::unavailable("snapshot did not complete", e))?;
            }
            Ok(())
        })
    }
}

/// Form a one-node cluster of this node, unless Raft state already exists on disk (a
/// restarted node resumes its cluster and never re-initializes).
#[derive(Message)]
#[rtype(result = "CeteResult<bool>")]
pub struct Bootstrap;

impl Handler<Bootstrap> for RaftActor {
    type Result = ResponseFuture<CeteResult<bool>>;

    fn handle(&mut self, _: Bootstrap, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        let me = self.me.clone();
        Box::pin(async move {
            let initialized = raft.is_initialized().await.map_err(|e| CeteError::unavailable("raft", e))?;
            if initialized {
                return Ok(false);
            }
            let members = BTreeMap::from([(node_id(&me.name), me)]);
            raft.initialize(members).await.map_err(|e| CeteError::internal("cannot initialize the cluster", e))?;
            Ok(true)
        })
    }
}

/// Whether this node holds any Raft state (a log, a vote or a membership) yet.
#[derive(Message)]
#[rtype(result = "CeteResult<bool>")]
pub struct IsInitialized;

impl Handler<IsInitialized> for RaftActor {
    type Result = ResponseFuture<CeteResult<bool>>;

    fn handle(&mut self, _: IsInitialized, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        Box::pin(async move { raft.is_initialized().await.map_err(|e| CeteError::unavailable("raft", e)) })
    }
}

/// Add a member: first as a learner that catches up without counting for quorum, then as a
/// voter. Only the leader can do this; elsewhere it is rejected with `NotLeader`.
#[derive(Message)]
#[rtype(result = "Result<(), WriteRejection>")]
pub struct AddMember(pub Member);

impl Handler<AddMember> for RaftActor {
    type Result = ResponseFuture<Result<(), WriteRejection>>;

    fn handle(&mut self, msg: AddMember, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        Box::pin(async move {
            let id = node_id(&msg.0.name);
            raft.add_learner(id, msg.0, true).await.map_err(from_client_write_error)?;
            let voters = BTreeSet::from([id]);
            raft.change_membership(ChangeMembers::AddVoterIds(voters), false)
                .await
                .map_err(from_client_write_error)?;
            Ok(())
        })
    }
}

/// Remove a member from the cluster (voter or learner).
#[derive(Message)]
#[rtype(result = "Result<(), WriteRejection>")]
pub struct RemoveMember(pub String);

impl Handler<RemoveMember> for RaftActor {
    type Result = ResponseFuture<Result<(), WriteRejection>>;

    fn handle(&mut self, msg: RemoveMember, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        Box::pin(async move {
            let id = node_id(&msg.0);
            let membership = raft.metrics().borrow().membership_config.clone();
            if membership.membership().get_node(&id).is_none() {
                return Err(CeteError::NotFound(format!("node {} is not a member of the cluster", msg.0)).into());
            }
            let ids = BTreeSet::from([id]);
            let is_voter = membership.membership().voter_ids().any(|v| v == id);
            // A removed voter is dropped from the node list too (retain = false).
            let change = if is_voter { ChangeMembers::RemoveVoters(ids) } else { ChangeMembers::RemoveNodes(ids) };
            raft.change_membership(change, false).await.map_err(from_client_write_error)?;
            Ok(())
        })
    }
}

/// The current Raft metrics (state, term, leader, indexes, membership).
#[derive(Message)]
#[rtype(result = "RaftMetrics<NodeId, Member>")]
pub struct CurrentMetrics;

impl Handler<CurrentMetrics> for RaftActor {
    type Result = MessageResult<CurrentMetrics>;

    fn handle(&mut self, _: CurrentMetrics, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.raft.metrics().borrow().clone())
    }
}

/// Stop Raft (on node shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

impl Handler<Shutdown> for RaftActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        Box::pin(async move {
            if let Err(e) = raft.shutdown().await {
                log::warn!("raft shutdown: {e}");
            }
        })
    }
}

/// Raft RPCs arriving from peers on `--raft-address`, delivered to this node's Raft.
pub mod peer_rpc {
    use super::*;
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
}
