//! `cete metrics`: print the node's Prometheus metrics, in the text exposition format.

use std::process::ExitCode;

use super::dial::status_error;
use super::{emit, ClientArgs};

pub async fn run(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.connect().await?;
    let metrics = client.metrics(()).await.map_err(status_error)?.into_inner().metrics;
    emit(&metrics)?;
    Ok(ExitCode::SUCCESS)
}
