//! The HTTP routes. Each handler parses the request, sends its connection's actor one message
//! and maps the reply.

use actix::Addr;
use actix_web::http::header::{self, ContentType};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use cete_actors::cluster::node::NodeInfo;
use cete_actors::command::Condition;
use cete_actors::connection::backup::TakeBackup;
use cete_actors::connection::*;
use cete_actors::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
use cete_actors::store::ScanRange;
use cete_actors::wire::txn_json;
use cete_actors::CeteError;
use futures::StreamExt;
use serde::Deserialize;
use tokio_stream::wrappers::ReceiverStream;

use super::target::{check_query, PathTail};
use super::{HttpConnection, HttpError};
use crate::stopping::Stopping;

/// The largest JSON body accepted for membership requests.
const MAX_JSON_BYTES: usize = 64 * 1024;

pub struct Limits {
    pub max_value_bytes: usize,
}

pub(super) type Answer = Result<HttpResponse, HttpError>;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/liveness_check").get(liveness).default_service(web::to(method_not_allowed)))
        .service(web::resource("/v1/readiness_check").get(readiness).default_service(web::to(method_not_allowed)))
        .service(web::resource("/v1/node").get(node).default_service(web::to(method_not_allowed)))
        .service(web::resource("/v1/cluster").get(cluster).default_service(web::to(method_not_allowed)))
        .service(web::resource("/v1/status").get(status).default_service(web::to(method_not_allowed)))
        .service(web::resource("/v1/cluster/{id}").put(join).delete(leave).default_service(web::to(method_not_allowed)))
        .service(
            web::resource("/v1/leader/transfer").post(transfer_leader).default_service(web::to(method_not_allowed)),
        )
        .service(web::resource("/v1/snapshot").get(snapshot).default_service(web::to(method_not_allowed)))
        .service(
            web::resource("/v1/data/{key:.*}")
                .get(get_value)
                .put(put_value)
                .delete(delete_value)
                .default_service(web::to(method_not_allowed)),
        )
        .service(web::resource("/v1/scan").get(scan).default_service(web::to(method_not_allowed)))
        .service(web::resource("/v1/txn").post(txn).default_service(web::to(method_not_allowed)))
        .service(web::resource("/v1/watch").get(watch).default_service(web::to(method_not_allowed)))
        .service(web::resource("/v1/metrics").get(metrics).default_service(web::to(method_not_allowed)))
        .service(web::resource("/v1/openapi.json").get(openapi).default_service(web::to(method_not_allowed)))
        .service(web::resource("/v1/backup").get(backup).default_service(web::to(method_not_allowed)))
        .configure(super::leases::configure)
        .configure(super::ui::configure)
        .default_service(web::to(not_found));
}

pub(super) fn connection(req: &HttpRequest) -> Result<Addr<ConnectionActor>, HttpError> {
    req.conn_data::<HttpConnection>()
        .map(|c| c.actor.clone())
        .ok_or_else(|| HttpError(CeteError::Internal("request without a connection".into())))
}

#[derive(Deserialize, Default)]
struct ReadQuery {
    consistency: Option<String>,
    prefix: Option<String>,
}

fn read_query(req: &HttpRequest) -> Result<(Consistency, String), HttpError> {
    check_query(req.query_string())?;
    let query = web::Query::<ReadQuery>::from_query(req.query_string())
        .map_err(|e| CeteError::InvalidArgument(format!("bad query string: {e}")))?
        .into_inner();
    let consistency = match query.consistency.as_deref() {
        None => Consistency::Linearizable,
        Some(name) => name.parse()?,
    };
    Ok((consistency, query.prefix.unwrap_or_default()))
}

