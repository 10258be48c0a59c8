//! Transactions: compares on keys, then one list of operations if all of them hold and another
//! if not, applied by the StoreActor as one command at one revision (etcd's `Txn`).
//!
//! What a transaction does is decided where it is applied, from the state the log has built
//! and nothing else: every node judges the compares alike and makes the same writes. Its reads
//! (`get`, `scan`) see the writes made before them in the same list. A transaction that writes
//! makes exactly one revision, however many keys it writes; one that writes nothing makes none.

use std::cmp::Ordering;
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::KeyRevisions;

/// At most this many compares, and this many operations in each list (etcd's default
/// `--max-txn-ops`): a transaction is applied in one go on every node, holding up the applies
/// behind it.
pub const MAX_TXN_OPS: usize = 128;

/// A scan inside a transaction answers at most this many keys (and says `more` past them).
pub const MAX_TXN_SCAN: u64 = 10_000;

/// A transaction as a client sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    pub compare: Vec<Compare>,
    /// Run when every compare holds (all of them do when there are none).
    pub success: Vec<TxnOp>,
    /// Run otherwise.
    pub failure: Vec<TxnOp>,
}

/// One compare: `key`'s `target` against a value, by `op`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    pub key: String,
    pub op: CompareOp,
    pub target: Target,
}

/// What of a key a compare looks at, and the value it compares it with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// The value's bytes, compared byte by byte.
    Value(Bytes),
    Version(u64),
    CreateRevision(u64),
    ModRevision(u64),
    Lease(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    Equal,
    NotEqual,
    Less,
    Greater,
}

impl Compare {
    /// Whether it holds for the key as found (None: it does not exist). A missing key has
    /// version, create and mod revision and lease 0, and no value: a compare of its value
    /// holds for no op, `!=` included (as in etcd).
    pub fn holds(&self, found: Option<(&KeyRevisions, &[u8])>) -> bool {
        let number = |of: fn(&KeyRevisions) -> u64| found.map_or(0, |(revisions, _)| of(revisions));
        let ordering = match &self.target {
            Target::Value(expected) => match found {
                Some((_, value)) => value.cmp(expected.as_ref()),
                None => return false,
            },
            Target::Version(n) => number(|r| r.version).cmp(n),
            Target::CreateRevision(n) => number(|r| r.create_revision).cmp(n),
            Target::ModRevision(n) => number(|r| r.mod_revision).cmp(n),
            Target::Lease(n) => number(|r| r.lease).cmp(n),
        };
        match self.op {
            CompareOp::Equal => ordering == Ordering::Equal,
            CompareOp::NotEqual => ordering != Ordering::Equal,
            CompareOp::Less => ordering == Ordering::Less,
            CompareOp::Greater => ordering == Ordering::Greater,
        }
    }
}

/// One operation of a transaction's lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// Store `value` under `key`, attached to `lease` (0: none).
    Put {
        key: String,
        value: Bytes,
        lease: u64,
    },
    Delete {
        key: String,
    },
    /// Delete every key under `prefix`.
    DeletePrefix {
        prefix: String,
    },
    Get {
        key: String,
    },
    /// The keys under `prefix` in key order, at most `limit` of them (and [`MAX_TXN_SCAN`]).
    Scan {
        prefix: String,
        limit: Option<u64>,
    },
}

/// A key, its value and its revisions, as a transaction read them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    pub revisions: KeyRevisions,
}

/// What one operation did or found, in the order of its list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnResult {
    Put {
        key: String,
    },
    /// How many keys a delete (of a key or a prefix) removed.
    Delete {
        deleted: u64,
    },
    Get {
        key: String,
        found: Option<KeyValue>,
    },
    Scan {
        pairs: Vec<KeyValue>,
        more: bool,
        count: u64,
    },
}

/// What a transaction answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    /// Every compare held: the success list ran (else the failure list).
    pub succeeded: bool,
    /// The store's revision after it (the revision of its writes, if it made any).
    pub revision: u64,
    pub results: Vec<TxnResult>,
}

impl TxnOp {
    fn payload_bytes(&self) -> usize {
        match self {
            TxnOp::Put { key, value, .. } => key.len() + value.len(),
            TxnOp::Delete { key } | TxnOp::Get { key } => key.len(),
            TxnOp::DeletePrefix { prefix } | TxnOp::Scan { prefix, .. } => prefix.len(),
        }
    }

    /// Whether this op writes `key` (a put of it, or a delete of it or of a prefix of it).
    fn writes(&self, key: &str) -> bool {
        match self {
            TxnOp::Put { key: put, .. } | TxnOp::Delete { key: put } => put == key,
            TxnOp::DeletePrefix { prefix } => key.starts_with(prefix.as_str()),
            TxnOp::Get { .. } | TxnOp::Scan { .. } => false,
        }
    }
}

impl Txn {
    /// Whether a put of either list attaches its key to a lease.
    pub fn attaches_leases(&self) -> bool {
        self.success.iter().chain(&self.failure).any(|op| matches!(op, TxnOp::Put { lease, .. } if *lease != 0))
    }

    pub(crate) fn payload_bytes(&self) -> usize {
        let compares: usize =
            self.compare.iter().map(|c| c.key.len() + if let Target::Value(v) = &c.target { v.len() } else { 8 }).sum();
        compares + self.success.iter().chain(&self.failure).map(TxnOp::payload_bytes).sum::<usize>()
    }

