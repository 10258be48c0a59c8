//! The doors the routing wing goes through: recipients of the RaftActor's and the
//! ClusterActor's messages (the same messages either way), so that a unit test can stand in
//! for them with small actors of its own.

use actix::prelude::*;

use super::msg::ServeLease;

use crate::cluster::{MembersRead, PrepareJoiner, WasRemoved};
use crate::raft::{
    AddMember, AwaitApplied, AwaitLeader, AwaitNewLeader, ClientWrite, PlanJoin, PromoteMember, ReadIndex,
    RemoveMember, TransferLeader,
};

/// This node's Raft, for the requests the router serves here and the leader changes it waits
/// for.
#[derive(Clone)]
pub struct RaftPorts {
    pub client_write: Recipient<ClientWrite>,
    pub read_index: Recipient<ReadIndex>,
    pub await_applied: Recipient<AwaitApplied>,
    pub await_leader: Recipient<AwaitLeader>,
    pub await_new_leader: Recipient<AwaitNewLeader>,
    pub transfer_leader: Recipient<TransferLeader>,
    pub plan_join: Recipient<PlanJoin>,
    pub add_member: Recipient<AddMember>,
    pub promote_member: Recipient<PromoteMember>,
    pub remove_member: Recipient<RemoveMember>,
    /// The index this node has applied up to, as the RaftActor last saw it.
    pub applied: tokio::sync::watch::Receiver<u64>,
    /// The lease countdowns that run beside Raft while this node leads ([`ServeLease`]; none
    /// in tests that do not serve leases).
    pub lessor: Option<Recipient<ServeLease>>,
}

impl RaftPorts {
    /// The doors of `raft`: the RaftActor, or an actor a test puts in its place.
    pub fn of<A>(raft: &Addr<A>, applied: tokio::sync::watch::Receiver<u64>) -> Self
    where
        A: Actor<Context = Context<A>>
            + Handler<ClientWrite>
            + Handler<ReadIndex>
            + Handler<AwaitApplied>
            + Handler<AwaitLeader>
            + Handler<AwaitNewLeader>
            + Handler<TransferLeader>
            + Handler<PlanJoin>
            + Handler<AddMember>
            + Handler<PromoteMember>
            + Handler<RemoveMember>,
    {
        RaftPorts {
            client_write: raft.clone().recipient(),
            read_index: raft.clone().recipient(),
            await_applied: raft.clone().recipient(),
            await_leader: raft.clone().recipient(),
            await_new_leader: raft.clone().recipient(),
            transfer_leader: raft.clone().recipient(),
            plan_join: raft.clone().recipient(),
            add_member: raft.clone().recipient(),
            promote_member: raft.clone().recipient(),
            remove_member: raft.clone().recipient(),
            applied,
            lessor: None,
        }
    }

    /// These ports, with the lease countdowns to serve lease requests.
    pub fn with_lessor(self, lessor: Recipient<ServeLease>) -> Self {
        RaftPorts { lessor: Some(lessor), ..self }
    }
}

/// The ClusterActor: whether this node was removed, a joiner to prepare, and whether every
/// member reads an entry.
#[derive(Clone)]
pub struct ClusterPorts {
    pub was_removed: Recipient<WasRemoved>,
    pub prepare_joiner: Recipient<PrepareJoiner>,
    pub members_read: Recipient<MembersRead>,
}

impl ClusterPorts {
    /// The doors of `cluster`: the ClusterActor, or an actor a test puts in its place.
    pub fn of<A>(cluster: &Addr<A>) -> Self
    where
        A: Actor<Context = Context<A>> + Handler<WasRemoved> + Handler<PrepareJoiner> + Handler<MembersRead>,
    {
        ClusterPorts {
            was_removed: cluster.clone().recipient(),
            prepare_joiner: cluster.clone().recipient(),
            members_read: cluster.clone().recipient(),
        }
    }
}
