//! `cete lock NAME -- COMMAND`, as a user runs it: real `cete lock` processes against real
//! nodes, each running a small shell script. Holders never overlap, waiters are served once
//! the holder ends (or dies and its lease expires), the command's status is passed on, and a
//! holder that loses its lease stops its command.
mod common;

use std::fs;
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{cli_ok, eventually, hermetic_command, temp_dir, wait_for_revisions, Cluster, Node, EXIT_TIMEOUT};
use tempfile::TempDir;

/// How long a waiter may take to get a lock released by a holder's lease expiring (a TTL of
/// 2 s, then the leader's check): generous.
const EXPIRY_DEADLINE: Duration = Duration::from_secs(30);

/// A running `cete lock`; killed when dropped.
struct Holder {
    child: Child,
    output: TempDir,
    args: Vec<String>,
}

impl Holder {
    /// `cete lock NAME FLAGS --grpc-address NODE -- sh -c SCRIPT`.
    fn spawn(node: &Node, name: &str, flags: &[&str], script: &str) -> Holder {
        let mut args: Vec<String> = vec!["lock".into(), name.into()];
        args.extend(flags.iter().map(|flag| flag.to_string()));
        args.extend(["--grpc-address".into(), node.addresses.grpc.clone()]);
        args.extend(["--".into(), "sh".into(), "-c".into(), script.into()]);
        let output = temp_dir();
        let file = |name: &str| fs::File::create(output.path().join(name)).expect("create an output file");
        let child = hermetic_command()
            .args(&args)
            .stdin(Stdio::null())
            .stdout(file("stdout"))
            .stderr(file("stderr"))
            .spawn()
            .expect("spawn cete lock");
        Holder { child, output, args }
    }

    fn stderr(&self) -> String {
        fs::read_to_string(self.output.path().join("stderr")).unwrap_or_default()
    }

