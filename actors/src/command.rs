//! The replicated command: what goes through the Raft log and is applied by every node, and
//! the openraft type configuration built around it.
//!
//! The command type is an open enum on purpose: compare-and-swap, transactions and leases
//! become new variants applied in the same place ([`crate::store::StoreActor`]).

pub mod lease;
pub mod txn;

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use self::txn::{Txn, TxnResponse};

/// A change to the key-value state, replicated through the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Store `value` under `key`, remembering the media type it was given with (if any).
    Set { key: String, value: Bytes, content_type: Option<String> },
    /// Remove `key`; removing a missing key is not an error.
    Delete { key: String },
    /// Several client commands proposed as one log entry (group commit), applied in order.
    Batch(Vec<Command>),
    /// A client's command under its request id: applied at most once, however often sent.
    /// `low_water`: the lowest sequence its session still awaited when it was sent (see
    /// [`crate::store::sessions`]); 0 in entries written before sessions.
    Request {
        id: RequestId,
        command: Box<Command>,
        #[serde(default)]
        low_water: u64,
    },
    /// Start counting revisions: the store stamps every key it holds at the first revision
    /// and counts from there ([`crate::store::revisions`]); a no-op where it already counts.
    StartRevisions,
    /// `command`, a `Set` or `Delete`, applied only if its key meets `condition`
    /// (compare-and-swap); otherwise nothing changes and the answer is
    /// [`CommandResponse::Refused`].
    Guarded { condition: Condition, command: Box<Command> },
    /// A transaction ([`txn`]): compares, then one list of operations or the other, applied
    /// at one revision; answered by [`CommandResponse::Txn`].
    Txn(Txn),
    /// Forget the change history below this revision ([`crate::store::history`]): proposed by
    /// the leader once the revision is older than the history's retention.
    Compact { revision: u64 },
    /// Grant lease `id` ([`crate::lease`]) of `ttl_seconds`; refused when the id is taken.
    /// The id is chosen before proposing (by the client or at random), so it is in the log.
    LeaseGrant { id: u64, ttl_seconds: u64 },
    /// Revoke lease `id`: it and every key attached to it are deleted, at one revision. A
    /// client's revoke, or the leader's decision that the lease expired.
    LeaseRevoke { id: u64 },
    /// A `Set` that attaches the key to `lease`, refused when the lease does not exist.
    SetLeased { key: String, value: Bytes, content_type: Option<String>, lease: u64 },
}

/// When a [`Command::Guarded`] write applies, judged against its key as the log has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// The key's mod revision is this one (0: the key does not exist).
    ModRevision(u64),
    /// The key exists.
    Exists,
    /// The key does not exist.
    Absent,
}

impl Condition {
    /// Whether a key of mod revision `current` (None: absent) meets it.
    pub fn holds(&self, current: Option<u64>) -> bool {
        match self {
            Condition::ModRevision(revision) => current.unwrap_or(0) == *revision,
            Condition::Exists => current.is_some(),
            Condition::Absent => current.is_none(),
        }
    }
}

impl Command {
    /// The bytes of keys, values and media types this command carries: what a group commit's
    /// batch limit counts and what the log cache's size estimate starts from.
    pub fn payload_bytes(&self) -> usize {
        match self {
            Command::Set { key, value, content_type } => {
                key.len() + value.len() + content_type.as_ref().map_or(0, String::len)
            }
            Command::Delete { key } => key.len(),
            Command::Batch(commands) => commands.iter().map(Command::payload_bytes).sum(),
            Command::Request { command, .. } => command.payload_bytes(),
            Command::StartRevisions => 0,
            Command::Guarded { command, .. } => command.payload_bytes(),
            Command::Txn(txn) => txn.payload_bytes(),
            Command::Compact { .. } | Command::LeaseRevoke { .. } => 8,
            Command::LeaseGrant { .. } => 16,
            Command::SetLeased { key, value, content_type, .. } => {
                8 + key.len() + value.len() + content_type.as_ref().map_or(0, String::len)
            }
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Set { key, value, .. } => write!(f, "set {key:?} ({} bytes)", value.len()),
            Command::Delete { key } => write!(f, "delete {key:?}"),
            Command::Batch(commands) => write!(f, "batch of {}", commands.len()),
            Command::Request { id, command, .. } => write!(f, "{command} as request {}/{}", id.session, id.sequence),
            Command::StartRevisions => write!(f, "start revisions"),
            Command::Guarded { condition, command } => write!(f, "{command} if {condition:?}"),
            Command::Txn(txn) => write!(f, "{txn}"),
            Command::Compact { revision } => write!(f, "compact the history below revision {revision}"),
            Command::LeaseGrant { id, ttl_seconds } => write!(f, "grant lease {id} of {ttl_seconds} s"),
            Command::LeaseRevoke { id } => write!(f, "revoke lease {id}"),
            Command::SetLeased { key, value, lease, .. } => {
                write!(f, "set {key:?} ({} bytes) with lease {lease}", value.len())
            }
        }
    }
}

