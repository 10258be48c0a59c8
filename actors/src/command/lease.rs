//! What a client asks of a lease that only the leader can answer, because only the leader
//! counts down what each lease has left ([`crate::lease`]): a renewal, a lease's time to live,
//! the list of leases. These travel to the leader over peer links, as writes do; grants and
//! revokes are [`Command`](super::Command)s, through the log.

use serde::{Deserialize, Serialize};

/// The longest TTL a lease may be granted, in seconds (etcd's `MaxLeaseTTL`).
pub const MAX_LEASE_TTL_SECONDS: u64 = 9_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseAsk {
    /// Restart the countdown of each lease from its granted TTL: one request for every renewal
    /// a keep-alive stream has ready, one quorum confirmation for all of them.
    KeepAlive { ids: Vec<u64> },
    /// Lease `id`'s TTL and what it has left, with its keys.
    TimeToLive { id: u64 },
    /// Every lease, with its TTL and what it has left.
    List,
}

/// A lease as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStatus {
    pub id: u64,
    /// The TTL it was granted, in seconds.
    pub ttl_seconds: u64,
    /// What it has left before the leader revokes it, in whole seconds rounded up.
    pub remaining_seconds: u64,
    /// Its keys in key order (only in the answer to [`LeaseAsk::TimeToLive`]).
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseAnswer {
    /// Per lease renewed, in order: its TTL (all of which it has again), or None when it is
    /// gone (expired, revoked, or never was).
    Renewed(Vec<Option<u64>>),
    /// The lease asked about.
    Lease(LeaseStatus),
    List(Vec<LeaseStatus>),
}