/// Reads the body, refusing it as soon as it is over `limit` bytes.
pub(super) async fn read_body(
    mut payload: web::Payload,
    req: &HttpRequest,
    limit: usize,
    what: &str,
) -> Result<Bytes, HttpError> {
    let too_large = |size| HttpError(CeteError::TooLarge { what: what.to_string(), size, limit });
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    if let Some(size) = declared.filter(|size| *size > limit) {
        return Err(too_large(size));
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| CeteError::InvalidArgument(format!("cannot read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(body.len() + chunk.len()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

async fn liveness() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "alive": true }))
}

/// `{"ready":true}`, or 503 `{"ready":false,"reason":"..."}`.
async fn readiness(req: HttpRequest) -> Answer {
    let answer = match connection(&req)?.send(ReadyCheck).await {
        Ok(Ok(())) => HttpResponse::Ok().json(serde_json::json!({ "ready": true })),
        Ok(Err(reason)) => {
            HttpResponse::ServiceUnavailable().json(serde_json::json!({ "ready": false, "reason": reason }))
        }
        Err(e) => {
            HttpResponse::ServiceUnavailable().json(serde_json::json!({ "ready": false, "reason": e.to_string() }))
        }
    };
    Ok(answer)
}

async fn node(req: HttpRequest) -> Answer {
    let node = connection(&req)?.send(NodeStatus).await??;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "node": node })))
}

async fn cluster(req: HttpRequest) -> Answer {
    let cluster = connection(&req)?.send(ClusterStatus).await??;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "cluster": cluster })))
}

/// Every member's Raft progress: term, log, commit and applied indexes, and lag.
async fn status(req: HttpRequest) -> Answer {
    check_query(req.query_string())?;
    Ok(HttpResponse::Ok().json(connection(&req)?.send(RaftProgress).await??))
}

async fn join(req: HttpRequest, PathTail(id): PathTail, payload: web::Payload) -> Answer {
    let body = read_body(payload, &req, MAX_JSON_BYTES, "the join request").await?;
    let node: NodeInfo = serde_json::from_slice(&body)
        .map_err(|e| CeteError::InvalidArgument(format!("the body must be a node as JSON: {e}")))?;
    connection(&req)?.send(JoinNode { id, node }).await??;
    Ok(HttpResponse::Ok().finish())
}

async fn leave(req: HttpRequest, PathTail(id): PathTail) -> Answer {
    connection(&req)?.send(LeaveNode { id }).await??;
    Ok(HttpResponse::Ok().finish())
}

/// `POST /v1/leader/transfer` with `{"id":"node2"}`, or no body for the most up-to-date
/// follower: `{"leader":"node2"}` once it has taken over.
async fn transfer_leader(req: HttpRequest, payload: web::Payload) -> Answer {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Transfer {
        id: Option<String>,
    }
    let body = read_body(payload, &req, MAX_JSON_BYTES, "the transfer request").await?;
    let to = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let transfer: Transfer = serde_json::from_slice(&body)
            .map_err(|e| CeteError::InvalidArgument(format!("the body must be {{\"id\":\"NODE\"}}: {e}")))?;
        transfer.id
    };
    let leader = connection(&req)?.send(TransferLeadership { to }).await??;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "leader": leader })))
}

async fn snapshot(req: HttpRequest) -> Answer {
    connection(&req)?.send(Snapshot).await??;
    Ok(HttpResponse::Ok().finish())
}

