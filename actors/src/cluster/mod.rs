//! ClusterActor: what this node knows of the cluster — every member's name and addresses
//! (from the replicated membership), their live states, the leader — and the peer links.
//!
//! It is fed Raft's metrics by the RaftActor, and keeps one [`PeerLinkActor`] per other member
//! (started and stopped as the membership changes), over which it carries the router's
//! batches to the leader ([`ForwardTo`]; a removed node passes nothing on). It also keeps this
//! node's [`Standing`]: when Raft or a peer shows that this node was removed, it stops the node's Raft for good, and the node answers
//! as `Removed` from then on; a leader that removed itself then hands its leadership over
//! ([`crate::raft::handover`]).

pub mod features;
pub mod handover;
pub mod node;
pub mod peer;
pub mod removal;
pub mod status;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use openraft::{Instant as _, ServerState};

use crate::cluster::handover::hand_over;
use crate::cluster::node::{ClusterInfo, NodeInfo};
use crate::cluster::peer::{
    call_peer, Ask, CloseLink, Forward, ForwardReply, Forwarded, PeerLinkActor, PeerState, PeerView,
};
use crate::cluster::removal::{PeerNews, Standing};
use crate::command::{node_id, LogId, Member, NodeId, RaftMetrics, StoredMembership};
use crate::deadlines::PREPARE_JOINER;
use crate::error::{CeteError, CeteResult};
use crate::metrics::LEADER_CHANGES;
use crate::raft::handover::successor;
use crate::raft::{MetricsUpdate, RaftStateReset, Shutdown};
use crate::wire::identity::ClusterIdentity;
use crate::wire::tls::ClientTls;

/// A node's state as API.md names it.
pub fn state_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "Leader",
        ServerState::Follower => "Follower",
        ServerState::Candidate => "Candidate",
        ServerState::Learner => "Learner",
        ServerState::Shutdown => "Shutdown",
    }
}

pub struct ClusterActor {
    me: Member,
    latest: RaftMetrics,
    /// While this node leads: when a quorum last acknowledged it, as of the latest metrics.
    quorum_acked_at: Option<Instant>,
    /// A member, or removed.
    standing: Standing,
    /// Stops this node's Raft once it is removed.
    raft: Recipient<Shutdown>,
    tls: Option<ClientTls>,
    /// The cluster's id, which every request to a peer carries.
    identity: ClusterIdentity,
    /// One link per other member, with the record it was opened for.
    links: HashMap<String, (Member, Addr<PeerLinkActor>)>,
    /// Each peer's state as its link last polled it.
    peer_states: HashMap<String, String>,
    /// The features every member was found to read, and the membership they were asked in
    /// (asked again once it changes).
    features_read: Option<(Option<LogId>, Vec<&'static str>)>,
}

impl ClusterActor {
    pub fn new(
        me: Member,
        tls: Option<ClientTls>,
        identity: ClusterIdentity,
        standing: Standing,
        raft: Recipient<Shutdown>,
    ) -> Self {
        let latest = RaftMetrics::new_initial(node_id(&me.name));
        ClusterActor {
            me,
            latest,
            quorum_acked_at: None,
            standing,
            raft,
            tls,
            identity,
            links: HashMap::new(),
            peer_states: HashMap::new(),
            features_read: None,
        }
    }

    /// The membership this node goes by: its Raft's, or once removed, the newest its peers
    /// described (its own Raft is stopped, and its log never had the change that removed it).
    fn membership(&self) -> &StoredMembership {
        match self.standing.removed().and_then(|removed| removed.membership.as_ref()) {
            Some(membership) => membership,
            None => &self.latest.membership_config,
        }
    }

    /// The leader: as Raft knows it, or once removed, the peer that says it leads.
    fn leader_id(&self) -> Option<NodeId> {
        match self.standing.removed() {
            None => self.latest.current_leader,
            Some(_) => self.peer_states.iter().find(|(_, state)| *state == "Leader").map(|(name, _)| node_id(name)),
        }
    }

