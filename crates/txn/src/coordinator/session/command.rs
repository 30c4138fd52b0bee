//! What a session partition's raft log carries, what applying it answers,
//! and their binary encoding.
//!
//! ```text
//! command = version:u8 (= 1) tag:u8 fields...
//! answer  = tag:u8 fields...
//! ```
//! (primitives: see the `codec` module). Decoding never panics; a log entry
//! that does not decode is applied as a no-op answering
//! [`CoordinatorError::MalformedCommand`].

use crate::coordinator::codec::{self, CodecError, Reader, Wire, Writer};
use crate::coordinator::error::CoordinatorError;
use crate::coordinator::lock_key::PartitionRows;
use crate::protocol::{BranchStatus, BranchType, GlobalStatus};

/// Format version written before every session command.
pub const SESSION_COMMAND_VERSION: u8 = 1;

/// A command of a session partition. Times are milliseconds of the
/// proposer's clock, carried in the command so that every replica computes
/// the same thing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionCommand {
    /// `GlobalBegin`: create a global session in status `Begin`. The async
    /// layer makes `transaction_id` (unique across TC nodes) and the XID
    /// `host:port:transaction_id`.
    Begin {
        xid: String,
        transaction_id: u64,
        application_id: String,
        transaction_service_group: String,
        transaction_name: String,
        timeout_ms: u64,
        application_data: String,
        now_ms: u64,
    },
    /// `BranchRegister`: add a branch session while the global session is
    /// active and `Begin`. The answer's lock plan lists the AT branch's rows
    /// per lock partition, for the lock protocol that follows.
    RegisterBranch {
        xid: String,
        branch_id: i64,
        resource_id: String,
        branch_type: BranchType,
        lock_key: String,
        client_id: String,
        application_data: String,
    },
    /// The branch's row locks could not all be taken: remove the branch
    /// again (its RM never learns the branch id) and release whatever it may
    /// hold. Seata does the same in `branchRegister` when adding the branch
    /// fails.
    CancelBranchRegistration { xid: String, branch_id: i64 },
    /// `BranchReport`: set a branch's status and application data.
    ReportBranch {
        xid: String,
        branch_id: i64,
        status: BranchStatus,
        application_data: String,
    },
    /// `GlobalCommit`.
    Commit { xid: String, now_ms: u64 },
    /// `GlobalRollback`.
    Rollback { xid: String, now_ms: u64 },
    /// What an RM answered to `BranchCommit` / `BranchRollback` (`outcome`
    /// is its `BranchStatus`; the async layer reports a send failure or a
    /// timeout as the action's `*_Retryable` status). `branch_id` -1 is the
    /// session-wide phase two of a saga.
    BranchPhaseTwoResult {
        xid: String,
        branch_id: i64,
        outcome: BranchStatus,
        now_ms: u64,
    },
    /// Time out every `Begin` session past its timeout; give up on every
    /// retrying session past `max_retry_duration_ms`.
    TimeoutCheck { now_ms: u64 },
    /// `GlobalReport` (saga): the saga engine reports the final or a retry
    /// status.
    GlobalReport {
        xid: String,
        status: GlobalStatus,
        now_ms: u64,
    },
    /// `GlobalStatus`: a query through the log; changes nothing.
    Status { xid: String },
    /// Operator: forget a global session whatever its status and release
    /// all its row locks. For sessions stuck in a failed status
    /// (`CommitFailed`, `RollbackFailed`, `*RetryTimeout`, ...) once the
    /// operator has repaired the data.
    ForceFinish { xid: String },
    /// The lock release `release_id` was applied on all its partitions:
    /// drop it from the outbox.
    AckLockRelease { release_id: u64 },
}

/// Which rows a [`LockRelease`] releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseScope {
    /// Every row lock of the transaction (lock command `ReleaseGlobal`).
    Global,
    /// The rows owned by one branch (lock command `Unlock`).
    Branch(i64),
}

/// Row locks to release on some lock partitions: an entry of the session
/// partition's durable outbox, kept until [`SessionCommand::AckLockRelease`].
/// Releasing is idempotent, so executing one twice is harmless.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockRelease {
    pub release_id: u64,
    pub xid: String,
    pub transaction_id: u64,
    pub scope: ReleaseScope,
    /// Ascending, without duplicates.
    pub partitions: Vec<u32>,
}

