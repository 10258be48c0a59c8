//! Exactly-once writes: a client write that leaves its node carries a [`RequestId`], and the state machine
//! records the ids it has applied, so a write that is sent again — because the leader it was
//! routed to went silent and its fate is unknown — is applied at most once.
//!
//! The record is part of the replicated state (same transaction as the data, carried in
//! snapshots) and is pruned deterministically: before the entry at index `i` is applied, the
//! ids applied by entries below `i - KEEP_ENTRIES` are forgotten, on every node at the same
//! entry whatever the batches it applies in, so all nodes always agree on what is a duplicate.
//!
//! Cost per request: one insert into [`BY_ID`], whose previous value tells a duplicate apart
//! (a lookup and an insert in one walk of the tree), and one row per log entry, not per
//! request, in [`BY_ENTRY`], which lists the entry's ids for pruning.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use redb::{ReadableTable, Table, TableDefinition, TableHandle, WriteTransaction};
use serde::{Deserialize, Serialize};

/// Applied request ids, each with the log index that applied it.
pub(crate) const BY_ID: TableDefinition<(u64, u64), u64> = TableDefinition::new("requests");
/// The ids each log entry applied (16 bytes each: origin and sequence, little-endian).
const BY_ENTRY: TableDefinition<u64, &[u8]> = TableDefinition::new("requests_by_entry");
/// Before: one row per request, ordered by log index. Converted to [`BY_ENTRY`] on open.
const LEGACY_BY_INDEX: TableDefinition<(u64, u64, u64), ()> = TableDefinition::new("requests_by_index");

/// How far back (in log entries) a retried request is still recognised.
pub(crate) const KEEP_ENTRIES: u64 = 100_000;

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

    /// The id as stored in the record of an entry and in snapshots: origin, then sequence, LE.
    pub(crate) fn to_bytes(self) -> [u8; 16] {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.origin.to_le_bytes());
        bytes[8..].copy_from_slice(&self.sequence.to_le_bytes());
        bytes
    }

    pub(crate) fn from_bytes(bytes: [u8; 16]) -> Self {
        let (origin, sequence) = bytes.split_at(8);
        RequestId {
            origin: u64::from_le_bytes(origin.try_into().expect("8 bytes")),
            sequence: u64::from_le_bytes(sequence.try_into().expect("8 bytes")),
        }
    }
}

/// The applied-request record inside one write transaction.
pub(crate) struct AppliedRequests<'txn> {
    by_id: Table<'txn, (u64, u64), u64>,
    by_entry: Table<'txn, u64, &'static [u8]>,
    /// Ids recorded for the entry being applied, written to [`BY_ENTRY`] by [`Self::end_entry`].
    entry: Vec<u8>,
}

impl<'txn> AppliedRequests<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self, redb::Error> {
        Ok(AppliedRequests { by_id: txn.open_table(BY_ID)?, by_entry: txn.open_table(BY_ENTRY)?, entry: Vec::new() })
    }

    /// Records `id` as applied by the entry at `index`; false when it was applied before
    /// (the record then keeps its first index).
    pub fn record(&mut self, id: &RequestId, index: u64) -> Result<bool, redb::Error> {
        let earlier = self.by_id.insert(id.key(), index)?.map(|guard| guard.value());
        if let Some(earlier) = earlier {
            self.by_id.insert(id.key(), earlier)?;
            return Ok(false);
        }
        self.entry.extend_from_slice(&id.to_bytes());
        Ok(true)
    }

    /// Files the ids recorded since the last call under the entry at `index`.
    pub fn end_entry(&mut self, index: u64) -> Result<(), redb::Error> {
        if self.entry.is_empty() {
            return Ok(());
        }
        let mut ids = self.by_entry.get(index)?.map(|guard| guard.value().to_vec()).unwrap_or_default();
        ids.append(&mut self.entry);
        self.by_entry.insert(index, ids.as_slice())?;
        Ok(())
    }

    /// Forgets requests applied more than [`KEEP_ENTRIES`] entries before the entry at
    /// `index`; called before that entry is applied (one seek when nothing falls out).
    pub fn prune(&mut self, index: u64) -> Result<(), redb::Error> {
        let Some(cutoff) = index.checked_sub(KEEP_ENTRIES) else { return Ok(()) };
        let old: Vec<(u64, Vec<u8>)> = self
            .by_entry
            .range(..cutoff)?
            .map(|item| item.map(|(index, ids)| (index.value(), ids.value().to_vec())))
            .collect::<Result<_, _>>()?;
        for (index, ids) in old {
            for id in ids.chunks_exact(16) {
                let id = RequestId::from_bytes(id.try_into().expect("16-byte chunks"));
                self.by_id.remove(id.key())?;
            }
            self.by_entry.remove(index)?;
        }
        Ok(())
    }

    /// Empties the record (before a snapshot's is loaded).
    pub fn clear(&mut self) -> Result<(), redb::Error> {
        self.by_id.retain(|_, _| false)?;
        self.by_entry.retain(|_, _| false)?;
        Ok(())
    }
}

/// Converts a record kept one row per request (before) to rows per entry, once.
pub(crate) fn upgrade(txn: &WriteTransaction) -> Result<(), redb::Error> {
    if !txn.list_tables()?.any(|table| table.name() == LEGACY_BY_INDEX.name()) {
        return Ok(());
    }
    {
        let legacy = txn.open_table(LEGACY_BY_INDEX)?;
        let mut record = AppliedRequests::open(txn)?;
        let mut current = None;
        for item in legacy.iter()? {
            let (index, origin, sequence) = item?.0.value();
            if current.is_some_and(|c| c != index) {
                record.end_entry(current.expect("checked"))?;
            }
            current = Some(index);
            record.entry.extend_from_slice(&RequestId { origin, sequence }.to_bytes());
        }
        if let Some(index) = current {
            record.end_entry(index)?;
        }
    }
    txn.delete_table(LEGACY_BY_INDEX)?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use redb::Database;

    use super::*;

    #[test]
    fn a_record_kept_per_request_is_upgraded_to_rows_per_entry_and_pruned_from_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("store.redb")).unwrap();
        let (a, b) = (RequestId { origin: 1, sequence: 10 }, RequestId { origin: 2, sequence: 20 });
        let txn = db.begin_write().unwrap();
        {
            let mut by_id = txn.open_table(BY_ID).unwrap();
            let mut legacy = txn.open_table(LEGACY_BY_INDEX).unwrap();
            for (id, index) in [(a, 5), (b, 7)] {
                by_id.insert(id.key(), index).unwrap();
                legacy.insert((index, id.origin, id.sequence), ()).unwrap();
            }
        }
        txn.commit().unwrap();

        let txn = db.begin_write().unwrap();
        upgrade(&txn).unwrap();
        assert!(!txn.list_tables().unwrap().any(|table| table.name() == LEGACY_BY_INDEX.name()));
        let mut record = AppliedRequests::open(&txn).unwrap();
        assert!(!record.record(&a, 9).unwrap(), "an id recorded before the upgrade is still a duplicate");
        assert!(!record.record(&b, 9).unwrap());
        // Entry 7 falls behind the cutoff only once entry 7 + KEEP_ENTRIES + 1 is applied.
        record.prune(7 + KEEP_ENTRIES).unwrap();
        assert!(record.record(&a, 7 + KEEP_ENTRIES).unwrap(), "entry 5's ids are forgotten");
        assert!(!record.record(&b, 7 + KEEP_ENTRIES).unwrap(), "entry 7's are not yet");
    }
}
