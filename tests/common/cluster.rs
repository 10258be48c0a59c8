//! A cluster of `cete` processes brought up as Cete's README does: node1 on its own, then
//! node2, node3, ... each started with `--peer-grpc-address` pointing at node1.
//!
//! Helpers that ask "who leads" or "is it formed" only ask nodes that are serving (not
//! killed, not paused), and poll against a deadline: membership and leadership settle
//! asynchronously, and each node polls its peers' states once a second.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::{eventually, Node};

/// How long a cluster may take to agree on its members and leader.
pub const FORM_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a status request to a serving node may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Cluster {
    pub nodes: Vec<Node>,
    /// Flags every node gets (TLS, snapshot policy, ...).
    extra: Vec<String>,
    https_ca: Option<PathBuf>,
    /// With mTLS: the client certificate the test's HTTPS requests present.
    client_identity: Option<super::ClientIdentity>,
}

impl Cluster {
    /// `size` nodes, `node1` to `node<size>`, every one listed with a leader by every one.
    pub fn start(size: usize) -> Cluster {
        Cluster::start_with(size, &[])
    }

    /// Like [`Cluster::start`], with `extra` flags on every node.
    pub fn start_with(size: usize, extra: &[&str]) -> Cluster {
        Cluster::start_full(size, extra, None, &|_| Vec::new())
    }

    /// Like [`Cluster::start_with`] for nodes serving HTTPS (their TLS flags in `extra`);
    /// the test's HTTPS requests trust `ca_file`.
    pub fn start_https(size: usize, extra: &[&str], ca_file: &Path) -> Cluster {
        Cluster::start_full(size, extra, Some(ca_file), &|_| Vec::new())
    }

    /// Like [`Cluster::start_https`] with flags of its own for each node (`node_flags(id)`),
    /// such as a certificate per node.
    pub fn start_https_each(size: usize, ca_file: &Path, node_flags: &dyn Fn(&str) -> Vec<String>) -> Cluster {
        Cluster::start_full(size, &[], Some(ca_file), node_flags)
    }

    /// Like [`Cluster::start_https_each`] for nodes that ask clients for a certificate
    /// (`--client-ca-file` in their flags): the test's HTTPS requests present `client`.
    pub fn start_mtls_each(
        size: usize,
        ca_file: &Path,
        client: &super::ClientIdentity,
        node_flags: &dyn Fn(&str) -> Vec<String>,
    ) -> Cluster {
        Cluster::start_full_as(size, &[], Some(ca_file), Some(client), node_flags)
    }

    fn start_full(
        size: usize,
        extra: &[&str],
        https_ca: Option<&Path>,
        node_flags: &dyn Fn(&str) -> Vec<String>,
    ) -> Cluster {
        Cluster::start_full_as(size, extra, https_ca, None, node_flags)
    }

    fn start_full_as(
        size: usize,
        extra: &[&str],
        https_ca: Option<&Path>,
        client: Option<&super::ClientIdentity>,
        node_flags: &dyn Fn(&str) -> Vec<String>,
    ) -> Cluster {
        assert!(size >= 1, "a cluster has at least one node");
        let mut cluster = Cluster {
            nodes: Vec::new(),
            extra: extra.iter().map(|arg| arg.to_string()).collect(),
            https_ca: https_ca.map(Path::to_path_buf),
            client_identity: client.cloned(),
        };
        let own = node_flags("node1");
        let first = cluster.spawn_node("node1", &own.iter().map(String::as_str).collect::<Vec<_>>());
        cluster.nodes.push(first);
        for n in 2..=size {
            let id = format!("node{n}");
            let own = node_flags(&id);
            cluster.add_node_with(&id, &own.iter().map(String::as_str).collect::<Vec<_>>());
        }
        cluster.wait_until_formed();
        cluster
    }

    /// Starts node `id` with the cluster's flags and `--peer-grpc-address` = node1's gRPC
    /// address; returns its index once it is ready (it knows a leader).
    pub fn add_node(&mut self, id: &str) -> usize {
        self.add_node_with(id, &[])
    }

