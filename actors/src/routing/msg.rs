//! The routing wing's vocabulary: the messages its actors take, the requests only a leader
//! serves, their success-only answers, and the one routing error.

use std::time::Duration;

use actix::prelude::*;

use crate::command::lease::{LeaseAnswer, LeaseAsk};
use crate::command::{Command, CommandResponse, LogId, Member};
use crate::deadlines;
use crate::error::{CeteError, CeteResult};
use crate::raft::WriteRejection;
use crate::store::sessions::{Awaited, ClientSession};

/// A request that only the leader can serve.
#[derive(Debug, Clone)]
pub enum LeaderRequest {
    /// Propose this command.
    Write(Command),
    /// Propose these commands as one entry (a follower's batch of its clients' writes).
    WriteBatch(Vec<Command>),
    /// Confirm leadership with a quorum and tell the index a linearizable read must see.
    ReadIndex,
    /// Add this member (a learner first, then a voter).
    Join(Member),
    /// Remove the member of this name.
    Leave(String),
    /// Hand the leadership to this voter (None: the follower replicated furthest).
    TransferLeader(Option<String>),
    /// Renew a lease, or tell what leases have left: the leader's countdowns know.
    Lease(LeaseAsk),
}

/// What the leader answered a [`LeaderRequest`] that it served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Served {
    /// A join or leave took effect (or a write, answered by a leader without revisions).
    Done,
    /// A write or a batch of them took effect: what applying it answered.
    Applied(CommandResponse),
    /// The read index of a [`LeaderRequest::ReadIndex`].
    ReadIndex(Option<LogId>),
    /// The leader after a [`LeaderRequest::TransferLeader`].
    Leader(String),
    /// The leader's countdowns' answer to a [`LeaderRequest::Lease`].
    Lease(LeaseAnswer),
}

/// Why a [`LeaderRequest`] was not served where it was sent. The router follows the first two
/// itself; only `Failed` reaches a client, as its [`CeteError`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum RouteError {
    /// The node asked is not the leader (any more); here is who it thinks is.
    #[error("not the leader (the leader is {})", .0.as_ref().map_or("unknown", |m| m.name.as_str()))]
    NotLeader(Option<Member>),
    /// The leader could not be connected to: the request never left this node, so it is safe
    /// to send it elsewhere.
    #[error("not sent: {0}")]
    NotSent(String),
    /// Served and turned down, or lost on the way (then it may or may not have taken effect).
    #[error("{0}")]
    Failed(CeteError),
}

impl From<CeteError> for RouteError {
    fn from(e: CeteError) -> Self {
        RouteError::Failed(e)
    }
}

impl From<MailboxError> for RouteError {
    fn from(e: MailboxError) -> Self {
        RouteError::Failed(e.into())
    }
}

/// The Raft side's "not here" is the router's [`RouteError::NotLeader`].
impl From<WriteRejection> for RouteError {
    fn from(rejection: WriteRejection) -> Self {
        match rejection {
            WriteRejection::NotLeader { leader } => RouteError::NotLeader(leader),
            WriteRejection::Failed(e) => RouteError::Failed(e),
        }
    }
}

impl LeaderRequest {
    /// How long the link to the leader waits for its answer: inside the client's own wait
    /// for what a client waits on, longer for a join ([`crate::deadlines`]).
    pub fn deadline(&self) -> Duration {
        match self {
            LeaderRequest::Write(_)
            | LeaderRequest::WriteBatch(_)
            | LeaderRequest::ReadIndex
            | LeaderRequest::Lease(_)
            | LeaderRequest::TransferLeader(_) => deadlines::FORWARDED_REQUEST,
            LeaderRequest::Join(_) => deadlines::FORWARDED_JOIN,
            LeaderRequest::Leave(_) => deadlines::FORWARDED_LEAVE,
        }
    }

