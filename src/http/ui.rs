//! The dashboard at `/ui`: one page, its script and its style, embedded in the binary (no CDN,
//! nothing fetched from elsewhere). The page calls the REST API of the node that served it,
//! from the same origin, so it works over HTTP, HTTPS and mTLS alike.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// Only this node's own page, script, style and API: a value shown in the page can never
/// load or run anything else.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
     img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource(["/ui", "/ui/"]).get(|| asset(INDEX, "text/html; charset=utf-8")))
        .service(web::resource("/ui/app.js").get(|| asset(SCRIPT, "text/javascript; charset=utf-8")))
        .service(web::resource("/ui/app.css").get(|| asset(STYLE, "text/css; charset=utf-8")));
}

async fn asset(body: &'static str, content_type: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        // A node upgraded in place serves its own page at once.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .body(body)
}
