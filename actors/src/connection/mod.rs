//! ConnectionActor: one per client connection on the HTTP or gRPC front door, started when
//! the connection opens and stopped when it closes. Front-door handlers turn a request into
//! one of the messages below and hand the reply back; everything the request means — checks,
//! consistency, which actor serves it — happens here. What only the leader serves goes to the
//! router ([`crate::routing`]), which finds the leader.

pub mod backup;
pub mod lease;
pub mod watch;

use std::future::Future;
use std::net::SocketAddr;

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::cluster::node::{ClusterInfo, NodeInfo};
use crate::cluster::peer::{ForwardReply, Forwarded};
use crate::cluster::status::{DescribeRaft, DescribeStatus, StatusReport};
use crate::cluster::{
    ClusterActor, DescribeCluster, DescribeNode, DescribeToPeer, LatestMetrics, Readiness, WasRemoved,
};
use crate::command::{Command, CommandResponse, Condition, Member, Txn, TxnResponse};
use crate::connection::watch::{Change, WatchActor};
use crate::deadlines::{CLIENT_READ, CLIENT_WRITE};
use crate::error::{CeteError, CeteResult};
use crate::raft::{RaftActor, ResetForJoin, Succeed, TakeSnapshot};
use crate::routing::{self, LeaderRequest, RouterActor, ServeHere};
use crate::store::{
    AtRevision, ReadKey, Scan, ScanPage, ScanRange, Stats, StoreActor, StoreRevision, StoredValue, WatcherCount,
};

/// The node-wide actors and limits every connection talks to.
#[derive(Clone)]
pub struct NodeHandles {
    /// This node's name.
    pub me: String,
    pub raft: Addr<RaftActor>,
    /// Where requests that only the leader serves go.
    pub router: Addr<RouterActor>,
    pub store: Addr<StoreActor>,
    pub cluster: Addr<ClusterActor>,
    pub max_value_bytes: usize,
    /// Where backups are written before they are sent (beside the data, not in /tmp).
    pub data_directory: std::path::PathBuf,
    /// The cluster's id: a peer's request must carry it ([`crate::wire::identity`]).
    pub identity: crate::wire::identity::ClusterIdentity,
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Consistency {
    /// Sees every write acknowledged before the read began (the default).
    #[default]
    Linearizable,
    /// Answered from this node's applied state at once; may miss the latest writes.
    Serializable,
}

impl std::str::FromStr for Consistency {
    type Err = CeteError;

    /// `linearizable` or `serializable`, in any case: how both front doors name it.
    fn from_str(name: &str) -> CeteResult<Self> {
        match name.to_ascii_lowercase().as_str() {
            "linearizable" => Ok(Consistency::Linearizable),
            "serializable" => Ok(Consistency::Serializable),
            _ => Err(CeteError::InvalidArgument(format!(
                "consistency must be linearizable or serializable, not {name:?}"
            ))),
        }
    }
}

/// One client connection (or one peer's link) on a front door.
///
/// Why an actor and not a plain handle: what belongs to one connection lives here. It knows
/// who is on the other end (the door and the remote address, and where mTLS is configured
/// the client's certificate: the seat of per-client authorisation), and it owns the
/// connection's requests in flight: each is counted in `cete_client_requests_in_flight`,
/// and when the connection closes every wait still open is given up at once instead of
/// running on to its deadline for a reply nobody reads. (A write already handed to Raft
/// still commits or not; only the waiting ends.)
pub struct ConnectionActor {
    handles: NodeHandles,
    door: &'static str,
    peer: Option<SocketAddr>,
    /// Cancelled when the connection closes.
    closed: CancellationToken,
    /// This door's series of `cete_client_requests_in_flight`, looked up once.
    in_flight: prometheus::IntGauge,
}

impl ConnectionActor {
    pub fn new(handles: NodeHandles, door: &'static str, peer: Option<SocketAddr>) -> Self {
        let in_flight = crate::metrics::IN_FLIGHT.with_label_values(&[door]);
        ConnectionActor { handles, door, peer, closed: CancellationToken::new(), in_flight }
    }

