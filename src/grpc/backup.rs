//! `kvs.KVS/Backup`: the connection's actor takes the backup; this streams its file in chunks.

use std::io::Read;
use std::pin::Pin;

use cete_actors::connection::backup::TakeBackup;
use cete_proto::kvs;
use futures::Stream;
use tonic::{Request, Response, Status};

use super::{connection_of, status};

/// Bytes per chunk: well under gRPC's default 4 MiB message limit of clients.
const CHUNK_BYTES: usize = 1 << 20;

pub type BackupStream = Pin<Box<dyn Stream<Item = Result<kvs::BackupChunk, Status>> + Send>>;

pub async fn backup(request: Request<()>) -> Result<Response<BackupStream>, Status> {
    let conn = connection_of(&request)?;
    let backup = conn.send(TakeBackup).await.map_err(|e| status(e.into()))?.map_err(status)?;
    let (revision, size) = (backup.revision.unwrap_or(0) as i64, backup.bytes as i64);
    let (chunks, receiver) = tokio::sync::mpsc::channel(4);
    // Reading a file blocks: a thread of its own feeds the stream.
    tokio::task::spawn_blocking(move || {
        let mut file = backup.file;
        let mut first = true;
        loop {
            let mut data = vec![0u8; CHUNK_BYTES];
            let read = match file.read(&mut data) {
                Ok(0) if !first => return,
                Ok(read) => read,
                Err(e) => {
                    let _ = chunks.blocking_send(Err(Status::internal(format!("cannot read the backup: {e}"))));
                    return;
                }
            };
            data.truncate(read);
            let chunk = match first {
                true => kvs::BackupChunk { data: data.into(), revision, size },
                false => kvs::BackupChunk { data: data.into(), ..Default::default() },
            };
            first = false;
            if chunks.blocking_send(Ok(chunk)).is_err() {
                return;
            }
        }
    });
    Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver)) as BackupStream))
}