/// What to serve a value as when it was stored without a media type: a format `infer` knows
/// by its magic bytes, else text when it is UTF-8 without the control bytes that no text
/// holds (the rule of Go's `http.DetectContentType`, which the Go server served by), else raw
/// bytes: `\x00\x01\x02` is valid UTF-8, but it is not text.
fn detect_content_type(value: &[u8]) -> &'static str {
    if let Some(kind) = infer::get(value) {
        return kind.mime_type();
    }
    let is_binary_byte = |byte: &u8| matches!(byte, 0x00..=0x08 | 0x0B | 0x0E..=0x1A | 0x1C..=0x1F);
    if std::str::from_utf8(value).is_ok() && !value.iter().any(is_binary_byte) {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

/// The store's revision, on every answer that read or wrote at one.
pub(super) const REVISION_HEADER: &str = "X-Cete-Revision";

async fn get_value(req: HttpRequest, PathTail(key): PathTail) -> Answer {
    let (consistency, _) = read_query(&req)?;
    let read = connection(&req)?.send(KvGet { key, consistency }).await??;
    let stored = read.found;
    let content_type = stored.content_type.clone().unwrap_or_else(|| detect_content_type(&stored.value).to_string());
    let mut answer = HttpResponse::Ok();
    answer.insert_header((header::CONTENT_TYPE, content_type));
    if let Some(revision) = read.revision {
        answer.insert_header((REVISION_HEADER, revision.to_string()));
    }
    if let Some(key) = stored.revisions {
        answer
            .insert_header((header::ETAG, etag(key.mod_revision)))
            .insert_header(("X-Cete-Create-Revision", key.create_revision.to_string()))
            .insert_header(("X-Cete-Mod-Revision", key.mod_revision.to_string()))
            .insert_header(("X-Cete-Version", key.version.to_string()));
        if key.lease != 0 {
            answer.insert_header(("X-Cete-Lease", key.lease.to_string()));
        }
    }
    Ok(answer.body(stored.value))
}

async fn put_value(
    req: HttpRequest,
    PathTail(key): PathTail,
    payload: web::Payload,
    limits: web::Data<Limits>,
) -> Answer {
    let value = read_body(payload, &req, limits.max_value_bytes, "the value").await?;
    // curl sends form-urlencoded by default with --data-binary; that says nothing about the value.
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|ct| !ct.is_empty() && !ct.starts_with("application/x-www-form-urlencoded"))
        .map(str::to_string);
    let condition = condition(&req)?;
    let lease = put_query(&req)?;
    let revision = connection(&req)?.send(KvPut { key, value, content_type, condition, lease }).await??;
    let mut answer = HttpResponse::Ok();
    if let Some(revision) = revision {
        // The key's mod revision is the revision of this write.
        answer.insert_header((REVISION_HEADER, revision.to_string())).insert_header((header::ETAG, etag(revision)));
    }
    Ok(answer.finish())
}

/// `?lease=<id>` of a PUT: the lease to attach the key to.
fn put_query(req: &HttpRequest) -> Result<Option<u64>, CeteError> {
    #[derive(Deserialize)]
    struct PutQuery {
        lease: Option<String>,
    }
    check_query(req.query_string())?;
    let query = web::Query::<PutQuery>::from_query(req.query_string())
        .map_err(|e| CeteError::InvalidArgument(format!("bad query string: {e}")))?
        .into_inner();
    query.lease.as_deref().map(super::leases::parse_id).transpose()
}

/// The condition of a conditional write: `If-Match: "<mod_revision>"` (the ETag a GET
/// answered), `If-Match: *` (the key exists) or `If-None-Match: *` (it does not).
fn condition(req: &HttpRequest) -> Result<Option<Condition>, CeteError> {
    let header = |name: header::HeaderName| {
        req.headers()
            .get(&name)
            .map(|value| {
                value.to_str().map(str::trim).map_err(|_| CeteError::InvalidArgument(format!("{name} is not text")))
            })
            .transpose()
    };
    match (header(header::IF_MATCH)?, header(header::IF_NONE_MATCH)?) {
        (Some(_), Some(_)) => Err(CeteError::InvalidArgument("send If-Match or If-None-Match, not both".into())),
        (Some("*"), None) => Ok(Some(Condition::Exists)),
        (Some(tag), None) => {
            let revision = tag.strip_prefix('"').and_then(|t| t.strip_suffix('"')).and_then(|t| t.parse().ok());
            revision.map(|r| Some(Condition::ModRevision(r))).ok_or_else(|| {
                CeteError::InvalidArgument(format!(
                    "If-Match takes one ETag as a GET answers it (\"<mod_revision>\") or *, not {tag:?}"
                ))
            })
        }
        (None, Some("*")) => Ok(Some(Condition::Absent)),
        (None, Some(other)) => Err(CeteError::InvalidArgument(format!("If-None-Match takes only *, not {other:?}"))),
        (None, None) => Ok(None),
    }
}

