//! Following the leader: a request that this node's Raft turns away goes to the leader it
//! names, over that leader's link (through the [`LeaderBatcher`](super::LeaderBatcher)), and
//! after it to each leader it is told of next, up to [`MAX_HOPS`] leaders, so that clients
//! never see "not leader". A leader out of reach is waited for, or its successor
//! ([`LEADER_UNREACHABLE`]); one that goes silent with a request that is safe to send again
//! ([`LeaderRequest::safe_to_resend`]: writes go under request ids, applied at most once) has
//! it sent again to the next leader ([`SILENT_LEADER`]).

use actix::Recipient;

use super::here::serve_here;
use super::msg::{LeaderRequest, RouteError, Served, ToLeader};
use super::ports::{ClusterPorts, RaftPorts};
use crate::cluster::{refusal, WasRemoved};
use crate::command::Member;
use crate::deadlines::{LEADER_UNREACHABLE, RECONNECT_PAUSE, SILENT_LEADER};
use crate::error::{CeteError, CeteResult};
use crate::raft::{AwaitLeader, AwaitNewLeader};

/// How many leaders a request is sent to (a leader change on the way is followed) before it is
/// given up.
const MAX_HOPS: usize = 3;

/// What a request needs to find the leader.
pub(super) struct Route {
    /// This node's name.
    pub me: String,
    pub raft: RaftPorts,
    pub cluster: ClusterPorts,
    pub to_leader: Recipient<ToLeader>,
}

impl Route {
    /// Serves `request` on the leader, wherever it is: here first, then wherever Raft says
    /// the leader is. `elsewhere`: the leader, when this node already knows that it is another
    /// node and that serving `request` here could only be turned away; it then goes straight
    /// there.
    pub async fn on_the_leader(&self, request: LeaderRequest, elsewhere: Option<Member>) -> CeteResult<Served> {
        let leaves_me = matches!(&request, LeaderRequest::Leave(name) if *name == self.me);
        match self.follow(request, elsewhere).await {
            // On a removed node (its Raft stopped for good) such a failure has that one cause:
            // say it, rather than "raft has stopped" or "no leader". Failures only pay the ask.
            Err(CeteError::Unavailable(why)) => match self.cluster.was_removed.send(WasRemoved).await {
                // A leader asked to remove itself that stops as it commits that: it is done.
                Ok(Some(_)) if leaves_me => Ok(Served::Done),
                Ok(Some(reason)) => Err(refusal(&reason)),
                _ => Err(CeteError::Unavailable(why)),
            },
            other => other,
        }
    }

