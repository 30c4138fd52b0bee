use thiserror::Error;

use crate::types::NodeId;

/// Why `propose` refused an entry. Nothing was appended.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProposeError {
    #[error("not leader (leader hint: {leader_hint})")]
    NotLeader { leader_hint: NodeId },
    #[error("leadership transfer in progress")]
    Transferring,
    #[error("entry of {bytes} bytes exceeds max_entry_bytes {max_entry_bytes}")]
    TooLarge {
        bytes: usize,
        max_entry_bytes: usize,
    },
    #[error("{uncommitted} entries uncommitted, max_uncommitted_entries reached; retry later")]
    Backpressure { uncommitted: usize },
}
