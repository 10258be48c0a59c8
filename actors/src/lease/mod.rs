//! The lease wing: the [`LeaseActor`], where the leader counts down what each lease has left.
//!
//! Which leases exist, and which keys each holds, is applied state ([`crate::store::leases`]),
//! the same on every node. How long each has left is not: it is measured by the leader's
//! clock alone, and only the leader decides that a lease has expired, by proposing
//! [`Command::LeaseRevoke`], a log entry every node applies alike. No follower's clock ever
//! deletes anything.
//!
//! As in etcd, a node that becomes leader restarts every countdown from the lease's full TTL:
//! it cannot know when the old leader last renewed a lease, so a leader change may make a lease
//! live longer than its TTL, never shorter. Renewals reach the leader only (routed there, and
//! answered after a quorum confirms it still leads: `routing::here`), so a deposed leader never
//! renews a lease its successor is counting down.
//!
//! Who sends what: the StoreActor sends [`LeaseEvents`] (grants, revokes, a snapshot
//! installed), the RaftActor [`Leading`] (whether this node leads), the router
//! [`ServeLease`] (renewals and what leases have left, on the leader); the LeaseActor sends
//! the router [`ServeHere`] the revokes of expired leases (proposed here or not at all), and
//! the StoreActor
//! [`ListLeases`] and [`ReadLease`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::command::lease::{LeaseAnswer, LeaseAsk, LeaseStatus};
use crate::command::{Command, CommandResponse};
use crate::error::{CeteError, CeteResult};
use crate::raft::Leading;
use crate::routing::{LeaderRequest, RouteError, ServeHere, ServeLease, Served};
use crate::store::leases::{LeaseEvent, LeaseEvents, ListLeases, ReadLease, WatchLeases};
use crate::store::StoreActor;

/// How often the leader looks for leases that ran out.
const CHECK_EVERY: Duration = Duration::from_millis(100);
/// At most this many revokes in flight: a mass expiry is paced rather than flooding the log.
const MAX_REVOKING: usize = 1000;
/// A revoke that failed (no quorum, a leader change) is proposed again after this.
const RETRY_REVOKE_AFTER: Duration = Duration::from_secs(1);

/// One lease's countdown.
#[derive(Debug, Clone, Copy)]
struct Countdown {
    ttl: Duration,
    /// When it expires; None while this node does not lead.
    deadline: Option<Instant>,
    /// Since when its revoke has been in flight.
    revoking: Option<Instant>,
}

pub struct LeaseActor {
    store: Addr<StoreActor>,
    /// Where the revokes of expired leases go: the router's "here", never routed on: a node
    /// that stopped leading leaves the lease to its successor's countdown.
    proposals: Recipient<ServeHere>,
    leases: HashMap<u64, Countdown>,
    /// The term this node leads in.
    leading: Option<u64>,
}

impl LeaseActor {
    pub fn new(store: Addr<StoreActor>, proposals: Recipient<ServeHere>) -> Self {
        LeaseActor { store, proposals, leases: HashMap::new(), leading: None }
    }

    /// Reads every lease from the store: while this node leads, each countdown restarts.
    fn reload(&mut self, ctx: &mut Context<Self>) {
        let listed = self.store.send(ListLeases);
        ctx.spawn(listed.into_actor(self).map(|listed, actor, _| match listed {
            Ok(Ok(leases)) => {
                let now = Instant::now();
                let leading = actor.leading.is_some();
                actor.leases.retain(|id, _| leases.binary_search_by_key(id, |(id, _)| *id).is_ok());
                for (id, ttl_seconds) in leases {
                    let ttl = Duration::from_secs(ttl_seconds);
                    let countdown = Countdown { ttl, deadline: leading.then(|| now + ttl), revoking: None };
                    actor.leases.insert(id, countdown);
                }
            }
            Ok(Err(e)) => log::error!("cannot read the leases: {e}"),
            Err(e) => log::error!("cannot read the leases: {e}"),
        }));
    }

    /// While this node leads: propose the revoke of every lease that ran out.
    fn expire(&mut self, ctx: &mut Context<Self>) {
        if self.leading.is_none() {
            return;
        }
        let now = Instant::now();
        let mut in_flight =
            self.leases.values().filter(|c| c.revoking.is_some_and(|at| now - at < RETRY_REVOKE_AFTER)).count();
        let mut expired: Vec<u64> = Vec::new();
        for (id, countdown) in &self.leases {
            let due = countdown.deadline.is_some_and(|deadline| deadline <= now);
            let idle = countdown.revoking.is_none_or(|at| now - at >= RETRY_REVOKE_AFTER);
            if due && idle && in_flight < MAX_REVOKING {
                expired.push(*id);
                in_flight += 1;
            }
        }
        match expired.as_slice() {
            [] => {}
            [id] => log::info!("lease {id} expired; revoking it"),
            [first, ..] => log::info!("{} leases expired ({first} and others); revoking them", expired.len()),
        }
        for id in expired {
            if let Some(countdown) = self.leases.get_mut(&id) {
                countdown.revoking = Some(now);
            }
            let revoke = self.proposals.send(ServeHere(LeaderRequest::Write(Command::LeaseRevoke { id })));
            ctx.spawn(revoke.into_actor(self).map(move |answer, actor, _| match answer {
                Ok(Ok(Served::Applied(CommandResponse::NoSuchLease { .. }))) => {
                    actor.leases.remove(&id);
                }
                Ok(Ok(_)) => crate::metrics::LEASE_EXPIRIES.inc(),
                // Its successor counts the lease down from the start.
                Ok(Err(RouteError::NotLeader(_))) => {}
                Ok(Err(e)) => log::warn!("could not revoke expired lease {id} (retrying): {e}"),
                Err(e) => log::warn!("could not revoke expired lease {id} (retrying): {e}"),
            }));
        }
    }

