//! Serving a leader-only request with this node's own Raft: the "here" of "here or at the
//! leader". Raft turns it away with [`RouteError::NotLeader`] when the leader is elsewhere.

use super::msg::{LeaderRequest, RouteError, ServeLease, Served};
use super::ports::{ClusterPorts, RaftPorts};
use crate::cluster::{features, MembersRead, PrepareJoiner};
use crate::command::{Command, Member};
use crate::deadlines::{CATCH_UP, TRANSFER};
use crate::error::CeteError;
use crate::raft::{
    AddMember, AwaitApplied, ClientWrite, JoinPlan, PlanJoin, PromoteMember, ReadIndex, RemoveMember, TransferLeader,
};

/// Serves `request` with this node's Raft.
pub(super) async fn serve_here(
    raft: &RaftPorts,
    cluster: &ClusterPorts,
    request: &LeaderRequest,
) -> Result<Served, RouteError> {
    match request {
        LeaderRequest::Write(command) => {
            read_by_every_member(cluster, std::slice::from_ref(command)).await?;
            Ok(Served::Applied(raft.client_write.send(ClientWrite(command.clone())).await??))
        }
        LeaderRequest::WriteBatch(commands) => {
            read_by_every_member(cluster, commands).await?;
            Ok(Served::Applied(raft.client_write.send(ClientWrite(Command::Batch(commands.clone()))).await??))
        }
        LeaderRequest::ReadIndex => Ok(Served::ReadIndex(raft.read_index.send(ReadIndex).await??)),
        LeaderRequest::Join(member) => join(raft, cluster, member).await,
        LeaderRequest::Leave(name) => {
            raft.remove_member.send(RemoveMember(name.clone())).await??;
            Ok(Served::Done)
        }
        LeaderRequest::TransferLeader(to) => {
            let transfer = TransferLeader { to: to.clone(), within: TRANSFER };
            Ok(Served::Leader(raft.transfer_leader.send(transfer).await??))
        }
        LeaderRequest::Lease(ask) => {
            let lessor =
                raft.lessor.as_ref().ok_or_else(|| CeteError::Unavailable("leases are not served here".into()))?;
            // As etcd's leader does before a renewal: a quorum confirms this node still leads
            // (a deposed leader must not renew a lease that its successor counts down), and
            // what it committed is applied (so the countdowns know every lease granted).
            let index = raft.read_index.send(ReadIndex).await??;
            raft.await_applied.send(AwaitApplied(index)).await??;
            Ok(Served::Lease(lessor.send(ServeLease(ask.clone())).await??))
        }
    }
}

/// Refuses commands whose entry a member's build could not decode ([`features`]): proposed,
/// it would stop that member following the log in the middle of a rolling upgrade. Plain
/// writes need nothing, and ask nothing.
async fn read_by_every_member(cluster: &ClusterPorts, commands: &[Command]) -> Result<(), RouteError> {
    let Some(feature) = commands.iter().find_map(features::needed_by) else { return Ok(()) };
    match cluster.members_read.send(MembersRead(feature)).await? {
        true => Ok(()),
        false => Err(RouteError::Failed(CeteError::Unavailable(format!(
            "{feature} wait for every member of the cluster to run a build that reads them (or for a leader \
             that can ask them all)"
        )))),
    }
}

/// On the leader: prepare the joiner (it gives up a one-node state of its own, or refuses
/// when it holds data), add it as a learner, then promote it.
async fn join(raft: &RaftPorts, cluster: &ClusterPorts, member: &Member) -> Result<Served, RouteError> {
    match raft.plan_join.send(PlanJoin(member.clone())).await?? {
        JoinPlan::AlreadyMember => {}
        JoinPlan::Promote => raft.promote_member.send(PromoteMember(member.clone())).await??,
        JoinPlan::Add => {
            cluster.prepare_joiner.send(PrepareJoiner(member.clone())).await??;
            let added = tokio::time::timeout(CATCH_UP, raft.add_member.send(AddMember(member.clone())));
            added.await.map_err(|_| {
                CeteError::Unavailable(format!(
                    "{} did not catch up within {CATCH_UP:?}; it stays a learner until it does (repeat the \
                     join to make it a voter)",
                    member.name
                ))
            })???;
            log::info!("{} joined the cluster at {}", member.name, member.raft_address);
        }
    }
    Ok(Served::Done)
}
