//! Moving the leadership to another voter with openraft's leader transfer: by hand (`cete
//! leader transfer`, `POST /v1/leader/transfer`, gRPC `TransferLeader`), and when the leader is
//! asked to stop, so that a rolling restart costs no election timeout (as etcd does).
//!
//! openraft stops the leader proposing and heartbeating, and tells every voter; the target
//! waits until it has flushed the leader's last log entry, then campaigns at once, and the
//! others grant it their vote without waiting out the old leader's lease. Writes that reach
//! the old leader meanwhile are turned away with the target as the leader, and routed there.
//! Should the target fail to take over, the others elect a leader as they would have anyway.

use std::time::Duration;

use actix::prelude::*;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ForwardReason, ForwardToLeader};
use openraft::ServerState;

use super::Raft;
use super::{RaftActor, WriteRejection};
use crate::command::{node_id, Member, NodeId, RaftMetrics, TypeConfig};
use crate::deadlines::TRANSFER;
use crate::error::CeteError;
use crate::raft::handover::successor;

/// Hand the leadership to voter `to` (None: the follower the leader has replicated furthest)
/// and wait up to `within` for it to take over; answers the leader's name. Only the leader
/// serves it.
#[derive(Message)]
#[rtype(result = "Result<String, WriteRejection>")]
pub struct TransferLeader {
    pub to: Option<String>,
    pub within: Duration,
}

impl Handler<TransferLeader> for RaftActor {
    type Result = ResponseFuture<Result<String, WriteRejection>>;

    fn handle(&mut self, msg: TransferLeader, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        let me = self.parts.id;
        let my_name = self.parts.me.name.clone();
        Box::pin(async move {
            let metrics = raft.metrics().borrow_watched().clone();
            if metrics.state != ServerState::Leader {
                let leader = metrics.current_leader.and_then(|id| member(&metrics, id));
                return Err(WriteRejection::NotLeader { leader });
            }
            let target = target(me, &metrics, msg.to.as_deref())?;
            let target_id = node_id(&target.name);
            if target_id == me {
                return Ok(my_name);
            }
            log::info!("handing the leadership over to {}", target.name);
            raft.trigger()
                .transfer_leader(target_id)
                .await
                .map_err(|e| CeteError::unavailable("raft has stopped", e))?;
            let within = msg.within;
            raft.wait(Some(within))
                .metrics(|m| m.current_leader == Some(target_id), "the target leads")
                .await
                .map_err(|_| {
                    CeteError::Unavailable(format!(
                        "{} did not take the leadership over within {within:?}; the cluster elects a leader by \
                         itself",
                        target.name
                    ))
                })?;
            log::info!("{} has taken the leadership over", target.name);
            Ok(target.name)
        })
    }
}

/// Returns once a handover that turned a request away is over: when `forward` says this leader
/// is handing its leadership to another, waits (bounded) until that node leads. Told at once,
/// the router would find the target not yet elected, be sent back here, and bounce between
/// the two; told after, it finds the new leader serving.
pub(super) async fn await_handover(raft: &Raft, forward: &ForwardToLeader<TypeConfig>) {
    let Some(target) = forward.leader_id.filter(|_| forward.reason == ForwardReason::LeadershipTransfer) else {
        return;
    };
    let handed_over = |m: &RaftMetrics| m.current_leader == Some(target) && m.state != ServerState::Leader;
    if raft.wait(Some(TRANSFER)).metrics(handed_over, "the handover is over").await.is_err() {
        log::debug!("a handover did not complete within {TRANSFER:?}");
    }
}

/// The voter to hand over to: the one named, or the follower replicated furthest.
fn target(me: NodeId, metrics: &RaftMetrics, name: Option<&str>) -> Result<Member, CeteError> {
    let membership = metrics.membership_config.membership();
    match name {
        Some(name) => {
            let id = node_id(name);
            let member = member(metrics, id).ok_or_else(|| CeteError::NotFound(format!("no node named {name:?}")))?;
            if !membership.voter_ids().any(|voter| voter == id) {
                return Err(CeteError::InvalidArgument(format!("{name} is a learner, not a voter: it cannot lead")));
            }
            Ok(member)
        }
        None => {
            let matched = metrics.replication.clone().unwrap_or_default();
            successor(me, &matched, &metrics.membership_config)
                .ok_or_else(|| CeteError::InvalidArgument("there is no other voter to hand the leadership to".into()))
        }
    }
}

fn member(metrics: &RaftMetrics, id: NodeId) -> Option<Member> {
    metrics.membership_config.membership().get_node(&id).cloned()
}
