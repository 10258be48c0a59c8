//! The `--log-file` writer. It appends each record to the live file and, before a record would
//! take it past the size limit, renames the file aside as a backup `<log file>.<UTC time>[.N]`,
//! goes on in a fresh one, deletes backups past a limit, and queues the new backup for the
//! [`Compressor`]. All of that is a rename, a directory listing and a few deletes: cheap
//! enough for the log call that crossed the limit.
//!
//! Written here rather than on file-rotate, which gzips inside its `rotate` (in that log call,
//! under env_logger's lock), deletes the plain file before the gzip stream is finished, and
//! keeps its own list of which backups are compressed, which a compressor working beside it
//! would make stale. With compression moved out, what it would still do for us is one rename.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};

use super::compression::{self, remove_if_present, with_suffix, Compressor, WriteGzip};

/// Backup names: `<log file>.<UTC time>`, with `.N` added when several fall in one second.
/// Fixed width, so names sort in time order.
const BACKUP_TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// A writer appending to `path` and rotating it before a record would take it past
/// `max_bytes`. It keeps at most `max_backups` rotated files (0: no count limit) and none older
/// than `max_age` (zero: no age limit), gzipped when `compress`. Backups already past a limit
/// are deleted now rather than at the next rotation.
pub(super) fn rotating_writer(
    path: &Path,
    max_bytes: u64,
    max_backups: usize,
    max_age: Duration,
    compress: bool,
) -> anyhow::Result<RotatingWriter> {
    let write_gzip = compress.then(|| Box::new(compression::write_gzip) as WriteGzip);
    RotatingWriter::open(path, max_bytes, max_backups, max_age, write_gzip)
}

/// The env_logger target for `--log-file`. env_logger hands it each record whole, in one
/// `write_all` under its own lock, so records never interleave and never straddle two files.
pub(super) struct RotatingWriter {
    path: PathBuf,
    /// Our append handle on `path`. A `File` has no user-space buffer: once `write` returns,
    /// the record is the kernel's, and a `kill -9` cannot lose it.
    live: File,
    live_bytes: u64,
    /// Normally `max_bytes`; after a rotation that could not rename the file, one more
    /// `max_bytes` on, so a failing rotation is retried now and then rather than on every record.
    rotate_at_bytes: u64,
    max_bytes: u64,
    backups: Backups,
    compressor: Option<Compressor>,
}

impl Write for RotatingWriter {
    fn write(&mut self, record: &[u8]) -> io::Result<usize> {
        let record_bytes = record.len() as u64;
        // A record bigger than the whole limit still goes whole, into a file of its own.
        if self.live_bytes > 0 && self.live_bytes.saturating_add(record_bytes) > self.rotate_at_bytes {
            self.rotate();
        }
        self.live.write_all(record)?;
        self.live_bytes += record_bytes;
        Ok(record.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.live.flush()
    }
}

impl RotatingWriter {
    /// [`rotating_writer`], with the compressor's gzip step given (tests pause it).
    fn open(
        path: &Path,
        max_bytes: u64,
        max_backups: usize,
        max_age: Duration,
        write_gzip: Option<WriteGzip>,
    ) -> anyhow::Result<RotatingWriter> {
        // Absolute, so a later change of working directory cannot move the log.
        let path = std::path::absolute(path).with_context(|| format!("log file {}", path.display()))?;
        let dir = path.parent().context("the log file has no directory")?;
        fs::create_dir_all(dir).with_context(|| format!("cannot create the log directory {}", dir.display()))?;
        let live = open_append(&path).with_context(|| format!("cannot open log file {}", path.display()))?;
        let live_bytes = live.metadata().with_context(|| format!("cannot stat log file {}", path.display()))?.len();
        let backups = Backups {
            live_path: path.clone(),
            max_backups: (max_backups > 0).then_some(max_backups),
            max_age: (!max_age.is_zero()).then(|| TimeDelta::from_std(max_age).ok()).flatten(),
            deleting: Arc::new(Mutex::new(())),
        };
        backups.tidy().with_context(|| format!("cannot tidy the backups of {}", path.display()))?;
        let compressor = match write_gzip {
            Some(write_gzip) => {
                let compressor = Compressor::spawn(backups.deleting.clone(), write_gzip)
                    .context("cannot start the log compressing thread")?;
                // Left plain by a crash, a failed compression or a run without --log-compress.
                let found = backups.list().with_context(|| format!("cannot list the backups of {}", path.display()))?;
                for (name, form) in found {
                    if form == Form::Plain {
                        compressor.compress(name.path(&path));
                    }
                }
                Some(compressor)
            }
            None => None,
        };
        Ok(RotatingWriter { path, live, live_bytes, rotate_at_bytes: max_bytes, max_bytes, backups, compressor })
    }

