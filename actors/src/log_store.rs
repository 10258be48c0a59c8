//! The Raft log and vote, in redb, with group commit.
//!
//! openraft hands the log store one `append` per client write. Calling fsync for each would cap
//! a node at one write per disk flush, so `append` only makes the entries readable (the
//! `unflushed` map) and queues them; one writer thread drains everything queued, writes it in
//! one redb transaction, flushes once, and only then reports each batch durable through
//! openraft's `LogFlushed` callback. A write is acknowledged after that callback, so "shared
//! fsync" never means "unsynced".
//!
//! Every mutation (append, truncate, purge, vote) goes through the same queue, so the disk sees
//! them in openraft's order.

// openraft's storage traits fix the error type (`StorageError`, ~224 bytes); the helpers here
// return it too, so that every failure reaches openraft unchanged.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, OptionalSend, RaftLogId, StorageIOError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use crate::command::{decode, encode, Entry, LogId, StorageError, TypeConfig, Vote};

/// Log entries by index, MessagePack-encoded.
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
/// The vote, the last purged log id and the last committed log id.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const VOTE_KEY: &str = "vote";
const PURGED_KEY: &str = "last_purged";
const COMMITTED_KEY: &str = "committed";

/// The most queued operations one flush takes; bounds the latency of the first in the batch.
const MAX_BATCH: usize = 4096;

/// A mutation waiting for the writer thread.
enum WriteOp {
    Append { entries: Vec<(LogId, Vec<u8>)>, flushed: LogFlushed<TypeConfig> },
    Truncate { since: u64, done: oneshot::Sender<Result<(), String>> },
    Purge { upto: LogId, done: oneshot::Sender<Result<(), String>> },
    SaveVote { vote: Vec<u8>, done: oneshot::Sender<Result<(), String>> },
    SaveCommitted { committed: Vec<u8> },
    Wipe { done: oneshot::Sender<Result<(), String>> },
}

/// In-memory view shared by the openraft-facing handle and the writer thread.
struct Shared {
    db: Arc<Database>,
    /// Entries appended but not yet durable: readable at once, as openraft requires.
    unflushed: RwLock<BTreeMap<u64, Entry>>,
    /// The last log id and last purged id, kept current without a disk read.
    state: Mutex<LogState<TypeConfig>>,
}

/// openraft's handle on the log; cheap to clone (the reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    queue: mpsc::Sender<WriteOp>,
}

impl LogStore {
    /// Opens (or creates) the log database at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let db = Database::create(path).map_err(|e| io_err(StorageIOError::read_logs(AnyError::new(&e))))?;
        let db = Arc::new(db);
        let state = load_state(&db)?;
        let shared = Arc::new(Shared { db, unflushed: RwLock::new(BTreeMap::new()), state: Mutex::new(state) });
        let (queue, rx) = mpsc::channel();
        let writer_shared = shared.clone();
        thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || run_writer(writer_shared, rx))
            .map_err(|e| io_err(StorageIOError::write_logs(AnyError::new(&e))))?;
        Ok(LogStore { shared, queue })
    }

    fn enqueue(&self, op: WriteOp) -> Result<(), StorageError> {
        self.queue
            .send(op)
            .map_err(|_| io_err(StorageIOError::write_logs(AnyError::error("the log writer has stopped"))))
    }

    async fn enqueue_and_wait(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), String>>) -> WriteOp,
        on_err: fn(AnyError) -> StorageIOError<u64>,
    ) -> Result<(), StorageError> {
        let (done, wait) = oneshot::channel();
        self.enqueue(make(done))?;
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(msg)) => Err(io_err(on_err(AnyError::error(msg)))),
            Err(_) => Err(io_err(on_err(AnyError::error("the log writer has stopped")))),
        }
    }

    /// Erases the whole log and vote. Only for a node giving up its own one-node cluster to
    /// join another, with its Raft instance shut down.
    pub async fn wipe(&self) -> Result<(), StorageError> {
        self.enqueue_and_wait(|done| WriteOp::Wipe { done }, StorageIOError::write_logs).await?;
        self.shared.unflushed.write().unwrap_or_else(|p| p.into_inner()).clear();
        *self.shared.state.lock().unwrap_or_else(|p| p.into_inner()) = LogState::default();
        Ok(())
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        read_meta(&self.shared.db, key)
    }
}

