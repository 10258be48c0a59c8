//! The configuration of `cete start`, declared once.
//!
//! [`StartArgs`] is both the command line (clap, with each flag's `CETE_*` environment
//! variable) and the YAML config file (serde, keys named like the fields). Every field is an
//! `Option` so that [`StartArgs::resolve`] can apply the precedence of API.md in one place:
//! flag > environment variable > config file > default. The result is a typed [`Config`] that
//! the rest of the binary receives; nothing else reads the environment.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::builder::{BoolishValueParser, OsStringValueParser, TypedValueParser};
use serde::{Deserialize, Serialize};

const DEFAULT_ID: &str = "node1";
const DEFAULT_RAFT_ADDRESS: &str = ":7000";
const DEFAULT_GRPC_ADDRESS: &str = ":9000";
const DEFAULT_HTTP_ADDRESS: &str = ":8000";
const DEFAULT_DATA_DIRECTORY: &str = "/tmp/cete/node1/data";
const DEFAULT_LOG_LEVEL: &str = "INFO";
const DEFAULT_LOG_MAX_SIZE_MB: u64 = 500;
const DEFAULT_LOG_MAX_BACKUPS: usize = 3;
const DEFAULT_LOG_MAX_AGE_DAYS: u64 = 30;
const DEFAULT_MAX_VALUE_BYTES: usize = 64 * 1024 * 1024;
const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000;
/// As long as Kubernetes' API server keeps etcd's history (it compacts every 5 minutes): long
/// enough for a watcher to reconnect after a restart, short enough to bound the disk.
const DEFAULT_HISTORY_RETENTION: Duration = Duration::from_secs(5 * 60);

const LOG_LEVELS: [&str; 5] = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];

/// The flags of `cete start`; also the shape of the YAML config file.
///
/// An empty string (`--peer-grpc-address ""`) means "none" for the optional settings, so a
/// flag or variable can switch off what the config file turned on.
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartArgs {
    /// YAML config file [default: the first of /etc/cete.yaml, $HOME/cete.yaml that exists]
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config_file: Option<PathBuf>,

    /// The node's name, unique in the cluster [default: node1]
    #[arg(long, env = "CETE_ID")]
    pub id: Option<String>,

    /// Address for the other nodes' Raft traffic; `:7000` means all interfaces [default: :7000]
    #[arg(long, env = "CETE_RAFT_ADDRESS", value_name = "ADDRESS")]
    pub raft_address: Option<String>,

    /// Address of the gRPC API [default: :9000]
    #[arg(long, env = "CETE_GRPC_ADDRESS", value_name = "ADDRESS")]
    pub grpc_address: Option<String>,

    /// Address of the HTTP API [default: :8000]
    #[arg(long, env = "CETE_HTTP_ADDRESS", value_name = "ADDRESS")]
    pub http_address: Option<String>,

    /// Directory of the node's data [default: /tmp/cete/node1/data]
    #[arg(long, env = "CETE_DATA_DIRECTORY", value_name = "DIR")]
    pub data_directory: Option<PathBuf>,

    /// gRPC address of any node of the cluster to join [default: none, start standalone]
    #[arg(long, env = "CETE_PEER_GRPC_ADDRESS", value_name = "ADDRESS")]
    pub peer_grpc_address: Option<String>,

    /// TLS certificate (PEM) of the gRPC and HTTP APIs [default: none, plaintext]
    #[arg(long, env = "CETE_CERTIFICATE_FILE", value_name = "FILE", value_parser = optional_path())]
    pub certificate_file: Option<PathBuf>,

    /// TLS private key (PEM) matching --certificate-file
    #[arg(long, env = "CETE_KEY_FILE", value_name = "FILE", value_parser = optional_path())]
    pub key_file: Option<PathBuf>,

    /// The name the certificate was issued for
    #[arg(long, env = "CETE_COMMON_NAME", value_name = "NAME")]
    pub common_name: Option<String>,

    /// CA certificate(s) (PEM) that issue client certificates: with it, every client of the
    /// gRPC and HTTP APIs must present one (mTLS) [default: none, no client certificates]
    #[arg(long, env = "CETE_CLIENT_CA_FILE", value_name = "FILE", value_parser = optional_path())]
    pub client_ca_file: Option<PathBuf>,

    /// ERROR, WARN, INFO, DEBUG or TRACE [default: INFO]
    #[arg(long, env = "CETE_LOG_LEVEL", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log to this file instead of stderr [default: stderr]
    #[arg(long, env = "CETE_LOG_FILE", value_name = "FILE", value_parser = optional_path())]
    pub log_file: Option<PathBuf>,

    /// Rotate the log file past this many megabytes [default: 500]
    #[arg(long, env = "CETE_LOG_MAX_SIZE", value_name = "MB")]
    pub log_max_size: Option<u64>,

    /// Rotated log files to keep [default: 3]
    #[arg(long, env = "CETE_LOG_MAX_BACKUPS", value_name = "COUNT")]
    pub log_max_backups: Option<usize>,

    /// Delete rotated log files older than this many days [default: 30]
    #[arg(long, env = "CETE_LOG_MAX_AGE", value_name = "DAYS")]
    pub log_max_age: Option<u64>,

    /// Compress rotated log files; a bare `--log-compress` means true [default: false]
    #[arg(
        long,
        env = "CETE_LOG_COMPRESS",
        value_name = "BOOL",
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new(),
    )]
    pub log_compress: Option<bool>,

    /// Largest value accepted by a write, in bytes [default: 67108864 (64 MiB)]
    #[arg(long, env = "CETE_MAX_VALUE_BYTES", value_name = "BYTES")]
    pub max_value_bytes: Option<usize>,

    /// Take a Raft snapshot after this many applied log entries [default: 10000]
    #[arg(long, env = "CETE_SNAPSHOT_EVERY", value_name = "ENTRIES")]
    pub snapshot_every: Option<u64>,

    /// How long the change history is kept for watches that resume from a revision, before
    /// it is compacted (e.g. 90s, 10m, 2h; 0 keeps it forever) [default: 5m]
    #[arg(long, env = "CETE_HISTORY_RETENTION", value_name = "DURATION", value_parser = parse_duration)]
    #[serde(default, deserialize_with = "duration_in_file")]
    pub history_retention: Option<Duration>,
}

