//! One `cete start` process: spawned on free ports, polled until ready, killed, restarted.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use cete_proto::kvs::kvs_client::KvsClient;
use tempfile::TempDir;
use tonic::transport::Channel;

use super::http::{client, curl, curl_as, http, try_http_within, ClientIdentity, CurlError, Reply};
use super::{grpc_client, hermetic_command, temp_dir, Addresses, EXIT_TIMEOUT, POLL_INTERVAL, READY_TIMEOUT};

/// Free ports are released before the node binds them, so another test may grab one first.
const START_ATTEMPTS: usize = 3;

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
    /// With TLS on: the CA file HTTPS requests trust (they then go through curl).
    https_ca: Option<PathBuf>,
    /// Stopped with SIGSTOP: it would take any request and never answer.
    paused: bool,
    /// With mTLS on: the client certificate HTTPS requests present.
    client_identity: Option<ClientIdentity>,
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
        Node::start_full(id, extra, envs, None, None)
    }

    /// A node serving HTTPS (its TLS flags are in `extra`); the test's HTTPS requests, the
    /// readiness probe included, trust `ca_file`.
    pub fn start_https(id: &str, extra: &[&str], ca_file: &Path) -> Node {
        Node::start_full(id, extra, &[], Some(ca_file), None)
    }

    /// Like [`Node::start_https`] for a node that asks clients for a certificate
    /// (`--client-ca-file` in `extra`): the test's HTTPS requests present `client`.
    pub fn start_mtls(id: &str, extra: &[&str], ca_file: &Path, client: &ClientIdentity) -> Node {
        Node::start_full(id, extra, &[], Some(ca_file), Some(client))
    }

    fn start_full(
        id: &str,
        extra: &[&str],
        envs: &[(&str, &str)],
        https_ca: Option<&Path>,
        client: Option<&ClientIdentity>,
    ) -> Node {
        let envs: Vec<(String, String)> =
            envs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect();
        for attempt in 1..=START_ATTEMPTS {
            let dir = temp_dir();
            let addresses = Addresses::free();
            let mut args = vec![format!("--id={id}")];
            args.extend(address_args(&addresses, dir.path()));
            args.extend(extra.iter().map(|arg| arg.to_string()));
            let mut node = Node::unlaunched(dir, args, envs.clone(), addresses);
            node.https_ca = https_ca.map(Path::to_path_buf);
            node.client_identity = client.cloned();
            node.launch();
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
        let mut node = Node::unlaunched(dir, args, envs, addresses);
        node.launch();
        node
    }

    /// Like [`Node::spawn`] for a node serving HTTPS: the test's HTTPS requests trust `ca_file`.
    pub fn spawn_https(dir: TempDir, args: Vec<String>, addresses: Addresses, ca_file: &Path) -> Node {
        let mut node = Node::unlaunched(dir, args, Vec::new(), addresses);
        node.https_ca = Some(ca_file.to_path_buf());
        node.launch();
        node
    }

    fn unlaunched(dir: TempDir, args: Vec<String>, envs: Vec<(String, String)>, addresses: Addresses) -> Node {
        Node { addresses, dir, args, envs, child: None, https_ca: None, paused: false, client_identity: None }
    }

    /// The `--id` it was started with (`node1`, the default, when none was given).
    pub fn id(&self) -> String {
        let mut args = self.args.iter();
        while let Some(arg) = args.next() {
            if let Some(id) = arg.strip_prefix("--id=") {
                return id.to_string();
            }
            if arg == "--id" {
                return args.next().cloned().unwrap_or_default();
            }
        }
        "node1".to_string()
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
            let probe = self.try_request("GET", "/v1/readiness_check", Vec::new(), Duration::from_secs(2));
            if probe.is_ok_and(|reply| reply.status == 200) {
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
        self.wait_exit_within(EXIT_TIMEOUT)
    }

    /// Like [`Node::wait_exit`], failing the test when the process is still running after
    /// `timeout`.
    pub fn wait_exit_within(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit within {timeout:?}", self.id());
            thread::sleep(POLL_INTERVAL / 5);
        }
    }

    /// `kill -9`: no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the node");
            child.wait().expect("reap the node");
        }
        self.paused = false;
    }

    /// SIGSTOP: the process freezes with its sockets open, as a node in a long GC pause or
    /// behind a partition would.
    pub fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        self.paused = true;
    }

    /// SIGCONT after [`Node::pause`].
    pub fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.paused = false;
    }

    /// Running and not paused: it answers requests.
    pub fn is_serving(&self) -> bool {
        self.child.is_some() && !self.paused
    }

    fn signal(&self, signal: libc::c_int) {
        let child = self.child.as_ref().expect("the node is not running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on a child we spawned and have not reaped yet.
        let sent = unsafe { libc::kill(pid, signal) };
        assert_eq!(sent, 0, "signal {signal} to the node");
    }

    /// A graceful stop (SIGTERM); returns the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        self.terminate();
        self.wait_exit()
    }

    /// Sends SIGTERM and returns at once (see [`Node::wait_exit_within`]): several nodes can
    /// be told to stop at the same moment.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Starts the process again on the same data directory, ports and flags; waits until ready.
    pub fn restart(&mut self) {
        self.relaunch();
        self.wait_ready();
    }

    /// Starts the process again on the same data directory, ports and flags, without waiting:
    /// for a cluster whose nodes come back one by one, as after a power cut.
    pub fn relaunch(&mut self) {
        self.launch();
    }

    /// Starts the process again on an empty data directory (the old one is wiped), joining the
    /// cluster through the node whose gRPC address is `peer_grpc`, as a removed node is brought
    /// back; waits until ready. Same ports and name, and `--peer-grpc-address` is `peer_grpc`
    /// from now on.
    pub fn restart_fresh(&mut self, peer_grpc: &str) {
        assert!(self.child.is_none(), "stop {} before wiping its data", self.id());
        let data = self.dir.path().join("data");
        if let Err(e) = fs::remove_dir_all(&data) {
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "wipe {}: {e}", data.display());
        }
        self.args.retain(|arg| !arg.starts_with("--peer-grpc-address"));
        self.args.push(format!("--peer-grpc-address={peer_grpc}"));
        self.restart();
    }

    /// Arms failpoint `name` with `actions` (a failpoints build; see `cete_actors::failpoints`).
    pub fn arm_failpoint(&self, name: &str, actions: &str) {
        let path = format!("/debug/failpoints/{name}");
        let reply = self.try_request("PUT", &path, actions.as_bytes().to_vec(), Duration::from_secs(5));
        match reply {
            Ok(reply) if reply.status == 204 => {}
            other => panic!("arming failpoint {name}={actions} on {}: {other:?}", self.id()),
        }
    }

    /// Disarms failpoint `name`.
    pub fn disarm_failpoint(&self, name: &str) {
        let path = format!("/debug/failpoints/{name}");
        match self.try_request("DELETE", &path, Vec::new(), Duration::from_secs(5)) {
            Ok(reply) if reply.status == 204 => {}
            other => panic!("disarming failpoint {name} on {}: {other:?}", self.id()),
        }
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

    pub fn lost_a_port(&self) -> bool {
        self.log().contains("Address already in use")
    }

    /// `http://127.0.0.1:PORT/path`, or `https://localhost:PORT/path` (the name its
    /// certificate carries) when the node serves HTTPS.
    pub fn url(&self, path: &str) -> String {
        match &self.https_ca {
            None => format!("http://{}{path}", self.addresses.http),
            Some(_) => {
                let port = self.addresses.http.rsplit(':').next().expect("a port");
                format!("https://localhost:{port}{path}")
            }
        }
    }

    /// One request that gives up after `timeout`; `Err` says why no answer came.
    pub fn try_request(&self, method: &str, path: &str, body: Vec<u8>, timeout: Duration) -> Result<Reply, String> {
        let url = self.url(path);
        match &self.https_ca {
            None => {
                let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
                try_http_within(method, &url, body, timeout).map_err(|e| format!("{e}"))
            }
            Some(ca) => {
                curl_as(method, &url, &body, ca, self.client_identity.as_ref(), timeout).map_err(|e| format!("{e:?}"))
            }
        }
    }

    fn request(&self, method: &str, path: &str, body: Vec<u8>) -> Reply {
        match &self.https_ca {
            None => {
                let method = reqwest::Method::from_bytes(method.as_bytes()).expect("an HTTP method");
                http(method, &self.url(path), body, None)
            }
            Some(_) => self
                .try_request(method, path, body, Duration::from_secs(30))
                .unwrap_or_else(|e| panic!("{method} {} failed: {e}", self.url(path))),
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, Vec::new())
    }

    pub fn put(&self, path: &str, body: impl Into<Vec<u8>>) -> Reply {
        self.request("PUT", path, body.into())
    }

    pub fn put_typed(&self, path: &str, body: impl Into<Vec<u8>>, content_type: &str) -> Reply {
        let url = self.url(path);
        http(reqwest::Method::PUT, &url, body.into(), Some(content_type))
    }

    pub fn post(&self, path: &str, body: impl Into<Vec<u8>>) -> Reply {
        self.request("POST", path, body.into())
    }

    pub fn delete(&self, path: &str) -> Reply {
        self.request("DELETE", path, Vec::new())
    }

    pub async fn grpc_client(&self) -> KvsClient<Channel> {
        grpc_client(&self.addresses.grpc).await
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if thread::panicking() {
            // Keep the data and log of a failed test for a closer look.
            self.dir.disable_cleanup(true);
            let log = self.log();
            eprintln!(
                "\n===== log of {} on {} (kept in {}) =====\n{log}===== end of log =====",
                self.id(),
                self.addresses.http,
                self.dir.path().display()
            );
        }
        self.kill9();
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
