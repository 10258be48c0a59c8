//! Serving what only the leader can serve — writes, membership changes, read indexes — from
//! any node. The connection actor tries its own Raft first; when the leader is elsewhere, the
//! request is routed by mailbox to the ClusterActor, over the leader's peer link, to the
//! connection actor of that link on the leader. A leader change on the way is followed (at
//! most twice), so clients never see "not leader". Writes carry request ids (applied at most
//! once), so one whose leader goes silent with it is sent again to the next leader.

use crate::cluster::{refusal, PrepareJoiner, RouteToLeader, WasRemoved};
use crate::command::{Command, Member};
use crate::connection::NodeHandles;
use crate::error::{CeteError, CeteResult};
use crate::peer::{ForwardReply, Forwarded};
use crate::raft::{
    AddMember, AwaitLeader, AwaitNewLeader, ClientWrite, JoinPlan, PlanJoin, PromoteMember, ReadIndex, RemoveMember,
    TransferLeader, WriteRejection, TRANSFER_TIMEOUT,
};

/// How many times a request follows the leader before giving up.
const MAX_HOPS: usize = 3;
/// How long a request waits for an unreachable leader to come back or be replaced: longer
/// than an election takes (1-2 s of silence, then a vote).
const UNREACHABLE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How often a request tries an unreachable leader again meanwhile.
const RECONNECT_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);
/// How long the leader may take to answer a routed request before this node starts watching
/// for an election that would replace it (far above a healthy round trip).
const SILENT_LEADER: std::time::Duration = std::time::Duration::from_millis(300);
/// How long a join waits for the new node to catch up before it is made a voter.
const CATCH_UP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(50);

/// Serves `request` on the leader, wherever it is. `elsewhere`: the leader, when this node
/// already knows that it is another node and that serving `request` here could only be
/// turned away; the request then goes straight to it.
pub async fn on_leader(
    handles: &NodeHandles,
    request: Forwarded,
    elsewhere: Option<Member>,
) -> CeteResult<ForwardReply> {
    let leaves_me = matches!(&request, Forwarded::Leave(name) if *name == handles.me);
    match route(handles, request, elsewhere).await {
        // On a removed node (its Raft stopped for good) such a failure has that one cause:
        // say it, rather than "raft has stopped" or "no leader". Failures only pay the ask.
        Err(CeteError::Unavailable(why)) => match handles.cluster.send(WasRemoved).await {
            // A leader asked to remove itself that stops as it commits that: it is done.
            Ok(Some(_)) if leaves_me => Ok(ForwardReply::Done),
            Ok(Some(reason)) => Err(refusal(&reason)),
            _ => Err(CeteError::Unavailable(why)),
        },
        other => other,
    }
}

async fn route(handles: &NodeHandles, request: Forwarded, elsewhere: Option<Member>) -> CeteResult<ForwardReply> {
    let mut hint = match elsewhere {
        Some(leader) => Some(leader),
        None => match serve_locally(handles, &request).await {
            Ok(reply) => return Ok(reply),
            Err(WriteRejection::Failed(e)) => return Err(e),
            Err(WriteRejection::NotLeader { leader }) => leader,
        },
    };
    // Leaving this node, a write gets its request id: from here on it may have to be sent
    // again, and the id makes that safe. It stays awaited (its session's low-water mark held
    // below it) until this returns: answered, or given up.
    let (request, _awaited) = request.once();
    // Whether the request went out again after its first sending's fate became unknown.
    let mut resent = false;
    // Leaders tried (a leader change on the way is followed), and since when the leader has
    // been out of reach, if it is.
    let mut hops = 0;
    let mut unreachable_since: Option<tokio::time::Instant> = None;
    while hops < MAX_HOPS {
        hops += 1;
        let leader = match hint.take() {
            Some(leader) => leader,
            None => handles.raft.send(AwaitLeader).await?.ok_or_else(no_leader)?,
        };
        if leader.name == handles.me {
            // Leadership came here meanwhile.
            match serve_locally(handles, &request).await {
                Ok(reply) => return Ok(reply),
                Err(WriteRejection::Failed(e)) => return settled(&request, resent, e),
                Err(WriteRejection::NotLeader { leader }) => hint = leader,
            }
            continue;
        }
        let mut routed =
            std::pin::pin!(handles.cluster.send(RouteToLeader { leader: leader.clone(), request: request.clone() }));
        let reply = match tokio::time::timeout(SILENT_LEADER, &mut routed).await {
            Ok(reply) => reply?,
            // The leader may have gone silent with the request in hand (paused, cut off): its
            // fate is unknown, and a request that is safe to send again can go to the next
            // leader, once one is elected, instead of waiting on this one.
            Err(_) if request.safe_to_resend() => tokio::select! {
                reply = &mut routed => reply?,
                Some(next) = wait_for_new_leader(handles, &leader.name) => {
                    log::debug!("leader {} went silent with a request; resending it to {}", leader.name, next.name);
                    hint = Some(next);
                    resent = true;
                    continue;
                }
            },
            Err(_) => routed.await?,
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) if request.safe_to_resend() && !is_refusal(&e) => {
                log::debug!("lost the leader {} with a request ({e}); resending it to the next", leader.name);
                hint = Some(wait_for_new_leader(handles, &leader.name).await.ok_or(e)?);
                resent = true;
                continue;
            }
            Err(e) => return settled(&request, resent, e),
        };
        match reply {
            ForwardReply::NotLeader(next) => hint = next,
            ForwardReply::NotSent(why) => {
                // The request never left. The leader is down or cut off, and the others elect
                // another; or it has just come back (a rolling restart) and the link to it is
                // still connecting: wait for an election, trying the same leader again every
                // RECONNECT_PAUSE, for as long as an election may take.
                let since = *unreachable_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= UNREACHABLE_WAIT {
                    return Err(CeteError::Unavailable(format!(
                        "the leader is unreachable ({why}) and no other was elected"
                    )));
                }
                log::debug!("cannot route to the leader ({why}); waiting for it or a new one");
                let elected = tokio::time::timeout(RECONNECT_PAUSE, wait_for_new_leader(handles, &leader.name));
                hint = Some(elected.await.ok().flatten().unwrap_or(leader));
                // Not a hop: this wait is bounded by time, not by leader changes.
                hops -= 1;
            }
            ForwardReply::Failed(e) => return settled(&request, resent, e),
            reply => return Ok(reply),
        }
    }
    Err(CeteError::Unavailable("the leader keeps changing; retry shortly".into()))
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
fn settled(request: &Forwarded, resent: bool, error: CeteError) -> CeteResult<ForwardReply> {
    match (request, error) {
        (Forwarded::Leave(name), CeteError::NotFound(_)) if resent => {
            log::info!("{name} is no longer a member: the leave whose answer was lost took effect");
            Ok(ForwardReply::Done)
        }
        (_, error) => Err(error),
    }
}