/// A duration as people write it: `90s`, `10m`, `1h 30m`, `0`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    match text.trim() {
        "0" => Ok(Duration::ZERO),
        text => humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a duration like 90s or 10m: {e}")),
    }
}

fn duration_as_text<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_duration(*duration))
}

fn duration_in_file<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    text.map(|t| parse_duration(&t).map_err(serde::de::Error::custom)).transpose()
}

/// The resolved configuration of a node, every default applied and every value checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Config {
    pub id: String,
    pub raft_address: String,
    pub grpc_address: String,
    pub http_address: String,
    pub data_directory: PathBuf,
    pub peer_grpc_address: Option<String>,
    pub certificate_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub common_name: Option<String>,
    pub client_ca_file: Option<PathBuf>,
    /// Upper case, one of ERROR, WARN, INFO, DEBUG, TRACE.
    pub log_level: String,
    pub log_file: Option<PathBuf>,
    pub log_max_size_mb: u64,
    pub log_max_backups: usize,
    pub log_max_age_days: u64,
    pub log_compress: bool,
    pub max_value_bytes: usize,
    pub snapshot_every: u64,
    #[serde(serialize_with = "duration_as_text")]
    pub history_retention: Duration,
}

impl StartArgs {
    /// Merges the flags and variables (already in `self`) over the config file and the
    /// defaults, and checks the result.
    pub fn resolve(self) -> anyhow::Result<Config> {
        self.resolve_searching(&default_config_paths())
    }

    /// [`StartArgs::resolve`], looking for a config file only in `search` when no
    /// `--config-file` is given (tests pass their own list).
    fn resolve_searching(self, search: &[PathBuf]) -> anyhow::Result<Config> {
        let file = match &self.config_file {
            Some(path) => read_config_file(path)?,
            None => match search.iter().find(|path| path.is_file()) {
                Some(path) => read_config_file(path)?,
                None => StartArgs::default(),
            },
        };
        let config = self.over(file).with_defaults();
        config.validate()?;
        Ok(config)
    }

