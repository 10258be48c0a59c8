//! `cete node`: print the node at `--grpc-address` as JSON, `{"node":{...}}`.

use std::process::ExitCode;

use cete_actors::cluster::node::NodeInfo;

use super::dial::status_error;
use super::{emit_json, ClientArgs};

pub async fn run(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.connect().await?;
    let response = client.node(()).await.map_err(status_error)?.into_inner();
    let node = response.node.map(NodeInfo::from).unwrap_or_default();
    emit_json(&serde_json::json!({ "node": node }))?;
    Ok(ExitCode::SUCCESS)
}
