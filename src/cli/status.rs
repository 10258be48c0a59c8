//! `cete status`: every member's Raft progress (term, last log, commit and applied index, lag),
//! asked of them all at once, printed as JSON as `GET /v1/status` answers it (as `etcdctl
//! endpoint status --cluster`).

use std::process::ExitCode;

use cete_actors::cluster::status::StatusReport;

use super::dial::status_error;
use super::{emit_json, ClientArgs};

pub async fn run(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.connect().await?;
    let response = client.status(()).await.map_err(status_error)?.into_inner();
    emit_json(&StatusReport::from(response))?;
    Ok(ExitCode::SUCCESS)
}
