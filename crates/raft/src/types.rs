//! Plain data types shared by every part of the core: identifiers, log entries,
//! the persistent hard state and snapshot metadata.

use bytes::Bytes;

use crate::membership::Membership;

/// Identifies a node (a peer) inside a raft group. `0` is reserved for "none".
pub type NodeId = u64;
/// A raft term. Terms only grow.
pub type Term = u64;
/// A log index. Index 0 is the empty prefix; the first real entry has index 1.
pub type Index = u64;
/// Identifies one raft group inside a process running many groups (multi-raft).
pub type GroupId = u64;
/// Logical time: the driver calls `tick()` at a fixed interval.
pub type Tick = u64;

/// The id meaning "no node" (no vote cast, no leader known).
pub const NO_NODE: NodeId = 0;

/// What a log entry carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryPayload {
    /// The empty entry a new leader appends in its term (Raft §8): committing it
    /// commits every earlier entry and lets the leader serve read index requests.
    Blank,
    /// Application data proposed with `propose`.
    Normal(Bytes),
    /// A membership configuration. It takes effect on every node as soon as it is
    /// appended to the log, not when it commits (Raft §6).
    Membership(Membership),
}

/// One entry of the replicated log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub term: Term,
    pub index: Index,
    pub payload: EntryPayload,
}

impl Entry {
    /// Bytes counted against batch limits (`max_append_bytes`) and proposal limits.
    pub fn payload_bytes(&self) -> usize {
        match &self.payload {
            EntryPayload::Blank => 0,
            EntryPayload::Normal(data) => data.len(),
            EntryPayload::Membership(m) => m.approx_bytes(),
        }
    }
}

/// The state every node must persist (and sync) before it sends a message that
/// reflects it: the current term and the vote cast in it. `commit` is persisted
/// lazily as a hint for restarts; it needs no sync of its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HardState {
    pub term: Term,
    pub voted_for: NodeId,
    pub commit: Index,
}

/// Identifies a snapshot: the last entry it covers and the membership in force there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    pub last_index: Index,
    pub last_term: Term,
    pub membership: Membership,
}

/// A complete snapshot: metadata plus the application's opaque state image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub data: Bytes,
}

/// The role a node plays in its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Follower,
    /// Running a pre-vote round (SOFAJRaft `preVote`): asks whether it could win
    /// without bumping its term.
    PreCandidate,
    Candidate,
    Leader,
    /// A non-voting member that replicates and applies but never campaigns.
    Learner,
}

/// The volatile state a driver usually reports (role, term, leader).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftState {
    pub role: Role,
    pub term: Term,
    pub leader: NodeId,
}
