//! StoreActor: the owner of the applied key-value state, a redb database in the data directory.
//!
//! It applies committed log entries (into one open transaction, see below), answers reads,
//! opens consistent views for snapshots, installs received snapshots, and tells watchers what
//! changed. It runs on an arbiter of its own so that disk work never stalls other actors.
//!
//! Group commit of the applied state: entries are applied into one open write transaction,
//! which every read here also goes through (so reads see every applied write). It is
//! committed without fsync every [`COMMIT_EVERY`] or once it holds [`COMMIT_AFTER_WRITES`]
//! changes (bounding the memory its dirty pages take), and durably before every snapshot (the
//! log is purged only behind a snapshot: that is the durability the log needs), on stop, and
//! every [`DURABLE_EVERY`] besides (bounding what a crash leaves to replay, and how long redb
//! must keep pages the last durable commit still names: the file grows by what changed in
//! between). A commit per entry cost more CPU than the apply itself (redb writes and checksums
//! its dirty pages at each).
//!
//! The durable commit writes and fsyncs on this actor's thread, and every apply waits behind
//! it. With a large store each overwrite dirties a page of its own, so what it has to write
//! grows with the store: the cache is kept small ([`CACHE_BYTES`], so redb writes most pages
//! to the file as it goes) and [`Writeback`] fsyncs the file from a thread of its own, leaving
//! the durable commit little to write.
//!
//! That is safe because the Raft log is durable before anything is applied: after a crash
//! redb rolls back to its last durable commit, `last_applied` rolls back with it (same
//! transaction), and openraft re-applies the rest from the log. An apply that fails leaves
//! the open transaction unusable, so the store stops serving (fail-stop) rather than answer
//! from state that lost applied entries; a restart re-applies them from the log.

pub mod changes;
pub mod history;
pub mod leases;
pub mod revisions;
pub mod sessions;
pub mod snapshot_file;
pub mod writeback;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use openraft::EntryPayload;
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};

use crate::command::txn::{KeyValue, TxnOp, TxnResult, MAX_TXN_SCAN};
use crate::command::{decode, encode, Command, CommandResponse, Entry, LogId, StoredMembership, Txn, TxnResponse};
use crate::error::{CeteError, CeteResult};
use crate::failpoints;
use crate::store::changes::{Change, WatchEvent};
use crate::store::history::HISTORY;
use crate::store::leases::{LeaseEvent, LeaseEvents, LeaseTables, LEASES, LEASE_KEYS};
use crate::store::revisions::{KeyRevisions, FIRST_REVISION};
use crate::store::sessions::SessionTable;
use crate::store::snapshot_file::Part;
use crate::store::writeback::Writeback;

/// Keys to stored records (see [`StoredValue::encode`]).
pub(crate) const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
/// `last_applied` and `last_membership`, updated in the same transaction as the data.
pub(crate) const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");
const LAST_APPLIED: &str = "last_applied";
const LAST_MEMBERSHIP: &str = "last_membership";
/// The store's revision ([`revisions`]), in the same table; absent while it has none.
pub(crate) const REVISION: &str = "revision";

/// Between the durable commits a snapshot forces (see the module comment).
const DURABLE_EVERY: Duration = Duration::from_secs(5);
const COMMIT_EVERY: Duration = Duration::from_millis(100);
const COMMIT_AFTER_WRITES: usize = 10_000;
/// redb's page cache (half of it at most for pages written and not yet on their way to the
/// file). Small on purpose: the kernel's page cache keeps the file's pages anyway, outside the
/// process, so a larger one only duplicates them in its memory (1 GiB by default: 460 MiB of
/// RSS per node holding 1M keys); and what the durable commit must still write out of it is
/// what stalls the applies behind it.
const CACHE_BYTES: usize = 64 << 20;

/// A value as stored: the bytes, the media type they were given with, and the key's
/// revisions (none while the store has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredValue {
    pub value: Bytes,
    pub content_type: Option<String>,
    pub revisions: Option<KeyRevisions>,
}

impl StoredValue {
    /// Record layout ([`revisions`]): the key's revisions when the store has them, then
    /// `[u16 LE content-type length][content type][value]`.
    fn encode(value: &[u8], content_type: Option<&str>, revisions: Option<&KeyRevisions>) -> Vec<u8> {
        let ct = content_type.unwrap_or("").as_bytes();
        let ct_len = ct.len().min(u16::MAX as usize);
        let mut record = Vec::with_capacity(32 + 2 + ct_len + value.len());
        if let Some(revisions) = revisions {
            revisions.encode_into(&mut record);
        }
        record.extend_from_slice(&(ct_len as u16).to_le_bytes());
        record.extend_from_slice(&ct[..ct_len]);
        record.extend_from_slice(value);
        record
    }

    /// A record of a store with revisions (`with_revisions`) or without.
    pub fn decode(record: &[u8], with_revisions: bool) -> CeteResult<Self> {
        let corrupt = || CeteError::Internal("corrupt record in the store".into());
        let (revisions, record) = match with_revisions {
            true => KeyRevisions::decode(record).map(|(r, rest)| (Some(r), rest)).ok_or_else(corrupt)?,
            false => (None, record),
        };
        let len_bytes: [u8; 2] = record.get(..2).ok_or_else(corrupt)?.try_into().map_err(|_| corrupt())?;
        let ct_len = u16::from_le_bytes(len_bytes) as usize;
        let ct = record.get(2..2 + ct_len).ok_or_else(corrupt)?;
        let content_type = if ct.is_empty() { None } else { Some(String::from_utf8_lossy(ct).into_owned()) };
        Ok(StoredValue { value: Bytes::copy_from_slice(&record[2 + ct_len..]), content_type, revisions })
    }

    /// Only the revisions at the head of a record of a store with revisions.
    fn revisions_of(record: &[u8]) -> Result<KeyRevisions, redb::Error> {
        KeyRevisions::decode(record)
            .map(|(revisions, _)| revisions)
            .ok_or_else(|| redb::Error::Corrupted("a record without its revisions".into()))
    }
}

pub struct StoreActor {
    db: Arc<Database>,
    /// The transaction applies go into and reads go through; none right after a commit.
    open: Option<WriteTransaction>,
    /// Changes in `open` (it must be committed before it is dropped).
    uncommitted: usize,
    /// Commits made without fsync since the last durable one.
    dirty: bool,
    /// Why the store stopped serving: an apply failed and the open transaction is lost.
    failed: Option<String>,
    /// The store's revision as of the open transaction (None: it has none yet).
    revision: Option<u64>,
    /// The oldest revision the change history holds ([`history`]; None: no history yet).
    floor: Option<u64>,
    /// Changes below the floor are left to delete.
    compacting: bool,
    watchers: Vec<Recipient<WatchEvent>>,
    /// The leader's lease countdowns ([`crate::lease`]), told of every grant and revoke.
    lessor: Option<Recipient<LeaseEvents>>,
    /// Keeps the file's dirty pages written back between durable commits.
    _writeback: Writeback,
}