/// A leader other than `old`, once one is elected (None after a few seconds without).
async fn wait_for_new_leader(handles: &NodeHandles, old: &str) -> Option<Member> {
    handles.raft.send(AwaitNewLeader { replacing: old.to_string() }).await.ok().flatten()
}

fn no_leader() -> CeteError {
    CeteError::Unavailable("no leader: the cluster is electing one or has lost its quorum".into())
}

/// Serves `request` with this node's own Raft; `NotLeader` when that must happen elsewhere.
pub async fn serve_locally(handles: &NodeHandles, request: &Forwarded) -> Result<ForwardReply, WriteRejection> {
    match request {
        Forwarded::Write(command) => {
            handles.raft.send(ClientWrite(command.clone())).await.map_err(CeteError::from)??;
            Ok(ForwardReply::Done)
        }
        Forwarded::WriteBatch(commands) => {
            let batch = Command::Batch(commands.clone());
            handles.raft.send(ClientWrite(batch)).await.map_err(CeteError::from)??;
            Ok(ForwardReply::Done)
        }
        Forwarded::ReadIndex => {
            let index = handles.raft.send(ReadIndex).await.map_err(CeteError::from)??;
            Ok(ForwardReply::ReadIndex(index))
        }
        Forwarded::Join(member) => join(handles, member).await,
        Forwarded::Leave(name) => {
            handles.raft.send(RemoveMember(name.clone())).await.map_err(CeteError::from)??;
            Ok(ForwardReply::Done)
        }
        Forwarded::TransferLeader(to) => {
            let transfer = TransferLeader { to: to.clone(), within: TRANSFER_TIMEOUT };
            let leader = handles.raft.send(transfer).await.map_err(CeteError::from)??;
            Ok(ForwardReply::Leader(leader))
        }
        Forwarded::Status | Forwarded::Poll | Forwarded::PrepareToJoin | Forwarded::Campaign { .. } => {
            Err(CeteError::Internal(format!("{request:?} is not a leader request")).into())
        }
    }
}

/// On the leader: prepare the joiner (it gives up a one-node state of its own, or refuses
/// when it holds data), add it as a learner, then promote it.
async fn join(handles: &NodeHandles, member: &Member) -> Result<ForwardReply, WriteRejection> {
    match handles.raft.send(PlanJoin(member.clone())).await.map_err(CeteError::from)?? {
        JoinPlan::AlreadyMember => {}
        JoinPlan::Promote => handles.raft.send(PromoteMember(member.clone())).await.map_err(CeteError::from)??,
        JoinPlan::Add => {
            handles.cluster.send(PrepareJoiner(member.clone())).await.map_err(CeteError::from)??;
            let added = tokio::time::timeout(CATCH_UP_TIMEOUT, handles.raft.send(AddMember(member.clone())));
            added.await.map_err(|_| {
                CeteError::Unavailable(format!(
                    "{} did not catch up within {CATCH_UP_TIMEOUT:?}; it stays a learner until it does                      (repeat the join to make it a voter)",
                    member.name
                ))
            })?.map_err(CeteError::from)??;
            log::info!("{} joined the cluster at {}", member.name, member.raft_address);
        }
    }
    Ok(ForwardReply::Done)
}

/// Turns a reply into the unit result of a write-like request.
pub fn done(reply: ForwardReply) -> CeteResult<()> {
    match reply {
        ForwardReply::Done => Ok(()),
        ForwardReply::Failed(e) => Err(e),
        other => Err(CeteError::Internal(format!("unexpected answer to a write: {other:?}"))),
    }
}

/// A member record from the name and the addresses of a join request.
pub fn member(name: String, node: crate::node::NodeInfo) -> Member {
    Member { name, raft_address: node.raft_address, metadata: node.metadata }
}
