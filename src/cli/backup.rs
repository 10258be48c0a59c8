//! `cete backup FILE`: a consistent, checksummed copy of a running node's applied state (data,
//! revisions, leases), as `etcdctl snapshot save` takes one: streamed over gRPC `Backup` into
//! `FILE.part`, checked whole (every frame and the checksum), then renamed to FILE, so FILE is
//! only ever a complete backup. Prints the revision it was taken at, its keys and size.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context};

use super::dial::status_error;
use super::{emit_json, ClientArgs};

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Where to write the backup (replaced if it exists, only once the new one is whole)
    pub file: PathBuf,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.client.connect().await?;
    let mut chunks = client.backup(()).await.map_err(status_error)?.into_inner();
    let part = args.file.with_extension(match args.file.extension() {
        Some(extension) => format!("{}.part", extension.to_string_lossy()),
        None => "part".into(),
    });
    let mut out = std::fs::File::create(&part).with_context(|| format!("cannot create {}", part.display()))?;
    let (mut revision, mut size, mut written) = (0, 0, 0u64);
    while let Some(chunk) = chunks.message().await.map_err(|s| anyhow!("the backup broke off: {}", status_error(s)))? {
        if written == 0 {
            (revision, size) = (chunk.revision, chunk.size);
        }
        out.write_all(&chunk.data).with_context(|| format!("cannot write {}", part.display()))?;
        written += chunk.data.len() as u64;
    }
    out.sync_all().with_context(|| format!("cannot write {}", part.display()))?;
    let checked = cete_actors::store::snapshot_file::verify(&part);
    let (found_revision, keys) = match (checked, written == size as u64) {
        (Ok(found), true) => found,
        (checked, _) => {
            let _ = std::fs::remove_file(&part);
            let why = checked.err().map_or_else(|| format!("{written} of {size} bytes came"), |e| e.to_string());
            anyhow::bail!(
                "the backup is incomplete or corrupt ({why}); nothing was written to {}",
                args.file.display()
            );
        }
    };
    std::fs::rename(&part, &args.file).with_context(|| format!("cannot write {}", args.file.display()))?;
    emit_json(&serde_json::json!({
        "file": args.file,
        "revision": found_revision.unwrap_or(revision as u64),
        "keys": keys,
        "bytes": written,
    }))?;
    Ok(ExitCode::SUCCESS)
}
