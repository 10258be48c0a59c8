//! `cete delete KEY`: delete a key.

use std::process::ExitCode;

use cete_proto::kvs::DeleteRequest;

use super::dial::status_error;
use super::ClientArgs;

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The key
    pub key: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.client.connect().await?;
    client.delete(DeleteRequest { key: args.key }).await.map_err(status_error)?;
    Ok(ExitCode::SUCCESS)
}
