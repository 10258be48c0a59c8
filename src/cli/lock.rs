//! `cete lock NAME -- COMMAND [ARGS...]`: run COMMAND while holding the lock NAME, and exit
//! with its status, as `etcdctl lock` does. Built only on the public API (leases, a
//! transaction, a scan and a watch), the way etcd's `concurrency.Mutex` is built.
//!
//! The lock is a queue of waiter keys, `__cete_lock/<NAME>/<lease id, 16 hex digits>`, each
//! attached to its waiter's lease (its value is the waiter's process id, for whoever looks).
//! A key's create revision is its place in the queue: the waiter whose key has the smallest
//! one holds the lock; every other waits for the key just before its own to be deleted, then
//! looks again, so waiters are served in the order they came and a release wakes only the
//! next one. A holder that finishes revokes its lease, which deletes its key; one that dies
//! stops renewing, and once the lease's TTL (`--ttl`) runs out the leader revokes it.
//!
//! The lease is kept alive while the command runs. If it is lost all the same (no node
//! answered for a whole TTL, or someone revoked it), the lock may already be someone else's:
//! the command is killed and `cete lock` exits 1 saying so.
//!
//! Interrupted (SIGINT, SIGTERM) while it waits, it leaves the queue and exits 128 + the
//! signal. While the command runs, the lock is released only once the command has exited: a
//! terminal's Ctrl-C reaches the command too, and a SIGTERM is passed on to it; it is given
//! [`KILL_GRACE`] to exit on its own before it is killed (at once on a second interrupt). A
//! `cete lock` that dies (SIGKILL) takes the command with it, since its lease will expire.

use std::cell::Cell;
use std::ffi::OsString;
use std::future::Future;
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use bytes::Bytes;
use cete_actors::command::txn::{Compare, CompareOp, Target, Txn, TxnOp, TxnResult};
use cete_proto::kvs::{event, DeleteRequest, LeaseGrantRequest, LeaseRevokeRequest, ScanRequest};
use cete_proto::{WATCH_PREFIX_METADATA, WATCH_START_REVISION_METADATA};
use prost::Message;
use tokio::process::Child;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::{sleep, sleep_until, Instant};

use super::dial::{status_error, Client};
use super::lease::keep_alive;
use super::ClientArgs;
use crate::grpc::txn;

/// Where the waiter keys of every lock live: `__cete_lock/<NAME>/<lease id>`.
pub const LOCK_PREFIX: &str = "__cete_lock/";

/// How long an interrupted command is given to exit on its own (a terminal's Ctrl-C reaches
/// it too) before it is killed; a second interrupt kills it at once.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// A call that failed for a passing reason (no leader yet, a node restarting) is made again
/// after this, for as long as the lease lives.
const RETRY_AFTER: Duration = Duration::from_millis(200);
/// Releasing the lock gives up after this: the lease then expires on its own.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

#[derive(Debug, clap::Args)]
pub struct LockArgs {
    /// The lock's name (printable ASCII: it travels in gRPC metadata)
    pub name: String,
    /// The command to run while holding the lock, with its arguments, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
    /// Seconds the lock outlives a holder that dies without releasing it (at least 2)
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub ttl: i64,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(args: LockArgs) -> anyhow::Result<ExitCode> {
    let queue = queue_prefix(&args.name)?;
    // Listening before the lease exists: an interrupt from now on revokes it.
    let mut interrupts = Interrupts::listen()?;
    let mut client = args.client.connect().await?;
    let granted =
        client.lease_grant(LeaseGrantRequest { ttl: args.ttl, id: 0 }).await.map_err(status_error)?.into_inner();
    let waiter = Waiter {
        key: format!("{queue}{:016x}", granted.id),
        queue,
        lease: granted.id,
        ttl: Duration::from_secs(granted.ttl.max(0) as u64),
    };
    let outcome = hold(&args, &client, &waiter, &mut interrupts).await;
    release(&mut client, &waiter).await;
    outcome.with_context(|| format!("lock {}", args.name))
}

/// The queue of lock `name`, or why `name` cannot be one.
fn queue_prefix(name: &str) -> anyhow::Result<String> {
    if name.is_empty() {
        anyhow::bail!("the lock's name must not be empty");
    }
    // The queue is watched with the key in gRPC metadata, which carries printable ASCII only.
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_graphic() || *c == ' ')) {
        anyhow::bail!("the lock's name {name:?} has {bad:?}: a name is printable ASCII");
    }
    Ok(format!("{LOCK_PREFIX}{name}/"))
}

/// One place in a lock's queue.
struct Waiter {
    /// `__cete_lock/<NAME>/`.
    queue: String,
    /// This waiter's key in the queue.
    key: String,
    lease: i64,
    ttl: Duration,
}