    /// Restarts lease `id`'s countdown; its TTL in seconds, or None when it is gone. Once run
    /// out, a lease stays expired, whether or not its revoke is applied yet.
    fn renew(&mut self, id: u64, now: Instant) -> Option<u64> {
        let countdown = self.leases.get_mut(&id)?;
        if countdown.revoking.is_some() || countdown.deadline.is_some_and(|deadline| deadline <= now) {
            return None;
        }
        countdown.deadline = Some(now + countdown.ttl);
        Some(countdown.ttl.as_secs())
    }

    /// Lease `id` as the countdowns have it, unless it has run out.
    fn status(&self, id: u64) -> Option<LeaseStatus> {
        let countdown = self.leases.get(&id)?;
        let now = Instant::now();
        let left = match countdown.deadline {
            Some(deadline) if deadline <= now || countdown.revoking.is_some() => return None,
            Some(deadline) => deadline - now,
            None => countdown.ttl,
        };
        Some(LeaseStatus {
            id,
            ttl_seconds: countdown.ttl.as_secs(),
            remaining_seconds: left.as_millis().div_ceil(1000) as u64,
            keys: Vec::new(),
        })
    }
}

fn not_found(id: u64) -> RouteError {
    RouteError::Failed(CeteError::lease_not_found(id))
}

impl Actor for LeaseActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // A node whose start fails later (a port taken) drops this actor unstarted, outside the
        // runtime, and actix starts it there as it drops: no timer can be made then, and a
        // panic would hide the error that stopped the node.
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        ctx.set_mailbox_capacity(16_384);
        self.store.do_send(WatchLeases(ctx.address().recipient()));
        self.reload(ctx);
        ctx.run_interval(CHECK_EVERY, |actor, ctx| actor.expire(ctx));
    }
}

impl Handler<Leading> for LeaseActor {
    type Result = ();

    fn handle(&mut self, msg: Leading, ctx: &mut Self::Context) {
        if msg.0 == self.leading {
            return;
        }
        self.leading = msg.0;
        match self.leading {
            // A new leader restarts every countdown (see the module comment).
            Some(term) => {
                log::info!("leading in term {term}: {} lease countdowns restart", self.leases.len());
                self.reload(ctx);
            }
            None => {
                for countdown in self.leases.values_mut() {
                    *countdown = Countdown { deadline: None, revoking: None, ..*countdown };
                }
            }
        }
    }
}

impl Handler<LeaseEvents> for LeaseActor {
    type Result = ();

    fn handle(&mut self, msg: LeaseEvents, ctx: &mut Self::Context) {
        let now = Instant::now();
        for event in msg.0 {
            match event {
                LeaseEvent::Granted { id, ttl_seconds } => {
                    let ttl = Duration::from_secs(ttl_seconds);
                    let deadline = self.leading.map(|_| now + ttl);
                    self.leases.insert(id, Countdown { ttl, deadline, revoking: None });
                }
                LeaseEvent::Revoked { id } => {
                    self.leases.remove(&id);
                }
                LeaseEvent::Reset => self.reload(ctx),
            }
        }
    }
}

impl Handler<ServeLease> for LeaseActor {
    type Result = ResponseActFuture<Self, Result<LeaseAnswer, RouteError>>;

    fn handle(&mut self, msg: ServeLease, _: &mut Self::Context) -> Self::Result {
        if self.leading.is_none() {
            return Box::pin(fut::ready(Err(RouteError::NotLeader(None))));
        }
        match msg.0 {
            LeaseAsk::KeepAlive { ids } => {
                let now = Instant::now();
                let renewed = ids.iter().map(|id| self.renew(*id, now)).collect();
                Box::pin(fut::ready(Ok(LeaseAnswer::Renewed(renewed))))
            }
            LeaseAsk::TimeToLive { id } => {
                let Some(status) = self.status(id) else { return Box::pin(fut::ready(Err(not_found(id)))) };
                let read = self.store.send(ReadLease(id));
                Box::pin(read.into_actor(self).map(move |read, _, _| {
                    let read: CeteResult<_> = read.map_err(CeteError::from).and_then(|r| r);
                    match read.map_err(RouteError::Failed)? {
                        Some((_, keys)) => Ok(LeaseAnswer::Lease(LeaseStatus { keys, ..status })),
                        None => Err(not_found(id)),
                    }
                }))
            }
            LeaseAsk::List => {
                let mut ids: Vec<u64> = self.leases.keys().copied().collect();
                ids.sort_unstable();
                let list = ids.into_iter().filter_map(|id| self.status(id)).collect();
                Box::pin(fut::ready(Ok(LeaseAnswer::List(list))))
            }
        }
    }
}
