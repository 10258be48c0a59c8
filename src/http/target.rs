//! Keys, node ids and query parameters from the request target, percent-decoded once and
//! strictly.
//!
//! actix decodes the path (and serde_urlencoded the query) lossily: an escape that is not
//! UTF-8 (`%FF`, `%FE`) becomes U+FFFD, so `/v1/data/%FF` and `/v1/data/%FE` would name the
//! same key. Here such a target is refused with 400 instead, as gRPC refuses a key that is not
//! UTF-8; a key is never rewritten.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use cete_actors::CeteError;
use percent_encoding::percent_decode_str;

use super::HttpError;

/// The route's last parameter (`{key}` of `/v1/data/{key}`, `{id}` of `/v1/cluster/{id}`),
/// which takes the rest of the path, decoded from the path exactly as the client sent it.
pub struct PathTail(pub String);

impl FromRequest for PathTail {
    type Error = HttpError;
    type Future = Ready<Result<Self, HttpError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(path_tail(req).map(PathTail).map_err(HttpError))
    }
}

fn path_tail(req: &HttpRequest) -> Result<String, CeteError> {
    let pattern = req.match_pattern().unwrap_or_default();
    let (fixed, parameter) = pattern.split_once('{').unwrap_or((pattern.as_str(), ""));
    let name = parameter.split([':', '}']).next().unwrap_or("parameter");
    // Routing never decodes `%2F`, so the raw path has as many `/` before the parameter as
    // the pattern: the parameter is what follows them.
    let slashes = fixed.matches('/').count();
    let raw = req.uri().path().splitn(slashes + 1, '/').nth(slashes).unwrap_or("");
    decode(raw, name)
}

/// Percent-decodes `raw` once; `what` names it in the error.
fn decode(raw: &str, what: &str) -> Result<String, CeteError> {
    percent_decode_str(raw).decode_utf8().map(|text| text.into_owned()).map_err(|_| {
        CeteError::InvalidArgument(format!(
            "the {what} {raw:?} is not UTF-8 once percent-decoded; keys, prefixes and ids are UTF-8 text"
        ))
    })
}

/// Refuses a query string with a name or value that is not UTF-8 once percent-decoded, before
/// serde_urlencoded would turn it into U+FFFD.
pub fn check_query(query: &str) -> Result<(), CeteError> {
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name, "query parameter name")?;
        decode(value, &format!("query parameter {name}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_that_are_not_utf8_are_refused_not_replaced() {
        assert_eq!(decode("a%2Fb%20c", "key").unwrap(), "a/b c");
        assert_eq!(decode("caf%C3%A9", "key").unwrap(), "café");
        assert!(decode("%FF", "key").is_err());
        assert!(decode("%C3", "key").is_err(), "half a character");
        assert!(check_query("prefix=user%2F&consistency=serializable").is_ok());
        assert!(check_query("prefix=%FE").is_err());
        assert!(check_query("%80=x").is_err());
    }
}