/// What applying one log entry produced.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CommandResponse {
    /// A blank or membership entry: nothing for a client.
    #[default]
    Nothing,
    /// The command was applied (by a store without revisions, or again as a duplicate).
    Applied,
    /// The command was applied; the store's revision after it.
    Written { revision: u64 },
    /// A guarded write whose condition did not hold: nothing changed. The key's mod revision
    /// (0: it does not exist).
    Refused { mod_revision: u64 },
    /// One response per command of a batch, in order.
    Batch(Vec<CommandResponse>),
    /// What a transaction found and did.
    Txn(TxnResponse),
    /// A write naming a lease that does not exist (never granted, expired or revoked):
    /// nothing changed.
    NoSuchLease { lease: u64 },
    /// A grant of a lease id that is taken: nothing changed.
    LeaseExists { lease: u64 },
}

impl CommandResponse {
    /// The store's revision after the command, when the store counts them.
    pub fn revision(&self) -> Option<u64> {
        match self {
            CommandResponse::Written { revision } => Some(*revision),
            CommandResponse::Txn(answer) => Some(answer.revision),
            _ => None,
        }
    }

    /// Whether this says more than "done" (then a peer of this build needs it whole).
    pub fn has_revisions(&self) -> bool {
        match self {
            CommandResponse::Written { .. }
            | CommandResponse::Refused { .. }
            | CommandResponse::Txn(_)
            | CommandResponse::NoSuchLease { .. }
            | CommandResponse::LeaseExists { .. } => true,
            CommandResponse::Batch(responses) => responses.iter().any(CommandResponse::has_revisions),
            CommandResponse::Nothing | CommandResponse::Applied => false,
        }
    }
}

/// The revision the stamping makes ([`crate::store::revisions`]): every key there was then
/// created (and last changed) at it.
pub const FIRST_REVISION: u64 = 1;

/// A key's place in the store's history ([`crate::store::revisions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyRevisions {
    pub create_revision: u64,
    pub mod_revision: u64,
    pub version: u64,
    pub lease: u64,
}

impl KeyRevisions {
    /// A key as the stamping leaves it.
    pub const STAMPED: KeyRevisions =
        KeyRevisions { create_revision: FIRST_REVISION, mod_revision: FIRST_REVISION, version: 1, lease: 0 };

    /// The revisions of a key written at `revision` that held `before` (None: it was absent),
    /// attached to no lease: as in etcd, a write that names no lease detaches the key.
    pub fn written_at(revision: u64, before: Option<&KeyRevisions>) -> Self {
        match before {
            Some(before) => KeyRevisions { mod_revision: revision, version: before.version + 1, lease: 0, ..*before },
            None => KeyRevisions { create_revision: revision, mod_revision: revision, version: 1, lease: 0 },
        }
    }
}

/// The addresses a node serves clients on, as the membership replicates them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub grpc_address: String,
    #[serde(default)]
    pub http_address: String,
}

/// A client write's identity: the session of the process that took it from the client, and a
/// number unique in that session ([`crate::store::sessions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestId {
    pub session: u64,
    pub sequence: u64,
}

/// A cluster member as Raft replicates it: its name and addresses travel inside the
/// membership config, so every node can answer `/v1/cluster` from its own log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The user-facing id (`node1`); Raft itself uses [`node_id`] of it.
    pub name: String,
    pub raft_address: String,
    pub metadata: Metadata,
}

/// Raft's numeric id for a user-facing node name: a stable 64-bit hash, the same on every
/// node and across versions (xxh3 is specified, not seeded per process).
pub fn node_id(name: &str) -> NodeId {
    xxhash_rust::xxh3::xxh3_64(name.as_bytes())
}

pub type NodeId = u64;

openraft::declare_raft_types!(
    /// openraft's view of Cete: replicated [`Command`]s and named [`Member`]s; the rest is
    /// openraft's defaults (u64 terms, a leader id of term and node, tokio). Snapshots are files
    /// on disk, streamed rather than held in memory (the state machine's `SnapshotData`).
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = Member,
);

pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type LeaderId = openraft::type_config::alias::LeaderIdOf<TypeConfig>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub type StorageError = openraft::StorageError<TypeConfig>;
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;

/// Encodes a value for redb or the wire (MessagePack: compact, self-describing, maintained).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    rmp_serde::to_vec(value)
}

/// Decodes what [`encode`] produced.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, rmp_serde::decode::Error> {
    rmp_serde::from_slice(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_stable_and_distinct() {
        assert_eq!(node_id("node1"), node_id("node1"));
        assert_ne!(node_id("node1"), node_id("node2"));
    }

    #[test]
    fn commands_round_trip_through_the_codec() {
        let cmd = Command::Set {
            key: "a/b".into(),
            value: Bytes::from_static(b"\x00\xffbinary"),
            content_type: Some("image/jpeg".into()),
        };
        let bytes = encode(&cmd).unwrap();
        assert_eq!(decode::<Command>(&bytes).unwrap(), cmd);
    }
}
