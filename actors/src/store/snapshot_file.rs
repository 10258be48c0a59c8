//! The snapshot file format: `CETESNAP5` when the store holds leases (else `CETESNAP4`, the
//! same without lease frames, which builds before leases read), the store's revision (u64 LE; a store without
//! revisions, [`crate::store::revisions`], is written as `CETESNAP3`, without it), then `[u32 LE key length][key][u32 LE record
//! length][record]` per key, in key order (records as the store keeps them); then, after an
//! empty key (keys are never empty), the client sessions record (see [`crate::store::sessions`]) as
//! frames, each a session (`[1][session][low-water mark][last index]`, u64 LE) or a run of the
//! sequences applied in the session before it (`[2][session][sequence]...`), or (only in
//! `CETESNAP5`) a lease (`[3][id][granted TTL in seconds]`; which keys it holds is in their
//! records); then an empty
//! frame and the xxh3-64 (LE) of every byte before it. Written from a redb read view and read
//! back as a stream, so neither end holds a snapshot whole.
//!
//! A torn or corrupt file is an error, never a smaller snapshot: no frame may claim more
//! bytes than the file has left (a torn length cannot ask for gigabytes), the file must end
//! with its checksum, and the checksum must match. Files of earlier builds are still read:
//! `CETESNAP3` (the same without the revision: a store without revisions), `CETESNAP2` (the same, but applied request ids as `[16-byte id][8-byte log index]` frame
//! pairs, read as sessions) and `CETESNAP1` (no record, end mark or checksum).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use redb::ReadableTable;
use xxhash_rust::xxh3::Xxh3;

use crate::store::history::HISTORY;
use crate::store::leases::LEASES;
use crate::store::sessions::{RequestId, SessionPart};
use crate::store::{SnapshotView, KV};

/// What follows the pairs: the client sessions, and the leases; in a backup, the change
/// history too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Session(SessionPart),
    Lease {
        id: u64,
        ttl_seconds: u64,
    },
    /// A row of the change history ([`crate::store::history`]), as the table keeps it.
    History {
        revision: u64,
        n: u32,
        record: Vec<u8>,
    },
    /// The history's floor: the oldest revision it holds every change of.
    HistoryFloor(u64),
}

/// A backup: the fifth format, and the node's change history after the leases. Only backups
/// are written so (Raft snapshots carry no history, and stay readable by earlier builds).
const MAGIC_V6: &[u8] = b"CETESNAP6";
/// The format of a store that holds leases.
const MAGIC_V5: &[u8] = b"CETESNAP5";
const MAGIC: &[u8] = b"CETESNAP4";
/// The format before revisions.
const MAGIC_V3: &[u8] = b"CETESNAP3";
/// The format before client sessions: applied request ids.
const MAGIC_V2: &[u8] = b"CETESNAP2";
/// The format before the end mark and checksum.
const MAGIC_V1: &[u8] = b"CETESNAP1";
const SESSION_TAG: u8 = 1;
const SEQUENCES_TAG: u8 = 2;
const LEASE_TAG: u8 = 3;
const HISTORY_TAG: u8 = 4;
const HISTORY_FLOOR_TAG: u8 = 5;
const BUFFER_BYTES: usize = 1 << 20;

fn corrupt(why: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("corrupt snapshot: {why}"))
}

/// Everything written, hashed on the way.
struct Hashed<W> {
    out: W,
    hash: Xxh3,
}

impl<W: Write> Write for Hashed<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.out.write(bytes)?;
        self.hash.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Writes every pair of the view to `path`, fsyncs it, and returns the key count.
pub fn write(path: &Path, view: SnapshotView) -> std::io::Result<u64> {
    write_with(path, view, false)
}

/// Like [`write`], with the change history too (from its floor on): a backup's file, which
/// `cete restore` installs, so that watches can resume from before the backup's revision.
pub fn write_backup(path: &Path, view: SnapshotView) -> std::io::Result<u64> {
    write_with(path, view, true)
}

