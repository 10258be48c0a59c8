use std::io::Read;
use std::sync::mpsc;
use std::thread;

use super::*;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a step that should take no time may take before a test calls it stuck.
const STUCK: Duration = Duration::from_secs(30);

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

/// The names of the files beside `path` that start with its name and a dot.
fn files_named_after(path: &Path) -> Vec<String> {
    let prefix = format!("{}.", path.file_name().and_then(|name| name.to_str()).expect("utf-8 name"));
    fs::read_dir(path.parent().expect("a directory"))
        .expect("list the log directory")
        .map(|entry| entry.expect("directory entry").file_name().into_string().expect("utf-8 name"))
        .filter(|name| name.starts_with(&prefix))
        .collect()
}

/// Rotated files, plain or gzipped, oldest first.
fn backups(path: &Path) -> Vec<PathBuf> {
    let prefix_bytes = path.file_name().map(|name| name.len() + 1).expect("a file name");
    let mut found: Vec<(BackupName, PathBuf)> = files_named_after(path)
        .into_iter()
        .filter(|name| !name.ends_with(".gz.tmp"))
        .map(|name| {
            let suffix = name[prefix_bytes..].trim_end_matches(".gz");
            let backup = BackupName::parse(suffix).unwrap_or_else(|| panic!("not a backup name: {name}"));
            (backup, path.with_file_name(name))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, file)| file).collect()
}

/// Unfinished gzips (`.gz.tmp`) beside `path`.
fn temporaries(path: &Path) -> Vec<String> {
    files_named_after(path).into_iter().filter(|name| name.ends_with(".gz.tmp")).collect()
}

fn is_gz(path: &Path) -> bool {
    path.extension().is_some_and(|extension| extension == "gz")
}

