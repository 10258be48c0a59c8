//! Logging to a file, observed from outside: `--log-file` rotates by `--log-max-size`
//! megabytes, keeps at most `--log-max-backups` gzipped backups, loses no record to a `kill -9`,
//! and `--log-level` takes its level in any case.
mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::{eventually, temp_dir, Node};

const MIB: usize = 1024 * 1024;
/// Long enough for a few megabytes of DEBUG log on a slow machine (a PUT logs about 10 KB).
const TRAFFIC_TIMEOUT: Duration = Duration::from_secs(180);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// `RUST_LOG` adds filters on top of `--log-level`: one set where the tests run must not count.
const NO_RUST_LOG: &[(&str, &str)] = &[("RUST_LOG", "")];

/// Files in `dir` that are backups of `cete.log`, by name.
fn backup_names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .expect("list the log directory")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("cete.log."))
        .collect()
}

/// The level of a log line (`<time> <LEVEL> <module>: <message>`), if it starts a record.
fn level_of(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    let time = words.next()?;
    let looks_like_time = time.len() >= 20 && time.starts_with("20") && time.ends_with('Z');
    looks_like_time.then(|| words.next()).flatten()
}

/// Asserts `text` is whole records: it starts with one and ends at the end of a line.
fn assert_whole_records(what: &str, text: &str) {
    let first = text.lines().next().unwrap_or_default();
    assert!(level_of(first).is_some(), "{what} does not start with a record: {first:?}");
    let tail: String = text.chars().rev().take(200).collect::<Vec<_>>().into_iter().rev().collect();
    assert!(text.ends_with('\n'), "{what} ends in the middle of a line: ...{tail:?}");
}

/// On a failing test, prints the end of the log file: with `--log-file` the node's own
/// output (which [`Node`] prints) holds next to nothing.
struct ShowLogFileOnPanic<'a>(&'a Path);

impl Drop for ShowLogFileOnPanic<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            let text = fs::read_to_string(self.0).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!("\n===== end of {} =====\n{tail}\n===== end of log file =====", self.0.display());
        }
    }
}

fn put_keys(node: &Node, range: std::ops::Range<usize>) {
    for n in range {
        node.put(&format!("/v1/data/log-{n}"), format!("value {n}")).assert_success();
    }
}

#[test]
fn a_busy_node_rotates_compresses_and_caps_its_log_backups() {
    let logs = temp_dir();
    let log_file = logs.path().join("cete.log");
    let _show_log = ShowLogFileOnPanic(&log_file);
    let mut node = Node::start_with_env(
        "node1",
        &[
            &format!("--log-file={}", log_file.display()),
            "--log-level=debug",
            "--log-max-size=1",
            "--log-max-backups=2",
            "--log-compress",
        ],
        NO_RUST_LOG,
    );
    assert!(!node.log().contains(" DEBUG "), "the log went to stderr as well as to the file");

    // Three rotations at least, so the third backup has pushed out the first.
    let mut seen = BTreeSet::new();
    let mut next_key = 0;
    eventually("three log rotations", TRAFFIC_TIMEOUT, || {
        put_keys(&node, next_key..next_key + 20);
        next_key += 20;
        // A backup is plain, then `.gz.tmp` beside it while the compressor works, then `.gz`.
        let backups = backup_names(logs.path()).into_iter();
        seen.extend(backups.map(|name| name.trim_end_matches(".tmp").trim_end_matches(".gz").to_owned()));
        (seen.len() >= 3).then_some(())
    });

    let backups = settled_backups(logs.path(), 2);
    let names: Vec<&String> = backups.iter().map(|(name, _)| name).collect();
    assert_eq!(names.len(), 2, "two backups kept of the {} made: {names:?}", seen.len());
    for (backup, text) in &backups {
        assert_whole_records(backup, text);
        // Rotated before a record would pass 1 MiB, so close below it (records are under 64 KiB).
        assert!((MIB - 64 * 1024..=MIB).contains(&text.len()), "{backup}: {} bytes", text.len());
        assert!(text.contains(" DEBUG "), "--log-level=debug reached the file");
    }

    // Each record is written whole, straight to the kernel: a kill -9 leaves no torn line.
    node.kill9();
    let live = fs::read_to_string(&log_file).expect("read the live log");
    if !live.is_empty() {
        assert_whole_records("the live log", &live);
    }
    assert!(live.len() <= MIB, "the live log is {} bytes", live.len());
}

