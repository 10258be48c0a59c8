//! A transaction in kvs.proto's messages (`TxnRequest`, `TxnResponse`) and in the model
//! ([`cete_actors::command::txn`]), both ways: the Txn rpc reads a request and writes an
//! answer, `cete txn` writes a request and reads the answer. Every conversion between the two
//! is here, so the rpc handler and the CLI stay free of them.
//!
//! Numbers are int64 on the wire, as everywhere in kvs.proto, and u64 in the model: a request
//! with a negative one is refused, and one that does not fit int64 is not sent.

use cete_actors::command::txn::{Compare, CompareOp, KeyValue, Target, Txn, TxnOp, TxnResponse, TxnResult};
use cete_actors::command::KeyRevisions;
use cete_proto::kvs::{self, compare, txn_delete, txn_op, txn_result};
use tonic::Status;

/// The transaction a request describes, or INVALID_ARGUMENT saying what is wrong with it and
/// where. What the store itself refuses (empty keys, a key written twice, sizes, too many
/// operations) is left to the connection's check, which the HTTP door shares.
pub fn from_request(request: kvs::TxnRequest) -> Result<Txn, Status> {
    let compare = request
        .compare
        .into_iter()
        .enumerate()
        .map(|(at, compare)| from_compare(compare).map_err(|why| format!("compare {at}: {why}")))
        .collect::<Result<_, _>>()
        .map_err(Status::invalid_argument)?;
    let ops = |ops: Vec<kvs::TxnOp>, list: &str| {
        ops.into_iter()
            .enumerate()
            .map(|(at, op)| from_op(op).map_err(|why| format!("{list} operation {at}: {why}")))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Status::invalid_argument)
    };
    Ok(Txn { compare, success: ops(request.success, "success")?, failure: ops(request.failure, "failure")? })
}

fn from_compare(compare: kvs::Compare) -> Result<Compare, String> {
    let op = match compare::Op::try_from(compare.op) {
        Ok(compare::Op::Equal) => CompareOp::Equal,
        Ok(compare::Op::NotEqual) => CompareOp::NotEqual,
        Ok(compare::Op::Less) => CompareOp::Less,
        Ok(compare::Op::Greater) => CompareOp::Greater,
        Err(_) => return Err(format!("op {} is not one of Compare.Op", compare.op)),
    };
    // A field set beside the target that does not read it is a client's mistake, not a 0.
    let number = |what: &str| {
        if !compare.value.is_empty() {
            return Err(format!("a compare of the {what} takes `number`, not `value`"));
        }
        unsigned(compare.number, what)
    };
    let target = match compare::Target::try_from(compare.target) {
        Ok(compare::Target::Value) if compare.number != 0 => {
            return Err("a compare of the value takes `value`, not `number`".into())
        }
        Ok(compare::Target::Value) => Target::Value(compare.value.clone()),
        Ok(compare::Target::Version) => Target::Version(number("version")?),
        Ok(compare::Target::CreateRevision) => Target::CreateRevision(number("create revision")?),
        Ok(compare::Target::ModRevision) => Target::ModRevision(number("mod revision")?),
        Ok(compare::Target::Lease) => Target::Lease(number("lease")?),
        Err(_) => return Err(format!("target {} is not one of Compare.Target", compare.target)),
    };
    Ok(Compare { key: compare.key, op, target })
}

fn from_op(op: kvs::TxnOp) -> Result<TxnOp, String> {
    Ok(match op.op {
        Some(txn_op::Op::Put(put)) => {
            TxnOp::Put { key: put.key, value: put.value, lease: unsigned(put.lease, "lease")? }
        }
        Some(txn_op::Op::Delete(delete)) => match delete.range {
            Some(txn_delete::Range::Key(key)) => TxnOp::Delete { key },
            Some(txn_delete::Range::Prefix(prefix)) => TxnOp::DeletePrefix { prefix },
            None => return Err("a delete sets `key` or `prefix`".into()),
        },
        Some(txn_op::Op::Get(get)) => TxnOp::Get { key: get.key },
        Some(txn_op::Op::Scan(scan)) => TxnOp::Scan {
            prefix: scan.prefix,
            limit: match scan.limit {
                0 => None,
                limit => Some(unsigned(limit, "limit")?),
            },
        },
        None => return Err("an operation sets one of put, delete, get, scan".into()),
    })
}