    /// Serves one request of this connection: counted while in flight, and ended with
    /// [`Closable::closed`] if the connection closes first.
    fn serve<O: Closable + 'static>(&self, request: impl Future<Output = O> + 'static) -> ResponseFuture<O> {
        let closed = self.closed.clone();
        let in_flight = InFlight::count(&self.in_flight);
        Box::pin(async move {
            let _in_flight = in_flight;
            tokio::select! {
                biased;
                answer = request => answer,
                () = closed.cancelled() => O::closed(),
            }
        })
    }
}

/// The answer to a request whose connection closed before it was served (nobody reads it).
trait Closable {
    fn closed() -> Self;
}

fn connection_closed() -> CeteError {
    CeteError::Unavailable("the connection closed before the request was served".into())
}

impl<T> Closable for CeteResult<T> {
    fn closed() -> Self {
        Err(connection_closed())
    }
}

impl Closable for Result<(), String> {
    fn closed() -> Self {
        Err(connection_closed().to_string())
    }
}

impl Closable for ForwardReply {
    fn closed() -> Self {
        ForwardReply::Failed(connection_closed())
    }
}

/// One request in `cete_client_requests_in_flight`, until dropped.
struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn count(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Actor for ConnectionActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // HTTP/2 multiplexes many requests on one connection; handlers return at once, so a
        // deep mailbox only absorbs bursts.
        ctx.set_mailbox_capacity(1024);
        log::debug!("{} connection from {:?} opened", self.door, self.peer);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.closed.cancel();
        log::debug!("{} connection from {:?} closed", self.door, self.peer);
    }
}

/// The longest key a write may store, in bytes of UTF-8. A key is in the URL of every HTTP
/// request for it (where 8 KiB is a common ceiling of proxies and clients, and one byte may
/// take three once percent-encoded) and in every log entry, snapshot and watch event that
/// touches it; a key is a name, and 4 KiB is ample for one.
pub const MAX_KEY_BYTES: usize = 4096;

fn check_key(key: &str) -> CeteResult<()> {
    if key.is_empty() {
        return Err(CeteError::InvalidArgument("the key must not be empty".into()));
    }
    Ok(())
}

/// A key a write may store. Reads and deletes only need a key that is not empty, so that a
/// longer one stored before the limit existed can still be read and deleted. Too long a key is
/// bad input (HTTP 400, gRPC INVALID_ARGUMENT), not 414: the limit is on the key's bytes,
/// whichever door it came by, not on the length of a URL.
fn check_new_key(key: &str) -> CeteResult<()> {
    check_key(key)?;
    if key.len() > MAX_KEY_BYTES {
        return Err(CeteError::InvalidArgument(format!(
            "the key is {} bytes, over the limit of {MAX_KEY_BYTES} bytes",
            key.len()
        )));
    }
    Ok(())
}

/// Routes a write to the leader; answers the store's revision after it (None: the store has
/// no revisions yet, or the write was a duplicate of one applied before), or
/// [`CeteError::ConditionFailed`] for a guarded write whose condition did not hold.
async fn write(handles: NodeHandles, command: Command) -> CeteResult<Option<u64>> {
    match propose(&handles, command).await? {
        CommandResponse::Refused { mod_revision } => Err(CeteError::ConditionFailed { mod_revision }),
        CommandResponse::NoSuchLease { lease } => Err(CeteError::lease_not_found(lease)),
        response => Ok(response.revision()),
    }
}

/// Routes a command to the leader; answers what applying it answered there.
async fn propose(handles: &NodeHandles, command: Command) -> CeteResult<CommandResponse> {
    let routed = tokio::time::timeout(CLIENT_WRITE, handles.router.send(routing::Write(command)));
    routed.await.map_err(|_| {
        CeteError::Unavailable(format!(
            "the write was not committed within {CLIENT_WRITE:?} (no quorum reachable?); it may or may not \
             take effect"
        ))
    })??
}

