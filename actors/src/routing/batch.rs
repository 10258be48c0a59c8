//! LeaderBatcher: what goes to a leader on another node, over its peer link. Writes and read
//! indexes bound for the same leader are gathered into batches by one mechanism ([`Lane`]),
//! each kind with its own policy ([`Batchable`]): a batch is one RPC there (a write batch one
//! log entry, a read index one quorum round shared by every read of it). Other leader
//! requests (joins, leaves, transfers) go one by one.
//!
//! Who sends it what: the [`RouterActor`](super::RouterActor) [`ToLeader`]; the RaftActor
//! [`LeaderAppending`]. It hands each batch to the ClusterActor, which carries it over the
//! leader's link ([`ForwardTo`]); a removed node's ClusterActor refuses, so it passes nothing on.

use std::collections::{HashMap, HashSet};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::msg::{LeaderRequest, RouteError, Served, ToLeader};
use super::wire::from_wire;
use crate::cluster::ForwardTo;
use crate::command::{Command, CommandResponse, Member};
use crate::raft::LeaderAppending;

/// When forwarded writes go to the leader. A batch goes at once when none is out to that
/// leader. While one is out, writes wait for the leader to start its next round (it appends
/// to this node's log: [`LeaderAppending`]); sent then, they reach the leader while that round
/// is under way and make its next proposal, where a batch sent when the previous one returns
/// arrives after that proposal left and waits a whole round more. Counted per leader: a
/// leader that froze with batches must not hold back the writes resent to its successor.
const MAX_WRITE_BATCHES_IN_FLIGHT: usize = 3;
const MAX_WRITE_BATCH: usize = 1024;

type Reply = oneshot::Sender<Result<Served, RouteError>>;

/// Requests of one kind waiting for a leader, and how many batches of them are out to each.
struct Lane<T> {
    waiting: Vec<(Member, T, Reply)>,
    in_flight: HashMap<String, usize>,
}

impl<T> Default for Lane<T> {
    fn default() -> Self {
        Lane { waiting: Vec::new(), in_flight: HashMap::new() }
    }
}

/// A kind of request the batcher gathers, and its policy.
trait Batchable: Sized + Unpin + 'static {
    /// The most requests in one batch.
    const MAX_BATCH: usize;
    /// How many batches may be out to one leader; `leader_appending`: the leader has just
    /// started a round.
    fn max_in_flight(leader_appending: bool) -> usize;
    fn lane(batcher: &mut LeaderBatcher) -> &mut Lane<Self>;
    /// The one request that carries a batch.
    fn request(batch: Vec<Self>) -> LeaderRequest;
    /// Each request's part of the batch's answer, in order.
    fn split(answer: Result<Served, RouteError>, requests: usize) -> Vec<Result<Served, RouteError>> {
        vec![answer; requests]
    }
}

impl Batchable for Command {
    const MAX_BATCH: usize = MAX_WRITE_BATCH;

    fn max_in_flight(leader_appending: bool) -> usize {
        if leader_appending {
            MAX_WRITE_BATCHES_IN_FLIGHT
        } else {
            1
        }
    }

    fn lane(batcher: &mut LeaderBatcher) -> &mut Lane<Self> {
        &mut batcher.writes
    }

    fn request(batch: Vec<Self>) -> LeaderRequest {
        match <[Command; 1]>::try_from(batch) {
            Ok([one]) => LeaderRequest::Write(one),
            Err(many) => LeaderRequest::WriteBatch(many),
        }
    }

    /// A batch applied as one entry answers one response per write: each its own.
    fn split(answer: Result<Served, RouteError>, requests: usize) -> Vec<Result<Served, RouteError>> {
        match answer {
            Ok(Served::Applied(CommandResponse::Batch(responses))) if responses.len() == requests && requests > 1 => {
                responses.into_iter().map(|response| Ok(Served::Applied(response))).collect()
            }
            answer => vec![answer; requests],
        }
    }
}

/// A read waiting for the leader's read index. One request for one serves every read waiting
/// when it is sent; reads arriving while it is out wait for the next one (an index asked for
/// before a read began could miss writes acknowledged before that read).
struct ReadIndexWanted;

impl Batchable for ReadIndexWanted {
    const MAX_BATCH: usize = usize::MAX;

