//! A small cluster helper for the integration tests: every node is a real `cete` process on
//! free local ports with a temp dir of its own, driven from outside the way a user drives it
//! (HTTP, gRPC and the CLI binary).
//!
//! Waiting is always polling against a deadline, never a fixed sleep. A node whose test panics
//! prints its log when dropped, so a failure shows what the server saw.
//!
//! Each test file is its own crate and uses only part of this module.
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use cete_proto::kvs::kvs_client::KvsClient;
use tempfile::TempDir;
use tonic::transport::Channel;

/// How long a node may take from spawn to `/v1/readiness_check` answering 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping node or a CLI command may take to exit.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Free ports are released before the node binds them, so another test may grab one first.
const START_ATTEMPTS: usize = 3;

/// The `cete` binary cargo built for this test run.
pub fn cete_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cete")
}

/// A port nothing listens on right now: bind port 0, note what the kernel chose, release it.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
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

/// A node as `/v1/node` and `cete node` describe it (the inner object, without `"node"`).
pub fn node_json(addresses: &Addresses, state: &str) -> serde_json::Value {
    serde_json::json!({
        "raft_address": addresses.raft,
        "metadata": {"grpc_address": addresses.grpc, "http_address": addresses.http},
        "state": state,
    })
}

/// One `cete start` process, its temp dir (data and log) and how it was started.
pub struct Node {
    pub addresses: Addresses,
    dir: TempDir,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    child: Option<Child>,
}

impl Node {
    /// A standalone node `id` on free ports, ready to serve.
    pub fn start(id: &str) -> Node {
        Node::start_with(id, &[])
    }

    /// Like [`Node::start`], with `extra` flags after the standard ones.
    pub fn start_with(id: &str, extra: &[&str]) -> Node {
        Node::start_with_env(id, extra, &[])
    }

    /// Like [`Node::start_with`], with `CETE_*` variables in the environment.
    pub fn start_with_env(id: &str, extra: &[&str], envs: &[(&str, &str)]) -> Node {
        let envs: Vec<(String, String)> =
            envs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
        for attempt in 1..=START_ATTEMPTS {
            let dir = temp_dir();
            let addresses = Addresses::free();
            let mut args = vec![format!("--id={id}")];
            args.extend(address_args(&addresses, dir.path()));
            args.extend(extra.iter().map(|arg| arg.to_string()));
            let mut node = Node::spawn(dir, args, envs.clone(), addresses);
            match node.try_wait_ready() {
                Ok(()) => return node,
                Err(_) if attempt < START_ATTEMPTS && node.lost_a_port() => continue,
                Err(why) => panic!("node {id} did not become ready: {why}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Spawns `cete start ARGS` with `envs` (and no other `CETE_*` variable) without waiting.
    /// `addresses` is where the test expects it to answer; `dir` holds its log.
    pub fn spawn(dir: TempDir, args: Vec<String>, envs: Vec<(String, String)>, addresses: Addresses) -> Node {
        let mut node = Node { addresses, dir, args, envs, child: None };
        node.launch();
        node
    }

    fn launch(&mut self) {
        assert!(self.child.is_none(), "the node is already running");
        let log = OpenOptions::new().create(true).append(true).open(self.log_path()).expect("open the node log");
        let stderr = log.try_clone().expect("clone the node log handle");
        let mut command = hermetic_command();
        command
            .arg("start")
            .args(&self.args)
            .envs(self.envs.clone())
            // No `cete.yaml` from the developer's home directory.
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        self.child = Some(command.spawn().expect("spawn cete start"));
    }

    /// Polls `/v1/readiness_check` until it answers 200.
    pub fn wait_ready(&mut self) {
        if let Err(why) = self.try_wait_ready() {
            panic!("node on {} did not become ready: {why}", self.addresses.http);
        }
    }

    pub fn try_wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return Err(format!("`cete start` exited early with {status}"));
            }
            let url = format!("http://{}/v1/readiness_check", self.addresses.http);
            let probe = client().get(url).timeout(Duration::from_secs(2)).send();
            if probe.is_ok_and(|reply| reply.status() == 200) {
                return Ok(());
            }
            thread::sleep(POLL_INTERVAL);
        }
        Err(format!("not ready after {READY_TIMEOUT:?}"))
    }

    /// The exit status, if the process has exited (it is then no longer tracked).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = child.try_wait().expect("poll the node process")?;
        self.child = None;
        Some(status)
    }

