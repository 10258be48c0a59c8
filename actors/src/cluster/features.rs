//! What a cluster turns on only once every member can read it: a log entry that a node of an
//! earlier build cannot decode would stop it applying (and, with enough such nodes, stop the
//! cluster committing) in the middle of a rolling upgrade. A leader asks each member what its
//! build reads ([`crate::cluster::peer::Forwarded::Features`]; a node of an earlier build does not know the question,
//! which counts as no) and proposes the entry only when all of them do.
//!
//! One feature today: revisions ([`crate::store::revisions`]), turned on by the first
//! [`Command::StartRevisions`] in the log.

use std::time::Duration;

use actix::prelude::*;

use crate::cluster::{ClusterActor, MembersRead};
use crate::command::Command;
use crate::routing::{self, RouterActor};
use crate::store::{StoreActor, StoreRevision};

/// The store counts revisions ([`crate::store::revisions`]).
pub const REVISIONS: &str = "revisions";

/// Every feature this build reads: its answer to `Forwarded::Features`.
pub const READ_BY_THIS_BUILD: &[&str] = &[REVISIONS];

/// How often a node whose state has no revisions yet checks whether it may start them.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Starts revisions, once: until the store has them, whenever this node leads and every
/// member reads the entry, propose [`Command::StartRevisions`]. Two leaders may both propose
/// it; the second entry is a no-op where the first was applied.
pub fn start_revisions(store: Addr<StoreActor>, cluster: Addr<ClusterActor>, router: Addr<RouterActor>) {
    actix::spawn(async move {
        loop {
            match store.send(StoreRevision).await {
                Ok(Ok(Some(_))) => return,
                Ok(Ok(None)) => {}
                // The store is stopping or has failed: nothing to start.
                Ok(Err(_)) | Err(_) => return,
            }
            if cluster.send(MembersRead(REVISIONS)).await.unwrap_or(false) {
                match router.send(routing::Write(Command::StartRevisions)).await {
                    Ok(Ok(_)) => log::info!("revisions started"),
                    Ok(Err(e)) => log::warn!("could not start revisions yet: {e}"),
                    Err(_) => return,
                }
            }
            tokio::time::sleep(CHECK_EVERY).await;
        }
    });
}

/// Whether a feature list a peer gave names `feature`.
pub fn names(features: &[String], feature: &str) -> bool {
    features.iter().any(|f| f == feature)
}
