//! A connection's backup: a consistent, checksummed copy of this node's applied state (data,
//! revisions, leases, client sessions), in the snapshot file format
//! ([`crate::store::snapshot_file`]), taken from a redb read view, so writes go on while it is
//! written. It is written to an unlinked file beside the data, then streamed to the client.

use std::fs::File;

use actix::prelude::*;

use super::ConnectionActor;
use crate::error::{CeteError, CeteResult};
use crate::store::OpenSnapshotView;

/// A backup ready to be sent: the file (already unlinked: it goes when closed) and what it holds.
#[derive(Debug)]
pub struct BackupFile {
    pub file: File,
    pub bytes: u64,
    /// The store's revision it was taken at (None: a store without revisions).
    pub revision: Option<u64>,
    pub keys: u64,
}

/// Take a backup of this node's applied state now.
#[derive(Message)]
#[rtype(result = "CeteResult<BackupFile>")]
pub struct TakeBackup;

impl Handler<TakeBackup> for ConnectionActor {
    type Result = ResponseFuture<CeteResult<BackupFile>>;

    fn handle(&mut self, _: TakeBackup, _: &mut Self::Context) -> Self::Result {
        let handles = self.handles.clone();
        self.serve(async move {
            // As a linearizable read: it holds every write acknowledged before it was asked for.
            super::read_barrier(&handles, super::Consistency::Linearizable).await?;
            let view = handles.store.send(OpenSnapshotView).await??;
            let revision = crate::store::read_revision(&view.txn)?;
            let dir = handles.data_directory.clone();
            let written = tokio::task::spawn_blocking(move || -> std::io::Result<(File, u64, u64)> {
                let temp = tempfile::Builder::new().prefix(".backup-").tempfile_in(&dir)?;
                let keys = crate::store::snapshot_file::write_backup(temp.path(), view)?;
                let file = temp.reopen()?;
                let bytes = file.metadata()?.len();
                // Unlinked now; the open file keeps its bytes until the sending is done.
                drop(temp);
                Ok((file, bytes, keys))
            });
            let (file, bytes, keys) = written
                .await
                .map_err(|e| CeteError::internal("backup", e))?
                .map_err(|e| CeteError::internal("cannot write the backup", e))?;
            log::info!("backup taken at revision {revision:?}: {keys} keys, {bytes} bytes");
            Ok(BackupFile { file, bytes, revision, keys })
        })
    }
}