    /// Moves the live file aside and goes on in a fresh one. Problems go to stderr: the log
    /// itself is what is failing, and a record must still be written somewhere.
    fn rotate(&mut self) {
        match self.backups.rename_aside() {
            Ok(backup) => match open_append(&self.path).and_then(|file| Ok((file.metadata()?.len(), file))) {
                Ok((bytes, file)) => {
                    self.live = file;
                    self.live_bytes = bytes;
                    if let Some(compressor) = &self.compressor {
                        compressor.compress(backup);
                    }
                }
                // Records go on into the backup (through the old handle); not compressing it
                // keeps them from being deleted with the plain file.
                Err(err) => eprintln!("cete: reopening the log file {}: {err}", self.path.display()),
            },
            Err(err) => eprintln!("cete: rotating the log file {}: {err}", self.path.display()),
        }
        if let Err(err) = self.backups.prune() {
            eprintln!("cete: deleting old backups of the log file {}: {err}", self.path.display());
        }
        self.rotate_at_bytes = self.live_bytes.saturating_add(self.max_bytes);
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The backups of one log file: their names, their limits, and deleting those past one.
struct Backups {
    live_path: PathBuf,
    max_backups: Option<usize>,
    max_age: Option<TimeDelta>,
    /// Held while backups are deleted, and by the compressor while it swaps a `.gz` in for a
    /// plain file: a backup deleted while being compressed stays deleted.
    deleting: Arc<Mutex<()>>,
}

/// The files a backup can be, on disk: the two whole ones and the compressor's temporary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    Plain,
    Gzipped,
    Compressing,
}

impl Backups {
    /// Renames the live file to a new backup name, and returns that name.
    fn rename_aside(&self) -> io::Result<PathBuf> {
        let newest = self.list()?.into_iter().map(|(name, _)| name).next_back();
        let backup = BackupName::after(newest, Utc::now()).path(&self.live_path);
        fs::rename(&self.live_path, &backup)?;
        Ok(backup)
    }

    /// Deletes the backups past either limit, newest kept first.
    fn prune(&self) -> io::Result<()> {
        let _deleting = self.deleting.lock().unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<BackupName> =
            self.list()?.into_iter().filter(|(_, form)| *form != Form::Compressing).map(|(name, _)| name).collect();
        names.dedup();
        for (file_number, name) in names.iter().rev().enumerate() {
            if self.too_old(name, file_number) {
                let plain = name.path(&self.live_path);
                remove_if_present(&plain)?;
                remove_if_present(&with_suffix(&plain, ".gz"))?;
            }
        }
        Ok(())
    }

    /// At startup, before the compressor runs: deletes what a crash left half done, then
    /// prunes. A `.gz.tmp` is an unfinished compression. Where a backup is there both plain and
    /// gzipped, the plain file is whole (it is deleted last) and the `.gz` might not be (an
    /// older Cete wrote it in place): the `.gz` goes, and the compressor redoes it.
    fn tidy(&self) -> io::Result<()> {
        let found = self.list()?;
        for (name, form) in &found {
            let plain = name.path(&self.live_path);
            match form {
                Form::Compressing => remove_if_present(&with_suffix(&plain, ".gz.tmp"))?,
                Form::Plain => remove_if_present(&with_suffix(&plain, ".gz"))?,
                Form::Gzipped => {}
            }
        }
        self.prune()
    }