/// Everything between the grant and the revoke: queue, wait, run. The lease is kept alive
/// meanwhile; the caller revokes it whatever the outcome.
async fn hold(
    args: &LockArgs,
    client: &Client,
    waiter: &Waiter,
    interrupts: &mut Interrupts,
) -> anyhow::Result<ExitCode> {
    let lost = lease_lost(&args.client, waiter);
    tokio::pin!(lost);
    let turn = async {
        let place = retrying("join the queue", || enqueue(client.clone(), waiter)).await?;
        wait_for_turn(client, waiter, place).await
    };
    tokio::select! {
        turn = turn => turn?,
        why = &mut lost => return Err(why.context("lost the place in the queue")),
        signal = interrupts.recv() => return Ok(ExitCode::from(128 + signal as u8)),
    }
    let mut child = spawn(&args.command, waiter)?;
    supervise(&mut child, lost.as_mut(), interrupts).await
}

/// Starts the command, on this process's stdin, stdout and stderr, telling it its key and
/// lease (with which it can attach keys of its own to the lock's lifetime).
fn spawn(command: &[OsString], waiter: &Waiter) -> anyhow::Result<Child> {
    let (program, args) = command.split_first().ok_or_else(|| anyhow!("no command to run"))?;
    let mut child = tokio::process::Command::new(program);
    child
        .args(args)
        .env("CETE_LOCK_KEY", &waiter.key)
        .env("CETE_LOCK_LEASE", waiter.lease.to_string())
        // Should the future holding it be dropped, the command must not run on without the lock.
        .kill_on_drop(true);
    // And should `cete lock` itself die (SIGKILL, a crash), the command dies with it: its lease
    // will expire and the next waiter hold the lock, so it must not run on. The CLI runs on
    // one thread, the one that forks here, so "the parent died" is the process exiting.
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec the closure calls only prctl(2) and getppid(2), both
    // async-signal-safe, and allocates nothing.
    unsafe {
        child.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl took effect.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("cete lock exited before the command started"));
            }
            Ok(())
        });
    }
    child.spawn().with_context(|| format!("cannot run {program:?}"))
}

