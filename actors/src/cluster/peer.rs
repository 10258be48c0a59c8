//! Peer links: one [`PeerLinkActor`] per other member of the cluster, holding the gRPC channel
//! to that member's `--raft-address`. Requests that only the leader can serve travel over the
//! leader's link as [`Forwarded`] messages (sent by the router's batcher, [`crate::routing`])
//! and are handed, on the leader, to the connection actor of the link's connection. The link
//! also polls its peer's state for `/v1/cluster`.
//!
//! [`Forwarded`] and [`ForwardReply`] are the wire between nodes: their serde shape (variant
//! order and contents) is what nodes of other builds speak. The routing wing maps its own
//! vocabulary to and from them in one place (`routing::wire`).

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use cete_proto::raft::RaftPayload;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::cluster::node::NodeInfo;
use crate::command::lease::{LeaseAnswer, LeaseAsk};
use crate::command::{decode, encode, Command, CommandResponse, LogId, Member, StoredMembership};
use crate::deadlines::{LONGEST_FORWARD, POLL_ANSWER, POLL_EVERY};
use crate::error::{CeteError, CeteResult};
use crate::raft::network::peer_client;
use crate::wire::identity::{ClusterIdentity, PeerClient};
use crate::wire::tls::{never_connected, ClientTls};

/// A request a follower sends to the leader (or, for `Status`, `Poll`, `PrepareToJoin` and
/// `Campaign`, to any peer).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Forwarded {
    /// Propose this command.
    Write(Command),
    /// Propose these commands, gathered by a follower from its clients, as one entry.
    WriteBatch(Vec<Command>),
    /// Add this member.
    Join(Member),
    /// Remove the member of this name.
    Leave(String),
    /// Confirm leadership and tell the log index a linearizable read must wait for.
    ReadIndex,
    /// Report your own view of yourself (for `/v1/cluster`).
    Status,
    /// Report your view of yourself and your committed membership: what a link polls, so
    /// that a node learns its peers' states and, if it comes to that, that it was removed
    /// (see [`crate::cluster::removal`]). `Status` stays for nodes of earlier versions.
    Poll,
    /// You are about to be added to a cluster: give up a one-node state that holds no data,
    /// or refuse if you hold data.
    PrepareToJoin,
    /// Hand the leadership to this voter (None: the follower replicated furthest) and answer
    /// [`ForwardReply::Leader`] once it has taken over.
    TransferLeader(Option<String>),
    /// `leaving`, the leader, has committed its own removal and stopped: you succeed it
    /// (campaign as soon as the other voters will vote; see [`crate::raft::handover`]).
    Campaign { leaving: String },
    /// Name the features your build reads ([`crate::cluster::features`]); answered with
    /// [`ForwardReply::Features`]. Only sent by itself, never on the link's stream: a node of
    /// an earlier build refuses it as undecodable.
    Features,
    /// A lease request only the leader answers ([`crate::command::lease`]).
    Lease(LeaseAsk),
    /// Report your Raft's progress (for `/v1/status`); answered with
    /// [`ForwardReply::RaftStatus`]. Only asked off the stream ([`Ask`]), like `Features`.
    RaftStatus,
}

/// The answer to a [`Forwarded`] request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardReply {
    Done,
    ReadIndex(Option<LogId>),
    Status(NodeInfo),
    Polled(PeerView),
    /// The leader, after a [`Forwarded::TransferLeader`].
    Leader(String),
    /// The receiver is not the leader (any more); here is who it thinks is.
    NotLeader(Option<Member>),
    /// The receiver could not be connected to: the request was never sent (so it is safe to
    /// send it elsewhere). Made locally, never sent over the wire.
    NotSent(String),
    Failed(CeteError),
    /// The features the peer's build reads, after a [`Forwarded::Features`].
    Features(Vec<String>),
    /// What applying a forwarded write (or batch) answered, from a leader whose store has
    /// revisions (otherwise it answers `Done`, as earlier builds do).
    Applied(CommandResponse),
    /// The answer to a [`Forwarded::Lease`].
    Lease(LeaseAnswer),
    /// The answer to a [`Forwarded::RaftStatus`].
    RaftStatus(crate::cluster::status::RaftStatus),
}

