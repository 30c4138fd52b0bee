//! The KV layer's error: what a caller (the RESP server, the Rust client, an
//! embedding application) can get back, and whether retrying may help.

use rhea_raft::NodeId;
use rhea_runtime::DriverError;
use thiserror::Error;

use crate::region::{RegionEpoch, RegionId};
use crate::storage::StorageError;

#[derive(Debug, Error)]
pub enum KvError {
    /// This node does not lead the region; `leader` is the leader it knows
    /// of (0: none), with its client address when known.
    #[error("not leader of region {region} (leader: {leader}{})", .leader_addr.as_deref().map(|a| format!(" at {a}")).unwrap_or_default())]
    NotLeader {
        region: RegionId,
        leader: NodeId,
        leader_addr: Option<String>,
    },
    /// The request's region epoch is not the region's current one: refresh
    /// the route and retry.
    #[error("stale region epoch for region {region}: current is conf_ver {} version {}", .current.conf_ver, .current.version)]
    EpochMismatch {
        region: RegionId,
        current: RegionEpoch,
    },
    /// A key is outside the region the request named: refresh the route.
    #[error("key outside region {region}")]
    KeyNotInRegion { region: RegionId },
    /// A transient cluster state (no leader yet, a leader change, a full
    /// queue): retry later.
    #[error("region {region} not ready, retry later: {reason}")]
    TryAgain { region: RegionId, reason: String },
    #[error("region {0} does not exist")]
    UnknownRegion(RegionId),
    /// The request breaks a limit or is malformed. Not retryable.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The state machine refused the command. Not retryable.
    #[error("command failed: {0}")]
    Failed(String),
    /// Retries were exhausted: the cluster (or this region) is unavailable.
    #[error(
        "cluster unavailable for region {region} after {attempts} attempts in {elapsed_ms} ms; last error: {last}"
    )]
    Unavailable {
        region: RegionId,
        attempts: u32,
        elapsed_ms: u64,
        last: String,
    },
    /// A connection to a node failed (the router retries elsewhere).
    #[error("connection to {addr}: {reason}")]
    Connection { addr: String, reason: String },
    /// A proposal was not applied within `propose_timeout_ms` (a leader that
    /// lost its quorum, an overloaded node). The write may still be applied
    /// later: **its outcome is unknown**, so it is not retried automatically.
    #[error(
        "region {region}: no outcome within {timeout_ms} ms; the write may or may not be applied"
    )]
    Timeout { region: RegionId, timeout_ms: u64 },
    /// The request reached `addr` (or may have) but no answer came back: the
    /// node died, the connection broke or the reply timed out. **A write's
    /// outcome is unknown**, so writes are not retried; reads are.
    #[error("no answer from {addr} ({reason}); the request may or may not have been executed")]
    Indeterminate { addr: String, reason: String },
    /// A node answered something that is not valid Rhea protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The node's raft driver failed or stopped.
    #[error("raft driver: {0}")]
    Driver(DriverError),
}

impl KvError {
    /// True when retrying (after refreshing the route, or on the leader) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            KvError::NotLeader { .. }
                | KvError::EpochMismatch { .. }
                | KvError::KeyNotInRegion { .. }
                | KvError::TryAgain { .. }
                | KvError::Connection { .. }
        )
    }
}
