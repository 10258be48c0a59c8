//! RaftActor: the owner of the openraft instance, and of nothing else. Client writes, read
//! indexes, snapshots and membership changes all enter Raft here — the leader-only ones from
//! the router ([`crate::routing`]), which decides where a request is served; this actor only
//! serves it or says that the leader is elsewhere. What it tells the rest of the node goes to
//! the [`RaftObservers`] it is given: Raft's metrics and a reset for the ClusterActor, where
//! the leader is for the router, and [`LeaderAppending`] for the router's batcher.
//!
//! Handlers never block the actor: each clones the `Raft` handle (an `Arc`) into a future, so
//! many writes are in flight at once and openraft and the log store batch them. The one
//! exception is [`membership::ResetForJoin`], which replaces the Raft instance and holds the
//! mailbox while it does.

mod client;
pub mod handover;
pub mod log_store;
mod membership;
pub mod network;
pub mod peer_rpc;
pub mod state_machine;
mod transfer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures::StreamExt;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, ForwardReason, RaftError};

pub use self::client::*;
pub use self::membership::*;
pub use self::transfer::*;
use crate::command::{LogId, Member, NodeId, RaftMetrics, TypeConfig};
use crate::error::{CeteError, CeteResult};
use crate::raft::log_store::LogStore;
use crate::raft::network::Network;
use crate::raft::state_machine::StateMachine;
use crate::store::StoreActor;

/// openraft on Cete's types, with its state machine the adapter to the StoreActor.
pub type Raft = openraft::Raft<TypeConfig, state_machine::StateMachine>;

/// How long a snapshot request waits for the snapshot to be built.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(300);

/// Everything needed to (re)build the Raft instance.
#[derive(Clone)]
pub struct RaftParts {
    pub me: Member,
    pub id: NodeId,
    pub config: Arc<openraft::Config>,
    pub network: Network,
    pub log_store: LogStore,
    pub store: Addr<StoreActor>,
    pub snapshot_dir: PathBuf,
    /// The cluster's id: drawn when this node forms a cluster, forgotten when it gives its
    /// state up to join another.
    pub identity: crate::wire::identity::ClusterIdentity,
}

/// A Raft instance, and the floor under every read index it hands out.
pub struct RaftInstance {
    pub raft: Raft,
    /// The last log id this node held when the instance started. See [`read_floor`].
    pub read_floor: Option<LogId>,
}

impl RaftParts {
    pub async fn build(&self) -> CeteResult<RaftInstance> {
        let state_machine = StateMachine::new(self.store.clone(), self.snapshot_dir.clone())
            .map_err(|e| CeteError::internal("snapshot directory", e))?;
        let read_floor = read_floor(&self.log_store).await?;
        let raft = Raft::new(self.id, self.config.clone(), self.network.clone(), self.log_store.clone(), state_machine)
            .await
            .map_err(|e| CeteError::internal("cannot start raft", e))?;
        Ok(RaftInstance { raft, read_floor })
    }
}

/// The floor of the read indexes a Raft instance hands out: the last log id it held at start.
///
/// Why it was needed: openraft 0.9 restored a node whose stored vote was its own and committed
/// as the leader of that same term, without an election, and answered a read index of
/// `max(first log id of its term, committed)`. After a crash `committed` is what was last
/// recorded (a hint written without fsync) and the store is as of its last durable commit, so
/// both could be behind writes that were acknowledged: the read was served from state older
/// than an acknowledged write (seen after a power cut of the whole cluster; `tests/crash.rs`).
///
/// On openraft 0.10 that restore is `enable_leader_restore`, and Cete turns it off (see
/// `system::raft_config`): it would be unsafe now, since the leader replicates before its own
/// flush, so an entry can be committed by two followers while the leader's copy is lost in
/// the same power cut. A restarted leader is a follower until it is elected again, in a term
/// above every term in any log; its read index is at or past the blank entry it appends in
/// that term, which comes after every entry it was elected with, so by Leader Completeness
/// after every acknowledged write. The floor therefore never wins any more (log ids order by
/// term first), and keeping it does no harm: it is a log id this node held, so it is at or
/// below any such read index, and a read still waits only for what the index asks. It stays
/// as a second guard should the restore ever be turned on again.
async fn read_floor(log_store: &LogStore) -> CeteResult<Option<LogId>> {
    log_store.last_log_id().map_err(|e| CeteError::internal("raft log", e))
}

