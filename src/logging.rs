//! Logging through `log` + env_logger: `--log-level` sets the level, `RUST_LOG` (when set)
//! adds per-module filters on top, and `--log-file` sends the log to a rotating file instead of
//! stderr.
//!
//! The file is rotated before a record would take it past `--log-max-size` megabytes; rotated
//! files (backups) are named `<log file>.<UTC time>[.N]`, gzipped when `--log-compress`, and
//! deleted past either `--log-max-backups` files or `--log-max-age` days. file-rotate does the
//! renaming, pruning and compressing; this module decides when, and owns the handle records
//! are written through.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use chrono::{NaiveDateTime, TimeDelta, Utc};
use file_rotate::compression::Compression;
use file_rotate::suffix::{Representation, SuffixScheme, TimestampSuffix};
use file_rotate::{ContentLimit, FileRotate};

use crate::config::Config;

/// The Go server's rotating writer (lumberjack) read a maximum size of 0 as its own default of
/// 100 MB; a config carried over from it keeps meaning the same.
const ZERO_MAX_SIZE_MEANS_MB: u64 = 100;

pub fn init(config: &Config) -> anyhow::Result<()> {
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(&config.log_level.to_ascii_lowercase());
    // openraft narrates every election and heartbeat at INFO; keep it to warnings unless the
    // operator asked for DEBUG or TRACE.
    if matches!(config.log_level.as_str(), "ERROR" | "WARN" | "INFO") {
        builder.filter_module("openraft", log::LevelFilter::Warn);
    }
    if let Ok(filters) = std::env::var("RUST_LOG") {
        builder.parse_filters(&filters);
    }
    builder.format(|out, record| {
        writeln!(
            out,
            "{} {:<5} {}: {}",
            out.timestamp_millis(),
            record.level(),
            record.module_path().unwrap_or(""),
            record.args()
        )
    });
    if let Some(path) = &config.log_file {
        let writer = rotating_writer(
            path,
            max_bytes(config.log_max_size_mb),
            config.log_max_backups,
            max_age(config.log_max_age_days),
            config.log_compress,
        )?;
        builder.target(env_logger::Target::Pipe(Box::new(writer)));
    }
    builder.try_init()?;
    Ok(())
}

/// `--log-max-size` is in megabytes; this is the one place that unit is applied.
fn max_bytes(megabytes: u64) -> u64 {
    let megabytes = if megabytes == 0 { ZERO_MAX_SIZE_MEANS_MB } else { megabytes };
    megabytes.saturating_mul(1024 * 1024)
}

/// `--log-max-age` is in days; 0 keeps backups whatever their age (as the Go server did).
fn max_age(days: u64) -> Duration {
    Duration::from_secs(days.saturating_mul(24 * 60 * 60))
}

/// A writer appending to `path` and rotating it before a record would take it past
/// `max_bytes`. It keeps at most `max_backups` rotated files (0: no count limit) and none older
/// than `max_age` (zero: no age limit), gzipped when `compress`. Backups already past a limit
/// are deleted now rather than at the next rotation.
pub(crate) fn rotating_writer(
    path: &Path,
    max_bytes: u64,
    max_backups: usize,
    max_age: Duration,
    compress: bool,
) -> anyhow::Result<RotatingWriter> {
    // Absolute, so a later change of working directory cannot move the log.
    let path = std::path::absolute(path).with_context(|| format!("log file {}", path.display()))?;
    let dir = path.parent().context("the log file has no directory")?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create the log directory {}", dir.display()))?;
    let live = open_append(&path).with_context(|| format!("cannot open log file {}", path.display()))?;
    let live_bytes = live.metadata().with_context(|| format!("cannot stat log file {}", path.display()))?.len();
    let backups = Backups {
        max_backups: (max_backups > 0).then_some(max_backups),
        max_age: (!max_age.is_zero()).then(|| TimeDelta::from_std(max_age).ok()).flatten(),
    };
    // file-rotate unwraps directory reads: find out here, as an error, if it could not.
    fs::read_dir(dir).with_context(|| format!("cannot list the log directory {}", dir.display()))?;
    backups.tidy(&path).with_context(|| format!("cannot delete old backups of {}", path.display()))?;
    // file-rotate gzips inside `rotate`, that is within the log call that crossed the limit and
    // under env_logger's lock: every thread that logs meanwhile waits (a few seconds per
    // hundred megabytes).
    let compression = if compress { Compression::OnRotate(0) } else { Compression::None };
    let rotator = FileRotate::new(&path, backups, ContentLimit::None, compression, None);
    Ok(RotatingWriter { path, live, live_bytes, rotate_at_bytes: max_bytes, max_bytes, rotator })
}