    /// This request with its writes under request ids of this process's client session
    /// (applied at most once), and the guard that keeps them awaited: hold it until the
    /// request is answered or given up.
    pub fn once(self) -> (Self, Awaited<'static>) {
        let session = ClientSession::of_process();
        let (mut commands, batch) = match self {
            LeaderRequest::Write(command) => (vec![command], false),
            LeaderRequest::WriteBatch(commands) => (commands, true),
            other => return (other, session.begin(0).2),
        };
        let fresh = commands.iter().filter(|c| !matches!(c, Command::Request { .. })).count();
        let (ids, low_water, awaited) = session.begin(fresh);
        let mut ids = ids.into_iter();
        for command in commands.iter_mut().filter(|c| !matches!(c, Command::Request { .. })) {
            let id = ids.next().expect("one id per command without one");
            let inner = std::mem::replace(command, Command::Batch(Vec::new()));
            *command = Command::Request { id, command: Box::new(inner), low_water };
        }
        let request = match batch {
            true => LeaderRequest::WriteBatch(commands),
            false => LeaderRequest::Write(commands.pop().expect("one command")),
        };
        (request, awaited)
    }

    /// Whether sending this again, after its first sending's fate became unknown, cannot make
    /// it take effect twice: read indexes, writes under request ids, and leaves (removing a
    /// node that is gone changes nothing; a leave sent again finds it gone when the first took
    /// effect, which the router then answers as done).
    pub fn safe_to_resend(&self) -> bool {
        let once = |c: &Command| matches!(c, Command::Request { .. });
        match self {
            // A renewal sent twice restarts the countdown twice: as once, a moment later.
            LeaderRequest::ReadIndex | LeaderRequest::Leave(_) | LeaderRequest::Lease(_) => true,
            LeaderRequest::Write(command) => once(command),
            LeaderRequest::WriteBatch(commands) => commands.iter().all(once),
            // Sent again to the new leader, "to the best follower" would move it once more.
            LeaderRequest::TransferLeader(to) => to.is_some(),
            LeaderRequest::Join(_) => false,
        }
    }
}

// ---- What the front doors (connection actors) send the RouterActor ----

/// Propose a client's command on the leader, wherever it is; answered once it is committed
/// and applied there.
#[derive(Message)]
#[rtype(result = "CeteResult<CommandResponse>")]
pub struct Write(pub Command);

/// The barrier of a linearizable read: the leader's read index (confirmed with a quorum,
/// wherever the leader is), then this node's apply up to it. Once it resolves, the local state
/// holds every write acknowledged before the barrier began.
#[derive(Message)]
#[rtype(result = "CeteResult<()>")]
pub struct LinearizableRead;

/// Add this member to the cluster.
#[derive(Message)]
#[rtype(result = "CeteResult<()>")]
pub struct Join(pub Member);

/// Remove the member of this name from the cluster.
#[derive(Message)]
#[rtype(result = "CeteResult<()>")]
pub struct Leave(pub String);

/// Move the leadership to voter `to` (None: the follower replicated furthest); answers the
/// leader's name once it has taken over.
#[derive(Message)]
#[rtype(result = "CeteResult<String>")]
pub struct TransferLeadership(pub Option<String>);

/// A lease request only the leader answers: renewals, what leases have left.
#[derive(Message)]
#[rtype(result = "CeteResult<LeaseAnswer>")]
pub struct Lease(pub LeaseAsk);

// ---- What a peer's connection actor sends the RouterActor ----

/// A leader-only request a peer sent here (this node being, as far as the peer knew, the
/// leader): served by this node's Raft, never routed on — the peer follows a leader change
/// itself, so `NotLeader` goes back to it.
#[derive(Message)]
#[rtype(result = "Result<Served, RouteError>")]
pub struct ServeHere(pub LeaderRequest);

// ---- What the RouterActor sends the leader's lease countdowns ----

/// On the leader, once it has confirmed its leadership and applied what it committed: answer
/// this from the countdowns ([`crate::lease`]); `NotLeader` where they do not run.
#[derive(Message)]
#[rtype(result = "Result<LeaseAnswer, RouteError>")]
pub struct ServeLease(pub LeaseAsk);

// ---- What the RouterActor sends the LeaderBatcher ----

/// Send `request` to `leader`, another node, over its peer link (writes and read indexes
/// batched with others to the same leader).
#[derive(Message)]
#[rtype(result = "Result<Served, RouteError>")]
pub struct ToLeader {
    pub leader: Member,
    pub request: LeaderRequest,
}

pub(super) fn unexpected(what: &str, served: Served) -> CeteError {
    CeteError::Internal(format!("unexpected answer to {what}: {served:?}"))
}
