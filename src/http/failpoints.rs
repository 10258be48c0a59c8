//! `/debug/failpoints`: arms the crash and fault points of a failpoints build at run time, as
//! etcd's gofail endpoint does (see `cete_actors::failpoints`). Only in builds with the
//! `failpoints` feature; release builds have neither the points nor this route.
//!
//! - `PUT /debug/failpoints/{name}` with the actions as the body (e.g. `return(skip)`);
//! - `DELETE /debug/failpoints/{name}` disarms it;
//! - `GET /debug/failpoints` lists the armed points as a JSON object.

use actix_web::{web, HttpResponse};
use bytes::Bytes;
use cete_actors::CeteError;

use super::HttpError;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/debug/failpoints").get(list))
        .service(web::resource("/debug/failpoints/{name}").put(arm).delete(disarm));
}

async fn list() -> HttpResponse {
    let armed: serde_json::Map<String, serde_json::Value> =
        fail::list().into_iter().map(|(name, actions)| (name, actions.into())).collect();
    HttpResponse::Ok().json(armed)
}

async fn arm(name: web::Path<String>, body: Bytes) -> Result<HttpResponse, HttpError> {
    let actions = std::str::from_utf8(&body)
        .map_err(|_| CeteError::InvalidArgument("failpoint actions must be UTF-8".into()))?
        .trim();
    fail::cfg(name.as_str(), actions).map_err(|e| CeteError::InvalidArgument(format!("failpoint {name}: {e}")))?;
    log::warn!("failpoint {name} armed: {actions}");
    Ok(HttpResponse::NoContent().finish())
}

async fn disarm(name: web::Path<String>) -> HttpResponse {
    fail::remove(name.as_str());
    HttpResponse::NoContent().finish()
}
