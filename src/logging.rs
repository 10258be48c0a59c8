//! Logging through `log` + env_logger: `--log-level` sets the level, `RUST_LOG` (when set)
//! adds per-module filters on top, and `--log-file` sends the log to a file instead of stderr.

use std::io::Write;

use crate::config::Config;

pub fn init(config: &Config) -> anyhow::Result<()> {
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(&config.log_level.to_ascii_lowercase());
    // openraft narrates every election and heartbeat at INFO; keep it to warnings unless the
    // operator asked for DEBUG or TRACE.
    if matches!(config.log_level.as_str(), "ERROR" | "WARN" | "INFO") {
        builder.filter_module("openraft", log::LevelFilter::Warn);
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
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("cannot open log file {}: {e}", path.display()))?;
        builder.target(env_logger::Target::Pipe(Box::new(file)));
    }
    builder.try_init()?;
    Ok(())
}
