//! What a cluster turns on only once every member can read it: a log entry that a node of an
//! earlier build cannot decode would stop it applying (and, with enough such nodes, stop the
//! cluster committing) in the middle of a rolling upgrade. A leader asks each member what its
//! build reads ([`crate::cluster::peer::Forwarded::Features`]; a node of an earlier build does
//! not know the question, which counts as no) and proposes the entry only when all of them do.
//!
//! Revisions ([`crate::store::revisions`]), turned on by the first
//! [`crate::command::Command::StartRevisions`] in the log, which the node's start-up has
//! proposed once [`crate::cluster::MembersRead`] says every member reads it
//! ([`crate::system`]).

use crate::command::Command;

/// The store counts revisions ([`crate::store::revisions`]).
pub const REVISIONS: &str = "revisions";

/// The change history's compaction entries ([`crate::store::history`]).
pub const HISTORY: &str = "history";

/// Transactions ([`crate::command::txn`]).
pub const TRANSACTIONS: &str = "transactions";

/// Leases ([`crate::lease`]): their grants, revokes, and writes that attach keys to them.
pub const LEASES: &str = "leases";

/// Every feature this build reads: its answer to `Forwarded::Features`.
pub const READ_BY_THIS_BUILD: &[&str] = &[REVISIONS, HISTORY, TRANSACTIONS, LEASES];

/// The feature a command's entry needs every member to read, if any: the leader proposes it
/// only once they all do (`routing`'s `serve_here`).
pub fn needed_by(command: &Command) -> Option<&'static str> {
    match command {
        Command::Set { .. } | Command::Delete { .. } => None,
        Command::Guarded { command, .. } => needed_by(command),
        Command::StartRevisions => Some(REVISIONS),
        Command::Compact { .. } => Some(HISTORY),
        // A transaction that attaches a key to a lease needs both; an earlier build with
        // transactions would apply the put without checking or indexing its lease.
        Command::Txn(txn) if txn.attaches_leases() => Some(LEASES),
        Command::Txn(_) => Some(TRANSACTIONS),
        Command::LeaseGrant { .. } | Command::LeaseRevoke { .. } | Command::SetLeased { .. } => Some(LEASES),
        Command::Request { command, .. } => needed_by(command),
        Command::Batch(commands) => commands.iter().find_map(needed_by),
    }
}

/// Whether a feature list a peer gave names `feature`.
pub fn names(features: &[String], feature: &str) -> bool {
    features.iter().any(|f| f == feature)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::command::txn::{Txn, TxnOp};
    use crate::command::{Condition, RequestId};

    fn put(lease: u64) -> TxnOp {
        TxnOp::Put { key: "k".into(), value: Bytes::new(), lease }
    }

    #[test]
    fn plain_writes_need_nothing_and_leased_ones_need_leases_however_wrapped() {
        let set = Command::Set { key: "k".into(), value: Bytes::new(), content_type: None };
        let leased = Command::SetLeased { key: "k".into(), value: Bytes::new(), content_type: None, lease: 7 };
        let guarded =
            |command: &Command| Command::Guarded { condition: Condition::Absent, command: Box::new(command.clone()) };
        let request = |command: &Command| Command::Request {
            id: RequestId { session: 1, sequence: 1 },
            command: Box::new(command.clone()),
            low_water: 0,
        };
        assert_eq!(needed_by(&set), None);
        assert_eq!(needed_by(&guarded(&set)), None);
        assert_eq!(needed_by(&request(&guarded(&leased))), Some(LEASES));
        assert_eq!(needed_by(&Command::Batch(vec![set.clone(), Command::LeaseRevoke { id: 7 }])), Some(LEASES));
        let txn = |op| Command::Txn(Txn { success: vec![op], ..Txn::default() });
        assert_eq!(needed_by(&txn(put(0))), Some(TRANSACTIONS));
        assert_eq!(needed_by(&txn(put(7))), Some(LEASES));
    }
}
