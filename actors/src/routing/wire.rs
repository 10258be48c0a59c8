//! The one place where the routing vocabulary meets the wire: [`LeaderRequest`], [`Served`]
//! and [`RouteError`] to and from the [`Forwarded`] and [`ForwardReply`] that peers exchange
//! (their serde shape is what nodes of other builds speak, and stays as it is).

use super::msg::{LeaderRequest, RouteError, Served};
use crate::cluster::peer::{ForwardReply, Forwarded};
use crate::error::{CeteError, CeteResult};

impl From<LeaderRequest> for Forwarded {
    fn from(request: LeaderRequest) -> Self {
        match request {
            LeaderRequest::Write(command) => Forwarded::Write(command),
            LeaderRequest::WriteBatch(commands) => Forwarded::WriteBatch(commands),
            LeaderRequest::ReadIndex => Forwarded::ReadIndex,
            LeaderRequest::Join(member) => Forwarded::Join(member),
            LeaderRequest::Leave(name) => Forwarded::Leave(name),
            LeaderRequest::TransferLeader(to) => Forwarded::TransferLeader(to),
            LeaderRequest::Lease(ask) => Forwarded::Lease(ask),
        }
    }
}

impl TryFrom<Forwarded> for LeaderRequest {
    /// A request any peer serves, not only the leader.
    type Error = Forwarded;

    fn try_from(forwarded: Forwarded) -> Result<Self, Forwarded> {
        Ok(match forwarded {
            Forwarded::Write(command) => LeaderRequest::Write(command),
            Forwarded::WriteBatch(commands) => LeaderRequest::WriteBatch(commands),
            Forwarded::ReadIndex => LeaderRequest::ReadIndex,
            Forwarded::Join(member) => LeaderRequest::Join(member),
            Forwarded::Leave(name) => LeaderRequest::Leave(name),
            Forwarded::TransferLeader(to) => LeaderRequest::TransferLeader(to),
            Forwarded::Lease(ask) => LeaderRequest::Lease(ask),
            other @ (Forwarded::Status
            | Forwarded::Poll
            | Forwarded::RaftStatus
            | Forwarded::PrepareToJoin
            | Forwarded::Campaign { .. }
            | Forwarded::Features) => return Err(other),
        })
    }
}

/// The answer to send back to the peer that routed a request here.
pub fn to_wire(answer: Result<Served, RouteError>) -> ForwardReply {
    match answer {
        Ok(Served::Done) => ForwardReply::Done,
        // Only a store with revisions answers more than "done", and a cluster starts them only
        // once every member's build reads this answer.
        Ok(Served::Applied(response)) if response.has_revisions() => ForwardReply::Applied(response),
        Ok(Served::Applied(_)) => ForwardReply::Done,
        Ok(Served::ReadIndex(index)) => ForwardReply::ReadIndex(index),
        Ok(Served::Leader(name)) => ForwardReply::Leader(name),
        Ok(Served::Lease(answer)) => ForwardReply::Lease(answer),
        Err(RouteError::NotLeader(leader)) => ForwardReply::NotLeader(leader),
        Err(RouteError::NotSent(why)) => ForwardReply::NotSent(why),
        Err(RouteError::Failed(e)) => ForwardReply::Failed(e),
    }
}

/// What a peer link brought back for a request it carried (its `Err` is `Failed`: the
/// leader's refusal, or contact lost on the way).
pub fn from_wire(reply: CeteResult<ForwardReply>) -> Result<Served, RouteError> {
    match reply? {
        ForwardReply::Done => Ok(Served::Done),
        ForwardReply::Applied(response) => Ok(Served::Applied(response)),
        ForwardReply::ReadIndex(index) => Ok(Served::ReadIndex(index)),
        ForwardReply::Leader(name) => Ok(Served::Leader(name)),
        ForwardReply::Lease(answer) => Ok(Served::Lease(answer)),
        ForwardReply::NotLeader(leader) => Err(RouteError::NotLeader(leader)),
        ForwardReply::NotSent(why) => Err(RouteError::NotSent(why)),
        ForwardReply::Failed(e) => Err(RouteError::Failed(e)),
        other @ (ForwardReply::Status(_)
        | ForwardReply::Polled(_)
        | ForwardReply::Features(_)
        | ForwardReply::RaftStatus(_)) => {
            Err(CeteError::Internal(format!("a peer answered a leader request with {other:?}")).into())
        }
    }
}
