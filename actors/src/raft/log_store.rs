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
//! then reports each batch through openraft's `IOFlushed` callback. A write is acknowledged
//! only after that callback, so a shared fsync never means an unsynced write. Entries are
//! readable as soon as they are appended (the WAL keeps them in its payload cache until their
//! chunk is on disk), as openraft requires.
//!
//! The leader's own copy: openraft 0.10 replicates entries as soon as `append` returns, in
//! parallel with this fsync, but the leader's own progress toward the commit quorum moves only
//! when `IOFlushed::io_completed` reports the flush (`handle_local_io` →
//! `update_local_progress` in openraft's RaftCore), so an entry counts as held by the leader
//! only once it is on the leader's disk.
//!
//! Completion order: openraft 0.10 allows appends to complete out of order (it keeps the
//! greatest flushed IO id and ignores an older one that reports late). The WAL never does:
//! one flush thread drains its queue in order, fsyncs a batch, then calls the batch's
//! callbacks in submission order, so a completion also means every earlier record is durable.
//!
//! Every mutation (vote, append, truncate, purge, commit) is a record in the same WAL, so the
//! disk sees them in openraft's order; on open the records are replayed to rebuild the state.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;
use raft_log::api::raft_log_writer::RaftLogWriter;
use raft_log::codeq::{Decode, Encode};
use raft_log::{Callback, RaftLog, Types};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::oneshot;

use crate::command::{decode, encode, Entry, LogId, TypeConfig, Vote};
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

/// Writes `value` as a length-prefixed MessagePack record part (a big-endian u32 length).
/// The snapshot file frames little-endian (`snapshot_file.rs`): both layouts are on disk in
/// data directories of earlier builds, so each stays as it is, written and read in one place.
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

/// About the encoded size of `entry`: its payload and a fixed allowance for the rest.
fn entry_size(entry: &Entry) -> u64 {
    match &entry.payload {
        openraft::EntryPayload::Normal(command) => command.payload_bytes() as u64 + 32,
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
    Log(IOFlushed<TypeConfig>),
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
                flushed.io_completed(result)
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
    // Whatever is queued when the flush thread wakes goes into one fsync (several appends of
    // openraft 0.10 may be in flight); waiting for more would only delay the first.
    config.wal.flush_batch_wait = Some(Duration::ZERO);
    config
}

fn open_wal(dir: &Path) -> io::Result<RaftLog<LogTypes>> {
    std::fs::create_dir_all(dir)?;
    RaftLog::open(Arc::new(wal_config(dir)))
}

/// An error of the log, with what was being done.
fn log_err(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("raft log: {what}: {e}"))
}

impl LogStore {
    /// Opens (or creates) the log in directory `dir` and starts its flush thread.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let legacy = dir.with_file_name("raft.redb");
        if legacy.exists() {
            return Err(io::Error::other(format!(
                "{} holds a Raft log in the format of an earlier development build; this build keeps the log in \
                 {} (start the node on a fresh data directory and join it to the cluster)",
                legacy.display(),
                dir.display()
            )));
        }
        let wal = open_wal(dir).map_err(|e| log_err(&format!("opening {}", dir.display()), e))?;
        Ok(LogStore { wal: Arc::new(Mutex::new(Some(wal))), dir: dir.to_path_buf() })
    }

    fn lock(&self) -> MutexGuard<'_, Option<RaftLog<LogTypes>>> {
        self.wal.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the WAL (an error while a wipe has it closed).
    fn with<T>(&self, what: &str, f: impl FnOnce(&mut RaftLog<LogTypes>) -> io::Result<T>) -> io::Result<T> {
        let mut guard = self.lock();
        let wal = guard.as_mut().ok_or_else(|| log_err(what, "the raft log is closed"))?;
        f(wal).map_err(|e| log_err(what, e))
    }

    /// Writes a record with `f`, then waits until it is on disk.
    async fn durably(&self, what: &str, f: impl FnOnce(&mut RaftLog<LogTypes>) -> io::Result<()>) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.with(what, |wal| {
            f(wal)?;
            wal.flush(true, Some(Flushed::Waiter(tx)))
        })?;
        match rx.await {
            Ok(result) => result.map_err(|e| log_err(what, e)),
            Err(_) => Err(log_err(what, "the raft log's flush thread has stopped")),
        }
    }

    /// The last log id in the log (or the last purged one when no entry is left).
    pub fn last_log_id(&self) -> io::Result<Option<LogId>> {
        self.with("reading its state", |wal| Ok(wal.log_state().last().map(|id| id.0)))
    }

    /// Erases the whole log and vote. Only for a node giving up its own one-node cluster to
    /// join another, with its Raft instance shut down.
    pub async fn wipe(&self) -> io::Result<()> {
        let mut guard = self.lock();
        // Dropping the WAL joins its flush thread and releases the directory lock.
        drop(guard.take());
        let result = std::fs::remove_dir_all(&self.dir).and_then(|()| open_wal(&self.dir));
        match result {
            Ok(wal) => {
                *guard = Some(wal);
                Ok(())
            }
            Err(e) => Err(log_err(&format!("wiping {}", self.dir.display()), e)),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
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
        self.with("reading entries", |wal| {
            wal.read(from, to).map(|item| item.map(|(_, payload)| Entry::clone(&payload.entry))).collect()
        })
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        self.with("reading the vote", |wal| Ok(wal.log_state().vote().map(|v| v.0)))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        self.with("reading its state", |wal| {
            let state = wal.log_state();
            Ok(LogState { last_purged_log_id: state.purged().map(|id| id.0), last_log_id: state.last().map(|id| id.0) })
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        let vote = Framed(*vote);
        self.durably("saving the vote", |wal| wal.save_vote(vote).map(|_| ())).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        // Only a hint for the next start (losing it means re-applying a little more): written
        // with the next flush, and skipped where the WAL would refuse it (never an error).
        let Some(committed) = committed.map(Framed) else { return Ok(()) };
        if failpoints::skip_point("raft-log-commit-hint") {
            return Ok(());
        }
        self.with("saving the committed hint", |wal| {
            let state = wal.log_state();
            if Some(&committed) > state.last() || Some(&committed) <= state.committed() {
                return Ok(());
            }
            wal.commit(committed).map(|_| ())
        })
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        self.with("reading the committed hint", |wal| Ok(wal.log_state().committed().map(|id| id.0)))
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.with("appending", |wal| {
            // An entry at or below the purge point is already in the snapshot that replaced
            // the log there; openraft does not send one, but the WAL would refuse it.
            let purged = wal.log_state().purged().map(|id| id.0.index);
            let fresh = entries.into_iter().filter(|entry| Some(entry.log_id.index) > purged);
            wal.append(fresh.map(|entry| (Framed(entry.log_id), WalEntry::new(entry))))?;
            failpoints::crash_point("raft-log-before-fsync");
            // The callback is openraft's "flushed": it runs on the flush thread after the fsync.
            wal.flush(true, Some(Flushed::Log(callback)))
        })
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        // The WAL truncates *at* an index: everything after `last_log_id` goes.
        let at = last_log_id.map_or(0, |id| id.index + 1);
        let last = self.last_log_id()?.map(|id| id.index);
        if last.is_none_or(|last| last < at) {
            return Ok(());
        }
        self.durably("truncating", |wal| wal.truncate(at).map(|_| ())).await
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        self.durably("purging", |wal| wal.purge(Framed(log_id)).map(|_| ())).await
    }
}
