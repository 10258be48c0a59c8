//! Leases in the applied state: which leases exist, with the TTL each was granted, and which
//! keys each one holds. Both tables are written by applies in the same transaction as the
//! data, so they are a function of the log alone; what a lease has left to live is not here
//! (it is the leader's countdown, [`crate::lease`], which proposes the revoke when it runs
//! out).
//!
//! A key's record names its lease ([`crate::store::revisions`]); [`LEASE_KEYS`] is the index
//! the other way, kept in step by every write and delete, and rebuilt from the records when a
//! snapshot is installed (snapshots carry only [`LEASES`]).

use actix::prelude::*;
use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};

use crate::error::{CeteError, CeteResult};
use crate::store::StoreActor;

/// Lease id to the TTL it was granted, in seconds.
pub(crate) const LEASES: TableDefinition<u64, u64> = TableDefinition::new("leases");
/// (lease id, key) for every key attached to a lease.
pub(crate) const LEASE_KEYS: TableDefinition<(u64, &str), ()> = TableDefinition::new("lease_keys");

/// What changed among the leases, for the leader's countdowns ([`crate::lease`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEvent {
    Granted {
        id: u64,
        ttl_seconds: u64,
    },
    Revoked {
        id: u64,
    },
    /// The whole state was replaced (a snapshot was installed): read the leases again.
    Reset,
}

/// The lease tables of one apply.
pub(crate) struct LeaseTables<'txn> {
    leases: Table<'txn, u64, u64>,
    keys: Table<'txn, (u64, &'static str), ()>,
}

impl<'txn> LeaseTables<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self, redb::TableError> {
        Ok(LeaseTables { leases: txn.open_table(LEASES)?, keys: txn.open_table(LEASE_KEYS)? })
    }

    pub fn exists(&self, id: u64) -> Result<bool, redb::StorageError> {
        Ok(self.leases.get(id)?.is_some())
    }

    /// Grants lease `id`; false when it exists already.
    pub fn grant(&mut self, id: u64, ttl_seconds: u64) -> Result<bool, redb::StorageError> {
        if self.exists(id)? {
            return Ok(false);
        }
        self.leases.insert(id, ttl_seconds)?;
        Ok(true)
    }

    /// Keeps the index in step with a key whose lease goes from `before` to `after` (0: none).
    pub fn reattach(&mut self, key: &str, before: u64, after: u64) -> Result<(), redb::StorageError> {
        if before == after {
            return Ok(());
        }
        if before != 0 {
            self.keys.remove((before, key))?;
        }
        if after != 0 {
            self.keys.insert((after, key), ())?;
        }
        Ok(())
    }

    /// Removes lease `id` and its index rows; answers its keys in key order (None: no such
    /// lease). The keys themselves are the caller's to delete.
    pub fn revoke(&mut self, id: u64) -> Result<Option<Vec<String>>, redb::StorageError> {
        if self.leases.remove(id)?.is_none() {
            return Ok(None);
        }
        let keys = keys_of(&self.keys, id)?;
        for key in &keys {
            self.keys.remove((id, key.as_str()))?;
        }
        Ok(Some(keys))
    }
}

