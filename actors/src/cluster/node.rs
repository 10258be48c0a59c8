//! What Cete knows of a node: its addresses (replicated through the Raft log inside the
//! membership) and its live state. The serde shapes are the JSON of API.md; the proto
//! conversions are the gRPC shapes. Both live here, once.

use std::collections::BTreeMap;

use cete_proto::kvs;
use serde::{Deserialize, Serialize};

/// The addresses a node serves clients on (replicated inside the membership, so defined with
/// it in [`crate::command`]).
pub use crate::command::Metadata;

/// A node as clients see it: `{"raft_address":..,"metadata":{..},"state":"Leader"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    #[serde(default)]
    pub raft_address: String,
    #[serde(default)]
    pub metadata: Metadata,
    /// Leader, Follower, Candidate, Learner, Removed (a node removed from its cluster, of
    /// itself), or Shutdown when unreachable. Empty in a join request.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub state: String,
}

/// The cluster as clients see it: every node by id, and the leader's id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub nodes: BTreeMap<String, NodeInfo>,
    pub leader: String,
}

impl From<kvs::Metadata> for Metadata {
    fn from(m: kvs::Metadata) -> Self {
        Metadata { grpc_address: m.grpc_address, http_address: m.http_address }
    }
}

impl From<Metadata> for kvs::Metadata {
    fn from(m: Metadata) -> Self {
        kvs::Metadata { grpc_address: m.grpc_address, http_address: m.http_address }
    }
}

impl From<kvs::Node> for NodeInfo {
    fn from(n: kvs::Node) -> Self {
        NodeInfo {
            raft_address: n.raft_address,
            metadata: n.metadata.map(Metadata::from).unwrap_or_default(),
            state: n.state,
        }
    }
}

impl From<NodeInfo> for kvs::Node {
    fn from(n: NodeInfo) -> Self {
        kvs::Node { raft_address: n.raft_address, metadata: Some(n.metadata.into()), state: n.state }
    }
}

impl From<kvs::Cluster> for ClusterInfo {
    fn from(c: kvs::Cluster) -> Self {
        ClusterInfo { nodes: c.nodes.into_iter().map(|(id, n)| (id, n.into())).collect(), leader: c.leader }
    }
}

impl From<ClusterInfo> for kvs::Cluster {
    fn from(c: ClusterInfo) -> Self {
        kvs::Cluster { nodes: c.nodes.into_iter().map(|(id, n)| (id, n.into())).collect(), leader: c.leader }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_json_is_the_api_shape() {
        let node = NodeInfo {
            raft_address: ":7000".into(),
            metadata: Metadata { grpc_address: ":9000".into(), http_address: ":8000".into() },
            state: "Leader".into(),
        };
        assert_eq!(
            serde_json::to_string(&node).unwrap(),
            r#"{"raft_address":":7000","metadata":{"grpc_address":":9000","http_address":":8000"},"state":"Leader"}"#
        );
    }

    #[test]
    fn proto_round_trip_keeps_every_field() {
        let mut cluster = ClusterInfo { leader: "node1".into(), ..Default::default() };
        cluster.nodes.insert(
            "node1".into(),
            NodeInfo { raft_address: ":7000".into(), metadata: Metadata::default(), state: "Leader".into() },
        );
        let back: ClusterInfo = kvs::Cluster::from(cluster.clone()).into();
        assert_eq!(back, cluster);
    }
}
