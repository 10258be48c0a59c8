//! ClusterActor: what this node knows of the cluster — every member's name and addresses
//! (from the replicated membership), live states, and the leader.
//!
//! It follows openraft's metrics stream, so answering `/v1/node` or `/v1/cluster` never waits
//! on Raft.

use actix::prelude::*;
use openraft::{RaftMetrics, ServerState};
use tokio_stream::wrappers::WatchStream;

use crate::command::{node_id, Member, NodeId, Raft};
use crate::metrics::LEADER_CHANGES;
use crate::node::{ClusterInfo, NodeInfo};

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
    raft: Raft,
    latest: RaftMetrics<NodeId, Member>,
}

impl ClusterActor {
    pub fn new(me: Member, raft: Raft) -> Self {
        let latest = raft.metrics().borrow().clone();
        ClusterActor { me, raft, latest }
    }

    fn member_name(&self, id: NodeId) -> Option<String> {
        self.latest.membership_config.membership().get_node(&id).map(|m| m.name.clone())
    }

    fn my_info(&self) -> NodeInfo {
        NodeInfo {
            raft_address: self.me.raft_address.clone(),
            metadata: self.me.metadata.clone(),
            state: state_name(self.latest.state).to_string(),
        }
    }

    /// The state of another member as far as this node can tell from Raft alone.
    fn peer_state(&self, id: NodeId) -> &'static str {
        let membership = self.latest.membership_config.membership();
        if self.latest.current_leader == Some(id) {
            return "Leader";
        }
        if !membership.voter_ids().any(|v| v == id) {
            return "Learner";
        }
        "Follower"
    }
}

impl Actor for ClusterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1024);
        ctx.add_stream(WatchStream::new(self.raft.metrics()));
    }
}

impl StreamHandler<RaftMetrics<NodeId, Member>> for ClusterActor {
    fn handle(&mut self, metrics: RaftMetrics<NodeId, Member>, _: &mut Self::Context) {
        let leader_changed = metrics.current_leader != self.latest.current_leader;
        self.latest = metrics;
        if let Some(leader) = self.latest.current_leader.filter(|_| leader_changed) {
            LEADER_CHANGES.inc();
            let name = self.member_name(leader).unwrap_or_else(|| format!("#{leader}"));
            log::info!("leader is now {name} (term {})", self.latest.current_term);
        }
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

/// The cluster, as `/v1/cluster` shows it.
#[derive(Message)]
#[rtype(result = "ClusterInfo")]
pub struct DescribeCluster;

impl Handler<DescribeCluster> for ClusterActor {
    type Result = MessageResult<DescribeCluster>;

    fn handle(&mut self, _: DescribeCluster, _: &mut Self::Context) -> Self::Result {
        let my_id = node_id(&self.me.name);
        let mut cluster = ClusterInfo::default();
        for (id, member) in self.latest.membership_config.membership().nodes() {
            let info = if *id == my_id {
                self.my_info()
            } else {
                NodeInfo {
                    raft_address: member.raft_address.clone(),
                    metadata: member.metadata.clone(),
                    state: self.peer_state(*id).to_string(),
                }
            };
            cluster.nodes.insert(member.name.clone(), info);
        }
        cluster.leader = self.latest.current_leader.and_then(|id| self.member_name(id)).unwrap_or_default();
        MessageResult(cluster)
    }
}

/// Ready to serve: a leader is known and this node is part of the cluster.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct Readiness;

impl Handler<Readiness> for ClusterActor {
    type Result = bool;

    fn handle(&mut self, _: Readiness, _: &mut Self::Context) -> bool {
        self.latest.running_state.is_ok()
            && self.latest.current_leader.is_some()
            && self.latest.state != ServerState::Shutdown
    }
}

/// The latest Raft metrics, for the metrics endpoint.
#[derive(Message)]
#[rtype(result = "RaftMetrics<NodeId, Member>")]
pub struct LatestMetrics;

impl Handler<LatestMetrics> for ClusterActor {
    type Result = MessageResult<LatestMetrics>;

    fn handle(&mut self, _: LatestMetrics, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.latest.clone())
    }
}

/// The leader's member record, when one is known (for routing writes to it).
#[derive(Message)]
#[rtype(result = "Option<Member>")]
pub struct CurrentLeader;

impl Handler<CurrentLeader> for ClusterActor {
    type Result = Option<Member>;

    fn handle(&mut self, _: CurrentLeader, _: &mut Self::Context) -> Option<Member> {
        let leader = self.latest.current_leader?;
        self.latest.membership_config.membership().get_node(&leader).cloned()
    }
}
