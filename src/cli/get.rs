//! `cete get KEY`: print the raw value, followed by a newline on a terminal (as the Go `cete`
//! did) and by nothing otherwise, so that `cete get photo > photo.jpg` gives back the bytes
//! stored. A missing key is an error (exit 1) so scripts can tell it from an empty value.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::anyhow;
use cete_proto::kvs::GetRequest;

use super::dial::status_error;
use super::{emit, ClientArgs};

#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// The key
    pub key: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: GetArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.client.connect().await?;
    let request = GetRequest { key: args.key.clone() };
    let mut value = match client.get(request).await {
        Ok(response) => response.into_inner().value.to_vec(),
        Err(status) if status.code() == tonic::Code::NotFound => {
            return Err(anyhow!("key not found: {}", args.key));
        }
        Err(status) => return Err(status_error(status)),
    };
    if std::io::stdout().is_terminal() {
        value.push(b'\n');
    }
    emit(&value)?;
    Ok(ExitCode::SUCCESS)
}