    /// Each setting from `self` when present, else from `lower`.
    fn over(self, lower: StartArgs) -> StartArgs {
        StartArgs {
            config_file: self.config_file,
            id: self.id.or(lower.id),
            raft_address: self.raft_address.or(lower.raft_address),
            grpc_address: self.grpc_address.or(lower.grpc_address),
            http_address: self.http_address.or(lower.http_address),
            data_directory: self.data_directory.or(lower.data_directory),
            peer_grpc_address: self.peer_grpc_address.or(lower.peer_grpc_address),
            certificate_file: self.certificate_file.or(lower.certificate_file),
            key_file: self.key_file.or(lower.key_file),
            common_name: self.common_name.or(lower.common_name),
            client_ca_file: self.client_ca_file.or(lower.client_ca_file),
            log_level: self.log_level.or(lower.log_level),
            log_file: self.log_file.or(lower.log_file),
            log_max_size: self.log_max_size.or(lower.log_max_size),
            log_max_backups: self.log_max_backups.or(lower.log_max_backups),
            log_max_age: self.log_max_age.or(lower.log_max_age),
            log_compress: self.log_compress.or(lower.log_compress),
            max_value_bytes: self.max_value_bytes.or(lower.max_value_bytes),
            snapshot_every: self.snapshot_every.or(lower.snapshot_every),
            history_retention: self.history_retention.or(lower.history_retention),
        }
    }

    fn with_defaults(self) -> Config {
        Config {
            id: self.id.unwrap_or_else(|| DEFAULT_ID.into()),
            raft_address: self.raft_address.unwrap_or_else(|| DEFAULT_RAFT_ADDRESS.into()),
            grpc_address: self.grpc_address.unwrap_or_else(|| DEFAULT_GRPC_ADDRESS.into()),
            http_address: self.http_address.unwrap_or_else(|| DEFAULT_HTTP_ADDRESS.into()),
            data_directory: self.data_directory.unwrap_or_else(|| DEFAULT_DATA_DIRECTORY.into()),
            peer_grpc_address: self.peer_grpc_address.filter(|s| !s.is_empty()),
            certificate_file: non_empty_path(self.certificate_file),
            key_file: non_empty_path(self.key_file),
            common_name: self.common_name.filter(|s| !s.is_empty()),
            client_ca_file: non_empty_path(self.client_ca_file),
            log_level: self.log_level.unwrap_or_else(|| DEFAULT_LOG_LEVEL.into()).to_uppercase(),
            log_file: non_empty_path(self.log_file),
            log_max_size_mb: self.log_max_size.unwrap_or(DEFAULT_LOG_MAX_SIZE_MB),
            log_max_backups: self.log_max_backups.unwrap_or(DEFAULT_LOG_MAX_BACKUPS),
            log_max_age_days: self.log_max_age.unwrap_or(DEFAULT_LOG_MAX_AGE_DAYS),
            log_compress: self.log_compress.unwrap_or(false),
            max_value_bytes: self.max_value_bytes.unwrap_or(DEFAULT_MAX_VALUE_BYTES),
            snapshot_every: self.snapshot_every.unwrap_or(DEFAULT_SNAPSHOT_EVERY),
            history_retention: self.history_retention.unwrap_or(DEFAULT_HISTORY_RETENTION),
        }
    }
}

impl Config {
    fn validate(&self) -> anyhow::Result<()> {
        if self.id.trim().is_empty() {
            bail!("the node id (--id, CETE_ID, id) must not be empty");
        }
        for (name, address) in [
            ("raft_address", &self.raft_address),
            ("grpc_address", &self.grpc_address),
            ("http_address", &self.http_address),
        ] {
            if address.trim().is_empty() {
                bail!("{name} must not be empty");
            }
        }
        if self.data_directory.as_os_str().is_empty() {
            bail!("data_directory must not be empty");
        }
        if !LOG_LEVELS.contains(&self.log_level.as_str()) {
            bail!("unknown log level {:?}: use one of {}", self.log_level, LOG_LEVELS.join(", "));
        }
        if self.max_value_bytes == 0 {
            bail!("max_value_bytes must be more than 0");
        }
        if self.snapshot_every == 0 {
            bail!("snapshot_every must be more than 0");
        }
        if self.client_ca_file.is_some() && self.certificate_file.is_none() {
            bail!("client_ca_file is set but certificate_file is not: client certificates need TLS");
        }
        // A server needs both halves of its identity; one without the other is a typo.
        match (&self.certificate_file, &self.key_file) {
            (Some(_), None) => bail!("certificate_file is set but key_file is not: TLS needs both"),
            (None, Some(_)) => bail!("key_file is set but certificate_file is not: TLS needs both"),
            _ => Ok(()),
        }
    }
}