impl StoreActor {
    pub fn open(path: &Path) -> CeteResult<Self> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| CeteError::internal("cannot open the store", e))?;
        let writeback = Writeback::start(path).map_err(|e| CeteError::internal("store writeback", e))?;
        let txn = db.begin_write().map_err(|e| CeteError::internal("store", e))?;
        txn.open_table(KV).map_err(|e| CeteError::internal("store", e))?;
        txn.open_table(SM_META).map_err(|e| CeteError::internal("store", e))?;
        txn.open_table(HISTORY).map_err(|e| CeteError::internal("store", e))?;
        txn.open_table(LEASES).map_err(|e| CeteError::internal("store", e))?;
        txn.open_table(LEASE_KEYS).map_err(|e| CeteError::internal("store", e))?;
        crate::store::sessions::upgrade(&txn).map_err(|e| CeteError::internal("store upgrade", e))?;
        txn.commit().map_err(|e| CeteError::internal("store", e))?;
        let view = db.begin_read().map_err(|e| CeteError::internal("store", e))?;
        let revision = read_revision(&view)?;
        let (mut floor, compacting) = read_floor(&view)?;
        drop(view);
        if let (Some(revision), None) = (revision, floor) {
            // A store that counted revisions before it kept history keeps it from the next one.
            floor = Some(revision + 1);
            let txn = db.begin_write().map_err(|e| CeteError::internal("store", e))?;
            let mut meta = txn.open_table(SM_META).map_err(|e| CeteError::internal("store", e))?;
            meta.insert(history::FLOOR, (revision + 1).to_le_bytes().as_slice())
                .map_err(|e| CeteError::internal("store", e))?;
            drop(meta);
            txn.commit().map_err(|e| CeteError::internal("store", e))?;
        }
        Ok(StoreActor {
            db: Arc::new(db),
            open: None,
            uncommitted: 0,
            dirty: false,
            failed: None,
            revision,
            floor,
            compacting,
            watchers: Vec::new(),
            lessor: None,
            _writeback: writeback,
        })
    }

    /// The open transaction (begun now if there is none), unless the store has failed.
    fn txn(&mut self) -> CeteResult<&WriteTransaction> {
        if let Some(why) = &self.failed {
            return Err(CeteError::Unavailable(format!("the store stopped after a failed apply: {why}")));
        }
        if self.open.is_none() {
            self.open = Some(self.db.begin_write().map_err(|e| CeteError::internal("store", e))?);
        }
        Ok(self.open.as_ref().expect("just opened"))
    }

    /// Commits what has been applied, durably (fsync), with every commit made before it.
    fn make_durable(&mut self) -> CeteResult<()> {
        self.commit(Durability::Immediate)
    }

    /// Commits the open transaction: without fsync (`None`) when it holds changes; durably
    /// (`Immediate`) when it or an earlier commit without fsync does.
    fn commit(&mut self, durability: Durability) -> CeteResult<()> {
        let durable = matches!(durability, Durability::Immediate);
        let needed = self.uncommitted > 0 || (durable && self.dirty);
        let Some(mut txn) = self.open.take() else {
            if !needed {
                return Ok(());
            }
            self.open = Some(self.db.begin_write().map_err(|e| CeteError::internal("store", e))?);
            return self.commit(durability);
        };
        if !needed {
            return txn.abort().map_err(|e| CeteError::internal("store", e));
        }
        self.uncommitted = 0;
        // A durable commit the power cut of a crash test loses: made, but without its fsync.
        let durable = durable && !failpoints::skip_point("store-before-durable-commit");
        let durability = if durable { Durability::Immediate } else { Durability::None };
        let result = txn
            .set_durability(durability)
            .map_err(|e| e.to_string())
            .and_then(|()| txn.commit().map_err(|e| e.to_string()));
        self.dirty = !durable;
        if durable && result.is_ok() {
            failpoints::crash_point("store-after-durable-commit");
        }
        result.map_err(|e| self.fail(format!("commit: {e}")))
    }

    /// Stops serving: what was applied since the last commit is lost with the transaction.
    fn fail(&mut self, why: String) -> CeteError {
        log::error!("the store stops serving: {why}; a restart re-applies the Raft log");
        self.open = None;
        self.failed = Some(why.clone());
        CeteError::Internal(why)
    }

    fn apply(&mut self, entries: Vec<Entry>) -> CeteResult<Applied> {
        let result = self.apply_in_open(entries);
        match result {
            Ok(applied) => {
                self.uncommitted += applied.changes.len().max(1);
                if self.uncommitted >= COMMIT_AFTER_WRITES {
                    self.commit(Durability::None)?;
                }
                Ok(applied)
            }
            Err(e) => Err(self.fail(e.to_string())),
        }
    }

    fn apply_in_open(&mut self, entries: Vec<Entry>) -> CeteResult<Applied> {
        let fail = |e: &dyn std::fmt::Display| CeteError::Internal(format!("apply: {e}"));
        let mut responses = Vec::with_capacity(entries.len());
        let mut changes = Vec::new();
        let mut lease_events = Vec::new();
        let before = self.revision;
        let mut revision = before;
        let floor_before = self.floor;
        let mut floor = self.floor;
        let mut compacting = self.compacting;
        let txn = self.txn()?;
        let mut kv = txn.open_table(KV).map_err(|e| fail(&e))?;
        let mut meta = txn.open_table(SM_META).map_err(|e| fail(&e))?;
        let mut history = txn.open_table(HISTORY).map_err(|e| fail(&e))?;
        let mut sessions = SessionTable::open(txn).map_err(|e| fail(&e))?;
        let mut leases = LeaseTables::open(txn).map_err(|e| fail(&e))?;
        let mut last_applied = None;
        let mut previous_membership: Option<StoredMembership> = None;
        for entry in entries {
            last_applied = Some(entry.log_id);
            // Per entry, never per batch: batch boundaries differ between nodes, and whether a
            // late retry is a duplicate must be a function of the log alone.
            sessions.expire(entry.log_id.index).map_err(|e| fail(&e))?;
            match entry.payload {
                EntryPayload::Blank => responses.push(CommandResponse::Nothing),
                EntryPayload::Normal(command) => {
                    let mut applying = Applying {
                        kv: &mut kv,
                        sessions: &mut sessions,
                        leases: &mut leases,
                        lease_events: &mut lease_events,
                        index: entry.log_id.index,
                        revision: &mut revision,
                        floor: &mut floor,
                    };
                    responses.push(applying.apply(command, &mut changes).map_err(|e| fail(&e))?);
                }
                EntryPayload::Membership(membership) => {
                    let before = match previous_membership.take() {
                        Some(m) => m,
                        None => read_meta(&meta, LAST_MEMBERSHIP)?.unwrap_or_default(),
                    };
                    let stored = StoredMembership::new(Some(entry.log_id), membership);
                    changes.extend(Change::membership_diff(&before, &stored));
                    meta.insert(LAST_MEMBERSHIP, encode(&stored).map_err(|e| fail(&e))?.as_slice())
                        .map_err(|e| fail(&e))?;
                    previous_membership = Some(stored);
                    responses.push(CommandResponse::Nothing);
                }
            }
        }
        if let Some(log_id) = last_applied {
            meta.insert(LAST_APPLIED, encode(&log_id).map_err(|e| fail(&e))?.as_slice()).map_err(|e| fail(&e))?;
        }
        if revision != before {
            let bytes = revision.unwrap_or_default().to_le_bytes();
            meta.insert(REVISION, bytes.as_slice()).map_err(|e| fail(&e))?;
        }
        // Revisions started in these entries: what follows the start is history.
        let floor = floor.or(revision.map(|_| FIRST_REVISION + 1));
        history::record(&mut history, &changes).map_err(|e| fail(&e))?;
        if floor != floor_before {
            let bytes = floor.unwrap_or_default().to_le_bytes();
            meta.insert(history::FLOOR, bytes.as_slice()).map_err(|e| fail(&e))?;
            compacting = true;
        }
        if let (true, Some(floor)) = (compacting, floor) {
            compacting = history::delete_below(&mut history, floor).map_err(|e| fail(&e))?;
        }
        drop((kv, meta, sessions, history, leases));
        self.revision = revision;
        self.floor = floor;
        self.compacting = compacting;
        Ok(Applied { responses, changes, lease_events })
    }

    fn applied_state(&mut self) -> CeteResult<(Option<LogId>, StoredMembership)> {
        let meta = self.txn()?.open_table(SM_META).map_err(|e| CeteError::internal("store", e))?;
        Ok((read_meta(&meta, LAST_APPLIED)?, read_meta(&meta, LAST_MEMBERSHIP)?.unwrap_or_default()))
    }

    fn tell_lessor(&mut self, events: Vec<LeaseEvent>) {
        if let (Some(lessor), false) = (&self.lessor, events.is_empty()) {
            // Never dropped: a grant the countdowns missed would never expire.
            lessor.do_send(LeaseEvents(events));
        }
    }

    fn publish(&mut self, changes: Vec<Change>) {
        if self.watchers.is_empty() || changes.is_empty() {
            return;
        }
        let changes = Arc::new(changes);
        // A watcher whose mailbox is full is too slow: it is told so and dropped rather than
        // allowed to stall applies or grow memory.
        self.watchers.retain(|watcher| match watcher.try_send(WatchEvent::Changes(changes.clone())) {
            Ok(()) => true,
            Err(SendError::Full(_)) => {
                watcher.do_send(WatchEvent::Overflowed);
                false
            }
            Err(SendError::Closed(_)) => false,
        });
    }
}

