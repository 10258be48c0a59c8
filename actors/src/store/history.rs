//! The change history: every change the store applies with a revision, kept in redb beside the
//! data (in the same transaction), so that a watch can start from a past revision and replay
//! what it missed before it follows live changes ([`crate::connection::watch`]).
//!
//! Rows are keyed by `(revision, n)`, `n` counting the changes of one revision (a transaction
//! or a lease expiry changes several keys at one revision), so a range of the table is the
//! history in the order applied. The history is kept from its floor on: the oldest revision
//! every change of which is still here. Compaction raises the floor and deletes what is
//! below it; it is a log entry ([`crate::command::Command::Compact`]) that the leader
//! proposes when a revision has been in the history for longer than the retention
//! (`--history-retention`), so what every node keeps is decided by the log, not by its clock.
//!
//! Not kept: membership changes (they have no revision), the keys stamped when revisions
//! started (the floor then starts past them), and a snapshot's history: a node that installs
//! a snapshot keeps history from the snapshot's revision on (a watcher that resumes there from
//! before it is told the oldest revision it can have, as after a compaction).

use bytes::Bytes;
use redb::{ReadableTable, Table, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::command::{decode, encode, KeyRevisions};
use crate::store::changes::Change;

/// `(revision, n)` to the change, as [`Recorded`].
pub(crate) const HISTORY: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("history");
/// The floor, in the store's metadata table.
pub(crate) const FLOOR: &str = "history_floor";

/// How many changes at most a compaction deletes per applied entry: a compaction of a long
/// history is spread over the entries after it, so that no one apply holds up the others for
/// long. What is below the floor is never read, so when it goes changes nothing observable.
pub(crate) const DELETE_PER_APPLY: usize = 10_000;

/// One change as the history keeps it (the revision is the row's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Recorded {
    Set { key: String, value: Bytes, create_revision: u64, version: u64, lease: u64 },
    Delete { key: String },
}

/// Appends the changes that carry a revision, in order, to the history.
pub(crate) fn record(
    history: &mut Table<'_, (u64, u32), &'static [u8]>,
    changes: &[Change],
) -> Result<(), redb::Error> {
    let mut last: Option<(u64, u32)> = None;
    for change in changes {
        let (revision, recorded) = match change {
            Change::Set { key, value, revisions: Some(r) } => (
                r.mod_revision,
                Recorded::Set {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: r.create_revision,
                    version: r.version,
                    lease: r.lease,
                },
            ),
            Change::Delete { key, revision: Some(revision) } => (*revision, Recorded::Delete { key: key.clone() }),
            _ => continue,
        };
        let n = match last {
            Some((at, n)) if at == revision => n + 1,
            _ => 0,
        };
        last = Some((revision, n));
        let bytes = encode(&recorded).map_err(|e| redb::Error::Corrupted(format!("history: {e}")))?;
        history.insert((revision, n), bytes.as_slice())?;
    }
    Ok(())
}

/// The changes from revision `from` on, under `prefix`, at most `limit` of them (whole
/// revisions: a page never ends inside one), and the revision the next page starts at.
pub(crate) fn read(
    history: &impl ReadableTable<(u64, u32), &'static [u8]>,
    from: u64,
    prefix: &str,
    limit: usize,
) -> Result<(Vec<Change>, Option<u64>), redb::Error> {
    let mut changes = Vec::new();
    let mut last = None;
    for (scanned, row) in history.range((from, 0)..)?.enumerate() {
        let (at, bytes) = row?;
        let (revision, _) = at.value();
        // Stop between revisions once the page is full (a page counts the changes read, not
        // only those under the prefix, so that a narrow prefix does not read all at once).
        if scanned >= limit && last != Some(revision) {
            return Ok((changes, Some(revision)));
        }
        last = Some(revision);
        let change =
            match decode::<Recorded>(bytes.value()).map_err(|e| redb::Error::Corrupted(format!("history: {e}")))? {
                Recorded::Set { key, value, create_revision, version, lease } => Change::Set {
                    key,
                    value,
                    revisions: Some(KeyRevisions { create_revision, mod_revision: revision, version, lease }),
                },
                Recorded::Delete { key } => Change::Delete { key, revision: Some(revision) },
            };
        if change.matches(prefix) {
            changes.push(change);
        }
    }
    Ok((changes, None))
}

/// Deletes up to [`DELETE_PER_APPLY`] changes below `floor`; whether any are left.
pub(crate) fn delete_below(
    history: &mut Table<'_, (u64, u32), &'static [u8]>,
    floor: u64,
) -> Result<bool, redb::Error> {
    for extracted in history.extract_from_if(..(floor, 0), |_, _| true)?.take(DELETE_PER_APPLY) {
        extracted?;
    }
    Ok(history.first()?.is_some_and(|(at, _)| at.value().0 < floor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_reads_back_in_order_by_whole_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("h.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut history = txn.open_table(HISTORY).unwrap();
            let set = |key: &str, at: u64| Change::Set {
                key: key.into(),
                value: Bytes::from("v"),
                revisions: Some(KeyRevisions { create_revision: at, mod_revision: at, version: 1, lease: 0 }),
            };
            let changes = vec![
                set("a", 2),
                set("b/1", 3),
                set("b/2", 3),
                Change::Delete { key: "a".into(), revision: Some(4) },
                Change::Delete { key: "gone".into(), revision: None },
                set("b/3", 5),
            ];
            record(&mut history, &changes).unwrap();
            let (page, next) = read(&history, 0, "", 2).unwrap();
            assert_eq!(
                page.iter().map(|c| c.revision().unwrap()).collect::<Vec<_>>(),
                vec![2, 3, 3],
                "whole revisions"
            );
            assert_eq!(next, Some(4));
            let (page, next) = read(&history, 3, "b/", 100).unwrap();
            assert_eq!(page.len(), 3);
            assert_eq!(next, None);
            assert!(!delete_below(&mut history, 4).unwrap());
            let (page, _) = read(&history, 0, "", 100).unwrap();
            assert_eq!(page.iter().map(|c| c.revision().unwrap()).collect::<Vec<_>>(), vec![4, 5]);
        }
        txn.commit().unwrap();
    }
}