/// The env_logger target for `--log-file`. env_logger hands it each record whole, in one
/// `write_all` under its own lock, so records never interleave and never straddle two files.
pub(crate) struct RotatingWriter {
    path: PathBuf,
    /// Our own append handle on `path`. A `File` has no user-space buffer: once `write`
    /// returns, the record is the kernel's, and a `kill -9` cannot lose it.
    live: File,
    live_bytes: u64,
    /// Normally `max_bytes`; after a rotation that could not rename the file, one more
    /// `max_bytes` on, so a failing rotation is retried now and then rather than on every record.
    rotate_at_bytes: u64,
    max_bytes: u64,
    /// Renames, prunes and compresses. Its own write side (and the handle it opens) is unused.
    rotator: FileRotate<Backups>,
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
    /// Moves the live file aside and goes on in a fresh one. Problems go to stderr: the log
    /// itself is what is failing, and a record must still be written somewhere.
    fn rotate(&mut self) {
        // file-rotate asserts on files that change under it. A panic here would poison
        // env_logger's lock and make every later log call in the process panic.
        match panic::catch_unwind(AssertUnwindSafe(|| self.rotator.rotate())) {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("cete: rotating the log file {}: {err}", self.path.display()),
            Err(_) => eprintln!("cete: rotating the log file {} panicked", self.path.display()),
        }
        // Whatever happened, write on into the file now at `path`: the fresh one, or the old
        // one if the rename failed. Our old handle may point at a backup about to be gzipped
        // and deleted.
        match open_append(&self.path).and_then(|file| Ok((file.metadata()?.len(), file))) {
            Ok((bytes, file)) => {
                self.live = file;
                self.live_bytes = bytes;
            }
            Err(err) => eprintln!("cete: reopening the log file {}: {err}", self.path.display()),
        }
        self.rotate_at_bytes = self.live_bytes.saturating_add(self.max_bytes);
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Backup names: `<log file>.<UTC time>`, with `.N` added when several fall in one second.
/// Fixed width, so names sort in time order.
const BACKUP_TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// The suffix scheme: names backups by time, and deems one too old past either limit
/// (file-rotate's own schemes take a count or an age, not both).
struct Backups {
    max_backups: Option<usize>,
    max_age: Option<TimeDelta>,
}

impl Backups {
    /// At startup: deletes backups past a limit, and the `.gz` of a backup whose compression
    /// was cut short (file-rotate deletes the plain file only once the `.gz` is written, so
    /// when both exist the plain one is whole). file-rotate compresses it again later.
    fn tidy(&self, path: &Path) -> io::Result<()> {
        // Newest first, as `too_old` counts them.
        for (file_number, backup) in self.scan_suffixes(path).iter().enumerate() {
            let plain = backup.suffix.to_path(path);
            let gzipped = gz_path(&plain);
            if self.too_old(&backup.suffix, file_number) {
                remove_if_present(&plain)?;
                remove_if_present(&gzipped)?;
            } else if plain.exists() {
                remove_if_present(&gzipped)?;
            }
        }
        Ok(())
    }

    fn rotated_at(suffix: &TimestampSuffix) -> Option<chrono::DateTime<Utc>> {
        NaiveDateTime::parse_from_str(&suffix.timestamp, BACKUP_TIME_FORMAT).ok().map(|time| time.and_utc())
    }
}

impl SuffixScheme for Backups {
    type Repr = TimestampSuffix;

    fn rotate_file(
        &mut self,
        basepath: &Path,
        newest: Option<&TimestampSuffix>,
        suffix: &Option<TimestampSuffix>,
    ) -> io::Result<TimestampSuffix> {
        if suffix.is_some() {
            // Every name is new (below), so file-rotate never has a backup to move along.
            return Err(io::Error::other("only the live log file is ever renamed"));
        }
        let now = Utc::now().format(BACKUP_TIME_FORMAT).to_string();
        // Never name a backup older than the newest one, even if the clock stepped back: the
        // count limit relies on names sorting in the order the files were rotated.
        let mut name = match newest {
            Some(newest) if newest.timestamp >= now => {
                TimestampSuffix { timestamp: newest.timestamp.clone(), number: Some(newest.number.unwrap_or(0) + 1) }
            }
            _ => TimestampSuffix { timestamp: now, number: None },
        };
        // file-rotate panics on renaming onto a file it did not know of: step past any.
        while name.to_path(basepath).exists() || gz_path(&name.to_path(basepath)).exists() {
            name.number = Some(name.number.unwrap_or(0) + 1);
        }
        Ok(name)
    }

    /// Only names this scheme makes, so that `cete.log.1` or `cete.log.old` are left alone.
    fn parse(&self, suffix: &str) -> Option<TimestampSuffix> {
        let (timestamp, number) = match suffix.split_once('.') {
            Some((timestamp, number)) => (timestamp, Some(number.parse().ok()?)),
            None => (suffix, None),
        };
        let name = TimestampSuffix { timestamp: timestamp.to_owned(), number };
        Backups::rotated_at(&name).map(|_| name)
    }

    fn too_old(&self, suffix: &TimestampSuffix, file_number: usize) -> bool {
        let too_many = self.max_backups.is_some_and(|max_backups| file_number >= max_backups);
        let too_old = self.max_age.is_some_and(|max_age| {
            Backups::rotated_at(suffix).is_some_and(|rotated_at| Utc::now().signed_duration_since(rotated_at) > max_age)
        });
        too_many || too_old
    }
}

fn gz_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".gz");
    PathBuf::from(name)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 60 * 60);

    /// A record of exactly `bytes` bytes (newline included) saying which record it is.
    fn record(n: usize, bytes: usize) -> Vec<u8> {
        let mut line = format!("record {n:04} ").into_bytes();
        line.resize(bytes - 1, b'.');
        line.push(b'\n');
        line
    }

    fn log_dir() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("cete.log");
        (dir, path)
    }

    /// Rotated files, oldest first.
    fn backups(path: &Path) -> Vec<PathBuf> {
        let prefix = format!("{}.", path.file_name().and_then(|name| name.to_str()).expect("utf-8 name"));
        let mut found: Vec<PathBuf> = fs::read_dir(path.parent().expect("a directory"))
            .expect("list the log directory")
            .map(|entry| entry.expect("directory entry").path())
            .filter(|file| {
                file.file_name().and_then(|name| name.to_str()).is_some_and(|name| name.starts_with(&prefix))
            })
            .collect();
        let scheme = Backups { max_backups: None, max_age: None };
        // Oldest first: by the suffix's order (newest smallest), reversed.
        found.sort_by_key(|file| {
            let name = file.file_name().and_then(|name| name.to_str()).expect("utf-8 name");
            let suffix = name[prefix.len()..].trim_end_matches(".gz");
            std::cmp::Reverse(scheme.parse(suffix).unwrap_or_else(|| panic!("not a backup name: {name}")))
        });
        found
    }

    fn contents(path: &Path) -> String {
        let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        if path.extension().is_some_and(|extension| extension == "gz") {
            let mut text = String::new();
            flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text).expect("a whole gzip stream");
            text
        } else {
            String::from_utf8(bytes).expect("utf-8 log")
        }
    }

    /// Everything still on disk, oldest backup first, live file last.
    fn all_contents(path: &Path) -> String {
        backups(path).iter().chain([&path.to_path_buf()]).map(|file| contents(file)).collect()
    }

    fn write_records(writer: &mut RotatingWriter, range: std::ops::Range<usize>, bytes: usize) -> String {
        let mut written = String::new();
        for n in range {
            let line = record(n, bytes);
            writer.write_all(&line).expect("write a record");
            written.push_str(std::str::from_utf8(&line).expect("utf-8 record"));
        }
        written
    }

    fn backup_named(path: &Path, rotated_at: chrono::DateTime<Utc>, text: &str) -> PathBuf {
        let backup = PathBuf::from(format!("{}.{}", path.display(), rotated_at.format(BACKUP_TIME_FORMAT)));
        fs::write(&backup, text).expect("write a backup");
        backup
    }

    #[test]
    fn megabytes_are_applied_in_one_place() {
        assert_eq!(max_bytes(1), 1_048_576);
        assert_eq!(max_bytes(500), 500 * 1_048_576);
        assert_eq!(max_bytes(0), 100 * 1_048_576, "0 means what it meant to the Go server");
        assert_eq!(max_bytes(u64::MAX), u64::MAX);
        assert_eq!(max_age(30), 30 * DAY);
    }

    #[test]
    fn rotates_before_a_record_would_pass_the_limit() {
        let (_dir, path) = log_dir();
        let mut writer = rotating_writer(&path, 100, 10, Duration::ZERO, false).expect("writer");
        let written = write_records(&mut writer, 0..7, 30);
        let backups = backups(&path);
        assert_eq!(backups.len(), 2, "{backups:?}");
        for backup in &backups {
            assert_eq!(contents(backup).len(), 90, "three whole records per file");
        }
        assert_eq!(contents(&path), String::from_utf8(record(6, 30)).expect("utf-8"));
        assert_eq!(all_contents(&path), written, "nothing lost, nothing reordered");
    }

    #[test]
    fn fills_a_file_exactly_to_the_limit() {
        let (_dir, path) = log_dir();
        let mut writer = rotating_writer(&path, 100, 10, Duration::ZERO, false).expect("writer");
        write_records(&mut writer, 0..4, 25);
        assert!(backups(&path).is_empty(), "100 bytes fit in a 100-byte file");
        write_records(&mut writer, 4..5, 25);
        assert_eq!(backups(&path).len(), 1);
    }

    #[test]
    fn a_record_larger_than_the_limit_goes_whole_into_a_file_of_its_own() {
        let (_dir, path) = log_dir();
        let mut writer = rotating_writer(&path, 100, 10, Duration::ZERO, false).expect("writer");
        let written = write_records(&mut writer, 0..1, 30) + &write_records(&mut writer, 1..2, 250);
        write_records(&mut writer, 2..3, 30);
        let sizes: Vec<usize> = backups(&path).iter().map(|backup| contents(backup).len()).collect();
        assert_eq!(sizes, [30, 250]);
        assert_eq!(all_contents(&path)[..280], written);
    }

    #[test]
    fn counts_what_the_file_held_before_it_was_opened() {
        let (_dir, path) = log_dir();
        fs::write(&path, "x".repeat(90)).expect("an earlier log");
        let mut writer = rotating_writer(&path, 100, 10, Duration::ZERO, false).expect("writer");
        write_records(&mut writer, 0..1, 30);
        let backups = backups(&path);
        assert_eq!(backups.len(), 1);
        assert_eq!(contents(&backups[0]), "x".repeat(90));
    }

    #[test]
    fn every_record_is_on_disk_as_soon_as_it_is_written() {
        let (_dir, path) = log_dir();
        let mut writer = rotating_writer(&path, 1000, 10, Duration::ZERO, false).expect("writer");
        let written = write_records(&mut writer, 0..3, 30);
        // No flush and no drop: what a `kill -9` right now would leave.
        assert_eq!(fs::read_to_string(&path).expect("read the log"), written);
        drop(writer);
    }

    #[test]
    fn keeps_only_the_newest_backups() {
        let (_dir, path) = log_dir();
        let mut writer = rotating_writer(&path, 100, 3, 365 * DAY, false).expect("writer");
        // 30 records of 50 bytes: 15 files, many rotated within the same second.
        let written = write_records(&mut writer, 0..30, 50);
        assert_eq!(backups(&path).len(), 3);
        let kept = all_contents(&path);
        assert_eq!(kept.len(), 4 * 100, "three full backups and a full live file");
        assert!(written.ends_with(&kept), "the newest records are the ones kept");
    }

    #[test]
    fn zero_backups_means_no_count_limit() {
        let (_dir, path) = log_dir();
        let mut writer = rotating_writer(&path, 100, 0, Duration::ZERO, false).expect("writer");
        let written = write_records(&mut writer, 0..20, 50);
        assert_eq!(backups(&path).len(), 9);
        assert_eq!(all_contents(&path), written);
    }

    #[test]
    fn deletes_backups_past_the_age_limit_at_startup() {
        let (_dir, path) = log_dir();
        let now = Utc::now();
        let ancient = backup_named(&path, now - TimeDelta::days(40), "ancient\n");
        let recent = backup_named(&path, now - TimeDelta::days(20), "recent\n");
        rotating_writer(&path, 100, 10, 30 * DAY, false).expect("writer");
        assert!(!ancient.exists(), "past the age limit when the writer opened");
        assert!(recent.exists(), "within both limits");
    }

    #[test]
    fn deletes_backups_that_aged_past_the_limit_at_the_next_rotation() {
        let (_dir, path) = log_dir();
        let mut writer = rotating_writer(&path, 100, 10, Duration::from_secs(1), false).expect("writer");
        write_records(&mut writer, 0..3, 50);
        let first = backups(&path);
        assert_eq!(first.len(), 1);
        // Backup names are in whole seconds: wait until the first one is surely past a second.
        let name = first[0].file_name().and_then(|name| name.to_str()).expect("utf-8 name");
        let rotated_at = NaiveDateTime::parse_from_str(&name["cete.log.".len()..], BACKUP_TIME_FORMAT)
            .expect("a backup time")
            .and_utc();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while Utc::now().signed_duration_since(rotated_at) <= TimeDelta::milliseconds(1100) {
            assert!(std::time::Instant::now() < deadline, "the clock did not move on");
            std::thread::sleep(Duration::from_millis(50));
        }
        write_records(&mut writer, 3..5, 50);
        let second = backups(&path);
        assert_eq!(second.len(), 1, "{second:?}");
        assert_ne!(second, first, "the aged backup went, the new one stays");
    }

    #[test]
    fn either_limit_deletes() {
        let (_dir, path) = log_dir();
        let now = Utc::now();
        for days in [3, 2, 1] {
            backup_named(&path, now - TimeDelta::days(days), &format!("{days} days\n"));
        }
        // Count limit 2 with a generous age: the oldest of the three goes.
        rotating_writer(&path, 100, 2, 30 * DAY, false).expect("writer");
        let kept: Vec<String> = backups(&path).iter().map(|backup| contents(backup)).collect();
        assert_eq!(kept, ["2 days\n", "1 days\n"]);
        // Age limit of a day and a half with a generous count: the two-day-old one goes.
        rotating_writer(&path, 100, 10, Duration::from_secs(36 * 60 * 60), false).expect("writer");
        let kept: Vec<String> = backups(&path).iter().map(|backup| contents(backup)).collect();
        assert_eq!(kept, ["1 days\n"]);
    }

    #[test]
    fn compresses_rotated_files() {
        let (_dir, path) = log_dir();
        let mut writer = rotating_writer(&path, 100, 2, 30 * DAY, true).expect("writer");
        let written = write_records(&mut writer, 0..9, 50);
        let backups = backups(&path);
        assert_eq!(backups.len(), 2);
        for backup in &backups {
            assert!(backup.extension().is_some_and(|extension| extension == "gz"), "{}", backup.display());
            assert_eq!(contents(backup).len(), 100, "a whole gzip stream of whole records");
        }
        assert!(written.ends_with(&all_contents(&path)));
    }

    #[test]
    fn a_cut_short_compression_is_redone_from_the_whole_file() {
        let (_dir, path) = log_dir();
        let plain = backup_named(&path, Utc::now() - TimeDelta::days(1), "whole backup\n");
        fs::write(gz_path(&plain), b"\x1f\x8b truncated").expect("a torn .gz");
        let mut writer = rotating_writer(&path, 100, 5, 30 * DAY, true).expect("writer");
        assert!(!gz_path(&plain).exists(), "the torn .gz is deleted at startup");
        write_records(&mut writer, 0..3, 50);
        assert!(!plain.exists());
        assert_eq!(contents(&gz_path(&plain)), "whole backup\n");
    }

    #[test]
    fn leaves_files_it_did_not_name_alone() {
        let (dir, path) = log_dir();
        let others = ["cete.log.1", "cete.log.old", "cete.log.2020", "other.log", "cete.log.20200101T000000Z.x"];
        for other in others {
            fs::write(dir.path().join(other), "not ours\n").expect("write");
        }
        let mut writer = rotating_writer(&path, 100, 1, DAY, true).expect("writer");
        write_records(&mut writer, 0..10, 50);
        for other in others {
            assert!(dir.path().join(other).exists(), "{other} was touched");
        }
    }

    #[test]
    fn names_backups_after_the_newest_even_when_the_clock_is_behind() {
        let (_dir, path) = log_dir();
        let future = backup_named(&path, Utc::now() + TimeDelta::days(365), "from the future\n");
        let mut writer = rotating_writer(&path, 100, 1, Duration::ZERO, false).expect("writer");
        write_records(&mut writer, 0..3, 50);
        assert!(!future.exists(), "the count limit deleted it as the older backup");
        let backups = backups(&path);
        assert_eq!(backups.len(), 1);
        assert!(backups[0].display().to_string().starts_with(&format!("{}.1", future.display())));
    }

    #[test]
    fn a_bad_log_path_is_an_error_naming_it() {
        let (dir, _) = log_dir();
        let blocker = dir.path().join("a-file");
        fs::write(&blocker, "").expect("write");
        let Err(err) = rotating_writer(&blocker.join("cete.log"), 100, 1, DAY, false) else {
            panic!("a log file under a regular file was accepted");
        };
        assert!(format!("{err:#}").contains("a-file"), "{err:#}");
    }
}