    /// Whether the leader this node's Raft names is another node that its peer link last found
    /// unreachable. With PreVote a follower cut off from the others never campaigns, so its Raft
    /// keeps naming the leader it last heard from; the link's poll is what tells it is gone.
    fn leader_unreachable(&self) -> bool {
        let Some(leader) = self.latest.current_leader.filter(|leader| *leader != self.latest.id) else {
            return false;
        };
        self.member_name(leader).and_then(|name| self.peer_states.get(&name)).is_some_and(|state| state == "Shutdown")
    }

    fn member_name(&self, id: NodeId) -> Option<String> {
        self.membership().membership().get_node(&id).map(|m| m.name.clone())
    }

    fn my_info(&self) -> NodeInfo {
        let state = if self.standing.removed().is_some() { "Removed" } else { state_name(self.latest.state) };
        NodeInfo { raft_address: self.me.raft_address.clone(), metadata: self.me.metadata.clone(), state: state.into() }
    }

    /// What a removed node answers a request that only a member could serve.
    fn refusal(&self) -> Option<CeteError> {
        self.standing.removed().map(|removed| refusal(&removed.reason))
    }

    /// Stops Raft for good, and links to the members of the cluster this node left. A leader
    /// that removed itself then hands its leadership over to `successor`
    /// ([`crate::raft::handover`]): only once its Raft is stopped, so that it heartbeats no more.
    fn stepped_out(&mut self, successor: Option<Member>, ctx: &mut Context<Self>) {
        let raft = self.raft.clone();
        let (leaving, tls, identity) = (self.me.name.clone(), self.tls.clone(), self.identity.clone());
        actix::spawn(async move {
            let _ = raft.send(Shutdown).await;
            if let Some(successor) = successor {
                hand_over(successor, leaving, tls, identity).await;
            }
        });
        self.sync_links(ctx);
    }

    /// A peer's state: what it last reported of itself (Shutdown when it did not answer),
    /// corrected by what this node's Raft knows newer — who leads now — since polls are a
    /// second apart.
    fn peer_state<'a>(&'a self, member: &Member) -> &'a str {
        let id = node_id(&member.name);
        let polled = self.peer_states.get(&member.name).map(String::as_str);
        let leads = self.leader_id() == Some(id);
        match polled {
            Some("Shutdown") => "Shutdown",
            _ if leads => "Leader",
            Some("Leader") | None => {
                if self.membership().membership().voter_ids().any(|v| v == id) {
                    "Follower"
                } else {
                    "Learner"
                }
            }
            Some(state) => state,
        }
    }

    /// Opens links to new members (or members whose addresses changed), closes the rest.
    fn sync_links(&mut self, ctx: &mut Context<Self>) {
        let members: HashMap<String, Member> = self
            .membership()
            .membership()
            .nodes()
            .filter(|(_, m)| m.name != self.me.name)
            .map(|(_, m)| (m.name.clone(), m.clone()))
            .collect();
        self.links.retain(|name, (member, link)| {
            let keep = members.get(name) == Some(member);
            if !keep {
                link.do_send(CloseLink);
            }
            keep
        });
        self.peer_states.retain(|name, _| members.contains_key(name));
        for (name, member) in members {
            if !self.links.contains_key(&name) {
                let link =
                    PeerLinkActor::new(member.clone(), self.tls.as_ref(), &self.identity, ctx.address().recipient())
                        .start();
                self.links.insert(name, (member, link));
            }
        }
    }
}

impl Actor for ClusterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        if let Some(removed) = self.standing.removed() {
            log::warn!(
                "{} (recorded in {}): it takes no part in Raft and answers as Removed; to join a cluster again, \
                 start it on an empty data directory",
                removed.reason,
                self.standing.record().path().display()
            );
            self.stepped_out(None, ctx);
        }
    }
}

/// Raft's latest metrics, from the RaftActor.
impl Handler<MetricsUpdate> for ClusterActor {
    type Result = ();