/// What applying entries answered and changed.
struct Applied {
    responses: Vec<CommandResponse>,
    changes: Vec<Change>,
    lease_events: Vec<LeaseEvent>,
}

/// The tables one applied entry writes to, and the store's revision as it goes.
struct Applying<'a, 'txn> {
    kv: &'a mut redb::Table<'txn, &'static str, &'static [u8]>,
    sessions: &'a mut SessionTable<'txn>,
    leases: &'a mut LeaseTables<'txn>,
    lease_events: &'a mut Vec<LeaseEvent>,
    index: u64,
    revision: &'a mut Option<u64>,
    /// The oldest revision the history keeps.
    floor: &'a mut Option<u64>,
}

impl Applying<'_, '_> {
    /// Applies one command (a batch in order, a request at most once) and records what
    /// changed for watchers.
    fn apply(&mut self, command: Command, changes: &mut Vec<Change>) -> Result<CommandResponse, redb::Error> {
        match command {
            Command::Set { key, value, content_type } => self.set(key, value, content_type, 0, changes)?,
            Command::SetLeased { key, value, content_type, lease } => {
                if self.revision.is_none() || !self.leases.exists(lease)? {
                    return Ok(CommandResponse::NoSuchLease { lease });
                }
                self.set(key, value, content_type, lease, changes)?;
            }
            Command::LeaseGrant { id, ttl_seconds } => {
                if !self.leases.grant(id, ttl_seconds)? {
                    return Ok(CommandResponse::LeaseExists { lease: id });
                }
                self.lease_events.push(LeaseEvent::Granted { id, ttl_seconds });
            }
            Command::LeaseRevoke { id } => {
                let Some(keys) = self.leases.revoke(id)? else { return Ok(CommandResponse::NoSuchLease { lease: id }) };
                self.lease_events.push(LeaseEvent::Revoked { id });
                // Every key of the lease goes at one revision (keys are only attached once
                // revisions have started).
                if let (Some(current), false) = (*self.revision, keys.is_empty()) {
                    for key in &keys {
                        self.kv.remove(key.as_str())?;
                    }
                    *self.revision = Some(current + 1);
                    changes.extend(keys.into_iter().map(|key| Change::Delete { key, revision: Some(current + 1) }));
                }
            }
            Command::Delete { key } => {
                let removed = self.remove(&key)?;
                match (removed, *self.revision) {
                    (true, Some(current)) => {
                        *self.revision = Some(current + 1);
                        changes.push(Change::Delete { key, revision: Some(current + 1) });
                    }
                    // Deleting a missing key changes nothing: no revision, and no change to
                    // watch (which a watch resumed from the history could not see either).
                    (false, Some(_)) => {}
                    // Without revisions watchers are told of every delete, as always.
                    (_, None) => changes.push(Change::Delete { key, revision: None }),
                }
            }
            Command::Compact { revision } => {
                if let (Some(floor), Some(current)) = (self.floor.as_mut(), *self.revision) {
                    *floor = (*floor).max(revision.min(current + 1));
                }
            }
            Command::StartRevisions => {
                if self.revision.is_none() {
                    stamp(self.kv)?;
                    *self.revision = Some(FIRST_REVISION);
                }
            }
            Command::Batch(commands) => {
                let responses = commands.into_iter().map(|c| self.apply(c, changes)).collect::<Result<Vec<_>, _>>()?;
                return Ok(CommandResponse::Batch(responses));
            }
            Command::Guarded { condition, command } => {
                let key = match command.as_ref() {
                    Command::Set { key, .. } | Command::SetLeased { key, .. } | Command::Delete { key } => key.as_str(),
                    // Only a key's own write can be guarded by it.
                    _ => return Ok(CommandResponse::Refused { mod_revision: 0 }),
                };
                // Without revisions no condition can be judged (the front doors do not send one).
                if self.revision.is_none() {
                    return Ok(CommandResponse::Refused { mod_revision: 0 });
                }
                let current = self
                    .kv
                    .get(key)?
                    .map(|r| StoredValue::revisions_of(r.value()))
                    .transpose()?
                    .map(|r| r.mod_revision);
                if !condition.holds(current) {
                    return Ok(CommandResponse::Refused { mod_revision: current.unwrap_or(0) });
                }
                return self.apply(*command, changes);
            }

            Command::Txn(txn) => return self.transaction(txn, changes),
            Command::Request { id, command, low_water } => {
                // Not applied again when sent again after its first sending's fate was unknown,
                // nor once its origin has given it up.
                if !self.sessions.admit(&id, low_water, self.index)? {
                    return Ok(CommandResponse::Applied);
                }
                return self.apply(*command, changes);
            }
        }
        Ok(match *self.revision {
            Some(revision) => CommandResponse::Written { revision },
            None => CommandResponse::Applied,
        })
    }
}

impl Applying<'_, '_> {
    /// Stores `value` under `key`, attached to `lease` (0: none), at the next revision when the
    /// store counts them.
    fn set(
        &mut self,
        key: String,
        value: Bytes,
        content_type: Option<String>,
        lease: u64,
        changes: &mut Vec<Change>,
    ) -> Result<(), redb::Error> {
        let revisions = match *self.revision {
            Some(current) => {
                let before = self.kv.get(key.as_str())?.map(|r| StoredValue::revisions_of(r.value())).transpose()?;
                self.leases.reattach(&key, before.map_or(0, |b| b.lease), lease)?;
                *self.revision = Some(current + 1);
                Some(KeyRevisions { lease, ..KeyRevisions::written_at(current + 1, before.as_ref()) })
            }
            None => None,
        };
        let record = StoredValue::encode(&value, content_type.as_deref(), revisions.as_ref());
        self.kv.insert(key.as_str(), record.as_slice())?;
        changes.push(Change::Set { key, value, revisions });
        Ok(())
    }

    /// Removes `key`, and it from its lease's keys; whether it was there.
    fn remove(&mut self, key: &str) -> Result<bool, redb::Error> {
        let lease = match self.kv.remove(key)? {
            None => return Ok(false),
            Some(record) if self.revision.is_some() => StoredValue::revisions_of(record.value())?.lease,
            Some(_) => 0,
        };
        self.leases.reattach(key, lease, 0)?;
        Ok(true)
    }

    /// A key's record as stored (None: absent), in a store with revisions.
    fn read(&self, key: &str) -> Result<Option<StoredValue>, redb::Error> {
        let record = self.kv.get(key)?;
        let stored = record.map(|r| StoredValue::decode(r.value(), true)).transpose();
        stored.map_err(|e| redb::Error::Corrupted(e.to_string()))
    }

