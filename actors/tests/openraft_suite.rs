//! openraft's own storage test suite (0.10's `testing::log`), run against Cete's log store (a
//! chunked WAL, group commit) and state machine (messages to a real StoreActor), each test on
//! fresh files. Every case of the suite runs; none is skipped. Re-run it whenever the openraft
//! pin moves.

use std::sync::mpsc;
use std::thread;

use actix::prelude::*;
use cete_actors::command::{StorageError, TypeConfig};
use cete_actors::raft::log_store::LogStore;
use cete_actors::raft::state_machine::StateMachine;
use cete_actors::store::StoreActor;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb};

/// Keeps a test's files and its StoreActor's actix system alive until the test ends.
struct Guard {
    _dir: tempfile::TempDir,
    system: actix_rt::System,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, Guard> for Builder {
    async fn build(&self) -> Result<(Guard, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(&dir.path().join("raft-log"))
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        // The suite runs each test on a plain tokio runtime; the StoreActor gets an actix
        // system of its own on another thread, as it has an arbiter of its own in the node.
        let store_path = dir.path().join("store.redb");
        let (tx, rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let runner = actix_rt::System::new();
            runner.block_on(async move {
                let store = StoreActor::open(&store_path).expect("store").start();
                tx.send((store, actix_rt::System::current())).expect("send address");
            });
            let _ = runner.run();
        });
        let (store, system) = rx.recv().expect("store actor started");
        let state_machine = StateMachine::new(store, dir.path().join("snapshots")).expect("snapshot dir");
        Ok((Guard { _dir: dir, system, thread: Some(thread) }, log, state_machine))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    Suite::test_all(Builder).await.expect("openraft's storage suite passes");
}