/// What a peer says when polled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerView {
    /// Its addresses and its own state.
    pub node: NodeInfo,
    /// Its membership once committed; `None` while a change is under way, or from a node that
    /// was removed (it no longer speaks for the cluster).
    pub committed_membership: Option<StoredMembership>,
}

/// One link to one peer.
pub struct PeerLinkActor {
    peer: Member,
    client: Option<PeerClient>,
    /// Who to tell about the peer's state.
    observer: Recipient<PeerState>,
    /// The open forward stream (its requests' sending side and its number), if any.
    stream: Option<(u64, mpsc::Sender<RaftPayload>)>,
    streams_opened: u64,
    /// Requests sent and not answered yet, by id, with the number of the stream they went on.
    pending: HashMap<u64, (u64, oneshot::Sender<CeteResult<ForwardReply>>)>,
    next_id: u64,
    /// The once-a-second poll of the peer's state.
    poll: Option<SpawnHandle>,
    /// Closed ([`CloseLink`]): it stops once the requests in flight are answered.
    closing: bool,
}

/// How many requests may wait to go out on a forward stream.
const STREAM_BUFFER: usize = 1024;

impl PeerLinkActor {
    pub fn new(
        peer: Member,
        tls: Option<&ClientTls>,
        identity: &ClusterIdentity,
        observer: Recipient<PeerState>,
    ) -> Self {
        let client = match peer_client(&peer.raft_address, tls, identity) {
            Ok(client) => Some(client),
            Err(e) => {
                log::warn!("peer {} has an unusable raft address {:?}: {e}", peer.name, peer.raft_address);
                None
            }
        };
        PeerLinkActor {
            peer,
            client,
            observer,
            stream: None,
            streams_opened: 0,
            pending: HashMap::new(),
            next_id: 0,
            poll: None,
            closing: false,
        }
    }

    /// A closed link stops once no request waits on it any more.
    fn stop_if_drained(&mut self, ctx: &mut Context<Self>) {
        // Requests that timed out waiting: their replies, if they ever come, go nowhere.
        self.pending.retain(|_, (_, reply)| !reply.is_closed());
        if self.closing && self.pending.is_empty() {
            ctx.stop();
        }
    }

    /// The sending side of the forward stream, opened now if there is none. The stream's
    /// replies come back to this actor as [`StreamReply`] messages, its end as [`StreamEnded`].
    fn stream(&mut self, ctx: &mut Context<Self>) -> CeteResult<(u64, mpsc::Sender<RaftPayload>)> {
        if let Some((number, requests)) = &self.stream {
            return Ok((*number, requests.clone()));
        }
        let mut client = self
            .client
            .clone()
            .ok_or_else(|| CeteError::Unavailable(format!("no usable address for {}", self.peer.name)))?;
        self.streams_opened += 1;
        let number = self.streams_opened;
        let (requests, outgoing) = mpsc::channel(STREAM_BUFFER);
        self.stream = Some((number, requests.clone()));
        let link = ctx.address();
        let peer = self.peer.clone();
        actix::spawn(async move {
            let ended = match client.forward_stream(ReceiverStream::new(outgoing)).await {
                Ok(response) => {
                    let mut replies = response.into_inner();
                    loop {
                        match replies.message().await {
                            Ok(Some(reply)) => link.do_send(StreamReply(reply)),
                            Ok(None) => break lost_contact(&peer, "the forward stream ended"),
                            Err(status) => break lost_contact(&peer, status.message()),
                        }
                    }
                }
                Err(status) if never_connected(&status) => not_sent(&peer, &status),
                Err(status) => lost_contact(&peer, status.message()),
            };
            link.do_send(StreamEnded { number, ended });
        });
        Ok((number, requests))
    }

    /// Puts the request on the forward stream; the number of the stream it went on.
    fn send(&mut self, id: u64, request: &Forwarded, ctx: &mut Context<Self>) -> CeteResult<u64> {
        let data = encode(&(id, request)).map_err(|e| CeteError::internal("encode forwarded request", e))?;
        let mut payload = RaftPayload { data: data.into() };
        // A stream that ended before its end was handled here is replaced, once.
        for _ in 0..2 {
            let (number, requests) = self.stream(ctx)?;
            match requests.try_send(payload) {
                Ok(()) => return Ok(number),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    return Err(CeteError::Unavailable(format!("too many requests queued for {}", self.peer.name)))
                }
                Err(mpsc::error::TrySendError::Closed(back)) => {
                    self.stream = None;
                    payload = back;
                }
            }
        }
        Err(CeteError::Unavailable(format!("cannot open a stream to {}", self.peer.name)))
    }
}

