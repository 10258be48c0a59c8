//! The command line of the `cete` binary: one subcommand per file in this directory.
//!
//! `cete start` runs a node; its flags live in [`crate::config`] and `main` handles it. Every
//! other subcommand is a small gRPC client of a running node: it dials `--grpc-address`
//! ([`dial`]), makes one call (or follows the watch stream) and prints the answer for people
//! and scripts. Failures come back as one-line errors for `main` to print.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;

mod backup;
mod bench;
mod cluster;
mod delete;
mod dial;
mod get;
mod healthcheck;
mod join;
mod leader;
mod lease;
mod leave;
mod lock;
mod metrics;
mod node;
pub mod restore;
mod scan;
mod set;
mod snapshot;
mod status;
mod txn;
mod version;
mod watch;

/// Cete: a strongly consistent, Raft-replicated key-value store.
#[derive(Debug, clap::Parser)]
#[command(name = "cete", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
// Parsed once per process: keeping `start`'s many flags inline costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run a node
    Start(crate::config::StartArgs),
    /// Print this node as JSON
    Node(ClientArgs),
    /// Print the cluster as JSON
    Cluster(ClientArgs),
    /// Print liveness and readiness as JSON; exit non-zero when not ready
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Store a value (read from stdin when VALUE is omitted)
    Set(set::SetArgs),
    /// Print the raw value of a key
    Get(get::GetArgs),
    /// Delete a key
    Delete(delete::DeleteArgs),
    /// List keys and values under a prefix, one JSON object per line
    Scan(scan::ScanArgs),
    /// Run a transaction read as JSON from FILE or stdin, and print its answer as JSON
    ///
    /// The transaction is {"compare":[..],"success":[..],"failure":[..]}, each compare
    /// {"key","target","op","value"} (target value, version, create_revision, mod_revision
    /// or lease; op =, !=, <, >), each operation {"put":{"key","value"}}, {"delete":{"key"}},
    /// {"delete":{"prefix"}}, {"get":{"key"}} or {"scan":{"prefix","limit"}}; a value that is
    /// not text goes as "value_base64". The success list runs if every compare holds, else the
    /// failure list.
    ///
    /// It exits 0 once the transaction ran, whichever list ran: "succeeded" in the answer says
    /// which (`cete txn t.json | jq -e .succeeded` tests it). A transaction the node refuses,
    /// or one that cannot be read, exits 1.
    Txn(txn::TxnArgs),
    /// Add the node listening on GRPC_ADDRESS to the cluster, under the name ID
    Join(join::JoinArgs),
    /// Remove a node from the cluster
    Leave(leave::LeaveArgs),
    /// Move the leadership (`cete leader transfer [ID]`)
    Leader(leader::LeaderArgs),
    /// Make the node take a Raft snapshot now
    Snapshot(ClientArgs),
    /// Write a consistent, checksummed backup of the node's state (data, revisions, leases) to FILE
    Backup(backup::BackupArgs),
    /// Print every member's Raft progress (term, last log, commit and applied index, lag) as JSON
    Status(ClientArgs),
    /// Build a new data directory from a backup, offline: the node started on it forms a new one-node cluster holding exactly that state
    Restore(restore::RestoreArgs),
    /// Leases: grant, revoke, keepalive, get, list
    Lease(lease::LeaseArgs),
    /// Run COMMAND while holding the lock NAME (`cete lock NAME -- COMMAND [ARGS...]`)
    ///
    /// Waiters are served in the order they came. The lock is held through a lease, kept
    /// alive while COMMAND runs and revoked when it exits; if the holder dies, the lock is
    /// released once the lease's TTL runs out. It exits with COMMAND's status (128 + the
    /// signal that killed it), or 1 if the lock was lost while COMMAND ran (COMMAND is then
    /// killed). Interrupted while waiting, it leaves the queue; interrupted while COMMAND
    /// runs, it gives COMMAND 5 s to exit before killing it (a second interrupt kills it at
    /// once), and releases the lock once COMMAND has exited.
    /// COMMAND finds its waiter key (`__cete_lock/NAME/<lease id>`) in CETE_LOCK_KEY and the
    /// lease in CETE_LOCK_LEASE.
    Lock(lock::LockArgs),
    /// Stream every change (set, delete, join, leave) as JSON lines
    Watch(watch::WatchArgs),
    /// Print the Prometheus metrics text
    Metrics(ClientArgs),
    /// Print the version
    Version,
    /// Put load on a running cluster (or on etcd) and report throughput and latency
    Bench(bench::BenchArgs),
}

/// How a client subcommand reaches a node. Flags only: clients read no environment or file.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// gRPC address of the node; `:9000` means this host
    #[arg(long, visible_alias = "grpc-addr", value_name = "ADDRESS", default_value = ":9000")]
    pub grpc_address: String,

    /// CA certificate (PEM) to verify the node's TLS certificate with; enables TLS
    #[arg(long, value_name = "FILE")]
    pub certificate_file: Option<PathBuf>,

    /// The name the node's certificate was issued for [default: localhost for `:port`,
    /// else the host dialled]
    #[arg(long, value_name = "NAME")]
    pub common_name: Option<String>,

    /// Client certificate (PEM) to present to a node that asks for one (--client-ca-file)
    #[arg(long, value_name = "FILE", requires_all = ["certificate_file", "client_key_file"])]
    pub client_certificate_file: Option<PathBuf>,

    /// Private key (PEM) of --client-certificate-file
    #[arg(long, value_name = "FILE", requires = "client_certificate_file")]
    pub client_key_file: Option<PathBuf>,
}