fn write_with(path: &Path, view: SnapshotView, with_history: bool) -> std::io::Result<u64> {
    let file = BufWriter::with_capacity(BUFFER_BYTES, File::create(path)?);
    let mut out = Hashed { out: file, hash: Xxh3::new() };
    // A store without revisions is written as the earlier builds wrote it, so that they can
    // still read it while a cluster is upgraded (its revisions start only after that).
    let leases = crate::store::leases::all(&view.txn.open_table(LEASES).map_err(std::io::Error::other)?)
        .map_err(std::io::Error::other)?;
    let revision = crate::store::read_revision(&view.txn).map_err(std::io::Error::other)?;
    let with_history = with_history && revision.is_some();
    match revision {
        Some(revision) => {
            out.write_all(match (with_history, leases.is_empty()) {
                (true, _) => MAGIC_V6,
                (false, false) => MAGIC_V5,
                (false, true) => MAGIC,
            })?;
            out.write_all(&revision.to_le_bytes())?;
        }
        None => out.write_all(MAGIC_V3)?,
    }
    let table = view.txn.open_table(KV).map_err(std::io::Error::other)?;
    let mut keys = 0;
    for item in table.iter().map_err(std::io::Error::other)? {
        let (key, record) = item.map_err(std::io::Error::other)?;
        write_frame(&mut out, key.value().as_bytes())?;
        write_frame(&mut out, record.value())?;
        keys += 1;
    }
    write_frame(&mut out, b"")?;
    for part in crate::store::sessions::all(&view.txn).map_err(std::io::Error::other)? {
        write_frame(&mut out, &session_frame(&part))?;
    }
    for (id, ttl_seconds) in leases {
        let mut frame = vec![LEASE_TAG];
        frame.extend_from_slice(&id.to_le_bytes());
        frame.extend_from_slice(&ttl_seconds.to_le_bytes());
        write_frame(&mut out, &frame)?;
    }
    if with_history {
        write_history(&mut out, &view)?;
    }
    write_frame(&mut out, b"")?;
    let checksum = out.hash.digest();
    let mut file = out.out;
    file.write_all(&checksum.to_le_bytes())?;
    let file = file.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(keys)
}

/// The history's floor, then its rows from the floor on (rows below it, which a compaction
/// has yet to delete, are never read, and are left out).
fn write_history(out: &mut impl Write, view: &SnapshotView) -> std::io::Result<()> {
    let (floor, _) = crate::store::read_floor(&view.txn).map_err(std::io::Error::other)?;
    let Some(floor) = floor else { return Ok(()) };
    let mut frame = vec![HISTORY_FLOOR_TAG];
    frame.extend_from_slice(&floor.to_le_bytes());
    write_frame(out, &frame)?;
    let history = view.txn.open_table(HISTORY).map_err(std::io::Error::other)?;
    for row in history.range((floor, 0)..).map_err(std::io::Error::other)? {
        let (at, record) = row.map_err(std::io::Error::other)?;
        let (revision, n) = at.value();
        let mut frame = Vec::with_capacity(13 + record.value().len());
        frame.push(HISTORY_TAG);
        frame.extend_from_slice(&revision.to_le_bytes());
        frame.extend_from_slice(&n.to_le_bytes());
        frame.extend_from_slice(record.value());
        write_frame(out, &frame)?;
    }
    Ok(())
}

fn session_frame(part: &SessionPart) -> Vec<u8> {
    let words = match part {
        SessionPart::Session { session, low_water, last_index } => {
            (SESSION_TAG, vec![*session, *low_water, *last_index])
        }
        SessionPart::Applied { session, sequences } => {
            (SEQUENCES_TAG, std::iter::once(*session).chain(sequences.iter().copied()).collect())
        }
    };
    let mut frame = Vec::with_capacity(1 + 8 * words.1.len());
    frame.push(words.0);
    for word in words.1 {
        frame.extend_from_slice(&word.to_le_bytes());
    }
    frame
}

/// A frame of the snapshot file: a little-endian u32 length, then the bytes. (The log frames
/// big-endian; both are fixed by files earlier builds wrote. A frame read back may claim no
/// more than the file still holds: [`Pairs::read_exact_vec`].)
fn write_frame(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(std::io::Error::other)?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(bytes)
}

/// The pairs of a snapshot file, one at a time.
pub struct Pairs {
    input: BufReader<File>,
    /// Bytes of the file not read yet: no frame may claim more.
    remaining: u64,
    /// Of everything read so far; `None` for a first-format file, which has no checksum.
    hash: Option<Xxh3>,
    /// The format's number (1 to 6).
    format: u8,
    /// The store's revision (None: a store without revisions).
    revision: Option<u64>,
}