fn unsigned(number: i64, what: &str) -> Result<u64, String> {
    u64::try_from(number).map_err(|_| format!("the {what} must not be negative, not {number}"))
}

/// The request that sends `txn`, or why it cannot go over gRPC: a number past int64, or a
/// scan limit of 0 (which kvs.proto reads as "no limit", where the model refuses it).
pub fn to_request(txn: Txn) -> Result<kvs::TxnRequest, String> {
    let ops = |ops: Vec<TxnOp>| ops.into_iter().map(to_op).collect::<Result<Vec<_>, _>>();
    Ok(kvs::TxnRequest {
        compare: txn.compare.into_iter().map(to_compare).collect::<Result<_, _>>()?,
        success: ops(txn.success)?,
        failure: ops(txn.failure)?,
    })
}

fn to_compare(compare: Compare) -> Result<kvs::Compare, String> {
    let op = match compare.op {
        CompareOp::Equal => compare::Op::Equal,
        CompareOp::NotEqual => compare::Op::NotEqual,
        CompareOp::Less => compare::Op::Less,
        CompareOp::Greater => compare::Op::Greater,
    };
    let (target, value, number) = match compare.target {
        Target::Value(value) => (compare::Target::Value, value, 0),
        Target::Version(n) => (compare::Target::Version, Default::default(), signed(n, "version")?),
        Target::CreateRevision(n) => {
            (compare::Target::CreateRevision, Default::default(), signed(n, "create revision")?)
        }
        Target::ModRevision(n) => (compare::Target::ModRevision, Default::default(), signed(n, "mod revision")?),
        Target::Lease(n) => (compare::Target::Lease, Default::default(), signed(n, "lease")?),
    };
    Ok(kvs::Compare { key: compare.key, target: target.into(), op: op.into(), value, number })
}

fn to_op(op: TxnOp) -> Result<kvs::TxnOp, String> {
    let delete = |range| txn_op::Op::Delete(kvs::TxnDelete { range: Some(range) });
    let op = match op {
        TxnOp::Put { key, value, lease } => txn_op::Op::Put(kvs::TxnPut { key, value, lease: signed(lease, "lease")? }),
        TxnOp::Delete { key } => delete(txn_delete::Range::Key(key)),
        TxnOp::DeletePrefix { prefix } => delete(txn_delete::Range::Prefix(prefix)),
        TxnOp::Get { key } => txn_op::Op::Get(kvs::TxnGet { key }),
        TxnOp::Scan { limit: Some(0), .. } => {
            return Err("a scan's limit must be at least 1 (leave it out for every key)".into())
        }
        TxnOp::Scan { prefix, limit } => {
            txn_op::Op::Scan(kvs::TxnScan { prefix, limit: limit.map_or(Ok(0), |n| signed(n, "limit"))? })
        }
    };
    Ok(kvs::TxnOp { op: Some(op) })
}

fn signed(number: u64, what: &str) -> Result<i64, String> {
    i64::try_from(number).map_err(|_| format!("the {what} {number} is too large for the gRPC API (int64)"))
}

/// The answer to send for what a transaction did.
pub fn to_response(answer: TxnResponse) -> kvs::TxnResponse {
    let results = answer
        .results
        .into_iter()
        .map(|result| {
            let result = match result {
                TxnResult::Put { key } => txn_result::Result::Put(kvs::TxnPutResult { key }),
                TxnResult::Delete { deleted } => {
                    txn_result::Result::Delete(kvs::TxnDeleteResult { deleted: to_wire(deleted) })
                }
                TxnResult::Get { key, found } => {
                    txn_result::Result::Get(kvs::TxnGetResult { key, found: found.is_some(), kv: found.map(to_pair) })
                }
                TxnResult::Scan { pairs, more, count } => txn_result::Result::Scan(kvs::TxnScanResult {
                    pairs: pairs.into_iter().map(to_pair).collect(),
                    more,
                    count: to_wire(count),
                }),
            };
            kvs::TxnResult { result: Some(result) }
        })
        .collect();
    kvs::TxnResponse { succeeded: answer.succeeded, revision: to_wire(answer.revision), results }
}

