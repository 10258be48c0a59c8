//! Running a bench: dial every client, preload the keys reads need, then let each client send
//! requests back to back until the duration or the total is reached, and tally what came back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use super::progress::Progress;
use super::report::{Summary, Tally};
use super::target::Connection;
use super::workload::{Op, OpSource};
use super::Plan;

/// A client whose request failed waits this long before the next, so that a node that is down
/// is not hammered with connection attempts.
const ERROR_PAUSE: Duration = Duration::from_millis(10);
/// Attempts per key while preloading before the run is given up.
const PRELOAD_ATTEMPTS: usize = 3;

/// Runs the plan to its end and sums up what the clients saw.
pub async fn bench(plan: Arc<Plan>) -> anyhow::Result<Summary> {
    let mut connections = connect_all(&plan).await?;
    if plan.preload {
        connections = preload(&plan, connections).await?;
    }
    let lease_load = match &plan.leases {
        Some(load) => Some(load.start(&plan.client).await?),
        None => None,
    };
    let counters = Arc::new(Counters::new(&plan));
    let progress = Progress::run(plan.duration, plan.total, counters.done_handle());
    let started = Instant::now();
    let clients: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(client, connection)| tokio::spawn(drive(plan.clone(), client, connection, counters.clone())))
        .collect();
    let mut tally = Tally::default();
    for client in clients {
        tally.merge(client.await.context("a bench client failed")?);
    }
    let elapsed = started.elapsed();
    progress.finish();
    let mut summary = Summary::new(plan.setup.clone(), tally, elapsed);
    if let Some(running) = lease_load {
        summary.leases = Some(running.stop().await);
    }
    Ok(summary)
}

/// One connection per client, client `i` to endpoint `i % endpoints`, all dialled at once.
async fn connect_all(plan: &Plan) -> anyhow::Result<Vec<Connection>> {
    let opening = (0..plan.setup.clients).map(|client| {
        let endpoint = &plan.endpoints[client % plan.endpoints.len()];
        // The messages name the address that failed.
        async move { Connection::open(endpoint, &plan.client, plan.timeout).await.map_err(|message| anyhow!(message)) }
    });
    futures::future::try_join_all(opening).await
}

/// Writes keys `0..keys` (not measured), spread over the clients; hands the connections back.
async fn preload(plan: &Arc<Plan>, connections: Vec<Connection>) -> anyhow::Result<Vec<Connection>> {
    let written = Arc::new(AtomicU64::new(0));
    let progress = Progress::preloading(plan.mix.keys, written.clone());
    let clients = connections.len() as u64;
    let writers: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(client, mut connection)| {
            let (plan, written) = (plan.clone(), written.clone());
            tokio::spawn(async move {
                for index in (client as u64..plan.mix.keys).step_by(clients as usize) {
                    put_with_retries(&plan, &mut connection, index).await?;
                    written.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, anyhow::Error>(connection)
            })
        })
        .collect();
    let mut preloaded = Vec::with_capacity(writers.len());
    for writer in writers {
        preloaded.push(writer.await.context("a preloading client failed")??);
    }
    progress.finish();
    Ok(preloaded)
}

async fn put_with_retries(plan: &Plan, connection: &mut Connection, index: u64) -> anyhow::Result<()> {
    let key = plan.mix.key_name(index);
    let mut last_error = String::new();
    for _ in 0..PRELOAD_ATTEMPTS {
        match request(plan, connection, Op::Put(index)).await {
            Ok(()) => return Ok(()),
            Err(message) => last_error = message,
        }
        tokio::time::sleep(ERROR_PAUSE).await;
    }
    bail!("cannot preload key {key}: {last_error}")
}

/// How far the run is, shared by the clients and the progress bar.
struct Counters {
    /// Requests started; with `--total`, a client stops when its claim is past the total.
    started: AtomicU64,
    /// Requests answered (or failed).
    done: Arc<AtomicU64>,
    deadline: Option<Instant>,
    total: Option<u64>,
}

impl Counters {
    fn new(plan: &Plan) -> Counters {
        Counters {
            started: AtomicU64::new(0),
            done: Arc::new(AtomicU64::new(0)),
            deadline: plan.duration.map(|duration| Instant::now() + duration),
            total: plan.total,
        }
    }

    fn done_handle(&self) -> Arc<AtomicU64> {
        self.done.clone()
    }

    /// Whether the caller may send one more request.
    fn claim(&self) -> bool {
        if self.deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return false;
        }
        self.total.is_none_or(|total| self.started.fetch_add(1, Ordering::Relaxed) < total)
    }
}

/// One client: requests back to back until the run is over.
async fn drive(plan: Arc<Plan>, client: usize, mut connection: Connection, counters: Arc<Counters>) -> Tally {
    let mut ops = OpSource::new(plan.mix.clone(), client, plan.setup.clients);
    let mut tally = Tally::default();
    while counters.claim() {
        let op = ops.next_op();
        let begun = Instant::now();
        let outcome = match tokio::time::timeout(plan.timeout, request(&plan, &mut connection, op)).await {
            Ok(outcome) => outcome,
            Err(_) => {
                connection.after_abandoned_request();
                Err(format!("no answer within {:?}", plan.timeout))
            }
        };
        let latency = begun.elapsed();
        counters.done.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(()) => tally.success(latency),
            Err(message) => {
                tally.error(message);
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
    tally
}

async fn request(plan: &Plan, connection: &mut Connection, op: Op) -> Result<(), String> {
    match op {
        Op::Put(index) => connection.put(plan.mix.key_name(index), &plan.value).await,
        Op::Get(index) => connection.get(plan.mix.key_name(index), plan.consistency).await,
    }
}
