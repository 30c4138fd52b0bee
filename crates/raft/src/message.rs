//! Messages exchanged between the nodes of one raft group.
//!
//! The core neither encodes nor transports messages; the driver does. Every message
//! names its group so that one transport can multiplex many groups.

use bytes::Bytes;

use crate::types::{Entry, GroupId, Index, NodeId, SnapshotMeta, Term, Tick};

/// Why a read index request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadIndexFailure {
    /// The node answering is not the leader (or lost leadership meanwhile).
    NotLeader,
    /// The leader has not yet committed an entry of its own term (SOFAJRaft EAGAIN).
    RetryLater,
    /// The leader is transferring leadership (SOFAJRaft EBUSY).
    Busy,
    /// No quorum confirmed leadership within an election timeout.
    Timeout,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub group: GroupId,
    pub from: NodeId,
    pub to: NodeId,
    /// The sender's term, or for a pre-vote the term it would campaign in.
    pub term: Term,
    pub body: MessageBody,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// SOFAJRaft `preVote`: "would you vote for me in `term`?" Nobody changes term.
    PreVote {
        last_log_index: Index,
        last_log_term: Term,
    },
    PreVoteResponse {
        granted: bool,
    },
    RequestVote {
        last_log_index: Index,
        last_log_term: Term,
        /// Set when the election follows a TimeoutNow (leader transfer): voters
        /// then grant even while they still hear from the old leader.
        leader_transfer: bool,
    },
    RequestVoteResponse {
        granted: bool,
    },
    AppendEntries {
        prev_log_index: Index,
        prev_log_term: Term,
        entries: Vec<Entry>,
        leader_commit: Index,
        /// The leader's tick when it sent this message; echoed back for the lease.
        send_tick: Tick,
    },
    AppendEntriesResponse {
        success: bool,
        /// On success: the last index now matching the leader. On rejection: the
        /// index the leader probed (`prev_log_index`).
        index: Index,
        /// On rejection, a hint for fast backtracking: the follower's first index
        /// of the conflicting term (or its last index + 1 when its log is shorter),
        /// and that term (0 when the log is simply shorter).
        reject_hint: Option<(Index, Term)>,
        send_tick: Tick,
    },
    Heartbeat {
        /// `min(leader commit, follower match)`: never commits what the follower lacks.
        leader_commit: Index,
        /// The read index round this heartbeat belongs to (0 when none).
        read_seq: u64,
        send_tick: Tick,
    },
    HeartbeatResponse {
        read_seq: u64,
        send_tick: Tick,
        /// The follower's last log index, so that a probing leader can resume.
        last_index: Index,
    },
    InstallSnapshot {
        meta: SnapshotMeta,
        /// Byte offset of `data` in the snapshot image.
        offset: u64,
        total_bytes: u64,
        data: Bytes,
        send_tick: Tick,
    },
    InstallSnapshotResponse {
        /// The snapshot this answers for.
        last_index: Index,
        last_term: Term,
        /// The offset the follower wants next (resumable transfer); equals
        /// `total_bytes` when the image is complete and accepted.
        next_offset: u64,
        /// True when the follower refused the snapshot (it already has newer state).
        rejected: bool,
        send_tick: Tick,
    },
    /// Leader transfer: "campaign now", skipping pre-vote.
    TimeoutNow,
    /// A follower or learner asks the leader for a read index on behalf of a batch of reads.
    ReadIndexRequest {
        batch_id: u64,
    },
    ReadIndexResponse {
        batch_id: u64,
        result: Result<Index, ReadIndexFailure>,
    },
}

impl MessageBody {
    /// A short name for logs and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            MessageBody::PreVote { .. } => "pre_vote",
            MessageBody::PreVoteResponse { .. } => "pre_vote_response",
            MessageBody::RequestVote { .. } => "request_vote",
            MessageBody::RequestVoteResponse { .. } => "request_vote_response",
            MessageBody::AppendEntries { .. } => "append_entries",
            MessageBody::AppendEntriesResponse { .. } => "append_entries_response",
            MessageBody::Heartbeat { .. } => "heartbeat",
            MessageBody::HeartbeatResponse { .. } => "heartbeat_response",
            MessageBody::InstallSnapshot { .. } => "install_snapshot",
            MessageBody::InstallSnapshotResponse { .. } => "install_snapshot_response",
            MessageBody::TimeoutNow => "timeout_now",
            MessageBody::ReadIndexRequest { .. } => "read_index_request",
            MessageBody::ReadIndexResponse { .. } => "read_index_response",
        }
    }
}