fn to_pair(kv: KeyValue) -> kvs::KeyValuePair {
    let revisions = kv.revisions;
    kvs::KeyValuePair {
        key: kv.key,
        value: kv.value,
        create_revision: to_wire(revisions.create_revision),
        mod_revision: to_wire(revisions.mod_revision),
        version: to_wire(revisions.version),
        lease: to_wire(revisions.lease),
    }
}

/// A number of an answer as int64, which is what kvs.proto has (as the Get and Scan answers
/// do). Revisions and counts are far below i64::MAX; a lease id past it (one given over HTTP
/// could be) goes as its two's complement, and [`from_wire`] makes it whole again.
fn to_wire(number: u64) -> i64 {
    number as i64
}

fn from_wire(number: i64) -> u64 {
    number as u64
}

/// What a transaction did, from the answer a node sent, or what about the answer makes no
/// sense (a result of no kind, a key found without its value).
pub fn from_response(response: kvs::TxnResponse) -> Result<TxnResponse, String> {
    let results = response
        .results
        .into_iter()
        .map(|result| {
            Ok(match result.result {
                Some(txn_result::Result::Put(put)) => TxnResult::Put { key: put.key },
                Some(txn_result::Result::Delete(delete)) => TxnResult::Delete { deleted: from_wire(delete.deleted) },
                Some(txn_result::Result::Get(get)) => {
                    let found = match (get.found, get.kv) {
                        (true, Some(pair)) => Some(from_pair(pair)),
                        (true, None) => return Err(format!("the node found {:?} but did not send it", get.key)),
                        (false, _) => None,
                    };
                    TxnResult::Get { key: get.key, found }
                }
                Some(txn_result::Result::Scan(scan)) => TxnResult::Scan {
                    pairs: scan.pairs.into_iter().map(from_pair).collect(),
                    more: scan.more,
                    count: from_wire(scan.count),
                },
                None => {
                    return Err("the node answered a result of a kind this cete does not know (a newer node?)".into())
                }
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(TxnResponse { succeeded: response.succeeded, revision: from_wire(response.revision), results })
}

fn from_pair(pair: kvs::KeyValuePair) -> KeyValue {
    KeyValue {
        key: pair.key,
        value: pair.value,
        revisions: KeyRevisions {
            create_revision: from_wire(pair.create_revision),
            mod_revision: from_wire(pair.mod_revision),
            version: from_wire(pair.version),
            lease: from_wire(pair.lease),
        },
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn every_kind() -> Txn {
        let compare = |op, target| Compare { key: "k".into(), op, target };
        Txn {
            compare: vec![
                compare(CompareOp::Equal, Target::Value(Bytes::from_static(b"\xff\x00"))),
                compare(CompareOp::NotEqual, Target::Version(3)),
                compare(CompareOp::Less, Target::CreateRevision(4)),
                compare(CompareOp::Greater, Target::ModRevision(5)),
                compare(CompareOp::Equal, Target::Lease(0)),
            ],
            success: vec![
                TxnOp::Put { key: "a".into(), value: Bytes::from_static(b"1"), lease: 7 },
                TxnOp::Delete { key: "b".into() },
                TxnOp::DeletePrefix { prefix: String::new() },
                TxnOp::Get { key: "a".into() },
            ],
            failure: vec![
                TxnOp::Scan { prefix: "p/".into(), limit: Some(2) },
                TxnOp::Scan { prefix: "q/".into(), limit: None },
            ],
        }
    }

    #[test]
    fn a_transaction_comes_back_whole_from_the_wire() {
        let txn = every_kind();
        let request = to_request(txn.clone()).expect("it fits the wire");
        assert_eq!(from_request(request).expect("a valid request"), txn);
    }

    #[test]
    fn an_answer_comes_back_whole_from_the_wire() {
        let revisions = KeyRevisions { create_revision: 2, mod_revision: 9, version: 3, lease: u64::MAX };
        let kv = |key: &str| KeyValue { key: key.into(), value: Bytes::from_static(b"\xfe"), revisions };
        let answer = TxnResponse {
            succeeded: false,
            revision: 9,
            results: vec![
                TxnResult::Put { key: "a".into() },
                TxnResult::Delete { deleted: 3 },
                TxnResult::Get { key: "a".into(), found: Some(kv("a")) },
                TxnResult::Get { key: "gone".into(), found: None },
                TxnResult::Scan { pairs: vec![kv("p/1"), kv("p/2")], more: true, count: 5 },
            ],
        };
        assert_eq!(from_response(to_response(answer.clone())), Ok(answer));
    }

    fn refused(request: kvs::TxnRequest) -> String {
        let status = from_request(request).expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        status.message().to_string()
    }

    #[test]
    fn a_request_that_makes_no_sense_is_refused_saying_where() {
        let op = |op| kvs::TxnOp { op: Some(op) };
        let empty = kvs::TxnRequest {
            success: vec![op(txn_op::Op::Get(kvs::TxnGet { key: "a".into() })), kvs::TxnOp { op: None }],
            ..Default::default()
        };
        assert_eq!(refused(empty), "success operation 1: an operation sets one of put, delete, get, scan");
        let nothing = kvs::TxnRequest {
            failure: vec![op(txn_op::Op::Delete(kvs::TxnDelete { range: None }))],
            ..Default::default()
        };
        assert!(refused(nothing).starts_with("failure operation 0: a delete sets"));
        let negative = kvs::TxnRequest {
            success: vec![op(txn_op::Op::Scan(kvs::TxnScan { prefix: "p".into(), limit: -1 }))],
            ..Default::default()
        };
        assert!(refused(negative).contains("limit must not be negative, not -1"));
        let lease = kvs::TxnRequest {
            success: vec![op(txn_op::Op::Put(kvs::TxnPut { key: "a".into(), value: Bytes::new(), lease: -5 }))],
            ..Default::default()
        };
        assert!(refused(lease).contains("lease must not be negative"));

        let compare = |target: compare::Target, value: &'static [u8], number| kvs::TxnRequest {
            compare: vec![kvs::Compare {
                key: "k".into(),
                target: target.into(),
                op: 0,
                value: Bytes::from_static(value),
                number,
            }],
            ..Default::default()
        };
        assert!(refused(compare(compare::Target::Value, b"", 3)).contains("takes `value`, not `number`"));
        assert!(refused(compare(compare::Target::Version, b"3", 0)).contains("takes `number`, not `value`"));
        assert!(refused(compare(compare::Target::ModRevision, b"", -2))
            .starts_with("compare 0: the mod revision must not be negative"));
        let mut unknown = compare(compare::Target::Value, b"v", 0);
        unknown.compare[0].op = 9;
        assert!(refused(unknown).contains("op 9 is not one of Compare.Op"));
        let mut unknown = compare(compare::Target::Value, b"v", 0);
        unknown.compare[0].target = 12;
        assert!(refused(unknown).contains("target 12 is not one of Compare.Target"));
    }

    #[test]
    fn what_the_wire_cannot_carry_is_not_sent() {
        let scan = Txn { success: vec![TxnOp::Scan { prefix: String::new(), limit: Some(0) }], ..Txn::default() };
        assert!(to_request(scan).unwrap_err().contains("at least 1"));
        let lease = Txn {
            success: vec![TxnOp::Put { key: "a".into(), value: Bytes::new(), lease: u64::MAX }],
            ..Txn::default()
        };
        assert!(to_request(lease).unwrap_err().contains("too large"));
    }

    #[test]
    fn an_answer_that_makes_no_sense_is_told() {
        let found_nothing = kvs::TxnResponse {
            results: vec![kvs::TxnResult {
                result: Some(txn_result::Result::Get(kvs::TxnGetResult { key: "a".into(), found: true, kv: None })),
            }],
            ..Default::default()
        };
        assert!(from_response(found_nothing).unwrap_err().contains("did not send it"));
        let no_kind = kvs::TxnResponse { results: vec![kvs::TxnResult { result: None }], ..Default::default() };
        assert!(from_response(no_kind).is_err());
    }
}
