//! The one error type of Cete's domain. Front doors map it once: to an HTTP status with a
//! JSON body, and to a gRPC status.

use serde::{Deserialize, Serialize};

/// Everything that can go wrong serving a request, by what the client should make of it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CeteError {
    /// The request itself is wrong (empty key, malformed body, bad address): HTTP 400.
    #[error("{0}")]
    InvalidArgument(String),
    /// The key or node does not exist: HTTP 404.
    #[error("{0}")]
    NotFound(String),
    /// A value or body over the configured limit: HTTP 413.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { what: String, size: usize, limit: usize },
    /// The request conflicts with the cluster's state (e.g. joining a node that holds data): HTTP 409.
    #[error("{0}")]
    Conflict(String),
    /// No leader, not ready, shutting down, or overloaded; retrying later may work: HTTP 503.
    #[error("{0}")]
    Unavailable(String),
    /// A real fault inside the node (storage, a bug): HTTP 500.
    #[error("{0}")]
    Internal(String),
    /// A conditional write whose condition did not hold; nothing changed. The key's mod
    /// revision (0: it does not exist): HTTP 412.
    #[error("the condition did not hold: the key's mod revision is {mod_revision}{}", if *.mod_revision == 0 { " (it does not exist)" } else { "" })]
    ConditionFailed { mod_revision: u64 },
    /// A watch from a revision older than the history keeps ([`crate::store::history`]): HTTP
    /// 410, gRPC OUT_OF_RANGE. The oldest revision kept.
    #[error("revision {asked} is compacted: the history starts at revision {compact_revision}")]
    Compacted { asked: u64, compact_revision: u64 },
}

impl CeteError {
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        CeteError::Internal(format!("{context}: {err}"))
    }

    pub fn unavailable(context: &str, err: impl std::fmt::Display) -> Self {
        CeteError::Unavailable(format!("{context}: {err}"))
    }

    /// A lease that does not exist (any more): every door answers it as not found.
    pub fn lease_not_found(id: u64) -> Self {
        CeteError::NotFound(format!("lease {id} not found (it expired, was revoked, or never was)"))
    }
}

impl From<actix::MailboxError> for CeteError {
    fn from(err: actix::MailboxError) -> Self {
        CeteError::unavailable("the node is busy or shutting down", err)
    }
}

pub type CeteResult<T> = Result<T, CeteError>;