    async fn follow(&self, request: LeaderRequest, elsewhere: Option<Member>) -> CeteResult<Served> {
        let mut hint = match elsewhere {
            Some(leader) => Some(leader),
            None => match serve_here(&self.raft, &self.cluster, &request).await {
                Ok(served) => return Ok(served),
                Err(RouteError::NotLeader(leader)) => leader,
                Err(RouteError::NotSent(why)) => return Err(CeteError::Unavailable(why)),
                Err(RouteError::Failed(e)) => return Err(e),
            },
        };
        // Leaving this node, a write gets its request id: from here on it may have to be sent
        // again, and the id makes that safe. It stays awaited (its session's low-water mark
        // held below it) until this returns: answered, or given up.
        let (request, _awaited) = request.once();
        // Whether the request went out again after its first sending's fate became unknown.
        let mut resent = false;
        // Leaders tried, and since when the leader has been out of reach, if it is.
        let mut hops = 0;
        let mut unreachable_since: Option<tokio::time::Instant> = None;
        while hops < MAX_HOPS {
            hops += 1;
            let leader = match hint.take() {
                Some(leader) => leader,
                None => self.raft.await_leader.send(AwaitLeader).await?.ok_or_else(no_leader)?,
            };
            if leader.name == self.me {
                // Leadership came here meanwhile.
                match serve_here(&self.raft, &self.cluster, &request).await {
                    Ok(served) => return Ok(served),
                    Err(RouteError::NotLeader(leader)) => hint = leader,
                    Err(RouteError::NotSent(why)) => return settled(&request, resent, CeteError::Unavailable(why)),
                    Err(RouteError::Failed(e)) => return settled(&request, resent, e),
                }
                continue;
            }
            let mut sent =
                std::pin::pin!(self.to_leader.send(ToLeader { leader: leader.clone(), request: request.clone() }));
            let answer = match tokio::time::timeout(SILENT_LEADER, &mut sent).await {
                Ok(answer) => answer?,
                // The leader may have gone silent with the request in hand (paused, cut off): its
                // fate is unknown, and a request that is safe to send again can go to the next
                // leader, once one is elected, instead of waiting on this one.
                Err(_) if request.safe_to_resend() => tokio::select! {
                    answer = &mut sent => answer?,
                    Some(next) = self.new_leader(&leader.name) => {
                        log::debug!("leader {} went silent with a request; resending it to {}", leader.name, next.name);
                        hint = Some(next);
                        resent = true;
                        continue;
                    }
                },
                Err(_) => sent.await?,
            };
            match answer {
                Ok(served) => return Ok(served),
                Err(RouteError::NotLeader(next)) => hint = next,
                Err(RouteError::NotSent(why)) => {
                    // The request never left. The leader is down or cut off, and the others
                    // elect another; or it has just come back (a rolling restart) and the link
                    // to it is still connecting: wait for an election, trying the same leader
                    // again every RECONNECT_PAUSE, for as long as an election may take.
                    let since = *unreachable_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= LEADER_UNREACHABLE {
                        return Err(CeteError::Unavailable(format!(
                            "the leader is unreachable ({why}) and no other was elected"
                        )));
                    }
                    log::debug!("cannot route to the leader ({why}); waiting for it or a new one");
                    let elected = tokio::time::timeout(RECONNECT_PAUSE, self.new_leader(&leader.name));
                    hint = Some(elected.await.ok().flatten().unwrap_or(leader));
                    // Not a hop: this wait is bounded by time, not by leader changes.
                    hops -= 1;
                }
                // Lost on the way, or turned away by a leader about to be replaced: sent again
                // to the next leader, unless this node was removed (it passes nothing on).
                Err(RouteError::Failed(e)) if request.safe_to_resend() && !is_refusal(&e) => {
                    if self.removed().await {
                        return Err(e);
                    }
                    log::debug!("lost the leader {} with a request ({e}); resending it to the next", leader.name);
                    hint = Some(self.new_leader(&leader.name).await.ok_or(e)?);
                    resent = true;
                }
                Err(RouteError::Failed(e)) => return settled(&request, resent, e),
            }
        }
        Err(CeteError::Unavailable("the leader keeps changing; retry shortly".into()))
    }

    /// A leader other than `old`, once one is elected (None after a few seconds without).
    async fn new_leader(&self, old: &str) -> Option<Member> {
        self.raft.await_new_leader.send(AwaitNewLeader { replacing: old.to_string() }).await.ok().flatten()
    }

    async fn removed(&self) -> bool {
        self.cluster.was_removed.send(WasRemoved).await.ok().flatten().is_some()
    }
}

/// An answer that turns the request down is its outcome: sending it elsewhere changes nothing.
fn is_refusal(error: &CeteError) -> bool {
    matches!(
        error,
        CeteError::InvalidArgument(_) | CeteError::NotFound(_) | CeteError::Conflict(_) | CeteError::TooLarge { .. }
    )
}

/// What `error`, the answer to `request`, means. A leave sent again because the answer to the
/// first was lost, that finds the node gone, was done by the first: most often the removal of
/// the leader itself, which answers as it leaves.
fn settled(request: &LeaderRequest, resent: bool, error: CeteError) -> CeteResult<Served> {
    match (request, error) {
        (LeaderRequest::Leave(name), CeteError::NotFound(_)) if resent => {
            log::info!("{name} is no longer a member: the leave whose answer was lost took effect");
            Ok(Served::Done)
        }
        (_, error) => Err(error),
    }
}

fn no_leader() -> CeteError {
    CeteError::Unavailable("no leader: the cluster is electing one or has lost its quorum".into())
}