pub struct RaftActor {
    raft: Raft,
    /// See [`read_floor`].
    read_floor: Option<LogId>,
    parts: RaftParts,
    observers: RaftObservers,
    metrics_feed: Option<SpawnHandle>,
    /// Which Raft instance the metrics feed is of: metrics a replaced instance sent before its
    /// feed was cancelled must not reach the ClusterActor after those of its successor.
    instance: u64,
    pending: client::Pending,
    /// What [`LeaderElsewhere`] last told.
    told_elsewhere: Option<Member>,
    /// What [`Leading`] last told.
    told_leading: Option<u64>,
}

/// Who hears what the RaftActor has to tell.
pub struct RaftObservers {
    /// Raft's metrics, each change (the ClusterActor).
    pub metrics: Recipient<MetricsUpdate>,
    /// The Raft state was replaced by an empty one (the ClusterActor).
    pub reset: Recipient<RaftStateReset>,
    /// A leader is appending entries to this node's log (the router's batcher).
    pub appending: Recipient<LeaderAppending>,
    /// Where the leader is, each time that changes (the router).
    pub leader: Recipient<LeaderElsewhere>,
    /// Whether this node leads, and in which term, each time that changes (the lease
    /// countdowns, [`crate::lease`]).
    pub leading: Recipient<Leading>,
    /// The index this node has applied up to (the router: a linearizable read whose index is
    /// applied already is answered without another message).
    pub applied: tokio::sync::watch::Sender<u64>,
}

/// Raft's latest metrics.
#[derive(Message)]
#[rtype(result = "()")]
pub struct MetricsUpdate(pub RaftMetrics);

/// The term this node leads in (None: it does not lead). As of the metrics last fed.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct Leading(pub Option<u64>);

/// This node's Raft state was replaced by an empty one, to join another cluster.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RaftStateReset;

/// The leader Raft names, when it is another node (None: this node leads, or no leader is
/// known). As of the metrics last fed, which may trail Raft by a moment.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeaderElsewhere(pub Option<Member>);

/// The leader has started a round: it is appending entries to this node's log.
#[derive(Message)]
#[rtype(result = "()")]
pub struct LeaderAppending;

impl RaftActor {
    pub fn new(instance: RaftInstance, parts: RaftParts, observers: RaftObservers) -> Self {
        RaftActor {
            raft: instance.raft,
            read_floor: instance.read_floor,
            parts,
            observers,
            metrics_feed: None,
            instance: 0,
            pending: client::Pending::default(),
            told_elsewhere: None,
            told_leading: None,
        }
    }

    /// The leader, when Raft's current metrics name another node: requests that only a leader
    /// can serve are turned away at once instead of queueing for openraft to refuse them.
    /// Read from Raft's metrics at the moment, not from the last ones this actor was fed: a
    /// caller that saw a new leader elected here (through `Raft::wait`) must not be turned away
    /// with the old one.
    fn leader_elsewhere(&self) -> Option<Member> {
        leader_elsewhere(&self.raft.metrics().borrow_watched(), self.parts.id).cloned()
    }

    /// Feeds this Raft instance's metrics to the ClusterActor (replacing an older feed).
    fn feed_metrics(&mut self, ctx: &mut Context<Self>) {
        if let Some(old) = self.metrics_feed.take() {
            ctx.cancel_future(old);
        }
        self.instance += 1;
        let instance = self.instance;
        self.metrics_feed = Some(ctx.add_stream(metrics_stream(&self.raft).map(move |m| (instance, m))));
    }
}

/// The leader `metrics` name, when it is another node than `me`.
fn leader_elsewhere(metrics: &RaftMetrics, me: NodeId) -> Option<&Member> {
    match metrics.current_leader {
        Some(leader) if leader != me && metrics.state != openraft::ServerState::Leader => {
            metrics.membership_config.membership().get_node(&leader)
        }
        _ => None,
    }
}

