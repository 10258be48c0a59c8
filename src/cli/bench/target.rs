//! The three ways the bench speaks to a store: Cete over gRPC, Cete over its HTTP API, and
//! etcd v3 over its JSON gateway. Each turns "put this key" or "get that key" into one request
//! and any answer but success into a one-line error message.
//!
//! A read of a key that is not there is an error for every target: the reads of a bench go to
//! preloaded keys, so a miss means the store lost or has not yet applied a write.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use cete_proto::kvs::{GetRequest, SetRequest};
use hyper::{Method, StatusCode};
use serde::de::IgnoredAny;
use serde::Deserialize;
use tonic::metadata::MetadataValue;

use super::http::{Answer, BaseUrl, HttpConnection};
use crate::cli::dial::{status_error, Client};
use crate::cli::ClientArgs;
use cete_proto::CONSISTENCY_METADATA;

/// The store under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    Cete,
    /// etcd v3, through its HTTP JSON gateway
    Etcd,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Cete => "cete",
            System::Etcd => "etcd",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    Grpc,
    Http,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Consistency {
    /// Reads see every write acknowledged before they started (leader confirmation)
    Linearizable,
    /// Reads answered from the local copy, possibly stale
    Serializable,
}

impl Consistency {
    pub fn name(self) -> &'static str {
        match self {
            Consistency::Linearizable => "linearizable",
            Consistency::Serializable => "serializable",
        }
    }
}

/// Where one client connects.
#[derive(Debug, Clone)]
pub enum Endpoint {
    CeteGrpc(String),
    CeteHttp(BaseUrl),
    EtcdHttp(BaseUrl),
}

/// One client's connection to the store.
pub enum Connection {
    CeteGrpc(Box<Client>),
    CeteHttp(HttpConnection),
    EtcdHttp(HttpConnection),
}

impl Connection {
    pub async fn open(endpoint: &Endpoint, client: &ClientArgs, timeout: Duration) -> Result<Connection, String> {
        Ok(match endpoint {
            Endpoint::CeteGrpc(address) => {
                Connection::CeteGrpc(Box::new(client.connect_to(address).await.map_err(|err| format!("{err:#}"))?))
            }
            Endpoint::CeteHttp(base) => Connection::CeteHttp(HttpConnection::open(base.clone(), timeout).await?),
            Endpoint::EtcdHttp(base) => Connection::EtcdHttp(HttpConnection::open(base.clone(), timeout).await?),
        })
    }

    pub async fn put(&mut self, key: String, value: &Value) -> Result<(), String> {
        match self {
            Connection::CeteGrpc(client) => {
                let request = SetRequest { key, value: value.raw.clone(), lease: 0 };
                client.set(request).await.map(drop).map_err(|status| status_error(status).to_string())
            }
            Connection::CeteHttp(http) => {
                let path = format!("/v1/data/{key}");
                let answer = http.request(Method::PUT, &path, Some(OCTET_STREAM), value.raw.clone()).await?;
                expect_ok(&answer)
            }
            Connection::EtcdHttp(http) => {
                let body = etcd_put_body(&key, &value.base64);
                let answer = http.request(Method::POST, "/v3/kv/put", Some(JSON), body.into()).await?;
                expect_ok(&answer)
            }
        }
    }

    pub async fn get(&mut self, key: String, consistency: Consistency) -> Result<(), String> {
        match self {
            Connection::CeteGrpc(client) => {
                let mut request = tonic::Request::new(GetRequest { key });
                if consistency == Consistency::Serializable {
                    request.metadata_mut().insert(CONSISTENCY_METADATA, MetadataValue::from_static("serializable"));
                }
                client.get(request).await.map(drop).map_err(|status| status_error(status).to_string())
            }
            Connection::CeteHttp(http) => {
                let path = match consistency {
                    Consistency::Linearizable => format!("/v1/data/{key}"),
                    Consistency::Serializable => format!("/v1/data/{key}?consistency=serializable"),
                };
                let answer = http.request(Method::GET, &path, None, Bytes::new()).await?;
                expect_ok(&answer)
            }
            Connection::EtcdHttp(http) => {
                let body = etcd_range_body(&key, consistency == Consistency::Serializable);
                let answer = http.request(Method::POST, "/v3/kv/range", Some(JSON), body.into()).await?;
                expect_ok(&answer)?;
                etcd_range_found(&answer.body)
            }
        }
    }

