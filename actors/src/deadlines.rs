//! How long each step of a request may wait, in one place, and how the waits nest.
//!
//! A client's write or linearizable read, outermost wait first:
//!
//! ```text
//! front door ............................ CLIENT_WRITE / CLIENT_READ       10 s
//!   router: an unreachable leader ....... LEADER_UNREACHABLE                5 s
//!             (tried again every ....... RECONNECT_PAUSE                 100 ms)
//!           a silent leader watched ..... SILENT_LEADER                   300 ms
//!   peer link to the leader ............. FORWARDED_REQUEST                 9 s
//!     leader: a quorum confirms reads ... CONFIRM_READ                      8 s
//!             a new leader's first ack .. ELECTION_WAIT                     5 s
//!   this node applies to the read index . APPLY_WAIT                        8 s
//! ```
//!
//! Each inner wait ends before the one around it, so the client hears the step that failed
//! ("no quorum confirmed the read", "lost contact with node2") rather than its own bare
//! timeout, and nothing forwarded for a client outlives the client's wait. Membership
//! changes wait longer, under the same rule: a join prepares the joiner, lets it catch up
//! and promotes it ([`FORWARDED_JOIN`]), within the joiner's own [`JOIN_RETRY_FOR`].
//!
//! The checks at the bottom of this file keep the nesting true when a value changes. Waits
//! that bound no client request stay with their code: the Raft network's stream replies,
//! the store's commit cadence, the front doors' keep-alives.

use std::time::Duration;

/// How long a client write may wait to be committed. A leader cut off from its quorum never
/// commits; past this the client is told the outcome is unknown instead of hanging.
pub const CLIENT_WRITE: Duration = Duration::from_secs(10);
/// How long a linearizable read may wait for the leader's confirmation and the apply.
pub const CLIENT_READ: Duration = Duration::from_secs(10);

/// How long a request waits for an unreachable leader to come back or be replaced: longer
/// than an election takes (1-2 s of silence, then a vote).
pub const LEADER_UNREACHABLE: Duration = Duration::from_secs(5);
/// How often a request tries an unreachable leader again meanwhile.
pub const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// How long the leader may take to answer a routed request before this node starts watching
/// for an election that would replace it (far above a healthy round trip).
pub const SILENT_LEADER: Duration = Duration::from_millis(300);
/// How long a peer link waits for the leader's answer to a forwarded write, read index or
/// leader transfer.
pub const FORWARDED_REQUEST: Duration = Duration::from_secs(9);

/// How long the leader keeps trying to confirm its leadership for waiting reads. openraft
/// gives each confirmation one leader lease: a quorum busy for longer fails it though it is
/// there, so a failed one is retried until a quorum answers or this is over.
pub const CONFIRM_READ: Duration = Duration::from_secs(8);
/// The pause between two confirmations of the same reads.
pub const CONFIRM_RETRY_PAUSE: Duration = Duration::from_millis(20);
/// How long a request waits for a leader to be elected, or for a new leader's first
/// acknowledgement by a quorum, before giving up.
pub const ELECTION_WAIT: Duration = Duration::from_secs(5);
/// How long a linearizable read waits for this node to apply up to the leader's read index.
pub const APPLY_WAIT: Duration = Duration::from_secs(8);

/// How long an operator's leader transfer may take before it is reported as failed. The
/// target flushes the log the leader had and wins one round of votes: milliseconds on a
/// healthy cluster.
pub const TRANSFER: Duration = Duration::from_secs(3);
/// How long a leader that is stopping waits for its successor: a stop must stay prompt when
/// the whole cluster is stopped at once and no successor can take over.
pub const STOP_HANDOVER: Duration = Duration::from_secs(1);
/// How long a leader that removed itself waits for the successor it asks to campaign.
pub const HAND_OVER: Duration = Duration::from_secs(2);
/// How long a node that is stopping lets its front doors finish the calls in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long a membership change waits for an earlier one to finish (a change is two log
/// entries, the joint configuration and the new one).
pub const MEMBERSHIP_WAIT: Duration = Duration::from_secs(10);
/// How long the leader waits for a joiner to give up a one-node state of its own.
pub const PREPARE_JOINER: Duration = Duration::from_secs(30);
/// How long a join waits for the new node to catch up before it is made a voter.
pub const CATCH_UP: Duration = Duration::from_secs(50);
/// How long a peer link waits for the leader's answer to a forwarded join: preparing the
/// joiner, its catch-up, and the two membership changes (learner, then voter).
pub const FORWARDED_JOIN: Duration = Duration::from_secs(100);
/// How long a peer link waits for the leader's answer to a forwarded leave.
pub const FORWARDED_LEAVE: Duration = Duration::from_secs(25);
/// How long a starting node keeps asking to join before it gives up.
pub const JOIN_RETRY_FOR: Duration = Duration::from_secs(120);
/// The longest a peer link waits for any forwarded request: a link being closed stays open
/// this long for the answers still on their way.
pub const LONGEST_FORWARD: Duration = FORWARDED_JOIN;

/// How often a peer link asks its peer for its state.
pub const POLL_EVERY: Duration = Duration::from_secs(1);
/// How long a state poll may take: a peer that does not answer by the next poll is down.
pub const POLL_ANSWER: Duration = Duration::from_millis(800);

const fn ms(d: Duration) -> u128 {
    d.as_millis()
}

// The nesting of a client's request (see the diagram above).
const _: () = assert!(ms(FORWARDED_REQUEST) < ms(CLIENT_WRITE) && ms(FORWARDED_REQUEST) < ms(CLIENT_READ));
const _: () = assert!(ms(CONFIRM_READ) < ms(FORWARDED_REQUEST) && ms(APPLY_WAIT) < ms(CLIENT_READ));
const _: () = assert!(ms(LEADER_UNREACHABLE) < ms(CLIENT_WRITE) && ms(ELECTION_WAIT) < ms(FORWARDED_REQUEST));
const _: () = assert!(ms(SILENT_LEADER) < ms(FORWARDED_REQUEST) && ms(RECONNECT_PAUSE) < ms(LEADER_UNREACHABLE));
const _: () = assert!(ms(CONFIRM_RETRY_PAUSE) < ms(CONFIRM_READ));
// A transfer's answer comes back over a link that waits longer than the transfer may take.
const _: () = assert!(ms(TRANSFER) < ms(FORWARDED_REQUEST));
// A stopping node hands over its leadership within its grace period.
const _: () = assert!(ms(STOP_HANDOVER) < ms(SHUTDOWN_GRACE));
// A join on the leader finishes, or says why not, before the link carrying it gives up, and
// that before the joiner stops asking.
const _: () = assert!(ms(PREPARE_JOINER) + ms(CATCH_UP) + 2 * ms(MEMBERSHIP_WAIT) <= ms(FORWARDED_JOIN));
const _: () = assert!(ms(FORWARDED_JOIN) < ms(JOIN_RETRY_FOR));
const _: () = assert!(2 * ms(MEMBERSHIP_WAIT) < ms(FORWARDED_LEAVE));
const _: () = assert!(ms(FORWARDED_JOIN) >= ms(FORWARDED_LEAVE) && ms(FORWARDED_JOIN) >= ms(FORWARDED_REQUEST));
const _: () = assert!(ms(LONGEST_FORWARD) == ms(FORWARDED_JOIN));
// A poll that has not answered by the next one counts as no answer.
const _: () = assert!(ms(POLL_ANSWER) < ms(POLL_EVERY));
