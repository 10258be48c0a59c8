//! Starting a node's actor system: open the Raft log and the store, build openraft on top of
//! the storage adapters, and start the StoreActor, RaftActor, ClusterActor, the routing
//! wing (RouterActor and LeaderBatcher) and the lease countdowns (LeaseActor).
//!
//! Data directory layout: `raft-log/` (the Raft log and vote, a chunked write-ahead log),
//! `store.redb` (the applied state), `snapshots/`, and `removed` once the node was removed
//! from its cluster ([`crate::cluster::removal`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::cluster::removal::{RemovalRecord, Standing};
use crate::cluster::{features, ClusterActor, MembersRead};
use crate::command::{node_id, Command, Member};
use crate::connection::NodeHandles;
use crate::error::{CeteError, CeteResult};
use crate::lease::LeaseActor;
use crate::raft::log_store::LogStore;
use crate::raft::network::Network;
use crate::raft::{RaftActor, RaftObservers, RaftParts};
use crate::routing::ports::{ClusterPorts, RaftPorts};
use crate::routing::{self, LeaderBatcher, RouterActor};
use crate::store::{StoreActor, StoreRevision};
use crate::wire::identity::ClusterIdentity;
use crate::wire::tls::ClientTls;

/// What a node needs to know to start.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub me: Member,
    pub data_directory: PathBuf,
    /// Build a snapshot (and purge the log behind it) every this many applied entries.
    pub snapshot_every: u64,
    /// How long the change history is kept before the leader compacts it (zero: forever).
    pub history_retention: Duration,
    pub max_value_bytes: usize,
    /// TLS for node-to-node connections, when the node runs with a certificate.
    pub peer_tls: Option<ClientTls>,
}

/// A running node's actors, plus the arbiter the StoreActor runs on.
pub struct RunningNode {
    pub handles: NodeHandles,
    store_arbiter: Arbiter,
}

impl RunningNode {
    /// Stops Raft first (no more applies), then the store (which makes its state durable).
    pub async fn shutdown(self) {
        // A removed node's Raft was stopped when it learned it.
        let removed = self.handles.cluster.send(crate::cluster::WasRemoved).await.ok().flatten().is_some();
        // Raft's shutdown waits for its replication tasks; a peer that is down must not hold
        // the node up for long.
        if !removed {
            let raft_stopped = self.handles.raft.send(crate::raft::Shutdown);
            if tokio::time::timeout(std::time::Duration::from_secs(5), raft_stopped).await.is_err() {
                log::warn!("raft did not stop within 5 s; stopping the store anyway");
            }
        }
        self.store_arbiter.stop();
        let _ = self.store_arbiter.join();
    }
}

/// openraft's timing and snapshot policy for Cete.
fn raft_config(settings: &NodeSettings) -> CeteResult<openraft::Config> {
    let config = openraft::Config {
        cluster_name: "cete".into(),
        // As etcd: heartbeats every 100 ms, elections after 1-2 s of silence.
        heartbeat_interval: 100,
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        install_snapshot_timeout: 10_000,
        max_payload_entries: 1000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(settings.snapshot_every),
        // Keep a tail of the log so a briefly lagging follower catches up without a snapshot.
        max_in_snapshot_log_to_keep: settings.snapshot_every.min(1000),
        // A node that was cut off asks whether it could win before it raises its term, so
        // rejoining after a partition does not depose a healthy leader.
        enable_pre_vote: Some(true),
        // A restarted leader must be elected again (see `raft::read_floor`): restored in its old
        // term it would answer read indexes from a commit point its own crash may have lost.
        enable_leader_restore: Some(false),
        ..Default::default()
    };
    config.validate().map_err(|e| CeteError::InvalidArgument(format!("raft configuration: {e}")))
}