fn io_err(e: StorageIOError<u64>) -> StorageError {
    StorageError::from(e)
}

fn read_meta<T: serde::de::DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>, StorageError> {
    let fail = |e: &dyn std::fmt::Display| io_err(StorageIOError::read_logs(AnyError::error(format!("{key}: {e}"))));
    let txn = db.begin_read().map_err(|e| fail(&e))?;
    let table = match txn.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(fail(&e)),
    };
    match table.get(key).map_err(|e| fail(&e))? {
        Some(bytes) => decode(bytes.value()).map(Some).map_err(|e| fail(&e)),
        None => Ok(None),
    }
}

/// The log's bounds as the disk has them, read once at open.
fn load_state(db: &Database) -> Result<LogState<TypeConfig>, StorageError> {
    let last_purged_log_id: Option<LogId> = read_meta(db, PURGED_KEY)?;
    let last_log_id = last_on_disk(db)?.or(last_purged_log_id);
    Ok(LogState { last_purged_log_id, last_log_id })
}

/// The writer thread: take everything queued, write it in one transaction, flush once, report.
fn run_writer(shared: Arc<Shared>, rx: mpsc::Receiver<WriteOp>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let result = write_batch(&shared.db, &batch).map_err(|e| e.to_string());
        finish_batch(&shared, batch, result);
    }
    log::debug!("raft log writer stopped");
}

fn write_batch(db: &Database, batch: &[WriteOp]) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    // The committed index is only a hint for the next start (losing it means re-applying a
    // little more), so a batch of nothing else is not worth a flush: it becomes durable with
    // the next append or vote.
    let only_hints = batch.iter().all(|op| matches!(op, WriteOp::SaveCommitted { .. }));
    txn.set_durability(if only_hints { Durability::None } else { Durability::Immediate })?;
    {
        let mut log = txn.open_table(LOG)?;
        let mut meta = txn.open_table(META)?;
        for op in batch {
            match op {
                WriteOp::Append { entries, .. } => {
                    for (log_id, bytes) in entries {
                        log.insert(log_id.index, bytes.as_slice())?;
                    }
                }
                WriteOp::Truncate { since, .. } => log.retain_in(*since.., |_, _| false)?,
                WriteOp::Purge { upto, .. } => {
                    log.retain_in(..=upto.index, |_, _| false)?;
                    let bytes = encode(upto).map_err(|e| redb::StorageError::Io(std::io::Error::other(e)))?;
                    meta.insert(PURGED_KEY, bytes.as_slice())?;
                }
                WriteOp::SaveVote { vote, .. } => {
                    meta.insert(VOTE_KEY, vote.as_slice())?;
                }
                WriteOp::SaveCommitted { committed } => {
                    meta.insert(COMMITTED_KEY, committed.as_slice())?;
                }
                WriteOp::Wipe { .. } => {
                    log.retain(|_, _| false)?;
                    meta.retain(|_, _| false)?;
                }
            }
        }
    }
    txn.commit()?;
    Ok(())
}