    fn handle(&mut self, msg: MetricsUpdate, ctx: &mut Self::Context) {
        if self.standing.removed().is_some() {
            // Raft is stopped or stopping: its last words are no news, but until a peer has
            // described the cluster, its membership is the one to poll.
            let membership_changed = msg.0.membership_config != self.latest.membership_config;
            self.latest = msg.0;
            if membership_changed {
                self.sync_links(ctx);
            }
            return;
        }
        let leader_changed = msg.0.current_leader != self.latest.current_leader;
        let membership_changed = msg.0.membership_config != self.latest.membership_config;
        // What this node's replication had reached, while it led (it may step down in the very
        // update that shows its removal).
        let matched = msg.0.replication.clone().or_else(|| self.latest.replication.take());
        // The metrics give the instant of the last quorum acknowledgement (on Raft's clock):
        // turned into one on this clock, it stays right as it grows old, even when no newer
        // metrics come (a leader cut off hears nothing).
        self.quorum_acked_at = msg.0.last_quorum_acked.as_ref().and_then(|at| Instant::now().checked_sub(at.elapsed()));
        self.latest = msg.0;
        if self.standing.own_membership(&self.latest.membership_config, self.latest.last_applied) {
            let successor =
                matched.and_then(|matched| successor(self.latest.id, &matched, &self.latest.membership_config));
            self.stepped_out(successor, ctx);
            return;
        }
        if let Some(leader) = self.latest.current_leader.filter(|_| leader_changed) {
            LEADER_CHANGES.inc();
            let name = self.member_name(leader).unwrap_or_else(|| format!("#{leader}"));
            log::info!("leader is now {name} (term {})", self.latest.current_term);
        }
        if membership_changed {
            self.sync_links(ctx);
        }
    }
}

impl Handler<PeerState> for ClusterActor {
    type Result = ();

    fn handle(&mut self, msg: PeerState, ctx: &mut Self::Context) {
        if !self.links.contains_key(&msg.name) {
            return;
        }
        if let Some(membership) = msg.committed_membership {
            match self.standing.peer_membership(&msg.name, membership) {
                PeerNews::Removed => self.stepped_out(None, ctx),
                PeerNews::NewerView => self.sync_links(ctx),
                PeerNews::Nothing => {}
            }
        }
        // One line per change of reachability, not one per failed heartbeat.
        let was_down = self.peer_states.get(&msg.name).map(|s| s == "Shutdown");
        let is_down = msg.state == "Shutdown";
        match (was_down, is_down) {
            (Some(false) | None, true) => log::warn!("peer {} is unreachable", msg.name),
            (Some(true), false) => log::info!("peer {} is reachable again ({})", msg.name, msg.state),
            _ => {}
        }
        self.peer_states.insert(msg.name, msg.state);
    }
}

/// This node and its committed membership, as a polling peer asks ([`Forwarded::Poll`]).
#[derive(Message)]
#[rtype(result = "PeerView")]
pub struct DescribeToPeer;

impl Handler<DescribeToPeer> for ClusterActor {
    type Result = MessageResult<DescribeToPeer>;

    fn handle(&mut self, _: DescribeToPeer, _: &mut Self::Context) -> Self::Result {
        let membership = &self.latest.membership_config;
        let committed = membership.log_id().is_some() && membership.log_id() <= &self.latest.last_applied;
        let speaks_for_the_cluster = self.standing.removed().is_none();
        let committed_membership = (committed && speaks_for_the_cluster).then(|| StoredMembership::clone(membership));
        MessageResult(PeerView { node: self.my_info(), committed_membership })
    }
}

/// Whether this node was removed from its cluster: why (None while it is a member).
#[derive(Message)]
#[rtype(result = "Option<String>")]
pub struct WasRemoved;

impl Handler<WasRemoved> for ClusterActor {
    type Result = Option<String>;

    fn handle(&mut self, _: WasRemoved, _: &mut Self::Context) -> Option<String> {
        self.standing.removed().map(|removed| removed.reason.clone())
    }
}

/// What a removed node answers a request that only a member could serve.
pub fn refusal(reason: &str) -> CeteError {
    CeteError::Unavailable(format!(
        "{reason}; it serves no writes, linearizable reads or membership changes: send them to a member"
    ))
}

/// This node's Raft state was replaced by an empty one, to join another cluster.
impl Handler<RaftStateReset> for ClusterActor {
    type Result = ();