/// Refuses what needs revisions while the store has none (its cluster has not started them),
/// rather than send a command that a member of an earlier build could not decode.
async fn needs_revisions(handles: &NodeHandles, what: &str) -> CeteResult<()> {
    if handles.store.send(StoreRevision).await??.is_none() {
        return Err(CeteError::Unavailable(format!(
            "{what} need revisions, which this cluster has not started yet (its leader starts them once every \
             member runs a build that has them)"
        )));
    }
    Ok(())
}

/// `command` under `condition`, if any. A condition is judged by revisions, so a node whose
/// store has none yet (its cluster has not started them) refuses it rather than send a
/// command that a member of an earlier build could not decode.
async fn guarded(handles: &NodeHandles, command: Command, condition: Option<Condition>) -> CeteResult<Command> {
    let Some(condition) = condition else { return Ok(command) };
    needs_revisions(handles, "conditional writes").await?;
    Ok(Command::Guarded { condition, command: Box::new(command) })
}

/// Linearizable: ask the leader for its read index (confirming its leadership with a quorum),
/// then wait until this node has applied that far. Serializable: read what is applied here.
async fn read_barrier(handles: &NodeHandles, consistency: Consistency) -> CeteResult<()> {
    if consistency == Consistency::Serializable {
        return Ok(());
    }
    let barrier = handles.router.send(routing::LinearizableRead);
    tokio::time::timeout(CLIENT_READ, barrier).await.map_err(|_| {
        CeteError::Unavailable(format!(
            "no leader confirmed this read within {CLIENT_READ:?}; the cluster may have lost its quorum \
             (a serializable read answers from this node's own state)"
        ))
    })??
}

/// Read one key; `NotFound` when it is missing.
#[derive(Message)]
#[rtype(result = "CeteResult<AtRevision<StoredValue>>")]
pub struct KvGet {
    pub key: String,
    pub consistency: Consistency,
}

impl Handler<KvGet> for ConnectionActor {
    type Result = ResponseFuture<CeteResult<AtRevision<StoredValue>>>;

    fn handle(&mut self, msg: KvGet, _: &mut Self::Context) -> Self::Result {
        let handles = self.handles.clone();
        self.serve(async move {
            check_key(&msg.key)?;
            read_barrier(&handles, msg.consistency).await?;
            let read = handles.store.send(ReadKey(msg.key.clone())).await??;
            match read.found {
                Some(found) => Ok(AtRevision { found, revision: read.revision }),
                None => Err(CeteError::NotFound(format!("key {:?} not found", msg.key))),
            }
        })
    }
}

/// A page of the keys under a prefix, in key order ([`ScanRange`]).
#[derive(Message)]
#[rtype(result = "CeteResult<ScanPage>")]
pub struct KvScan {
    pub range: ScanRange,
    pub consistency: Consistency,
}

impl Handler<KvScan> for ConnectionActor {
    type Result = ResponseFuture<CeteResult<ScanPage>>;

    fn handle(&mut self, msg: KvScan, _: &mut Self::Context) -> Self::Result {
        let handles = self.handles.clone();
        self.serve(async move {
            if msg.range.limit == Some(0) {
                return Err(CeteError::InvalidArgument("limit must be at least 1 (leave it out for every key)".into()));
            }
            read_barrier(&handles, msg.consistency).await?;
            handles.store.send(Scan(msg.range)).await?
        })
    }
}

/// Run a transaction ([`crate::command::txn`]) on the leader, through the log (so its reads
/// are linearizable and its writes one revision).
#[derive(Message)]
#[rtype(result = "CeteResult<TxnResponse>")]
pub struct KvTxn(pub Txn);

impl Handler<KvTxn> for ConnectionActor {
    type Result = ResponseFuture<CeteResult<TxnResponse>>;

    fn handle(&mut self, msg: KvTxn, _: &mut Self::Context) -> Self::Result {
        let handles = self.handles.clone();
        self.serve(async move {
            msg.0.check(MAX_KEY_BYTES, handles.max_value_bytes).map_err(CeteError::InvalidArgument)?;
            needs_revisions(&handles, "transactions").await?;
            match propose(&handles, Command::Txn(msg.0)).await? {
                CommandResponse::Txn(answer) => Ok(answer),
                CommandResponse::NoSuchLease { lease } => Err(CeteError::lease_not_found(lease)),
                // A resend that found its first sending applied: what it answered is gone.
                CommandResponse::Applied => Err(CeteError::Unavailable(
                    "the transaction was applied, but its answer was lost in a leader change; read the keys to \
                     see what it did"
                        .into(),
                )),
                other => Err(CeteError::Internal(format!("a transaction was answered {other:?}"))),
            }
        })
    }
}

