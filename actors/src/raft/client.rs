//! Client traffic through this node's Raft: proposing writes (in batches), the leader's read
//! index of linearizable reads (confirmations shared by the reads waiting for them) and the
//! reader's wait for its apply, and the waits for a leader. Only the router
//! ([`crate::routing`]) sends these; where the leader is elsewhere, each turns away at once
//! with [`WriteRejection::NotLeader`].

use actix::prelude::*;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, ForwardReason, LinearizableReadError, RaftError};
use openraft::raft::ReadPolicy;
use tokio::sync::oneshot;

use super::{from_client_write_error, RaftActor, WriteRejection};
use crate::command::{Command, CommandResponse, LogId, Member, RaftMetrics};
use crate::deadlines::{APPLY_WAIT, CONFIRM_READ, CONFIRM_RETRY_PAUSE, ELECTION_WAIT};
use crate::error::{CeteError, CeteResult};

/// Propose a command through the Raft log; resolves once it is committed and applied here.
///
/// Group commit: commands that arrive while earlier proposals are in flight wait in the
/// actor and go into Raft together as one [`Command::Batch`] entry, so Raft's per-entry work
/// (log write, replication, apply) is paid once per batch, not once per client.
///
/// This is the one batcher of proposals to this node's Raft (etcd has one loop that waits on
/// proposals): local clients' writes and the batches followers send it alike, each of the
/// latter one command here. It stays beside `client_write` because its pipeline limit is a
/// property of openraft's (one append in flight at a time, see [`MAX_PROPOSALS_IN_FLIGHT`]);
/// the router batches only what goes to a leader on another node.
#[derive(Message)]
#[rtype(result = "Result<CommandResponse, WriteRejection>")]
pub struct ClientWrite(pub Command);

type Reply<T> = oneshot::Sender<Result<T, WriteRejection>>;

/// Writes and read confirmations waiting to enter Raft.
#[derive(Default)]
pub(super) struct Pending {
    writes: Vec<(Command, Reply<CommandResponse>)>,
    write_bytes: usize,
    proposals_in_flight: usize,
    reads: Vec<Reply<Option<LogId>>>,
    read_check_in_flight: bool,
}

/// How many batches may be in Raft at once. A second batch in flight only splits the next
/// one: the nodes are CPU-bound and a round's cost is per entry, not per write. Measured on
/// openraft 0.9 (one in flight: 6.6-7.2k writes/s, two: 5.0-6.9k) and again on 0.10, which
/// overlaps the leader's flush with replication (alternated runs: one 5.8-6.9k/s, two
/// 5.2-5.9k, four 5.4-5.7k; 3 nodes, 64 HTTP clients, 2 cores). A lone write still goes at once.
const MAX_PROPOSALS_IN_FLIGHT: usize = 1;
/// A batch is closed at this many commands or bytes of values.
const MAX_BATCH_COMMANDS: usize = 4096;
const MAX_BATCH_BYTES: usize = 16 << 20;

/// The reply of a waiting request, or "retry" when its Raft instance went away.
async fn closed<T>(rx: oneshot::Receiver<Result<T, WriteRejection>>) -> Result<T, WriteRejection> {
    rx.await.unwrap_or_else(|_| Err(CeteError::Unavailable("raft is restarting; retry".into()).into()))
}

impl Handler<ClientWrite> for RaftActor {
    type Result = ResponseFuture<Result<CommandResponse, WriteRejection>>;

    fn handle(&mut self, msg: ClientWrite, ctx: &mut Self::Context) -> Self::Result {
        if let Some(leader) = self.leader_elsewhere() {
            return Box::pin(std::future::ready(Err(WriteRejection::NotLeader { leader: Some(leader) })));
        }
        let (tx, rx) = oneshot::channel();
        self.pending.write_bytes += msg.0.payload_bytes();
        self.pending.writes.push((msg.0, tx));
        self.propose(ctx);
        Box::pin(closed(rx))
    }
}

