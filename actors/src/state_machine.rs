//! openraft's state machine, as an adapter: every call becomes a message to the StoreActor,
//! which owns the data. Snapshots are files under `<data>/snapshots/`, written from a redb
//! read view on a blocking thread (applies go on meanwhile) and streamed from disk.
//!
//! `current.meta` names the current data file (see [`crate::snapshot_file`]) and its Raft
//! metadata; it is replaced by rename, so a crash leaves either the old snapshot or the new one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use actix::Addr;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{AnyError, OptionalSend, StorageIOError};
use serde::{Deserialize, Serialize};

use crate::command::{
    decode, encode, CommandResponse, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::snapshot_file;
use crate::store::{AppliedState, ApplyEntries, OpenSnapshotView, ReplaceState, StoreActor};

const CURRENT_META: &str = "current.meta";

/// What `current.meta` records.
#[derive(Serialize, Deserialize)]
struct CurrentSnapshot {
    meta: SnapshotMeta,
    data_file: String,
}

fn sm_err(e: impl std::fmt::Display) -> StorageError {
    StorageError::from(StorageIOError::write_state_machine(AnyError::error(e.to_string())))
}

fn snap_err(e: impl std::fmt::Display) -> StorageError {
    StorageError::from(StorageIOError::write_snapshot(None, AnyError::error(e.to_string())))
}

/// The state machine openraft drives.
pub struct StateMachine {
    store: Addr<StoreActor>,
    dir: PathBuf,
    /// The file a snapshot from the leader is being received into.
    receiving: Option<PathBuf>,
}

impl StateMachine {
    pub fn new(store: Addr<StoreActor>, dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(StateMachine { store, dir, receiving: None })
    }
}

/// Builds a snapshot from a consistent view of the store.
pub struct SnapshotBuilder {
    store: Addr<StoreActor>,
    dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let started = std::time::Instant::now();
        let view = self.store.send(OpenSnapshotView).await.map_err(snap_err)?.map_err(snap_err)?;
        let meta = SnapshotMeta {
            last_log_id: view.last_applied,
            last_membership: view.last_membership.clone(),
            snapshot_id: snapshot_id(view.last_applied),
        };
        let dir = self.dir.clone();
        let data_file = format!("snapshot-{}.data", meta.snapshot_id);
        let path = dir.join(&data_file);
        let keys = tokio::task::spawn_blocking(move || snapshot_file::write(&path, view))
            .await
            .map_err(snap_err)?
            .map_err(snap_err)?;
        let current = CurrentSnapshot { meta: meta.clone(), data_file: data_file.clone() };
        tokio::task::spawn_blocking(move || set_current(&dir, &current)).await.map_err(snap_err)?.map_err(snap_err)?;
        log::info!(
            "snapshot {} built: {keys} keys up to {:?} in {:?}",
            meta.snapshot_id,
            meta.last_log_id,
            started.elapsed()
        );
        crate::metrics::SNAPSHOTS.observe(started.elapsed().as_secs_f64());
        let file = tokio::fs::File::open(self.dir.join(&data_file)).await.map_err(snap_err)?;
        Ok(Snapshot { meta, snapshot: Box::new(file) })
    }
}

fn snapshot_id(last: Option<LogId>) -> String {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    match last {
        Some(id) => format!("{}-{}-{millis}", id.leader_id.term, id.index),
        None => format!("0-0-{millis}"),
    }
}

/// Makes `current` the current snapshot (atomic rename), then removes older data files.
fn set_current(dir: &Path, current: &CurrentSnapshot) -> std::io::Result<()> {
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

/// Makes the snapshot openraft hands over the data file at `path`: the file it was received
/// into is renamed there; any other handle (openraft may hand over another file) is copied.
async fn keep_snapshot(mut snapshot: tokio::fs::File, received: Option<&Path>, path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    use tokio::io::AsyncSeekExt;

    let handed = snapshot.metadata().await?;
    let is_received = match received {
        Some(received) => {
            tokio::fs::metadata(received).await.is_ok_and(|m| m.dev() == handed.dev() && m.ino() == handed.ino())
        }
        None => false,
    };
    if let (true, Some(received)) = (is_received, received) {
        snapshot.sync_all().await?;
        drop(snapshot);
        return tokio::fs::rename(received, path).await;
    }
    snapshot.seek(std::io::SeekFrom::Start(0)).await?;
    let mut copy = tokio::fs::File::create(path).await?;
    tokio::io::copy(&mut snapshot, &mut copy).await?;
    copy.sync_all().await?;
    if let Some(received) = received {
        let _ = tokio::fs::remove_file(received).await;
    }
    Ok(())
}

/// Removes every snapshot file (a node giving up its state to join another cluster).
pub fn remove_snapshots(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        std::fs::remove_file(entry?.path())?;
    }
    Ok(())
}

fn read_current(dir: &Path) -> std::io::Result<Option<CurrentSnapshot>> {
    match std::fs::read(dir.join(CURRENT_META)) {
        Ok(bytes) => decode(&bytes).map(Some).map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.store.send(AppliedState).await.map_err(sm_err)?.map_err(sm_err)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        self.store.send(ApplyEntries(entries)).await.map_err(sm_err)?.map_err(sm_err)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { store: self.store.clone(), dir: self.dir.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let path = self.dir.join(format!("receiving-{millis}.data"));
        let file = tokio::fs::File::create(&path).await.map_err(snap_err)?;
        self.receiving = Some(path);
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let data_file = format!("snapshot-{}.data", meta.snapshot_id);
        let path = self.dir.join(&data_file);
        let received = self.receiving.take();
        keep_snapshot(*snapshot, received.as_deref(), &path).await.map_err(snap_err)?;
        // The store streams the pairs from the file: a large snapshot is never held whole.
        let replace = ReplaceState {
            source: Some(path),
            last_applied: meta.last_log_id,
            last_membership: meta.last_membership.clone(),
        };
        let keys = self.store.send(replace).await.map_err(snap_err)?.map_err(snap_err)?;
        let current = CurrentSnapshot { meta: meta.clone(), data_file };
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || set_current(&dir, &current)).await.map_err(snap_err)?.map_err(snap_err)?;
        log::info!("installed snapshot {} ({keys} keys) up to {:?}", meta.snapshot_id, meta.last_log_id);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(current) = read_current(&self.dir).map_err(snap_err)? else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(self.dir.join(&current.data_file)).await.map_err(snap_err)?;
        Ok(Some(Snapshot { meta: current.meta, snapshot: Box::new(file) }))
    }
}
