//! `cete cluster`: print the cluster as JSON, `{"cluster":{"nodes":{...},"leader":"..."}}`.

use std::process::ExitCode;

use cete_actors::cluster::node::ClusterInfo;

use super::dial::status_error;
use super::{emit_json, ClientArgs};

pub async fn run(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.connect().await?;
    let response = client.cluster(()).await.map_err(status_error)?.into_inner();
    let cluster = response.cluster.map(ClusterInfo::from).unwrap_or_default();
    emit_json(&serde_json::json!({ "cluster": cluster }))?;
    Ok(ExitCode::SUCCESS)
}
