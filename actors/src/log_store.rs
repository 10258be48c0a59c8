//! The Raft log and vote, in a chunked write-ahead log (the `raft-log` crate, by openraft's
//! author, which databend's meta service runs on).
//!
//! Why a WAL and not a B-tree: a Raft log is written at its end and dropped from its front,
//! and a client write waits for the log's fsync on the leader and on a follower. One record
//! appended to a chunk file costs one fsync of the pages written; a B-tree commit rewrites
//! leaf, branch, allocator and header pages all over the file before its fsync (measured here:
//! 10 pages and ~1.1 ms per redb commit against ~0.2 ms for an append).
//!
//! Group commit: `append` only encodes the entries into the open chunk's buffer and hands the
//! buffer to the WAL's flush thread, which writes and fsyncs everything queued at once and
//! then reports each batch through openraft's `LogFlushed` callback. A write is acknowledged
//! only after that callback, so a shared fsync never means an unsynced write. Entries are
//! readable as soon as they are appended (the WAL keeps them in its payload cache until their
//! chunk is on disk), as openraft requires.
//!
//! Every mutation (vote, append, truncate, purge, commit) is a record in the same WAL, so the
//! disk sees them in openraft's order; on open the records are replayed to rebuild the state.

// openraft's storage traits fix the error type (`StorageError`, ~224 bytes); the helpers here
// return it too, so that every failure reaches openraft unchanged.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, StorageIOError};
use raft_log::api::raft_log_writer::RaftLogWriter;
use raft_log::codeq::{Decode, Encode};
use raft_log::{Callback, RaftLog, Types};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::command::{decode, encode, Entry, LogId, StorageError, TypeConfig, Vote};
use crate::failpoints;

/// A chunk file is closed at this size; purging drops whole closed chunks, and the entries of
/// the open chunk stay in memory until it is closed and synced, so this bounds both.
const CHUNK_MAX_BYTES: usize = 4 << 20;
/// Entries kept in memory for replication beyond the open chunk (older ones are read back).
const CACHE_MAX_BYTES: usize = 4 << 20;
const CACHE_MAX_ENTRIES: usize = 100_000;
/// The largest record a decoder accepts: a torn length must not allocate gigabytes.
const MAX_RECORD_BYTES: usize = 1 << 30;

/// The WAL's view of Cete's Raft types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogTypes;

impl Types for LogTypes {
    type LogId = WalLogId;
    type LogPayload = WalEntry;
    type Vote = WalVote;
    type Callback = Flushed;
    type UserData = NoUserData;

    fn log_index(log_id: &WalLogId) -> u64 {
        log_id.0.index
    }

    fn payload_size(payload: &WalEntry) -> u64 {
        payload.size
    }
}

/// Writes `value` as a length-prefixed MessagePack record part.
fn write_framed<T: Serialize, W: io::Write>(value: &T, mut w: W) -> io::Result<usize> {
    let bytes = encode(value).map_err(io::Error::other)?;
    let len = u32::try_from(bytes.len()).map_err(|_| io::Error::other("a log record over 4 GiB"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(&bytes)?;
    Ok(4 + bytes.len())
}

fn read_framed<T: DeserializeOwned, R: io::Read>(mut r: R) -> io::Result<(T, usize)> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_RECORD_BYTES {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("a log record claims {len} bytes")));
    }
    let mut bytes = vec![0; len];
    r.read_exact(&mut bytes)?;
    let value = decode(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok((value, len))
}

/// A value the WAL stores as a length-prefixed MessagePack record part, ordered as the value
/// is (log ids totally, votes as openraft orders them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Framed<T>(T);

impl<T: Serialize> Encode for Framed<T> {
    fn encode<W: io::Write>(&self, w: W) -> io::Result<usize> {
        write_framed(&self.0, w)
    }
}

impl<T: DeserializeOwned> Decode for Framed<T> {
    fn decode<R: io::Read>(r: R) -> io::Result<Self> {
        read_framed(r).map(|(value, _)| Framed(value))
    }
}

pub type WalLogId = Framed<LogId>;
pub type WalVote = Framed<Vote>;

/// An entry as the WAL stores and caches it: shared, so caching it copies nothing.
#[derive(Debug, Clone)]
pub struct WalEntry {
    entry: Arc<Entry>,
    /// About the encoded size; what the cache counts against its limit.
    size: u64,
}

