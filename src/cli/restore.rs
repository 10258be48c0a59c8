//! `cete restore FILE`: a new data directory from a backup, offline (as `etcdctl snapshot
//! restore`). It takes the flags, variables and config file of `cete start`, so the node is then
//! started with the same ones; `cete start` on that directory forms a new one-node cluster
//! holding exactly the backup's state, and other nodes join it as usual.

use std::path::PathBuf;
use std::process::ExitCode;

use cete_actors::command::{Member, Metadata};

use super::emit_json;
use crate::config::StartArgs;

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup to restore (`cete backup`, `GET /v1/backup`); checked whole before anything is written
    pub file: PathBuf,
    /// The node to restore: its name, addresses and --data-directory (an empty or new
    /// directory), as `cete start` will be given them
    #[command(flatten)]
    pub node: StartArgs,
}

pub fn run(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    if args.node.peer_grpc_address.is_some() {
        anyhow::bail!(
            "a restore makes a new one-node cluster: --peer-grpc-address is for the nodes that join it afterwards"
        );
    }
    let config = args.node.resolve()?;
    let me = Member {
        name: config.id.clone(),
        raft_address: config.raft_address.clone(),
        metadata: Metadata { grpc_address: config.grpc_address.clone(), http_address: config.http_address.clone() },
    };
    let system = actix_rt::System::new();
    let restored = system.block_on(cete_actors::restore::restore(&args.file, &config.data_directory, me))?;
    emit_json(&serde_json::json!({
        "file": args.file,
        "data_directory": restored.data_directory,
        "id": config.id,
        "revision": restored.revision.unwrap_or(0),
        "keys": restored.keys,
    }))?;
    Ok(ExitCode::SUCCESS)
}