impl Pairs {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = File::open(path)?;
        let remaining = file.metadata()?.len();
        let mut pairs = Pairs {
            input: BufReader::with_capacity(BUFFER_BYTES, file),
            remaining,
            hash: None,
            format: 4,
            revision: None,
        };
        let magic =
            pairs.read_exact_vec(MAGIC.len()).map_err(|_| corrupt(format!("{} is too short", path.display())))?;
        pairs.format = match magic.as_slice() {
            MAGIC_V6 => 6,
            MAGIC_V5 => 5,
            MAGIC => 4,
            MAGIC_V3 => 3,
            MAGIC_V2 => 2,
            MAGIC_V1 => 1,
            _ => return Err(std::io::Error::other(format!("{} is not a Cete snapshot", path.display()))),
        };
        if pairs.format > 1 {
            let mut hash = Xxh3::new();
            hash.update(&magic);
            pairs.hash = Some(hash);
        }
        if pairs.format >= 4 {
            let word =
                pairs.read_exact_vec(8).map_err(|_| corrupt(format!("{} ends in its header", path.display())))?;
            let revision = u64::from_le_bytes(word.try_into().expect("8 bytes"));
            pairs.revision = (revision != 0).then_some(revision);
        }
        Ok(pairs)
    }

    /// The store's revision the snapshot was taken at (None: a store without revisions).
    pub fn revision(&self) -> Option<u64> {
        self.revision
    }

    /// Reads `len` bytes, which the file must still have.
    fn read_exact_vec(&mut self, len: usize) -> std::io::Result<Vec<u8>> {
        if len as u64 > self.remaining {
            return Err(corrupt(format!("a frame claims {len} bytes where {} remain", self.remaining)));
        }
        let mut bytes = vec![0u8; len];
        self.input.read_exact(&mut bytes)?;
        self.remaining -= len as u64;
        if let Some(hash) = &mut self.hash {
            hash.update(&bytes);
        }
        Ok(bytes)
    }

    /// The next frame; `None` at the very end of a first-format file.
    fn read_frame(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        if self.remaining == 0 && self.hash.is_none() {
            return Ok(None);
        }
        let len = self.read_exact_vec(4)?;
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        self.read_exact_vec(len).map(Some)
    }

    fn next_pair(&mut self) -> std::io::Result<Option<(String, Vec<u8>)>> {
        let key = self.read_frame()?.ok_or_else(|| corrupt("it ends inside its keys".into()))?;
        if key.is_empty() {
            // The end of the pairs: the sessions record follows.
            return Ok(None);
        }
        let record = self.read_frame()?.ok_or_else(|| corrupt("it ends inside a record".into()))?;
        let key = String::from_utf8(key).map_err(|_| corrupt("a key is not UTF-8".into()))?;
        Ok(Some((key, record)))
    }
}

impl Pairs {
    /// After the pairs: the client sessions record, in parts (one file of the second format's
    /// request ids becomes a session and a sequence per id), and the leases.
    pub fn parts(mut self) -> impl Iterator<Item = std::io::Result<Part>> {
        let mut pending: Option<Part> = None;
        std::iter::from_fn(move || {
            if let Some(part) = pending.take() {
                return Some(Ok(part));
            }
            match self.next_session_parts() {
                Ok(Some((first, second))) => {
                    pending = second;
                    Some(Ok(first))
                }
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            }
        })
    }

