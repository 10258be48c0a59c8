//! The lease rpcs of `kvs.KVS` (README, "Leases"): each sends its connection's actor one
//! message per request and maps the reply; the keep-alive stream sends one per renewal.

use std::pin::Pin;

use actix::Addr;
use cete_actors::command::lease::LeaseStatus;
use cete_actors::connection::lease::{LeaseGrant, LeaseKeepAlive, LeaseList, LeaseRevoke, LeaseTimeToLive};
use cete_actors::connection::ConnectionActor;
use cete_proto::kvs;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{connection_of, status};

/// Renewals of one keep-alive stream sent to the leader as one request, at most.
const MAX_RENEWALS_PER_REQUEST: usize = 1024;
/// Requests of one keep-alive stream in flight at once (answered in the order asked).
const REQUESTS_IN_FLIGHT: usize = 8;

fn mailbox(err: actix::MailboxError) -> Status {
    status(err.into())
}

/// A lease id as a client sent it: positive.
fn lease_id(id: i64) -> Result<u64, Status> {
    u64::try_from(id)
        .ok()
        .filter(|id| *id != 0)
        .ok_or_else(|| Status::invalid_argument(format!("no lease has id {id}")))
}

fn to_proto(status: LeaseStatus) -> kvs::LeaseStatus {
    kvs::LeaseStatus {
        id: status.id as i64,
        ttl: status.ttl_seconds as i64,
        remaining: status.remaining_seconds as i64,
        keys: status.keys,
    }
}

pub async fn grant(request: Request<kvs::LeaseGrantRequest>) -> Result<Response<kvs::LeaseGrantResponse>, Status> {
    let conn = connection_of(&request)?;
    let req = request.into_inner();
    let id = match req.id {
        0 => None,
        id => Some(lease_id(id)?),
    };
    let granted = conn.send(LeaseGrant { id, ttl_seconds: req.ttl }).await.map_err(mailbox)?.map_err(status)?;
    Ok(Response::new(kvs::LeaseGrantResponse {
        id: granted.id as i64,
        ttl: granted.ttl_seconds as i64,
        revision: granted.revision.unwrap_or_default() as i64,
    }))
}

pub async fn revoke(request: Request<kvs::LeaseRevokeRequest>) -> Result<Response<kvs::LeaseRevokeResponse>, Status> {
    let conn = connection_of(&request)?;
    let id = lease_id(request.into_inner().id)?;
    let revision = conn.send(LeaseRevoke { id }).await.map_err(mailbox)?.map_err(status)?;
    Ok(Response::new(kvs::LeaseRevokeResponse { revision: revision.unwrap_or_default() as i64 }))
}

pub async fn time_to_live(request: Request<kvs::LeaseTimeToLiveRequest>) -> Result<Response<kvs::LeaseStatus>, Status> {
    let conn = connection_of(&request)?;
    let id = lease_id(request.into_inner().id)?;
    let lease = conn.send(LeaseTimeToLive { id }).await.map_err(mailbox)?.map_err(status)?;
    Ok(Response::new(to_proto(lease)))
}

pub async fn list(request: Request<()>) -> Result<Response<kvs::LeaseListResponse>, Status> {
    let conn = connection_of(&request)?;
    let leases = conn.send(LeaseList).await.map_err(mailbox)?.map_err(status)?;
    Ok(Response::new(kvs::LeaseListResponse { leases: leases.into_iter().map(to_proto).collect() }))
}

pub type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<kvs::LeaseKeepAliveResponse, Status>> + Send>>;

/// One answer per renewal, in order: the TTL, or 0 for a lease that is gone (as etcd answers
/// it, so one stream can keep many leases and learn of each one's end). The renewals that have
/// arrived together go to the leader as one request, confirmed by one quorum round. Another
/// failure (no leader within the deadline) ends the stream with its status.
pub async fn keep_alive(
    request: Request<Streaming<kvs::LeaseKeepAliveRequest>>,
) -> Result<Response<KeepAliveStream>, Status> {
    let conn: Addr<ConnectionActor> = connection_of(&request)?;
    let batches = request.into_inner().ready_chunks(MAX_RENEWALS_PER_REQUEST).map(move |asked| {
        let conn = conn.clone();
        async move {
            let asked: Vec<i64> = asked.into_iter().map(|ask| ask.map(|ask| ask.id)).collect::<Result<_, _>>()?;
            // An id no lease can have (0, negative) is a lease that is gone.
            let ids: Vec<u64> = asked.iter().map(|id| u64::try_from(*id).unwrap_or(0)).collect();
            let ttls = conn.send(LeaseKeepAlive { ids }).await.map_err(mailbox)?.map_err(status)?;
            let answers = asked
                .into_iter()
                .zip(ttls)
                .map(|(id, ttl)| kvs::LeaseKeepAliveResponse { id, ttl: ttl.unwrap_or(0) as i64 });
            Ok::<_, Status>(answers.map(Ok).collect::<Vec<_>>())
        }
    });
    let answers = batches
        .buffered(REQUESTS_IN_FLIGHT)
        .flat_map(|batch| futures::stream::iter(batch.unwrap_or_else(|status| vec![Err(status)])));
    Ok(Response::new(Box::pin(answers) as KeepAliveStream))
}
