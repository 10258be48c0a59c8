//! Exactly-once writes: every client write carries a [`RequestId`], and the state machine
//! records the ids it has applied, so a write that is sent again — because the leader it was
//! routed to went silent and its fate is unknown — is applied at most once.
//!
//! The record is part of the replicated state (same transaction as the data, carried in
//! snapshots) and is pruned deterministically: ids applied more than [`KEEP_ENTRIES`] log
//! entries ago are forgotten on every node at the same point, so all nodes always agree on
//! what is a duplicate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

/// Applied request ids, each with the log index that applied it.
pub(crate) const BY_ID: TableDefinition<(u64, u64), u64> = TableDefinition::new("requests");
/// The same, ordered by log index, for pruning.
const BY_INDEX: TableDefinition<(u64, u64, u64), ()> = TableDefinition::new("requests_by_index");

/// How far back (in log entries) a retried request is still recognised.
const KEEP_ENTRIES: u64 = 100_000;

/// A client write's identity: the node that took it from the client, and a number unique on
/// that node (seeded from the clock, so a restarted node does not reuse its old numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestId {
    pub origin: u64,
    pub sequence: u64,
}

static NEXT_SEQUENCE: LazyLock<AtomicU64> = LazyLock::new(|| {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
    AtomicU64::new(nanos)
});

impl RequestId {
    pub fn next(origin: u64) -> Self {
        RequestId { origin, sequence: NEXT_SEQUENCE.fetch_add(1, Ordering::Relaxed) }
    }

    fn key(&self) -> (u64, u64) {
        (self.origin, self.sequence)
    }
}

/// The applied-request record inside one write transaction.
pub(crate) struct AppliedRequests<'txn> {
    by_id: Table<'txn, (u64, u64), u64>,
    by_index: Table<'txn, (u64, u64, u64), ()>,
}

impl<'txn> AppliedRequests<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self, redb::Error> {
        Ok(AppliedRequests { by_id: txn.open_table(BY_ID)?, by_index: txn.open_table(BY_INDEX)? })
    }

    pub fn contains(&self, id: &RequestId) -> Result<bool, redb::Error> {
        Ok(self.by_id.get(id.key())?.is_some())
    }

    pub fn record(&mut self, id: &RequestId, index: u64) -> Result<(), redb::Error> {
        self.by_id.insert(id.key(), index)?;
        self.by_index.insert((index, id.origin, id.sequence), ())?;
        Ok(())
    }

    /// Forgets requests applied more than [`KEEP_ENTRIES`] entries before `applied`.
    pub fn prune(&mut self, applied: u64) -> Result<(), redb::Error> {
        let Some(cutoff) = applied.checked_sub(KEEP_ENTRIES) else { return Ok(()) };
        let old: Vec<(u64, u64, u64)> = self
            .by_index
            .range(..(cutoff, 0, 0))?
            .map(|item| item.map(|(key, _)| key.value()))
            .collect::<Result<_, _>>()?;
        for (index, origin, sequence) in old {
            self.by_index.remove((index, origin, sequence))?;
            self.by_id.remove((origin, sequence))?;
        }
        Ok(())
    }

    /// Empties the record (before a snapshot's is loaded).
    pub fn clear(&mut self) -> Result<(), redb::Error> {
        self.by_id.retain(|_, _| false)?;
        self.by_index.retain(|_, _| false)?;
        Ok(())
    }
}

/// Every applied request of a read view, for a snapshot.
pub(crate) fn all(txn: &redb::ReadTransaction) -> Result<Vec<(RequestId, u64)>, redb::Error> {
    let table = match txn.open_table(BY_ID) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    table
        .iter()?
        .map(|item| {
            let (key, index) = item?;
            let (origin, sequence) = key.value();
            Ok((RequestId { origin, sequence }, index.value()))
        })
        .collect()
}
