//! `cete bench put|get|mixed`: a load generator for a running cluster, like etcd's `benchmark`.
//!
//! `--clients` clients, each with a connection of its own, are spread round-robin over the
//! endpoints (`--grpc-address a,b,c` or `--http-address a,b,c`) and send one request after
//! another until `--duration` has passed or `--total` requests were sent. Reads go to keys
//! written before the clock starts. The report gives throughput, latency percentiles and the
//! errors seen. With `--target etcd` the same generator speaks etcd v3's JSON gateway, so one
//! tool measures both stores (benches/compare.sh).
//!
//! The CLI runs on a single-threaded runtime; the load runs on a multi-threaded one of its own
//! (`--threads`, default: every core), so the generator is not the first thing to saturate.

mod driver;
mod http;
mod leases;
mod progress;
mod report;
mod target;
mod workload;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use self::http::BaseUrl;
use self::report::Setup;
use self::target::{Consistency, Endpoint, Protocol, System, Value};
use self::workload::{value_of_size, KeySpace, Mix, Workload};
use super::{emit, ClientArgs};

#[derive(Debug, clap::Args)]
#[command(after_help = "\
--grpc-address and --http-address take comma-separated lists; client i uses endpoint i mod N.

Examples:
  cete bench put --grpc-address :9000,:9001,:9002 --clients 64 --duration 15s
  cete bench get --protocol http --http-address :8000 --consistency serializable --json
  cete bench mixed --target etcd --http-address http://127.0.0.1:2379 --read-ratio 0.8")]
pub struct BenchArgs {
    /// The load: put, get (over --keys preloaded keys) or mixed (--read-ratio reads)
    #[arg(value_enum)]
    pub workload: Workload,

    /// The store under load: cete, or etcd v3 through its JSON gateway (HTTP)
    #[arg(long, value_enum, default_value = "cete")]
    pub target: System,

    /// How to reach cete [default: grpc; http for etcd]
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,

    /// HTTP endpoints, comma-separated [default: :8000 for cete, :2379 for etcd]
    #[arg(long, value_name = "URL,...", value_delimiter = ',')]
    pub http_address: Vec<String>,

    /// Concurrent clients, each with its own connection
    #[arg(long, default_value_t = 16)]
    pub clients: usize,

    /// Stop after this long, e.g. 10s, 500ms, 2m [default: 10s unless --total is given]
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Stop after this many requests (the first of --duration and --total ends the run)
    #[arg(long, value_name = "REQUESTS")]
    pub total: Option<u64>,

    /// Writes create new keys (unique) or overwrite keys drawn from --keys (random)
    #[arg(long, value_enum, default_value = "unique")]
    pub key_space: KeySpace,

    /// Key length in characters (keys are zero-padded hex numbers)
    #[arg(long, value_name = "CHARS", default_value_t = 16)]
    pub key_size: usize,

    /// Value length in bytes
    #[arg(long, value_name = "BYTES", default_value_t = 128)]
    pub value_size: usize,

    /// Keys that reads and random writes draw from; get and mixed write them first
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,

    /// Read consistency
    #[arg(long, value_enum, default_value = "linearizable")]
    pub consistency: Consistency,

    /// Do not write the --keys keys before a get or mixed load: an earlier run did
    #[arg(long)]
    pub skip_preload: bool,

    /// Share of reads in the mixed workload, between 0 and 1
    #[arg(long, value_name = "RATIO", default_value_t = 0.9)]
    pub read_ratio: f64,

    /// A request unanswered after this long counts as an error
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub timeout: Duration,

    /// Threads of the load generator [default: the number of cores]
    #[arg(long)]
    pub threads: Option<usize>,

    /// Print one JSON object instead of the report for people
    #[arg(long)]
    pub json: bool,

    /// Beside the load, keep this many leases alive (cete over gRPC only): granted before the
    /// clock starts, renewed every --lease-keepalive-every over --lease-streams streams
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub leases: u64,

    /// How often each lease of --leases is renewed
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub lease_keepalive_every: Duration,

    /// Keep-alive streams the --leases are spread over (round-robin over the gRPC endpoints)
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub lease_streams: usize,

    #[command(flatten)]
    pub client: ClientArgs,
}

