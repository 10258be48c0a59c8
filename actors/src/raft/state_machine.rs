//! openraft's state machine, as an adapter: every call becomes a message to the StoreActor,
//! which owns the data. Snapshots are files under `<data>/snapshots/`, written from a redb
//! read view on a blocking thread (applies go on meanwhile) and streamed from disk.
//!
//! `current.meta` names the current data file (see [`crate::store::snapshot_file`]) and its Raft
//! metadata; it is replaced by rename, so a crash leaves either the old snapshot or the new one.
//! openraft 0.10's `SnapshotMeta` has no `snapshot_id`: the data file's name is the snapshot's
//! name (`snapshot-<term>-<index>-<millis>.data`, as before), and a `current.meta` written by
//! the 0.9 build, which still carries an id, reads as it is (openraft decodes and drops it).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use actix::Addr;
use futures::{Stream, StreamExt};
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine};
use openraft::OptionalSend;
use serde::{Deserialize, Serialize};
use tokio::fs::File;

use crate::command::{decode, encode, LogId, SnapshotMeta, StoredMembership, TypeConfig};
use crate::store::snapshot_file;
use crate::store::{AppliedState, ApplyEntries, OpenSnapshotView, ReplaceState, StoreActor};

/// A snapshot as openraft hands it around: its metadata and its open data file.
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, File>;

const CURRENT_META: &str = "current.meta";

/// What `current.meta` records.
#[derive(Serialize, Deserialize)]
struct CurrentSnapshot {
    meta: SnapshotMeta,
    data_file: String,
}

fn sm_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("state machine: {e}"))
}

fn snap_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("snapshot: {e}"))
}

/// The state machine openraft drives.
pub struct StateMachine {
    store: Addr<StoreActor>,
    dir: PathBuf,
}

impl StateMachine {
    pub fn new(store: Addr<StoreActor>, dir: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(StateMachine { store, dir })
    }
}

/// Builds a snapshot from a consistent view of the store.
pub struct SnapshotBuilder {
    store: Addr<StoreActor>,
    dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = File;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let started = std::time::Instant::now();
        let view = self.store.send(OpenSnapshotView).await.map_err(snap_err)?.map_err(snap_err)?;
        let meta = SnapshotMeta { last_log_id: view.last_applied, last_membership: view.last_membership.clone() };
        let dir = self.dir.clone();
        let data_file = data_file_name(meta.last_log_id);
        let path = dir.join(&data_file);
        let keys = tokio::task::spawn_blocking(move || snapshot_file::write(&path, view))
            .await
            .map_err(snap_err)?
            .map_err(snap_err)?;
        let current = CurrentSnapshot { meta: meta.clone(), data_file: data_file.clone() };
        tokio::task::spawn_blocking(move || set_current(&dir, &current)).await.map_err(snap_err)??;
        log::info!("snapshot {data_file} built: {keys} keys up to {:?} in {:?}", meta.last_log_id, started.elapsed());
        crate::metrics::SNAPSHOTS.observe(started.elapsed().as_secs_f64());
        let file = File::open(self.dir.join(&data_file)).await.map_err(snap_err)?;
        Ok(Snapshot { meta, snapshot: file })
    }
}

/// A fresh data file name for a snapshot up to `last`: unique, and telling what it covers.
fn data_file_name(last: Option<LogId>) -> String {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    match last {
        Some(id) => format!("snapshot-{}-{}-{millis}.data", id.leader_id.term, id.index),
        None => format!("snapshot-0-0-{millis}.data"),
    }
}

/// Makes `current` the current snapshot (atomic rename), then removes older data files.
fn set_current(dir: &Path, current: &CurrentSnapshot) -> io::Result<()> {
    let tmp = dir.join("current.meta.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&encode(current).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(CURRENT_META))?;
    std::fs::File::open(dir)?.sync_all()?;
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let stale_data = name.ends_with(".data") && name != current.data_file;
        if stale_data && !name.starts_with("receiving-") {
            let _ = std::fs::remove_file(dir.join(name));
        }
    }
    Ok(())
}

/// A new file in `dir` for a snapshot being received from the leader (see
/// [`crate::raft::peer_rpc`]); once whole it is handed to openraft, which hands it back to
/// [`StateMachine::install_snapshot`], which renames it into place.
pub async fn receiving_file(dir: &Path) -> io::Result<(PathBuf, File)> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let path = dir.join(format!("{RECEIVING_PREFIX}{nanos}.data"));
    let file = File::create(&path).await?;
    Ok((path, file))
}