    /// The next part, or two from a second-format request id.
    fn next_session_parts(&mut self) -> std::io::Result<Option<(Part, Option<Part>)>> {
        let Some(frame) = self.read_frame()? else { return Ok(None) };
        if frame.is_empty() {
            self.check_end()?;
            return Ok(None);
        }
        if self.format == 2 {
            let index = self.read_frame()?.ok_or_else(|| corrupt("it ends inside a request record".into()))?;
            let (Ok(id), Ok(index)) = (<[u8; 16]>::try_from(frame), <[u8; 8]>::try_from(index)) else {
                return Err(corrupt("a malformed request record".into()));
            };
            let (id, index) = (RequestId::from_bytes(id), u64::from_le_bytes(index));
            let session = SessionPart::Session { session: id.session, low_water: 0, last_index: index };
            let applied = SessionPart::Applied { session: id.session, sequences: vec![id.sequence] };
            return Ok(Some((Part::Session(session), Some(Part::Session(applied)))));
        }
        let malformed = || corrupt("a malformed session record".into());
        let (tag, body) = frame.split_first().ok_or_else(malformed)?;
        if self.format >= 6 && *tag == HISTORY_TAG {
            if body.len() < 12 {
                return Err(corrupt("a malformed history record".into()));
            }
            let (revision, rest) = body.split_at(8);
            let (n, record) = rest.split_at(4);
            let revision = u64::from_le_bytes(revision.try_into().expect("8 bytes"));
            let n = u32::from_le_bytes(n.try_into().expect("4 bytes"));
            return Ok(Some((Part::History { revision, n, record: record.to_vec() }, None)));
        }
        if body.len() % 8 != 0 || body.is_empty() {
            return Err(malformed());
        }
        let mut words = body.chunks_exact(8).map(|word| u64::from_le_bytes(word.try_into().expect("8 bytes")));
        let session = words.next().expect("not empty");
        let part = match (*tag, body.len()) {
            (SESSION_TAG, 24) => Part::Session(SessionPart::Session {
                session,
                low_water: words.next().expect("3 words"),
                last_index: words.next().expect("3 words"),
            }),
            (SEQUENCES_TAG, _) => Part::Session(SessionPart::Applied { session, sequences: words.collect() }),
            (LEASE_TAG, 16) if self.format >= 5 => {
                Part::Lease { id: session, ttl_seconds: words.next().expect("2 words") }
            }
            (HISTORY_FLOOR_TAG, 8) if self.format >= 6 => Part::HistoryFloor(session),
            _ => return Err(malformed()),
        };
        Ok(Some((part, None)))
    }

    /// After the end mark: the checksum of everything before it, and nothing more.
    fn check_end(&mut self) -> std::io::Result<()> {
        let Some(hash) = self.hash.take() else {
            return Err(corrupt("an end mark in a first-format file".into()));
        };
        let expected = hash.digest();
        if self.remaining != 8 {
            return Err(corrupt(format!("{} bytes after its end mark, not an 8-byte checksum", self.remaining)));
        }
        let mut stored = [0u8; 8];
        self.input.read_exact(&mut stored)?;
        self.remaining = 0;
        if u64::from_le_bytes(stored) != expected {
            return Err(corrupt("its checksum does not match its contents".into()));
        }
        Ok(())
    }
}

/// Reads a whole snapshot (or backup) file and checks it: every frame, the end mark and the
/// checksum. Answers the store's revision it holds and its key count; a torn, corrupt or
/// foreign file is an error saying so.
pub fn verify(path: &Path) -> std::io::Result<(Option<u64>, u64)> {
    let mut pairs = Pairs::open(path)?;
    let revision = pairs.revision();
    let mut keys = 0;
    for pair in pairs.by_ref() {
        pair?;
        keys += 1;
    }
    for part in pairs.parts() {
        part?;
    }
    Ok((revision, keys))
}

impl Iterator for Pairs {
    type Item = std::io::Result<(String, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_pair().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The store revision of the current format's test files.
    const REVISION: u64 = 7;

    /// A snapshot file of `pairs`, then `record` (frames after the pairs), as `write` lays it
    /// out (with the revision [`REVISION`] in the current format).
    fn file_of(magic: &[u8], pairs: &[(&str, &[u8])], record: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Hashed { out: Vec::new(), hash: Xxh3::new() };
        out.write_all(magic).unwrap();
        if magic == MAGIC {
            out.write_all(&REVISION.to_le_bytes()).unwrap();
        }
        for (key, record) in pairs {
            write_frame(&mut out, key.as_bytes()).unwrap();
            write_frame(&mut out, record).unwrap();
        }
        write_frame(&mut out, b"").unwrap();
        for frame in record {
            write_frame(&mut out, frame).unwrap();
        }
        write_frame(&mut out, b"").unwrap();
        let checksum = out.hash.digest();
        let mut bytes = out.out;
        bytes.extend_from_slice(&checksum.to_le_bytes());
        bytes
    }

    fn file_with(pairs: &[(&str, &[u8])], sessions: &[SessionPart]) -> Vec<u8> {
        file_of(MAGIC, pairs, &sessions.iter().map(session_frame).collect::<Vec<_>>())
    }

    type Contents = (Vec<(String, Vec<u8>)>, Vec<SessionPart>);

    /// Reads the whole file: its pairs, then its sessions.
    fn read(bytes: &[u8]) -> std::io::Result<Contents> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot");
        std::fs::write(&path, bytes).unwrap();
        let mut pairs = Pairs::open(&path)?;
        let kv = pairs.by_ref().collect::<Result<Vec<_>, _>>()?;
        let parts = pairs.parts().collect::<Result<Vec<_>, _>>()?;
        let sessions = parts
            .into_iter()
            .map(|part| match part {
                Part::Session(session) => session,
                Part::Lease { .. } => panic!("a lease in a file without leases"),
                other => panic!("{other:?} in a file of sessions only"),
            })
            .collect();
        Ok((kv, sessions))
    }

