//! A leader that removes itself hands its leadership on, so the cluster is not left leaderless
//! for long: the Raft side of it (who succeeds, when the successor campaigns); the
//! ClusterActor tells the successor ([`crate::cluster::handover`]).
//!
//! This mechanism predates openraft 0.10 and is kept as it is: 0.10 has a leadership transfer
//! (`Trigger::transfer_leader`, and `removed_leader_step_down`, by which a removed leader
//! transfers leadership itself 150 ms after its removal commits), but Cete stops a removed
//! leader's Raft as soon as it has applied the removal, before that step-down comes due, and the
//! successor named here campaigns as the transfer would have made it do. Moving this onto
//! `transfer_leader` belongs with the leader transfer on SIGTERM.
//!
//! openraft 0.9 had no leadership transfer. A leader whose removal is committed steps down, and
//! each remaining voter first waits out the leader lease it granted the old leader (a vote
//! request is refused until `election_timeout_max` after the last heartbeat), then an election
//! timeout of its own: 3-4 s without a leader, and two voters may campaign at once and split.
//! So the leaving leader names a successor — the remaining voter its replication had brought
//! furthest, the one the others will vote for — and, once its own Raft is stopped (it sends no
//! more heartbeats, so every lease on it is running out), tells it. The successor waits for the
//! lease to run out, unless a leader is elected meanwhile, and campaigns at once
//! (`trigger().elect()`), a second or more before any other voter's election timer fires.
//! Should the successor lose (its log was behind after all), the others elect as they would
//! have anyway.

use std::time::Duration;

use crate::command::{node_id, Member, NodeId, RaftMetrics, StoredMembership};

/// How much longer than the lease the successor waits: heartbeats the old leader sent just
/// before it stopped may still be on their way to the other voters.
pub const LEASE_MARGIN: Duration = Duration::from_millis(150);

/// The voter of `membership` (one without `me`, the leaving leader) that the leader's
/// replication had brought furthest (`matched`: the last log id each follower holds).
pub fn successor(
    me: NodeId,
    matched: &std::collections::BTreeMap<NodeId, Option<crate::command::LogId>>,
    membership: &StoredMembership,
) -> Option<Member> {
    let membership = membership.membership();
    membership
        .voter_ids()
        .filter(|id| *id != me)
        .max_by_key(|id| (matched.get(id).copied().flatten(), std::cmp::Reverse(*id)))
        .and_then(|id| membership.get_node(&id).cloned())
}

/// Whether the leader `leaving` is gone and no other has been elected yet, seen from `metrics`
/// of a remaining voter: the moment for it to campaign.
pub fn still_leaderless(leaving: &str, metrics: &RaftMetrics) -> bool {
    let leaving = node_id(leaving);
    let membership = metrics.membership_config.membership();
    let gone = !membership.voter_ids().any(|id| id == leaving);
    let no_other = metrics.current_leader.is_none_or(|leader| leader == leaving);
    gone && no_other && metrics.state == openraft::ServerState::Follower
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::vote::RaftLeaderId as _;
    use openraft::Membership;

    use crate::command::LeaderId as CommittedLeaderId;

    use super::*;
    use crate::command::LogId;

    fn log_id(index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId::new(1, 0), index))
    }

    fn membership(voters: &[&str]) -> StoredMembership {
        let nodes: BTreeMap<NodeId, Member> =
            voters.iter().map(|name| (node_id(name), Member { name: name.to_string(), ..Member::default() })).collect();
        let ids: BTreeSet<NodeId> = nodes.keys().copied().collect();
        StoredMembership::new(log_id(9), Membership::new(vec![ids], nodes).expect("a valid membership"))
    }

    #[test]
    fn the_successor_is_the_voter_furthest_along() {
        let remaining = membership(&["node2", "node3"]);
        let matched = BTreeMap::from([(node_id("node2"), log_id(7)), (node_id("node3"), log_id(9))]);
        let chosen = successor(node_id("node1"), &matched, &remaining).expect("a successor");
        assert_eq!(chosen.name, "node3");
        let matched = BTreeMap::from([(node_id("node2"), log_id(9)), (node_id("node3"), None)]);
        assert_eq!(successor(node_id("node1"), &matched, &remaining).expect("a successor").name, "node2");
    }

    #[test]
    fn no_remaining_voter_no_successor() {
        assert!(successor(node_id("node1"), &BTreeMap::new(), &membership(&["node1"])).is_none());
    }
}
