//! RaftActor: the owner of the openraft instance. Client writes, read barriers, snapshots and
//! membership changes all enter Raft here; Raft's metrics leave here for the ClusterActor.
//!
//! Handlers never block the actor: each clones the `Raft` handle (an `Arc`) into a future, so
//! many writes are in flight at once and openraft and the log store batch them. The one
//! exception is [`membership::ResetForJoin`], which replaces the Raft instance and holds the
//! mailbox while it does.

mod client;
mod membership;
pub mod peer_rpc;
mod transfer;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::RaftMetrics;
use tokio_stream::wrappers::WatchStream;

pub use self::client::*;
pub use self::membership::*;
pub use self::transfer::*;
use crate::cluster::{ClusterActor, MetricsUpdate};
use crate::command::{LogId, Member, NodeId, Raft};
use crate::connection::NodeHandles;
use crate::error::{CeteError, CeteResult};
use crate::log_store::LogStore;
use crate::network::Network;
use crate::state_machine::StateMachine;
use crate::store::StoreActor;

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
/// Why: openraft 0.9 restores a node whose stored vote is its own and committed as the leader
/// of that same term, without an election, and answers a read index of `max(first log id of
/// its term, committed)`. After a crash `committed` is what was last recorded (a hint written
/// without fsync) and the store is as of its last durable commit, so both can be behind
/// writes that were acknowledged: every node has applied that far, and the read would be
/// served from state older than an acknowledged write (seen after a power cut of the whole
/// cluster; `tests/crash.rs`).
///
/// Why it is enough: a write acknowledged before a read began is committed, so it is in the
/// log of the leader that answers the read index. If that leader was elected after it
/// started, its term is above every term in its log at start, openraft's index (at or past
/// its blank entry of the new term) already covers the whole log it was elected with, and
/// the floor never wins (log ids order by term first). If it was restored in the term it
/// stopped in, an acknowledged write of that term was fsynced in its own log before it was
/// replicated (openraft 0.9 flushes the leader's append before it sends it), and one of an
/// earlier term is in its log by Leader Completeness; either way it is at or below the last
/// log id it started with, or it was committed after the start and openraft's `committed`
/// covers it. The reader then waits until it has applied up to the index, which only
/// committed entries reach.
///
/// On openraft 0.10 the leader replicates before its own flush, so an entry can be committed
/// by two followers while the leader's copy is lost in the same power cut: the floor is then
/// not enough on its own, and `enable_leader_restore` must stay off (a restarted leader is
/// re-elected, and its blank entry of the new term carries the read index past everything).
async fn read_floor(log_store: &LogStore) -> CeteResult<Option<LogId>> {
    use openraft::storage::RaftLogStorage;
    let mut log_store = log_store.clone();
    let state = log_store.get_log_state().await.map_err(|e| CeteError::internal("raft log", e))?;
    Ok(state.last_log_id)
}

pub struct RaftActor {
    raft: Raft,
    /// See [`read_floor`].
    read_floor: Option<LogId>,
    parts: RaftParts,
    cluster: Addr<ClusterActor>,
    metrics_feed: Option<SpawnHandle>,
    pending: client::Pending,
    /// The leader, when the latest metrics name another node: requests that only a leader
    /// can serve are turned away at once instead of queueing for openraft to refuse them.
    leader_elsewhere: Option<Member>,
    /// The node's actors, for routing requests to the leader.
    handles: NodeHandles,
}

impl RaftActor {
    pub fn new(instance: RaftInstance, parts: RaftParts, cluster: Addr<ClusterActor>, handles: NodeHandles) -> Self {
        RaftActor {
            handles,
            raft: instance.raft,
            read_floor: instance.read_floor,
            parts,
            cluster,
            metrics_feed: None,
            pending: client::Pending::default(),
            leader_elsewhere: None,
        }
    }

    /// Feeds this Raft instance's metrics to the ClusterActor (replacing an older feed).
    fn feed_metrics(&mut self, ctx: &mut Context<Self>) {
        if let Some(old) = self.metrics_feed.take() {
            ctx.cancel_future(old);
        }
        self.metrics_feed = Some(ctx.add_stream(WatchStream::new(self.raft.metrics())));
    }
}

impl Actor for RaftActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        self.feed_metrics(ctx);
    }
}

impl StreamHandler<RaftMetrics<NodeId, Member>> for RaftActor {
    fn handle(&mut self, metrics: RaftMetrics<NodeId, Member>, _: &mut Self::Context) {
        self.leader_elsewhere = match metrics.current_leader {
            Some(leader) if leader != self.parts.id && metrics.state != openraft::ServerState::Leader => {
                metrics.membership_config.membership().get_node(&leader).cloned()
            }
            _ => None,
        };
        self.cluster.do_send(MetricsUpdate(metrics));
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