    #[test]
    fn a_whole_file_reads_back_and_every_cut_or_flipped_byte_is_an_error() {
        let sessions = vec![
            SessionPart::Session { session: 3, low_water: 9, last_index: 7 },
            SessionPart::Applied { session: 3, sequences: vec![9, 11] },
        ];
        let bytes = file_with(&[("a", b"one"), ("b", b"two")], &sessions);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("snapshot"), &bytes).unwrap();
        assert_eq!(Pairs::open(&dir.path().join("snapshot")).unwrap().revision(), Some(REVISION));
        let (kv, read_sessions) = read(&bytes).unwrap();
        assert_eq!(kv, vec![("a".to_string(), b"one".to_vec()), ("b".to_string(), b"two".to_vec())]);
        assert_eq!(read_sessions, sessions);

        for cut in 0..bytes.len() {
            assert!(read(&bytes[..cut]).is_err(), "a file torn at byte {cut} of {} was read whole", bytes.len());
        }
        for at in MAGIC.len()..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x40;
            assert!(read(&flipped).is_err(), "a file with byte {at} flipped was read");
        }
    }

    #[test]
    fn a_second_format_file_reads_its_request_ids_as_sessions() {
        let id = |session: u64, sequence: u64| {
            let mut bytes = session.to_le_bytes().to_vec();
            bytes.extend_from_slice(&sequence.to_le_bytes());
            bytes
        };
        let record = [id(3, 9), 7u64.to_le_bytes().to_vec(), id(3, 12), 8u64.to_le_bytes().to_vec()];
        let (kv, sessions) = read(&file_of(MAGIC_V2, &[("k", b"v")], &record)).unwrap();
        assert_eq!(kv, vec![("k".to_string(), b"v".to_vec())]);
        assert_eq!(
            sessions,
            vec![
                SessionPart::Session { session: 3, low_water: 0, last_index: 7 },
                SessionPart::Applied { session: 3, sequences: vec![9] },
                SessionPart::Session { session: 3, low_water: 0, last_index: 8 },
                SessionPart::Applied { session: 3, sequences: vec![12] },
            ]
        );
    }

    #[test]
    fn a_torn_length_is_refused_without_allocating_it() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&REVISION.to_le_bytes());
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        let err = read(&bytes).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("claims 4294967295 bytes"), "{err}");
    }

    #[test]
    fn a_third_format_file_is_a_store_without_revisions() {
        let sessions = vec![SessionPart::Session { session: 3, low_water: 9, last_index: 7 }];
        let frames: Vec<Vec<u8>> = sessions.iter().map(session_frame).collect();
        let bytes = file_of(MAGIC_V3, &[("k", b"v")], &frames);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("snapshot"), &bytes).unwrap();
        assert_eq!(Pairs::open(&dir.path().join("snapshot")).unwrap().revision(), None);
        let (kv, read_sessions) = read(&bytes).unwrap();
        assert_eq!((kv, read_sessions), (vec![("k".to_string(), b"v".to_vec())], sessions));
    }

    #[test]
    fn a_first_format_file_is_still_read() {
        let mut bytes = MAGIC_V1.to_vec();
        for frame in [&b"k"[..], b"v", b""] {
            bytes.extend_from_slice(&(frame.len() as u32).to_le_bytes());
            bytes.extend_from_slice(frame);
        }
        let (kv, sessions) = read(&bytes).unwrap();
        assert_eq!(kv, vec![("k".to_string(), b"v".to_vec())]);
        assert!(sessions.is_empty());
    }
}