/// Where a config file is looked for when no `--config-file` is given, in order.
fn default_config_paths() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from("/etc/cete.yaml")];
    if let Some(home) = std::env::var_os("HOME").filter(|home| !home.is_empty()) {
        paths.push(PathBuf::from(home).join("cete.yaml"));
    }
    paths
}

fn read_config_file(path: &Path) -> anyhow::Result<StartArgs> {
    let text =
        std::fs::read_to_string(path).map_err(|err| anyhow!("cannot read config file {}: {err}", path.display()))?;
    // An empty file (or one of comments only) is a null document: no settings.
    let settings: Option<StartArgs> =
        serde_norway::from_str(&text).map_err(|err| anyhow!("invalid config file {}: {err}", path.display()))?;
    Ok(settings.unwrap_or_default())
}

/// Parses a path that may be empty (meaning "none"), which clap's own path parser refuses.
fn optional_path() -> impl TypedValueParser<Value = PathBuf> {
    OsStringValueParser::new().map(PathBuf::from)
}

fn non_empty_path(path: Option<PathBuf>) -> Option<PathBuf> {
    path.filter(|p| !p.as_os_str().is_empty())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn start_args(flags: &[&str]) -> StartArgs {
        let argv = ["cete", "start"].iter().chain(flags);
        match Cli::try_parse_from(argv).expect("flags parse").command {
            Command::Start(args) => args,
            _ => panic!("not a start command"),
        }
    }

    /// Resolves with no config file found by searching, so the host's files do not leak in.
    fn resolve(flags: &[&str]) -> anyhow::Result<Config> {
        start_args(flags).resolve_searching(&[])
    }

    fn yaml_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write temp file");
        file
    }

    fn path_of(file: &tempfile::NamedTempFile) -> &str {
        file.path().to_str().expect("utf-8 temp path")
    }

    const FULL_YAML: &str = "
