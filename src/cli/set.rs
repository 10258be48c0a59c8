//! `cete set KEY [VALUE]`: store a value; without VALUE, all of stdin is the value, so any
//! bytes can be stored (`cete set photo < photo.jpg`). `--if-revision R`, `--if-absent` and
//! `--if-exists` make it conditional (compare-and-swap): when the key does not meet the
//! condition nothing is stored and it exits non-zero, saying the key's mod revision.
//! `--lease ID` attaches the key to a lease.

use std::ffi::OsString;
use std::io::Read;
use std::process::ExitCode;

use anyhow::anyhow;
use cete_proto::kvs::SetRequest;
use cete_proto::{IF_ABSENT_METADATA, IF_EXISTS_METADATA, IF_MOD_REVISION_METADATA};

use super::dial::status_error;
use super::ClientArgs;

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// The key
    pub key: String,
    /// The value; read from stdin when omitted
    pub value: Option<OsString>,
    /// Store it only if the key's mod revision is R (0: only if it does not exist)
    #[arg(long, value_name = "R", group = "condition")]
    pub if_revision: Option<u64>,
    /// Store it only if the key does not exist
    #[arg(long, group = "condition")]
    pub if_absent: bool,
    /// Store it only if the key exists
    #[arg(long, group = "condition")]
    pub if_exists: bool,
    /// Attach the key to this lease (it is deleted when the lease expires or is revoked)
    #[arg(long, value_name = "ID")]
    pub lease: Option<i64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: SetArgs) -> anyhow::Result<ExitCode> {
    let value = match args.value {
        Some(value) => value.into_encoded_bytes(),
        None => read_stdin()?,
    };
    let mut client = args.client.connect().await?;
    let mut request =
        tonic::Request::new(SetRequest { key: args.key, value: value.into(), lease: args.lease.unwrap_or(0) });
    let condition = match (args.if_revision, args.if_absent, args.if_exists) {
        (Some(revision), ..) => Some((IF_MOD_REVISION_METADATA, revision.to_string())),
        (None, true, _) => Some((IF_ABSENT_METADATA, "true".to_string())),
        (None, false, true) => Some((IF_EXISTS_METADATA, "true".to_string())),
        (None, false, false) => None,
    };
    if let Some((name, value)) = condition {
        request.metadata_mut().insert(name, value.parse().expect("ASCII"));
    }
    client.set(request).await.map_err(status_error)?;
    Ok(ExitCode::SUCCESS)
}

fn read_stdin() -> anyhow::Result<Vec<u8>> {
    let mut value = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut value)
        .map_err(|err| anyhow!("cannot read the value from stdin: {err}"))?;
    Ok(value)
}
