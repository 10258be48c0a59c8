//! The HTTP routes of leases (README, "Leases"): grant, list, read, keep alive, revoke. Lease
//! ids travel in JSON as decimal strings (they are 63-bit numbers, past what a JavaScript
//! number holds exactly), and are accepted as strings or numbers.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use cete_actors::command::lease::LeaseStatus;
use cete_actors::connection::lease::{LeaseGrant, LeaseKeepAlive, LeaseList, LeaseRevoke, LeaseTimeToLive};
use cete_actors::CeteError;
use serde::Deserialize;

use super::routes::{connection, method_not_allowed, read_body, Answer, REVISION_HEADER};
use super::target::PathTail;

const MAX_GRANT_BYTES: usize = 4096;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/v1/leases").post(grant).get(list).default_service(web::to(method_not_allowed)))
        .service(
            web::resource("/v1/leases/{id}/keepalive").put(keep_alive).default_service(web::to(method_not_allowed)),
        )
        .service(
            web::resource("/v1/leases/{id}")
                .get(time_to_live)
                .delete(revoke)
                .default_service(web::to(method_not_allowed)),
        );
}

/// A lease id as JSON has it: a decimal string, or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum JsonId {
    Number(u64),
    Text(String),
}

/// A lease id as a client wrote it, in a path or a body.
pub fn parse_id(text: &str) -> Result<u64, CeteError> {
    text.trim().parse::<u64>().ok().filter(|id| *id != 0 && *id <= i64::MAX as u64).ok_or_else(|| {
        CeteError::InvalidArgument(format!("a lease id is a number from 1 to {}, not {text:?}", i64::MAX))
    })
}

/// `POST /v1/leases` with `{"ttl":seconds}` (and optionally `"id"`): 201
/// `{"id":"<decimal>","ttl":granted}`.
async fn grant(req: HttpRequest, payload: web::Payload) -> Answer {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Grant {
        ttl: i64,
        id: Option<JsonId>,
    }
    let body = read_body(payload, &req, MAX_GRANT_BYTES, "the lease grant").await?;
    let grant: Grant = serde_json::from_slice(&body).map_err(|e| {
        CeteError::InvalidArgument(format!("the body must be {{\"ttl\":SECONDS}} (and optionally \"id\"): {e}"))
    })?;
    let id = match grant.id {
        None => None,
        Some(JsonId::Number(id)) => Some(parse_id(&id.to_string())?),
        Some(JsonId::Text(text)) => Some(parse_id(&text)?),
    };
    let granted = connection(&req)?.send(LeaseGrant { id, ttl_seconds: grant.ttl }).await??;
    let mut answer = HttpResponse::Created();
    if let Some(revision) = granted.revision {
        answer.insert_header((REVISION_HEADER, revision.to_string()));
    }
    Ok(answer.json(serde_json::json!({ "id": granted.id.to_string(), "ttl": granted.ttl_seconds })))
}

fn status_json(status: &LeaseStatus) -> serde_json::Value {
    serde_json::json!({ "id": status.id.to_string(), "ttl": status.ttl_seconds, "remaining": status.remaining_seconds })
}

/// `GET /v1/leases`: `{"leases":[{"id","ttl","remaining"}]}`, by id.
async fn list(req: HttpRequest) -> Answer {
    let leases = connection(&req)?.send(LeaseList).await??;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "leases": leases.iter().map(status_json).collect::<Vec<_>>() })))
}

/// `GET /v1/leases/{id}`: `{"id","ttl","remaining","keys":[...]}`; 404 when gone.
async fn time_to_live(req: HttpRequest, PathTail(id): PathTail) -> Answer {
    let status = connection(&req)?.send(LeaseTimeToLive { id: parse_id(&id)? }).await??;
    let mut body = status_json(&status);
    body["keys"] = status.keys.into();
    Ok(HttpResponse::Ok().json(body))
}

/// `PUT /v1/leases/{id}/keepalive`: `{"id","ttl"}`; 404 once it has expired.
async fn keep_alive(req: HttpRequest) -> Answer {
    let id = parse_id(req.match_info().get("id").unwrap_or_default())?;
    let renewed = connection(&req)?.send(LeaseKeepAlive { ids: vec![id] }).await??;
    match renewed.first().copied().flatten() {
        Some(ttl) => Ok(HttpResponse::Ok().json(serde_json::json!({ "id": id.to_string(), "ttl": ttl }))),
        None => Err(CeteError::lease_not_found(id).into()),
    }
}

/// `DELETE /v1/leases/{id}`: the lease and its keys go at one revision; `{"revision":R}`.
async fn revoke(req: HttpRequest, PathTail(id): PathTail) -> Answer {
    let revision = connection(&req)?.send(LeaseRevoke { id: parse_id(&id)? }).await??;
    let mut answer = HttpResponse::Ok();
    let mut body = serde_json::json!({});
    if let Some(revision) = revision {
        answer.insert_header((REVISION_HEADER, revision.to_string()));
        body["revision"] = revision.into();
    }
    Ok(answer.insert_header(header::ContentType::json()).json(body))
}
