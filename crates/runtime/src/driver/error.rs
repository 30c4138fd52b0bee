//! The driver's error type: rhea_raft's errors mapped for API callers, plus
//! storage, recovery and lifecycle failures.

use std::path::PathBuf;

use rhea_raft::{
    AdminError, ConfigError, GroupId, Index, NO_NODE, NodeId, ProposeError, ReadError,
};
use thiserror::Error;

use crate::error::LogEngineError;
use crate::transport::TransportError;

/// Everything a [`super::DriverHandle`] call or the driver itself can fail with.
#[derive(Debug, Error)]
pub enum DriverError {
    /// This driver does not host the group.
    #[error("group {0} is not hosted by this node")]
    UnknownGroup(GroupId),
    /// Only the leader can do this; `leader_hint` is the leader this node
    /// knows of (0: none known).
    #[error("not leader (leader hint: {leader_hint})")]
    NotLeader { leader_hint: NodeId },
    /// The core refused the proposal (other than not being leader).
    #[error("proposal refused: {0}")]
    Propose(ProposeError),
    /// The core refused or failed the read (other than not being leader).
    #[error("read refused: {0}")]
    Read(ReadError),
    /// The core refused the admin request (other than not being leader).
    #[error("admin request refused: {0}")]
    Admin(AdminError),
    /// The proposed entry was not applied: another leader's entry replaced
    /// it in the log (or a newer proposal reused its index). Safe to retry.
    #[error("entry {index} was replaced by another leader's entry and not applied")]
    Dropped { index: Index },
    /// A snapshot installed from another leader covers the proposed entry's
    /// index: it may or may not be part of that snapshot. **Outcome unknown**;
    /// not retryable as such.
    #[error(
        "entry {index} was superseded by an installed snapshot; it may or may not have been applied"
    )]
    Superseded { index: Index },
    /// The driver stopped (shutdown, or a fatal storage error) before answering.
    #[error("the driver is shut down")]
    Shutdown,
    /// The log engine failed; the driver stops (the engine is poisoned).
    #[error("storage: {0}")]
    Storage(#[from] LogEngineError),
    /// A snapshot file could not be written or read.
    #[error("snapshot file {}: {reason}", path.display())]
    Snapshot { path: PathBuf, reason: String },
    /// A group's durable state cannot be turned into a raft node.
    #[error("recovery of group {group}: {reason}")]
    Recovery { group: GroupId, reason: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("invalid driver options: {0}")]
    InvalidOptions(String),
    /// A group's state machine failed (its storage, or an image that does
    /// not decode); the driver stops.
    #[error("state machine of group {group}: {source}")]
    StateMachine {
        group: GroupId,
        source: StateMachineError,
    },
}

/// A state machine's failure, as text (the state machine's own error type
/// is its business; the driver only stops and reports it).
#[derive(Debug, Error)]
#[error("{0}")]
pub struct StateMachineError(pub String);

impl From<ProposeError> for DriverError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::NotLeader { leader_hint } => DriverError::NotLeader { leader_hint },
            other => DriverError::Propose(other),
        }
    }
}

impl From<ReadError> for DriverError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::NotLeader { leader_hint } => DriverError::NotLeader { leader_hint },
            other => DriverError::Read(other),
        }
    }
}

impl From<AdminError> for DriverError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::NotLeader { leader_hint } => DriverError::NotLeader { leader_hint },
            other => DriverError::Admin(other),
        }
    }
}

impl DriverError {
    /// True for errors after which retrying elsewhere or later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            DriverError::NotLeader { .. }
                | DriverError::Dropped { .. }
                | DriverError::Propose(
                    ProposeError::Transferring | ProposeError::Backpressure { .. }
                )
                | DriverError::Read(
                    ReadError::RetryLater
                        | ReadError::Busy
                        | ReadError::Timeout
                        | ReadError::Backpressure { .. }
                )
                | DriverError::Admin(AdminError::RetryLater | AdminError::Transferring)
        )
    }

    /// The leader hint of a `NotLeader` error (`NO_NODE` otherwise).
    pub fn leader_hint(&self) -> NodeId {
        match self {
            DriverError::NotLeader { leader_hint } => *leader_hint,
            _ => NO_NODE,
        }
    }
}
