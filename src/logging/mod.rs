//! Logging through `log` + env_logger: `--log-level` sets the level, `RUST_LOG` (when set)
//! adds per-module filters on top, and `--log-file` sends the log to a rotating file instead of
//! stderr.
//!
//! The file is rotated before a record would take it past `--log-max-size` megabytes; rotated
//! files (backups) are named `<log file>.<UTC time>[.N]`, gzipped when `--log-compress`, and
//! deleted past either `--log-max-backups` files or `--log-max-age` days. [`rotation`] is the
//! writer that renames and prunes, inside the log call that crossed the limit; [`compression`]
//! gzips backups on a thread of its own, so that no log call waits for it.

mod compression;
mod rotation;

use std::io::Write;
use std::time::Duration;

use crate::config::Config;

/// The Go server's rotating writer (lumberjack) read a maximum size of 0 as its own default of
/// 100 MB; a config carried over from it keeps meaning the same.
const ZERO_MAX_SIZE_MEANS_MB: u64 = 100;

pub fn init(config: &Config) -> anyhow::Result<()> {
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(&config.log_level.to_ascii_lowercase());
    // openraft narrates every election and heartbeat at INFO; keep it to warnings unless the
    // operator asked for DEBUG or TRACE.
    if matches!(config.log_level.as_str(), "ERROR" | "WARN" | "INFO") {
        builder.filter_module("openraft", log::LevelFilter::Warn);
        // Its replication reports every failed heartbeat to an unreachable peer (several
        // lines a second); the ClusterActor logs each change of a peer's reachability instead.
        builder.filter_module("openraft::replication", log::LevelFilter::Off);
        builder.filter_module("openraft::engine::handler::replication_handler", log::LevelFilter::Off);
        // openraft 0.10's heartbeat worker does the same, ten times a second per peer.
        builder.filter_module("openraft::core::heartbeat", log::LevelFilter::Off);
        // The Raft log's WAL reports every flush at INFO (its payload cache moving on), from
        // its flush thread between the fsync and the callback that acknowledges the writes:
        // a formatted line and a write() per Raft round, on the path of every write.
        builder.filter_module("raft_log", log::LevelFilter::Warn);
        builder.filter_module("chunked_wal", log::LevelFilter::Warn);
    }
    if let Ok(filters) = std::env::var("RUST_LOG") {
        builder.parse_filters(&filters);
    }
    builder.format(|out, record| {
        writeln!(
            out,
            "{} {:<5} {}: {}",
            out.timestamp_millis(),
            record.level(),
            record.module_path().unwrap_or(""),
            record.args()
        )
    });
    if let Some(path) = &config.log_file {
        let writer = rotation::rotating_writer(
            path,
            max_bytes(config.log_max_size_mb),
            config.log_max_backups,
            max_age(config.log_max_age_days),
            config.log_compress,
        )?;
        builder.target(env_logger::Target::Pipe(Box::new(writer)));
    }
    let logger = builder.build();
    log::set_max_level(logger.filter());
    log::set_boxed_logger(Box::new(ClientFaultsAtDebug(logger)))?;
    Ok(())
}

/// actix's HTTP/1 dispatcher logs every connection it ends on an error at ERROR, whoever is
/// at fault. A request it could not parse (a bad header, a duplicate Content-Length, a head
/// over its buffer), a client too slow to send its request, a body the handler refused before
/// reading it all (a value over the limit) and a connection the client dropped are the
/// client's doing and answered as such: those are logged at DEBUG, so that ERROR stays for
/// faults of the node.
struct ClientFaultsAtDebug(env_logger::Logger);

/// How actix-http words the errors that a client causes (its `DispatchError` messages).
const CLIENT_FAULTS: [&str; 4] = [
    "stream error: request parse error",
    "stream error: request did not complete within",
    "stream error: handler dropped payload",
    "stream error: I/O error",
];

impl log::Log for ClientFaultsAtDebug {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        let client_fault = record.level() == log::Level::Error
            && record.target().starts_with("actix_http::h1")
            && CLIENT_FAULTS.iter().any(|fault| record.args().to_string().starts_with(fault));
        if client_fault {
            let demoted = log::Record::builder()
                .level(log::Level::Debug)
                .target(record.target())
                .args(*record.args())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build();
            self.0.log(&demoted);
        } else {
            self.0.log(record);
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// `--log-max-size` is in megabytes; this is the one place that unit is applied.
fn max_bytes(megabytes: u64) -> u64 {
    let megabytes = if megabytes == 0 { ZERO_MAX_SIZE_MEANS_MB } else { megabytes };
    megabytes.saturating_mul(1024 * 1024)
}

/// `--log-max-age` is in days; 0 keeps backups whatever their age (as the Go server did).
fn max_age(days: u64) -> Duration {
    Duration::from_secs(days.saturating_mul(24 * 60 * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn megabytes_and_days_are_applied_in_one_place() {
        assert_eq!(max_bytes(1), 1_048_576);
        assert_eq!(max_bytes(500), 500 * 1_048_576);
        assert_eq!(max_bytes(0), 100 * 1_048_576, "0 means what it meant to the Go server");
        assert_eq!(max_bytes(u64::MAX), u64::MAX);
        assert_eq!(max_age(30), Duration::from_secs(30 * 24 * 60 * 60));
        assert_eq!(max_age(0), Duration::ZERO, "no age limit");
    }
}