    /// A transaction ([`crate::command::txn`]): the compares against the state as applied so
    /// far, then one list, every write of it at the one next revision. Without revisions
    /// nothing is judged (the front doors send none then).
    fn transaction(&mut self, txn: Txn, changes: &mut Vec<Change>) -> Result<CommandResponse, redb::Error> {
        let Some(current) = *self.revision else { return Ok(CommandResponse::Refused { mod_revision: 0 }) };
        let mut succeeded = true;
        for compare in &txn.compare {
            let found = self.read(&compare.key)?;
            succeeded &=
                compare.holds(found.as_ref().map(|f| (f.revisions.as_ref().expect("revisions"), &f.value[..])));
        }
        let ops = if succeeded { txn.success } else { txn.failure };
        // A put naming a lease that is gone fails the whole transaction, before it writes.
        for op in &ops {
            if let TxnOp::Put { lease, .. } = op {
                if *lease != 0 && !self.leases.exists(*lease)? {
                    return Ok(CommandResponse::NoSuchLease { lease: *lease });
                }
            }
        }
        let next = current + 1;
        let mut wrote = false;
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            results.push(match op {
                TxnOp::Put { key, value, lease } => {
                    let before =
                        self.kv.get(key.as_str())?.map(|r| StoredValue::revisions_of(r.value())).transpose()?;
                    self.leases.reattach(&key, before.map_or(0, |b| b.lease), lease)?;
                    let revisions = KeyRevisions { lease, ..KeyRevisions::written_at(next, before.as_ref()) };
                    let record = StoredValue::encode(&value, None, Some(&revisions));
                    self.kv.insert(key.as_str(), record.as_slice())?;
                    wrote = true;
                    changes.push(Change::Set { key: key.clone(), value, revisions: Some(revisions) });
                    TxnResult::Put { key }
                }
                TxnOp::Delete { key } => {
                    let removed = self.remove(&key)?;
                    if removed {
                        wrote = true;
                        changes.push(Change::Delete { key, revision: Some(next) });
                    }
                    TxnResult::Delete { deleted: removed as u64 }
                }
                TxnOp::DeletePrefix { prefix } => {
                    let mut keys = Vec::new();
                    for item in self.kv.range::<&str>(prefix.as_str()..)? {
                        let (key, _) = item?;
                        if !key.value().starts_with(prefix.as_str()) {
                            break;
                        }
                        keys.push(key.value().to_string());
                    }
                    for key in &keys {
                        self.remove(key)?;
                    }
                    wrote |= !keys.is_empty();
                    let deleted = keys.len() as u64;
                    changes.extend(keys.into_iter().map(|key| Change::Delete { key, revision: Some(next) }));
                    TxnResult::Delete { deleted }
                }
                TxnOp::Get { key } => {
                    let found = self.read(&key)?.map(|stored| KeyValue {
                        key: key.clone(),
                        value: stored.value,
                        revisions: stored.revisions.unwrap_or_default(),
                    });
                    TxnResult::Get { key, found }
                }
                TxnOp::Scan { prefix, limit } => {
                    let limit = limit.unwrap_or(MAX_TXN_SCAN).min(MAX_TXN_SCAN) as usize;
                    let range = ScanRange { prefix, limit: Some(limit), ..ScanRange::default() };
                    let page = scan_page(&*self.kv, &range, Some(current))
                        .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
                    let pairs = page
                        .pairs
                        .into_iter()
                        .map(|item| KeyValue {
                            key: item.key,
                            value: item.value,
                            revisions: item.revisions.unwrap_or_default(),
                        })
                        .collect();
                    TxnResult::Scan { pairs, more: page.more, count: page.count }
                }
            });
        }
        if wrote {
            *self.revision = Some(next);
        }
        Ok(CommandResponse::Txn(TxnResponse { succeeded, revision: self.revision.unwrap_or(current), results }))
    }
}

fn read_meta<T: serde::de::DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> CeteResult<Option<T>> {
    match table.get(key).map_err(|e| CeteError::internal("store", e))? {
        Some(bytes) => decode(bytes.value()).map(Some).map_err(|e| CeteError::internal("store metadata", e)),
        None => Ok(None),
    }
}

/// The store's revision in a view of it (None: it has none).
pub(crate) fn read_revision(txn: &ReadTransaction) -> CeteResult<Option<u64>> {
    let meta = match txn.open_table(SM_META) {
        Ok(meta) => meta,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(CeteError::internal("store", e)),
    };
    revision_in(&meta)
}

/// The history's floor in a view of the store, and whether changes below it are left.
pub(crate) fn read_floor(txn: &ReadTransaction) -> CeteResult<(Option<u64>, bool)> {
    let fail = |e: &dyn std::fmt::Display| CeteError::Internal(format!("store history: {e}"));
    let meta = txn.open_table(SM_META).map_err(|e| fail(&e))?;
    let floor = match meta.get(history::FLOOR).map_err(|e| fail(&e))? {
        Some(bytes) => Some(u64::from_le_bytes(bytes.value().try_into().map_err(|_| fail(&"a corrupt floor"))?)),
        None => None,
    };
    let history = txn.open_table(HISTORY).map_err(|e| fail(&e))?;
    let first = history.first().map_err(|e| fail(&e))?.map(|(at, _)| at.value().0);
    Ok((floor, matches!((first, floor), (Some(first), Some(floor)) if first < floor)))
}

fn revision_in(meta: &impl ReadableTable<&'static str, &'static [u8]>) -> CeteResult<Option<u64>> {
    match meta.get(REVISION).map_err(|e| CeteError::internal("store", e))? {
        Some(bytes) => {
            let word: [u8; 8] =
                bytes.value().try_into().map_err(|_| CeteError::Internal("corrupt store revision".into()))?;
            Ok(Some(u64::from_le_bytes(word)))
        }
        None => Ok(None),
    }
}

/// Gives every key of a store without revisions the revisions of [`FIRST_REVISION`], in
/// the layout with them ([`revisions`]). In key order and in runs, since a table cannot be
/// written while it is read.
fn stamp(kv: &mut redb::Table<'_, &'static str, &'static [u8]>) -> Result<(), redb::Error> {
    use std::ops::Bound;
    const RUN: usize = 1024;
    let mut after: Option<String> = None;
    loop {
        let lower = match &after {
            Some(key) => Bound::Excluded(key.as_str()),
            None => Bound::Unbounded,
        };
        let mut run = Vec::with_capacity(RUN);
        for item in kv.range::<&str>((lower, Bound::Unbounded))?.take(RUN) {
            let (key, record) = item?;
            run.push((key.value().to_string(), record.value().to_vec()));
        }
        let Some((last, _)) = run.last() else { return Ok(()) };
        let last = last.clone();
        for (key, record) in run {
            let old = StoredValue::decode(&record, false).map_err(|e| redb::Error::Corrupted(e.to_string()))?;
            let stamped = StoredValue::encode(&old.value, old.content_type.as_deref(), Some(&KeyRevisions::STAMPED));
            kv.insert(key.as_str(), stamped.as_slice())?;
        }
        after = Some(last);
    }
}

impl Actor for StoreActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        ctx.run_interval(COMMIT_EVERY, |store, _| {
            if let Err(e) = store.commit(Durability::None) {
                log::error!("periodic store commit failed: {e}");
            }
        });
        ctx.run_interval(DURABLE_EVERY, |store, _| {
            if let Err(e) = store.make_durable() {
                log::error!("periodic store flush failed: {e}");
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if let Err(e) = self.make_durable() {
            log::error!("final store flush failed: {e}");
        }
    }
}

/// Apply committed entries, in order, as one transaction; one response per entry.
#[derive(Message)]
#[rtype(result = "CeteResult<Vec<CommandResponse>>")]
pub struct ApplyEntries(pub Vec<Entry>);

impl Handler<ApplyEntries> for StoreActor {
    type Result = CeteResult<Vec<CommandResponse>>;

    fn handle(&mut self, msg: ApplyEntries, _: &mut Self::Context) -> Self::Result {
        let applied = self.apply(msg.0)?;
        self.tell_lessor(applied.lease_events);
        self.publish(applied.changes);
        Ok(applied.responses)
    }
}

/// The last applied log id and membership, as openraft needs them at start-up.
#[derive(Message)]
#[rtype(result = "CeteResult<(Option<LogId>, StoredMembership)>")]
pub struct AppliedState;

impl Handler<AppliedState> for StoreActor {
    type Result = CeteResult<(Option<LogId>, StoredMembership)>;

    fn handle(&mut self, _: AppliedState, _: &mut Self::Context) -> Self::Result {
        self.applied_state()
    }
}

/// What a read found, and the store's revision it was read at (None while the store has no
/// revisions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtRevision<T> {
    pub found: T,
    pub revision: Option<u64>,
}

/// The store's revision (None: it has none yet, [`revisions`]).
#[derive(Message)]
#[rtype(result = "CeteResult<Option<u64>>")]
pub struct StoreRevision;

impl Handler<StoreRevision> for StoreActor {
    type Result = CeteResult<Option<u64>>;

    fn handle(&mut self, _: StoreRevision, _: &mut Self::Context) -> Self::Result {
        if let Some(why) = &self.failed {
            return Err(CeteError::Unavailable(format!("the store stopped after a failed apply: {why}")));
        }
        Ok(self.revision)
    }
}