/// Opens the data directory and starts the node's actors. Must run inside the actix system.
pub async fn start_node(settings: NodeSettings) -> CeteResult<RunningNode> {
    let dir = &settings.data_directory;
    std::fs::create_dir_all(dir)
        .map_err(|e| CeteError::internal(&format!("cannot create data directory {}", dir.display()), e))?;
    if dir.join(crate::restore::UNFINISHED).exists() {
        return Err(CeteError::InvalidArgument(format!(
            "{} holds a restore that did not finish (`cete restore` was stopped half-way): remove the directory \
             and restore again",
            dir.display()
        )));
    }

    let store = StoreActor::open(&dir.join("store.redb"))?;
    let store_arbiter = Arbiter::new();
    let store = StoreActor::start_in_arbiter(&store_arbiter.handle(), move |_| store);

    let log_store = LogStore::open(&dir.join("raft-log")).map_err(|e| CeteError::internal("raft log", e))?;
    let identity = ClusterIdentity::open(dir).map_err(|e| CeteError::internal("cluster id", e))?;
    let record = RemovalRecord::in_directory(dir);
    let standing = Standing::open(&settings.me.name, record.clone())
        .map_err(|e| CeteError::internal(&format!("cannot read {}", record.path().display()), e))?;
    // The ClusterActor and the router know the RaftActor, and it tells them what happens in
    // Raft: their addresses exist before they run, so the RaftActor can be made with them first.
    let cluster_context = Context::<ClusterActor>::new();
    let cluster = cluster_context.address();
    let router_context = Context::<RouterActor>::new();
    let lease_context = Context::<LeaseActor>::new();
    let lessor = lease_context.address();
    // What goes to a leader elsewhere leaves through the ClusterActor's links.
    let batcher = LeaderBatcher::new(cluster.clone().recipient()).start();
    let parts = RaftParts {
        me: settings.me.clone(),
        id: node_id(&settings.me.name),
        config: Arc::new(raft_config(&settings)?),
        network: Network::new(settings.peer_tls.clone(), identity.clone()),
        identity: identity.clone(),
        log_store,
        store: store.clone(),
        snapshot_dir: dir.join("snapshots"),
    };
    let raft = parts.build().await?;
    let (applied, applied_index) = tokio::sync::watch::channel(0);
    let observers = RaftObservers {
        metrics: cluster.clone().recipient(),
        reset: cluster.clone().recipient(),
        appending: batcher.clone().recipient(),
        leader: router_context.address().recipient(),
        leading: lessor.clone().recipient(),
        applied,
    };
    let raft = RaftActor::new(raft, parts, observers).start();
    cluster_context.run(ClusterActor::new(
        settings.me.clone(),
        settings.peer_tls.clone(),
        identity.clone(),
        standing,
        raft.clone().recipient(),
    ));
    let router = router_context.run(RouterActor::new(
        settings.me.name.clone(),
        RaftPorts::of(&raft, applied_index).with_lessor(lessor.recipient()),
        ClusterPorts::of(&cluster),
        batcher.recipient(),
    ));
    lease_context.run(LeaseActor::new(store.clone(), router.clone().recipient()));
    start_revisions(store.clone(), cluster.clone(), router.clone());
    if !settings.history_retention.is_zero() {
        compact_history(store.clone(), cluster.clone(), router.clone(), settings.history_retention);
    }
    let handles = NodeHandles {
        me: settings.me.name.clone(),
        raft,
        router,
        store: store.clone(),
        cluster,
        max_value_bytes: settings.max_value_bytes,
        data_directory: settings.data_directory.clone(),
        identity,
    };
    Ok(RunningNode { handles, store_arbiter })
}

/// How often a node whose state has no revisions yet checks whether it may start them.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Starts revisions, once: until the store has them, whenever this node leads and every
/// member reads the entry, propose [`Command::StartRevisions`]. Two leaders may both propose
/// it; the second entry is a no-op where the first was applied.
fn start_revisions(store: Addr<StoreActor>, cluster: Addr<ClusterActor>, router: Addr<RouterActor>) {
    actix::spawn(async move {
        loop {
            match store.send(StoreRevision).await {
                Ok(Ok(Some(_))) => return,
                Ok(Ok(None)) => {}
                // The store is stopping or has failed: nothing to start.
                Ok(Err(_)) | Err(_) => return,
            }
            if cluster.send(MembersRead(features::REVISIONS)).await.unwrap_or(false) {
                match router.send(routing::Write(Command::StartRevisions)).await {
                    Ok(Ok(_)) => log::info!("revisions started"),
                    Ok(Err(e)) => log::warn!("could not start revisions yet: {e}"),
                    Err(_) => return,
                }
            }
            tokio::time::sleep(CHECK_EVERY).await;
        }
    });
}

/// How often the compactor notes the store's revision, and how often at most it proposes a
/// compaction.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
const COMPACT_EVERY: Duration = Duration::from_secs(5);

/// Keeps the change history to `retention` ([`crate::store::history`]): notes when this node
/// had applied which revision, and, while it leads, proposes [`Command::Compact`] up to the
/// newest revision it had applied `retention` ago. So a compaction point is a log entry that
/// every node applies alike, chosen by one clock, and never by a follower's. A node that has
/// just become leader has only its own notes (taken while it followed, of revisions it had
/// applied, so committed at least that long ago): it never compacts earlier than the old leader
/// would have. Proposed only once every member reads the entry.
fn compact_history(
    store: Addr<StoreActor>,
    cluster: Addr<ClusterActor>,
    router: Addr<RouterActor>,
    retention: Duration,
) {
    actix::spawn(async move {
        let mut notes: std::collections::VecDeque<(std::time::Instant, u64)> = Default::default();
        let mut last_proposal = std::time::Instant::now();
        let mut proposed = 0;
        loop {
            tokio::time::sleep(SAMPLE_EVERY).await;
            let revision = match store.send(StoreRevision).await {
                Ok(Ok(Some(revision))) => revision,
                Ok(Ok(None)) => continue,
                Ok(Err(_)) | Err(_) => return,
            };
            let now = std::time::Instant::now();
            if notes.back().is_none_or(|(_, noted)| *noted != revision) {
                notes.push_back((now, revision));
            }
            // The newest revision applied `retention` ago: everything up to it is older.
            let old_enough = |note: Option<&(std::time::Instant, u64)>| {
                note.is_some_and(|(at, _)| now.duration_since(*at) >= retention)
            };
            while old_enough(notes.get(1)) {
                notes.pop_front();
            }
            let due = notes.front().filter(|note| old_enough(Some(note))).map(|(_, revision)| *revision);
            let Some(floor) = due.map(|due| due + 1).filter(|floor| *floor > proposed) else { continue };
            if now.duration_since(last_proposal) < COMPACT_EVERY {
                continue;
            }
            last_proposal = now;
            if !cluster.send(MembersRead(features::HISTORY)).await.unwrap_or(false) {
                continue;
            }
            match router.send(routing::Write(Command::Compact { revision: floor })).await {
                Ok(Ok(_)) => {
                    log::debug!("compacted the change history below revision {floor}");
                    proposed = floor;
                }
                Ok(Err(e)) => log::warn!("could not compact the change history: {e}"),
                Err(_) => return,
            }
        }
    });
}
