//! `cete snapshot`: make the node at `--grpc-address` take a Raft snapshot now.

use std::process::ExitCode;

use super::dial::status_error;
use super::ClientArgs;

pub async fn run(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.connect().await?;
    client.snapshot(()).await.map_err(status_error)?;
    Ok(ExitCode::SUCCESS)
}