/// A bench run, every flag checked and resolved.
struct Plan {
    setup: Setup,
    endpoints: Vec<Endpoint>,
    client: ClientArgs,
    mix: Mix,
    /// Whether to write the `mix.keys` keys before the clock starts.
    preload: bool,
    consistency: Consistency,
    value: Value,
    duration: Option<Duration>,
    total: Option<u64>,
    /// Per request.
    timeout: Duration,
    /// Leases kept alive beside the load.
    leases: Option<leases::LeaseLoad>,
}

impl BenchArgs {
    fn plan(self) -> anyhow::Result<Plan> {
        let protocol = match (self.target, self.protocol) {
            (System::Etcd, Some(Protocol::Grpc)) => {
                bail!("etcd is driven through its HTTP JSON gateway; drop --protocol grpc")
            }
            (System::Etcd, _) => Protocol::Http,
            (System::Cete, protocol) => protocol.unwrap_or(Protocol::Grpc),
        };
        let endpoints = self.endpoints(protocol)?;
        if self.clients == 0 {
            bail!("--clients must be at least 1");
        }
        if self.total == Some(0) || self.duration == Some(Duration::ZERO) {
            bail!("--total and --duration must be above zero");
        }
        let mix = Mix {
            workload: self.workload,
            key_space: self.key_space,
            key_size: self.key_size,
            keys: self.keys,
            read_ratio: self.read_ratio,
        };
        mix.validate().map_err(|message| anyhow!(message))?;
        let reads = self.workload != Workload::Put;
        let setup = Setup {
            target: self.target.name(),
            protocol: protocol.name(),
            workload: self.workload,
            consistency: reads.then_some(self.consistency.name()),
            clients: self.clients,
            endpoints: endpoints.iter().map(Endpoint::to_string).collect(),
            value_size: self.value_size,
        };
        let leases = match (self.leases, self.target) {
            (0, _) => None,
            (_, System::Etcd) => bail!("--leases is for cete; etcd's own `benchmark lease-keepalive` loads its leases"),
            (leases, System::Cete) => Some(leases::LeaseLoad {
                leases,
                every: self.lease_keepalive_every,
                streams: self.lease_streams,
                endpoints: split_list(std::slice::from_ref(&self.client.grpc_address)),
            }),
        };
        let duration = match (self.duration, self.total) {
            (None, None) => Some(Duration::from_secs(10)),
            (duration, _) => duration,
        };
        Ok(Plan {
            setup,
            endpoints,
            client: self.client,
            preload: self.workload.needs_preload() && !self.skip_preload,
            mix,
            consistency: self.consistency,
            value: Value::new(value_of_size(self.value_size)),
            duration,
            total: self.total,
            timeout: self.timeout,
            leases,
        })
    }

    fn endpoints(&self, protocol: Protocol) -> anyhow::Result<Vec<Endpoint>> {
        let endpoints: Vec<Endpoint> = match (self.target, protocol) {
            (System::Cete, Protocol::Grpc) => split_list(std::slice::from_ref(&self.client.grpc_address))
                .into_iter()
                .map(Endpoint::CeteGrpc)
                .collect(),
            (system, _) => {
                let default = if system == System::Etcd { ":2379" } else { ":8000" };
                let given = if self.http_address.is_empty() {
                    vec![default.to_string()]
                } else {
                    split_list(&self.http_address)
                };
                let bases = given.iter().map(|text| BaseUrl::parse(text).map_err(|message| anyhow!(message)));
                let bases = bases.collect::<anyhow::Result<Vec<_>>>()?;
                let wrap = if system == System::Etcd { Endpoint::EtcdHttp } else { Endpoint::CeteHttp };
                bases.into_iter().map(wrap).collect()
            }
        };
        if endpoints.is_empty() {
            bail!("no endpoint to send the load to");
        }
        Ok(endpoints)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::CeteGrpc(address) => f.write_str(address),
            Endpoint::CeteHttp(base) | Endpoint::EtcdHttp(base) => write!(f, "http://{}", base.authority),
        }
    }
}

/// `a,b` and `c` -> `a`, `b`, `c`, blanks dropped.
fn split_list(items: &[String]) -> Vec<String> {
    items.iter().flat_map(|item| item.split(',')).map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// `10s`, `500ms`, `2m`, `1h`, `1.5s`; a bare number is seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| format!("{text:?} is not a duration like 10s, 500ms or 2m"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {text:?}: use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|err| format!("{text:?}: {err}"))
}

pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from)).max(1);
    let json = args.json;
    let plan = Arc::new(args.plan()?);
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("bench".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build();
            let summary = match runtime {
                Ok(runtime) => runtime.block_on(driver::bench(plan)),
                Err(err) => Err(anyhow!("cannot start the load generator's runtime: {err}")),
            };
            let _ = done.send(summary);
        })
        .context("cannot start the load generator's thread")?;
    let summary = result.await.map_err(|_| anyhow!("the load generator stopped without a report"))??;
    let mut output = if json { serde_json::to_string(&summary)? + "\n" } else { summary.text() };
    if !json && summary.requests == 0 {
        output.push_str("no request succeeded\n");
    }
    emit(output.as_bytes())?;
    Ok(if summary.requests == 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn bench_args(args: &[&str]) -> BenchArgs {
        let Command::Bench(args) = Cli::parse_from([&["cete", "bench"], args].concat()).command else {
            panic!("not bench");
        };
        args
    }

    fn plan_of(args: &[&str]) -> anyhow::Result<Plan> {
        bench_args(args).plan()
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("10 parsecs").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn the_defaults_are_a_ten_second_grpc_put_of_128_byte_values() {
        let plan = plan_of(&["put"]).expect("valid");
        assert_eq!(plan.setup.protocol, "grpc");
        assert_eq!(plan.setup.endpoints, [":9000"]);
        assert_eq!(plan.setup.consistency, None);
        assert_eq!((plan.duration, plan.total), (Some(Duration::from_secs(10)), None));
        assert_eq!(plan.value.raw.len(), 128);
        assert_eq!(plan.mix.key_space, KeySpace::Unique);
    }

    #[test]
    fn endpoint_lists_are_comma_separated_for_both_protocols() {
        let plan = plan_of(&["get", "--grpc-address", ":9001, :9002,:9003", "--clients", "4"]).expect("valid");
        assert_eq!(plan.setup.endpoints, [":9001", ":9002", ":9003"]);
        assert_eq!(plan.setup.consistency, Some("linearizable"));
        assert!(plan.preload);
        assert!(!plan_of(&["get", "--skip-preload"]).expect("valid").preload);
        assert!(!plan_of(&["put"]).expect("valid").preload);
        let args = ["mixed", "--protocol", "http", "--http-address", "http://127.0.0.1:8001,:8002"];
        let http = plan_of(&args).expect("valid");
        assert_eq!(http.setup.endpoints, ["http://127.0.0.1:8001", "http://127.0.0.1:8002"]);
        assert_eq!(http.mix.read_ratio, 0.9);
    }

    #[test]
    fn etcd_is_spoken_over_http_on_its_own_port() {
        let plan = plan_of(&["get", "--target", "etcd", "--consistency", "serializable"]).expect("valid");
        assert_eq!((plan.setup.target, plan.setup.protocol), ("etcd", "http"));
        assert_eq!(plan.setup.endpoints, ["http://127.0.0.1:2379"]);
        assert!(matches!(plan.endpoints[0], Endpoint::EtcdHttp(_)));
        assert_eq!(plan.consistency, Consistency::Serializable);
        let err = plan_error(&["put", "--target", "etcd", "--protocol", "grpc"]);
        assert!(err.contains("JSON gateway"), "{err}");
    }

    #[test]
    fn a_total_alone_runs_without_a_time_limit() {
        let plan = plan_of(&["put", "--total", "500", "--key-space", "random"]).expect("valid");
        assert_eq!((plan.duration, plan.total), (None, Some(500)));
        let plan = bench_args(&["put", "--total", "500", "--duration", "1s"]).plan().expect("valid");
        assert_eq!((plan.duration, plan.total), (Some(Duration::from_secs(1)), Some(500)));
    }

    fn plan_error(args: &[&str]) -> String {
        plan_of(args).err().map(|err| format!("{err:#}")).expect("refused")
    }

    #[test]
    fn impossible_runs_are_refused_before_dialling() {
        assert!(plan_error(&["put", "--clients", "0"]).contains("--clients"));
        assert!(plan_error(&["put", "--total", "0"]).contains("--total"));
        assert!(plan_error(&["get", "--keys", "100000", "--key-size", "2"]).contains("--key-size"));
        assert!(plan_error(&["mixed", "--read-ratio", "2"]).contains("--read-ratio"));
        assert!(plan_error(&["put", "--protocol", "http", "--http-address", "https://x:1"]).contains("plain HTTP"));
        assert!(plan_error(&["put", "--grpc-address", " , "]).contains("no endpoint"));
    }
}