/// The backups in `dir` (name and text), once they are all gzipped, whole and at most
/// `max_backups`. An idle DEBUG node still logs (about 30 KB/s), so a rotation may be under
/// way, and backups are compressed in the background: for a moment a backup too many, or one
/// not yet compressed (plain, with a `.gz.tmp` beside it). Retries past those.
fn settled_backups(dir: &Path, max_backups: usize) -> Vec<(String, String)> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        match read_backups(dir, max_backups) {
            Ok(backups) => return backups,
            Err(problem) if Instant::now() < deadline => {
                eprintln!("backups not settled yet: {problem}");
                thread::sleep(Duration::from_millis(50));
            }
            Err(problem) => panic!("backups not settled within {SETTLE_TIMEOUT:?}: {problem}"),
        }
    }
}

fn read_backups(dir: &Path, max_backups: usize) -> Result<Vec<(String, String)>, String> {
    let names = backup_names(dir);
    if names.len() > max_backups {
        return Err(format!("{} backups: {names:?}", names.len()));
    }
    if let Some(plain) = names.iter().find(|name| !name.ends_with(".gz")) {
        return Err(format!("{plain} is not compressed"));
    }
    let gunzip = |name: &String| {
        let bytes = fs::read(dir.join(name)).map_err(|e| format!("read {name}: {e}"))?;
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .map_err(|e| format!("{name} is not a whole gzip stream of text: {e}"))?;
        Ok((name.clone(), text))
    };
    names.iter().map(gunzip).collect()
}

/// Starts a node at `level` with its log in a file, makes one request, returns the levels of
/// the records in the file.
fn levels_logged_at(level: &str) -> BTreeSet<String> {
    let logs = temp_dir();
    let log_file = logs.path().join("cete.log");
    let log_flag = format!("--log-file={}", log_file.display());
    let level_flag = format!("--log-level={level}");
    let _show_log = ShowLogFileOnPanic(&log_file);
    let mut node = Node::start_with_env("node1", &[&log_flag, &level_flag], NO_RUST_LOG);
    put_keys(&node, 0..1);
    node.kill9();
    let text = fs::read_to_string(&log_file).expect("read the log");
    text.lines().filter_map(level_of).map(str::to_owned).collect()
}

#[test]
fn log_level_is_case_insensitive_and_filters_the_file() {
    let all = ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"];
    for (given, expected) in [("error", 0), ("Warn", 1), ("INFO", 2), ("debug", 3), ("TrAcE", 4)] {
        let levels = levels_logged_at(given);
        let too_verbose: Vec<&String> =
            levels.iter().filter(|level| !all[..=expected].contains(&level.as_str())).collect();
        assert!(too_verbose.is_empty(), "--log-level={given} logged {too_verbose:?}");
        if expected >= 2 {
            // A node logs its start at INFO, each connection at DEBUG, openraft's steps at TRACE.
            assert!(levels.contains(all[expected]), "--log-level={given} logged only {levels:?}");
        }
    }
}

#[test]
fn an_unknown_log_level_is_refused_before_anything_starts() {
    let logs = temp_dir();
    let log_file = logs.path().join("cete.log");
    let output = common::cli(&["start", "--log-level=loud", &format!("--log-file={}", log_file.display())]);
    assert!(!output.status.success(), "--log-level=loud was accepted");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.to_lowercase().contains("log level \"loud\""), "the error does not name the level: {stderr}");
    assert!(!log_file.exists(), "the log file was opened before the config was checked");
}
