//! `kvs.KVS`: each rpc finds its connection's actor, sends it one message, and maps the reply.

use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use bytes::Bytes;
use cete_actors::connection::*;
use cete_actors::metrics::{LATENCY, REQUESTS};
use cete_actors::store::ScanRange;
use cete_proto::kvs::{self, kvs_server::Kvs};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::{backup, connection_of, lease, status, txn};
use crate::stopping::Stopping;

use cete_actors::command::Condition;
use cete_proto::{
    CONSISTENCY_METADATA as CONSISTENCY_KEY, IF_ABSENT_METADATA, IF_EXISTS_METADATA, IF_MOD_REVISION_METADATA,
    WATCH_PREFIX_METADATA as WATCH_PREFIX_KEY, WATCH_START_REVISION_METADATA,
};

pub struct KvsService {
    /// Ends watch streams when this node stops (see [`Stopping`]).
    stopping: Stopping,
}

impl KvsService {
    pub fn new(stopping: Stopping) -> Self {
        KvsService { stopping }
    }
}

/// Counts and times one rpc under its method name.
async fn observed<T>(endpoint: &'static str, call: impl Future<Output = Result<T, Status>>) -> Result<T, Status> {
    let started = Instant::now();
    let result = call.await;
    let code = match &result {
        Ok(_) => "Ok".to_string(),
        Err(s) => format!("{:?}", s.code()),
    };
    REQUESTS.with_label_values(&["grpc", endpoint, &code]).inc();
    LATENCY.with_label_values(&["grpc", endpoint]).observe(started.elapsed().as_secs_f64());
    result
}

fn consistency(metadata: &MetadataMap) -> Result<Consistency, Status> {
    match metadata.get(CONSISTENCY_KEY) {
        None => Ok(Consistency::Linearizable),
        Some(value) => value.to_str().unwrap_or("").parse().map_err(status),
    }
}

/// The condition of a conditional Set or Delete, from its metadata: `cete-if-mod-revision: R`,
/// `cete-if-exists: true` or `cete-if-absent: true` (one of them at most).
fn condition(metadata: &MetadataMap) -> Result<Option<Condition>, Status> {
    let text = |name: &str| -> Result<Option<&str>, Status> {
        metadata
            .get(name)
            .map(|value| value.to_str().map_err(|_| Status::invalid_argument(format!("{name} is not text"))))
            .transpose()
    };
    let flag = |name: &str| -> Result<bool, Status> {
        match text(name)? {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(other) => Err(Status::invalid_argument(format!("{name} must be true or false, not {other:?}"))),
        }
    };
    let mut conditions = Vec::new();
    if let Some(revision) = text(IF_MOD_REVISION_METADATA)? {
        let revision = revision.trim().parse().map_err(|_| {
            Status::invalid_argument(format!("{IF_MOD_REVISION_METADATA} must be a revision, not {revision:?}"))
        })?;
        conditions.push(Condition::ModRevision(revision));
    }
    if flag(IF_EXISTS_METADATA)? {
        conditions.push(Condition::Exists);
    }
    if flag(IF_ABSENT_METADATA)? {
        conditions.push(Condition::Absent);
    }
    match conditions.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(Status::invalid_argument("a write takes one condition at most")),
    }
}