    fn handle(&mut self, _: RaftStateReset, _: &mut Self::Context) {
        self.standing.forget_memberships();
    }
}

/// This node, as `/v1/node` shows it.
#[derive(Message)]
#[rtype(result = "NodeInfo")]
pub struct DescribeNode;

impl Handler<DescribeNode> for ClusterActor {
    type Result = MessageResult<DescribeNode>;

    fn handle(&mut self, _: DescribeNode, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.my_info())
    }
}

/// The cluster, as `/v1/cluster` shows it: each member with the state it reported itself
/// (Shutdown when it did not answer), and the leader.
#[derive(Message)]
#[rtype(result = "ClusterInfo")]
pub struct DescribeCluster;

impl Handler<DescribeCluster> for ClusterActor {
    type Result = MessageResult<DescribeCluster>;

    fn handle(&mut self, _: DescribeCluster, _: &mut Self::Context) -> Self::Result {
        let mut cluster = ClusterInfo::default();
        for (_, member) in self.membership().membership().nodes() {
            let info = if member.name == self.me.name {
                self.my_info()
            } else {
                NodeInfo {
                    raft_address: member.raft_address.clone(),
                    metadata: member.metadata.clone(),
                    state: self.peer_state(member).to_string(),
                }
            };
            cluster.nodes.insert(member.name.clone(), info);
        }
        cluster.leader = self.leader_id().and_then(|id| self.member_name(id)).unwrap_or_default();
        MessageResult(cluster)
    }
}

/// Ready to serve: a leader is known and Raft is running. Not ready: why.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct Readiness;

impl Handler<Readiness> for ClusterActor {
    type Result = Result<(), String>;

    fn handle(&mut self, _: Readiness, _: &mut Self::Context) -> Result<(), String> {
        if let Some(removed) = self.standing.removed() {
            return Err(removed.reason.clone());
        }
        if self.latest.running_state.is_err() || self.latest.state == ServerState::Shutdown {
            return Err("raft has stopped".into());
        }
        if self.latest.current_leader.is_none() || self.leader_unreachable() {
            return Err("no leader is known: the cluster is electing one, or this node cannot reach it".into());
        }
        if self.leads_without_quorum() {
            return Err(format!(
                "this node leads but no quorum has acknowledged it for over {QUORUM_SILENCE:?}: it cannot serve \
                 writes or linearizable reads"
            ));
        }
        Ok(())
    }
}

/// How long a leader may go without a quorum's acknowledgement and still call itself ready:
/// the longest election timeout, after which the others may have elected another leader.
const QUORUM_SILENCE: Duration = Duration::from_secs(2);

impl ClusterActor {
    /// Leading a cluster of more than one voter, with no quorum heard from lately. (A lone
    /// voter is its own quorum; its metrics need not come again while it is idle.)
    fn leads_without_quorum(&self) -> bool {
        let voters = self.latest.membership_config.membership().voter_ids().count();
        self.latest.state == ServerState::Leader
            && voters > 1
            && self.quorum_acked_at.is_none_or(|at| at.elapsed() > QUORUM_SILENCE)
    }
}

/// The latest Raft metrics, for the metrics endpoint.
#[derive(Message)]
#[rtype(result = "RaftMetrics")]
pub struct LatestMetrics;

impl Handler<LatestMetrics> for ClusterActor {
    type Result = MessageResult<LatestMetrics>;

    fn handle(&mut self, _: LatestMetrics, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.latest.clone())
    }
}

/// Carry `request` to `to` over its peer link (opened now if there is none yet), for the
/// router's batcher. A removed node passes nothing on to the cluster it left: it is refused.
/// (One message per batch: a link handed out first and used after would cost the batch a
/// second pass through this thread's queue, which under load is most of a round.)
#[derive(Message)]
#[rtype(result = "CeteResult<ForwardReply>")]
pub struct ForwardTo {
    pub to: Member,
    pub request: Forwarded,
    /// How long the link waits for the answer.
    pub within: Duration,
}

impl Handler<ForwardTo> for ClusterActor {
    type Result = ResponseFuture<CeteResult<ForwardReply>>;