/// Store a value (acknowledged once durable on a quorum and applied); answers the store's
/// revision after it.
#[derive(Message)]
#[rtype(result = "CeteResult<Option<u64>>")]
pub struct KvPut {
    pub key: String,
    pub value: Bytes,
    pub content_type: Option<String>,
    /// Store it only if the key meets this (compare-and-swap).
    pub condition: Option<Condition>,
    /// Attach the key to this lease (None or 0: to none; a write detaches the key from the
    /// lease it had).
    pub lease: Option<u64>,
}

impl Handler<KvPut> for ConnectionActor {
    type Result = ResponseFuture<CeteResult<Option<u64>>>;

    fn handle(&mut self, msg: KvPut, _: &mut Self::Context) -> Self::Result {
        let handles = self.handles.clone();
        self.serve(async move {
            check_new_key(&msg.key)?;
            if msg.value.len() > handles.max_value_bytes {
                return Err(CeteError::TooLarge {
                    what: "the value".into(),
                    size: msg.value.len(),
                    limit: handles.max_value_bytes,
                });
            }
            let (key, value, content_type) = (msg.key, msg.value, msg.content_type);
            let set = match msg.lease.filter(|lease| *lease != 0) {
                Some(lease) => {
                    needs_revisions(&handles, "leases").await?;
                    Command::SetLeased { key, value, content_type, lease }
                }
                None => Command::Set { key, value, content_type },
            };
            let command = guarded(&handles, set, msg.condition).await?;
            write(handles, command).await
        })
    }
}

/// Delete a key (deleting a missing key succeeds); answers the store's revision after it.
#[derive(Message)]
#[rtype(result = "CeteResult<Option<u64>>")]
pub struct KvDelete {
    pub key: String,
    /// Delete it only if the key meets this.
    pub condition: Option<Condition>,
}

impl Handler<KvDelete> for ConnectionActor {
    type Result = ResponseFuture<CeteResult<Option<u64>>>;

    fn handle(&mut self, msg: KvDelete, _: &mut Self::Context) -> Self::Result {
        let handles = self.handles.clone();
        self.serve(async move {
            check_key(&msg.key)?;
            let command = guarded(&handles, Command::Delete { key: msg.key }, msg.condition).await?;
            write(handles, command).await
        })
    }
}

/// This node's addresses and state.
#[derive(Message)]
#[rtype(result = "CeteResult<NodeInfo>")]
pub struct NodeStatus;

impl Handler<NodeStatus> for ConnectionActor {
    type Result = ResponseFuture<CeteResult<NodeInfo>>;

    fn handle(&mut self, _: NodeStatus, _: &mut Self::Context) -> Self::Result {
        let cluster = self.handles.cluster.clone();
        self.serve(async move { Ok(cluster.send(DescribeNode).await?) })
    }
}

/// Every member with its state, and the leader.
#[derive(Message)]
#[rtype(result = "CeteResult<ClusterInfo>")]
pub struct ClusterStatus;

impl Handler<ClusterStatus> for ConnectionActor {
    type Result = ResponseFuture<CeteResult<ClusterInfo>>;

    fn handle(&mut self, _: ClusterStatus, _: &mut Self::Context) -> Self::Result {
        let cluster = self.handles.cluster.clone();
        self.serve(async move { Ok(cluster.send(DescribeCluster).await?) })
    }
}

/// Every member's Raft progress, each as it answered (`/v1/status`).
#[derive(Message)]
#[rtype(result = "CeteResult<StatusReport>")]
pub struct RaftProgress;

impl Handler<RaftProgress> for ConnectionActor {
    type Result = ResponseFuture<CeteResult<StatusReport>>;