id: yaml-node
raft_address: yaml:7001
grpc_address: yaml:9001
http_address: yaml:8001
data_directory: /yaml/data
peer_grpc_address: yaml-peer:9000
certificate_file: /yaml/cert.pem
key_file: /yaml/key.pem
common_name: yaml.example
client_ca_file: /yaml/clients.pem
log_level: debug
log_file: /yaml/cete.log
log_max_size: 1
log_max_backups: 2
log_max_age: 4
log_compress: true
max_value_bytes: 1024
snapshot_every: 5
history_retention: 90s
";

    fn full_yaml_config() -> Config {
        Config {
            id: "yaml-node".into(),
            raft_address: "yaml:7001".into(),
            grpc_address: "yaml:9001".into(),
            http_address: "yaml:8001".into(),
            data_directory: "/yaml/data".into(),
            peer_grpc_address: Some("yaml-peer:9000".into()),
            certificate_file: Some("/yaml/cert.pem".into()),
            key_file: Some("/yaml/key.pem".into()),
            common_name: Some("yaml.example".into()),
            client_ca_file: Some("/yaml/clients.pem".into()),
            log_level: "DEBUG".into(),
            log_file: Some("/yaml/cete.log".into()),
            log_max_size_mb: 1,
            log_max_backups: 2,
            log_max_age_days: 4,
            log_compress: true,
            max_value_bytes: 1024,
            snapshot_every: 5,
            history_retention: Duration::from_secs(90),
        }
    }

    #[test]
    fn defaults_are_the_api_defaults() {
        let config = resolve(&[]).expect("defaults resolve");
        assert_eq!(
            config,
            Config {
                id: "node1".into(),
                raft_address: ":7000".into(),
                grpc_address: ":9000".into(),
                http_address: ":8000".into(),
                data_directory: "/tmp/cete/node1/data".into(),
                peer_grpc_address: None,
                certificate_file: None,
                key_file: None,
                common_name: None,
                client_ca_file: None,
                log_level: "INFO".into(),
                log_file: None,
                log_max_size_mb: 500,
                log_max_backups: 3,
                log_max_age_days: 30,
                log_compress: false,
                max_value_bytes: 67_108_864,
                snapshot_every: 10_000,
                history_retention: DEFAULT_HISTORY_RETENTION,
            }
        );
    }

    #[test]
    fn the_example_file_sets_every_key_to_its_default() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/cete.yaml");
        let from_example = resolve(&["--config-file", example]).expect("the example resolves");
        assert_eq!(from_example, resolve(&[]).expect("defaults resolve"));
    }

    #[test]
    fn config_file_beats_defaults_for_every_key() {
        let file = yaml_file(FULL_YAML);
        let config = resolve(&["--config-file", path_of(&file)]).expect("file resolves");
        assert_eq!(config, full_yaml_config());
    }

    #[test]
    fn flags_beat_config_file_for_every_key() {
        let file = yaml_file(FULL_YAML);
        let config = resolve(&[
            "--config-file",
            path_of(&file),
            "--id=flag-node",
            "--raft-address=flag:7002",
            "--grpc-address=flag:9002",
            "--http-address=flag:8002",
            "--data-directory=/flag/data",
            "--peer-grpc-address=flag-peer:9000",
            "--certificate-file=/flag/cert.pem",
            "--key-file=/flag/key.pem",
            "--common-name=flag.example",
            "--client-ca-file=/flag/clients.pem",
            "--log-level=trace",
            "--log-file=/flag/cete.log",
            "--log-max-size=10",
            "--log-max-backups=20",
            "--log-max-age=40",
            "--log-compress=false",
            "--max-value-bytes=2048",
            "--snapshot-every=50",
            "--history-retention=2h",
        ])
        .expect("flags resolve");
        assert_eq!(
            config,
            Config {
                id: "flag-node".into(),
                raft_address: "flag:7002".into(),
                grpc_address: "flag:9002".into(),
                http_address: "flag:8002".into(),
                data_directory: "/flag/data".into(),
                peer_grpc_address: Some("flag-peer:9000".into()),
                certificate_file: Some("/flag/cert.pem".into()),
                key_file: Some("/flag/key.pem".into()),
                common_name: Some("flag.example".into()),
                client_ca_file: Some("/flag/clients.pem".into()),
                log_level: "TRACE".into(),
                log_file: Some("/flag/cete.log".into()),
                log_max_size_mb: 10,
                log_max_backups: 20,
                log_max_age_days: 40,
                log_compress: false,
                max_value_bytes: 2048,
                snapshot_every: 50,
                history_retention: Duration::from_secs(2 * 3600),
            }
        );
    }

    #[test]
    fn a_partial_file_leaves_the_rest_to_flags_and_defaults() {
        let file = yaml_file("id: yaml-node\nlog_max_backups: 7\n");
        let config = resolve(&["--config-file", path_of(&file), "--grpc-address", ":9100"]).expect("resolves");
        assert_eq!(config.id, "yaml-node");
        assert_eq!(config.log_max_backups, 7);
        assert_eq!(config.grpc_address, ":9100");
        assert_eq!(config.http_address, ":8000");
    }

    #[test]
    fn an_empty_flag_switches_off_what_the_file_set() {
        let file = yaml_file("peer_grpc_address: peer:9000\nlog_file: /var/log/cete.log\n");
        let config =
            resolve(&["--config-file", path_of(&file), "--peer-grpc-address=", "--log-file="]).expect("resolves");
        assert_eq!(config.peer_grpc_address, None);
        assert_eq!(config.log_file, None);
    }

    #[test]
    fn a_bare_log_compress_means_true() {
        assert!(resolve(&["--log-compress"]).expect("resolves").log_compress);
        assert!(!resolve(&["--log-compress", "no"]).expect("resolves").log_compress);
    }

    #[test]
    fn searching_takes_the_first_file_that_exists() {
        let second = yaml_file("id: second\n");
        let third = yaml_file("id: third\n");
        let search = [PathBuf::from("/nonexistent/cete.yaml"), second.path().into(), third.path().into()];
        let config = start_args(&[]).resolve_searching(&search).expect("resolves");
        assert_eq!(config.id, "second");
    }

    #[test]
    fn an_explicit_config_file_wins_over_the_search() {
        let searched = yaml_file("id: searched\n");
        let explicit = yaml_file("id: explicit\n");
        let config = start_args(&["--config-file", path_of(&explicit)])
            .resolve_searching(&[searched.path().into()])
            .expect("resolves");
        assert_eq!(config.id, "explicit");
    }

    #[test]
    fn an_empty_file_is_no_settings() {
        let file = yaml_file("# nothing here yet\n");
        let config = resolve(&["--config-file", path_of(&file)]).expect("resolves");
        assert_eq!(config.id, "node1");
    }

    #[test]
    fn a_missing_config_file_names_the_path() {
        let err = resolve(&["--config-file", "/nonexistent/cete.yaml"]).unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/cete.yaml"), "{err:#}");
    }

    #[test]
    fn an_unknown_key_is_a_clear_error() {
        let file = yaml_file("id: node1\ngrpc_addr: :9000\n");
        let err = format!("{:#}", resolve(&["--config-file", path_of(&file)]).unwrap_err());
        assert!(err.contains(path_of(&file)), "{err}");
        assert!(err.contains("unknown field `grpc_addr`"), "{err}");
    }

    #[test]
    fn config_file_is_not_a_key_of_the_file() {
        let file = yaml_file("config_file: /etc/other.yaml\n");
        assert!(resolve(&["--config-file", path_of(&file)]).is_err());
    }

    #[test]
    fn a_mistyped_value_is_a_clear_error() {
        let file = yaml_file("log_max_size: lots\n");
        let err = format!("{:#}", resolve(&["--config-file", path_of(&file)]).unwrap_err());
        assert!(err.contains("log_max_size"), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        for flags in [
            &["--id="][..],
            &["--log-level=loud"],
            &["--max-value-bytes=0"],
            &["--snapshot-every=0"],
            &["--certificate-file=/cert.pem"],
            &["--key-file=/key.pem"],
        ] {
            assert!(resolve(flags).is_err(), "{flags:?} should be refused");
        }
    }

    #[test]
    fn log_levels_are_case_insensitive() {
        assert_eq!(resolve(&["--log-level=warn"]).expect("resolves").log_level, "WARN");
    }

    /// Environment variables can't be injected into clap, and setting them in this process
    /// would race the other tests: the check runs in a child test process with its own env.
    #[test]
    fn environment_sits_between_flags_and_the_file() {
        let exe = std::env::current_exe().expect("test binary path");
        // The probe leaves this file once its checks passed: a filter that matches no test
        // (the probe renamed) also exits 0, and must not count as a pass.
        let passed = tempfile::NamedTempFile::new().expect("temp file");
        let passed = passed.into_temp_path();
        std::fs::remove_file(&passed).expect("remove the marker");
        let status = std::process::Command::new(exe)
            .args(["--exact", "config::tests::environment_probe", "--ignored", "--nocapture"])
            .env("CETE_TEST_ENV_PROBE", &passed)
            .env("CETE_ID", "env-node")
            .env("CETE_LOG_LEVEL", "debug")
            .env("CETE_SNAPSHOT_EVERY", "77")
            .env("CETE_LOG_COMPRESS", "true")
            .status()
            .expect("run the probe");
        assert!(status.success(), "the environment probe failed");
        assert!(passed.exists(), "the environment probe did not run (is `config::tests::environment_probe` its name?)");
    }

    #[test]
    #[ignore = "run by environment_sits_between_flags_and_the_file with its environment set"]
    fn environment_probe() {
        let Some(passed) = std::env::var_os("CETE_TEST_ENV_PROBE") else {
            return;
        };
        let file = yaml_file("id: yaml-node\nlog_level: error\nsnapshot_every: 5\nlog_compress: false\n");
        let config = resolve(&["--config-file", path_of(&file), "--log-level", "trace"]).expect("resolves");
        assert_eq!(config.id, "env-node", "env beats the file");
        assert_eq!(config.snapshot_every, 77, "env beats the file");
        assert!(config.log_compress, "env beats the file");
        assert_eq!(config.log_level, "TRACE", "the flag beats env");
        std::fs::write(passed, b"passed").expect("leave the marker");
    }
}