/// Work on lock partitions that a session command calls for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockWork {
    /// Durable (in the outbox until acknowledged).
    Release(LockRelease),
    /// Best effort: mark the transaction's row locks `Rollbacking` (only
    /// used to fail fast a non-autocommit conflicting branch,
    /// `LockKeyConflictFailFast`); losing it costs nothing but that.
    MarkRollbacking {
        xid: String,
        transaction_id: u64,
        partitions: Vec<u32>,
    },
}

/// What applying a [`SessionCommand`] answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionAnswer {
    /// `Begin` succeeded.
    Began { xid: String },
    /// `RegisterBranch` succeeded; the branch's rows by lock partition, in
    /// ascending partition order (empty for non-AT branches and blank lock
    /// keys).
    BranchRegistered {
        branch_id: i64,
        lock_plan: Vec<PartitionRows>,
    },
    /// `ReportBranch` succeeded.
    BranchReported,
    /// `Commit`, `Rollback`, `BranchPhaseTwoResult`, `GlobalReport`,
    /// `Status`: the global status to report (for `Commit`, Seata's answer
    /// to the TM: `AsyncCommitting` shows as `Committed`; a session that
    /// ended and was removed shows its final status, an unknown one
    /// `Finished`).
    GlobalStatus {
        status: GlobalStatus,
        lock_work: Vec<LockWork>,
    },
    /// `TimeoutCheck`: the sessions that timed out, and those that gave up
    /// retrying.
    TimeoutChecked {
        timed_out: Vec<String>,
        retry_timed_out: Vec<String>,
        lock_work: Vec<LockWork>,
    },
    /// `CancelBranchRegistration` succeeded.
    BranchRegistrationCancelled { lock_work: Vec<LockWork> },
    /// `ForceFinish` removed the session, which had `previous_status`.
    ForceFinished {
        previous_status: GlobalStatus,
        lock_work: Vec<LockWork>,
    },
    /// `AckLockRelease`; `found` is false if the release was already gone.
    LockReleaseAcked { found: bool },
    /// The command was refused and changed nothing.
    Refused(CoordinatorError),
}

impl SessionAnswer {
    /// The lock work the answer calls for (empty for most answers).
    pub fn lock_work(&self) -> &[LockWork] {
        match self {
            SessionAnswer::GlobalStatus { lock_work, .. }
            | SessionAnswer::TimeoutChecked { lock_work, .. }
            | SessionAnswer::BranchRegistrationCancelled { lock_work }
            | SessionAnswer::ForceFinished { lock_work, .. } => lock_work,
            _ => &[],
        }
    }
}