fn mailbox(err: actix::MailboxError) -> Status {
    status(err.into())
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<kvs::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Kvs for KvsService {
    async fn liveness_check(&self, _: Request<()>) -> Result<Response<kvs::LivenessCheckResponse>, Status> {
        observed("LivenessCheck", async { Ok(Response::new(kvs::LivenessCheckResponse { alive: true })) }).await
    }

    async fn readiness_check(&self, request: Request<()>) -> Result<Response<kvs::ReadinessCheckResponse>, Status> {
        observed("ReadinessCheck", async {
            let ready = connection_of(&request)?.send(ReadyCheck).await.is_ok_and(|ready| ready.is_ok());
            Ok(Response::new(kvs::ReadinessCheckResponse { ready }))
        })
        .await
    }

    async fn node(&self, request: Request<()>) -> Result<Response<kvs::NodeResponse>, Status> {
        observed("Node", async {
            let node = connection_of(&request)?.send(NodeStatus).await.map_err(mailbox)?.map_err(status)?;
            Ok(Response::new(kvs::NodeResponse { node: Some(node.into()) }))
        })
        .await
    }

    async fn join(&self, request: Request<kvs::JoinRequest>) -> Result<Response<()>, Status> {
        observed("Join", async {
            let conn = connection_of(&request)?;
            let req = request.into_inner();
            let node = req.node.ok_or_else(|| Status::invalid_argument("JoinRequest needs a node"))?;
            conn.send(JoinNode { id: req.id, node: node.into() }).await.map_err(mailbox)?.map_err(status)?;
            Ok(Response::new(()))
        })
        .await
    }

    async fn cluster(&self, request: Request<()>) -> Result<Response<kvs::ClusterResponse>, Status> {
        observed("Cluster", async {
            let cluster = connection_of(&request)?.send(ClusterStatus).await.map_err(mailbox)?.map_err(status)?;
            Ok(Response::new(kvs::ClusterResponse { cluster: Some(cluster.into()) }))
        })
        .await
    }

    async fn status(&self, request: Request<()>) -> Result<Response<kvs::StatusResponse>, Status> {
        observed("Status", async {
            let report = connection_of(&request)?.send(RaftProgress).await.map_err(mailbox)?.map_err(status)?;
            Ok(Response::new(report.into()))
        })
        .await
    }

    async fn leave(&self, request: Request<kvs::LeaveRequest>) -> Result<Response<()>, Status> {
        observed("Leave", async {
            let conn = connection_of(&request)?;
            let id = request.into_inner().id;
            conn.send(LeaveNode { id }).await.map_err(mailbox)?.map_err(status)?;
            Ok(Response::new(()))
        })
        .await
    }

    async fn transfer_leader(
        &self,
        request: Request<kvs::TransferLeaderRequest>,
    ) -> Result<Response<kvs::TransferLeaderResponse>, Status> {
        observed("TransferLeader", async {
            let conn = connection_of(&request)?;
            let id = request.into_inner().id;
            let to = Some(id).filter(|id| !id.is_empty());
            let leader = conn.send(TransferLeadership { to }).await.map_err(mailbox)?.map_err(status)?;
            Ok(Response::new(kvs::TransferLeaderResponse { leader }))
        })
        .await
    }

    async fn snapshot(&self, request: Request<()>) -> Result<Response<()>, Status> {
        observed("Snapshot", async {
            connection_of(&request)?.send(Snapshot).await.map_err(mailbox)?.map_err(status)?;
            Ok(Response::new(()))
        })
        .await
    }

    async fn get(&self, request: Request<kvs::GetRequest>) -> Result<Response<kvs::GetResponse>, Status> {
        observed("Get", async {
            let conn = connection_of(&request)?;
            let consistency = consistency(request.metadata())?;
            let key = request.into_inner().key;
            let stored = conn.send(KvGet { key, consistency }).await.map_err(mailbox)?.map_err(status)?;
            let key = stored.found.revisions.unwrap_or_default();
            Ok(Response::new(kvs::GetResponse {
                value: stored.found.value,
                create_revision: key.create_revision as i64,
                mod_revision: key.mod_revision as i64,
                version: key.version as i64,
                lease: key.lease as i64,
                revision: stored.revision.unwrap_or_default() as i64,
            }))
        })
        .await
    }

    async fn scan(&self, request: Request<kvs::ScanRequest>) -> Result<Response<kvs::ScanResponse>, Status> {
        observed("Scan", async {
            let conn = connection_of(&request)?;
            let consistency = consistency(request.metadata())?;
            let scan = request.into_inner();
            let limit = match scan.limit {
                0 => None,
                n if n < 0 => return Err(Status::invalid_argument(format!("limit must not be negative, not {n}"))),
                n => Some(n as usize),
            };
            let range = ScanRange {
                prefix: scan.prefix,
                start_after: Some(scan.start_after).filter(|after| !after.is_empty()),
                limit,
                keys_only: scan.keys_only,
                count_only: scan.count_only,
            };
            let page = conn.send(KvScan { range, consistency }).await.map_err(mailbox)?.map_err(status)?;
            let values: Vec<Bytes> = page.pairs.iter().map(|item| item.value.clone()).collect();
            let pairs = page
                .pairs
                .into_iter()
                .map(|item| {
                    let key = item.revisions.unwrap_or_default();
                    kvs::KeyValuePair {
                        key: item.key,
                        value: item.value,
                        create_revision: key.create_revision as i64,
                        mod_revision: key.mod_revision as i64,
                        version: key.version as i64,
                        lease: key.lease as i64,
                    }
                })
                .collect();
            Ok(Response::new(kvs::ScanResponse {
                values,
                pairs,
                more: page.more,
                count: page.count as i64,
                revision: page.revision.unwrap_or_default() as i64,
            }))
        })
        .await
    }

    async fn set(&self, request: Request<kvs::SetRequest>) -> Result<Response<()>, Status> {
        observed("Set", async {
            let conn = connection_of(&request)?;
            let condition = condition(request.metadata())?;
            let req = request.into_inner();
            let lease = u64::try_from(req.lease)
                .map_err(|_| Status::invalid_argument(format!("no lease has id {}", req.lease)))?;
            let put = KvPut { key: req.key, value: req.value, content_type: None, condition, lease: Some(lease) };
            let revision = conn.send(put).await.map_err(mailbox)?.map_err(status)?;
            Ok(with_revision(Response::new(()), revision))
        })
        .await
    }

    async fn delete(&self, request: Request<kvs::DeleteRequest>) -> Result<Response<()>, Status> {
        observed("Delete", async {
            let conn = connection_of(&request)?;
            let condition = condition(request.metadata())?;
            let key = request.into_inner().key;
            let revision = conn.send(KvDelete { key, condition }).await.map_err(mailbox)?.map_err(status)?;
            Ok(with_revision(Response::new(()), revision))
        })
        .await
    }

    async fn txn(&self, request: Request<kvs::TxnRequest>) -> Result<Response<kvs::TxnResponse>, Status> {
        observed("Txn", async {
            let conn = connection_of(&request)?;
            let asked = txn::from_request(request.into_inner())?;
            let answer = conn.send(KvTxn(asked)).await.map_err(mailbox)?.map_err(status)?;
            // In the answer too, but a client of Set and Delete looks for it in the metadata.
            let revision = Some(answer.revision);
            Ok(with_revision(Response::new(txn::to_response(answer)), revision))
        })
        .await
    }

    async fn lease_grant(
        &self,
        request: Request<kvs::LeaseGrantRequest>,
    ) -> Result<Response<kvs::LeaseGrantResponse>, Status> {
        observed("LeaseGrant", lease::grant(request)).await
    }

    async fn lease_revoke(
        &self,
        request: Request<kvs::LeaseRevokeRequest>,
    ) -> Result<Response<kvs::LeaseRevokeResponse>, Status> {
        observed("LeaseRevoke", lease::revoke(request)).await
    }

    async fn lease_time_to_live(
        &self,
        request: Request<kvs::LeaseTimeToLiveRequest>,
    ) -> Result<Response<kvs::LeaseStatus>, Status> {
        observed("LeaseTimeToLive", lease::time_to_live(request)).await
    }

    async fn lease_list(&self, request: Request<()>) -> Result<Response<kvs::LeaseListResponse>, Status> {
        observed("LeaseList", lease::list(request)).await
    }

    type LeaseKeepAliveStream = lease::KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<tonic::Streaming<kvs::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        observed("LeaseKeepAlive", lease::keep_alive(request)).await
    }

    type BackupStream = backup::BackupStream;

    async fn backup(&self, request: Request<()>) -> Result<Response<Self::BackupStream>, Status> {
        observed("Backup", backup::backup(request)).await
    }

    type WatchStream = WatchStream;

    async fn watch(&self, request: Request<()>) -> Result<Response<WatchStream>, Status> {
        observed("Watch", async {
            let conn = connection_of(&request)?;
            // A prefix that is not text is refused: read as "" it would watch every key.
            let prefix = match request.metadata().get(WATCH_PREFIX_KEY) {
                None => String::new(),
                Some(value) => value
                    .to_str()
                    .map_err(|_| Status::invalid_argument(format!("{WATCH_PREFIX_KEY} must be visible ASCII")))?
                    .to_string(),
            };
            let start_revision = match request.metadata().get(WATCH_START_REVISION_METADATA) {
                None => None,
                Some(value) => Some(value.to_str().ok().and_then(|v| v.trim().parse().ok()).ok_or_else(|| {
                    Status::invalid_argument(format!("{WATCH_START_REVISION_METADATA} must be a revision"))
                })?),
            };
            let changes = conn.send(OpenWatch { prefix, start_revision }).await.map_err(mailbox)?.map_err(status)?;
            let stream = ReceiverStream::new(changes).map(|change| change.map(|c| c.to_proto()).map_err(status));
            let stream = self.stopping.cut_off(stream, Err(Status::unavailable("the node is stopping")));
            Ok(Response::new(Box::pin(stream) as WatchStream))
        })
        .await
    }

    async fn metrics(&self, request: Request<()>) -> Result<Response<kvs::MetricsResponse>, Status> {
        observed("Metrics", async {
            let text = connection_of(&request)?.send(RenderMetrics).await.map_err(mailbox)?.map_err(status)?;
            Ok(Response::new(kvs::MetricsResponse { metrics: Bytes::from(text) }))
        })
        .await
    }
}

/// The store's revision after a write, as the answer's `cete-revision` metadata (`Empty`
/// has no field for it).
fn with_revision<T>(mut response: Response<T>, revision: Option<u64>) -> Response<T> {
    if let Some(revision) = revision {
        response.metadata_mut().insert(cete_proto::REVISION_METADATA, revision.into());
    }
    response
}