/// Raft's metrics as a stream: the current ones, then each change.
fn metrics_stream(raft: &Raft) -> impl futures::Stream<Item = RaftMetrics> {
    let mut metrics = raft.metrics();
    let current = metrics.borrow_and_update().clone();
    let changes = futures::stream::unfold(metrics, |mut metrics| async move {
        metrics.changed().await.ok()?;
        let latest = metrics.borrow_and_update().clone();
        Some((latest, metrics))
    });
    futures::stream::once(std::future::ready(current)).chain(changes)
}

impl Actor for RaftActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        self.feed_metrics(ctx);
    }
}

impl StreamHandler<(u64, RaftMetrics)> for RaftActor {
    fn handle(&mut self, (instance, metrics): (u64, RaftMetrics), _: &mut Self::Context) {
        if instance != self.instance {
            return;
        }
        let elsewhere = leader_elsewhere(&metrics, self.parts.id);
        if elsewhere != self.told_elsewhere.as_ref() {
            self.told_elsewhere = elsewhere.cloned();
            self.observers.leader.do_send(LeaderElsewhere(self.told_elsewhere.clone()));
        }
        let leading = (metrics.state == openraft::ServerState::Leader).then_some(metrics.current_term);
        if leading != self.told_leading {
            self.told_leading = leading;
            self.observers.leading.do_send(Leading(leading));
        }
        let applied = metrics.last_applied.map_or(0, |id| id.index);
        self.observers.applied.send_if_modified(|known| std::mem::replace(known, applied) != applied);
        self.observers.metrics.do_send(MetricsUpdate(metrics));
    }

    /// A replaced Raft instance ends its feed; the actor lives on.
    fn finished(&mut self, _: &mut Self::Context) {}
}

/// Why a request could not be served here: a real error, or "the leader is elsewhere", which
/// the caller routes to the leader instead of answering the client with it.
#[derive(Debug)]
pub enum WriteRejection {
    Failed(CeteError),
    NotLeader { leader: Option<Member> },
}

impl WriteRejection {
    /// The same rejection, for another waiter of a shared outcome.
    pub fn duplicate(&self) -> Self {
        match self {
            WriteRejection::Failed(e) => WriteRejection::Failed(e.clone()),
            WriteRejection::NotLeader { leader } => WriteRejection::NotLeader { leader: leader.clone() },
        }
    }
}

impl From<CeteError> for WriteRejection {
    fn from(e: CeteError) -> Self {
        WriteRejection::Failed(e)
    }
}

fn from_client_write_error(err: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> WriteRejection {
    match err {
        // Leading, but no quorum has acknowledged this node for a lease: it may have been
        // replaced already, and it cannot commit anything now (see `client::await_writable`).
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward))
            if forward.reason == ForwardReason::LeaseExpired && forward.leader_id.is_none() =>
        {
            WriteRejection::Failed(CeteError::Unavailable(
                "this node leads but no quorum has acknowledged it lately: it cannot take writes".into(),
            ))
        }
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            WriteRejection::NotLeader { leader: forward.leader_node }
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => WriteRejection::Failed(membership_error(e)),
        // The entry was appended here, then dropped for another leader's log: it may still
        // commit there, so sending it again (with a new request id) could apply it twice.
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => WriteRejection::Failed(CeteError::Unavailable(
            "the leader changed before this write was committed; it may or may not have been applied".into(),
        )),
        RaftError::APIError(e) => WriteRejection::Failed(CeteError::Unavailable(format!("write refused: {e}"))),
        RaftError::Fatal(fatal) => WriteRejection::Failed(CeteError::unavailable("raft has stopped", fatal)),
    }
}

fn membership_error(e: openraft::type_config::alias::ChangeMembershipErrorOf<TypeConfig>) -> CeteError {
    use openraft::error::ChangeMembershipError;
    match e {
        ChangeMembershipError::InProgress(_) => {
            CeteError::Unavailable(format!("another membership change is in progress: {e}"))
        }
        _ => CeteError::InvalidArgument(format!("membership change refused: {e}")),
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
            let applied = raft.metrics().borrow_watched().last_applied;
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

/// The current Raft metrics (state, term, leader, indexes, membership).
#[derive(Message)]
#[rtype(result = "RaftMetrics")]
pub struct CurrentMetrics;

impl Handler<CurrentMetrics> for RaftActor {
    type Result = MessageResult<CurrentMetrics>;

    fn handle(&mut self, _: CurrentMetrics, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.raft.metrics().borrow_watched().clone())
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
