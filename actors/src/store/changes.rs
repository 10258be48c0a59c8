//! What the StoreActor tells watchers: each applied change, in the order applied (watch
//! streams, [`crate::connection::watch`], take them from here).

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;

use crate::command::{KeyRevisions, Metadata, StoredMembership};

/// One applied change, as watchers see it: with the revision it was made at, once the store
/// counts them ([`crate::store::revisions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The key's revisions after the write (its mod revision is the change's).
    Set {
        key: String,
        value: Bytes,
        revisions: Option<KeyRevisions>,
    },
    Delete {
        key: String,
        revision: Option<u64>,
    },
    Join {
        id: String,
        metadata: Metadata,
    },
    Leave {
        id: String,
    },
}

impl Change {
    /// Join and Leave events for the members that differ between two memberships.
    pub(crate) fn membership_diff(before: &StoredMembership, after: &StoredMembership) -> Vec<Change> {
        let old: std::collections::BTreeMap<_, _> = before.nodes().map(|(_, m)| (m.name.clone(), m.clone())).collect();
        let new: std::collections::BTreeMap<_, _> = after.nodes().map(|(_, m)| (m.name.clone(), m.clone())).collect();
        let joined = new
            .iter()
            .filter(|(name, _)| !old.contains_key(*name))
            .map(|(name, m)| Change::Join { id: name.clone(), metadata: m.metadata.clone() });
        let left = old.keys().filter(|name| !new.contains_key(*name)).map(|name| Change::Leave { id: name.clone() });
        joined.chain(left).collect()
    }

    /// The revision the change was made at (None: a membership change, or a store without
    /// revisions).
    pub fn revision(&self) -> Option<u64> {
        match self {
            Change::Set { revisions, .. } => revisions.map(|r| r.mod_revision),
            Change::Delete { revision, .. } => *revision,
            Change::Join { .. } | Change::Leave { .. } => None,
        }
    }

    pub(crate) fn matches(&self, prefix: &str) -> bool {
        match self {
            Change::Set { key, .. } | Change::Delete { key, .. } => key.starts_with(prefix),
            // Membership changes are not keys; a key filter lets them through only when empty.
            Change::Join { .. } | Change::Leave { .. } => prefix.is_empty(),
        }
    }
}

/// What the StoreActor sends a watcher.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub enum WatchEvent {
    /// The changes of one applied batch, shared by every watcher.
    Changes(Arc<Vec<Change>>),
    /// The watcher's mailbox was full: it has been unsubscribed.
    Overflowed,
}