    fn handle(&mut self, _: RaftProgress, _: &mut Self::Context) -> Self::Result {
        let (cluster, store) = (self.handles.cluster.clone(), self.handles.store.clone());
        self.serve(async move {
            let mut report = cluster.send(DescribeStatus).await?;
            report.revision = store.send(StoreRevision).await??;
            Ok(report)
        })
    }
}

/// Whether this node can serve (a leader is known); when not, why.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct ReadyCheck;

impl Handler<ReadyCheck> for ConnectionActor {
    type Result = ResponseFuture<Result<(), String>>;

    fn handle(&mut self, _: ReadyCheck, _: &mut Self::Context) -> Self::Result {
        let cluster = self.handles.cluster.clone();
        self.serve(async move { cluster.send(Readiness).await.unwrap_or_else(|e| Err(e.to_string())) })
    }
}

/// Take a Raft snapshot now.
#[derive(Message)]
#[rtype(result = "CeteResult<()>")]
pub struct Snapshot;

impl Handler<Snapshot> for ConnectionActor {
    type Result = ResponseFuture<CeteResult<()>>;

    fn handle(&mut self, _: Snapshot, _: &mut Self::Context) -> Self::Result {
        let raft = self.handles.raft.clone();
        self.serve(async move { raft.send(TakeSnapshot).await? })
    }
}

/// Add node `id` at the given addresses to the cluster.
#[derive(Message)]
#[rtype(result = "CeteResult<()>")]
pub struct JoinNode {
    pub id: String,
    pub node: NodeInfo,
}

impl Handler<JoinNode> for ConnectionActor {
    type Result = ResponseFuture<CeteResult<()>>;

    fn handle(&mut self, msg: JoinNode, _: &mut Self::Context) -> Self::Result {
        let handles = self.handles.clone();
        self.serve(async move {
            if msg.id.is_empty() {
                return Err(CeteError::InvalidArgument("the node id must not be empty".into()));
            }
            if msg.node.raft_address.is_empty() {
                return Err(CeteError::InvalidArgument(format!("node {} needs a raft_address", msg.id)));
            }
            let member = Member { name: msg.id, raft_address: msg.node.raft_address, metadata: msg.node.metadata };
            handles.router.send(routing::Join(member)).await?
        })
    }
}

/// Remove node `id` from the cluster.
#[derive(Message)]
#[rtype(result = "CeteResult<()>")]
pub struct LeaveNode {
    pub id: String,
}

impl Handler<LeaveNode> for ConnectionActor {
    type Result = ResponseFuture<CeteResult<()>>;

    fn handle(&mut self, msg: LeaveNode, _: &mut Self::Context) -> Self::Result {
        let handles = self.handles.clone();
        self.serve(async move {
            if msg.id.is_empty() {
                return Err(CeteError::InvalidArgument("the node id must not be empty".into()));
            }
            handles.router.send(routing::Leave(msg.id)).await?
        })
    }
}

/// Move the leadership to voter `to` (None: the follower the leader has replicated furthest)
/// and answer the leader's name once it has taken over.
#[derive(Message)]
#[rtype(result = "CeteResult<String>")]
pub struct TransferLeadership {
    pub to: Option<String>,
}

impl Handler<TransferLeadership> for ConnectionActor {
    type Result = ResponseFuture<CeteResult<String>>;

    fn handle(&mut self, msg: TransferLeadership, _: &mut Self::Context) -> Self::Result {
        let handles = self.handles.clone();
        self.serve(async move {
            let to = msg.to.filter(|id| !id.is_empty());
            handles.router.send(routing::TransferLeadership(to)).await?
        })
    }
}

/// A request a peer sent here over its link: one any peer serves, or one that only the leader
/// serves (this node being, as far as the peer knew, the leader), which the router serves here
/// and never routes on: the peer follows any leader change itself.
#[derive(Message)]
#[rtype(result = "ForwardReply")]
pub struct HandleForwarded(pub Forwarded);

impl Handler<HandleForwarded> for ConnectionActor {
    type Result = ResponseFuture<ForwardReply>;

