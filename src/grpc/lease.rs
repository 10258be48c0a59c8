//! The lease rpcs of `kvs.KVS` (README, "Leases"): each sends its connection's actor one
//! message per request and maps the reply; the keep-alive stream sends one per renewal.

use std::pin::Pin;

use actix::Addr;
use cete_actors::command::lease::LeaseStatus;
use cete_actors::connection::lease::{LeaseGrant, LeaseKeepAlive, LeaseList, LeaseRevoke, LeaseTimeToLive};
use cete_actors::connection::ConnectionActor;
use cete_actors::CeteError;
use cete_proto::kvs;
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{connection_of, status};

/// Renewals of one keep-alive stream in flight at once (answered in the order asked).
const RENEWALS_IN_FLIGHT: usize = 64;

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

/// One answer per renewal, in order: the TTL, or 0 for a lease that expired (as etcd answers
/// it, so one stream can keep many leases and learn of each one's end). Another failure (no
/// leader within the deadline) ends the stream with its status.
pub async fn keep_alive(
    request: Request<Streaming<kvs::LeaseKeepAliveRequest>>,
) -> Result<Response<KeepAliveStream>, Status> {
    let conn: Addr<ConnectionActor> = connection_of(&request)?;
    let renewals = request.into_inner().map(move |asked| {
        let conn = conn.clone();
        async move {
            let id = asked?.id;
            let answer = conn.send(LeaseKeepAlive { id: lease_id(id)? }).await.map_err(mailbox)?;
            match answer {
                Ok(lease) => Ok(kvs::LeaseKeepAliveResponse { id, ttl: lease.ttl_seconds as i64 }),
                Err(CeteError::NotFound(_)) => Ok(kvs::LeaseKeepAliveResponse { id, ttl: 0 }),
                Err(e) => Err(status(e)),
            }
        }
    });
    Ok(Response::new(Box::pin(renewals.buffered(RENEWALS_IN_FLIGHT)) as KeepAliveStream))
}