    /// Waits for the process to exit by itself and returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + EXIT_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                return status;
            }
            thread::sleep(POLL_INTERVAL);
        }
        panic!("the node did not exit within {EXIT_TIMEOUT:?}");
    }

    /// `kill -9`: no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the node");
            child.wait().expect("reap the node");
        }
    }

    /// A graceful stop (SIGTERM); returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let child = self.child.as_ref().expect("the node is not running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on a child we spawned and have not reaped yet.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(sent, 0, "SIGTERM the node");
        self.wait_exit()
    }

    /// Starts the process again on the same data directory, ports and flags; waits until ready.
    pub fn restart(&mut self) {
        self.launch();
        self.wait_ready();
    }

    /// Like [`Node::restart`], with `extra` flags appended from now on.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.args.extend(extra.iter().map(|arg| arg.to_string()));
        self.restart();
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("node.log")
    }

    /// Everything the process wrote to stdout and stderr so far, across restarts.
    pub fn log(&self) -> String {
        fs::read(self.log_path()).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
    }

    fn lost_a_port(&self) -> bool {
        self.log().contains("Address already in use")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addresses.http)
    }

    pub fn get(&self, path: &str) -> Reply {
        http(reqwest::Method::GET, &self.url(path), Vec::new(), None)
    }

    pub fn put(&self, path: &str, body: impl Into<Vec<u8>>) -> Reply {
        http(reqwest::Method::PUT, &self.url(path), body.into(), None)
    }

    pub fn put_typed(&self, path: &str, body: impl Into<Vec<u8>>, content_type: &str) -> Reply {
        let url = self.url(path);
        http(reqwest::Method::PUT, &url, body.into(), Some(content_type))
    }

    pub fn delete(&self, path: &str) -> Reply {
        http(reqwest::Method::DELETE, &self.url(path), Vec::new(), None)
    }

    pub async fn grpc_client(&self) -> KvsClient<Channel> {
        grpc_client(&self.addresses.grpc).await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if thread::panicking() {
            let log = self.log();
            eprintln!(
                "\n===== log of the node on {} ({}) =====\n{log}===== end of log =====",
                self.addresses.http,
                self.log_path().display()
            );
        }
        self.kill9();
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

/// `--raft-address`, `--grpc-address`, `--http-address` and `--data-directory` (under `dir`).
pub fn address_args(addresses: &Addresses, dir: &Path) -> Vec<String> {
    vec![
        format!("--raft-address={}", addresses.raft),
        format!("--grpc-address={}", addresses.grpc),
        format!("--http-address={}", addresses.http),
        format!("--data-directory={}", dir.join("data").display()),
    ]
}

pub fn temp_dir() -> TempDir {
    tempfile::Builder::new().prefix("cete-test-").tempdir().expect("create a temp dir")
}

/// `cete` with no `CETE_*` variable inherited from whoever runs the tests.
fn hermetic_command() -> Command {
    let mut command = Command::new(cete_bin());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("CETE_") {
            command.env_remove(name);
        }
    }
    command
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// An HTTP answer, read in full.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// Shows the body as text, cut short, so a failed assertion stays readable.
impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.text();
        let shown: String = text.chars().take(300).collect();
        let cut = if shown.len() < text.len() { "..." } else { "" };
        write!(f, "{} {:?} {shown:?}{cut}", self.status, self.content_type)
    }
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): status {} {:?}", self.status, self.text()))
    }

    /// Asserts this is an error of `status` with a JSON body `{"error":"<something>"}`.
    pub fn assert_error(&self, status: u16) {
        assert_eq!(self.status, status, "unexpected answer: {self:?}");
        assert!(
            self.content_type.starts_with("application/json"),
            "error Content-Type {:?}, body {:?}",
            self.content_type,
            self.text()
        );
        let error = &self.json()["error"];
        assert!(error.as_str().is_some_and(|message| !message.is_empty()), "no \"error\" message in {:?}", self.text());
    }

    pub fn assert_success(&self) {
        assert!((200..300).contains(&self.status), "unexpected answer: {self:?}");
    }
}

