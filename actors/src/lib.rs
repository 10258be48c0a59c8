//! Cete's actor system, in folders by wing.
//!
//! Every piece of state has one owner, and the owners talk only by typed messages:
//! - [`store`]: the [`store::StoreActor`] owns the redb database of applied key-value state,
//!   with its writeback thread, the client sessions that make writes exactly-once, and the
//!   snapshot file format;
//! - [`raft`]: the [`raft::RaftActor`] owns the openraft instance (writes, read indexes,
//!   membership, leader transfer), beside openraft's adapters: the log store, the state
//!   machine (messages to the StoreActor) and the network (RPCs to peers);
//! - [`routing`]: the [`routing::RouterActor`] serves what only the leader can serve from any
//!   node: here, or over the leader's peer link, following leader changes;
//! - [`cluster`]: the [`cluster::ClusterActor`] knows the nodes ([`cluster::node`]), their
//!   live states and the leader, whether this node is still one of them
//!   ([`cluster::removal`]), and keeps the peer links ([`cluster::peer`]);
//! - [`lease`]: the [`lease::LeaseActor`] counts down what each lease has left while this
//!   node leads, and proposes the revoke of those that run out;
//! - [`connection`]: one [`connection::ConnectionActor`] per client connection on a front
//!   door, and one [`connection::watch::WatchActor`] per watch stream;
//! - [`wire`]: addresses, TLS and the JSON of values, which the front doors, the peer links
//!   and the Raft network share.
//!
//! [`system`] starts a node's actors; [`command`] is what the Raft log carries; [`deadlines`]
//! says how long each step of a request may wait.

pub mod cluster;
pub mod command;
pub mod connection;
pub mod deadlines;
pub mod error;
pub mod failpoints;
pub mod lease;
pub mod metrics;
pub mod raft;
pub mod random;
pub mod restore;
pub mod routing;
pub mod store;
pub mod system;
pub mod wire;

pub use error::{CeteError, CeteResult};
