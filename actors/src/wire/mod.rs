//! The wire: how Cete's bytes look outside a process. Addresses as users write them
//! ([`address`]), TLS on every connection ([`tls`]), and values in JSON bodies
//! ([`value_json`]), and the cluster id every request between nodes carries ([`identity`]: the
//! one thing here with state, this node's id, on disk). Nothing here receives messages; the
//! front doors, the peer links and the Raft network call these functions. (MessagePack for the log, the store and
//! Raft RPCs is `command::{encode, decode}`; the on-disk framings sit with their files.)

pub mod address;
pub mod identity;
pub mod tls;
pub mod txn_json;
pub mod value_json;