/// The answer to requests that never left this node.
fn not_sent(peer: &Member, status: &tonic::Status) -> ForwardReply {
    ForwardReply::NotSent(format!("{} at {}: {}", peer.name, peer.raft_address, status.message()))
}

/// The answer to requests whose fate is unknown: the peer may have served them or not.
fn lost_contact(peer: &Member, why: &str) -> ForwardReply {
    ForwardReply::Failed(CeteError::Unavailable(format!(
        "lost contact with {} at {} while it handled the request (it may or may not have taken effect): {why}",
        peer.name, peer.raft_address
    )))
}

/// Sends one forwarded request over `client` and decodes the reply.
pub async fn call_peer(
    client: Option<PeerClient>,
    peer: &Member,
    request: &Forwarded,
    timeout: Duration,
) -> CeteResult<ForwardReply> {
    match call(client, peer, request, timeout).await? {
        Ok(reply) => Ok(reply),
        // A connection that could not be made carried nothing: the request was not sent.
        Err(status) if never_connected(&status) => Ok(not_sent(peer, &status)),
        Err(status) => lost_contact(peer, status.message()).into_result(),
    }
}

/// One forwarded request: the peer's reply, or the gRPC status the call ended with (`Err`
/// outside: it could not be made or its reply not read).
async fn call(
    client: Option<PeerClient>,
    peer: &Member,
    request: &Forwarded,
    timeout: Duration,
) -> CeteResult<Result<ForwardReply, tonic::Status>> {
    let mut client = client.ok_or_else(|| CeteError::Unavailable(format!("no usable address for {}", peer.name)))?;
    let data = encode(request).map_err(|e| CeteError::internal("encode forwarded request", e))?;
    let mut call = tonic::Request::new(RaftPayload { data: data.into() });
    call.set_timeout(timeout);
    match client.forward(call).await {
        Ok(reply) => {
            Ok(Ok(decode(&reply.into_inner().data).map_err(|e| CeteError::internal("decode forwarded reply", e))?))
        }
        Err(status) => Ok(Err(status)),
    }
}

impl ForwardReply {
    /// A `Failed` reply as the error it carries.
    fn into_result(self) -> CeteResult<ForwardReply> {
        match self {
            ForwardReply::Failed(e) => Err(e),
            reply => Ok(reply),
        }
    }
}

impl Actor for PeerLinkActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        let poll = ctx.run_interval(POLL_EVERY, |link, ctx| {
            link.stop_if_drained(ctx);
            let client = link.client.clone();
            let peer = link.peer.clone();
            let observer = link.observer.clone();
            ctx.spawn(
                async move {
                    let (state, committed_membership) = match poll(client, &peer).await {
                        Some(view) => (view.node.state, view.committed_membership),
                        None => ("Shutdown".to_string(), None),
                    };
                    observer.do_send(PeerState { name: peer.name, state, committed_membership });
                }
                .into_actor(link),
            );
        });
        self.poll = Some(poll);
    }
}

