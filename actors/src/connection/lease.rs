//! A connection's lease requests ([`crate::lease`]): grants and revokes go through the log as
//! writes; renewals and what leases have left are the leader's countdowns' to answer, routed
//! there.

use actix::prelude::*;

use super::{needs_revisions, propose, ConnectionActor, NodeHandles};
use crate::command::lease::{LeaseAnswer, LeaseAsk, LeaseStatus, MAX_LEASE_TTL_SECONDS};
use crate::command::{Command, CommandResponse};
use crate::deadlines::CLIENT_WRITE;
use crate::error::{CeteError, CeteResult};
use crate::routing;

/// The shortest TTL granted, in seconds: a lease must outlive an election (1-2 s here), or
/// a leader change alone would expire it. etcd's minimum likewise follows its election timeout.
pub const MIN_LEASE_TTL_SECONDS: u64 = 2;

/// What a grant answers: the lease's id and the TTL granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseGranted {
    pub id: u64,
    pub ttl_seconds: u64,
    /// The store's revision (a grant does not change it).
    pub revision: Option<u64>,
}

/// Grant a lease of `ttl_seconds` (at least [`MIN_LEASE_TTL_SECONDS`]) under `id`, or under a
/// random id when none is given.
#[derive(Message)]
#[rtype(result = "CeteResult<LeaseGranted>")]
pub struct LeaseGrant {
    pub id: Option<u64>,
    pub ttl_seconds: i64,
}

impl Handler<LeaseGrant> for ConnectionActor {
    type Result = ResponseFuture<CeteResult<LeaseGranted>>;

    fn handle(&mut self, msg: LeaseGrant, _: &mut Self::Context) -> Self::Result {
        let handles = self.handles.clone();
        self.serve(async move {
            let ttl_seconds = match u64::try_from(msg.ttl_seconds) {
                Ok(ttl) if (1..=MAX_LEASE_TTL_SECONDS).contains(&ttl) => ttl.max(MIN_LEASE_TTL_SECONDS),
                _ => {
                    return Err(CeteError::InvalidArgument(format!(
                        "the ttl must be from 1 to {MAX_LEASE_TTL_SECONDS} seconds, not {}",
                        msg.ttl_seconds
                    )))
                }
            };
            let id = match msg.id {
                Some(0) | None => random_lease_id(),
                Some(id) if id > i64::MAX as u64 => {
                    return Err(CeteError::InvalidArgument(format!("a lease id is at most {}, not {id}", i64::MAX)))
                }
                Some(id) => id,
            };
            needs_revisions(&handles, "leases").await?;
            match propose(&handles, Command::LeaseGrant { id, ttl_seconds }).await? {
                CommandResponse::LeaseExists { lease } => Err(CeteError::Conflict(format!("lease {lease} exists"))),
                response => Ok(LeaseGranted { id, ttl_seconds, revision: response.revision() }),
            }
        })
    }
}

/// Revoke a lease: it and all its keys are deleted at one revision; answers the store's
/// revision after it.
#[derive(Message)]
#[rtype(result = "CeteResult<Option<u64>>")]
pub struct LeaseRevoke {
    pub id: u64,
}

impl Handler<LeaseRevoke> for ConnectionActor {
    type Result = ResponseFuture<CeteResult<Option<u64>>>;

    fn handle(&mut self, msg: LeaseRevoke, _: &mut Self::Context) -> Self::Result {
        let handles = self.handles.clone();
        self.serve(async move {
            needs_revisions(&handles, "leases").await?;
            match propose(&handles, Command::LeaseRevoke { id: msg.id }).await? {
                CommandResponse::NoSuchLease { lease } => Err(CeteError::lease_not_found(lease)),
                response => Ok(response.revision()),
            }
        })
    }
}

/// Restart the countdown of each lease; answers, in order, each one's TTL, or None for a lease
/// that is gone (expired, revoked, or never was).
#[derive(Message)]
#[rtype(result = "CeteResult<Vec<Option<u64>>>")]
pub struct LeaseKeepAlive {
    pub ids: Vec<u64>,
}

impl Handler<LeaseKeepAlive> for ConnectionActor {
    type Result = ResponseFuture<CeteResult<Vec<Option<u64>>>>;

    fn handle(&mut self, msg: LeaseKeepAlive, _: &mut Self::Context) -> Self::Result {
        let handles = self.handles.clone();
        self.serve(async move {
            let asked = msg.ids.len();
            match ask_leader(&handles, LeaseAsk::KeepAlive { ids: msg.ids }).await? {
                LeaseAnswer::Renewed(ttls) if ttls.len() == asked => Ok(ttls),
                other => Err(CeteError::Internal(format!("{asked} renewals were answered {other:?}"))),
            }
        })
    }
}

/// A lease's granted TTL, what it has left, and its keys.
#[derive(Message)]
#[rtype(result = "CeteResult<LeaseStatus>")]
pub struct LeaseTimeToLive {
    pub id: u64,
}

impl Handler<LeaseTimeToLive> for ConnectionActor {
    type Result = ResponseFuture<CeteResult<LeaseStatus>>;

    fn handle(&mut self, msg: LeaseTimeToLive, _: &mut Self::Context) -> Self::Result {
        let handles = self.handles.clone();
        self.serve(async move {
            match ask_leader(&handles, LeaseAsk::TimeToLive { id: msg.id }).await? {
                LeaseAnswer::Lease(status) => Ok(status),
                other => Err(CeteError::Internal(format!("a lease's time to live was answered {other:?}"))),
            }
        })
    }
}

/// Every lease with its TTL and what it has left, by id.
#[derive(Message)]
#[rtype(result = "CeteResult<Vec<LeaseStatus>>")]
pub struct LeaseList;

impl Handler<LeaseList> for ConnectionActor {
    type Result = ResponseFuture<CeteResult<Vec<LeaseStatus>>>;

    fn handle(&mut self, _: LeaseList, _: &mut Self::Context) -> Self::Result {
        let handles = self.handles.clone();
        self.serve(async move {
            match ask_leader(&handles, LeaseAsk::List).await? {
                LeaseAnswer::List(leases) => Ok(leases),
                other => Err(CeteError::Internal(format!("a lease list was answered {other:?}"))),
            }
        })
    }
}

/// Routes a lease request to the leader's countdowns.
async fn ask_leader(handles: &NodeHandles, ask: LeaseAsk) -> CeteResult<LeaseAnswer> {
    let routed = tokio::time::timeout(CLIENT_WRITE, handles.router.send(routing::Lease(ask)));
    routed.await.map_err(|_| {
        CeteError::Unavailable(format!("no leader answered within {CLIENT_WRITE:?} (no quorum reachable?)"))
    })??
}

/// A fresh lease id: random, never 0, and below 2^53, so that it is exact wherever JSON is
/// read into a double (JavaScript, jq), as well as in an int64 (etcd's and gRPC clients).
fn random_lease_id() -> u64 {
    (crate::random::random_u64() & ((1 << 53) - 1)).max(1)
}
