//! The HTTP front door (actix-web): API.md's REST paths, plus `/v1/watch` (NDJSON) and
//! `/v1/scan`.
//!
//! Every connection gets its own ConnectionActor, started on the worker that accepted it and
//! stopped when the connection's extensions are dropped. Handlers parse, send the actor one
//! message, and map the reply; [`HttpError`] maps the domain error to a status and a JSON body.

mod error;
#[cfg(feature = "failpoints")]
mod failpoints;
mod leases;
mod routes;
mod target;
mod ui;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::body::BoxBody;
use actix_web::dev::{Extensions, Service, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};
use actix_web::{web, App, HttpServer};
use cete_actors::connection::{CloseConnection, ConnectionActor, NodeHandles};
use cete_actors::metrics::{LATENCY, REQUESTS};
use futures::FutureExt;

pub use self::error::HttpError;
use crate::stopping::Stopping;

/// The connection's actor, kept in the connection's extensions; dropping it (when the
/// connection closes) stops the actor.
pub struct HttpConnection {
    pub actor: Addr<ConnectionActor>,
}

impl Drop for HttpConnection {
    fn drop(&mut self) {
        self.actor.do_send(CloseConnection);
    }
}

fn on_connect(handles: &NodeHandles, io: &dyn std::any::Any, extensions: &mut Extensions) {
    let peer: Option<SocketAddr> =
        io.downcast_ref::<actix_web::rt::net::TcpStream>().and_then(|stream| stream.peer_addr().ok());
    let actor = ConnectionActor::new(handles.clone(), "http", peer).start();
    extensions.insert(HttpConnection { actor });
}

/// The failpoints of a failpoints build (none in a release build).
fn debug_routes(_cfg: &mut web::ServiceConfig) {
    #[cfg(feature = "failpoints")]
    failpoints::configure(_cfg);
}

/// Gives every error answer the JSON body API.md promises, also one that actix made itself
/// (an extractor or middleware failing) with a text body or none. Errors the HTTP/1 parser
/// answers before a request exists (a malformed request line or header, a request head over
/// 128 KiB) never get here: actix sends those as they are, with no body.
fn json_error_body<B>(answer: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = answer
        .response()
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(answer.map_into_left_body()));
    }
    let status = answer.status();
    let message = match answer.response().error() {
        Some(err) => err.to_string(),
        None => status.canonical_reason().unwrap_or("the request failed").to_string(),
    };
    let (req, response) = answer.into_parts();
    let mut response = response.set_body(BoxBody::new(serde_json::json!({ "error": message }).to_string()));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(ErrorHandlerResponse::Response(ServiceResponse::new(req, response).map_into_right_body()))
}

/// Binds `listen` and returns the server, ready to be awaited (and stopped by its handle).
pub fn serve(
    listen: SocketAddr,
    handles: NodeHandles,
    tls: Option<rustls::ServerConfig>,
    stopping: &Stopping,
) -> anyhow::Result<actix_web::dev::Server> {
    let max_value_bytes = handles.max_value_bytes;
    let connect_handles = handles.clone();
    let stopping = web::Data::new(stopping.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(routes::Limits { max_value_bytes }))
            .app_data(stopping.clone())
            .wrap_fn(|req, service| {
                let endpoint = req.match_pattern().unwrap_or_else(|| "unmatched".to_string());
                let started = Instant::now();
                service.call(req).map(move |result| {
                    if let Ok(response) = &result {
                        let status = response.status();
                        REQUESTS.with_label_values(&["http", &endpoint, status.as_str()]).inc();
                        LATENCY.with_label_values(&["http", &endpoint]).observe(started.elapsed().as_secs_f64());
                    }
                    result
                })
            })
            .configure(routes::configure)
            .configure(debug_routes)
            .wrap(ErrorHandlers::new().default_handler(json_error_body))
    })
    .on_connect(move |io, extensions| on_connect(&connect_handles, io, extensions))
    // A client that closes its connection while it waits has hung up: end the connection (and
    // with it the connection actor, which gives up the requests' waits) instead of reading
    // the EOF as a half-close and serving the request for nobody.
    .h1_allow_half_closed(false)
    .keep_alive(Duration::from_secs(75))
    .client_request_timeout(Duration::from_secs(30))
    .disable_signals()
    .shutdown_timeout(5);
    let server = match tls {
        Some(config) => server.bind_rustls_0_23(listen, config)?,
        None => server.bind(listen)?,
    };
    Ok(server.run())
}