/// One client for the whole test process. Plain HTTP only; proxies in the environment ignored.
fn client() -> &'static reqwest::blocking::Client {
    static CLIENT: OnceLock<reqwest::blocking::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build the HTTP client")
    })
}

pub fn try_http(
    method: reqwest::Method,
    url: &str,
    body: Vec<u8>,
    content_type: Option<&str>,
) -> Result<Reply, reqwest::Error> {
    let mut request = client().request(method, url).body(body);
    if let Some(content_type) = content_type {
        request = request.header(reqwest::header::CONTENT_TYPE, content_type);
    }
    let response = request.send()?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default();
    let body = response.bytes()?.to_vec();
    Ok(Reply { status, content_type, body })
}

pub fn http(method: reqwest::Method, url: &str, body: Vec<u8>, content_type: Option<&str>) -> Reply {
    try_http(method.clone(), url, body, content_type).unwrap_or_else(|e| panic!("{method} {url} failed: {e}"))
}

/// Whether anything answers HTTP on `address` (`host:port`).
pub fn answers_http(address: &str) -> bool {
    let url = format!("http://{address}/v1/liveness_check");
    try_http(reqwest::Method::GET, &url, Vec::new(), None).is_ok()
}

// ---------------------------------------------------------------------------------------------
// gRPC

/// Runs async gRPC code from a plain `#[test]` (the blocking HTTP client must stay outside).
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Runtime::new().expect("build a tokio runtime").block_on(future)
}

pub async fn grpc_client(address: &str) -> KvsClient<Channel> {
    KvsClient::connect(format!("http://{address}")).await.unwrap_or_else(|e| panic!("connect gRPC to {address}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// CLI

/// Runs `cete ARGS` with no stdin; never hangs past [`EXIT_TIMEOUT`].
pub fn cli(args: &[&str]) -> Output {
    run_cli(args, None)
}

/// Runs `cete ARGS` with `input` on stdin.
pub fn cli_with_stdin(args: &[&str], input: &[u8]) -> Output {
    run_cli(args, Some(input))
}

/// Runs `cete ARGS`, asserts it succeeded and returns its stdout.
pub fn cli_ok(args: &[&str]) -> String {
    let output = cli(args);
    assert_cli_success(args, &output);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn assert_cli_success(args: &[&str], output: &Output) {
    assert!(
        output.status.success(),
        "`cete {}` failed with {}\nstdout: {}\nstderr: {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A client command that runs until stopped (`cete watch`); killed when dropped.
pub struct BackgroundCli {
    child: Child,
    dir: TempDir,
}

impl BackgroundCli {
    pub fn spawn(args: &[&str]) -> BackgroundCli {
        let dir = temp_dir();
        let stdout = File::create(dir.path().join("stdout")).expect("create stdout file");
        let stderr = File::create(dir.path().join("stderr")).expect("create stderr file");
        let child = hermetic_command()
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn the cete CLI");
        BackgroundCli { child, dir }
    }

    /// What it printed so far.
    pub fn stdout(&self) -> String {
        fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }
}

impl Drop for BackgroundCli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_cli(args: &[&str], input: Option<&[u8]>) -> Output {
    // Files, not pipes, so a chatty command cannot block while we poll it against a deadline.
    let dir = temp_dir();
    let (stdout_path, stderr_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut command = hermetic_command();
    command
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(File::create(&stdout_path).expect("create stdout file"))
        .stderr(File::create(&stderr_path).expect("create stderr file"));
    let mut child = command.spawn().expect("spawn the cete CLI");
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(input).expect("write the CLI's stdin");
    }
    let status = wait_with_deadline(&mut child, args);
    Output {
        status,
        stdout: fs::read(stdout_path).expect("read the CLI's stdout"),
        stderr: fs::read(stderr_path).expect("read the CLI's stderr"),
    }
}

fn wait_with_deadline(child: &mut Child, args: &[&str]) -> ExitStatus {
    let deadline = Instant::now() + EXIT_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("poll the CLI") {
            return status;
        }
        thread::sleep(POLL_INTERVAL / 5);
    }
    let _ = child.kill();
    panic!("`cete {}` did not exit within {EXIT_TIMEOUT:?}", args.join(" "));
}
