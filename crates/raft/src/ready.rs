//! The output of the core: one [`Ready`] batch the driver executes in order.

use crate::membership::Membership;
use crate::message::Message;
use crate::read_only::ReadState;
use crate::types::{Entry, HardState, Index, NodeId, Snapshot, SoftState};

/// Something the driver may want to report to its user or metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A membership change finished: `membership` (stable) is committed.
    MembershipChangeDone { membership: Membership },
    /// A membership change was given up (new voters did not catch up in time, or
    /// the leader lost leadership before proposing the joint configuration).
    MembershipChangeAborted { reason: String },
    /// A leader transfer did not complete within an election timeout.
    LeaderTransferAborted { target: NodeId },
}

/// One batch of work for the driver. Execute it **in this order**:
///
/// 1. `snapshot`: if present, install it atomically (replaces the state machine
///    and the whole log up to `snapshot.meta.last_index`).
/// 2. `entries`: append them, first truncating any stored entry with an index
///    `>= entries[0].index`. Persist `hard_state` if present.
///    **If `must_sync`, fsync before going on.**
/// 3. `messages`: may be sent at any time, even before step 2 (the leader's own
///    appends and heartbeats, as SOFAJRaft sends to followers in parallel with
///    its own disk write).
/// 4. `persisted_messages`: send only after step 2 is durable (votes, append
///    responses: they promise that the state they reflect survives a crash).
/// 5. `committed_entries`: apply in order. They were persisted by earlier
///    batches, so this may overlap with step 2.
/// 6. `reads`: serve after step 5; each `Ok(index)` is `<=` the last applied index.
/// 7. `compacted_to`: log entries up to this index may be purged from storage.
/// 8. Call `RaftNode::advance()`. No further `ready()` is produced until then.
#[derive(Debug, Default)]
pub struct Ready {
    pub soft_state: Option<SoftState>,
    pub hard_state: Option<HardState>,
    pub snapshot: Option<Snapshot>,
    pub entries: Vec<Entry>,
    pub must_sync: bool,
    pub messages: Vec<Message>,
    pub persisted_messages: Vec<Message>,
    pub committed_entries: Vec<Entry>,
    pub reads: Vec<ReadState>,
    pub compacted_to: Option<Index>,
    pub events: Vec<Event>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.soft_state.is_none()
            && self.hard_state.is_none()
            && self.snapshot.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.persisted_messages.is_empty()
            && self.committed_entries.is_empty()
            && self.reads.is_empty()
            && self.compacted_to.is_none()
            && self.events.is_empty()
    }
}