    /// `file_number` counts from 0 for the newest backup.
    fn too_old(&self, name: &BackupName, file_number: usize) -> bool {
        let too_many = self.max_backups.is_some_and(|max_backups| file_number >= max_backups);
        let too_old = self.max_age.is_some_and(|max_age| Utc::now().signed_duration_since(name.rotated_at()) > max_age);
        too_many || too_old
    }

    /// Every backup file in the log directory, oldest first. Only names this writer makes:
    /// `cete.log.1` or `cete.log.old` are left alone.
    fn list(&self) -> io::Result<Vec<(BackupName, Form)>> {
        let dir = self.live_path.parent().ok_or_else(|| io::Error::other("the log file has no directory"))?;
        let live_name = self.live_path.file_name().ok_or_else(|| io::Error::other("the log file has no name"))?;
        let mut found = Vec::new();
        for entry in fs::read_dir(dir)? {
            let file_name = entry?.file_name();
            let suffix = file_name.as_encoded_bytes().strip_prefix(live_name.as_encoded_bytes());
            let Some(suffix) = suffix.and_then(|suffix| std::str::from_utf8(suffix.strip_prefix(b".")?).ok()) else {
                continue;
            };
            let (suffix, form) = match (suffix.strip_suffix(".gz.tmp"), suffix.strip_suffix(".gz")) {
                (Some(suffix), _) => (suffix, Form::Compressing),
                (None, Some(suffix)) => (suffix, Form::Gzipped),
                (None, None) => (suffix, Form::Plain),
            };
            if let Some(name) = BackupName::parse(suffix) {
                found.push((name, form));
            }
        }
        found.sort_by(|(a, _), (b, _)| a.cmp(b));
        Ok(found)
    }
}

/// A backup's name after `<log file>.`: its rotation time, and a number when several backups
/// were made in one second. Ordered oldest first.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct BackupName {
    timestamp: String,
    number: Option<u32>,
}

impl BackupName {
    /// The name for a backup made `now`. Never older than the newest one, even if the clock
    /// stepped back: the count limit relies on names sorting in the order files were rotated.
    fn after(newest: Option<BackupName>, now: DateTime<Utc>) -> BackupName {
        let now = now.format(BACKUP_TIME_FORMAT).to_string();
        match newest {
            Some(newest) if newest.timestamp >= now => {
                BackupName { number: Some(newest.number.unwrap_or(0) + 1), timestamp: newest.timestamp }
            }
            _ => BackupName { timestamp: now, number: None },
        }
    }

    fn parse(suffix: &str) -> Option<BackupName> {
        let (timestamp, number) = match suffix.split_once('.') {
            Some((timestamp, number)) => (timestamp, Some(number.parse().ok()?)),
            None => (suffix, None),
        };
        let rotated_at = NaiveDateTime::parse_from_str(timestamp, BACKUP_TIME_FORMAT).ok()?;
        let name = BackupName { timestamp: rotated_at.format(BACKUP_TIME_FORMAT).to_string(), number };
        // Exactly as this writer spells it (no `01` or `+1`), or names would not sort by time
        // and the file would not be where `path` looks.
        (name.suffix() == suffix).then_some(name)
    }

    fn suffix(&self) -> String {
        match self.number {
            Some(number) => format!("{}.{number}", self.timestamp),
            None => self.timestamp.clone(),
        }
    }

    fn rotated_at(&self) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(&self.timestamp, BACKUP_TIME_FORMAT)
            .map(|time| time.and_utc())
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// The backup's plain file, beside the live one.
    fn path(&self, live_path: &Path) -> PathBuf {
        with_suffix(live_path, format!(".{}", self.suffix()))
    }
}

#[cfg(test)]
mod tests;