/// Read one key from the applied state.
#[derive(Message)]
#[rtype(result = "CeteResult<AtRevision<Option<StoredValue>>>")]
pub struct ReadKey(pub String);

impl Handler<ReadKey> for StoreActor {
    type Result = CeteResult<AtRevision<Option<StoredValue>>>;

    fn handle(&mut self, msg: ReadKey, _: &mut Self::Context) -> Self::Result {
        let revision = self.revision;
        let kv = self.txn()?.open_table(KV).map_err(|e| CeteError::internal("read", e))?;
        let record = kv.get(msg.0.as_str()).map_err(|e| CeteError::internal("read", e))?;
        let found = record.map(|record| StoredValue::decode(record.value(), revision.is_some())).transpose()?;
        Ok(AtRevision { found, revision })
    }
}

/// A page of the keys under a prefix, in key order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanRange {
    pub prefix: String,
    /// Only keys after this one (exclusive).
    pub start_after: Option<String>,
    /// At most this many pairs (None: all of them).
    pub limit: Option<usize>,
    /// Leave the values out.
    pub keys_only: bool,
    /// Leave the pairs out: only the count.
    pub count_only: bool,
}

/// One key of a [`ScanPage`]: its value (empty when only keys were asked for) and revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanItem {
    pub key: String,
    pub value: Bytes,
    pub revisions: Option<KeyRevisions>,
}

/// What a [`Scan`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanPage {
    pub pairs: Vec<ScanItem>,
    /// Keys follow the last one of the page (the next page starts after it).
    pub more: bool,
    /// Every key under the prefix, on this page or not.
    pub count: u64,
    /// The store's revision the page was read at (None: the store has none yet).
    pub revision: Option<u64>,
}

#[derive(Message)]
#[rtype(result = "CeteResult<ScanPage>")]
pub struct Scan(pub ScanRange);

impl Handler<Scan> for StoreActor {
    type Result = CeteResult<ScanPage>;

    fn handle(&mut self, msg: Scan, _: &mut Self::Context) -> Self::Result {
        let revision = self.revision;
        let kv = self.txn()?.open_table(KV).map_err(|e| CeteError::internal("scan", e))?;
        scan_page(&kv, &msg.0, revision)
    }
}

/// One pass over the prefix: the keys up to `start_after` are only counted, then the page is
/// taken, then the rest is counted.
fn scan_page(
    kv: &impl ReadableTable<&'static str, &'static [u8]>,
    range: &ScanRange,
    revision: Option<u64>,
) -> CeteResult<ScanPage> {
    let fail = |e: &dyn std::fmt::Display| CeteError::Internal(format!("scan: {e}"));
    let mut page = ScanPage { revision, ..ScanPage::default() };
    let limit = if range.count_only { 0 } else { range.limit.unwrap_or(usize::MAX) };
    for item in kv.range::<&str>(range.prefix.as_str()..).map_err(|e| fail(&e))? {
        let (key, record) = item.map_err(|e| fail(&e))?;
        let key = key.value();
        if !key.starts_with(range.prefix.as_str()) {
            break;
        }
        page.count += 1;
        if range.start_after.as_deref().is_some_and(|after| key <= after) {
            continue;
        }
        if page.pairs.len() == limit {
            page.more |= !range.count_only;
            continue;
        }
        let stored = StoredValue::decode(record.value(), revision.is_some())?;
        let value = if range.keys_only { Bytes::new() } else { stored.value };
        page.pairs.push(ScanItem { key: key.to_string(), value, revisions: stored.revisions });
    }
    Ok(page)
}

/// A consistent, durable view of the applied state to build a snapshot from. Reading it does
/// not hold up applies: redb read transactions see a fixed version while writes go on.
pub struct SnapshotView {
    pub txn: ReadTransaction,
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
}

#[derive(Message)]
#[rtype(result = "CeteResult<SnapshotView>")]
pub struct OpenSnapshotView;

impl Handler<OpenSnapshotView> for StoreActor {
    type Result = CeteResult<SnapshotView>;

    fn handle(&mut self, _: OpenSnapshotView, _: &mut Self::Context) -> Self::Result {
        // The log will be purged behind this snapshot, so what it covers must survive a crash.
        self.make_durable()?;
        let (last_applied, last_membership) = self.applied_state()?;
        let txn = self.db.begin_read().map_err(|e| CeteError::internal("snapshot", e))?;
        Ok(SnapshotView { txn, last_applied, last_membership })
    }
}

/// Replace the whole applied state with a snapshot's pairs (streamed from the file; none for
/// an empty state), durably. Answers the key count.
#[derive(Message)]
#[rtype(result = "CeteResult<u64>")]
pub struct ReplaceState {
    pub source: Option<PathBuf>,
    pub last_applied: Option<LogId>,
    pub last_membership: StoredMembership,
}

impl Handler<ReplaceState> for StoreActor {
    type Result = CeteResult<u64>;

    fn handle(&mut self, msg: ReplaceState, _: &mut Self::Context) -> Self::Result {
        let fail = |e: &dyn std::fmt::Display| CeteError::Internal(format!("install snapshot: {e}"));
        // What was applied and not yet committed is replaced by the snapshot anyway.
        if let Some(open) = self.open.take() {
            open.abort().map_err(|e| fail(&e))?;
        }
        self.uncommitted = 0;
        self.dirty = false;
        // Applies since the last commit are gone with the open transaction: if the snapshot
        // cannot replace them (a corrupt file), the store must not serve what is left.
        self.replace_state(msg).map_err(|e| self.fail(e.to_string()))
    }
}

impl StoreActor {
    fn replace_state(&mut self, msg: ReplaceState) -> CeteResult<u64> {
        let fail = |e: &dyn std::fmt::Display| CeteError::Internal(format!("install snapshot: {e}"));
        let mut txn = self.db.begin_write().map_err(|e| fail(&e))?;
        txn.set_durability(Durability::Immediate).map_err(|e| fail(&e))?;
        let mut keys = 0;
        let mut revision = None;
        let floor;
        {
            let mut kv = txn.open_table(KV).map_err(|e| fail(&e))?;
            kv.retain(|_, _| false).map_err(|e| fail(&e))?;
            let mut sessions = SessionTable::open(&txn).map_err(|e| fail(&e))?;
            sessions.clear().map_err(|e| fail(&e))?;
            // A Raft snapshot carries no history: this node keeps it from the snapshot on (a
            // backup carries its node's, below).
            txn.delete_table(HISTORY).map_err(|e| fail(&e))?;
            let mut history = txn.open_table(HISTORY).map_err(|e| fail(&e))?;
            let mut leases = txn.open_table(LEASES).map_err(|e| fail(&e))?;
            leases.retain(|_, _| false).map_err(|e| fail(&e))?;
            let mut lease_keys = txn.open_table(LEASE_KEYS).map_err(|e| fail(&e))?;
            lease_keys.retain(|_, _| false).map_err(|e| fail(&e))?;
            // A backup carries its node's change history (from the floor it had then).
            let mut history_floor = None;
            if let Some(path) = &msg.source {
                let mut pairs = crate::store::snapshot_file::Pairs::open(path).map_err(|e| fail(&e))?;
                revision = pairs.revision();
                for pair in pairs.by_ref() {
                    let (key, record) = pair.map_err(|e| fail(&e))?;
                    kv.insert(key.as_str(), record.as_slice()).map_err(|e| fail(&e))?;
                    // The lease index is rebuilt from the records that name a lease.
                    if revision.is_some() {
                        let lease = StoredValue::revisions_of(&record).map_err(|e| fail(&e))?.lease;
                        if lease != 0 {
                            lease_keys.insert((lease, key.as_str()), ()).map_err(|e| fail(&e))?;
                        }
                    }
                    keys += 1;
                }
                for part in pairs.parts() {
                    match part.map_err(|e| fail(&e))? {
                        Part::Session(part) => sessions.restore(part).map_err(|e| fail(&e))?,
                        Part::Lease { id, ttl_seconds } => {
                            leases.insert(id, ttl_seconds).map_err(|e| fail(&e))?;
                        }
                        Part::History { revision, n, record } => {
                            history.insert((revision, n), record.as_slice()).map_err(|e| fail(&e))?;
                        }
                        Part::HistoryFloor(floor) => history_floor = Some(floor),
                    }
                }
            }
            let mut meta = txn.open_table(SM_META).map_err(|e| fail(&e))?;
            match &msg.last_applied {
                Some(log_id) => {
                    let bytes = encode(log_id).map_err(|e| fail(&e))?;
                    meta.insert(LAST_APPLIED, bytes.as_slice()).map_err(|e| fail(&e))?;
                }
                None => {
                    meta.remove(LAST_APPLIED).map_err(|e| fail(&e))?;
                }
            }
            let membership = encode(&msg.last_membership).map_err(|e| fail(&e))?;
            meta.insert(LAST_MEMBERSHIP, membership.as_slice()).map_err(|e| fail(&e))?;
            match revision {
                Some(revision) => meta.insert(REVISION, revision.to_le_bytes().as_slice()).map(drop),
                None => meta.remove(REVISION).map(drop),
            }
            .map_err(|e| fail(&e))?;
            floor = history_floor.or(revision.map(|r| r + 1)).filter(|_| revision.is_some());
            match floor {
                Some(floor) => meta.insert(history::FLOOR, floor.to_le_bytes().as_slice()).map(drop),
                None => meta.remove(history::FLOOR).map(drop),
            }
            .map_err(|e| fail(&e))?;
        }
        txn.commit().map_err(|e| fail(&e))?;
        self.revision = revision;
        self.floor = floor;
        self.compacting = false;
        self.failed = None;
        self.tell_lessor(vec![LeaseEvent::Reset]);
        Ok(keys)
    }
}