impl Wire for ReleaseScope {
    const MIN_BYTES: usize = 1;
    fn put(&self, w: &mut Writer) {
        match self {
            ReleaseScope::Global => w.u8(0),
            ReleaseScope::Branch(id) => {
                w.u8(1);
                w.i64(*id);
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        match r.u8()? {
            0 => Ok(ReleaseScope::Global),
            1 => Ok(ReleaseScope::Branch(r.i64()?)),
            tag => Err(r.unknown_tag("ReleaseScope", tag)),
        }
    }
}

impl Wire for LockRelease {
    const MIN_BYTES: usize = 8 + 4 + 8 + 1 + 4;
    fn put(&self, w: &mut Writer) {
        w.u64(self.release_id);
        w.str(&self.xid);
        w.u64(self.transaction_id);
        w.put(&self.scope);
        w.put(&self.partitions);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(LockRelease {
            release_id: r.u64()?,
            xid: r.string()?,
            transaction_id: r.u64()?,
            scope: r.get()?,
            partitions: r.get()?,
        })
    }
}

impl Wire for LockWork {
    const MIN_BYTES: usize = 1;
    fn put(&self, w: &mut Writer) {
        match self {
            LockWork::Release(release) => {
                w.u8(1);
                w.put(release);
            }
            LockWork::MarkRollbacking {
                xid,
                transaction_id,
                partitions,
            } => {
                w.u8(2);
                w.str(xid);
                w.u64(*transaction_id);
                w.put(partitions);
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(match r.u8()? {
            1 => LockWork::Release(r.get()?),
            2 => LockWork::MarkRollbacking {
                xid: r.string()?,
                transaction_id: r.u64()?,
                partitions: r.get()?,
            },
            tag => return Err(r.unknown_tag("LockWork", tag)),
        })
    }
}

impl SessionCommand {
    /// The bytes for the raft log.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(SESSION_COMMAND_VERSION);
        put_command(self, &mut w);
        w.into_vec()
    }

    /// Decodes a raft log entry; never panics.
    pub fn decode(bytes: &[u8]) -> Result<SessionCommand, CodecError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != SESSION_COMMAND_VERSION {
            return Err(CodecError::UnsupportedVersion {
                what: "session command",
                found: version,
                supported: SESSION_COMMAND_VERSION,
            });
        }
        let cmd = get_command(&mut r)?;
        r.finish()?;
        Ok(cmd)
    }
}

fn put_command(cmd: &SessionCommand, w: &mut Writer) {
    match cmd {
        SessionCommand::Begin {
            xid,
            transaction_id,
            application_id,
            transaction_service_group,
            transaction_name,
            timeout_ms,
            application_data,
            now_ms,
        } => {
            w.u8(1);
            w.str(xid);
            w.u64(*transaction_id);
            w.str(application_id);
            w.str(transaction_service_group);
            w.str(transaction_name);
            w.u64(*timeout_ms);
            w.str(application_data);
            w.u64(*now_ms);
        }
        SessionCommand::RegisterBranch {
            xid,
            branch_id,
            resource_id,
            branch_type,
            lock_key,
            client_id,
            application_data,
        } => {
            w.u8(2);
            w.str(xid);
            w.i64(*branch_id);
            w.str(resource_id);
            w.put(branch_type);
            w.str(lock_key);
            w.str(client_id);
            w.str(application_data);
        }
        SessionCommand::CancelBranchRegistration { xid, branch_id } => {
            w.u8(3);
            w.str(xid);
            w.i64(*branch_id);
        }
        SessionCommand::ReportBranch {
            xid,
            branch_id,
            status,
            application_data,
        } => {
            w.u8(4);
            w.str(xid);
            w.i64(*branch_id);
            w.put(status);
            w.str(application_data);
        }
        SessionCommand::Commit { xid, now_ms } => {
            w.u8(5);
            w.str(xid);
            w.u64(*now_ms);
        }
        SessionCommand::Rollback { xid, now_ms } => {
            w.u8(6);
            w.str(xid);
            w.u64(*now_ms);
        }
        SessionCommand::BranchPhaseTwoResult {
            xid,
            branch_id,
            outcome,
            now_ms,
        } => {
            w.u8(7);
            w.str(xid);
            w.i64(*branch_id);
            w.put(outcome);
            w.u64(*now_ms);
        }
        SessionCommand::TimeoutCheck { now_ms } => {
            w.u8(8);
            w.u64(*now_ms);
        }
        SessionCommand::GlobalReport {
            xid,
            status,
            now_ms,
        } => {
            w.u8(9);
            w.str(xid);
            w.put(status);
            w.u64(*now_ms);
        }
        SessionCommand::Status { xid } => {
            w.u8(10);
            w.str(xid);
        }
        SessionCommand::ForceFinish { xid } => {
            w.u8(11);
            w.str(xid);
        }
        SessionCommand::AckLockRelease { release_id } => {
            w.u8(12);
            w.u64(*release_id);
        }
    }
}

fn get_command(r: &mut Reader<'_>) -> Result<SessionCommand, CodecError> {
    Ok(match r.u8()? {
        1 => SessionCommand::Begin {
            xid: r.string()?,
            transaction_id: r.u64()?,
            application_id: r.string()?,
            transaction_service_group: r.string()?,
            transaction_name: r.string()?,
            timeout_ms: r.u64()?,
            application_data: r.string()?,
            now_ms: r.u64()?,
        },
        2 => SessionCommand::RegisterBranch {
            xid: r.string()?,
            branch_id: r.i64()?,
            resource_id: r.string()?,
            branch_type: r.get()?,
            lock_key: r.string()?,
            client_id: r.string()?,
            application_data: r.string()?,
        },
        3 => SessionCommand::CancelBranchRegistration {
            xid: r.string()?,
            branch_id: r.i64()?,
        },
        4 => SessionCommand::ReportBranch {
            xid: r.string()?,
            branch_id: r.i64()?,
            status: r.get()?,
            application_data: r.string()?,
        },
        5 => SessionCommand::Commit {
            xid: r.string()?,
            now_ms: r.u64()?,
        },
        6 => SessionCommand::Rollback {
            xid: r.string()?,
            now_ms: r.u64()?,
        },
        7 => SessionCommand::BranchPhaseTwoResult {
            xid: r.string()?,
            branch_id: r.i64()?,
            outcome: r.get()?,
            now_ms: r.u64()?,
        },
        8 => SessionCommand::TimeoutCheck { now_ms: r.u64()? },
        9 => SessionCommand::GlobalReport {
            xid: r.string()?,
            status: r.get()?,
            now_ms: r.u64()?,
        },
        10 => SessionCommand::Status { xid: r.string()? },
        11 => SessionCommand::ForceFinish { xid: r.string()? },
        12 => SessionCommand::AckLockRelease {
            release_id: r.u64()?,
        },
        tag => return Err(r.unknown_tag("SessionCommand", tag)),
    })
}

impl Wire for SessionAnswer {
    const MIN_BYTES: usize = 1;
    fn put(&self, w: &mut Writer) {
        match self {
            SessionAnswer::Began { xid } => {
                w.u8(1);
                w.str(xid);
            }
            SessionAnswer::BranchRegistered {
                branch_id,
                lock_plan,
            } => {
                w.u8(2);
                w.i64(*branch_id);
                w.put(lock_plan);
            }
            SessionAnswer::BranchReported => w.u8(3),
            SessionAnswer::GlobalStatus { status, lock_work } => {
                w.u8(4);
                w.put(status);
                w.put(lock_work);
            }
            SessionAnswer::TimeoutChecked {
                timed_out,
                retry_timed_out,
                lock_work,
            } => {
                w.u8(5);
                w.put(timed_out);
                w.put(retry_timed_out);
                w.put(lock_work);
            }
            SessionAnswer::BranchRegistrationCancelled { lock_work } => {
                w.u8(6);
                w.put(lock_work);
            }
            SessionAnswer::ForceFinished {
                previous_status,
                lock_work,
            } => {
                w.u8(7);
                w.put(previous_status);
                w.put(lock_work);
            }
            SessionAnswer::LockReleaseAcked { found } => {
                w.u8(8);
                w.bool(*found);
            }
            SessionAnswer::Refused(error) => {
                w.u8(9);
                w.put(error);
            }
        }
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(match r.u8()? {
            1 => SessionAnswer::Began { xid: r.string()? },
            2 => SessionAnswer::BranchRegistered {
                branch_id: r.i64()?,
                lock_plan: r.get()?,
            },
            3 => SessionAnswer::BranchReported,
            4 => SessionAnswer::GlobalStatus {
                status: r.get()?,
                lock_work: r.get()?,
            },
            5 => SessionAnswer::TimeoutChecked {
                timed_out: r.get()?,
                retry_timed_out: r.get()?,
                lock_work: r.get()?,
            },
            6 => SessionAnswer::BranchRegistrationCancelled {
                lock_work: r.get()?,
            },
            7 => SessionAnswer::ForceFinished {
                previous_status: r.get()?,
                lock_work: r.get()?,
            },
            8 => SessionAnswer::LockReleaseAcked { found: r.bool()? },
            9 => SessionAnswer::Refused(r.get()?),
            tag => return Err(r.unknown_tag("SessionAnswer", tag)),
        })
    }
}

impl SessionAnswer {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode_one(self)
    }

    /// Never panics.
    pub fn decode(bytes: &[u8]) -> Result<SessionAnswer, CodecError> {
        codec::decode_all(bytes)
    }
}
