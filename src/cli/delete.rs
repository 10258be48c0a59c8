//! `cete delete KEY`: delete a key; with `--if-revision R`, only if its mod revision is R
//! (otherwise nothing is deleted and it exits non-zero, saying the key's mod revision).

use std::process::ExitCode;

use cete_proto::kvs::DeleteRequest;
use cete_proto::IF_MOD_REVISION_METADATA;

use super::dial::status_error;
use super::ClientArgs;

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The key
    pub key: String,
    /// Delete it only if the key's mod revision is R
    #[arg(long, value_name = "R")]
    pub if_revision: Option<u64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.client.connect().await?;
    let mut request = tonic::Request::new(DeleteRequest { key: args.key });
    if let Some(revision) = args.if_revision {
        request.metadata_mut().insert(IF_MOD_REVISION_METADATA, revision.into());
    }
    client.delete(request).await.map_err(status_error)?;
    Ok(ExitCode::SUCCESS)
}