/// What `peer` says of itself; `None` when it does not answer.
async fn poll(client: Option<PeerClient>, peer: &Member) -> Option<PeerView> {
    match call(client.clone(), peer, &Forwarded::Poll, POLL_ANSWER).await {
        Ok(Ok(ForwardReply::Polled(view))) => Some(view),
        // A node of an earlier version (during a rolling upgrade) knows only Status: it
        // refuses a Poll it cannot decode as an invalid argument.
        Ok(Err(status)) if status.code() == tonic::Code::InvalidArgument => {
            match call_peer(client, peer, &Forwarded::Status, POLL_ANSWER).await {
                Ok(ForwardReply::Status(node)) => Some(PeerView { node, committed_membership: None }),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A peer's state as last polled ("Shutdown" when it did not answer), and the membership it
/// has committed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PeerState {
    pub name: String,
    pub state: String,
    pub committed_membership: Option<StoredMembership>,
}

/// Send a request to this link's peer.
#[derive(Message)]
#[rtype(result = "CeteResult<ForwardReply>")]
pub struct Forward {
    pub request: Forwarded,
    /// How long to wait for the answer ([`crate::deadlines`]).
    pub within: Duration,
}

impl Handler<Forward> for PeerLinkActor {
    type Result = ResponseFuture<CeteResult<ForwardReply>>;

    /// Sends the request on the forward stream; the reply arrives as a [`StreamReply`].
    fn handle(&mut self, msg: Forward, ctx: &mut Self::Context) -> Self::Result {
        let id = self.next_id;
        self.next_id += 1;
        let number = match self.send(id, &msg.request, ctx) {
            Ok(number) => number,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let (tx, rx) = oneshot::channel();
        self.pending.insert(id, (number, tx));
        let peer = self.peer.clone();
        Box::pin(async move {
            match tokio::time::timeout(msg.within, rx).await {
                Ok(Ok(reply)) => reply,
                Ok(Err(_)) => lost_contact(&peer, "the link closed").into_result(),
                Err(_) => lost_contact(&peer, "no reply in time").into_result(),
            }
        })
    }
}

/// Ask the peer one question on a call of its own, off the link's stream (which a question
/// an earlier build cannot decode would end).
#[derive(Message)]
#[rtype(result = "CeteResult<ForwardReply>")]
pub struct Ask(pub Forwarded);

impl Handler<Ask> for PeerLinkActor {
    type Result = ResponseFuture<CeteResult<ForwardReply>>;

    fn handle(&mut self, msg: Ask, _: &mut Self::Context) -> Self::Result {
        let (client, peer) = (self.client.clone(), self.peer.clone());
        Box::pin(async move { call_peer(client, &peer, &msg.0, POLL_ANSWER).await })
    }
}

/// A reply that came back on the forward stream: `(id, ForwardReply)`, encoded.
#[derive(Message)]
#[rtype(result = "()")]
struct StreamReply(RaftPayload);

impl Handler<StreamReply> for PeerLinkActor {
    type Result = ();

    fn handle(&mut self, msg: StreamReply, ctx: &mut Self::Context) {
        match decode::<(u64, ForwardReply)>(&msg.0.data) {
            Ok((id, reply)) => {
                if let Some((_, waiting)) = self.pending.remove(&id) {
                    let _ = waiting.send(reply.into_result());
                }
            }
            Err(e) => log::warn!("undecodable reply from {}: {e}", self.peer.name),
        }
        self.stop_if_drained(ctx);
    }
}

/// The forward stream of this number ended (or could not be opened): every request still
/// waiting on it gets `ended`, and the next request opens a new stream.
#[derive(Message)]
#[rtype(result = "()")]
struct StreamEnded {
    number: u64,
    ended: ForwardReply,
}

impl Handler<StreamEnded> for PeerLinkActor {
    type Result = ();

    fn handle(&mut self, msg: StreamEnded, ctx: &mut Self::Context) {
        if self.stream.as_ref().is_some_and(|(number, _)| *number == msg.number) {
            self.stream = None;
        }
        for (_, (_, waiting)) in self.pending.extract_if(|_, (number, _)| *number == msg.number) {
            let _ = waiting.send(msg.ended.clone().into_result());
        }
        self.stop_if_drained(ctx);
    }
}

/// The peer left the cluster or changed address: stop the link, once the requests it carries
/// are answered.
///
/// Why wait: what the peer is serving may be what made it leave. A leader that removes itself
/// commits the membership without it, and its followers see that membership (and close their
/// links to it) before the answer to the removal comes back on the link; dropping it then
/// turned a removal that took effect into "lost contact, may or may not have taken effect".
/// A request's own deadline bounds the wait ([`LONGEST_FORWARD`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseLink;

impl Handler<CloseLink> for PeerLinkActor {
    type Result = ();

    fn handle(&mut self, _: CloseLink, ctx: &mut Self::Context) {
        self.closing = true;
        if let Some(poll) = self.poll.take() {
            ctx.cancel_future(poll);
        }
        self.stop_if_drained(ctx);
        ctx.run_later(LONGEST_FORWARD, |_, ctx| ctx.stop());
    }
}
