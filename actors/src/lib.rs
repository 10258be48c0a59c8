//! Cete's actor system.
//!
//! Every piece of state has one owner, and the owners talk only by typed messages:
//! - [`store::StoreActor`] owns the redb database of applied key-value state;
//! - [`raft::RaftActor`] owns the openraft instance (writes, linearizable reads, membership);
//! - [`routing::RouterActor`] serves what only the leader can serve from any node: here, or
//!   over the leader's peer link ([`peer`]), following leader changes;
//! - [`cluster::ClusterActor`] knows the nodes, their live states and the leader, whether
//!   this node is still one of them ([`removal`]), and keeps the peer links;
//! - [`connection::ConnectionActor`] is one client connection on a front door;
//! - [`watch::WatchActor`] is one watch stream.
//!
//! openraft's storage and network ([`log_store`], [`state_machine`], [`network`]) are adapters
//! that turn openraft's calls into messages to those owners or RPCs to peers.

pub mod cluster;
pub mod command;
pub mod connection;
pub mod error;
pub mod failpoints;
pub mod metrics;
pub mod node;
pub mod peer;
pub mod raft;
pub mod removal;
pub mod routing;
pub mod store;
pub mod system;
pub mod watch;
pub mod wire;

pub use error::{CeteError, CeteResult};