/// The ETag of a key's value: its mod revision, quoted.
fn etag(mod_revision: u64) -> String {
    format!("\"{mod_revision}\"")
}

async fn delete_value(req: HttpRequest, PathTail(key): PathTail) -> Answer {
    let condition = condition(&req)?;
    let revision = connection(&req)?.send(KvDelete { key, condition }).await??;
    let mut answer = HttpResponse::Ok();
    if let Some(revision) = revision {
        answer.insert_header((REVISION_HEADER, revision.to_string()));
    }
    Ok(answer.finish())
}

/// `GET /v1/scan?prefix=P`: `{"pairs":[{"key":..,"value":..}]}`, a value that is not UTF-8
/// as `"value_base64"`.
async fn scan(req: HttpRequest) -> Answer {
    check_query(req.query_string())?;
    let query = web::Query::<ScanQuery>::from_query(req.query_string())
        .map_err(|e| CeteError::InvalidArgument(format!("bad query string: {e}")))?
        .into_inner();
    let consistency = match query.consistency.as_deref() {
        None => Consistency::Linearizable,
        Some(name) => name.parse()?,
    };
    let limit =
        match query.limit.as_deref() {
            None => None,
            Some(text) => Some(text.parse::<usize>().map_err(|_| {
                CeteError::InvalidArgument(format!("limit must be a whole number of keys, not {text:?}"))
            })?),
        };
    let range = ScanRange {
        prefix: query.prefix.unwrap_or_default(),
        start_after: query.start_after,
        limit,
        keys_only: flag("keys_only", query.keys_only.as_deref())?,
        count_only: flag("count_only", query.count_only.as_deref())?,
    };
    let keys_only = range.keys_only;
    let page = connection(&req)?.send(KvScan { range, consistency }).await??;
    let pairs: Vec<_> = page
        .pairs
        .iter()
        .map(|item| txn_json::pair(&item.key, (!keys_only).then_some(&item.value[..]), item.revisions.as_ref()))
        .collect();
    let mut body = serde_json::json!({ "pairs": pairs, "more": page.more, "count": page.count });
    let mut answer = HttpResponse::Ok();
    if let Some(revision) = page.revision {
        body["revision"] = revision.into();
        answer.insert_header((REVISION_HEADER, revision.to_string()));
    }
    Ok(answer.json(body))
}

/// `POST /v1/txn`: a transaction as JSON ([`txn_json`]), answered
/// `{"succeeded","revision","results"}` with 200 whether its compares held or not.
async fn txn(req: HttpRequest, payload: web::Payload, limits: web::Data<Limits>) -> Answer {
    check_query(req.query_string())?;
    // Its values may be as large as one value, and travel in base64 when they are not text.
    let limit = limits.max_value_bytes.saturating_mul(4) / 3 + MAX_JSON_BYTES;
    let body = read_body(payload, &req, limit, "the transaction").await?;
    let txn = txn_json::parse(&body).map_err(CeteError::InvalidArgument)?;
    let answer = connection(&req)?.send(KvTxn(txn)).await??;
    Ok(HttpResponse::Ok().insert_header((REVISION_HEADER, answer.revision.to_string())).json(txn_json::answer(&answer)))
}

/// The query of `GET /v1/scan`.
#[derive(Deserialize, Default)]
struct ScanQuery {
    consistency: Option<String>,
    prefix: Option<String>,
    limit: Option<String>,
    start_after: Option<String>,
    keys_only: Option<String>,
    count_only: Option<String>,
}

