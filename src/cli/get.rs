//! `cete get KEY`: print the raw value, followed by a newline on a terminal (as the Go `cete`
//! did) and by nothing otherwise, so that `cete get photo > photo.jpg` gives back the bytes
//! stored. A missing key is an error (exit 1) so scripts can tell it from an empty value.
//! `--show-revisions` prints the value with its revisions as one JSON object instead.

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
    /// Print `{"key","value" (or "value_base64"),"create_revision","mod_revision","version",
    /// "lease","revision"}` instead of the raw value
    #[arg(long)]
    pub show_revisions: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: GetArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.client.connect().await?;
    let request = GetRequest { key: args.key.clone() };
    let mut value = match client.get(request).await {
        Ok(response) if args.show_revisions => {
            let got = response.into_inner();
            let mut json = cete_actors::wire::value_json::key_value(&args.key, &got.value);
            let object = json.as_object_mut().expect("an object");
            for (name, number) in [
                ("create_revision", got.create_revision),
                ("mod_revision", got.mod_revision),
                ("version", got.version),
                ("lease", got.lease),
                ("revision", got.revision),
            ] {
                object.insert(name.into(), number.into());
            }
            let mut line = json.to_string().into_bytes();
            line.push(b'\n');
            emit(&line)?;
            return Ok(ExitCode::SUCCESS);
        }
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
