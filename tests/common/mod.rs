//! A small cluster helper for the integration tests: every node is a real `cete` process on
//! free local ports with a temp dir of its own, driven from outside the way a user drives it
//! (HTTP, gRPC and the CLI binary).
//!
//! Waiting is always polling against a deadline, never a fixed sleep. A node whose test panics
//! prints its log when dropped, so a failure shows what the server saw.
//!
//! Each test file is its own crate and uses only part of this module (hence the `allow`).
#![allow(dead_code, unused_imports)]

mod acknowledged;
mod certs;
mod cli;
mod cluster;
mod http;
mod metrics;
mod node;
mod watch;

use std::future::Future;
use std::net::TcpListener;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use cete_proto::kvs::kvs_client::KvsClient;
use tempfile::TempDir;
use tonic::transport::Channel;

pub use acknowledged::{data, serializable_get, Acknowledged, CATCH_UP_TIMEOUT, FAILOVER_DEADLINE};
pub use certs::{CertificateAuthority, Issued, SelfSigned};
pub use cli::{assert_cli_success, cli, cli_ok, cli_with_stdin, BackgroundCli};
pub use cluster::{cluster_status, node_state, Cluster, FORM_TIMEOUT};
pub use http::{
    answers_http, client as http_client, curl, curl_as, http, read_reply, try_http, try_http_within, ClientIdentity,
    CurlError, Reply,
};
pub use metrics::{applied_index, assert_snapshot_covers, metric, metric_value, node_metric};
pub use node::{address_args, node_json, Node};
pub use watch::{grpc_watch, is_membership, next_event, old_shape, unpack, NdjsonWatch, WATCH_PREFIX_KEY};

/// How long a node may take from spawn to `/v1/readiness_check` answering 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping node or a CLI command may take to exit.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The `cete` binary cargo built for this test run.
pub fn cete_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cete")
}

/// A port nothing listens on right now: bind port 0, note what the kernel chose, release it.
/// Ports handed to tests come from below Linux's ephemeral range (32768-60999): a port the
/// kernel picks for `bind(0)` is released at once and may be handed to any outgoing connection
/// before the node binds it. Tests run as parallel processes, so each port is claimed with a
/// file created exclusively; claims older than [`PORT_CLAIM_TTL`] are from finished runs.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;
const PORT_CLAIM_TTL: Duration = Duration::from_secs(600);

pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static DRAWS: AtomicU64 = AtomicU64::new(0);
    let claims = std::env::temp_dir().join("cete-test-ports");
    std::fs::create_dir_all(&claims).expect("create the port claims directory");
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut state = nanos ^ (u64::from(std::process::id()) << 32) ^ DRAWS.fetch_add(1, Ordering::Relaxed);
    let span = u64::from(TEST_PORTS.end - TEST_PORTS.start);
    for _ in 0..10_000 {
        // xorshift: a different sequence per process and per call.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let port = TEST_PORTS.start + (state % span) as u16;
        let claim = claims.join(port.to_string());
        if let Ok(modified) = std::fs::metadata(&claim).and_then(|m| m.modified()) {
            if modified.elapsed().unwrap_or_default() < PORT_CLAIM_TTL {
                continue;
            }
            let _ = std::fs::remove_file(&claim);
        }
        if std::fs::OpenOptions::new().write(true).create_new(true).open(&claim).is_err() {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free test port in {TEST_PORTS:?}");
}

pub fn local(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// Where a node listens (or is expected to listen), as `host:port`.
#[derive(Clone, Debug)]
pub struct Addresses {
    pub raft: String,
    pub grpc: String,
    pub http: String,
}

impl Addresses {
    pub fn free() -> Self {
        Addresses { raft: local(free_port()), grpc: local(free_port()), http: local(free_port()) }
    }
}

/// Polls `check` until it gives `Some`, failing the test after `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "no {what} within {timeout:?}");
        thread::sleep(POLL_INTERVAL);
    }
}

pub fn temp_dir() -> TempDir {
    tempfile::Builder::new().prefix("cete-test-").tempdir().expect("create a temp dir")
}

/// `cete` with no `CETE_*` variable inherited from whoever runs the tests.
pub(crate) fn hermetic_command() -> Command {
    let mut command = Command::new(cete_bin());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CETE_") {
            command.env_remove(name);
        }
    }
    command
}

/// Runs async gRPC code from a plain `#[test]` (the blocking HTTP client must stay outside).
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Runtime::new().expect("build a tokio runtime").block_on(future)
}

pub async fn grpc_client(address: &str) -> KvsClient<Channel> {
    KvsClient::connect(format!("http://{address}")).await.unwrap_or_else(|e| panic!("connect gRPC to {address}: {e}"))
}

/// Waits until `node` answers reads with revisions: the leader starts them with its first
/// proposals after it is elected (README, "Revisions").
pub fn wait_for_revisions(node: &Node) {
    node.put(&data("probe"), "p").assert_success();
    eventually("revisions started", FORM_TIMEOUT, || node.get(&data("probe")).header("X-Cete-Revision").map(drop));
}