/// Runs a client subcommand and returns the process's exit code.
///
/// `main` matches [`Command::Start`] first and runs the node itself; handed `Start`, this
/// returns an error rather than starting a node from the wrong place. An `Err` is a one-line
/// message meant for stderr (print it with `{:#}`), after which the process exits with 1.
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Start(_) | Command::Restore(_) => {
            anyhow::bail!("`cete start` and `cete restore` are run by main, not by the client commands")
        }
        Command::Node(args) => node::run(args).await,
        Command::Cluster(args) => cluster::run(args).await,
        Command::Healthcheck(args) => healthcheck::run(args).await,
        Command::Set(args) => set::run(args).await,
        Command::Get(args) => get::run(args).await,
        Command::Delete(args) => delete::run(args).await,
        Command::Scan(args) => scan::run(args).await,
        Command::Txn(args) => txn::run(args).await,
        Command::Join(args) => join::run(args).await,
        Command::Leave(args) => leave::run(args).await,
        Command::Leader(args) => leader::run(args).await,
        Command::Snapshot(args) => snapshot::run(args).await,
        Command::Backup(args) => backup::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Lease(args) => lease::run(args).await,
        Command::Lock(args) => lock::run(args).await,
        Command::Watch(args) => watch::run(args).await,
        Command::Metrics(args) => metrics::run(args).await,
        Command::Version => version::run(),
        Command::Bench(args) => bench::run(args).await,
    }
}

/// Writes `bytes` to stdout and flushes them, so a reader sees each line as it comes.
///
/// Returns `false` when the reader has closed the pipe (`cete watch | head -1`): that ends the
/// output but is not a failure. Nothing here uses `println!`, which panics on a closed pipe.
fn emit(bytes: &[u8]) -> anyhow::Result<bool> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(true),
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(err) => Err(anyhow!("cannot write to stdout: {err}")),
    }
}

/// Prints `value` as pretty JSON followed by a newline.
fn emit_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut text =
        serde_json::to_string_pretty(value).map_err(|err| anyhow!("cannot encode the answer as JSON: {err}"))?;
    text.push('\n');
    emit(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn grpc_addr_is_an_alias_and_the_default_is_local() {
        let Command::Node(args) = Cli::parse_from(["cete", "node", "--grpc-addr", ":9001"]).command else {
            panic!("not node");
        };
        assert_eq!(args.grpc_address, ":9001");
        let Command::Node(args) = Cli::parse_from(["cete", "node"]).command else {
            panic!("not node");
        };
        assert_eq!(args.grpc_address, ":9000");
    }

    #[test]
    fn join_takes_an_id_and_the_new_node_address() {
        let cli = Cli::parse_from(["cete", "join", "--grpc-address", ":9000", "node2", ":9001"]);
        let Command::Join(args) = cli.command else {
            panic!("not join");
        };
        assert_eq!((args.id.as_str(), args.node_grpc_address.as_str()), ("node2", ":9001"));
        assert_eq!(args.client.grpc_address, ":9000");
    }

    #[test]
    fn leader_transfer_names_its_target_or_leaves_the_choice_to_the_leader() {
        let cli = Cli::parse_from(["cete", "leader", "transfer", "node2", "--grpc-address", ":9001"]);
        let Command::Leader(leader::LeaderArgs { command: leader::LeaderCommand::Transfer(args) }) = cli.command else {
            panic!("not leader transfer");
        };
        assert_eq!((args.id.as_deref(), args.client.grpc_address.as_str()), (Some("node2"), ":9001"));
        let cli = Cli::parse_from(["cete", "leader", "transfer"]);
        let Command::Leader(leader::LeaderArgs { command: leader::LeaderCommand::Transfer(args) }) = cli.command else {
            panic!("not leader transfer");
        };
        assert!(args.id.is_none());
    }

    #[test]
    fn set_value_is_optional_and_scan_prefix_defaults_to_everything() {
        let Command::Set(args) = Cli::parse_from(["cete", "set", "k"]).command else {
            panic!("not set");
        };
        assert!(args.value.is_none());
        let Command::Scan(args) = Cli::parse_from(["cete", "scan"]).command else {
            panic!("not scan");
        };
        assert_eq!(args.prefix, "");
    }

    #[test]
    fn txn_reads_a_file_or_stdin() {
        let Command::Txn(args) = Cli::parse_from(["cete", "txn", "t.json", "--grpc-address", ":9001"]).command else {
            panic!("not txn");
        };
        assert_eq!((args.file.as_deref(), args.client.grpc_address.as_str()), (Some("t.json".as_ref()), ":9001"));
        let Command::Txn(args) = Cli::parse_from(["cete", "txn"]).command else {
            panic!("not txn");
        };
        assert!(args.file.is_none());
    }

    #[test]
    fn lock_takes_the_command_after_a_double_dash() {
        let cli = Cli::parse_from(["cete", "lock", "jobs", "--ttl", "5", "--", "sh", "-c", "exit 3", "--ttl"]);
        let Command::Lock(args) = cli.command else {
            panic!("not lock");
        };
        assert_eq!((args.name.as_str(), args.ttl), ("jobs", 5));
        assert_eq!(args.command, ["sh", "-c", "exit 3", "--ttl"]);
        let Command::Lock(args) = Cli::parse_from(["cete", "lock", "jobs", "--", "true"]).command else {
            panic!("not lock");
        };
        assert_eq!((args.ttl, args.client.grpc_address.as_str()), (10, ":9000"));
        assert!(Cli::try_parse_from(["cete", "lock", "jobs"]).is_err(), "a command is required");
        assert!(Cli::try_parse_from(["cete", "lock", "jobs", "true"]).is_err(), "the command follows --");
    }
}
