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

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::RaftMetrics;
use tokio_stream::wrappers::WatchStream;

pub use self::client::*;
pub use self::membership::*;
use crate::cluster::{ClusterActor, MetricsUpdate};
use crate::command::{Member, NodeId, Raft};
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

impl RaftParts {
    pub async fn build(&self) -> CeteResult<Raft> {
        let state_machine = StateMachine::new(self.store.clone(), self.snapshot_dir.clone())
            .map_err(|e| CeteError::internal("snapshot directory", e))?;
        Raft::new(self.id, self.config.clone(), self.network.clone(), self.log_store.clone(), state_machine)
            .await
            .map_err(|e| CeteError::internal("cannot start raft", e))
    }
}

pub struct RaftActor {
    raft: Raft,
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
    pub fn new(raft: Raft, parts: RaftParts, cluster: Addr<ClusterActor>, handles: NodeHandles) -> Self {
        RaftActor {
            handles,
            raft,
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
