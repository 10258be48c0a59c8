//! `cete join ID GRPC_ADDRESS`: add the node listening on GRPC_ADDRESS to the cluster that
//! `--grpc-address` points at, under the name ID. The new node is asked for its own Raft
//! address and metadata first, so the user never has to spell them out.

use std::process::ExitCode;

use anyhow::anyhow;
use cete_actors::cluster::node::NodeInfo;
use cete_proto::kvs::{self, JoinRequest};

use super::dial::status_error;
use super::ClientArgs;

#[derive(Debug, clap::Args)]
pub struct JoinArgs {
    /// The name the new node takes in the cluster
    pub id: String,
    /// gRPC address of the new node
    #[arg(value_name = "GRPC_ADDRESS")]
    pub node_grpc_address: String,
    /// The cluster to join: any of its nodes
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: JoinArgs) -> anyhow::Result<ExitCode> {
    let node = ask_node(&args.client, &args.node_grpc_address).await?;
    let mut cluster = args.client.connect().await?;
    let request = JoinRequest { id: args.id, node: Some(node) };
    cluster.join(request).await.map_err(status_error)?;
    Ok(ExitCode::SUCCESS)
}

/// The new node as it describes itself, without its state: a join names addresses only.
async fn ask_node(client_args: &ClientArgs, address: &str) -> anyhow::Result<kvs::Node> {
    let mut new_node = client_args.connect_to(address).await?;
    let response = new_node
        .node(())
        .await
        .map_err(|status| anyhow!("cannot ask the node at {address} for its addresses: {}", status_error(status)))?;
    let node = response.into_inner().node.map(NodeInfo::from).unwrap_or_default();
    anyhow::ensure!(!node.raft_address.is_empty(), "the node at {address} did not tell its Raft address");
    Ok(NodeInfo { state: String::new(), ..node }.into())
}