/// Runs until the command exits, giving its status; kills it if the lease is lost.
async fn supervise(
    child: &mut Child,
    mut lost: std::pin::Pin<&mut impl Future<Output = anyhow::Error>>,
    interrupts: &mut Interrupts,
) -> anyhow::Result<ExitCode> {
    let mut kill_at: Option<Instant> = None;
    loop {
        let grace_over = async {
            match kill_at {
                Some(at) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            status = child.wait() => return Ok(exit_code(status.context("cannot wait for the command")?)),
            why = &mut lost => {
                let _ = child.kill().await;
                return Err(why.context("the lock is no longer held, so the command was killed"));
            }
            signal = interrupts.recv() => {
                // A terminal's Ctrl-C reaches the whole process group, the command too; a
                // SIGTERM (a supervisor stopping `cete lock`) is passed on to it.
                if let (SIGTERM, Some(pid)) = (signal, child.id()) {
                    // SAFETY: kill(2) on the child we spawned and have not reaped.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
                }
                kill_at = Some(if kill_at.is_some() { Instant::now() } else { Instant::now() + KILL_GRACE });
            }
            () = grace_over => {
                eprintln!("interrupted: killing the command, which did not exit within {}s", KILL_GRACE.as_secs());
                let _ = child.start_kill();
                kill_at = None;
            }
        }
    }
}

/// The lease lost, as soon as that is known: [`keep_alive`] gave up, or no renewal was
/// answered for a whole TTL (a node that takes the renewal and never answers would keep
/// `keep_alive` waiting). A renewal is answered after the leader restarted the countdown, so
/// this is at most a round trip late.
async fn lease_lost(client: &ClientArgs, waiter: &Waiter) -> anyhow::Error {
    let expires = Cell::new(Instant::now() + waiter.ttl);
    let renewed = |renewal: &cete_proto::kvs::LeaseKeepAliveResponse| {
        expires.set(Instant::now() + Duration::from_secs(renewal.ttl.max(0) as u64));
        Ok(())
    };
    let kept = keep_alive(client, waiter.lease, renewed);
    tokio::pin!(kept);
    loop {
        tokio::select! {
            gone = &mut kept => return gone.err().unwrap_or_else(|| anyhow!("lease {} is no longer kept alive", waiter.lease)),
            () = sleep_until(expires.get()) => {
                if Instant::now() >= expires.get() {
                    return anyhow!("lease {} was not renewed for its whole TTL ({}s)", waiter.lease, waiter.ttl.as_secs());
                }
            }
        }
    }
}

/// Puts the waiter's key if it is not there yet, and answers its create revision: its place in
/// the queue. Asking again after an answer that was lost changes nothing.
async fn enqueue(mut client: Client, waiter: &Waiter) -> Result<u64, tonic::Status> {
    let lease = u64::try_from(waiter.lease).map_err(|_| tonic::Status::internal("the lease id is negative"))?;
    let get = TxnOp::Get { key: waiter.key.clone() };
    let request = Txn {
        compare: vec![Compare { key: waiter.key.clone(), op: CompareOp::Equal, target: Target::CreateRevision(0) }],
        success: vec![
            TxnOp::Put { key: waiter.key.clone(), value: Bytes::from(std::process::id().to_string()), lease },
            get.clone(),
        ],
        failure: vec![get],
    };
    let request = txn::to_request(request).map_err(tonic::Status::internal)?;
    let answer = client.txn(request).await?.into_inner();
    let answer = txn::from_response(answer).map_err(tonic::Status::internal)?;
    match answer.results.last() {
        Some(TxnResult::Get { found: Some(kv), .. }) if kv.revisions.create_revision > 0 => {
            Ok(kv.revisions.create_revision)
        }
        Some(TxnResult::Get { found: Some(_), .. }) => {
            Err(tonic::Status::unavailable("the cluster has not started revisions yet"))
        }
        _ => Err(tonic::Status::not_found(format!("{} is gone: its lease has expired", waiter.key))),
    }
}

/// Waits until no waiter is ahead of this one, as etcd's `waitDeletes` does: read the queue,
/// wait for the key just ahead to be deleted, and read again (a key further ahead may still be
/// there, its holder still holding).
async fn wait_for_turn(client: &Client, waiter: &Waiter, place: u64) -> anyhow::Result<()> {
    loop {
        let (queue, revision) = retrying("read the queue", || read_queue(client.clone(), &waiter.queue)).await?;
        let Some(ahead) = just_ahead(&queue, &waiter.queue, &waiter.key, place)? else {
            return Ok(());
        };
        // From the revision after the read: a delete between the read and the watch is replayed.
        if let Err(why) = deleted(client.clone(), ahead, revision + 1).await {
            log::warn!("watching the queue failed ({why:#}); reading it again");
            sleep(RETRY_AFTER).await;
        }
    }
}

/// The waiter keys of a queue with their create revisions, and the revision they were read at.
async fn read_queue(mut client: Client, queue: &str) -> Result<(Vec<(String, u64)>, u64), tonic::Status> {
    let request = ScanRequest { prefix: queue.to_string(), keys_only: true, ..Default::default() };
    let page = client.scan(request).await?.into_inner();
    let keys = page.pairs.into_iter().map(|pair| (pair.key, pair.create_revision.max(0) as u64)).collect();
    Ok((keys, page.revision.max(0) as u64))
}

/// The key just ahead of `own` (created at `place`) in the queue, None when `own` is first.
/// Keys further down the prefix (`<NAME>/more/<id>`) are another lock's queue.
fn just_ahead<'q>(queue: &'q [(String, u64)], prefix: &str, own: &str, place: u64) -> anyhow::Result<Option<&'q str>> {
    let waiters = || queue.iter().filter(|(key, _)| key.strip_prefix(prefix).is_some_and(|id| !id.contains('/')));
    if !waiters().any(|(key, _)| key == own) {
        anyhow::bail!("{own} is gone from the queue: its lease has expired or was revoked");
    }
    Ok(waiters()
        .filter(|(_, created)| *created < place)
        .max_by_key(|(_, created)| *created)
        .map(|(key, _)| key.as_str()))
}

/// Returns once `key` is deleted, watching from revision `from` on.
async fn deleted(mut client: Client, key: &str, from: u64) -> anyhow::Result<()> {
    let mut request = tonic::Request::new(());
    let prefix = key.parse().map_err(|_| anyhow!("{key:?} cannot travel as gRPC metadata"))?;
    request.metadata_mut().insert(WATCH_PREFIX_METADATA, prefix);
    request.metadata_mut().insert(WATCH_START_REVISION_METADATA, from.into());
    let mut stream = client.watch(request).await.map_err(status_error)?.into_inner();
    while let Some(change) = stream.message().await.map_err(status_error)? {
        let Some(event) = change.event.filter(|e| e.r#type == event::Type::Delete as i32) else {
            continue;
        };
        // The watch is of a prefix: a longer key may come under it too.
        let deleted = event.data.and_then(|any| DeleteRequest::decode(any.value.as_slice()).ok());
        if deleted.is_some_and(|deleted| deleted.key == key) {
            return Ok(());
        }
    }
    Err(anyhow!("the node ended the watch"))
}