    /// Drops a connection whose last request was abandoned (timed out) half way: over HTTP/1.1
    /// its late answer would be read as the next one's. gRPC streams are independent.
    pub fn after_abandoned_request(&mut self) {
        match self {
            Connection::CeteGrpc(_) => {}
            Connection::CeteHttp(http) | Connection::EtcdHttp(http) => http.reset(),
        }
    }
}

/// The value every write sends, raw and as etcd's JSON wants it, encoded once per run.
pub struct Value {
    pub raw: Bytes,
    pub base64: String,
}

impl Value {
    pub fn new(raw: Bytes) -> Value {
        let base64 = BASE64.encode(&raw);
        Value { raw, base64 }
    }
}

const OCTET_STREAM: &str = "application/octet-stream";
const JSON: &str = "application/json";

/// Longest part of an error body quoted in an error message.
const MAX_QUOTED_BODY: usize = 200;

fn expect_ok(answer: &Answer) -> Result<(), String> {
    if answer.status == StatusCode::OK {
        return Ok(());
    }
    let body = String::from_utf8_lossy(&answer.body);
    let body = body.trim();
    let quoted: String = body.chars().take(MAX_QUOTED_BODY).collect();
    Err(format!("HTTP {}: {quoted}", answer.status.as_u16()))
}

/// `PutRequest` of etcd's JSON gateway: bytes fields are base64 strings. Base64 needs no JSON
/// escaping, so the body is assembled directly.
pub fn etcd_put_body(key: &str, value_base64: &str) -> String {
    format!(r#"{{"key":"{}","value":"{value_base64}"}}"#, BASE64.encode(key))
}

/// `RangeRequest` for one key; `serializable` reads skip the leader's confirmation.
pub fn etcd_range_body(key: &str, serializable: bool) -> String {
    let key = BASE64.encode(key);
    if serializable {
        format!(r#"{{"key":"{key}","serializable":true}}"#)
    } else {
        format!(r#"{{"key":"{key}"}}"#)
    }
}

/// The gateway leaves out empty fields: a range that matched nothing has no `kvs`.
fn etcd_range_found(body: &[u8]) -> Result<(), String> {
    #[derive(Deserialize)]
    struct RangeResponse {
        #[serde(default)]
        kvs: Vec<IgnoredAny>,
    }
    let response: RangeResponse =
        serde_json::from_slice(body).map_err(|err| format!("etcd answered something other than JSON: {err}"))?;
    if response.kvs.is_empty() {
        Err("key not found".into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &serde_json::Value) -> Vec<u8> {
        BASE64.decode(text.as_str().expect("a string")).expect("base64")
    }

    #[test]
    fn etcd_put_carries_key_and_value_in_base64() {
        let value = Value::new(Bytes::from_static(b"\x00hello\xff"));
        let json: serde_json::Value = serde_json::from_str(&etcd_put_body("00ff", &value.base64)).expect("JSON");
        assert_eq!(decode(&json["key"]), b"00ff");
        assert_eq!(decode(&json["value"]), b"\x00hello\xff");
        assert_eq!(json.as_object().map(|o| o.len()), Some(2));
    }

    #[test]
    fn etcd_range_is_serializable_only_when_asked() {
        let json: serde_json::Value = serde_json::from_str(&etcd_range_body("k1", true)).expect("JSON");
        assert_eq!(decode(&json["key"]), b"k1");
        assert_eq!(json["serializable"], true);
        let json: serde_json::Value = serde_json::from_str(&etcd_range_body("k1", false)).expect("JSON");
        assert!(json.get("serializable").is_none());
    }

    #[test]
    fn an_etcd_range_without_kvs_is_a_miss() {
        let hit = br#"{"header":{"revision":"3"},"kvs":[{"key":"azE=","value":"dg=="}],"count":"1"}"#;
        assert_eq!(etcd_range_found(hit), Ok(()));
        assert_eq!(etcd_range_found(br#"{"header":{"revision":"3"}}"#), Err("key not found".into()));
        assert!(etcd_range_found(b"<html>").unwrap_err().contains("other than JSON"));
    }

    #[test]
    fn a_failed_http_answer_quotes_status_and_body() {
        let answer =
            Answer { status: StatusCode::SERVICE_UNAVAILABLE, body: Bytes::from(" {\"error\":\"no leader\"}\n") };
        assert_eq!(expect_ok(&answer), Err("HTTP 503: {\"error\":\"no leader\"}".into()));
        let long = Answer { status: StatusCode::BAD_REQUEST, body: Bytes::from("x".repeat(1000)) };
        assert_eq!(expect_ok(&long).unwrap_err().len(), "HTTP 400: ".len() + MAX_QUOTED_BODY);
    }
}
