//! A node removed from its cluster: how it learns it, and the record that keeps it out.
//!
//! openraft stops replicating to a removed node as soon as its leader appends the membership
//! without it, so a removed follower usually never sees that entry: its own log still lists it
//! (in the joint configuration), and it would wait for a leader, then campaign, for ever. So a
//! node also learns its removal from its peers: each answers the once-a-second poll of its
//! peer links with its committed membership, and a committed membership that is newer than the
//! newest one this node was in, and does not list it, means it was removed — by a change the
//! cluster committed, so no later leader can undo it. (The newest membership listing this node
//! is the bar, not its current one: a node catching up on the log reads memberships from before
//! it joined, and a peer that lags shows one; neither is newer than the entry that added it.)
//!
//! Once removed, a node stays out for good: the record [`REMOVED_FILE`] in its data directory
//! keeps a restarted node from taking part in Raft again. Joining again takes an empty data
//! directory, as in etcd.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::command::{LogId, NodeId, StoredMembership};

/// The record of a removal, in the data directory; it holds the reason, as text.
pub const REMOVED_FILE: &str = "removed";

/// Whether `committed`, a membership the cluster committed, shows that node `me` was removed:
/// it does not list `me`, and it is newer than `member_at`, the newest membership that did.
/// Never when `me` was in no membership yet (a node still joining).
pub fn shows_removal(me: NodeId, member_at: Option<LogId>, committed: &StoredMembership) -> bool {
    member_at.is_some() && committed.log_id() > &member_at && committed.membership().get_node(&me).is_none()
}

/// Where this node stands in its cluster: a member (of which memberships), or removed.
/// Owned by the ClusterActor, which feeds it the memberships it sees.
pub struct Standing {
    me: NodeId,
    name: String,
    /// The log id of the newest membership that listed this node.
    member_at: Option<LogId>,
    removed: Option<Removed>,
    record: RemovalRecord,
}

/// A node that was removed.
pub struct Removed {
    /// Why, in a sentence that names the node ("node3 was removed from the cluster (...)").
    pub reason: String,
    /// The cluster as a peer last described it (a committed membership), once one has.
    pub membership: Option<StoredMembership>,
}

/// What a membership a peer described changed.
#[derive(Debug, PartialEq, Eq)]
pub enum PeerNews {
    Nothing,
    /// This node learns it was removed.
    Removed,
    /// Already removed: a newer view of the cluster it left.
    NewerView,
}

impl Standing {
    /// The standing of node `name` whose data directory holds `record`: removed when the
    /// record says so.
    pub fn open(name: &str, record: RemovalRecord) -> std::io::Result<Standing> {
        let removed = record.read()?.map(|reason| Removed { reason, membership: None });
        Ok(Standing { me: crate::command::node_id(name), name: name.to_string(), member_at: None, removed, record })
    }

    pub fn removed(&self) -> Option<&Removed> {
        self.removed.as_ref()
    }

    pub fn record(&self) -> &RemovalRecord {
        &self.record
    }

    /// This node's own Raft shows `membership`; true when that shows, for the first time,
    /// that this node was removed (a leader that removed itself sees it so).
    pub fn own_membership(&mut self, membership: &StoredMembership, last_applied: Option<LogId>) -> bool {
        if self.removed.is_some() {
            return false;
        }
        if membership.membership().get_node(&self.me).is_some() {
            self.member_at = self.member_at.max(*membership.log_id());
            return false;
        }
        let committed = membership.log_id().is_some() && membership.log_id() <= &last_applied;
        if !committed || !shows_removal(self.me, self.member_at, membership) {
            return false;
        }
        let index = membership.log_id().map_or(0, |id| id.index);
        self.remove(format!("the membership committed at log index {index} no longer lists it"), membership.clone());
        true
    }