/// Drops every client session, durably. Only for `cete restore`: a backup restored starts a
/// new cluster, whose log the sessions' entry indexes and in-flight writes do not belong to.
#[derive(Message)]
#[rtype(result = "CeteResult<()>")]
pub struct ForgetSessions;

impl Handler<ForgetSessions> for StoreActor {
    type Result = CeteResult<()>;

    fn handle(&mut self, _: ForgetSessions, _: &mut Self::Context) -> Self::Result {
        let fail = |e: &dyn std::fmt::Display| CeteError::Internal(format!("forget sessions: {e}"));
        if self.open.is_some() {
            return Err(CeteError::Internal("forget sessions: entries are being applied".into()));
        }
        let mut txn = self.db.begin_write().map_err(|e| fail(&e))?;
        txn.set_durability(Durability::Immediate).map_err(|e| fail(&e))?;
        SessionTable::open(&txn).map_err(|e| fail(&e))?.clear().map_err(|e| fail(&e))?;
        txn.commit().map_err(|e| fail(&e))
    }
}

/// Key count and the size of the sessions record, for metrics.
#[derive(Message)]
#[rtype(result = "CeteResult<StoreStats>")]
pub struct Stats;

#[derive(Debug, Clone, Copy, Default)]
pub struct StoreStats {
    pub keys: u64,
    pub sessions: u64,
    /// Applied write sequences the sessions keep.
    pub session_sequences: u64,
    /// The store's revision (0: none yet).
    pub revision: u64,
    /// Rows of the change history, and the oldest revision it serves (0: none yet).
    pub history_changes: u64,
    pub history_floor: u64,
    /// Leases granted and not yet revoked or expired.
    pub leases: u64,
}

impl Handler<Stats> for StoreActor {
    type Result = CeteResult<StoreStats>;

    fn handle(&mut self, _: Stats, _: &mut Self::Context) -> Self::Result {
        let fail = |e: &dyn std::fmt::Display| CeteError::Internal(format!("stats: {e}"));
        let txn = self.txn()?;
        let keys = txn.open_table(KV).map_err(|e| fail(&e))?.len().map_err(|e| fail(&e))?;
        let (sessions, session_sequences) =
            SessionTable::open(txn).and_then(|table| table.rows()).map_err(|e| fail(&e))?;
        let history_changes = txn.open_table(HISTORY).map_err(|e| fail(&e))?.len().map_err(|e| fail(&e))?;
        let leases = txn.open_table(LEASES).map_err(|e| fail(&e))?.len().map_err(|e| fail(&e))?;
        Ok(StoreStats {
            keys,
            sessions,
            session_sequences,
            revision: self.revision.unwrap_or(0),
            history_changes,
            history_floor: self.floor.unwrap_or(0),
            leases,
        })
    }
}

/// Start telling `watcher` about every change applied from now on. With `from`, only if the
/// history still holds every change since that revision (else [`CeteError::Compacted`], and
/// nothing is subscribed). Answers the store's revision now: the changes after it come live,
/// the ones up to it are in the history ([`ReadHistory`]).
#[derive(Message)]
#[rtype(result = "CeteResult<Option<u64>>")]
pub struct Subscribe {
    pub watcher: Recipient<WatchEvent>,
    pub from: Option<u64>,
}

impl Handler<Subscribe> for StoreActor {
    type Result = CeteResult<Option<u64>>;

    fn handle(&mut self, msg: Subscribe, _: &mut Self::Context) -> Self::Result {
        if let Some(from) = msg.from {
            self.check_history(from)?;
        }
        self.watchers.push(msg.watcher);
        Ok(self.revision)
    }
}

impl StoreActor {
    /// Whether the history holds every change from revision `from` on.
    fn check_history(&self, from: u64) -> CeteResult<()> {
        match self.floor {
            None => Err(CeteError::Unavailable(
                "watching from a revision needs revisions, which this cluster has not started yet".into(),
            )),
            Some(floor) if from < floor => Err(CeteError::Compacted { asked: from, compact_revision: floor }),
            Some(_) => Ok(()),
        }
    }
}

/// Changes from the history ([`history`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryPage {
    pub changes: Vec<Change>,
    /// The revision the next page starts at (None: this one reached the newest change).
    pub next: Option<u64>,
}

/// The changes under `prefix` from revision `from` on, a page of about `limit` of them.
#[derive(Message)]
#[rtype(result = "CeteResult<HistoryPage>")]
pub struct ReadHistory {
    pub from: u64,
    pub prefix: String,
    pub limit: usize,
}

impl Handler<ReadHistory> for StoreActor {
    type Result = CeteResult<HistoryPage>;

    fn handle(&mut self, msg: ReadHistory, _: &mut Self::Context) -> Self::Result {
        self.check_history(msg.from)?;
        let history = self.txn()?.open_table(HISTORY).map_err(|e| CeteError::internal("history", e))?;
        let (changes, next) =
            history::read(&history, msg.from, &msg.prefix, msg.limit).map_err(|e| CeteError::internal("history", e))?;
        Ok(HistoryPage { changes, next })
    }
}

#[derive(Message)]
#[rtype(result = "usize")]
pub struct WatcherCount;

impl Handler<WatcherCount> for StoreActor {
    type Result = usize;

    fn handle(&mut self, _: WatcherCount, _: &mut Self::Context) -> usize {
        self.watchers.retain(|w| w.connected());
        self.watchers.len()
    }
}

#[cfg(test)]
mod tests {
    use openraft::vote::RaftLeaderId as _;
    use openraft::EntryPayload;

    use crate::command::LeaderId as CommittedLeaderId;

    use super::*;
    use crate::store::sessions::RequestId;

