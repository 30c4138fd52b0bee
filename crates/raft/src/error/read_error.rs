use thiserror::Error;

use crate::message::ReadIndexFailure;
use crate::types::NodeId;

/// Why a read index request could not be served.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReadError {
    #[error("not leader and no leader known to ask (leader hint: {leader_hint})")]
    NotLeader { leader_hint: NodeId },
    #[error("leader has not committed an entry of its term yet; retry later")]
    RetryLater,
    #[error("leadership transfer in progress")]
    Busy,
    #[error("read index was not confirmed by a quorum in time")]
    Timeout,
    #[error("{pending} reads pending, max_pending_reads reached; retry later")]
    Backpressure { pending: usize },
}

impl ReadError {
    pub(crate) fn from_failure(f: ReadIndexFailure, leader_hint: NodeId) -> Self {
        match f {
            ReadIndexFailure::NotLeader => ReadError::NotLeader { leader_hint },
            ReadIndexFailure::RetryLater => ReadError::RetryLater,
            ReadIndexFailure::Busy => ReadError::Busy,
            ReadIndexFailure::Timeout => ReadError::Timeout,
        }
    }
}