    fn handle(&mut self, msg: ForwardTo, ctx: &mut Self::Context) -> Self::Result {
        if let Some(refusal) = self.refusal() {
            return Box::pin(std::future::ready(Err(refusal)));
        }
        let link = self.link_to(&msg.to, ctx);
        Box::pin(async move { link.send(Forward { request: msg.request, within: msg.within }).await? })
    }
}

impl ClusterActor {
    /// The link to `leader`, opened now if this node has not linked it yet (its membership
    /// may be behind the leader's).
    fn link_to(&mut self, leader: &Member, ctx: &mut Context<Self>) -> Addr<PeerLinkActor> {
        match self.links.get(&leader.name) {
            Some((member, link)) if member == leader => link.clone(),
            _ => {
                let link =
                    PeerLinkActor::new(leader.clone(), self.tls.as_ref(), &self.identity, ctx.address().recipient())
                        .start();
                self.links.insert(leader.name.clone(), (leader.clone(), link.clone()));
                link
            }
        }
    }
}

/// Ask a node about to be added to give up any one-node state of its own (it is not a
/// member yet, so there is no link: a one-off call).
#[derive(Message)]
#[rtype(result = "CeteResult<()>")]
pub struct PrepareJoiner(pub Member);

impl Handler<PrepareJoiner> for ClusterActor {
    type Result = ResponseFuture<CeteResult<()>>;

    fn handle(&mut self, msg: PrepareJoiner, _: &mut Self::Context) -> Self::Result {
        let (tls, identity) = (self.tls.clone(), self.identity.clone());
        Box::pin(async move {
            let client = crate::raft::network::peer_client(&msg.0.raft_address, tls.as_ref(), &identity)
                .map_err(|e| CeteError::InvalidArgument(format!("bad raft address {:?}: {e}", msg.0.raft_address)))?;
            match call_peer(Some(client), &msg.0, &Forwarded::PrepareToJoin, PREPARE_JOINER).await? {
                ForwardReply::Done => Ok(()),
                ForwardReply::Failed(e) => Err(e),
                ForwardReply::NotSent(why) => Err(CeteError::Unavailable(format!("cannot reach the new node: {why}"))),
                other => Err(CeteError::Internal(format!("unexpected answer from {}: {other:?}", msg.0.name))),
            }
        })
    }
}

/// Whether this node leads and every other member's build reads `feature`
/// ([`features`]): a member that does not answer, or does not know the question, does not.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct MembersRead(pub &'static str);

impl Handler<MembersRead> for ClusterActor {
    type Result = ResponseActFuture<Self, bool>;

    fn handle(&mut self, msg: MembersRead, _: &mut Self::Context) -> Self::Result {
        if self.latest.state != ServerState::Leader || self.standing.removed().is_some() {
            return Box::pin(actix::fut::ready(false));
        }
        let membership = *self.membership().log_id();
        if let Some((asked_in, read)) = &self.features_read {
            if *asked_in == membership && read.contains(&msg.0) {
                return Box::pin(actix::fut::ready(true));
            }
        }
        let others: Vec<String> = self
            .membership()
            .membership()
            .nodes()
            .map(|(_, member)| member.name.clone())
            .filter(|name| *name != self.me.name)
            .collect();
        let links: Option<Vec<Addr<PeerLinkActor>>> =
            others.iter().map(|name| self.links.get(name).map(|(_, link)| link.clone())).collect();
        let Some(links) = links else { return Box::pin(actix::fut::ready(false)) };
        let asked = async move {
            for link in links {
                match link.send(Ask(Forwarded::Features)).await {
                    Ok(Ok(ForwardReply::Features(read))) if features::names(&read, msg.0) => {}
                    _ => return false,
                }
            }
            true
        };
        // Remembered for this membership: a member's build changes only by a restart, and
        // one restarted into an earlier build is an operator's step back, not a race.
        Box::pin(asked.into_actor(self).map(move |read, cluster, _| {
            if read {
                match &mut cluster.features_read {
                    Some((asked_in, features)) if *asked_in == membership => features.push(msg.0),
                    other => *other = Some((membership, vec![msg.0])),
                }
            }
            read
        }))
    }
}
