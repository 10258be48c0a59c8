//! Lease load beside a bench run (`--leases N`): N leases granted before the clock starts,
//! each renewed every `--lease-keepalive-every` over `--lease-streams` keep-alive streams
//! spread over the gRPC endpoints, for as long as the run lasts; what they cost the measured
//! workload is the difference from a run without them (etcd's `benchmark lease-keepalive`
//! measures the renewals alone).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use cete_proto::kvs::{LeaseGrantRequest, LeaseKeepAliveRequest};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::cli::dial::status_error;
use crate::cli::ClientArgs;

/// Grants in flight at once while setting up.
const GRANTS_IN_FLIGHT: usize = 64;

/// What `--leases` asks for.
#[derive(Debug, Clone)]
pub struct LeaseLoad {
    pub leases: u64,
    pub every: Duration,
    pub streams: usize,
    /// gRPC endpoints; stream i goes to endpoint i mod N.
    pub endpoints: Vec<String>,
}

/// What the keep-alive streams did during the run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LeaseReport {
    pub leases: u64,
    pub keepalive_every_secs: f64,
    pub streams: usize,
    /// Renewals answered with the lease's TTL.
    pub renewals: u64,
    /// Renewals answered with TTL 0: the lease had expired, which must not happen.
    pub expired: u64,
    /// Streams that failed (each is opened again), and the first failure.
    pub stream_errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_stream_error: Option<String>,
}

impl LeaseReport {
    pub fn text(&self, elapsed_secs: f64) -> String {
        format!(
            "  leases      {} kept alive every {:.1} s over {} streams: {:.0} renewals/s, {} expired, {} stream \
             errors\n",
            self.leases,
            self.keepalive_every_secs,
            self.streams,
            self.renewals as f64 / elapsed_secs.max(f64::EPSILON),
            self.expired,
            self.stream_errors
        )
    }
}

/// Keep-alive streams at work until [`Running::stop`].
pub struct Running {
    report: LeaseReport,
    renewals: Arc<AtomicU64>,
    expired: Arc<AtomicU64>,
    stream_errors: Arc<AtomicU64>,
    first_stream_error: Arc<std::sync::OnceLock<String>>,
    stop: Arc<AtomicBool>,
    streams: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub async fn stop(self) -> LeaseReport {
        self.stop.store(true, Ordering::Relaxed);
        for stream in self.streams {
            stream.abort();
            let _ = stream.await;
        }
        LeaseReport {
            renewals: self.renewals.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
            stream_errors: self.stream_errors.load(Ordering::Relaxed),
            first_stream_error: self.first_stream_error.get().cloned(),
            ..self.report
        }
    }
}

impl LeaseLoad {
    /// Grants the leases (a TTL of three renewal periods, at least 10 s: the grants take a
    /// while, and the first must not expire before the renewals start), then starts renewing.
    pub async fn start(&self, client: &ClientArgs) -> anyhow::Result<Running> {
        if self.streams == 0 || self.every.is_zero() {
            bail!("--lease-streams and --lease-keepalive-every must be above zero");
        }
        let ttl = (self.every * 3).max(Duration::from_secs(10)).as_secs() as i64;
        let ids = self.grant_all(client, ttl).await?;
        let (renewals, expired, stream_errors) = Default::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut running = Running {
            report: LeaseReport {
                leases: self.leases,
                keepalive_every_secs: self.every.as_secs_f64(),
                streams: self.streams,
                ..LeaseReport::default()
            },
            renewals,
            expired,
            stream_errors,
            first_stream_error: Default::default(),
            stop,
            streams: Vec::new(),
        };
        for stream in 0..self.streams {
            let share: Vec<i64> = ids.iter().skip(stream).step_by(self.streams).copied().collect();
            let mut client = client.clone();
            client.grpc_address = self.endpoints[stream % self.endpoints.len()].clone();
            let renewer = Renewer {
                client,
                ids: share,
                every: self.every,
                renewals: running.renewals.clone(),
                expired: running.expired.clone(),
                stream_errors: running.stream_errors.clone(),
                first_stream_error: running.first_stream_error.clone(),
                stop: running.stop.clone(),
            };
            running.streams.push(tokio::spawn(renewer.run()));
        }
        Ok(running)
    }

    async fn grant_all(&self, client: &ClientArgs, ttl: i64) -> anyhow::Result<Vec<i64>> {
        let mut connections = Vec::new();
        for i in 0..GRANTS_IN_FLIGHT.min(self.leases as usize).max(1) {
            connections.push(client.connect_to(&self.endpoints[i % self.endpoints.len()]).await?);
        }
        let workers = connections.len() as u64;
        let granting = connections.into_iter().enumerate().map(|(worker, mut connection)| {
            let leases = self.leases;
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in (worker as u64..leases).step_by(workers as usize) {
                    let granted = connection.lease_grant(LeaseGrantRequest { ttl, id: 0 }).await;
                    ids.push(granted.map_err(status_error).context("cannot grant the bench's leases")?.into_inner().id);
                }
                Ok::<_, anyhow::Error>(ids)
            })
        });
        let mut ids = Vec::with_capacity(self.leases as usize);
        for worker in futures::future::join_all(granting).await {
            ids.extend(worker.map_err(|e| anyhow!("a granting task failed: {e}"))??);
        }
        Ok(ids)
    }
}

/// One keep-alive stream renewing its share of the leases every period.
struct Renewer {
    client: ClientArgs,
    ids: Vec<i64>,
    every: Duration,
    renewals: Arc<AtomicU64>,
    expired: Arc<AtomicU64>,
    stream_errors: Arc<AtomicU64>,
    first_stream_error: Arc<std::sync::OnceLock<String>>,
    stop: Arc<AtomicBool>,
}

impl Renewer {
    async fn run(self) {
        while !self.stop.load(Ordering::Relaxed) {
            if let Err(e) = self.renew_on_one_stream().await {
                log::debug!("a keep-alive stream failed: {e:#}");
                let _ = self.first_stream_error.set(format!("{e:#}"));
                self.stream_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    async fn renew_on_one_stream(&self) -> anyhow::Result<()> {
        let mut connection = self.client.connect().await?;
        let (asks, asked) = mpsc::channel(self.ids.len().max(1));
        let mut answers =
            connection.lease_keep_alive(ReceiverStream::new(asked)).await.map_err(status_error)?.into_inner();
        let mut tick = tokio::time::interval(self.every);
        loop {
            tick.tick().await;
            for id in &self.ids {
                asks.send(LeaseKeepAliveRequest { id: *id }).await.map_err(|_| anyhow!("the stream closed"))?;
            }
            for _ in &self.ids {
                let answer = answers.message().await.map_err(status_error)?.ok_or_else(|| anyhow!("stream ended"))?;
                let counter = if answer.ttl > 0 { &self.renewals } else { &self.expired };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