impl WalEntry {
    fn new(entry: Entry) -> Self {
        let size = entry_size(&entry);
        WalEntry { entry: Arc::new(entry), size }
    }
}

fn entry_size(entry: &Entry) -> u64 {
    use crate::command::Command;
    fn command_size(command: &Command) -> u64 {
        match command {
            Command::Set { key, value, content_type } => {
                (key.len() + value.len() + content_type.as_ref().map_or(0, String::len) + 8) as u64
            }
            Command::Delete { key } => key.len() as u64 + 4,
            Command::Batch(commands) => commands.iter().map(command_size).sum::<u64>() + 4,
            Command::Request { command, .. } => command_size(command) + 24,
        }
    }
    match &entry.payload {
        openraft::EntryPayload::Normal(command) => command_size(command) + 32,
        _ => 256,
    }
}

impl Encode for WalEntry {
    fn encode<W: io::Write>(&self, w: W) -> io::Result<usize> {
        write_framed(&*self.entry, w)
    }
}

impl Decode for WalEntry {
    fn decode<R: io::Read>(r: R) -> io::Result<Self> {
        read_framed(r).map(|(entry, len)| WalEntry { entry: Arc::new(entry), size: len as u64 })
    }
}

/// Cete keeps nothing of its own in the WAL's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoUserData;

impl Encode for NoUserData {
    fn encode<W: io::Write>(&self, _: W) -> io::Result<usize> {
        Ok(0)
    }
}

impl Decode for NoUserData {
    fn decode<R: io::Read>(_: R) -> io::Result<Self> {
        Ok(NoUserData)
    }
}

/// Who hears that a flush reached the disk.
pub enum Flushed {
    /// openraft, for appended entries.
    Log(LogFlushed<TypeConfig>),
    /// A call of this module waiting for its record to be durable.
    Waiter(oneshot::Sender<io::Result<()>>),
}