    fn handle(&mut self, msg: HandleForwarded, _: &mut Self::Context) -> Self::Result {
        let handles = self.handles.clone();
        self.serve(async move {
            let result = match msg.0 {
                Forwarded::Status => {
                    handles.cluster.send(DescribeNode).await.map(ForwardReply::Status).map_err(Into::into)
                }
                Forwarded::Features => Ok(ForwardReply::Features(
                    crate::cluster::features::READ_BY_THIS_BUILD.iter().map(|f| f.to_string()).collect(),
                )),
                Forwarded::Poll => {
                    handles.cluster.send(DescribeToPeer).await.map(ForwardReply::Polled).map_err(Into::into)
                }
                Forwarded::RaftStatus => {
                    handles.cluster.send(DescribeRaft).await.map(ForwardReply::RaftStatus).map_err(Into::into)
                }
                Forwarded::PrepareToJoin => prepare_to_join(&handles).await.map(|()| ForwardReply::Done),
                Forwarded::Campaign { leaving } => {
                    handles.raft.send(Succeed { leaving }).await.map(|()| ForwardReply::Done).map_err(Into::into)
                }
                request => match LeaderRequest::try_from(request) {
                    Ok(request) => serve_here(&handles, request).await,
                    Err(other) => Err(CeteError::Internal(format!("{other:?} is not a leader request"))),
                },
            };
            result.unwrap_or_else(ForwardReply::Failed)
        })
    }
}

/// Serves a leader-only request from a peer through the router's "here".
async fn serve_here(handles: &NodeHandles, request: LeaderRequest) -> CeteResult<ForwardReply> {
    let crash_point = match &request {
        LeaderRequest::Write(_) | LeaderRequest::WriteBatch(_) => Some("routed-write-before-reply"),
        LeaderRequest::Leave(_) => Some("routed-leave-before-reply"),
        _ => None,
    };
    let answer = handles.router.send(ServeHere(request)).await?;
    if let Some(point) = crash_point.filter(|_| answer.is_ok()) {
        crate::failpoints::crash_point(point);
    }
    Ok(routing::to_wire(answer))
}

/// Gives up this node's own one-node state to be added to a cluster. A removed node cannot:
/// its Raft is stopped for good, and its data belongs to the cluster it left.
async fn prepare_to_join(handles: &NodeHandles) -> CeteResult<()> {
    if let Some(reason) = handles.cluster.send(WasRemoved).await? {
        return Err(CeteError::Conflict(format!(
            "{reason}; to join a cluster again, start it on an empty data directory"
        )));
    }
    handles.raft.send(ResetForJoin).await?
}

/// Open a watch stream of every change applied on this node under `prefix`.
#[derive(Message)]
#[rtype(result = "CeteResult<mpsc::Receiver<CeteResult<Change>>>")]
pub struct OpenWatch {
    pub prefix: String,
    /// Replay every change from this revision on first (None: only live changes).
    pub start_revision: Option<u64>,
}

impl Handler<OpenWatch> for ConnectionActor {
    type Result = ResponseFuture<CeteResult<mpsc::Receiver<CeteResult<Change>>>>;

    fn handle(&mut self, msg: OpenWatch, _: &mut Self::Context) -> Self::Result {
        Box::pin(WatchActor::open(self.handles.store.clone(), msg.prefix, msg.start_revision))
    }
}

/// The Prometheus text exposition of this node's metrics.
#[derive(Message)]
#[rtype(result = "CeteResult<String>")]
pub struct RenderMetrics;

impl Handler<RenderMetrics> for ConnectionActor {
    type Result = ResponseFuture<CeteResult<String>>;

    fn handle(&mut self, _: RenderMetrics, _: &mut Self::Context) -> Self::Result {
        let handles = self.handles.clone();
        // Not counted in flight: a scrape would count itself.
        Box::pin(async move {
            let raft = handles.cluster.send(LatestMetrics).await?;
            let stats = handles.store.send(Stats).await??;
            let watchers = handles.store.send(WatcherCount).await?;
            Ok(crate::metrics::render(&raft, stats, watchers))
        })
    }
}

/// The connection has closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseConnection;

impl Handler<CloseConnection> for ConnectionActor {
    type Result = ();

    fn handle(&mut self, _: CloseConnection, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
