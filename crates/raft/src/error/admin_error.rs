use thiserror::Error;

use crate::types::NodeId;

/// Why an administrative call (membership change, leader transfer, snapshot,
/// reset) was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AdminError {
    #[error("not leader (leader hint: {leader_hint})")]
    NotLeader { leader_hint: NodeId },
    #[error("a membership change is already in progress")]
    ChangeInProgress,
    #[error("leadership transfer in progress")]
    Transferring,
    #[error("leader has not committed an entry of its term yet; retry later")]
    RetryLater,
    #[error("invalid request: {0}")]
    Invalid(String),
}