/// Makes `call` again while it fails for a reason that passes (no leader, a node restarting,
/// revisions not started yet); the lease running out bounds how long.
async fn retrying<T, F>(what: &str, mut call: impl FnMut() -> F) -> anyhow::Result<T>
where
    F: Future<Output = Result<T, tonic::Status>>,
{
    loop {
        match call().await {
            Ok(answer) => return Ok(answer),
            Err(status) if passes(&status) => {
                log::warn!("cannot {what} ({}); trying again", status_error(status));
                sleep(RETRY_AFTER).await;
            }
            Err(status) => return Err(status_error(status).context(format!("cannot {what}"))),
        }
    }
}

fn passes(status: &tonic::Status) -> bool {
    use tonic::Code::*;
    matches!(status.code(), Unavailable | DeadlineExceeded | Aborted | Unknown)
}

/// Revokes the lease, which deletes the waiter's key and so wakes the next waiter. If that
/// fails the lease expires on its own within its TTL.
async fn release(client: &mut Client, waiter: &Waiter) {
    let revoke = client.lease_revoke(LeaseRevokeRequest { id: waiter.lease });
    let failure = match tokio::time::timeout(RELEASE_TIMEOUT, revoke).await {
        Ok(Ok(_)) => return,
        // Already gone: expired or revoked, its key deleted with it.
        Ok(Err(status)) if status.code() == tonic::Code::NotFound => return,
        Ok(Err(status)) => status_error(status),
        Err(_) => anyhow!("no answer within {}s", RELEASE_TIMEOUT.as_secs()),
    };
    eprintln!(
        "warning: cannot revoke lease {} ({failure:#}); the lock is released when it expires, within {}s",
        waiter.lease,
        waiter.ttl.as_secs()
    );
}

/// The exit code that passes the command's status on: its exit code, or 128 + the signal that
/// killed it, as a shell reports it.
fn exit_code(status: ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(code as u8),
        (None, Some(signal)) => ExitCode::from(128u8.wrapping_add(signal as u8)),
        (None, None) => ExitCode::FAILURE,
    }
}

/// SIGINT (Ctrl-C) and SIGTERM, which end `cete lock` with the lock released.
struct Interrupts {
    interrupt: Signal,
    terminate: Signal,
}

impl Interrupts {
    fn listen() -> anyhow::Result<Self> {
        let listen = |kind| signal(kind).context("cannot listen for signals");
        Ok(Interrupts { interrupt: listen(SignalKind::interrupt())?, terminate: listen(SignalKind::terminate())? })
    }

    /// The number of the next signal.
    async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.interrupt.recv() => SIGINT,
            _ = self.terminate.recv() => SIGTERM,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(keys: &[(&str, u64)]) -> Vec<(String, u64)> {
        keys.iter().map(|(key, created)| (key.to_string(), *created)).collect()
    }

    #[test]
    fn the_first_waiter_holds_the_lock_and_the_others_wait_for_the_one_ahead() {
        let prefix = "__cete_lock/x/";
        let keys = queue(&[("__cete_lock/x/0c", 12), ("__cete_lock/x/0a", 3), ("__cete_lock/x/0b", 7)]);
        assert_eq!(just_ahead(&keys, prefix, "__cete_lock/x/0a", 3).unwrap(), None);
        assert_eq!(just_ahead(&keys, prefix, "__cete_lock/x/0b", 7).unwrap(), Some("__cete_lock/x/0a"));
        assert_eq!(just_ahead(&keys, prefix, "__cete_lock/x/0c", 12).unwrap(), Some("__cete_lock/x/0b"));
    }

    #[test]
    fn another_locks_queue_under_the_prefix_is_not_waited_for() {
        let keys = queue(&[("__cete_lock/x/y/01", 2), ("__cete_lock/x/02", 5)]);
        assert_eq!(just_ahead(&keys, "__cete_lock/x/", "__cete_lock/x/02", 5).unwrap(), None);
    }

    #[test]
    fn a_waiter_whose_key_is_gone_is_told() {
        let keys = queue(&[("__cete_lock/x/01", 2)]);
        let err = just_ahead(&keys, "__cete_lock/x/", "__cete_lock/x/02", 5).unwrap_err();
        assert!(err.to_string().contains("gone from the queue"), "{err}");
    }

    #[test]
    fn names_that_cannot_travel_are_refused() {
        assert_eq!(queue_prefix("jobs/nightly").unwrap(), "__cete_lock/jobs/nightly/");
        assert!(queue_prefix("").is_err());
        assert!(queue_prefix("caf\u{e9}").unwrap_err().to_string().contains("printable ASCII"));
    }

    #[test]
    fn the_status_is_passed_on_as_a_shell_reports_it() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), ExitCode::from(3));
        assert_eq!(exit_code(ExitStatus::from_raw(9)), ExitCode::from(137));
    }
}