const RECEIVING_PREFIX: &str = "receiving-";

/// The name, in `dir`, of the file `handed` is open on, if it is one of `dir`'s.
async fn name_in(dir: &Path, handed: &File) -> io::Result<Option<String>> {
    use std::os::unix::fs::MetadataExt;
    let handed = handed.metadata().await?;
    let mut entries = tokio::fs::read_dir(dir).await?;
    while let Some(entry) = entries.next_entry().await? {
        let Ok(meta) = entry.metadata().await else { continue };
        if meta.dev() == handed.dev() && meta.ino() == handed.ino() {
            return Ok(Some(entry.file_name().to_string_lossy().into_owned()));
        }
    }
    Ok(None)
}

/// Makes the snapshot openraft hands over a data file of `dir` and answers its name: the
/// current snapshot's own file stays as it is (openraft hands it back at start-up, to restore a
/// store that is behind it: copying it onto itself would truncate it), a file it was received
/// into is renamed into place, and any other handle is copied.
async fn keep_snapshot(mut snapshot: File, dir: &Path, last: Option<LogId>) -> io::Result<String> {
    use tokio::io::AsyncSeekExt;

    let existing = name_in(dir, &snapshot).await?;
    match existing {
        Some(name) if !name.starts_with(RECEIVING_PREFIX) => Ok(name),
        Some(received) => {
            let name = data_file_name(last);
            snapshot.sync_all().await?;
            drop(snapshot);
            tokio::fs::rename(dir.join(received), dir.join(&name)).await?;
            Ok(name)
        }
        None => {
            let name = data_file_name(last);
            snapshot.seek(io::SeekFrom::Start(0)).await?;
            let mut copy = File::create(dir.join(&name)).await?;
            tokio::io::copy(&mut snapshot, &mut copy).await?;
            copy.sync_all().await?;
            Ok(name)
        }
    }
}

/// Removes every snapshot file (a node giving up its state to join another cluster).
pub fn remove_snapshots(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        std::fs::remove_file(entry?.path())?;
    }
    Ok(())
}

fn read_current(dir: &Path) -> io::Result<Option<CurrentSnapshot>> {
    match std::fs::read(dir.join(CURRENT_META)) {
        Ok(bytes) => {
            decode(&bytes).map(Some).map_err(|e| snap_err(format!("{}: {e}", dir.join(CURRENT_META).display())))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = File;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        self.store.send(AppliedState).await.map_err(sm_err)?.map_err(sm_err)
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        let batch: Vec<EntryResponder<TypeConfig>> =
            entries.collect::<Vec<_>>().await.into_iter().collect::<Result<_, _>>()?;
        let (entries, responders): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let count = entries.len();
        let responses = self.store.send(ApplyEntries(entries)).await.map_err(sm_err)?.map_err(sm_err)?;
        if responses.len() != count {
            return Err(sm_err(format!("{count} entries applied, {} responses", responses.len())));
        }
        // Every waiting client_write gets its entry's response (a follower's entries have none).
        for (responder, response) in responders.into_iter().zip(responses) {
            if let Some(responder) = responder {
                responder.send(response);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { store: self.store.clone(), dir: self.dir.clone() }
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta, snapshot: File) -> io::Result<()> {
        let data_file = keep_snapshot(snapshot, &self.dir, meta.last_log_id).await.map_err(snap_err)?;
        // The store streams the pairs from the file: a large snapshot is never held whole.
        let replace = ReplaceState {
            source: Some(self.dir.join(&data_file)),
            last_applied: meta.last_log_id,
            last_membership: meta.last_membership.clone(),
        };
        let keys = self.store.send(replace).await.map_err(snap_err)?.map_err(snap_err)?;
        let current = CurrentSnapshot { meta: meta.clone(), data_file: data_file.clone() };
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || set_current(&dir, &current)).await.map_err(snap_err)??;
        log::info!("installed snapshot {data_file} ({keys} keys) up to {:?}", meta.last_log_id);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        let Some(current) = read_current(&self.dir)? else {
            return Ok(None);
        };
        let path = self.dir.join(&current.data_file);
        let file = File::open(&path).await.map_err(|e| snap_err(format!("{}: {e}", path.display())))?;
        Ok(Some(Snapshot { meta: current.meta, snapshot: file }))
    }
}
