//! `cete leader transfer [ID]`: move the cluster's leadership to voter ID (default: the
//! follower the leader has replicated furthest) and print the leader once it has moved, as
//! `etcdctl move-leader` does. Any node takes the request; it reaches the leader.

use std::process::ExitCode;

use cete_proto::kvs::TransferLeaderRequest;

use super::dial::status_error;
use super::{emit_json, ClientArgs};

#[derive(Debug, clap::Args)]
pub struct LeaderArgs {
    #[command(subcommand)]
    pub command: LeaderCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum LeaderCommand {
    /// Hand the leadership to another voter and wait until it has taken it over
    Transfer(TransferArgs),
}

#[derive(Debug, clap::Args)]
pub struct TransferArgs {
    /// The voter to make leader [default: the most up-to-date follower]
    pub id: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: LeaderArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LeaderCommand::Transfer(args) => transfer(args).await,
    }
}

async fn transfer(args: TransferArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.client.connect().await?;
    let request = TransferLeaderRequest { id: args.id.unwrap_or_default() };
    let leader = client.transfer_leader(request).await.map_err(status_error)?.into_inner().leader;
    emit_json(&serde_json::json!({ "leader": leader }))?;
    Ok(ExitCode::SUCCESS)
}
