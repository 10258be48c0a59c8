//! `cete set KEY [VALUE]`: store a value; without VALUE, all of stdin is the value, so any
//! bytes can be stored (`cete set photo < photo.jpg`).

use std::ffi::OsString;
use std::io::Read;
use std::process::ExitCode;

use anyhow::anyhow;
use cete_proto::kvs::SetRequest;

use super::dial::status_error;
use super::ClientArgs;

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// The key
    pub key: String,
    /// The value; read from stdin when omitted
    pub value: Option<OsString>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: SetArgs) -> anyhow::Result<ExitCode> {
    let value = match args.value {
        Some(value) => value.into_encoded_bytes(),
        None => read_stdin()?,
    };
    let mut client = args.client.connect().await?;
    let request = SetRequest { key: args.key, value: value.into() };
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
