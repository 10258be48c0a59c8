//! `cete restore`: a new data directory from a backup, offline, as `etcdctl snapshot restore`
//! builds one. The node started on it forms a new one-node cluster that holds exactly the
//! backup's state; others join it as usual.
//!
//! What is written is what a node would hold had it initialized a cluster of itself, applied
//! the backup, taken a snapshot and purged its log: the store holds the backup's keys,
//! revisions and leases with the genesis entry (index 0, term 0, led by this node) applied and
//! a membership of this node alone; `snapshots/` holds a snapshot of exactly that; and the Raft
//! log is empty, purged up to the genesis entry; and `cluster-id` holds a new cluster id
//! ([`crate::wire::identity`]). So a node that joins is sent the snapshot (the
//! log it would need is gone), never a log that starts from nothing and misses the data. The
//! restored cluster starts its own log and terms from the beginning: it shares no entry with
//! the cluster the backup came from.
//!
//! The backup's client sessions are left out: they count entries of the old cluster's log, and
//! the writes they guard against repeating were sent to that cluster. The change history
//! starts at the backup's revision (a watch from an earlier revision is told it was
//! compacted), as after any snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use actix::{Actor, Addr, Arbiter};
use openraft::storage::{RaftLogStorage, RaftSnapshotBuilder, RaftStateMachine};
use openraft::vote::RaftLeaderId;
use openraft::Membership;

use crate::command::{node_id, LeaderId, LogId, Member, StoredMembership};
use crate::error::{CeteError, CeteResult};
use crate::raft::log_store::LogStore;
use crate::raft::state_machine::StateMachine;
use crate::store::{snapshot_file, ForgetSessions, ReplaceState, StoreActor};
use crate::wire::identity::ClusterIdentity;

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    /// The backup's revision (None for a backup of a store without revisions).
    pub revision: Option<u64>,
    pub keys: u64,
    pub data_directory: PathBuf,
}

/// Builds `dir` from `backup` for the node `me`. The backup is checked whole (every frame and
/// its checksum) before anything is written, and `dir` must be empty or absent: a restore
/// never writes over a node's data. Runs inside an actix system (it starts a StoreActor).
pub async fn restore(backup: &Path, dir: &Path, me: Member) -> CeteResult<Restored> {
    let (revision, _) = snapshot_file::verify(backup).map_err(|e| {
        CeteError::InvalidArgument(format!(
            "{} is not a whole Cete backup ({e}); nothing was written",
            backup.display()
        ))
    })?;
    let created = prepare(dir)?;
    // Until the last step, the directory says it is unfinished: a restore killed half-way
    // leaves a directory that `cete start` refuses, never a node with part of the data.
    let unfinished = dir.join(UNFINISHED);
    let built = async {
        std::fs::write(&unfinished, b"cete restore did not finish\n")
            .and_then(|()| std::fs::File::open(dir)?.sync_all())
            .map_err(|e| CeteError::InvalidArgument(format!("cannot write in {}: {e}", dir.display())))?;
        let keys = build(backup, dir, me).await?;
        std::fs::remove_file(&unfinished)
            .and_then(|()| std::fs::File::open(dir)?.sync_all())
            .map_err(|e| CeteError::internal("restore: finishing", e))?;
        Ok(keys)
    };
    match built.await {
        Ok(keys) => Ok(Restored { revision, keys, data_directory: dir.to_path_buf() }),
        Err(e) => {
            // Leave nothing half-built behind: a node started on it would be a new cluster
            // holding part of the data.
            let cleaned = match created {
                true => std::fs::remove_dir_all(dir),
                false => empty(dir),
            };
            match cleaned {
                Ok(()) => Err(e),
                Err(c) => Err(CeteError::Internal(format!("{e}; and {} could not be emptied: {c}", dir.display()))),
            }
        }
    }
}

/// A file in a data directory that a restore is still building (or that one left unfinished).
pub const UNFINISHED: &str = "restore-unfinished";

/// Makes sure `dir` exists and is empty; answers whether it was created.
fn prepare(dir: &Path) -> CeteResult<bool> {
    let cannot = |e: std::io::Error| CeteError::InvalidArgument(format!("cannot use {}: {e}", dir.display()));
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(false),
            Some(_) => Err(CeteError::InvalidArgument(format!(
                "{} is not empty: a restore builds a new data directory and never writes over one (move it away, \
                 or name another)",
                dir.display()
            ))),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map(|()| true).map_err(cannot)
        }
        Err(e) => Err(cannot(e)),
    }
}

fn empty(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        match path.is_dir() {
            true => std::fs::remove_dir_all(&path)?,
            false => std::fs::remove_file(&path)?,
        }
    }
    Ok(())
}

/// The entry `initialize` would write first: index 0, term 0, this node's.
fn genesis(me: &Member) -> LogId {
    LogId::new(LeaderId::new(0, node_id(&me.name)).to_committed(), 0)
}

async fn build(backup: &Path, dir: &Path, me: Member) -> CeteResult<u64> {
    let store = StoreActor::open(&dir.join("store.redb"))?;
    let arbiter = Arbiter::new();
    let store = StoreActor::start_in_arbiter(&arbiter.handle(), move |_| store);
    let built = fill(store, backup, dir, me).await;
    // Every write above was durable at once; stopping closes the database.
    arbiter.stop();
    let _ = arbiter.join();
    built
}

async fn fill(store: Addr<StoreActor>, backup: &Path, dir: &Path, me: Member) -> CeteResult<u64> {
    let fail = |what: &str, e: &dyn std::fmt::Display| CeteError::Internal(format!("restore: {what}: {e}"));
    let genesis = genesis(&me);
    let id = node_id(&me.name);
    let membership =
        Membership::new(vec![BTreeSet::from([id])], BTreeMap::from([(id, me)])).map_err(|e| fail("membership", &e))?;
    let replace = ReplaceState {
        source: Some(backup.to_path_buf()),
        last_applied: Some(genesis),
        last_membership: StoredMembership::new(Some(genesis), membership),
    };
    let keys = store.send(replace).await.map_err(|e| fail("store", &e))??;
    store.send(ForgetSessions).await.map_err(|e| fail("store", &e))??;
    // The snapshot a joiner is sent, of exactly this state (sessions left out).
    let mut machine = StateMachine::new(store, dir.join("snapshots")).map_err(|e| fail("snapshots", &e))?;
    machine.get_snapshot_builder().await.build_snapshot().await.map_err(|e| fail("snapshot", &e))?;
    let mut log = LogStore::open(&dir.join("raft-log")).map_err(|e| fail("raft log", &e))?;
    log.purge(genesis).await.map_err(|e| fail("raft log", &e))?;
    // A cluster of its own: its nodes and those of the cluster the backup came from refuse
    // each other's requests.
    ClusterIdentity::open(dir).and_then(|identity| identity.create()).map_err(|e| fail("cluster id", &e))?;
    Ok(keys)
}