/// After the flush: drop flushed entries from memory and tell every waiter how it went.
fn finish_batch(shared: &Shared, batch: Vec<WriteOp>, result: Result<(), String>) {
    if result.is_ok() {
        let mut unflushed = shared.unflushed.write().unwrap_or_else(|p| p.into_inner());
        for op in &batch {
            if let WriteOp::Append { entries, .. } = op {
                for (log_id, _) in entries {
                    // A later append may have replaced this index; keep that one until it flushes.
                    if unflushed.get(&log_id.index).is_some_and(|e| e.log_id == *log_id) {
                        unflushed.remove(&log_id.index);
                    }
                }
            }
        }
    } else if let Err(msg) = &result {
        log::error!("raft log write failed: {msg}");
    }
    for op in batch {
        match op {
            WriteOp::Append { flushed, .. } => {
                flushed.log_io_completed(result.clone().map_err(std::io::Error::other));
            }
            WriteOp::Truncate { done, .. }
            | WriteOp::Purge { done, .. }
            | WriteOp::SaveVote { done, .. }
            | WriteOp::Wipe { done } => {
                let _ = done.send(result.clone());
            }
            WriteOp::SaveCommitted { .. } => {}
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        // Unflushed first, disk second: an entry leaves `unflushed` only after it is on disk,
        // so this order never misses one that is flushed in between.
        let mut found: BTreeMap<u64, Entry> = {
            let unflushed = self.shared.unflushed.read().unwrap_or_else(|p| p.into_inner());
            unflushed.range(range.clone()).map(|(i, e)| (*i, e.clone())).collect()
        };
        let fail = |e: &dyn std::fmt::Display| io_err(StorageIOError::read_logs(AnyError::error(e.to_string())));
        let txn = self.shared.db.begin_read().map_err(|e| fail(&e))?;
        match txn.open_table(LOG) {
            Ok(table) => {
                let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
                for item in table.range::<u64>(bounds).map_err(|e| fail(&e))? {
                    let (index, bytes) = item.map_err(|e| fail(&e))?;
                    if let std::collections::btree_map::Entry::Vacant(slot) = found.entry(index.value()) {
                        slot.insert(decode(bytes.value()).map_err(|e| fail(&e))?);
                    }
                }
            }
            Err(redb::TableError::TableDoesNotExist(_)) => {}
            Err(e) => return Err(fail(&e)),
        }
        Ok(found.into_values().collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        Ok(self.shared.state.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = encode(vote).map_err(|e| io_err(StorageIOError::write_vote(AnyError::new(&e))))?;
        self.enqueue_and_wait(|done| WriteOp::SaveVote { vote, done }, StorageIOError::write_vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.read_meta(VOTE_KEY)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Durable with the next flush; losing it only means re-applying a little more at start.
        let committed = encode(&committed).map_err(|e| io_err(StorageIOError::write_logs(AnyError::new(&e))))?;
        self.enqueue(WriteOp::SaveCommitted { committed })
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.read_meta::<Option<LogId>>(COMMITTED_KEY)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        {
            let mut unflushed = self.shared.unflushed.write().unwrap_or_else(|p| p.into_inner());
            for entry in entries {
                let bytes = encode(&entry).map_err(|e| io_err(StorageIOError::write_logs(AnyError::new(&e))))?;
                encoded.push((*entry.get_log_id(), bytes));
                unflushed.insert(entry.log_id.index, entry);
            }
        }
        if let Some((last, _)) = encoded.last() {
            self.shared.state.lock().unwrap_or_else(|p| p.into_inner()).last_log_id = Some(*last);
        }
        self.enqueue(WriteOp::Append { entries: encoded, flushed: callback })
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut unflushed = self.shared.unflushed.write().unwrap_or_else(|p| p.into_inner());
            unflushed.retain(|index, _| *index < log_id.index);
        }
        self.enqueue_and_wait(|done| WriteOp::Truncate { since: log_id.index, done }, StorageIOError::write_logs)
            .await?;
        // The writer has flushed everything queued before the truncation, so the disk is current.
        let last = last_on_disk(&self.shared.db)?;
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        state.last_log_id = last.or(state.last_purged_log_id);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        {
            let mut unflushed = self.shared.unflushed.write().unwrap_or_else(|p| p.into_inner());
            unflushed.retain(|index, _| *index > log_id.index);
        }
        self.enqueue_and_wait(|done| WriteOp::Purge { upto: log_id, done }, StorageIOError::write_logs).await?;
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        state.last_purged_log_id = Some(log_id);
        if state.last_log_id < Some(log_id) {
            state.last_log_id = Some(log_id);
        }
        Ok(())
    }
}

fn last_on_disk(db: &Database) -> Result<Option<LogId>, StorageError> {
    let fail = |e: &dyn std::fmt::Display| io_err(StorageIOError::read_logs(AnyError::error(e.to_string())));
    let txn = db.begin_read().map_err(|e| fail(&e))?;
    let table = match txn.open_table(LOG) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(fail(&e)),
    };
    let last = match table.last().map_err(|e| fail(&e))? {
        Some((_, bytes)) => Some(decode::<Entry>(bytes.value()).map_err(|e| fail(&e))?.log_id),
        None => None,
    };
    Ok(last)
}
