//! Exactly-once writes through client sessions (the Raft dissertation, 6.3). A client write
//! that leaves the node that took it is sent under a [`RequestId`] — the sending process's
//! session and a sequence number — so a write sent again, because the leader it was routed to
//! went silent and its fate is unknown, is applied at most once.
//!
//! The origin side ([`ClientSession`]): each process draws a random session id at start and
//! numbers its routed writes 1, 2, 3, ...; it tracks the ones it still awaits an answer for
//! (and may still send again), and stamps every routed write with its *low-water mark*, the
//! lowest sequence it still awaits. A sequence stops being awaited only when its write was
//! answered or given up (the client was told the outcome is unknown), never before: so no write
//! that may still be sent again is ever below a mark that went out.
//!
//! The state machine side ([`SessionTable`]): per session, the highest low-water mark applied
//! and the sequences applied at or above it. A write is a duplicate when its sequence is below
//! the mark or already recorded; raising the mark forgets the sequences below it. The record is
//! bounded by what is in flight, not by history: about one row per write awaiting its answer.
//! A session that applies nothing for [`KEEP_ENTRIES`] log entries (its process ended) is
//! dropped, checked every [`EXPIRE_EVERY`]th entry. All of it is part of the replicated state
//! (same transaction as the data, carried in snapshots) and a function of the log alone: every
//! node judges a retry the same way, whatever the batches it applies in.
//!
//! Before sessions the record kept each applied id for 100,000 log entries (tables `requests`
//! and `requests_by_entry`); a store holding them is converted on open ([`upgrade`]), each
//! origin becoming a session whose applied ids are kept until it expires.

use std::collections::BTreeSet;
use std::sync::{LazyLock, Mutex};

use redb::{ReadableTable, Table, TableDefinition, TableHandle, WriteTransaction};

/// Per session: (low-water mark, index of the last entry that applied one of its writes).
const SESSIONS: TableDefinition<u64, (u64, u64)> = TableDefinition::new("sessions");
/// (session, sequence) of each write applied at or above its session's low-water mark.
const APPLIED: TableDefinition<(u64, u64), ()> = TableDefinition::new("session_applied");

/// The record before sessions: applied ids with the index that applied them, the ids of each
/// entry, and an older layout of the latter. Converted by [`upgrade`].
const LEGACY_BY_ID: TableDefinition<(u64, u64), u64> = TableDefinition::new("requests");
const LEGACY_BY_ENTRY: TableDefinition<u64, &[u8]> = TableDefinition::new("requests_by_entry");
const LEGACY_BY_INDEX: TableDefinition<(u64, u64, u64), ()> = TableDefinition::new("requests_by_index");

/// How long (in log entries) a session that applies nothing is kept: a copy of one of its
/// writes still in flight after that long would be applied again (as before sessions, which
/// kept each id this long).
pub(crate) const KEEP_ENTRIES: u64 = 100_000;
/// Idle sessions are looked for at every entry whose index is a multiple of this.
pub(crate) const EXPIRE_EVERY: u64 = 1024;

pub use crate::command::RequestId;

impl RequestId {
    /// The id as a snapshot of the first two formats stores it: session, then sequence, LE.
    pub(crate) fn from_bytes(bytes: [u8; 16]) -> Self {
        let (session, sequence) = bytes.split_at(8);
        RequestId {
            session: u64::from_le_bytes(session.try_into().expect("8 bytes")),
            sequence: u64::from_le_bytes(sequence.try_into().expect("8 bytes")),
        }
    }
}

/// The origin side of a session: numbers the writes this process routes and knows which of
/// them it still awaits.
pub struct ClientSession {
    id: u64,
    state: Mutex<Awaiting>,
}

struct Awaiting {
    next: u64,
    sequences: BTreeSet<u64>,
}

static PROCESS_SESSION: LazyLock<ClientSession> = LazyLock::new(|| ClientSession::new(random_session_id()));

/// A fresh random id: a restarted process starts a new session, so its numbering owes nothing
/// to the last run's (nor to the clock, which may step back).
fn random_session_id() -> u64 {
    crate::random::random_u64()
}

impl ClientSession {
    pub fn new(id: u64) -> Self {
        ClientSession { id, state: Mutex::new(Awaiting { next: 1, sequences: BTreeSet::new() }) }
    }

