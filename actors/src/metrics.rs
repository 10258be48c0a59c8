//! Prometheus metrics of the node: counters and histograms updated where things happen,
//! gauges filled from Raft's and the store's state when scraped.

use std::sync::LazyLock;

use openraft::ServerState;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::command::RaftMetrics;
use crate::store::StoreStats;

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn register<T: prometheus::core::Collector + Clone + 'static>(metric: T) -> T {
    // Registration only fails for a duplicate name, which is a programming error caught by tests.
    if let Err(e) = REGISTRY.register(Box::new(metric.clone())) {
        log::error!("metric registration failed: {e}");
    }
    metric
}

/// Requests by front door (`http`, `grpc`), endpoint and outcome.
pub static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new("cete_requests_total", "Client requests by front door, endpoint and status"),
            &["door", "endpoint", "status"],
        )
        .expect("valid metric"),
    )
});

/// Request latency by front door and endpoint.
pub static LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new("cete_request_duration_seconds", "Client request latency")
                .buckets(prometheus::exponential_buckets(0.0001, 2.0, 18).expect("valid buckets")),
            &["door", "endpoint"],
        )
        .expect("valid metric"),
    )
});

/// Client requests being served, by front door (peer links count under `grpc`).
pub static IN_FLIGHT: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new("cete_client_requests_in_flight", "Requests being served, by front door"),
            &["door"],
        )
        .expect("valid metric"),
    )
});

/// Snapshot build durations; its count is the number of snapshots taken.
pub static SNAPSHOTS: LazyLock<Histogram> = LazyLock::new(|| {
    register(
        Histogram::with_opts(
            HistogramOpts::new("cete_snapshot_duration_seconds", "Time to build a snapshot")
                .buckets(prometheus::exponential_buckets(0.001, 2.0, 16).expect("valid buckets")),
        )
        .expect("valid metric"),
    )
});

pub static LEADER_CHANGES: LazyLock<IntCounter> = LazyLock::new(|| {
    register(IntCounter::new("cete_raft_leader_changes_total", "Leader changes seen by this node").expect("valid"))
});

pub static LEASE_EXPIRIES: LazyLock<IntCounter> = LazyLock::new(|| {
    register(
        IntCounter::new("cete_lease_expiries_total", "Leases this node revoked as their leader because they ran out")
            .expect("valid"),
    )
});

fn gauge(name: &str, help: &str) -> IntGauge {
    register(IntGauge::new(name, help).expect("valid metric"))
}

static TERM: LazyLock<IntGauge> = LazyLock::new(|| gauge("cete_raft_term", "Current Raft term"));
static IS_LEADER: LazyLock<IntGauge> = LazyLock::new(|| gauge("cete_raft_is_leader", "1 when this node is the leader"));
static HAS_LEADER: LazyLock<IntGauge> = LazyLock::new(|| gauge("cete_raft_has_leader", "1 when a leader is known"));
static LAST_LOG: LazyLock<IntGauge> = LazyLock::new(|| gauge("cete_raft_last_log_index", "Last log index"));
static COMMITTED: LazyLock<IntGauge> = LazyLock::new(|| gauge("cete_raft_committed_index", "Last committed index"));
static APPLIED: LazyLock<IntGauge> = LazyLock::new(|| gauge("cete_raft_applied_index", "Last applied index"));
static SNAPSHOT_INDEX: LazyLock<IntGauge> = LazyLock::new(|| gauge("cete_raft_snapshot_index", "Last snapshot index"));
static MEMBERS: LazyLock<IntGauge> = LazyLock::new(|| gauge("cete_cluster_members", "Members of the cluster"));
static KEYS: LazyLock<IntGauge> = LazyLock::new(|| gauge("cete_store_keys", "Keys in the store"));
static SESSIONS: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("cete_store_sessions", "Client sessions the store keeps for exactly-once writes"));
static SESSION_SEQUENCES: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge("cete_store_session_sequences", "Applied write sequences the sessions keep (about those in flight)")
});
static REVISION: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("cete_store_revision", "The store's revision (0 until revisions have started)"));
static HISTORY_CHANGES: LazyLock<IntGauge> =
    LazyLock::new(|| gauge("cete_history_changes", "Changes the watch history holds, below its floor or not"));
static HISTORY_FLOOR: LazyLock<IntGauge> = LazyLock::new(|| {
    gauge("cete_history_compact_revision", "The oldest revision a watch can start from (0: no history yet)")
});
static LEASES: LazyLock<IntGauge> = LazyLock::new(|| gauge("cete_leases", "Leases granted and not yet gone"));
static WATCHERS: LazyLock<IntGauge> = LazyLock::new(|| gauge("cete_watch_subscribers", "Open watch streams"));

/// Fills the gauges from the current state and renders the text exposition format.
pub fn render(raft: &RaftMetrics, store: StoreStats, watchers: usize) -> String {
    // Touch the lazily registered series so they appear even before first use.
    LazyLock::force(&REQUESTS);
    LazyLock::force(&LATENCY);
    LazyLock::force(&SNAPSHOTS);
    LazyLock::force(&LEADER_CHANGES);
    LazyLock::force(&LEASE_EXPIRIES);
    for door in ["http", "grpc"] {
        IN_FLIGHT.with_label_values(&[door]);
    }
    TERM.set(raft.current_term as i64);
    IS_LEADER.set(i64::from(raft.state == ServerState::Leader));
    HAS_LEADER.set(i64::from(raft.current_leader.is_some()));
    LAST_LOG.set(raft.last_log_index.map_or(0, |i| i as i64));
    APPLIED.set(raft.last_applied.map_or(0, |l| l.index as i64));
    // This node's commit index, as etcd's: the last entry it knows committed *and holds* (a
    // follower's is bounded by its own log), what it may apply. `cluster_committed` would be
    // the leader's word, which a follower can know before it has the entries.
    COMMITTED.set(raft.local_committed.map_or(0, |l| l.index as i64));
    SNAPSHOT_INDEX.set(raft.snapshot.map_or(0, |l| l.index as i64));
    MEMBERS.set(raft.membership_config.nodes().count() as i64);
    KEYS.set(store.keys as i64);
    REVISION.set(store.revision as i64);
    HISTORY_CHANGES.set(store.history_changes as i64);
    HISTORY_FLOOR.set(store.history_floor as i64);
    SESSIONS.set(store.sessions as i64);
    SESSION_SEQUENCES.set(store.session_sequences as i64);
    WATCHERS.set(watchers as i64);
    LEASES.set(store.leases as i64);
    let mut out = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&REGISTRY.gather(), &mut out) {
        log::error!("metrics encoding failed: {e}");
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";
