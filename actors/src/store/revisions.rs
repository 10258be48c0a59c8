//! Revisions: the store's counter of applied changes, and each key's place in it.
//!
//! The store has one revision, which every applied change advances by exactly one; each key
//! has the revision that created it, the one that last changed it, its version (1 when
//! created, +1 per write) and its lease (0 for none). All of it is a function of the log
//! alone: it is written by applies, in the same transaction as the data, and travels in
//! snapshots.
//!
//! A state written by a build before revisions has none, and each node reaches this build at a
//! different point of the log, so none may stamp its own: the leader proposes
//! [`crate::command::Command::StartRevisions`] (once every member can read it), and every node
//! stamps its state when it applies that entry, at the same point of the log. Until then the
//! store is "without revisions": records keep the earlier layout and reads answer no revision.
//! A new cluster starts the same way, with its first leader's first proposal.
//!
//! Record layouts, chosen by whether the store has revisions (never mixed in one store):
//! - without: `[u16 LE content-type length][content type][value]`;
//! - with: `[u64 LE create_revision][u64 LE mod_revision][u64 LE version][u64 LE lease]`,
//!   then the same.

pub use crate::command::FIRST_REVISION;

const HEADER: usize = 4 * 8;

pub use crate::command::KeyRevisions;

/// How a key's revisions head its record ([`crate::store::StoredValue`]).
impl KeyRevisions {
    pub(crate) fn encode_into(&self, record: &mut Vec<u8>) {
        for word in [self.create_revision, self.mod_revision, self.version, self.lease] {
            record.extend_from_slice(&word.to_le_bytes());
        }
    }

    /// The revisions at the head of a record with them, and the rest of the record.
    pub(crate) fn decode(record: &[u8]) -> Option<(Self, &[u8])> {
        let header = record.get(..HEADER)?;
        let word = |i: usize| u64::from_le_bytes(header[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let revisions =
            KeyRevisions { create_revision: word(0), mod_revision: word(1), version: word(2), lease: word(3) };
        Some((revisions, &record[HEADER..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_keeps_the_creation_and_counts_the_version() {
        let created = KeyRevisions::written_at(5, None);
        assert_eq!(created, KeyRevisions { create_revision: 5, mod_revision: 5, version: 1, lease: 0 });
        let overwritten = KeyRevisions::written_at(9, Some(&created));
        assert_eq!(overwritten, KeyRevisions { create_revision: 5, mod_revision: 9, version: 2, lease: 0 });
    }

    #[test]
    fn revisions_round_trip_at_the_head_of_a_record() {
        let revisions = KeyRevisions { create_revision: 3, mod_revision: u64::MAX, version: 7, lease: 42 };
        let mut record = Vec::new();
        revisions.encode_into(&mut record);
        record.extend_from_slice(b"rest");
        assert_eq!(KeyRevisions::decode(&record), Some((revisions, &b"rest"[..])));
        assert_eq!(KeyRevisions::decode(&record[..HEADER - 1]), None);
    }
}
