//! The wire: how Cete's bytes look outside a process. Addresses as users write them
//! ([`address`]), TLS on every connection ([`tls`]), and values in JSON bodies
//! ([`value_json`]). Nothing here holds state or receives messages; the front doors, the peer
//! links and the Raft network call these functions. (MessagePack for the log, the store and
//! Raft RPCs is `command::{encode, decode}`; the on-disk framings sit with their files.)

pub mod address;
pub mod tls;
pub mod txn_json;
pub mod value_json;