    /// Peer `peer` has committed `membership`.
    pub fn peer_membership(&mut self, peer: &str, membership: StoredMembership) -> PeerNews {
        match &mut self.removed {
            None if shows_removal(self.me, self.member_at, &membership) => {
                let index = membership.log_id().map_or(0, |id| id.index);
                self.remove(format!("{peer} has committed the membership of log index {index} without it"), membership);
                PeerNews::Removed
            }
            Some(removed) if removed.membership.as_ref().is_none_or(|m| membership.log_id() > m.log_id()) => {
                removed.membership = Some(membership);
                PeerNews::NewerView
            }
            _ => PeerNews::Nothing,
        }
    }

    /// This node's Raft state was replaced by an empty one (it gave up a one-node cluster of
    /// its own to join another): the memberships it was in are gone with it.
    pub fn forget_memberships(&mut self) {
        self.member_at = None;
    }

    /// Says so, once, and records it so that a restart remembers.
    fn remove(&mut self, why: String, membership: StoredMembership) {
        let reason = format!("{} was removed from the cluster ({why})", self.name);
        log::warn!(
            "{reason}: it takes no further part in Raft and answers as Removed; to join a cluster again, start it \
             on an empty data directory"
        );
        if let Err(e) = self.record.write(&reason) {
            log::error!(
                "cannot record the removal in {}: {e}; a restart would not remember it",
                self.record.path().display()
            );
        }
        self.removed = Some(Removed { reason, membership: Some(membership) });
    }
}

/// The removal record of a data directory.
#[derive(Debug, Clone)]
pub struct RemovalRecord {
    path: PathBuf,
}

impl RemovalRecord {
    pub fn in_directory(data_directory: &Path) -> Self {
        RemovalRecord { path: data_directory.join(REMOVED_FILE) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The reason recorded, if this node was removed.
    pub fn read(&self) -> std::io::Result<Option<String>> {
        match std::fs::read_to_string(&self.path) {
            Ok(reason) => Ok(Some(reason.trim().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Records the removal durably: written aside, synced, then renamed into place (and the
    /// directory synced), so a crash leaves either no record or a whole one.
    pub fn write(&self, reason: &str) -> std::io::Result<()> {
        let aside = self.path.with_extension("new");
        let mut file = std::fs::File::create(&aside)?;
        file.write_all(reason.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&aside, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::vote::RaftLeaderId as _;
    use openraft::Membership;

    use crate::command::LeaderId as CommittedLeaderId;

    use super::*;
    use crate::command::{node_id, Member};

    fn log_id(index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId::new(1, 0), index))
    }

    /// A committed membership of `voters`, at `index`.
    fn membership(index: u64, voters: &[&str]) -> StoredMembership {
        let nodes: BTreeMap<NodeId, Member> =
            voters.iter().map(|name| (node_id(name), Member { name: name.to_string(), ..Member::default() })).collect();
        let ids: BTreeSet<NodeId> = nodes.keys().copied().collect();
        StoredMembership::new(log_id(index), Membership::new(vec![ids], nodes).expect("a valid membership"))
    }

    #[test]
    fn a_newer_membership_without_this_node_is_a_removal() {
        let me = node_id("node3");
        assert!(shows_removal(me, log_id(7), &membership(9, &["node1", "node2"])));
    }

    #[test]
    fn a_membership_that_still_lists_this_node_is_not() {
        let me = node_id("node3");
        assert!(!shows_removal(me, log_id(7), &membership(9, &["node1", "node2", "node3"])));
    }

    #[test]
    fn a_lagging_peer_or_a_node_still_joining_is_not() {
        let me = node_id("node3");
        // The peer has not applied the entry that added node3 yet.
        assert!(!shows_removal(me, log_id(7), &membership(5, &["node1", "node2"])));
        assert!(!shows_removal(me, log_id(7), &membership(7, &["node1", "node2"])));
        // node3 was in no membership yet: it is catching up on the log before its own entry.
        assert!(!shows_removal(me, None, &membership(9, &["node1", "node2"])));
    }

    #[test]
    fn the_record_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let record = RemovalRecord::in_directory(dir.path());
        assert_eq!(record.read().expect("read"), None);
        record.write("node3 was removed").expect("write");
        assert_eq!(RemovalRecord::in_directory(dir.path()).read().expect("read"), Some("node3 was removed".into()));
    }
}
