//! `cete txn [FILE]`: run a transaction read as JSON from FILE (from stdin without FILE, or
//! with `-`), in the shape `POST /v1/txn` takes ([`txn_json`]), and print its answer as
//! pretty JSON, in the shape `POST /v1/txn` answers. It exits 0 once the transaction ran,
//! whichever list ran, as etcdctl does: the failure list's results are an answer, not an
//! error, and `"succeeded"` says which list it was.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use cete_actors::wire::txn_json;

use super::dial::status_error;
use super::{emit_json, ClientArgs};
use crate::grpc::txn;

#[derive(Debug, clap::Args)]
pub struct TxnArgs {
    /// The transaction as JSON; read from stdin when omitted or `-`
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: TxnArgs) -> anyhow::Result<ExitCode> {
    let (source, json) = read(args.file.as_deref())?;
    // Checked before dialling: a mistake in the file is told even with no node to ask.
    let asked = txn_json::parse(&json).map_err(|why| anyhow!("{source}: {why}"))?;
    let request = txn::to_request(asked).map_err(|why| anyhow!("{source}: {why}"))?;
    let mut client = args.client.connect().await?;
    let response = client.txn(request).await.map_err(status_error)?.into_inner();
    let answer = txn::from_response(response).map_err(|why| anyhow!("cannot read the node's answer: {why}"))?;
    emit_json(&txn_json::answer(&answer))?;
    Ok(ExitCode::SUCCESS)
}

/// The transaction's text, and where it came from (for error messages).
fn read(file: Option<&Path>) -> anyhow::Result<(String, Vec<u8>)> {
    match file {
        Some(path) if path != Path::new("-") => {
            let source = path.display().to_string();
            let json = std::fs::read(path).map_err(|err| anyhow!("cannot read {source}: {err}"))?;
            Ok((source, json))
        }
        _ => {
            let mut json = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut json)
                .map_err(|err| anyhow!("cannot read the transaction from stdin: {err}"))?;
            Ok(("stdin".into(), json))
        }
    }
}
