//! Failpoints at the places where durability is decided, for the crash tests (as etcd's gofail
//! and TiKV's fail-rs points). Compiled in only with the `failpoints` cargo feature, which
//! `make test` turns on and release builds leave off; without it every point is a no-op.
//!
//! A point is armed with the `fail` crate's syntax, from `FAILPOINTS=name=action;...` at start
//! or at run time (the `/debug/failpoints` HTTP route of a failpoints build). Besides the
//! crate's own actions (`sleep(ms)`, `pause`, `panic`, counts such as `2*off->return`):
//! - `return` or `return(crash)` aborts the process on the spot, as kill -9 would: no
//!   destructor runs, nothing buffered in the process reaches the kernel;
//! - `return(skip)`, at a [`skip_point`], leaves out the write a power cut would lose there
//!   (a record written without fsync), so a kill -9 afterwards loses it as a power cut does.
//!
//! The points (each named where it sits):
//! - `raft-log-before-fsync`: the leader's or a follower's append is queued, not yet written;
//! - `raft-log-after-fsync`: the append is on disk, openraft not yet told;
//! - `raft-log-commit-hint`: the committed log id about to be recorded (skip: it is lost);
//! - `store-before-durable-commit`: the applied state about to be made durable (skip: the
//!   commit is made without fsync, so a crash rolls the store back to the previous one);
//! - `store-after-durable-commit`: the applied state just made durable;
//! - `routed-write-before-reply`: on the leader, a write routed from another node is
//!   applied, its answer not yet sent back (the sender must resend it, applied once);
//! - `routed-leave-before-reply`: on the leader, a removal routed from another node is
//!   committed, its answer not yet sent back (the sender must find out that it took effect).
//!
//! And one fault that is not a crash:
//! - `raft-isolate` (`return`): while armed, the node's Raft traffic fails both ways, as if
//!   its network were cut (its outgoing RPCs are unreachable, its incoming ones refused and
//!   its open replication streams ended); disarmed, it is healed.

/// The names of every point, for the docs and the tests.
pub const POINTS: &[&str] = &[
    "raft-log-before-fsync",
    "raft-log-after-fsync",
    "raft-log-commit-hint",
    "store-before-durable-commit",
    "store-after-durable-commit",
    "routed-write-before-reply",
    "routed-leave-before-reply",
    "raft-isolate",
];

/// Crashes the process here when `name` is armed to return.
pub fn crash_point(name: &str) {
    if armed(name).is_some() {
        crash(name);
    }
}

/// True when `name` is armed with `return(skip)`: the caller leaves out the write that a
/// power cut would lose. Armed with `return` or `return(crash)`, the process crashes here.
pub fn skip_point(name: &str) -> bool {
    match armed(name) {
        None => false,
        Some(Some(arg)) if arg == "skip" => true,
        Some(_) => crash(name),
    }
}

/// True while `raft-isolate` is armed: the node's Raft traffic is to fail both ways.
pub fn isolated() -> bool {
    armed("raft-isolate").is_some()
}

/// The point's `return` argument when it fires (`Some(None)` for a bare `return`).
#[cfg(feature = "failpoints")]
fn armed(name: &str) -> Option<Option<String>> {
    fail::fail_point!(name, |arg: Option<String>| Some(arg.filter(|a| !a.is_empty())));
    None
}

#[cfg(not(feature = "failpoints"))]
fn armed(_: &str) -> Option<Option<String>> {
    None
}

fn crash(name: &str) -> ! {
    // stderr is unbuffered: the line reaches the node's log file before the abort.
    eprintln!("failpoint {name}: crashing the process");
    std::process::abort()
}