    /// This process's session.
    pub fn of_process() -> &'static ClientSession {
        &PROCESS_SESSION
    }

    /// Ids for `count` writes about to be routed, and the low-water mark to send with them.
    /// They are awaited until the returned guard is dropped (answered, or given up).
    pub fn begin(&self, count: usize) -> (Vec<RequestId>, u64, Awaited<'_>) {
        // Numbering and registering under one lock: a number handed out but not yet awaited
        // could otherwise fall below a mark another write takes meanwhile.
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let sequences = state.next..state.next + count as u64;
        state.next = sequences.end;
        state.sequences.extend(sequences.clone());
        let low_water = state.sequences.first().copied().unwrap_or(state.next);
        let ids = sequences.clone().map(|sequence| RequestId { session: self.id, sequence }).collect();
        (ids, low_water, Awaited { session: self, sequences })
    }

    /// The lowest sequence still awaited (the next one when none is).
    pub fn low_water(&self) -> u64 {
        let state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.sequences.first().copied().unwrap_or(state.next)
    }
}

/// Writes of a session that are awaited while this lives.
pub struct Awaited<'a> {
    session: &'a ClientSession,
    sequences: std::ops::Range<u64>,
}

impl Drop for Awaited<'_> {
    fn drop(&mut self) {
        let mut state = self.session.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for sequence in self.sequences.clone() {
            state.sequences.remove(&sequence);
        }
    }
}

/// The state machine side: the sessions record inside one write transaction.
pub(crate) struct SessionTable<'txn> {
    sessions: Table<'txn, u64, (u64, u64)>,
    applied: Table<'txn, (u64, u64), ()>,
}

impl<'txn> SessionTable<'txn> {
    pub fn open(txn: &'txn WriteTransaction) -> Result<Self, redb::Error> {
        Ok(SessionTable { sessions: txn.open_table(SESSIONS)?, applied: txn.open_table(APPLIED)? })
    }

    /// Whether the write `id`, stamped with `low_water` and applied by the entry at `index`,
    /// is to be applied (false: it was applied before, or given up by its origin); records it.
    pub fn admit(&mut self, id: &RequestId, low_water: u64, index: u64) -> Result<bool, redb::Error> {
        let (mut mark, _) = self.sessions.get(id.session)?.map(|row| row.value()).unwrap_or((0, 0));
        if low_water > mark {
            self.applied.retain_in((id.session, mark)..(id.session, low_water), |_, _| false)?;
            mark = low_water;
        }
        self.sessions.insert(id.session, (mark, index))?;
        if id.sequence < mark {
            return Ok(false);
        }
        Ok(self.applied.insert((id.session, id.sequence), ())?.is_none())
    }