impl RaftActor {
    /// Proposes the waiting writes as one entry, unless the pipeline is full (then the batch
    /// keeps growing until a proposal completes).
    fn propose(&mut self, ctx: &mut Context<Self>) {
        while !self.pending.writes.is_empty() && self.pending.proposals_in_flight < MAX_PROPOSALS_IN_FLIGHT {
            let take = self.batch_len();
            let batch: Vec<_> = self.pending.writes.drain(..take).collect();
            self.pending.write_bytes = self.pending.writes.iter().map(|(c, _)| c.payload_bytes()).sum();
            self.pending.proposals_in_flight += 1;
            let raft = self.raft.clone();
            let me = self.parts.me.clone();
            let proposal = async move {
                let (commands, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                let entry =
                    if commands.len() == 1 { commands.into_iter().next() } else { Some(Command::Batch(commands)) };
                let Some(entry) = entry else { return };
                await_writable(&raft).await;
                let result = match raft.client_write(entry).await {
                    Ok(written) => Ok(written.data),
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))
                        if f.reason == ForwardReason::LeaseExpired && f.leader_id.is_none() =>
                    {
                        // Raft had become leader a moment before its metrics said so (the
                        // check above passed), and no quorum has acknowledged it yet: once one
                        // has, the write is to be sent here again; its entry was never made.
                        match await_writable(&raft).await {
                            true => Err(WriteRejection::NotLeader { leader: Some(me) }),
                            false => {
                                Err(from_client_write_error(RaftError::APIError(ClientWriteError::ForwardToLeader(f))))
                            }
                        }
                    }
                    Err(e) => {
                        if let RaftError::APIError(ClientWriteError::ForwardToLeader(f)) = &e {
                            super::transfer::await_handover(&raft, f).await;
                        }
                        Err(from_client_write_error(e))
                    }
                };
                deliver(replies, result);
            };
            ctx.spawn(proposal.into_actor(self).map(|(), actor, ctx| {
                actor.pending.proposals_in_flight -= 1;
                actor.propose(ctx);
            }));
        }
    }

    /// How many waiting writes the next batch takes.
    fn batch_len(&self) -> usize {
        let mut bytes = 0;
        let mut count = 0;
        for (command, _) in self.pending.writes.iter().take(MAX_BATCH_COMMANDS) {
            bytes += command.payload_bytes();
            count += 1;
            if bytes >= MAX_BATCH_BYTES {
                break;
            }
        }
        count.max(1)
    }
}

/// openraft 0.10 turns a leader's writes away (`ForwardReason::LeaseExpired`) until a quorum
/// has acknowledged it, which a leader just elected has not yet: wait for that (a heartbeat
/// round), or for the leadership to end, rather than bounce the write straight back here.
/// Bounded: a leader no quorum answers has its writes refused as unavailable. True when this
/// node then leads with a quorum's acknowledgement.
async fn await_writable(raft: &super::Raft) -> bool {
    let leads = |m: &RaftMetrics| m.state == openraft::ServerState::Leader;
    let writable = move |m: &RaftMetrics| !leads(m) || m.last_quorum_acked.is_some();
    let metrics = raft.metrics().borrow_watched().clone();
    let metrics = match writable(&metrics) {
        true => Some(metrics),
        false => raft.wait(Some(ELECTION_WAIT)).metrics(writable, "a quorum acknowledging the new leader").await.ok(),
    };
    metrics.is_some_and(|m| leads(&m) && m.last_quorum_acked.is_some())
}

/// Hands each client its own part of a batch's outcome.
fn deliver(replies: Vec<Reply<CommandResponse>>, result: Result<CommandResponse, WriteRejection>) {
    match result {
        Ok(CommandResponse::Batch(responses)) if responses.len() == replies.len() => {
            for (reply, response) in replies.into_iter().zip(responses) {
                let _ = reply.send(Ok(response));
            }
        }
        Ok(response) if replies.len() == 1 => {
            let _ = replies.into_iter().next().map(|reply| reply.send(Ok(response)));
        }
        Ok(other) => {
            let error = CeteError::Internal(format!("a batch of {} got the answer {other:?}", replies.len()));
            for reply in replies {
                let _ = reply.send(Err(error.clone().into()));
            }
        }
        Err(rejection) => {
            for reply in replies {
                let _ = reply.send(Err(rejection.duplicate()));
            }
        }
    }
}

/// The leader's half of a linearizable read (Raft's ReadIndex): confirm leadership with a
/// quorum and answer the index every read started now must see applied. Elsewhere: NotLeader.
///
/// Reads share confirmations: all reads waiting when a confirmation starts get its answer.
/// A read that arrives while one is in flight waits for the next: the index of a
/// confirmation that began before the read arrived could miss writes acknowledged before it.
#[derive(Message)]
#[rtype(result = "Result<Option<LogId>, WriteRejection>")]
pub struct ReadIndex;

impl Handler<ReadIndex> for RaftActor {
    type Result = ResponseFuture<Result<Option<LogId>, WriteRejection>>;

    fn handle(&mut self, _: ReadIndex, ctx: &mut Self::Context) -> Self::Result {
        if let Some(leader) = self.leader_elsewhere() {
            return Box::pin(std::future::ready(Err(WriteRejection::NotLeader { leader: Some(leader) })));
        }
        let (tx, rx) = oneshot::channel();
        self.pending.reads.push(tx);
        self.confirm_reads(ctx);
        Box::pin(closed(rx))
    }
}

