//! Configuration of the partition state machines.
//!
//! A configuration is given at construction and is part of the replicated
//! state's definition: every replica of a raft group must be built with the
//! same one (it is not in the snapshot image). Changing it is a deliberate
//! cluster-wide step, like changing the partition counts.

use thiserror::Error;

use super::lock_key::{DEFAULT_MAX_ROW_KEY_BYTES, LockKeyLimits};

/// How long and how often phase two is retried before the coordinator gives
/// up and marks the global session `CommitRetryTimeout` (16) or
/// `RollbackRetryTimeout` (17).
///
/// Seata retries forever by default (`max-commit-retry-timeout` and
/// `max-rollback-retry-timeout` are -1), which leaves a transaction whose
/// rollback can never succeed holding its row locks forever (Seata #7050,
/// #7490). Rhea bounds both the number of failed attempts and the time since
/// the first failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Failed phase-two commit rounds tolerated: the session gives up at
    /// failed round `max_commit_retries + 1` (0: the first failure gives
    /// up). Failures of several branches reported within one backoff period
    /// are one round.
    pub max_commit_retries: u32,
    /// The same for rollback.
    pub max_rollback_retries: u32,
    /// Milliseconds after the first failed attempt past which the session
    /// gives up, whatever the count (checked on every failure and by
    /// `TimeoutCheck`).
    pub max_retry_duration_ms: u64,
    /// Delay before the first retry, in milliseconds; doubles with every
    /// further failure.
    pub retry_interval_ms: u64,
    /// Cap of the doubling delay, in milliseconds.
    pub max_retry_interval_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_commit_retries: 100,
            max_rollback_retries: 100,
            max_retry_duration_ms: 60 * 60 * 1000,
            retry_interval_ms: 1_000,
            max_retry_interval_ms: 60_000,
        }
    }
}

impl RetryPolicy {
    /// The delay before the next attempt after `failures` failed attempts
    /// (1 → `retry_interval_ms`, then doubling, capped).
    pub fn backoff_ms(&self, failures: u32) -> u64 {
        let doublings = failures.saturating_sub(1).min(32);
        self.retry_interval_ms
            .saturating_mul(1u64 << doublings)
            .min(self.max_retry_interval_ms.max(self.retry_interval_ms))
    }
}

/// Bounds on what one session partition holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    /// Global sessions in the partition, finished-but-failed ones included
    /// (they stay until `ForceFinish`).
    pub max_global_sessions: usize,
    /// Branch sessions in one global session.
    pub max_branches_per_global_session: usize,
    /// Longest XID, in bytes (Seata's `xid` column is 128 characters).
    pub max_xid_bytes: usize,
    /// Longest application id, transaction service group, transaction name,
    /// resource id or client id, in bytes.
    pub max_name_bytes: usize,
    /// Longest application data of a global or branch session, in bytes
    /// (Seata's `server.applicationDataLimit`, default 64000).
    pub max_application_data_bytes: usize,
    /// Limits on a branch's lock key.
    pub lock_keys: LockKeyLimits,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            max_global_sessions: 1_000_000,
            max_branches_per_global_session: 10_000,
            max_xid_bytes: 128,
            max_name_bytes: 256,
            max_application_data_bytes: 64_000,
            lock_keys: LockKeyLimits::default(),
        }
    }
}

/// Configuration of a [`SessionPartition`](super::SessionPartition).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Number of lock partitions (raft groups holding row locks): a branch's
    /// lock plan and lock releases name partitions below it.
    pub lock_partitions: u32,
    pub retry: RetryPolicy,
    pub limits: SessionLimits,
    /// Seata's `server.xaerNotaRetryTimeout` (default 60000 ms): an XA branch
    /// answering `XAER_NOTA` (the database does not know the XA branch) is
    /// considered done once the time is past `begin + timeout +
    /// max(xaer_nota_retry_timeout_ms, timeout)`.
    pub xaer_nota_retry_timeout_ms: u64,
    /// Seata's `server.enableParallelHandleBranch` (default false): phase two
    /// of one global session runs in parallel across resource ids (still in
    /// order within one resource). When false, strictly one branch at a
    /// time, in registration order for commit and reverse order for
    /// rollback.
    pub parallel_phase_two: bool,
    /// Seata's `server.rollbackRetryTimeoutUnlockEnable` (default false):
    /// release the row locks of a session that reaches
    /// `RollbackRetryTimeout`. Off by default: see
    /// `docs/tc-state-machine.md` ("Retry bounds and locks").
    pub release_locks_on_rollback_retry_timeout: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            lock_partitions: 1,
            retry: RetryPolicy::default(),
            limits: SessionLimits::default(),
            xaer_nota_retry_timeout_ms: 60_000,
            parallel_phase_two: false,
            release_locks_on_rollback_retry_timeout: false,
        }
    }
}

/// Configuration of a [`LockPartition`](super::LockPartition).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockConfig {
    /// This partition's index, below `partitions`.
    pub partition_index: u32,
    /// Number of lock partitions.
    pub partitions: u32,
    /// Row locks held in this partition.
    pub max_row_locks: usize,
    /// Rows in one `TryLock` or `Query` command.
    pub max_rows_per_command: usize,
    /// Longest row key, in bytes.
    pub max_row_key_bytes: usize,
    /// How long, in milliseconds of the commands' clock, a released
    /// transaction or branch stays fenced: a `TryLock` for it is refused
    /// meanwhile (see `docs/tc-state-machine.md`, "Fences").
    pub fence_retention_ms: u64,
    /// Most fences kept; past it the one expiring first is dropped early.
    pub max_fences: usize,
}

impl Default for LockConfig {
    fn default() -> Self {
        LockConfig {
            partition_index: 0,
            partitions: 1,
            max_row_locks: 10_000_000,
            max_rows_per_command: super::lock_key::DEFAULT_MAX_LOCK_KEYS_PER_BRANCH,
            max_row_key_bytes: DEFAULT_MAX_ROW_KEY_BYTES,
            fence_retention_ms: 2 * 60 * 1000,
            max_fences: 1_000_000,
        }
    }
}

/// A configuration that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("the number of lock partitions must be at least 1")]
    NoLockPartitions,
    #[error("lock partition index {index} is not below the partition count {partitions}")]
    PartitionIndexOutOfRange { index: u32, partitions: u32 },
}

impl SessionConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.lock_partitions == 0 {
            return Err(ConfigError::NoLockPartitions);
        }
        Ok(())
    }
}

impl LockConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.partitions == 0 {
            return Err(ConfigError::NoLockPartitions);
        }
        if self.partition_index >= self.partitions {
            return Err(ConfigError::PartitionIndexOutOfRange {
                index: self.partition_index,
                partitions: self.partitions,
            });
        }
        Ok(())
    }
}
