//! # rhea-raft: the consensus core
//!
//! **Layer rule.** This crate is the bottom layer of Rhea. It is *sans-IO*: it
//! depends on no async runtime, reads no clock, uses no global RNG and performs
//! no I/O. Time is [`RaftNode::tick`]; randomness comes from a per-node
//! [`SplitMix64`] seeded through [`Config::seed`]. Everything above it (the
//! simulator, the tokio runtime, the KV store, the transaction coordinator)
//! drives it through the protocol below; nothing here imports those layers.
//!
//! It implements Raft with SOFAJRaft's semantics: pre-vote (always on, refused
//! while a leader is live), check-quorum step-down, priority election with a
//! decaying target, pipelined replication with an in-flight window, fast
//! backtracking, chunked and throttled snapshot installation, joint consensus
//! for every membership change, learners, leader transfer (TimeoutNow),
//! batched ReadIndex on leaders, followers and learners, and lease reads.
//!
//! ## The driving protocol
//!
//! One [`RaftNode`] per node per group. Inputs:
//!
//! * [`RaftNode::step`]`(message)`: a message from a peer. Messages for another
//!   group, misaddressed ones and stale ones are dropped and counted in
//!   [`Counters`]; no input makes the core panic.
//! * [`RaftNode::tick`]`()`: one unit of logical time elapsed.
//! * [`RaftNode::propose`]`(data)`: append application data (leader only).
//! * [`RaftNode::read_index`]`(request_id)`: ask for a linearizable read point.
//! * Admin calls: [`RaftNode::change_membership`] (and `add_voter`,
//!   `remove_voter`, `add_learner`, `remove_learner`, `promote_learner`),
//!   [`RaftNode::transfer_leader`], [`RaftNode::snapshot_done`],
//!   [`RaftNode::force_reset_membership`] (unsafe, explicit).
//!
//! Output: after any inputs, call [`RaftNode::ready`]. It returns a [`Ready`]
//! batch, executed in the order its documentation gives:
//!
//! 1. install `snapshot` (if any), append `entries` and persist `hard_state`;
//!    **fsync if `must_sync`**;
//! 2. send `messages` (these may leave before step 1 completes) and, only once
//!    step 1 is durable, `persisted_messages`;
//! 3. apply `committed_entries`, then serve `reads`;
//! 4. call [`RaftNode::advance`].
//!
//! Architecture invariant: a message that reflects state (a vote, an append
//! acknowledgement) is in `persisted_messages` and so leaves only after that
//! state is durable. The leader counts its own log toward commit only after
//! `advance` reports it persisted.

mod config;
pub mod error;
mod membership;
mod message;
mod node;
mod progress;
mod raft_log;
mod read_only;
mod ready;
mod rng;
mod types;

pub use config::{Config, ReadMode};
pub use error::{AdminError, ConfigError, ProposeError, ReadError};
pub use membership::{Membership, MembershipAt, PRIORITY_DISABLED, PRIORITY_NOT_ELECTED};
pub use message::{Message, MessageBody, ReadIndexFailure};
pub use node::{Bootstrap, Counters, RaftNode, RestoreState};
pub use progress::ProgressState;
pub use read_only::{ReadRequestId, ReadState};
pub use ready::{Event, Ready};
pub use rng::SplitMix64;
pub use types::{
    Entry, EntryPayload, GroupId, HardState, Index, NO_NODE, NodeId, Role, Snapshot, SnapshotMeta,
    SoftState, Term, Tick,
};
