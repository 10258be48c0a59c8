//! The routing wing: serving what only the leader can serve — writes, the read indexes of
//! linearizable reads, joins, leaves, leader transfers — from any node. It is the one sender
//! of those requests, to this node's Raft and to the leader's peer link; it alone decides
//! "here or at the leader".
//!
//! - [`RouterActor`] takes the requests. It serves them with this node's Raft ([`here`]);
//!   when Raft names another leader (or has said so already: [`LeaderElsewhere`]), it
//!   follows the leader there and through leader changes ([`route`]), and gives what leaves
//!   the node its request ids (exactly-once writes, [`crate::store::sessions`]).
//! - [`LeaderBatcher`] carries what goes to a leader elsewhere over its link, batching writes
//!   and read indexes with one mechanism ([`batch`]).
//!
//! Who sends what: connection actors send the RouterActor [`Write`], [`LinearizableRead`],
//! [`Join`], [`Leave`] and [`TransferLeadership`] for their clients, and [`ServeHere`] for a
//! request a peer routed to this node; the RaftActor sends the RouterActor
//! [`LeaderElsewhere`] when the leader moves, and the LeaderBatcher
//! [`LeaderAppending`](crate::raft::LeaderAppending). The router sends this node's RaftActor
//! its leader-only messages (`ClientWrite`, `ReadIndex`, `AwaitApplied`, `AwaitLeader`,
//! `AwaitNewLeader`, `TransferLeader`, the membership changes), and the ClusterActor
//! `WasRemoved` and `PrepareJoiner`, and the batcher it `ForwardTo`; all through [`ports`], which a test can stand
//! in for. Every answer is success, or one error: [`RouteError`] between the routing actors
//! and to peers, a [`CeteError`](crate::CeteError) to clients.
//!
//! The local group commit (many writes, one Raft entry) is not here: it is the RaftActor's,
//! the one batcher of proposals to this node's Raft (see `raft::client`). A write batch a
//! follower sends enters it as one command. Nor is the hand-over of a leader asked to stop
//! (`server.rs` asks its own Raft for a `TransferLeader`): that is this node's own business,
//! never routed anywhere.

mod batch;
mod here;
mod msg;
pub mod ports;
mod route;
#[cfg(test)]
mod tests;
mod wire;

use std::sync::Arc;

use actix::prelude::*;

pub use self::batch::LeaderBatcher;
use self::here::serve_here;
pub use self::msg::*;
use self::ports::{ClusterPorts, RaftPorts};
use self::route::Route;
pub use self::wire::to_wire;
use crate::command::lease::LeaseAnswer;
use crate::command::{CommandResponse, Member};
use crate::error::CeteResult;
use crate::raft::{AwaitApplied, LeaderElsewhere};

pub struct RouterActor {
    /// Shared by the requests in flight (one clone of an `Arc` each, not of every port).
    route: Arc<Route>,
    /// The leader, when Raft last said it is another node ([`LeaderElsewhere`]).
    leader_elsewhere: Option<Member>,
}

impl RouterActor {
    /// The router of node `me`, whose requests for a leader elsewhere go to `batcher`.
    pub fn new(me: String, raft: RaftPorts, cluster: ClusterPorts, batcher: Recipient<ToLeader>) -> Self {
        RouterActor { route: Arc::new(Route { me, raft, cluster, to_leader: batcher }), leader_elsewhere: None }
    }

    /// The leader to send `request` to at once, skipping a local attempt: only for the
    /// requests whose local handling is nothing but Raft's same check (`ClientWrite` and
    /// `ReadIndex` turn away at once while the leader is elsewhere). A follower saves a
    /// hand-off per routed write and read. Should Raft know better already (it has become the
    /// leader a moment ago), the node asked names this one, and the request is served here.
    fn skip_here(&self, request: &LeaderRequest) -> Option<Member> {
        match request {
            LeaderRequest::Write(_)
            | LeaderRequest::WriteBatch(_)
            | LeaderRequest::ReadIndex
            | LeaderRequest::Lease(_) => self.leader_elsewhere.clone(),
            _ => None,
        }
    }

