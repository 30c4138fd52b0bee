//! The transaction coordinator's replicated state machines (sans-IO).
//!
//! Seata's raft store keeps all TC state in one raft group, so one leader
//! caps throughput. Rhea partitions it over several raft groups:
//!
//! * [`SessionPartition`]: global sessions and their branch sessions,
//!   partitioned by transaction id ([`session_partition_of`]);
//! * [`LockPartition`]: global row locks, partitioned by row key
//!   `resourceId^^^table^^^pk` ([`lock_partition_of`]).
//!
//! Both are deterministic state machines to be applied as raft log entries:
//! no I/O, no clock (times come in commands as `now_ms`), no randomness,
//! ordered maps only. Each has a command enum with a length-checked binary
//! encoding ([`SessionCommand`], [`LockCommand`]), an answer enum
//! ([`SessionAnswer`], [`LockAnswer`]), `apply`, `apply_bytes` (a log entry
//! that does not decode is a no-op with an error answer), and
//! `snapshot`/`restore`. Nothing here panics on any input.
//!
//! What the future async layer does around them: propose commands, run the
//! lock protocol ([`LockAcquisition`]) for each registering AT branch, send
//! the phase-two requests [`SessionPartition::due_phase_two`] lists and
//! propose their results, execute the lock work answers call for and
//! acknowledge it, and propose `TimeoutCheck` periodically.
//!
//! Semantics, diagrams and the lock protocol's correctness argument:
//! `docs/tc-state-machine.md`.

mod codec;
mod config;
mod error;
mod ids;
mod lock;
mod lock_key;
mod session;

#[cfg(test)]
mod tests;

pub use codec::CodecError;
pub use config::{ConfigError, LockConfig, RetryPolicy, SessionConfig, SessionLimits};
pub use error::{CoordinatorError, Limit};
pub use ids::{
    MAX_TRANSACTION_ID_COUNTER, TRANSACTION_ID_COUNTER_BITS, lock_partition_of,
    make_transaction_id, make_xid, parse_xid, session_partition_of, transaction_id_parts,
};
pub use lock::{
    AcquisitionOutcome, AcquisitionStep, LOCK_COMMAND_VERSION, LOCK_SNAPSHOT_VERSION,
    LockAcquisition, LockAnswer, LockCommand, LockError, LockHolder, LockPartition, LockRefusal,
    LockStatus, RowLock,
};
pub use lock_key::{
    DEFAULT_MAX_LOCK_KEY_BYTES, DEFAULT_MAX_LOCK_KEYS_PER_BRANCH, DEFAULT_MAX_ROW_KEY_BYTES,
    LockKeyError, LockKeyLimits, PartitionRows, ROW_KEY_SEPARATOR, RowKey, parse_lock_key,
    plan_by_partition,
};
pub use session::{
    BranchSession, GlobalSession, LockRelease, LockWork, PhaseTwoAction, PhaseTwoWork,
    ReleaseScope, RetryState, SAGA_SESSION_BRANCH_ID, SAGA_TRANSACTION_NAME_PREFIX,
    SESSION_COMMAND_VERSION, SESSION_SNAPSHOT_VERSION, SessionAnswer, SessionCommand,
    SessionPartition, is_timeout_status, phase_two_action,
};