impl Callback for Flushed {
    fn send(self, result: io::Result<()>) {
        if let Err(e) = &result {
            log::error!("raft log flush failed: {e}");
        }
        match self {
            Flushed::Log(flushed) => {
                if result.is_ok() {
                    failpoints::crash_point("raft-log-after-fsync");
                }
                flushed.log_io_completed(result)
            }
            Flushed::Waiter(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

/// openraft's handle on the log; cheap to clone (the reader is a clone).
#[derive(Clone)]
pub struct LogStore {
    /// `None` only while a wipe replaces the WAL.
    wal: Arc<Mutex<Option<RaftLog<LogTypes>>>>,
    dir: PathBuf,
}

fn wal_config(dir: &Path) -> raft_log::Config {
    let mut config = raft_log::Config::new(dir.display());
    config.log_cache_capacity = Some(CACHE_MAX_BYTES);
    config.log_cache_max_items = Some(CACHE_MAX_ENTRIES);
    config.wal.chunk_max_size = Some(CHUNK_MAX_BYTES);
    config.wal.read_buffer_size = Some(1 << 20);
    // openraft has one append in flight at a time: waiting for more only delays it.
    config.wal.flush_batch_wait = Some(Duration::ZERO);
    config
}

fn open_wal(dir: &Path) -> io::Result<RaftLog<LogTypes>> {
    std::fs::create_dir_all(dir)?;
    RaftLog::open(Arc::new(wal_config(dir)))
}

fn err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: impl std::fmt::Display) -> StorageError {
    StorageError::from(StorageIOError::new(subject, verb, AnyError::error(e.to_string())))
}

fn write_err(e: impl std::fmt::Display) -> StorageError {
    err(ErrorSubject::Logs, ErrorVerb::Write, e)
}

fn read_err(e: impl std::fmt::Display) -> StorageError {
    err(ErrorSubject::Logs, ErrorVerb::Read, e)
}

impl LogStore {
    /// Opens (or creates) the log in directory `dir` and starts its flush thread.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let legacy = dir.with_file_name("raft.redb");
        if legacy.exists() {
            return Err(read_err(format!(
                "{} holds a Raft log in the format of an earlier development build; this build keeps the log in \
                 {} (start the node on a fresh data directory and join it to the cluster)",
                legacy.display(),
                dir.display()
            )));
        }
        let wal = open_wal(dir).map_err(|e| read_err(format!("{}: {e}", dir.display())))?;
        Ok(LogStore { wal: Arc::new(Mutex::new(Some(wal))), dir: dir.to_path_buf() })
    }

    fn lock(&self) -> MutexGuard<'_, Option<RaftLog<LogTypes>>> {
        self.wal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the WAL (an error while a wipe has it closed).
    fn with<T>(
        &self,
        on_err: fn(String) -> StorageError,
        f: impl FnOnce(&mut RaftLog<LogTypes>) -> io::Result<T>,
    ) -> Result<T, StorageError> {
        let mut guard = self.lock();
        let wal = guard.as_mut().ok_or_else(|| on_err("the raft log is closed".into()))?;
        f(wal).map_err(|e| on_err(e.to_string()))
    }

    /// Writes a record with `f`, then waits until it is on disk.
    async fn durably(
        &self,
        on_err: fn(String) -> StorageError,
        f: impl FnOnce(&mut RaftLog<LogTypes>) -> io::Result<()>,
    ) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        self.with(on_err, |wal| {
            f(wal)?;
            wal.flush(true, Some(Flushed::Waiter(tx)))
        })?;
        match rx.await {
            Ok(result) => result.map_err(|e| on_err(e.to_string())),
            Err(_) => Err(on_err("the raft log's flush thread has stopped".into())),
        }
    }

    /// Erases the whole log and vote. Only for a node giving up its own one-node cluster to
    /// join another, with its Raft instance shut down.
    pub async fn wipe(&self) -> Result<(), StorageError> {
        let mut guard = self.lock();
        // Dropping the WAL joins its flush thread and releases the directory lock.
        drop(guard.take());
        let result = std::fs::remove_dir_all(&self.dir).and_then(|()| open_wal(&self.dir));
        match result {
            Ok(wal) => {
                *guard = Some(wal);
                Ok(())
            }
            Err(e) => Err(write_err(format!("wiping {}: {e}", self.dir.display()))),
        }
    }
}

fn vote_write_err(e: String) -> StorageError {
    err(ErrorSubject::Vote, ErrorVerb::Write, e)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let from = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(i) => i.saturating_add(1),
            Bound::Excluded(i) => *i,
            Bound::Unbounded => u64::MAX,
        };
        if from >= to {
            return Ok(Vec::new());
        }
        self.with(read_err, |wal| {
            wal.read(from, to).map(|item| item.map(|(_, payload)| Entry::clone(&payload.entry))).collect()
        })
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.with(read_err, |wal| {
            let state = wal.log_state();
            Ok(LogState { last_purged_log_id: state.purged().map(|id| id.0), last_log_id: state.last().map(|id| id.0) })
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let vote = Framed(*vote);
        self.durably(vote_write_err, |wal| wal.save_vote(vote).map(|_| ())).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.with(|e| err(ErrorSubject::Vote, ErrorVerb::Read, e), |wal| Ok(wal.log_state().vote().map(|v| v.0)))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Only a hint for the next start (losing it means re-applying a little more): written
        // with the next flush, and skipped where the WAL would refuse it (never an error).
        let Some(committed) = committed.map(Framed) else { return Ok(()) };
        if failpoints::skip_point("raft-log-commit-hint") {
            return Ok(());
        }
        self.with(write_err, |wal| {
            let state = wal.log_state();
            if Some(&committed) > state.last() || Some(&committed) <= state.committed() {
                return Ok(());
            }
            wal.commit(committed).map(|_| ())
        })
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.with(read_err, |wal| Ok(wal.log_state().committed().map(|id| id.0)))
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.with(write_err, |wal| {
            // An entry at or below the purge point is already in the snapshot that replaced
            // the log there; openraft does not send one, but the WAL would refuse it.
            let purged = wal.log_state().purged().map(|id| id.0.index);
            let fresh = entries.into_iter().filter(|entry| Some(entry.log_id.index) > purged);
            wal.append(fresh.map(|entry| (Framed(entry.log_id), WalEntry::new(entry))))?;
            failpoints::crash_point("raft-log-before-fsync");
            wal.flush(true, Some(Flushed::Log(callback)))
        })
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.durably(write_err, |wal| wal.truncate(log_id.index).map(|_| ())).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.durably(write_err, |wal| wal.purge(Framed(log_id)).map(|_| ())).await
    }
}
