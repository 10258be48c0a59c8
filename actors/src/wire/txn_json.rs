//! A transaction in JSON, as `POST /v1/txn` takes and answers it and `cete txn` reads and
//! prints it (the shapes are in the README, "Transactions").
//!
//! A request: `{"compare":[{"key","target","op","value"}],"success":[OP],"failure":[OP]}`,
//! `target` one of `value`, `version`, `create_revision`, `mod_revision`, `lease`, `op` one
//! of `=`, `!=`, `<`, `>`; an OP one of `{"put":{"key","value","lease"}}`,
//! `{"delete":{"key"}}`, `{"delete":{"prefix"}}`, `{"get":{"key"}}`,
//! `{"scan":{"prefix","limit"}}`. A value goes as `"value"` (text) or `"value_base64"`, and a
//! lease id as a number or its decimal string (as the lease calls answer it).

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::value_json;
use crate::command::txn::{Compare, CompareOp, KeyValue, Target, Txn, TxnOp, TxnResponse, TxnResult};
use crate::command::KeyRevisions;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TxnJson {
    #[serde(default)]
    compare: Vec<CompareJson>,
    #[serde(default)]
    success: Vec<OpJson>,
    #[serde(default)]
    failure: Vec<OpJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompareJson {
    key: String,
    target: String,
    op: String,
    value: Option<Value>,
    value_base64: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum OpJson {
    Put(PutJson),
    Delete(DeleteJson),
    Get(GetJson),
    Scan(ScanJson),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutJson {
    key: String,
    value: Option<String>,
    value_base64: Option<String>,
    lease: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteJson {
    key: Option<String>,
    prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GetJson {
    key: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScanJson {
    #[serde(default)]
    prefix: String,
    limit: Option<u64>,
}

/// The transaction a JSON body describes, or what is wrong with it (for a 400).
pub fn parse(body: &[u8]) -> Result<Txn, String> {
    let json: TxnJson =
        serde_json::from_slice(body).map_err(|e| format!("the body must be a transaction as JSON: {e}"))?;
    let ops = |ops: Vec<OpJson>| ops.into_iter().map(op).collect::<Result<Vec<_>, _>>();
    Ok(Txn {
        compare: json.compare.into_iter().map(compare).collect::<Result<_, _>>()?,
        success: ops(json.success)?,
        failure: ops(json.failure)?,
    })
}

fn compare(json: CompareJson) -> Result<Compare, String> {
    let op = match json.op.as_str() {
        "=" | "==" => CompareOp::Equal,
        "!=" => CompareOp::NotEqual,
        "<" => CompareOp::Less,
        ">" => CompareOp::Greater,
        other => return Err(format!("a compare's op is one of =, !=, <, >, not {other:?}")),
    };
    let number = |what: &str| match (&json.value, &json.value_base64) {
        (Some(value), None) => number(value).ok_or_else(|| format!("a compare of {what} takes a whole number")),
        _ => Err(format!("a compare of {what} takes a number under \"value\"")),
    };
    let target = match json.target.as_str() {
        "value" => Target::Value(match (json.value, json.value_base64) {
            (Some(Value::String(text)), None) => Bytes::from(text),
            (None, Some(encoded)) => decode_base64(&encoded)?,
            _ => return Err("a compare of the value takes a string under \"value\" or \"value_base64\"".into()),
        }),
        "version" => Target::Version(number("version")?),
        "create_revision" => Target::CreateRevision(number("create_revision")?),
        "mod_revision" => Target::ModRevision(number("mod_revision")?),
        "lease" => Target::Lease(number("lease")?),
        other => {
            return Err(format!(
                "a compare's target is one of value, version, create_revision, mod_revision, lease, not {other:?}"
            ))
        }
    };
    Ok(Compare { key: json.key, op, target })
}

fn op(json: OpJson) -> Result<TxnOp, String> {
    Ok(match json {
        OpJson::Put(put) => {
            let value = match (put.value, put.value_base64) {
                (Some(text), None) => Bytes::from(text),
                (None, Some(encoded)) => decode_base64(&encoded)?,
                _ => return Err(format!("the put of {:?} takes \"value\" or \"value_base64\", one of them", put.key)),
            };
            let lease = match &put.lease {
                None => 0,
                Some(lease) => number(lease).ok_or("a put's lease is a lease id (a number or its decimal string)")?,
            };
            TxnOp::Put { key: put.key, value, lease }
        }
        OpJson::Delete(DeleteJson { key: Some(key), prefix: None }) => TxnOp::Delete { key },
        OpJson::Delete(DeleteJson { key: None, prefix: Some(prefix) }) => TxnOp::DeletePrefix { prefix },
        OpJson::Delete(_) => return Err("a delete takes \"key\" or \"prefix\", one of them".into()),
        OpJson::Get(get) => TxnOp::Get { key: get.key },
        OpJson::Scan(scan) => TxnOp::Scan { prefix: scan.prefix, limit: scan.limit },
    })
}

/// A whole number given as a JSON number or as its decimal string.
fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

fn decode_base64(encoded: &str) -> Result<Bytes, String> {
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map(Bytes::from)
        .map_err(|e| format!("value_base64 is not standard base64: {e}"))
}

/// `{"key","value" or "value_base64","create_revision","mod_revision","version","lease"}`:
/// a key as scans and transactions answer it (without revisions while the store has none;
/// without the value when only keys were asked for).
pub fn pair(key: &str, value: Option<&[u8]>, revisions: Option<&KeyRevisions>) -> Value {
    let mut pair = Map::new();
    pair.insert("key".into(), key.into());
    if let Some(value) = value {
        value_json::insert_value(&mut pair, value);
    }
    if let Some(key) = revisions {
        pair.insert("create_revision".into(), key.create_revision.into());
        pair.insert("mod_revision".into(), key.mod_revision.into());
        pair.insert("version".into(), key.version.into());
        pair.insert("lease".into(), key.lease.into());
    }
    Value::Object(pair)
}

fn key_value(kv: &KeyValue) -> Value {
    pair(&kv.key, Some(&kv.value), Some(&kv.revisions))
}

/// `{"succeeded","revision","results":[..]}`, one result per operation run:
/// `{"put":{"key"}}`, `{"delete":{"deleted":N}}`, `{"get":{"key","found",..the pair}}`,
/// `{"scan":{"pairs","more","count"}}`.
pub fn answer(response: &TxnResponse) -> Value {
    let results: Vec<Value> = response
        .results
        .iter()
        .map(|result| match result {
            TxnResult::Put { key } => serde_json::json!({ "put": { "key": key } }),
            TxnResult::Delete { deleted } => serde_json::json!({ "delete": { "deleted": deleted } }),
            TxnResult::Get { key, found: None } => serde_json::json!({ "get": { "key": key, "found": false } }),
            TxnResult::Get { found: Some(kv), .. } => {
                let mut get = key_value(kv);
                get["found"] = true.into();
                serde_json::json!({ "get": get })
            }
            TxnResult::Scan { pairs, more, count } => serde_json::json!({
                "scan": { "pairs": pairs.iter().map(key_value).collect::<Vec<_>>(), "more": more, "count": count }
            }),
        })
        .collect();
    serde_json::json!({ "succeeded": response.succeeded, "revision": response.revision, "results": results })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_reads_as_the_readme_writes_it() {
        let body = br#"{
            "compare": [
                {"key": "a", "target": "mod_revision", "op": "=", "value": 4},
                {"key": "b", "target": "value", "op": "!=", "value_base64": "/9j/"},
                {"key": "c", "target": "lease", "op": ">", "value": "7"}
            ],
            "success": [
                {"put": {"key": "a", "value": "1", "lease": "12"}},
                {"delete": {"prefix": "tmp/"}},
                {"scan": {"prefix": "p/", "limit": 2}}
            ],
            "failure": [{"get": {"key": "a"}}, {"delete": {"key": "b"}}]
        }"#;
        let txn = parse(body).unwrap();
        assert_eq!(txn.compare[0].target, Target::ModRevision(4));
        assert_eq!(txn.compare[1].target, Target::Value(Bytes::from_static(b"\xff\xd8\xff")));
        assert_eq!((txn.compare[2].op, &txn.compare[2].target), (CompareOp::Greater, &Target::Lease(7)));
        assert_eq!(txn.success[0], TxnOp::Put { key: "a".into(), value: Bytes::from("1"), lease: 12 });
        assert_eq!(txn.success[1], TxnOp::DeletePrefix { prefix: "tmp/".into() });
        assert_eq!(txn.failure[1], TxnOp::Delete { key: "b".into() });
    }

    #[test]
    fn what_is_not_a_transaction_is_told_plainly() {
        for (body, says) in [
            (&br#"{"compare":[{"key":"a","target":"size","op":"=","value":1}]}"#[..], "target"),
            (br#"{"compare":[{"key":"a","target":"version","op":"~","value":1}]}"#, "op"),
            (br#"{"compare":[{"key":"a","target":"version","op":"=","value":"x"}]}"#, "whole number"),
            (br#"{"success":[{"put":{"key":"a"}}]}"#, "value"),
            (br#"{"success":[{"delete":{"key":"a","prefix":"b"}}]}"#, "one of them"),
            (br#"{"success":[{"rename":{"key":"a"}}]}"#, "unknown variant"),
            (br#"{"success":[{"put":{"key":"a","value_base64":"!"}}]}"#, "base64"),
            (br#"{"sucess":[]}"#, "unknown field"),
        ] {
            let error = parse(body).unwrap_err();
            assert!(error.contains(says), "{} answered {error:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn an_answer_keeps_every_byte() {
        let revisions = KeyRevisions { create_revision: 1, mod_revision: 2, version: 2, lease: 0 };
        let response = TxnResponse {
            succeeded: true,
            revision: 9,
            results: vec![
                TxnResult::Get {
                    key: "k".into(),
                    found: Some(KeyValue { key: "k".into(), value: Bytes::from_static(b"\xff"), revisions }),
                },
                TxnResult::Get { key: "m".into(), found: None },
            ],
        };
        assert_eq!(
            answer(&response).to_string(),
            r#"{"succeeded":true,"revision":9,"results":[{"get":{"key":"k","value_base64":"/w==","create_revision":1,"mod_revision":2,"version":2,"lease":0,"found":true}},{"get":{"key":"m","found":false}}]}"#
        );
    }
}
