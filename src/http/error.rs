//! The domain error as an HTTP answer: the status API.md promises and `{"error":"..."}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use cete_actors::CeteError;

#[derive(Debug)]
pub struct HttpError(pub CeteError);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<CeteError> for HttpError {
    fn from(err: CeteError) -> Self {
        HttpError(err)
    }
}

impl From<actix::MailboxError> for HttpError {
    fn from(err: actix::MailboxError) -> Self {
        HttpError(err.into())
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        match self.0 {
            CeteError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            CeteError::NotFound(_) => StatusCode::NOT_FOUND,
            CeteError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            CeteError::Conflict(_) => StatusCode::CONFLICT,
            CeteError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            CeteError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            CeteError::ConditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            CeteError::Compacted { .. } => StatusCode::GONE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = serde_json::json!({ "error": self.0.to_string() });
        match self.0 {
            CeteError::ConditionFailed { mod_revision } => body["mod_revision"] = mod_revision.into(),
            CeteError::Compacted { compact_revision, .. } => body["compact_revision"] = compact_revision.into(),
            _ => {}
        }
        HttpResponse::build(self.status_code()).json(body)
    }
}