    fn max_in_flight(_: bool) -> usize {
        1
    }

    fn lane(batcher: &mut LeaderBatcher) -> &mut Lane<Self> {
        &mut batcher.reads
    }

    fn request(_: Vec<Self>) -> LeaderRequest {
        LeaderRequest::ReadIndex
    }
}

pub struct LeaderBatcher {
    forward_to: Recipient<ForwardTo>,
    writes: Lane<Command>,
    reads: Lane<ReadIndexWanted>,
}

impl LeaderBatcher {
    pub fn new(forward_to: Recipient<ForwardTo>) -> Self {
        LeaderBatcher { forward_to, writes: Lane::default(), reads: Lane::default() }
    }

    /// Sends what waits in `T`'s lane: at most one batch per leader, and only to leaders with
    /// fewer batches out than `T`'s policy allows. Every request of a batch gets the batch's
    /// answer, and on "not the leader" or "not sent" the router follows the leader for each.
    fn flush<T: Batchable>(&mut self, ctx: &mut Context<Self>, leader_appending: bool) {
        let limit = T::max_in_flight(leader_appending);
        let mut sent = HashSet::new();
        loop {
            let lane = T::lane(self);
            let in_flight = &lane.in_flight;
            let Some(leader) = lane
                .waiting
                .iter()
                .map(|(leader, ..)| leader)
                .find(|leader| {
                    !sent.contains(&leader.name) && in_flight.get(&leader.name).copied().unwrap_or(0) < limit
                })
                .cloned()
            else {
                return;
            };
            sent.insert(leader.name.clone());
            let mut batch = Vec::new();
            let mut rest = Vec::new();
            for waiting in std::mem::take(&mut lane.waiting) {
                if waiting.0 == leader && batch.len() < T::MAX_BATCH {
                    batch.push(waiting);
                } else {
                    rest.push(waiting);
                }
            }
            lane.waiting = rest;
            *lane.in_flight.entry(leader.name.clone()).or_default() += 1;
            let (items, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|(_, item, reply)| (item, reply)).unzip();
            let send = send(self.forward_to.clone(), leader.clone(), T::request(items));
            let send = async move {
                let answers = T::split(send.await, replies.len());
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(answer);
                }
            };
            ctx.spawn(send.into_actor(self).map(move |(), batcher, ctx| {
                let in_flight = &mut T::lane(batcher).in_flight;
                if let Some(count) = in_flight.get_mut(&leader.name) {
                    *count -= 1;
                    if *count == 0 {
                        in_flight.remove(&leader.name);
                    }
                }
                batcher.flush::<T>(ctx, false);
            }));
        }
    }

    /// Queues `item` for `leader` in `T`'s lane and sends what may go now.
    fn enqueue<T: Batchable>(
        &mut self,
        leader: Member,
        item: T,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<Served, RouteError>> {
        let (tx, rx) = oneshot::channel();
        T::lane(self).waiting.push((leader, item, tx));
        self.flush::<T>(ctx, false);
        Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(RouteError::Failed(crate::CeteError::Unavailable("the router stopped".into()))))
        })
    }
}

/// Sends `request` over `leader`'s link.
async fn send(forward_to: Recipient<ForwardTo>, leader: Member, request: LeaderRequest) -> Result<Served, RouteError> {
    let within = request.deadline();
    from_wire(forward_to.send(ForwardTo { to: leader, request: request.into(), within }).await?)
}

impl Actor for LeaderBatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<ToLeader> for LeaderBatcher {
    type Result = ResponseFuture<Result<Served, RouteError>>;

    fn handle(&mut self, msg: ToLeader, ctx: &mut Self::Context) -> Self::Result {
        match msg.request {
            LeaderRequest::Write(command) => self.enqueue(msg.leader, command, ctx),
            LeaderRequest::ReadIndex => self.enqueue(msg.leader, ReadIndexWanted, ctx),
            request => Box::pin(send(self.forward_to.clone(), msg.leader, request)),
        }
    }
}

impl Handler<LeaderAppending> for LeaderBatcher {
    type Result = ();

    fn handle(&mut self, _: LeaderAppending, ctx: &mut Self::Context) {
        if !self.writes.waiting.is_empty() {
            self.flush::<Command>(ctx, true);
        }
    }
}