fn contents(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    if is_gz(path) {
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

fn backup_named(path: &Path, rotated_at: DateTime<Utc>, text: &str) -> PathBuf {
    let backup = PathBuf::from(format!("{}.{}", path.display(), rotated_at.format(BACKUP_TIME_FORMAT)));
    fs::write(&backup, text).expect("write a backup");
    backup
}

/// A gzip step that, once it has written a backup's `.gz.tmp`, reports that backup and waits
/// until the test sends on (or drops) the returned sender.
fn paused_gzip() -> (WriteGzip, mpsc::Receiver<PathBuf>, mpsc::Sender<()>) {
    let (paused_at, paused) = mpsc::channel();
    let (go_on, wait) = mpsc::channel::<()>();
    let write_gzip: WriteGzip = Box::new(move |plain, temporary| {
        compression::write_gzip(plain, temporary)?;
        let _ = paused_at.send(plain.to_owned());
        let _ = wait.recv();
        Ok(())
    });
    (write_gzip, paused, go_on)
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
    let rotated_at = BackupName::parse(&name["cete.log.".len()..]).expect("a backup name").rotated_at();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while Utc::now().signed_duration_since(rotated_at) <= TimeDelta::milliseconds(1100) {
        assert!(std::time::Instant::now() < deadline, "the clock did not move on");
        thread::sleep(Duration::from_millis(50));
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
    drop(writer); // waits for the compressor
    let backups = backups(&path);
    assert_eq!(backups.len(), 2);
    for backup in &backups {
        assert!(is_gz(backup), "{}", backup.display());
        assert_eq!(contents(backup).len(), 100, "a whole gzip stream of whole records");
    }
    assert!(written.ends_with(&all_contents(&path)));
    assert!(temporaries(&path).is_empty(), "{:?}", temporaries(&path));
}

#[test]
fn writes_go_on_while_a_backup_is_being_compressed() {
    let (_dir, path) = log_dir();
    let (write_gzip, paused, go_on) = paused_gzip();
    let mut writer = RotatingWriter::open(&path, 100, 10, Duration::ZERO, Some(write_gzip)).expect("writer");
    let mut written = write_records(&mut writer, 0..3, 50);
    let first = paused.recv_timeout(STUCK).expect("the compressor took the first backup");

    // The compressor is stopped in the middle of that backup: three more rotations meanwhile.
    let (done, finished) = mpsc::channel();
    let writing = thread::spawn(move || {
        let more = write_records(&mut writer, 3..9, 50);
        let _ = done.send(());
        (writer, more)
    });
    finished.recv_timeout(STUCK).expect("logging waited for the compressor");
    let (writer, more) = writing.join().expect("the writing thread");
    written += &more;
    let during = backups(&path);
    assert_eq!(during.len(), 4, "{during:?}");
    assert!(!during.iter().any(|backup| is_gz(backup)), "compressed while the compressor was paused: {during:?}");
    assert_eq!(during[0], first);
    // Its gzip is written, but it is only a `.gz` once whole and on disk.
    let first_name = first.file_name().and_then(|name| name.to_str()).expect("utf-8 name");
    assert_eq!(temporaries(&path), [format!("{first_name}.gz.tmp")]);

    drop(go_on);
    drop(writer); // waits for the compressor
    let after = backups(&path);
    assert_eq!(after.len(), 4, "{after:?}");
    assert!(after.iter().all(|backup| is_gz(backup)), "{after:?}");
    assert!(temporaries(&path).is_empty(), "{:?}", temporaries(&path));
    assert_eq!(all_contents(&path), written);
}

#[test]
fn a_backup_deleted_while_being_compressed_stays_deleted() {
    let (_dir, path) = log_dir();
    let (write_gzip, paused, go_on) = paused_gzip();
    let mut writer = RotatingWriter::open(&path, 100, 1, Duration::ZERO, Some(write_gzip)).expect("writer");
    write_records(&mut writer, 0..3, 50);
    let first = paused.recv_timeout(STUCK).expect("the compressor took the first backup");
    // A second rotation: the count limit of 1 deletes the backup being compressed.
    let written = write_records(&mut writer, 3..5, 50);
    assert!(!first.exists());
    drop(go_on);
    drop(writer); // waits for the compressor
    let kept = backups(&path);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_ne!(kept[0], with_suffix(&first, ".gz"), "the deleted backup came back compressed");
    assert!(is_gz(&kept[0]));
    assert!(temporaries(&path).is_empty(), "{:?}", temporaries(&path));
    assert_eq!(all_contents(&path), String::from_utf8(record(2, 50)).expect("utf-8") + &written);
}

#[test]
fn what_a_crash_left_half_compressed_is_redone_from_the_whole_file() {
    let (_dir, path) = log_dir();
    let plain = backup_named(&path, Utc::now() - TimeDelta::days(1), "whole backup\n");
    fs::write(with_suffix(&plain, ".gz"), b"\x1f\x8b torn").expect("a torn .gz");
    fs::write(with_suffix(&plain, ".gz.tmp"), b"\x1f\x8b torn").expect("a torn .gz.tmp");
    drop(rotating_writer(&path, 100, 5, 30 * DAY, false).expect("writer"));
    assert!(!with_suffix(&plain, ".gz").exists(), "the torn .gz is deleted at startup");
    assert!(temporaries(&path).is_empty(), "{:?}", temporaries(&path));
    assert_eq!(contents(&plain), "whole backup\n");

    // With --log-compress, backups left plain are compressed from startup on.
    drop(rotating_writer(&path, 100, 5, 30 * DAY, true).expect("writer"));
    assert!(!plain.exists());
    assert_eq!(contents(&with_suffix(&plain, ".gz")), "whole backup\n");
}

#[test]
fn leaves_files_it_did_not_name_alone() {
    let (dir, path) = log_dir();
    let others = [
        "cete.log.1",
        "cete.log.old",
        "cete.log.2020",
        "other.log",
        "cete.log.20200101T000000Z.x",
        "cete.log.20200101T000000Z.tmp",
        "cete.log.2020011T000000Z",
    ];
    for other in others {
        fs::write(dir.path().join(other), "not ours\n").expect("write");
    }
    let mut writer = rotating_writer(&path, 100, 1, DAY, true).expect("writer");
    write_records(&mut writer, 0..10, 50);
    drop(writer);
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
    assert_eq!(backups, [with_suffix(&future, ".1")]);
}

#[test]
fn backup_names_sort_in_rotation_order_and_only_ours_parse() {
    let name = |suffix: &str| BackupName::parse(suffix).unwrap_or_else(|| panic!("{suffix} is a backup name"));
    assert!(name("20260101T000000Z") < name("20260101T000000Z.1"));
    assert!(name("20260101T000000Z.2") < name("20260101T000000Z.10"));
    assert!(name("20260101T000000Z.10") < name("20260101T000001Z"));
    for not_ours in [
        "1",
        "old",
        "20260101T000000Z.x",
        "20260101T000000Z.1.2",
        "20260101T000000Z.01",
        "20260101T000000Z.+1",
        "2026011T000000Z",
        "20260101T000000",
    ] {
        assert_eq!(BackupName::parse(not_ours), None, "{not_ours}");
    }
    let now = Utc::now();
    let first = BackupName::after(None, now);
    let second = BackupName::after(Some(first.clone()), now);
    assert_eq!(second, BackupName { timestamp: first.timestamp.clone(), number: Some(1) });
    assert!(first < second);
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
