//! `cete leave ID`: remove node ID from the cluster that `--grpc-address` belongs to.

use std::process::ExitCode;

use cete_proto::kvs::LeaveRequest;

use super::dial::status_error;
use super::ClientArgs;

#[derive(Debug, clap::Args)]
pub struct LeaveArgs {
    /// The name of the node to remove
    pub id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: LeaveArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.client.connect().await?;
    client.leave(LeaveRequest { id: args.id }).await.map_err(status_error)?;
    Ok(ExitCode::SUCCESS)
}