    /// Before the entry at `index` is applied: at every [`EXPIRE_EVERY`]th entry, drops the
    /// sessions that applied nothing in the [`KEEP_ENTRIES`] entries before it.
    pub fn expire(&mut self, index: u64) -> Result<(), redb::Error> {
        if !index.is_multiple_of(EXPIRE_EVERY) || index < KEEP_ENTRIES {
            return Ok(());
        }
        let idle: Vec<u64> = self
            .sessions
            .iter()?
            .filter_map(|row| match row {
                Ok((session, value)) => (value.value().1 < index - KEEP_ENTRIES).then(|| Ok(session.value())),
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()?;
        for session in idle {
            self.forget(session)?;
        }
        Ok(())
    }

    fn forget(&mut self, session: u64) -> Result<(), redb::Error> {
        self.applied.retain_in((session, 0)..=(session, u64::MAX), |_, _| false)?;
        self.sessions.remove(session)?;
        Ok(())
    }

    /// Loads one part of a snapshot's record (merged with what is there: a file of the second
    /// format may list an origin's ids in more than one run).
    pub fn restore(&mut self, part: SessionPart) -> Result<(), redb::Error> {
        match part {
            SessionPart::Session { session, low_water, last_index } => {
                let (mark, last) = self.sessions.get(session)?.map(|row| row.value()).unwrap_or((0, 0));
                self.sessions.insert(session, (mark.max(low_water), last.max(last_index)))?;
            }
            SessionPart::Applied { session, sequences } => {
                for sequence in sequences {
                    self.applied.insert((session, sequence), ())?;
                }
            }
        }
        Ok(())
    }

    /// Rows in the record: (sessions, applied sequences kept).
    pub fn rows(&self) -> Result<(u64, u64), redb::Error> {
        use redb::ReadableTableMetadata;
        Ok((self.sessions.len()?, self.applied.len()?))
    }

    /// Empties the record (before a snapshot's is loaded).
    pub fn clear(&mut self) -> Result<(), redb::Error> {
        self.sessions.retain(|_, _| false)?;
        self.applied.retain(|_, _| false)?;
        Ok(())
    }
}

/// A piece of the sessions record as a snapshot carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionPart {
    Session {
        session: u64,
        low_water: u64,
        last_index: u64,
    },
    /// Sequences applied in `session` at or above its mark (a run of them; more may follow).
    Applied {
        session: u64,
        sequences: Vec<u64>,
    },
}

/// How many sequences one [`SessionPart::Applied`] of [`all`] carries at most.
const SEQUENCES_PER_PART: usize = 4096;

/// The whole sessions record of a read view, for a snapshot: each session, then its sequences.
pub(crate) fn all(txn: &redb::ReadTransaction) -> Result<Vec<SessionPart>, redb::Error> {
    let (sessions, applied) = match (txn.open_table(SESSIONS), txn.open_table(APPLIED)) {
        (Ok(sessions), Ok(applied)) => (sessions, applied),
        (Err(redb::TableError::TableDoesNotExist(_)), _) | (_, Err(redb::TableError::TableDoesNotExist(_))) => {
            return Ok(Vec::new())
        }
        (Err(e), _) | (_, Err(e)) => return Err(e.into()),
    };
    let mut parts = Vec::new();
    for row in sessions.iter()? {
        let (session, value) = row?;
        let (session, (low_water, last_index)) = (session.value(), value.value());
        parts.push(SessionPart::Session { session, low_water, last_index });
        let mut sequences = Vec::new();
        for row in applied.range((session, 0)..=(session, u64::MAX))? {
            sequences.push(row?.0.value().1);
            if sequences.len() == SEQUENCES_PER_PART {
                parts.push(SessionPart::Applied { session, sequences: std::mem::take(&mut sequences) });
            }
        }
        if !sequences.is_empty() {
            parts.push(SessionPart::Applied { session, sequences });
        }
    }
    Ok(parts)
}

/// Converts the record kept per request id (before sessions) into sessions, once: each origin
/// becomes a session with mark 0, its ids applied, active at the last index that applied one.
pub(crate) fn upgrade(txn: &WriteTransaction) -> Result<(), redb::Error> {
    let names: Vec<String> = txn.list_tables()?.map(|table| table.name().to_string()).collect();
    let has = |name: &str| names.iter().any(|n| n == name);
    if has(LEGACY_BY_ID.name()) {
        let legacy = txn.open_table(LEGACY_BY_ID)?;
        let mut table = SessionTable::open(txn)?;
        for row in legacy.iter()? {
            let (key, index) = row?;
            let ((session, sequence), index) = (key.value(), index.value());
            table.restore(SessionPart::Session { session, low_water: 0, last_index: index })?;
            table.restore(SessionPart::Applied { session, sequences: vec![sequence] })?;
        }
        drop(legacy);
        txn.delete_table(LEGACY_BY_ID)?;
    }
    if has(LEGACY_BY_ENTRY.name()) {
        txn.delete_table(LEGACY_BY_ENTRY)?;
    }
    if has(LEGACY_BY_INDEX.name()) {
        txn.delete_table(LEGACY_BY_INDEX)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use redb::Database;

    use super::*;

    fn store() -> (tempfile::TempDir, Database) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("store.redb")).unwrap();
        (dir, db)
    }

    fn id(sequence: u64) -> RequestId {
        RequestId { session: 7, sequence }
    }

    #[test]
    fn a_duplicate_in_the_set_and_one_below_the_mark_are_both_skipped() {
        let (_dir, db) = store();
        let txn = db.begin_write().unwrap();
        let mut table = SessionTable::open(&txn).unwrap();
        assert!(table.admit(&id(1), 1, 10).unwrap());
        assert!(table.admit(&id(2), 1, 11).unwrap());
        assert!(!table.admit(&id(2), 1, 12).unwrap(), "2 is in the set");
        // 1 was answered: the next write raises the mark past it, which forgets it.
        assert!(table.admit(&id(3), 2, 13).unwrap());
        assert!(!table.admit(&id(1), 1, 14).unwrap(), "1 is below the mark");
        assert!(!table.admit(&id(2), 2, 15).unwrap());
        assert_eq!(table.rows().unwrap(), (1, 2), "only 2 and 3 are kept");
    }

    #[test]
    fn a_write_its_origin_gave_up_is_not_applied_once_the_mark_passed_it() {
        let session = ClientSession::new(7);
        let (lost, _, given_up) = session.begin(1);
        let (later, low_water, _answered_later) = session.begin(1);
        assert_eq!(low_water, lost[0].sequence, "the first write is still awaited");
        drop(given_up);
        assert_eq!(session.low_water(), later[0].sequence);
        let (_dir, db) = store();
        let txn = db.begin_write().unwrap();
        let mut table = SessionTable::open(&txn).unwrap();
        assert!(table.admit(&later[0], session.low_water(), 1).unwrap());
        assert!(!table.admit(&lost[0], 1, 2).unwrap(), "a late copy of the given-up write");
    }