    fn entry(index: u64, command: Command) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Normal(command) }
    }

    /// A routed write of `value` to `x`, sequence `sequence` of session 7, sent while its
    /// session still awaited `low_water`.
    fn set(value: &str, sequence: u64, low_water: u64) -> Command {
        let set = Command::Set { key: "x".into(), value: Bytes::from(value.to_string()), content_type: None };
        Command::Request { id: RequestId { session: 7, sequence }, command: Box::new(set), low_water }
    }

    #[actix::test]
    async fn a_request_sent_again_is_applied_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreActor::open(&dir.path().join("store.redb")).unwrap().start();
        // The first write, a later one, then the first again (resent after a leader change).
        let entries = vec![entry(1, set("1", 1, 1)), entry(2, set("2", 2, 1)), entry(3, set("1", 1, 1))];
        let responses = store.send(ApplyEntries(entries)).await.unwrap().unwrap();
        assert_eq!(responses.len(), 3);
        let value = store.send(ReadKey("x".into())).await.unwrap().unwrap().found.unwrap();
        assert_eq!(value.value, Bytes::from("2"), "the resent write must not undo the later one");
        let (applied, _) = store.send(AppliedState).await.unwrap().unwrap();
        assert_eq!(applied.map(|l| l.index), Some(3));
    }

    /// Two nodes apply the same log in batches cut differently; a write resent just after its
    /// session expired (idle for the whole window in which retries are recognised) must be
    /// judged the same way on both.
    #[actix::test]
    async fn whether_a_retry_is_a_duplicate_does_not_depend_on_batch_boundaries() {
        use crate::store::sessions::{EXPIRE_EVERY, KEEP_ENTRIES};
        let blank =
            |index| Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload: EntryPayload::Blank };
        // The first entry at which the session, last active at 6, is found idle.
        let edge = (6 + KEEP_ENTRIES).div_ceil(EXPIRE_EVERY) * EXPIRE_EVERY;
        let batchings: [Vec<Vec<Entry>>; 2] = [
            vec![
                vec![entry(5, set("1", 1, 1)), entry(6, set("2", 2, 1))],
                vec![blank(edge - 1), entry(edge, set("1", 1, 1))],
            ],
            vec![
                vec![entry(5, set("1", 1, 1)), entry(6, set("2", 2, 1))],
                vec![blank(edge - 1)],
                vec![entry(edge, set("1", 1, 1))],
            ],
        ];
        let mut values = Vec::new();
        for batches in batchings {
            let dir = tempfile::tempdir().unwrap();
            let store = StoreActor::open(&dir.path().join("store.redb")).unwrap().start();
            for batch in batches {
                store.send(ApplyEntries(batch)).await.unwrap().unwrap();
            }
            values.push(store.send(ReadKey("x".into())).await.unwrap().unwrap().found.unwrap().value);
        }
        assert_eq!(values[0], values[1], "two nodes applying the same log disagree");
        assert_eq!(values[0], Bytes::from("1"), "past its window the session is forgotten");
    }

    /// A node that installs a snapshot judges retries as the node that built it.
    #[actix::test]
    async fn the_sessions_travel_in_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let built = StoreActor::open(&dir.path().join("built.redb")).unwrap().start();
        let entries = vec![entry(1, set("1", 1, 1)), entry(2, set("2", 2, 1)), entry(3, set("3", 3, 2))];
        built.send(ApplyEntries(entries)).await.unwrap().unwrap();
        let view = built.send(OpenSnapshotView).await.unwrap().unwrap();
        let (last_applied, last_membership) = (view.last_applied, view.last_membership.clone());
        let file = dir.path().join("snapshot.data");
        crate::store::snapshot_file::write(&file, view).unwrap();

        let installed = StoreActor::open(&dir.path().join("installed.redb")).unwrap().start();
        let replace = ReplaceState { source: Some(file), last_applied, last_membership };
        installed.send(replace).await.unwrap().unwrap();
        // 1 is below the mark, 3 in the set: neither undoes the last write; 4 is new.
        let retries = vec![entry(4, set("1", 1, 1)), entry(5, set("3", 3, 1))];
        installed.send(ApplyEntries(retries)).await.unwrap().unwrap();
        assert_eq!(installed.send(ReadKey("x".into())).await.unwrap().unwrap().found.unwrap().value, Bytes::from("3"));
        installed.send(ApplyEntries(vec![entry(6, set("4", 4, 2))])).await.unwrap().unwrap();
        assert_eq!(installed.send(ReadKey("x".into())).await.unwrap().unwrap().found.unwrap().value, Bytes::from("4"));
        let stats = installed.send(Stats).await.unwrap().unwrap();
        assert_eq!((stats.sessions, stats.session_sequences), (1, 3), "2, 3 and 4 are kept");
    }

    #[actix::test]
    async fn applied_writes_are_read_at_once_and_committed_before_a_snapshot_view() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreActor::open(&dir.path().join("store.redb")).unwrap().start();
        let set = Command::Set { key: "k".into(), value: Bytes::from("v"), content_type: None };
        store.send(ApplyEntries(vec![entry(1, set)])).await.unwrap().unwrap();
        // Not committed yet, and read all the same: reads go through the open transaction.
        let value = store.send(ReadKey("k".into())).await.unwrap().unwrap().found.unwrap();
        assert_eq!(value.value, Bytes::from("v"));
        // A snapshot reads committed state only: the view sees the write and its index.
        let view = store.send(OpenSnapshotView).await.unwrap().unwrap();
        assert_eq!(view.last_applied.map(|l| l.index), Some(1));
        let kv = view.txn.open_table(KV).unwrap();
        assert!(kv.get("k").unwrap().is_some(), "the snapshot view must see what was applied before it");
    }

    #[actix::test]
    async fn a_batch_applies_in_order_and_answers_per_command() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreActor::open(&dir.path().join("store.redb")).unwrap().start();
        let batch = Command::Batch(vec![
            Command::Set { key: "a".into(), value: Bytes::from("1"), content_type: Some("text/x".into()) },
            Command::Delete { key: "a".into() },
            Command::Set { key: "b".into(), value: Bytes::from("2"), content_type: None },
        ]);
        let responses = store.send(ApplyEntries(vec![entry(1, batch)])).await.unwrap().unwrap();
        assert_eq!(responses, vec![CommandResponse::Batch(vec![CommandResponse::Applied; 3])]);
        assert_eq!(store.send(ReadKey("a".into())).await.unwrap().unwrap().found, None);
        let page = store.send(Scan(ScanRange::default())).await.unwrap().unwrap();
        let pairs: Vec<_> = page.pairs.into_iter().map(|item| (item.key, item.value)).collect();
        assert_eq!(pairs, vec![("b".to_string(), Bytes::from("2"))]);
    }

    fn plain(command: Command) -> Vec<Entry> {
        vec![entry(1, command)]
    }

    async fn revisions_of(store: &Addr<StoreActor>, key: &str) -> (Option<KeyRevisions>, Option<u64>) {
        let read = store.send(ReadKey(key.into())).await.unwrap().unwrap();
        (read.found.and_then(|found| found.revisions), read.revision)
    }

    #[actix::test]
    async fn revisions_start_by_stamping_what_is_there_and_count_every_change_from_then() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreActor::open(&dir.path().join("store.redb")).unwrap().start();
        let set = |key: &str, value: &str| Command::Set {
            key: key.into(),
            value: Bytes::from(value.to_string()),
            content_type: Some("text/plain".into()),
        };
        // Written before revisions: none to read.
        store.send(ApplyEntries(plain(Command::Batch(vec![set("a", "1"), set("b", "2")])))).await.unwrap().unwrap();
        assert_eq!(revisions_of(&store, "a").await, (None, None));

        store.send(ApplyEntries(vec![entry(2, Command::StartRevisions)])).await.unwrap().unwrap();
        assert_eq!(revisions_of(&store, "a").await, (Some(KeyRevisions::STAMPED), Some(1)));
        let a = store.send(ReadKey("a".into())).await.unwrap().unwrap().found.unwrap();
        assert_eq!(
            (a.value, a.content_type.as_deref()),
            (Bytes::from("1"), Some("text/plain")),
            "stamping keeps values"
        );

        let changes = vec![
            entry(3, set("a", "3")),                                                            // revision 2
            entry(4, Command::Delete { key: "missing".into() }),                                // nothing changes
            entry(5, Command::Batch(vec![set("c", "4"), Command::Delete { key: "b".into() }])), // 3 and 4
            entry(6, Command::StartRevisions),                                                  // a no-op now
            entry(7, set("a", "5")),                                                            // 5
        ];
        store.send(ApplyEntries(changes)).await.unwrap().unwrap();
        let a = KeyRevisions { create_revision: 1, mod_revision: 5, version: 3, lease: 0 };
        assert_eq!(revisions_of(&store, "a").await, (Some(a), Some(5)));
        let c = KeyRevisions { create_revision: 3, mod_revision: 3, version: 1, lease: 0 };
        assert_eq!(revisions_of(&store, "c").await.0, Some(c));
        assert_eq!(revisions_of(&store, "b").await.0, None);
    }

    #[actix::test]
    async fn a_snapshot_carries_the_revisions_and_one_without_them_installs_as_without() {
        for start in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let store = StoreActor::open(&dir.path().join("store.redb")).unwrap().start();
            let mut entries =
                vec![entry(1, Command::Set { key: "k".into(), value: Bytes::from("v"), content_type: None })];
            if start {
                entries.push(entry(2, Command::StartRevisions));
                entries.push(entry(3, Command::Set { key: "k".into(), value: Bytes::from("w"), content_type: None }));
            }
            store.send(ApplyEntries(entries)).await.unwrap().unwrap();
            let view = store.send(OpenSnapshotView).await.unwrap().unwrap();
            let (last_applied, last_membership) = (view.last_applied, view.last_membership.clone());
            let file = dir.path().join("snapshot");
            crate::store::snapshot_file::write(&file, view).unwrap();

            let other = tempfile::tempdir().unwrap();
            let installed = StoreActor::open(&other.path().join("store.redb")).unwrap().start();
            let replace = ReplaceState { source: Some(file), last_applied, last_membership };
            installed.send(replace).await.unwrap().unwrap();
            let expected = start.then_some(KeyRevisions { create_revision: 1, mod_revision: 2, version: 2, lease: 0 });
            assert_eq!(revisions_of(&installed, "k").await, (expected, start.then_some(2)), "started: {start}");
        }
    }

    #[actix::test]
    async fn a_scan_pages_after_a_key_and_counts_every_key_under_its_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreActor::open(&dir.path().join("store.redb")).unwrap().start();
        let set =
            |key: &str| Command::Set { key: key.into(), value: Bytes::from(key.to_uppercase()), content_type: None };
        let keys = ["a", "p/1", "p/2", "p/3", "p/4", "q"];
        store.send(ApplyEntries(plain(Command::Batch(keys.iter().map(|k| set(k)).collect())))).await.unwrap().unwrap();
        let scan = |range: ScanRange| {
            let store = store.clone();
            async move { store.send(Scan(range)).await.unwrap().unwrap() }
        };
        let keys_of = |page: &ScanPage| page.pairs.iter().map(|item| item.key.clone()).collect::<Vec<_>>();

        let first = scan(ScanRange { prefix: "p/".into(), limit: Some(2), ..Default::default() }).await;
        assert_eq!((keys_of(&first), first.more, first.count), (vec!["p/1".into(), "p/2".into()], true, 4));
        assert_eq!(first.pairs[0].value, Bytes::from("P/1"));
        let next =
            ScanRange { prefix: "p/".into(), start_after: Some("p/2".into()), limit: Some(2), ..Default::default() };
        let second = scan(next).await;
        assert_eq!((keys_of(&second), second.more, second.count), (vec!["p/3".into(), "p/4".into()], false, 4));

        let keys_only = scan(ScanRange { prefix: "p/".into(), keys_only: true, ..Default::default() }).await;
        assert!(keys_only.pairs.iter().all(|item| item.value.is_empty()) && keys_only.pairs.len() == 4);
        let count_only = scan(ScanRange { count_only: true, ..Default::default() }).await;
        assert_eq!((count_only.pairs.len(), count_only.more, count_only.count), (0, false, 6));
        // A start before the prefix starts at the prefix; one past it finds nothing.
        let before = scan(ScanRange { prefix: "p/".into(), start_after: Some("a".into()), ..Default::default() }).await;
        assert_eq!(before.pairs.len(), 4);
        let past = scan(ScanRange { prefix: "p/".into(), start_after: Some("p/9".into()), ..Default::default() }).await;
        assert_eq!((past.pairs.len(), past.more, past.count), (0, false, 4));
    }
}

