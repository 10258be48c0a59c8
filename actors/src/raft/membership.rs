//! Membership through Raft: forming a one-node cluster, adding members (as learners first,
//! then voters), removing them, and a standalone node giving up its own one-node state to
//! join another cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use actix::prelude::*;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, StoredMembership};

use super::Raft;
use super::{from_client_write_error, RaftActor, WriteRejection};
use crate::command::{node_id, Member, NodeId, RaftMetrics};
use crate::deadlines::MEMBERSHIP_WAIT;
use crate::error::{CeteError, CeteResult};
use crate::raft::handover::{still_leaderless, LEASE_MARGIN};
use crate::store::{ReplaceState, Stats};

/// Form a one-node cluster of this node, unless Raft state already exists on disk (a
/// restarted node resumes its cluster and never re-initializes).
#[derive(Message)]
#[rtype(result = "CeteResult<bool>")]
pub struct Bootstrap;

impl Handler<Bootstrap> for RaftActor {
    type Result = ResponseFuture<CeteResult<bool>>;

    fn handle(&mut self, _: Bootstrap, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        let me = self.parts.me.clone();
        let identity = self.parts.identity.clone();
        Box::pin(async move {
            if raft.is_initialized().await.map_err(|e| CeteError::unavailable("raft", e))? {
                return Ok(false);
            }
            // A new cluster: a new id, on disk before the first entry.
            let id = identity.create().map_err(|e| CeteError::internal("cannot record the cluster id", e))?;
            log::info!("formed cluster {id:016x}");
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

/// What a join needs, decided by the leader before it touches the joiner.
#[derive(Debug, PartialEq, Eq)]
pub enum JoinPlan {
    /// Already a voter at these addresses: nothing to do (joins are idempotent).
    AlreadyMember,
    /// A learner already: only promote it.
    Promote,
    /// A new node: prepare it, add it as a learner, then promote it.
    Add,
}

/// Decide how to add `member`; only the leader answers, elsewhere NotLeader.
#[derive(Message)]
#[rtype(result = "Result<JoinPlan, WriteRejection>")]
pub struct PlanJoin(pub Member);

impl Handler<PlanJoin> for RaftActor {
    type Result = Result<JoinPlan, WriteRejection>;

    fn handle(&mut self, msg: PlanJoin, _: &mut Self::Context) -> Self::Result {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        if metrics.current_leader != Some(self.parts.id) {
            let leader = metrics.current_leader.and_then(|id| membership.get_node(&id).cloned());
            return Err(WriteRejection::NotLeader { leader });
        }
        let id = node_id(&msg.0.name);
        match membership.get_node(&id) {
            None => Ok(JoinPlan::Add),
            Some(existing) if existing.raft_address != msg.0.raft_address => Err(CeteError::Conflict(format!(
                "{} is already a member at raft address {}; remove it before joining it at {}",
                msg.0.name, existing.raft_address, msg.0.raft_address
            ))
            .into()),
            Some(_) if membership.voter_ids().any(|v| v == id) => Ok(JoinPlan::AlreadyMember),
            Some(_) => Ok(JoinPlan::Promote),
        }
    }
}

/// Add a member: as a learner first, which catches up without counting for quorum (so a slow
/// joiner never stalls writes), then as a voter.
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
            promote(&raft, id).await
        })
    }
}

async fn promote(raft: &Raft, id: u64) -> Result<(), WriteRejection> {
    change_membership(raft, ChangeMembers::AddVoterIds(BTreeSet::from([id]))).await
}

/// Applies a membership change, waiting first for one still in progress (a change is two
/// log entries, the joint configuration and the new one; the next may start only after).
async fn change_membership(raft: &Raft, change: ChangeMembers<NodeId, Member>) -> Result<(), WriteRejection> {
    let deadline = Instant::now() + MEMBERSHIP_WAIT;
    loop {
        match raft.change_membership(change.clone(), false).await {
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(_))))
                if Instant::now() < deadline =>
            {
                let settled = |m: &RaftMetrics| m.membership_config.log_id() <= &m.last_applied;
                let _ = raft.wait(Some(deadline - Instant::now())).metrics(settled, "membership settled").await;
            }
            other => return other.map(|_| ()).map_err(from_client_write_error),
        }
    }
}

/// Promote a learner that is already a member to a voter.
#[derive(Message)]
#[rtype(result = "Result<(), WriteRejection>")]
pub struct PromoteMember(pub Member);

impl Handler<PromoteMember> for RaftActor {
    type Result = ResponseFuture<Result<(), WriteRejection>>;