    /// 64 writes in flight at a time, answered in a scrambled order, 20,000 in all: the record
    /// holds the sequences from the oldest write still awaited to the newest, never the history.
    #[test]
    fn the_record_stays_bounded_by_the_writes_in_flight() {
        let session = ClientSession::new(7);
        let (_dir, db) = store();
        let txn = db.begin_write().unwrap();
        let mut table = SessionTable::open(&txn).unwrap();
        let mut in_flight = std::collections::VecDeque::new();
        let mut most = 0;
        for n in 0..20_000u64 {
            let (ids, low_water, awaited) = session.begin(1);
            assert!(table.admit(&ids[0], low_water, n + 1).unwrap());
            in_flight.push_back(awaited);
            if in_flight.len() == 64 {
                // Answered out of order: mostly one from the middle, every 7th the oldest.
                let at = if n % 7 == 0 { 0 } else { (n as usize * 31) % in_flight.len() };
                in_flight.remove(at);
            }
            let kept = table.rows().unwrap().1;
            let span = ids[0].sequence - low_water + 1;
            assert!(kept <= span, "{kept} sequences kept, {span} from the oldest awaited to the newest");
            most = most.max(kept);
        }
        assert!(most < 4 * 64, "the record held {most} sequences with 64 writes in flight");
        assert_eq!(table.rows().unwrap().0, 1);
    }

    #[test]
    fn an_idle_session_expires_at_the_first_multiple_of_the_period_past_its_window() {
        let (_dir, db) = store();
        let txn = db.begin_write().unwrap();
        let mut table = SessionTable::open(&txn).unwrap();
        assert!(table.admit(&id(1), 1, 6).unwrap());
        let edge = (6 + KEEP_ENTRIES + 1).div_ceil(EXPIRE_EVERY) * EXPIRE_EVERY;
        table.expire(edge - EXPIRE_EVERY).unwrap();
        table.expire(edge - 1).unwrap();
        assert_eq!(table.rows().unwrap(), (1, 1), "kept within its window");
        table.expire(edge).unwrap();
        assert_eq!(table.rows().unwrap(), (0, 0));
        assert!(table.admit(&id(1), 1, edge + 1).unwrap(), "forgotten");
    }

    #[test]
    fn a_record_kept_per_request_id_is_converted_to_sessions() {
        let (_dir, db) = store();
        let txn = db.begin_write().unwrap();
        {
            let mut by_id = txn.open_table(LEGACY_BY_ID).unwrap();
            let mut by_entry = txn.open_table(LEGACY_BY_ENTRY).unwrap();
            for ((origin, sequence), index) in [((1, 10), 5), ((1, 12), 6), ((2, 20), 7)] {
                by_id.insert((origin, sequence), index).unwrap();
                by_entry.insert(index, [0u8; 16].as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();

        let txn = db.begin_write().unwrap();
        upgrade(&txn).unwrap();
        let names: Vec<String> = txn.list_tables().unwrap().map(|t| t.name().to_string()).collect();
        assert!(!names.iter().any(|name| name.starts_with("requests")), "{names:?}");
        let mut table = SessionTable::open(&txn).unwrap();
        assert_eq!(table.rows().unwrap(), (2, 3));
        assert!(!table.admit(&RequestId { session: 1, sequence: 12 }, 0, 9).unwrap(), "still a duplicate");
        assert!(!table.admit(&RequestId { session: 2, sequence: 20 }, 0, 9).unwrap());
        assert!(table.admit(&RequestId { session: 1, sequence: 11 }, 0, 9).unwrap());
    }

    /// A routed write as the build before sessions put it in the log: without a low-water mark.
    #[test]
    fn a_log_entry_written_before_sessions_decodes_with_mark_zero() {
        use bytes::Bytes;

        use crate::command::{decode, encode, Command};

        #[derive(serde::Serialize)]
        enum Before {
            Set {
                key: String,
                value: Bytes,
                content_type: Option<String>,
            },
            #[allow(dead_code)]
            Delete {
                key: String,
            },
            #[allow(dead_code)]
            Batch(Vec<Before>),
            Request {
                id: (u64, u64),
                command: Box<Before>,
            },
        }
        let set = Before::Set { key: "k".into(), value: Bytes::from_static(b"v"), content_type: None };
        let bytes = encode(&Before::Request { id: (3, 9), command: Box::new(set) }).unwrap();
        let Command::Request { id, command, low_water } = decode::<Command>(&bytes).unwrap() else {
            panic!("not a request")
        };
        assert_eq!((id, low_water), (RequestId { session: 3, sequence: 9 }, 0));
        assert!(matches!(*command, Command::Set { ref key, .. } if key == "k"));
    }
}
