//! Bookkeeping for read index requests (SOFAJRaft `ReadOnlyServiceImpl`).
//!
//! Leader side: requests that arrive between two `ready()` calls form one batch
//! and share one heartbeat round (`seq`). A batch is confirmed when a quorum has
//! acknowledged a heartbeat with a `read_seq >= seq`; its read index is the
//! commit index when the batch was formed.
//!
//! Follower side: requests that arrive between two `ready()` calls are sent to
//! the leader as one `ReadIndexRequest` and answered together.
//!
//! Both sides then hold confirmed reads until the applied index reaches their
//! read index.

use std::collections::{BTreeMap, VecDeque};

use crate::error::ReadError;
use crate::types::{Index, NodeId, Tick};

/// A read request the driver asked for, identified by the driver's id.
pub type ReadRequestId = u64;

/// The outcome of a read index request: when `Ok(index)`, the driver may serve
/// the read from its state machine, whose applied index is already `>= index`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadState {
    pub request_id: ReadRequestId,
    pub result: Result<Index, ReadError>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadOrigin {
    Local(ReadRequestId),
    Remote { from: NodeId, batch_id: u64 },
}

#[derive(Debug)]
pub(crate) struct LeaderBatch {
    pub seq: u64,
    pub index: Index,
    pub started: Tick,
    pub origins: Vec<ReadOrigin>,
}

#[derive(Debug, Default)]
pub(crate) struct ReadOnly {
    /// The read_seq of the latest heartbeat round.
    pub seq: u64,
    /// Leader: waiting for the next round.
    pub unassigned: Vec<ReadOrigin>,
    /// Leader: rounds sent, waiting for a quorum, oldest first.
    pub batches: VecDeque<LeaderBatch>,
    /// Follower: waiting to be sent to the leader.
    pub follower_unsent: Vec<ReadRequestId>,
    /// Follower: sent to the leader, by batch id: (started, leader asked, requests).
    pub follower_batches: BTreeMap<u64, (Tick, NodeId, Vec<ReadRequestId>)>,
    /// Batch ids start at a random point drawn at node creation, so that an
    /// answer meant for a previous incarnation of this node (same term, same
    /// leader, late delivery) is not taken for the answer to a new batch.
    pub next_batch_id: u64,
    /// Confirmed reads waiting for the applied index to reach their read index.
    pub waiting_apply: BTreeMap<Index, Vec<ReadRequestId>>,
    /// Finished reads, to hand out in the next ready.
    pub done: Vec<ReadState>,
}

impl ReadOnly {
    pub(crate) fn pending(&self) -> usize {
        self.unassigned.len()
            + self.batches.iter().map(|b| b.origins.len()).sum::<usize>()
            + self.follower_unsent.len()
            + self
                .follower_batches
                .values()
                .map(|(_, _, r)| r.len())
                .sum::<usize>()
            + self.waiting_apply.values().map(Vec::len).sum::<usize>()
    }

    pub(crate) fn confirm(&mut self, id: ReadRequestId, index: Index) {
        self.waiting_apply.entry(index).or_default().push(id);
    }

    pub(crate) fn fail(&mut self, id: ReadRequestId, err: ReadError) {
        self.done.push(ReadState {
            request_id: id,
            result: Err(err),
        });
    }

    /// Move every confirmed read with read index `<= applied` to `done`.
    pub(crate) fn release_applied(&mut self, applied: Index) {
        while let Some(entry) = self.waiting_apply.first_entry() {
            if *entry.key() > applied {
                break;
            }
            let index = *entry.key();
            for id in entry.remove() {
                self.done.push(ReadState {
                    request_id: id,
                    result: Ok(index),
                });
            }
        }
    }
}