    /// Waits for it to exit, within `timeout`.
    fn wait_exit_within(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll cete lock") {
                return status;
            }
            let args = self.args.join(" ");
            assert!(Instant::now() < deadline, "`cete {args}` did not exit within {timeout:?}: {}", self.stderr());
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_exit(&mut self) -> ExitStatus {
        self.wait_exit_within(EXIT_TIMEOUT)
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on a child this test spawned and has not reaped.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0, "signal cete lock");
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory for the scripts: the files they write and the test reads.
struct Scratch {
    dir: TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch { dir: temp_dir() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `name`'s path as the scripts spell it.
    fn at(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn lines(&self, name: &str) -> Vec<String> {
        fs::read_to_string(self.path(name)).unwrap_or_default().lines().map(str::to_string).collect()
    }
}

/// A process a script left running after its `cete lock` was killed (the kill reaches only
/// `cete lock`); killed when dropped, by the pid the script wrote.
struct Orphan(PathBuf);

impl Drop for Orphan {
    fn drop(&mut self) {
        if let Some(pid) = fs::read_to_string(&self.0).ok().and_then(|pid| pid.trim().parse::<i32>().ok()) {
            // SAFETY: kill(2); the pid is the script's, which the test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Whether the process whose pid is in `file` runs (a zombie no longer does).
fn runs(file: &std::path::Path) -> bool {
    let Some(pid) = fs::read_to_string(file).ok().and_then(|pid| pid.trim().parse::<i32>().ok()) else {
        return false;
    };
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // `pid (comm) state ...`: the state follows the last `)`.
    stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with(['Z', 'X']))
}

/// The waiter keys of lock `name`, as a scan over HTTP lists them.
fn waiters(node: &Node, name: &str) -> Vec<String> {
    let reply = node.get(&format!("/v1/scan?prefix=__cete_lock/{name}/&keys_only=true"));
    reply.assert_success();
    let pairs = reply.json()["pairs"].as_array().cloned().unwrap_or_default();
    pairs.iter().map(|pair| pair["key"].as_str().expect("a key").to_string()).collect()
}

fn node_with_revisions() -> Node {
    let node = Node::start("node1");
    wait_for_revisions(&node);
    node
}

#[test]
fn holders_through_different_nodes_never_overlap() {
    let cluster = Cluster::start(3);
    wait_for_revisions(&cluster.nodes[0]);
    let scratch = Scratch::new();
    let log = scratch.at("log");
    let mut holders: Vec<Holder> = (0..3)
        .map(|n| {
            let script = format!("echo 'start {n}' >> '{log}'; sleep 0.3; echo 'end {n}' >> '{log}'");
            Holder::spawn(&cluster.nodes[n], "shared", &[], &script)
        })
        .collect();
    for holder in &mut holders {
        let status = holder.wait_exit();
        assert!(status.success(), "{status}: {}", holder.stderr());
    }

    let lines = scratch.lines("log");
    assert_eq!(lines.len(), 6, "{lines:?}");
    let mut served: Vec<&str> = lines
        .chunks(2)
        .map(|pair| {
            let started = pair[0].strip_prefix("start ").unwrap_or_else(|| panic!("overlap in {lines:?}"));
            assert_eq!(pair[1], format!("end {started}"), "overlap in {lines:?}");
            started
        })
        .collect();
    served.sort();
    assert_eq!(served, ["0", "1", "2"]);
    assert!(waiters(&cluster.nodes[0], "shared").is_empty(), "every holder released the lock");
}

#[test]
fn the_command_status_is_passed_on_and_the_lock_released() {
    let node = node_with_revisions();
    let mut exits_3 = Holder::spawn(&node, "x", &[], "exit 3");
    assert_eq!(exits_3.wait_exit().code(), Some(3), "{}", exits_3.stderr());
    assert!(waiters(&node, "x").is_empty(), "the lock is released");

    // Killed by a signal: 128 + its number, as a shell reports it.
    let mut killed = Holder::spawn(&node, "x", &[], "kill -9 $$");
    assert_eq!(killed.wait_exit().code(), Some(128 + 9), "{}", killed.stderr());

    // The command sees its place in the queue.
    let scratch = Scratch::new();
    let script = format!("echo \"$CETE_LOCK_KEY\" > '{}'", scratch.at("key"));
    let mut told = Holder::spawn(&node, "x", &[], &script);
    assert!(told.wait_exit().success(), "{}", told.stderr());
    let key = scratch.lines("key").concat();
    assert!(key.starts_with("__cete_lock/x/") && key.len() == "__cete_lock/x/".len() + 16, "{key:?}");
}

#[test]
fn a_command_that_cannot_run_is_told() {
    let node = node_with_revisions();
    let output = common::cli(&["lock", "x", "--grpc-address", &node.addresses.grpc, "--", "/nonexistent/command"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/command"), "{output:?}");
    assert!(waiters(&node, "x").is_empty(), "the lock is released");
}

#[test]
fn a_killed_holder_releases_the_lock_once_its_lease_expires() {
    let node = node_with_revisions();
    let scratch = Scratch::new();
    let log = scratch.at("log");
    let _orphan = Orphan(scratch.path("pid"));
    let script = format!("echo $$ > '{}'; echo first >> '{log}'; exec sleep 600", scratch.at("pid"));
    let mut first = Holder::spawn(&node, "x", &["--ttl", "2"], &script);
    eventually("the first holder running its command", EXIT_TIMEOUT, || {
        (!scratch.lines("log").is_empty()).then_some(())
    });

    let mut second = Holder::spawn(&node, "x", &[], &format!("echo second >> '{log}'"));
    eventually("the second waiter queued", EXIT_TIMEOUT, || (waiters(&node, "x").len() == 2).then_some(()));
    assert_eq!(scratch.lines("log"), ["first"], "the second waits while the first holds");

    assert!(runs(&scratch.path("pid")), "the first holder's command runs");
    first.child.kill().expect("SIGKILL the first `cete lock`");
    first.child.wait().expect("reap it");
    // Its command dies with it: once the lease expires it no longer holds the lock.
    eventually("the dead holder's command to die with it", EXIT_TIMEOUT, || {
        (!runs(&scratch.path("pid"))).then_some(())
    });
    let status = second.wait_exit_within(EXPIRY_DEADLINE);
    assert!(status.success(), "{status}: {}", second.stderr());
    assert_eq!(scratch.lines("log"), ["first", "second"]);
}

#[test]
fn an_interrupted_waiter_leaves_the_queue_and_the_next_one_waits_on() {
    let node = node_with_revisions();
    let scratch = Scratch::new();
    let (log, gate) = (scratch.at("log"), scratch.path("gate"));
    let _orphan = Orphan(scratch.path("pid"));
    let holding = format!(
        "echo $$ > '{}'; echo first >> '{log}'; while [ ! -e '{}' ]; do sleep 0.05; done",
        scratch.at("pid"),
        gate.display()
    );
    let mut first = Holder::spawn(&node, "x", &[], &holding);
    eventually("the first holder running its command", EXIT_TIMEOUT, || {
        (!scratch.lines("log").is_empty()).then_some(())
    });
    let mut interrupted = Holder::spawn(&node, "x", &[], &format!("echo interrupted >> '{log}'"));
    eventually("the second waiter queued", EXIT_TIMEOUT, || (waiters(&node, "x").len() == 2).then_some(()));
    let mut third = Holder::spawn(&node, "x", &[], &format!("echo third >> '{log}'"));
    eventually("the third waiter queued", EXIT_TIMEOUT, || (waiters(&node, "x").len() == 3).then_some(()));

    // Ctrl-C while waiting: 128 + SIGINT, its key gone; the third now waits on the first.
    interrupted.signal(libc::SIGINT);
    assert_eq!(interrupted.wait_exit().code(), Some(130), "{}", interrupted.stderr());
    assert_eq!(waiters(&node, "x").len(), 2);
    assert_eq!(scratch.lines("log"), ["first"], "the third still waits for the first");

    fs::write(&gate, "").expect("open the gate");
    assert!(first.wait_exit().success(), "{}", first.stderr());
    assert!(third.wait_exit().success(), "{}", third.stderr());
    assert_eq!(scratch.lines("log"), ["first", "third"]);
}

#[test]
fn a_holder_whose_lease_is_revoked_stops_its_command() {
    let node = node_with_revisions();
    let scratch = Scratch::new();
    let _orphan = Orphan(scratch.path("pid"));
    let script = format!(
        "echo $$ > '{}'; echo \"$CETE_LOCK_LEASE\" > '{}.tmp'; mv '{1}.tmp' '{1}'; exec sleep 600",
        scratch.at("pid"),
        scratch.at("lease")
    );
    let mut holder = Holder::spawn(&node, "x", &[], &script);
    let lease = eventually("the holder's lease id", EXIT_TIMEOUT, || scratch.lines("lease").first().cloned());

    cli_ok(&["lease", "revoke", &lease, "--grpc-address", &node.addresses.grpc]);
    let status = holder.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", holder.stderr());
    assert!(holder.stderr().contains("no longer held"), "{}", holder.stderr());
    assert!(!holder.stderr().contains("warning"), "a lease already gone needs no revoke: {}", holder.stderr());
    let pid: i32 = scratch.lines("pid").concat().parse().expect("the script's pid");
    // SAFETY: kill(2) with signal 0 only asks whether the process still exists.
    eventually("the command killed", EXIT_TIMEOUT, || (unsafe { libc::kill(pid, 0) } != 0).then_some(()));
}
