//! Writeback of the store file from a thread of its own, so that the StoreActor's durable
//! commit finds little left to write.
//!
//! Why: redb's durable commit writes the pages changed since the last one and fsyncs them on
//! the StoreActor's thread, and every apply (so every client answer) waits behind it. With a
//! large store, random overwrites touch a different page each, and one second of them was tens
//! of MB: the fsync took 40-140 ms and held the whole write pipeline still (measured with
//! `perf trace`, see the README's benchmark section). With a small redb cache
//! ([`crate::store`] sets it) redb writes most changed pages to the file as it goes; this
//! thread fsyncs the file every [`WRITEBACK_EVERY`], so the kernel's backlog of the file's
//! dirty pages stays at a fraction of a second's worth and the durable commit's own fsync is
//! short. An fsync more is never wrong: it changes when pages reach the disk, not what a
//! crash can leave (redb's commit protocol decides that).

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the store file is written back.
pub const WRITEBACK_EVERY: Duration = Duration::from_millis(100);

/// The writeback thread of one store file; it stops when this is dropped.
pub struct Writeback {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Writeback {
    pub fn start(path: &Path) -> std::io::Result<Self> {
        let file = File::open(path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let name = path.display().to_string();
        let thread = std::thread::Builder::new().name("store-writeback".into()).spawn(move || {
            while !stopped.load(Ordering::Acquire) {
                std::thread::sleep(WRITEBACK_EVERY);
                // An error here is also reported to redb's own fsync of the file (the kernel
                // reports a writeback error to every open file), which fails the store.
                if let Err(e) = file.sync_data() {
                    log::warn!("writeback of {name} failed: {e}");
                }
            }
        })?;
        Ok(Writeback { stop, thread: Some(thread) })
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