    /// Why this transaction is not one to apply, if it is not: too many compares or
    /// operations, an empty key, a key too long or a value too large to store, or a key that
    /// one list writes twice (a put and another put or a delete of it: which would win is
    /// not for a client to guess; etcd refuses it too). The values of one list together may
    /// be as large as one value: the transaction is one log entry, as a write is.
    pub fn check(&self, max_key_bytes: usize, max_value_bytes: usize) -> Result<(), String> {
        if self.compare.len() > MAX_TXN_OPS {
            return Err(format!("{} compares, over the limit of {MAX_TXN_OPS}", self.compare.len()));
        }
        for compare in &self.compare {
            if compare.key.is_empty() {
                return Err("a compare's key must not be empty".into());
            }
        }
        for (name, ops) in [("success", &self.success), ("failure", &self.failure)] {
            if ops.len() > MAX_TXN_OPS {
                return Err(format!("{} operations on {name}, over the limit of {MAX_TXN_OPS}", ops.len()));
            }
            let values: usize =
                ops.iter().map(|op| if let TxnOp::Put { value, .. } = op { value.len() } else { 0 }).sum();
            if values > max_value_bytes {
                return Err(format!(
                    "the values {name} puts are {values} bytes together, over the limit of {max_value_bytes} bytes"
                ));
            }
            for (at, op) in ops.iter().enumerate() {
                match op {
                    TxnOp::Put { key, value, .. } => {
                        if key.is_empty() || key.len() > max_key_bytes {
                            return Err(format!("a put's key must be 1 to {max_key_bytes} bytes, not {}", key.len()));
                        }
                        if value.len() > max_value_bytes {
                            return Err(format!(
                                "the value of {key:?} is {} bytes, over the limit of {max_value_bytes} bytes",
                                value.len()
                            ));
                        }
                        if let Some(other) = ops.iter().enumerate().find(|(i, o)| *i != at && o.writes(key)) {
                            return Err(format!(
                                "{name} writes {key:?} twice (operations {} and {}); a transaction writes a key \
                                 once",
                                at.min(other.0),
                                at.max(other.0)
                            ));
                        }
                    }
                    TxnOp::Delete { key } | TxnOp::Get { key } if key.is_empty() => {
                        return Err("a key must not be empty (delete a prefix to delete many keys)".into());
                    }
                    TxnOp::Scan { limit: Some(0), .. } => {
                        return Err("a scan's limit must be at least 1 (leave it out for every key)".into());
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Txn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "transaction of {} compares, {} and {} operations",
            self.compare.len(),
            self.success.len(),
            self.failure.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compare(op: CompareOp, target: Target) -> Compare {
        Compare { key: "k".into(), op, target }
    }

    #[test]
    fn a_missing_key_has_zero_revisions_and_no_value() {
        assert!(compare(CompareOp::Equal, Target::Version(0)).holds(None));
        assert!(compare(CompareOp::Equal, Target::ModRevision(0)).holds(None));
        assert!(compare(CompareOp::Less, Target::CreateRevision(1)).holds(None));
        for op in [CompareOp::Equal, CompareOp::NotEqual, CompareOp::Less, CompareOp::Greater] {
            assert!(!compare(op, Target::Value(Bytes::from("x"))).holds(None), "{op:?} of a missing value");
        }
    }

    #[test]
    fn compares_order_values_by_bytes_and_numbers_by_number() {
        let revisions = KeyRevisions { create_revision: 2, mod_revision: 7, version: 3, lease: 0 };
        let found = Some((&revisions, &b"b"[..]));
        assert!(compare(CompareOp::Greater, Target::Value(Bytes::from("a"))).holds(found));
        assert!(compare(CompareOp::Less, Target::Value(Bytes::from("ba"))).holds(found));
        assert!(compare(CompareOp::NotEqual, Target::Value(Bytes::from("c"))).holds(found));
        assert!(compare(CompareOp::Equal, Target::ModRevision(7)).holds(found));
        assert!(compare(CompareOp::Greater, Target::Version(2)).holds(found));
        assert!(!compare(CompareOp::Greater, Target::Version(10)).holds(found));
    }

    #[test]
    fn a_list_may_not_write_a_key_twice() {
        let put = |key: &str| TxnOp::Put { key: key.into(), value: Bytes::from("v"), lease: 0 };
        let twice = Txn { success: vec![put("a"), put("a")], ..Txn::default() };
        assert!(twice.check(4096, 1024).unwrap_err().contains("twice"));
        let deleted = Txn { failure: vec![TxnOp::DeletePrefix { prefix: "a/".into() }, put("a/1")], ..Txn::default() };
        assert!(deleted.check(4096, 1024).is_err());
        // One list each, or a read beside a write, is fine.
        let fine =
            Txn { success: vec![put("a"), TxnOp::Get { key: "a".into() }], failure: vec![put("a")], ..Txn::default() };
        assert_eq!(fine.check(4096, 1024), Ok(()));
        let many = Txn { success: (0..=MAX_TXN_OPS).map(|i| put(&i.to_string())).collect(), ..Txn::default() };
        assert!(many.check(4096, 1024).unwrap_err().contains("limit"));
    }
}