/// A query flag: absent or `false` is off, `true` (or the bare name) is on.
fn flag(name: &str, value: Option<&str>) -> Result<bool, CeteError> {
    match value {
        None | Some("false") => Ok(false),
        Some("true") | Some("") => Ok(true),
        Some(other) => Err(CeteError::InvalidArgument(format!("{name} must be true or false, not {other:?}"))),
    }
}

/// `GET /v1/watch?prefix=P&start_revision=R`: one JSON object per change, one per line, until
/// the client leaves; a client that falls behind gets a final `{"error":..}` line. With
/// `start_revision`, the changes since R come first; R older than the history is 410.
async fn watch(req: HttpRequest, stopping: web::Data<Stopping>) -> Answer {
    #[derive(Deserialize)]
    struct WatchQuery {
        prefix: Option<String>,
        start_revision: Option<String>,
    }
    check_query(req.query_string())?;
    let query = web::Query::<WatchQuery>::from_query(req.query_string())
        .map_err(|e| CeteError::InvalidArgument(format!("bad query string: {e}")))?
        .into_inner();
    let start_revision = match query.start_revision.as_deref() {
        None => None,
        Some(text) => Some(
            text.parse::<u64>()
                .map_err(|_| CeteError::InvalidArgument(format!("start_revision must be a revision, not {text:?}")))?,
        ),
    };
    let prefix = query.prefix.unwrap_or_default();
    let changes = connection(&req)?.send(OpenWatch { prefix, start_revision }).await??;
    let json_line = |json: serde_json::Value| {
        let mut line = json.to_string();
        line.push('\n');
        Ok::<_, actix_web::Error>(Bytes::from(line))
    };
    let lines = ReceiverStream::new(changes).map(move |change| {
        json_line(match change {
            Ok(change) => change.to_json(),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        })
    });
    // A stopping node ends the stream (a graceful stop waits for responses in flight).
    let lines = stopping.cut_off(lines, json_line(serde_json::json!({ "error": "the node is stopping" })));
    Ok(HttpResponse::Ok().content_type("application/x-ndjson").streaming(lines))
}

/// `GET /v1/backup`: a consistent copy of the node's applied state (the snapshot file format,
/// checksummed), streamed as it is read; `X-Cete-Revision` is the revision it was taken at.
async fn backup(req: HttpRequest) -> Answer {
    let backup = connection(&req)?.send(TakeBackup).await??;
    let file = tokio::fs::File::from_std(backup.file);
    let chunks = futures::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut chunk = BytesMut::with_capacity(1 << 16);
        match file.read_buf(&mut chunk).await {
            Ok(0) => None,
            Ok(_) => Some((Ok::<_, actix_web::Error>(chunk.freeze()), file)),
            Err(e) => Some((Err(actix_web::error::ErrorInternalServerError(e)), file)),
        }
    });
    let mut answer = HttpResponse::Ok();
    answer
        .content_type("application/octet-stream")
        .insert_header((header::CONTENT_DISPOSITION, "attachment; filename=\"cete.backup\""));
    if let Some(revision) = backup.revision {
        answer.insert_header((REVISION_HEADER, revision.to_string()));
    }
    Ok(answer.no_chunking(backup.bytes).streaming(chunks))
}

/// The OpenAPI 3 document of every route here (`src/http/openapi.json`, kept in step with
/// this file and `leases.rs` by `tests/openapi.rs`).
const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> HttpResponse {
    HttpResponse::Ok().content_type(ContentType::json()).body(OPENAPI)
}

async fn metrics(req: HttpRequest) -> Answer {
    let text = connection(&req)?.send(RenderMetrics).await??;
    Ok(HttpResponse::Ok().insert_header((header::CONTENT_TYPE, METRICS_CONTENT_TYPE)).body(text))
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    HttpResponse::NotFound()
        .insert_header(ContentType::json())
        .json(serde_json::json!({ "error": format!("no such endpoint: {} {}", req.method(), req.path()) }))
}

pub(super) async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .json(serde_json::json!({ "error": format!("{} is not allowed on {}", req.method(), req.path()) }))
}