#[cfg(test)]
mod txn_tests {
    use openraft::vote::RaftLeaderId as _;

    use super::*;
    use crate::command::txn::{Compare, CompareOp, Target};
    use crate::command::LeaderId;

    fn entry(index: u64, command: Command) -> Entry {
        Entry { log_id: LogId::new(LeaderId::new(1, 1), index), payload: EntryPayload::Normal(command) }
    }

    fn put(key: &str, value: &str) -> TxnOp {
        TxnOp::Put { key: key.into(), value: Bytes::from(value.to_string()), lease: 0 }
    }

    async fn run(store: &Addr<StoreActor>, index: u64, txn: Txn) -> TxnResponse {
        match store.send(ApplyEntries(vec![entry(index, Command::Txn(txn))])).await.unwrap().unwrap().remove(0) {
            CommandResponse::Txn(answer) => answer,
            other => panic!("a transaction answered {other:?}"),
        }
    }

    #[actix::test]
    async fn a_transaction_writes_at_one_revision_and_reads_its_own_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreActor::open(&dir.path().join("store.redb")).unwrap().start();
        let start = vec![
            entry(1, Command::StartRevisions),
            entry(2, Command::Set { key: "a".into(), value: Bytes::from("10"), content_type: None }),
            entry(3, Command::Set { key: "p/1".into(), value: Bytes::from("x"), content_type: None }),
            entry(4, Command::Set { key: "p/2".into(), value: Bytes::from("y"), content_type: None }),
        ];
        store.send(ApplyEntries(start)).await.unwrap().unwrap();
        // Revision 4 now; a holds "10" at mod revision 2.
        let txn = Txn {
            compare: vec![
                Compare { key: "a".into(), op: CompareOp::Equal, target: Target::ModRevision(2) },
                Compare { key: "missing".into(), op: CompareOp::Equal, target: Target::Version(0) },
            ],
            success: vec![
                put("a", "7"),
                put("b", "3"),
                TxnOp::DeletePrefix { prefix: "p/".into() },
                TxnOp::Get { key: "b".into() },
                TxnOp::Scan { prefix: String::new(), limit: Some(1) },
            ],
            failure: vec![put("failed", "1")],
        };
        let answer = run(&store, 5, txn.clone()).await;
        assert!(answer.succeeded);
        assert_eq!(answer.revision, 5, "three writes, one revision");
        let b = KeyRevisions { create_revision: 5, mod_revision: 5, version: 1, lease: 0 };
        let expected = vec![
            TxnResult::Put { key: "a".into() },
            TxnResult::Put { key: "b".into() },
            TxnResult::Delete { deleted: 2 },
            TxnResult::Get {
                key: "b".into(),
                found: Some(KeyValue { key: "b".into(), value: Bytes::from("3"), revisions: b }),
            },
            TxnResult::Scan {
                pairs: vec![KeyValue {
                    key: "a".into(),
                    value: Bytes::from("7"),
                    revisions: KeyRevisions { create_revision: 2, mod_revision: 5, version: 2, lease: 0 },
                }],
                more: true,
                count: 2,
            },
        ];
        assert_eq!(answer.results, expected);

        // The same again: a's mod revision is 5 now, so the failure list runs.
        let answer = run(&store, 6, txn).await;
        assert!(!answer.succeeded);
        assert_eq!((answer.revision, answer.results), (6, vec![TxnResult::Put { key: "failed".into() }]));

        // Only reads, or deletes of nothing: no revision.
        let reads = Txn {
            success: vec![TxnOp::Get { key: "nothing".into() }, TxnOp::Delete { key: "nothing".into() }],
            ..Txn::default()
        };
        let answer = run(&store, 7, reads).await;
        assert_eq!(answer.revision, 6);
        assert_eq!(answer.results[0], TxnResult::Get { key: "nothing".into(), found: None });
        assert_eq!(store.send(StoreRevision).await.unwrap().unwrap(), Some(6));
    }

    #[actix::test]
    async fn without_revisions_a_transaction_is_not_judged() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreActor::open(&dir.path().join("store.redb")).unwrap().start();
        let txn = Txn { success: vec![put("a", "1")], ..Txn::default() };
        let answer = store.send(ApplyEntries(vec![entry(1, Command::Txn(txn))])).await.unwrap().unwrap();
        assert_eq!(answer, vec![CommandResponse::Refused { mod_revision: 0 }]);
        assert_eq!(store.send(ReadKey("a".into())).await.unwrap().unwrap().found, None);
    }
}