    /// Like [`Cluster::add_node`], with more flags for this node only.
    pub fn add_node_with(&mut self, id: &str, extra: &[&str]) -> usize {
        let peer = format!("--peer-grpc-address={}", self.nodes[0].addresses.grpc);
        let mut args: Vec<&str> = extra.to_vec();
        args.push(&peer);
        let node = self.spawn_node(id, &args);
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// A node with the cluster's flags that is not (yet) part of it.
    pub fn spawn_node(&self, id: &str, extra: &[&str]) -> Node {
        let mut args: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        match (&self.https_ca, &self.client_identity) {
            (Some(ca), Some(client)) => Node::start_mtls(id, &args, ca, client),
            (Some(ca), None) => Node::start_https(id, &args, ca),
            (None, _) => Node::start_with(id, &args),
        }
    }

    pub fn index_of(&self, id: &str) -> usize {
        self.nodes.iter().position(|node| node.id() == id).unwrap_or_else(|| panic!("no node {id} in the cluster"))
    }

    pub fn node(&self, id: &str) -> &Node {
        &self.nodes[self.index_of(id)]
    }

    pub fn ids(&self) -> Vec<String> {
        self.nodes.iter().map(Node::id).collect()
    }

    /// Waits until every node lists all of them, each as Leader or Follower, with a leader.
    pub fn wait_until_formed(&self) -> Value {
        let ids = self.ids();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        self.wait_for_members(&ids)
    }

    /// Waits until every serving node among `ids` lists exactly `ids` as members, each
    /// Leader or Follower, and names the one Leader as `"leader"`; returns that `/v1/cluster`.
    pub fn wait_for_members(&self, ids: &[&str]) -> Value {
        let wanted: BTreeSet<&str> = ids.iter().copied().collect();
        let what = format!("cluster of {ids:?} with a leader, agreed by all");
        eventually(&what, FORM_TIMEOUT, || {
            let mut agreed = None;
            for node in self.nodes.iter().filter(|n| n.is_serving() && wanted.contains(n.id().as_str())) {
                let cluster = cluster_status(node)?;
                if !is_formed(&cluster, &wanted) || agreed.as_ref().is_some_and(|a: &Value| a != &cluster) {
                    return None;
                }
                agreed = Some(cluster);
            }
            agreed
        })
    }

    /// The index of the leader, once the serving nodes agree on one (and it says so itself).
    pub fn leader(&self) -> usize {
        eventually("one leader agreed by the serving nodes", FORM_TIMEOUT, || self.agreed_leader())
    }

    /// The serving nodes other than the leader.
    pub fn followers(&self) -> Vec<usize> {
        let leader = self.leader();
        (0..self.nodes.len()).filter(|&i| i != leader && self.nodes[i].is_serving()).collect()
    }

    /// The leader as the serving nodes see it now, if they agree and it answers as Leader.
    pub fn agreed_leader(&self) -> Option<usize> {
        let mut leader_id: Option<String> = None;
        for node in self.nodes.iter().filter(|n| n.is_serving()) {
            let named = cluster_status(node)?["cluster"]["leader"].as_str()?.to_string();
            if named.is_empty() || leader_id.as_ref().is_some_and(|id| *id != named) {
                return None;
            }
            leader_id = Some(named);
        }
        let index = self.nodes.iter().position(|node| Some(node.id()) == leader_id)?;
        let leader = &self.nodes[index];
        (leader.is_serving() && node_state(leader).as_deref() == Some("Leader")).then_some(index)
    }
}

/// `/v1/cluster` of `node`, if it answers 200 in time.
pub fn cluster_status(node: &Node) -> Option<Value> {
    let reply = node.try_request("GET", "/v1/cluster", Vec::new(), STATUS_TIMEOUT).ok()?;
    (reply.status == 200).then(|| reply.json())
}

/// The state `node` gives itself in `/v1/node`, if it answers 200 in time.
pub fn node_state(node: &Node) -> Option<String> {
    let reply = node.try_request("GET", "/v1/node", Vec::new(), STATUS_TIMEOUT).ok()?;
    (reply.status == 200).then(|| reply.json()["node"]["state"].as_str().map(str::to_string))?
}

fn is_formed(cluster: &Value, wanted: &BTreeSet<&str>) -> bool {
    let Some(nodes) = cluster["cluster"]["nodes"].as_object() else { return false };
    let listed: BTreeSet<&str> = nodes.keys().map(String::as_str).collect();
    let leader = cluster["cluster"]["leader"].as_str().unwrap_or_default();
    // A leader that is not listed (one that removed itself, before the others elected anew)
    // leads nothing.
    if !nodes.contains_key(leader) {
        return false;
    }
    let states_settled = nodes.iter().all(|(id, node)| {
        let state = node["state"].as_str().unwrap_or_default();
        state == if id == leader { "Leader" } else { "Follower" }
    });
    listed == *wanted && states_settled
}