/// The keys attached to lease `id`, in key order.
pub(crate) fn keys_of(
    table: &impl ReadableTable<(u64, &'static str), ()>,
    id: u64,
) -> Result<Vec<String>, redb::StorageError> {
    let mut keys = Vec::new();
    for row in table.range((id, "")..)? {
        let (at, _) = row?;
        let (lease, key) = at.value();
        if lease != id {
            break;
        }
        keys.push(key.to_string());
    }
    Ok(keys)
}

/// Every lease with its TTL, in id order.
pub(crate) fn all(table: &impl ReadableTable<u64, u64>) -> Result<Vec<(u64, u64)>, redb::StorageError> {
    table.iter()?.map(|row| row.map(|(id, ttl)| (id.value(), ttl.value()))).collect()
}

// ---- What the StoreActor answers about leases ----

/// Lease changes applied, in order: sent to the one actor that asked with [`WatchLeases`].
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct LeaseEvents(pub Vec<LeaseEvent>);

/// Tell `0` of every lease granted or revoked from now on (replacing whoever was told before).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WatchLeases(pub Recipient<LeaseEvents>);

impl Handler<WatchLeases> for StoreActor {
    type Result = ();

    fn handle(&mut self, msg: WatchLeases, _: &mut Self::Context) {
        self.lessor = Some(msg.0);
    }
}

/// Every lease and the TTL it was granted, in id order, as applied here.
#[derive(Message)]
#[rtype(result = "CeteResult<Vec<(u64, u64)>>")]
pub struct ListLeases;

impl Handler<ListLeases> for StoreActor {
    type Result = CeteResult<Vec<(u64, u64)>>;

    fn handle(&mut self, _: ListLeases, _: &mut Self::Context) -> Self::Result {
        let fail = |e: &dyn std::fmt::Display| CeteError::Internal(format!("leases: {e}"));
        let table = self.txn()?.open_table(LEASES).map_err(|e| fail(&e))?;
        all(&table).map_err(|e| fail(&e))
    }
}

/// One lease as applied here: its granted TTL and its keys in key order (None: no such lease).
#[derive(Message)]
#[rtype(result = "CeteResult<Option<(u64, Vec<String>)>>")]
pub struct ReadLease(pub u64);

impl Handler<ReadLease> for StoreActor {
    type Result = CeteResult<Option<(u64, Vec<String>)>>;

    fn handle(&mut self, msg: ReadLease, _: &mut Self::Context) -> Self::Result {
        let fail = |e: &dyn std::fmt::Display| CeteError::Internal(format!("leases: {e}"));
        let txn = self.txn()?;
        let leases = txn.open_table(LEASES).map_err(|e| fail(&e))?;
        let Some(ttl) = leases.get(msg.0).map_err(|e| fail(&e))?.map(|ttl| ttl.value()) else { return Ok(None) };
        let keys = keys_of(&txn.open_table(LEASE_KEYS).map_err(|e| fail(&e))?, msg.0).map_err(|e| fail(&e))?;
        Ok(Some((ttl, keys)))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use openraft::vote::RaftLeaderId as _;
    use openraft::EntryPayload;

    use super::*;
    use crate::command::txn::{Txn, TxnOp};
    use crate::command::{Command, CommandResponse, Entry, KeyRevisions, LeaderId, LogId};
    use crate::store::{ApplyEntries, OpenSnapshotView, ReadKey, ReplaceState, StoreRevision};

    fn entries(commands: Vec<Command>) -> Vec<Entry> {
        (1..)
            .zip(commands)
            .map(|(index, command)| Entry {
                log_id: LogId::new(LeaderId::new(1, 1), index),
                payload: EntryPayload::Normal(command),
            })
            .collect()
    }

    fn set(key: &str, lease: u64) -> Command {
        let value = Bytes::from(key.to_uppercase());
        match lease {
            0 => Command::Set { key: key.into(), value, content_type: None },
            lease => Command::SetLeased { key: key.into(), value, content_type: None, lease },
        }
    }

    async fn lease_of(store: &Addr<StoreActor>, key: &str) -> Option<u64> {
        let read = store.send(ReadKey(key.into())).await.unwrap().unwrap();
        read.found.map(|found| found.revisions.expect("revisions").lease)
    }

    #[actix::test]
    async fn a_revoke_deletes_exactly_the_keys_still_attached_at_one_revision() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreActor::open(&dir.path().join("store.redb")).unwrap().start();
        let commands = vec![
            Command::StartRevisions,                        // revision 1
            Command::LeaseGrant { id: 7, ttl_seconds: 10 }, // no revision
            Command::LeaseGrant { id: 7, ttl_seconds: 20 }, // taken
            set("a", 7),                                    // 2
            set("b", 7),                                    // 3
            set("c", 7),                                    // 4
            set("b", 0),                                    // 5: detached by a write without a lease
            Command::Delete { key: "c".into() },            // 6
            set("d", 8),                                    // no such lease
            Command::Txn(Txn {
                success: vec![TxnOp::Put { key: "e".into(), value: Bytes::new(), lease: 9 }],
                ..Txn::default()
            }),
            Command::LeaseRevoke { id: 7 }, // 7: deletes a
            Command::LeaseRevoke { id: 7 }, // gone
        ];
        let answers = store.send(ApplyEntries(entries(commands))).await.unwrap().unwrap();
        assert_eq!(answers[1], CommandResponse::Written { revision: 1 });
        assert_eq!(answers[2], CommandResponse::LeaseExists { lease: 7 });
        assert_eq!(answers[8], CommandResponse::NoSuchLease { lease: 8 });
        assert_eq!(answers[9], CommandResponse::NoSuchLease { lease: 9 });
        assert_eq!(answers[10], CommandResponse::Written { revision: 7 });
        assert_eq!(answers[11], CommandResponse::NoSuchLease { lease: 7 });
        assert_eq!(lease_of(&store, "a").await, None, "revoked with its lease");
        assert_eq!(lease_of(&store, "b").await, Some(0), "detached before the revoke");
        assert_eq!(lease_of(&store, "d").await, None);
        assert_eq!(lease_of(&store, "e").await, None, "the transaction failed as a whole");
        assert_eq!(store.send(StoreRevision).await.unwrap().unwrap(), Some(7));
        assert_eq!(store.send(ListLeases).await.unwrap().unwrap(), vec![]);
    }

    #[actix::test]
    async fn leases_and_their_keys_travel_in_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreActor::open(&dir.path().join("store.redb")).unwrap().start();
        let commands = vec![
            Command::StartRevisions,
            Command::LeaseGrant { id: 5, ttl_seconds: 30 },
            Command::LeaseGrant { id: 6, ttl_seconds: 60 },
            set("x", 5),
            set("y", 6),
            set("z", 0),
        ];
        store.send(ApplyEntries(entries(commands))).await.unwrap().unwrap();
        let view = store.send(OpenSnapshotView).await.unwrap().unwrap();
        let (last_applied, last_membership) = (view.last_applied, view.last_membership.clone());
        let file = dir.path().join("snapshot");
        crate::store::snapshot_file::write(&file, view).unwrap();
        assert!(std::fs::read(&file).unwrap().starts_with(b"CETESNAP5"));

        let installed = StoreActor::open(&dir.path().join("installed.redb")).unwrap().start();
        let replace = ReplaceState { source: Some(file), last_applied, last_membership };
        installed.send(replace).await.unwrap().unwrap();
        assert_eq!(installed.send(ListLeases).await.unwrap().unwrap(), vec![(5, 30), (6, 60)]);
        assert_eq!(installed.send(ReadLease(5)).await.unwrap().unwrap(), Some((30, vec!["x".to_string()])));
        // The rebuilt index serves a revoke as the original would.
        let revoke = Entry {
            log_id: LogId::new(LeaderId::new(1, 1), 7),
            payload: EntryPayload::Normal(Command::LeaseRevoke { id: 6 }),
        };
        installed.send(ApplyEntries(vec![revoke])).await.unwrap().unwrap();
        assert_eq!(lease_of(&installed, "y").await, None);
        let z = installed.send(ReadKey("z".into())).await.unwrap().unwrap().found.unwrap();
        assert_eq!(z.revisions, Some(KeyRevisions { create_revision: 4, mod_revision: 4, version: 1, lease: 0 }));
    }
}