    /// Serves `request` on the leader, wherever it is.
    fn on_the_leader(&self, request: LeaderRequest) -> ResponseFuture<CeteResult<Served>> {
        let route = self.route.clone();
        let elsewhere = self.skip_here(&request);
        Box::pin(async move { route.on_the_leader(request, elsewhere).await })
    }
}

impl Handler<LeaderElsewhere> for RouterActor {
    type Result = ();

    fn handle(&mut self, msg: LeaderElsewhere, _: &mut Self::Context) {
        self.leader_elsewhere = msg.0;
    }
}

impl Actor for RouterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<Write> for RouterActor {
    type Result = ResponseFuture<CeteResult<CommandResponse>>;

    fn handle(&mut self, msg: Write, _: &mut Self::Context) -> Self::Result {
        let served = self.on_the_leader(LeaderRequest::Write(msg.0));
        Box::pin(async move {
            match served.await? {
                Served::Applied(response) => Ok(response),
                Served::Done => Ok(CommandResponse::Applied),
                other => Err(msg::unexpected("a write", other)),
            }
        })
    }
}

impl Handler<LinearizableRead> for RouterActor {
    type Result = ResponseFuture<CeteResult<()>>;

    fn handle(&mut self, _: LinearizableRead, _: &mut Self::Context) -> Self::Result {
        let served = self.on_the_leader(LeaderRequest::ReadIndex);
        let route = self.route.clone();
        Box::pin(async move {
            let index = match served.await? {
                Served::ReadIndex(index) => index,
                other => return Err(msg::unexpected("a read index", other)),
            };
            // Most often the index is applied here by the time it comes back: no message then.
            if index.is_none_or(|id| *route.raft.applied.borrow() >= id.index) {
                return Ok(());
            }
            route.raft.await_applied.send(AwaitApplied(index)).await?
        })
    }
}

impl Handler<Join> for RouterActor {
    type Result = ResponseFuture<CeteResult<()>>;

    fn handle(&mut self, msg: Join, _: &mut Self::Context) -> Self::Result {
        let served = self.on_the_leader(LeaderRequest::Join(msg.0));
        Box::pin(async move { done(served.await?, "a join") })
    }
}

impl Handler<Leave> for RouterActor {
    type Result = ResponseFuture<CeteResult<()>>;

    fn handle(&mut self, msg: Leave, _: &mut Self::Context) -> Self::Result {
        let served = self.on_the_leader(LeaderRequest::Leave(msg.0));
        Box::pin(async move { done(served.await?, "a leave") })
    }
}

impl Handler<TransferLeadership> for RouterActor {
    type Result = ResponseFuture<CeteResult<String>>;

    fn handle(&mut self, msg: TransferLeadership, _: &mut Self::Context) -> Self::Result {
        let served = self.on_the_leader(LeaderRequest::TransferLeader(msg.0));
        Box::pin(async move {
            match served.await? {
                Served::Leader(name) => Ok(name),
                other => Err(msg::unexpected("a leader transfer", other)),
            }
        })
    }
}

impl Handler<Lease> for RouterActor {
    type Result = ResponseFuture<CeteResult<LeaseAnswer>>;

    fn handle(&mut self, msg: Lease, _: &mut Self::Context) -> Self::Result {
        let served = self.on_the_leader(LeaderRequest::Lease(msg.0));
        Box::pin(async move {
            match served.await? {
                Served::Lease(answer) => Ok(answer),
                other => Err(msg::unexpected("a lease request", other)),
            }
        })
    }
}

impl Handler<ServeHere> for RouterActor {
    type Result = ResponseFuture<Result<Served, RouteError>>;

    fn handle(&mut self, msg: ServeHere, _: &mut Self::Context) -> Self::Result {
        let route = self.route.clone();
        Box::pin(async move { serve_here(&route.raft, &route.cluster, &msg.0).await })
    }
}

/// The unit answer of a write-like request.
fn done(served: Served, what: &str) -> CeteResult<()> {
    match served {
        Served::Done => Ok(()),
        other => Err(msg::unexpected(what, other)),
    }
}