impl RaftActor {
    fn confirm_reads(&mut self, ctx: &mut Context<Self>) {
        if self.pending.read_check_in_flight || self.pending.reads.is_empty() {
            return;
        }
        self.pending.read_check_in_flight = true;
        let waiting = std::mem::take(&mut self.pending.reads);
        let raft = self.raft.clone();
        let floor = self.read_floor;
        let check = async move {
            let deadline = tokio::time::Instant::now() + CONFIRM_READ;
            let result = loop {
                // ReadIndex, as on openraft 0.9: a quorum confirms the leadership after the
                // reads arrived (a lease read would trust the clocks instead).
                break match raft.get_read_log_id(ReadPolicy::ReadIndex).await {
                    // Never below what the log held at start (see `read_floor`). An index
                    // confirmed after the reads arrived is as good as one confirmed at once.
                    Ok((read_log_id, _applied)) => Ok(Some(*read_log_id.log_id()).max(floor)),
                    Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
                        super::transfer::await_handover(&raft, &f).await;
                        Err(WriteRejection::NotLeader { leader: f.leader_node })
                    }
                    Err(RaftError::APIError(_)) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(CONFIRM_RETRY_PAUSE).await;
                        continue;
                    }
                    Err(RaftError::APIError(_)) => Err(CeteError::Unavailable(format!(
                        "the leader could not reach a quorum to confirm a linearizable read within {CONFIRM_READ:?}"
                    ))
                    .into()),
                    Err(RaftError::Fatal(e)) => Err(CeteError::unavailable("raft has stopped", e).into()),
                };
            };
            for reply in waiting {
                let _ = reply.send(result.as_ref().map(|index| *index).map_err(WriteRejection::duplicate));
            }
        };
        ctx.spawn(check.into_actor(self).map(|(), actor, ctx| {
            actor.pending.read_check_in_flight = false;
            actor.confirm_reads(ctx);
        }));
    }
}

/// The reader's half: wait until this node has applied up to the read index.
async fn await_applied(raft: &super::Raft, index: Option<LogId>) -> CeteResult<()> {
    let Some(index) = index.map(|id| id.index) else {
        return Ok(());
    };
    if raft.metrics().borrow_watched().last_applied.map(|l| l.index) >= Some(index) {
        return Ok(());
    }
    raft.wait(Some(APPLY_WAIT))
        .applied_index_at_least(Some(index), "linearizable read")
        .await
        .map(|_| ())
        .map_err(|e| CeteError::unavailable("this node is too far behind the leader to read", e))
}

/// Wait until this node has applied up to `index`, a leader's read index (the reader's half
/// of a linearizable read): once it resolves, the local state holds every write acknowledged
/// before that index was confirmed.
#[derive(Message)]
#[rtype(result = "CeteResult<()>")]
pub struct AwaitApplied(pub Option<LogId>);

impl Handler<AwaitApplied> for RaftActor {
    type Result = ResponseFuture<CeteResult<()>>;

    fn handle(&mut self, msg: AwaitApplied, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        Box::pin(async move { await_applied(&raft, msg.0).await })
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
            // A leader that removed itself is still the one this node knows until the others
            // elect anew; it leads nothing, so wait for one the membership lists.
            let listed = |m: &RaftMetrics| {
                m.current_leader.is_some_and(|l| m.membership_config.membership().get_node(&l).is_some())
            };
            let metrics = raft.wait(Some(ELECTION_WAIT)).metrics(listed, "a leader").await.ok()?;
            let leader = metrics.current_leader?;
            metrics.membership_config.membership().get_node(&leader).cloned()
        })
    }
}

/// Wait (a few seconds at most) until a leader other than `replacing` is elected.
#[derive(Message)]
#[rtype(result = "Option<Member>")]
pub struct AwaitNewLeader {
    pub replacing: String,
}

impl Handler<AwaitNewLeader> for RaftActor {
    type Result = ResponseFuture<Option<Member>>;

    fn handle(&mut self, msg: AwaitNewLeader, _: &mut Self::Context) -> Self::Result {
        let raft = self.raft.clone();
        let old = crate::command::node_id(&msg.replacing);
        // A leader other than `replacing` that this node already follows is the answer at once
        // (during a leader transfer the successor is often known before the request comes
        // back). Otherwise only an election after this moment counts: the term this node has
        // seen says nothing yet about `replacing` being gone.
        let metrics = raft.metrics();
        let (term, known) = {
            let metrics = metrics.borrow_watched();
            (metrics.current_term, metrics.current_leader)
        };
        let term = if known.is_some_and(|l| l != old) { term.saturating_sub(1) } else { term };
        Box::pin(async move {
            let wait = raft.wait(Some(ELECTION_WAIT));
            let elected = move |m: &RaftMetrics| m.current_term > term && m.current_leader.is_some_and(|l| l != old);
            let metrics = wait.metrics(elected, "a new leader").await.ok()?;
            let leader = metrics.current_leader?;
            metrics.membership_config.membership().get_node(&leader).cloned()
        })
    }
}
