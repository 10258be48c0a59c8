//! `--log-compress`: gzips rotated log files on a thread of its own. Rotation hands each new
//! backup over through a channel and goes straight back to logging; gzipping the default
//! 500 MB takes seconds, and inside the rotating log call it would hold env_logger's lock, so
//! that every thread that logs (the Raft core among them) would wait.
//!
//! Crash-safe: the gzip stream is written to `<backup>.gz.tmp` and fsynced, renamed to
//! `<backup>.gz`, and only then is the plain backup deleted. A crash at any point leaves the
//! whole plain file or a whole `.gz` (and perhaps a stale `.tmp`, or both files, which
//! [`rotation`](super::rotation) sorts out at startup).

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};

use flate2::write::GzEncoder;

/// Writes a gzip of the plain file (first path) to a temporary file (second path), whole and
/// on disk when it returns. [`write_gzip`], but for tests that pause the compressor.
pub(super) type WriteGzip = Box<dyn FnMut(&Path, &Path) -> io::Result<()> + Send>;

/// The handle on the compressing thread. Dropping it lets the thread finish what is queued,
/// and waits for it.
pub(super) struct Compressor {
    /// `None` only while dropping: closing the channel is what ends the thread.
    backups: Option<Sender<PathBuf>>,
    thread: Option<JoinHandle<()>>,
}

impl Compressor {
    /// `backup_files` is the lock the writer holds while it deletes backups: the compressor
    /// takes it to swap a `.gz` in for a plain file, so it never brings back a backup that
    /// was deleted while it was being compressed.
    pub(super) fn spawn(backup_files: Arc<Mutex<()>>, mut write_gzip: WriteGzip) -> io::Result<Compressor> {
        let (backups, queue) = mpsc::channel::<PathBuf>();
        let thread = thread::Builder::new().name("cete-log-gzip".into()).spawn(move || {
            for plain in queue {
                if let Err(err) = compress(&plain, &backup_files, &mut write_gzip) {
                    // A backup deleted before it could be compressed is no failure.
                    if plain.exists() {
                        eprintln!("cete: compressing the log backup {}: {err}", plain.display());
                    }
                }
            }
        })?;
        Ok(Compressor { backups: Some(backups), thread: Some(thread) })
    }

    /// Queues `plain` for compression; never waits.
    pub(super) fn compress(&self, plain: PathBuf) {
        if let Some(backups) = &self.backups {
            // Fails only if the thread panicked: the backup then stays plain, as after a crash.
            let _ = backups.send(plain);
        }
    }
}

impl Drop for Compressor {
    fn drop(&mut self) {
        self.backups = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Replaces `plain` with `plain.gz`, leaving one whole copy on disk at every step.
fn compress(plain: &Path, backup_files: &Mutex<()>, write_gzip: &mut WriteGzip) -> io::Result<()> {
    let temporary = with_suffix(plain, ".gz.tmp");
    let result = write_gzip(plain, &temporary).and_then(|()| {
        let _deleting = backup_files.lock().unwrap_or_else(PoisonError::into_inner);
        if !plain.exists() {
            // Deleted (past a limit) while it was being compressed: leave it deleted.
            return remove_if_present(&temporary);
        }
        fs::rename(&temporary, with_suffix(plain, ".gz"))?;
        // The `.gz` is on disk under its name before the plain file goes.
        sync_directory_of(plain)?;
        fs::remove_file(plain)
    });
    if result.is_err() {
        let _ = remove_if_present(&temporary);
    }
    result
}

/// The real [`WriteGzip`].
pub(super) fn write_gzip(plain: &Path, temporary: &Path) -> io::Result<()> {
    let mut source = File::open(plain)?;
    let mut encoder = GzEncoder::new(File::create(temporary)?, flate2::Compression::default());
    io::copy(&mut source, &mut encoder)?;
    encoder.finish()?.sync_all()
}

fn sync_directory_of(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// `path` with `suffix` appended to its file name: `cete.log.X` and `.gz` give `cete.log.X.gz`.
pub(super) fn with_suffix(path: &Path, suffix: impl AsRef<OsStr>) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

pub(super) fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn gunzip(path: &Path) -> String {
        let mut text = String::new();
        flate2::read::GzDecoder::new(File::open(path).expect("open the .gz"))
            .read_to_string(&mut text)
            .expect("a whole gzip stream");
        text
    }

    #[test]
    fn swaps_a_whole_gz_in_for_the_plain_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let plain = dir.path().join("cete.log.20260101T000000Z");
        fs::write(&plain, "a record\n".repeat(1000)).expect("write a backup");
        compress(&plain, &Mutex::new(()), &mut (Box::new(write_gzip) as WriteGzip)).expect("compress");
        assert!(!plain.exists());
        assert!(!with_suffix(&plain, ".gz.tmp").exists());
        assert_eq!(gunzip(&with_suffix(&plain, ".gz")), "a record\n".repeat(1000));
    }

    #[test]
    fn a_failed_compression_keeps_the_plain_file_and_no_partial_gz() {
        let dir = tempfile::tempdir().expect("temp dir");
        let plain = dir.path().join("cete.log.20260101T000000Z");
        fs::write(&plain, "a record\n").expect("write a backup");
        let mut half_then_fail: WriteGzip = Box::new(|_, temporary| {
            fs::write(temporary, b"\x1f\x8b half a stream")?;
            Err(io::Error::other("disk full"))
        });
        let err = compress(&plain, &Mutex::new(()), &mut half_then_fail).expect_err("the failure is reported");
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(fs::read_to_string(&plain).expect("the plain file is kept"), "a record\n");
        assert!(!with_suffix(&plain, ".gz.tmp").exists());
        assert!(!with_suffix(&plain, ".gz").exists());
    }

    #[test]
    fn a_backup_deleted_before_its_turn_is_skipped_quietly() {
        let dir = tempfile::tempdir().expect("temp dir");
        let plain = dir.path().join("cete.log.20260101T000000Z");
        let compressor = Compressor::spawn(Arc::new(Mutex::new(())), Box::new(write_gzip)).expect("spawn");
        compressor.compress(plain.clone());
        drop(compressor);
        assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 0, "nothing was created");
    }
}
