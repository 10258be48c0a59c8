//! `cete lease grant TTL | revoke ID | keepalive ID | get ID | list`: leases, as `etcdctl
//! lease` has them. Answers print as JSON; `keepalive` prints a line per renewal and runs until
//! interrupted, or exits 1 once the lease is gone.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use cete_proto::kvs::{self, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::dial::status_error;
use super::{emit, emit_json, ClientArgs};

#[derive(Debug, clap::Args)]
pub struct LeaseArgs {
    #[command(subcommand)]
    pub command: LeaseCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum LeaseCommand {
    /// Grant a lease of TTL seconds and print its id
    Grant(GrantArgs),
    /// Revoke a lease: it and every key attached to it are deleted
    Revoke(IdArgs),
    /// Keep a lease alive until interrupted, printing each renewal; exits 1 once it is gone
    Keepalive(IdArgs),
    /// Print a lease's TTL, what it has left, and its keys
    Get(IdArgs),
    /// List the leases with their TTLs and what they have left
    List(ClientArgs),
}

#[derive(Debug, clap::Args)]
pub struct GrantArgs {
    /// Seconds the lease lives unless kept alive (at least 2)
    pub ttl: i64,
    /// Grant it under this id [default: a random one]
    #[arg(long)]
    pub id: Option<i64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Args)]
pub struct IdArgs {
    /// The lease's id
    pub id: i64,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: LeaseArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LeaseCommand::Grant(args) => {
            let mut client = args.client.connect().await?;
            let request = LeaseGrantRequest { ttl: args.ttl, id: args.id.unwrap_or(0) };
            let granted = client.lease_grant(request).await.map_err(status_error)?.into_inner();
            emit_json(&serde_json::json!({ "id": granted.id.to_string(), "ttl": granted.ttl }))?;
        }
        LeaseCommand::Revoke(args) => {
            let mut client = args.client.connect().await?;
            let revoked = client.lease_revoke(LeaseRevokeRequest { id: args.id }).await.map_err(status_error)?;
            emit_json(&serde_json::json!({ "revision": revoked.into_inner().revision }))?;
        }
        LeaseCommand::Get(args) => {
            let mut client = args.client.connect().await?;
            let request = LeaseTimeToLiveRequest { id: args.id };
            let lease = client.lease_time_to_live(request).await.map_err(status_error)?.into_inner();
            let mut json = status_json(&lease);
            json["keys"] = lease.keys.into();
            emit_json(&json)?;
        }
        LeaseCommand::List(args) => {
            let mut client = args.connect().await?;
            let leases = client.lease_list(()).await.map_err(status_error)?.into_inner().leases;
            emit_json(&serde_json::json!({ "leases": leases.iter().map(status_json).collect::<Vec<_>>() }))?;
        }
        LeaseCommand::Keepalive(args) => {
            let interrupted = tokio::signal::ctrl_c();
            let printed = |renewal: &kvs::LeaseKeepAliveResponse| {
                let line = serde_json::json!({ "id": renewal.id.to_string(), "ttl": renewal.ttl }).to_string() + "\n";
                emit(line.as_bytes()).map(|_| ())
            };
            tokio::select! {
                lost = keep_alive(&args.client, args.id, printed) => lost?,
                _ = interrupted => {}
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn status_json(lease: &kvs::LeaseStatus) -> serde_json::Value {
    serde_json::json!({ "id": lease.id.to_string(), "ttl": lease.ttl, "remaining": lease.remaining })
}

/// Keeps lease `id` alive, renewing it a third of its TTL after each renewal (as etcd's
/// clients do), calling `renewed` after each. Returns only with the error that ended it: the
/// lease is gone, or no node answered for a whole TTL (then it has surely expired). A stream
/// that breaks is opened again, so a node restarting or a leader changing is ridden out.
pub async fn keep_alive(
    client: &ClientArgs,
    id: i64,
    mut renewed: impl FnMut(&kvs::LeaseKeepAliveResponse) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut ttl: Option<Duration> = None;
    let mut last_renewed = Instant::now();
    loop {
        let why = match renew_on_one_stream(client, id, &mut ttl, &mut last_renewed, &mut renewed).await {
            Err(Lost::Gone(e)) => return Err(e),
            Err(Lost::Broken(e)) => e,
            Ok(never) => match never {},
        };
        // Until its TTL has passed since the last renewal, the lease may still be alive.
        let ttl = ttl.unwrap_or(Duration::from_secs(2));
        if last_renewed.elapsed() >= ttl {
            return Err(anyhow!("lease {id} was not renewed for its whole TTL ({}s): {why:#}", ttl.as_secs()));
        }
        log::warn!("renewing lease {id} failed ({why:#}); trying again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

enum Lost {
    /// The lease has expired or was revoked.
    Gone(anyhow::Error),
    /// The node or the stream failed; the lease may live on.
    Broken(anyhow::Error),
}

async fn renew_on_one_stream(
    client: &ClientArgs,
    id: i64,
    ttl: &mut Option<Duration>,
    last_renewed: &mut Instant,
    renewed: &mut impl FnMut(&kvs::LeaseKeepAliveResponse) -> anyhow::Result<()>,
) -> Result<std::convert::Infallible, Lost> {
    let mut connection = client.connect().await.map_err(Lost::Broken)?;
    let (asks, asked) = mpsc::channel(4);
    let mut stream = connection
        .lease_keep_alive(ReceiverStream::new(asked))
        .await
        .map_err(|s| Lost::Broken(status_error(s)))?
        .into_inner();
    loop {
        asks.send(LeaseKeepAliveRequest { id }).await.map_err(|_| Lost::Broken(anyhow!("the stream closed")))?;
        // A node that takes the renewal and never answers must not hold the lease's holder up
        // past the point where the lease may have expired.
        let within = ttl.unwrap_or(Duration::from_secs(2));
        let answer = tokio::time::timeout(within, stream.message())
            .await
            .map_err(|_| Lost::Broken(anyhow!("no answer to a renewal within {}s", within.as_secs())))?
            .map_err(|s| Lost::Broken(status_error(s)))?;
        let answer = answer.ok_or_else(|| Lost::Broken(anyhow!("the node ended the stream")))?;
        if answer.ttl <= 0 {
            return Err(Lost::Gone(anyhow!("lease {id} has expired or was revoked")));
        }
        *last_renewed = Instant::now();
        let granted = Duration::from_secs(answer.ttl as u64);
        *ttl = Some(granted);
        renewed(&answer).map_err(Lost::Gone)?;
        tokio::time::sleep(granted / 3).await;
    }
}