    fn handle(&mut self, msg: PromoteMember, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        Box::pin(async move { promote(&raft, node_id(&msg.0.name)).await })
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
            let membership = raft.metrics().borrow_watched().membership_config.clone();
            if membership.membership().get_node(&id).is_none() {
                return Err(CeteError::NotFound(format!("node {} is not a member of the cluster", msg.0)).into());
            }
            let ids = BTreeSet::from([id]);
            let is_voter = membership.membership().voter_ids().any(|v| v == id);
            // A removed voter is dropped from the node list too (retain = false).
            let change = if is_voter { ChangeMembers::RemoveVoters(ids) } else { ChangeMembers::RemoveNodes(ids) };
            change_membership(&raft, change).await?;
            Ok(())
        })
    }
}

/// The leader `leaving` has removed itself and named this node its successor: campaign as
/// soon as the other voters will vote — once the lease they granted it has run out — unless a
/// leader is elected before (see [`crate::raft::handover`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Succeed {
    pub leaving: String,
}

impl Handler<Succeed> for RaftActor {
    type Result = ();

    fn handle(&mut self, msg: Succeed, _: &mut Self::Context) {
        let raft = self.raft.clone();
        // openraft's leader lease is its longest election timeout.
        let lease = Duration::from_millis(self.parts.config.election_timeout_max) + LEASE_MARGIN;
        actix::spawn(async move {
            let leaving = msg.leaving;
            let settled = |m: &RaftMetrics| !still_leaderless(&leaving, m);
            let waited = raft.wait(Some(lease)).metrics(settled, "a new leader").await;
            // Looked at again: a leader elected since the wait gave up must not be disturbed.
            if waited.is_ok() || !still_leaderless(&leaving, &raft.metrics().borrow_watched()) {
                return;
            }
            log::info!("{leaving} left the cluster as its leader and named this node to succeed it: campaigning");
            if let Err(e) = raft.trigger().elect(false).await {
                log::warn!("cannot campaign to succeed {leaving}: {e}");
            }
        });
    }
}

/// Asked by a cluster's leader before it adds this node: a node that formed a one-node
/// cluster of its own but holds no data gives that state up (log, vote, membership) and
/// waits, empty, for the cluster's; a node that holds data, or belongs to a cluster of
/// several nodes, refuses rather than lose or merge anything.
#[derive(Message)]
#[rtype(result = "CeteResult<()>")]
pub struct ResetForJoin;

impl Handler<ResetForJoin> for RaftActor {
    type Result = AtomicResponse<Self, CeteResult<()>>;

    fn handle(&mut self, _: ResetForJoin, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        let parts = self.parts.clone();
        let reset = async move {
            let forget = || parts.identity.forget().map_err(|e| CeteError::internal("forget the cluster id", e));
            if !raft.is_initialized().await.map_err(|e| CeteError::unavailable("raft", e))? {
                // No Raft state, so no cluster: an id left by a start that failed half-way
                // would refuse the cluster that adds it.
                forget()?;
                return Ok(None);
            }
            let keys = parts.store.send(Stats).await??.keys;
            if keys > 0 {
                return Err(CeteError::Conflict(format!(
                    "{} holds {keys} keys of its own; a node with data cannot join another cluster \
                     (start it on an empty data directory)",
                    parts.me.name
                )));
            }
            let metrics = raft.metrics().borrow_watched().clone();
            let others = metrics.membership_config.membership().nodes().filter(|(id, _)| **id != parts.id).count();
            if others > 0 {
                return Err(CeteError::Conflict(format!(
                    "{} already belongs to a cluster of {} nodes; remove it from that cluster first",
                    parts.me.name,
                    others + 1
                )));
            }
            log::info!("giving up this node's one-node cluster state to join another cluster");
            raft.shutdown().await.map_err(|e| CeteError::internal("raft shutdown", e))?;
            parts.log_store.wipe().await.map_err(|e| CeteError::internal("wipe raft log", e))?;
            let empty = ReplaceState { source: None, last_applied: None, last_membership: StoredMembership::default() };
            parts.store.send(empty).await??;
            crate::raft::state_machine::remove_snapshots(&parts.snapshot_dir)
                .map_err(|e| CeteError::internal("remove snapshots", e))?;
            forget()?;
            Ok(Some(parts.build().await?))
        };
        AtomicResponse::new(Box::pin(reset.into_actor(self).map(|result, actor, ctx| {
            if let Some(instance) = result? {
                actor.raft = instance.raft;
                actor.read_floor = instance.read_floor;
                // Before the new instance's metrics: the memberships this node was in are gone.
                actor.observers.reset.do_send(super::RaftStateReset);
                actor.feed_metrics(ctx);
            }
            Ok(())
        })))
    }
}
