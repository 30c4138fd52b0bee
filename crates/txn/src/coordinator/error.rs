//! Why a session partition refused a command.
//!
//! A refusal is an answer, not a failure of the state machine: the command
//! changed nothing (every check runs before the first mutation), and every
//! replica refuses it identically. [`CoordinatorError::exception_code`] gives
//! the `TransactionExceptionCode` to put in the Seata response.

use thiserror::Error;

use super::codec::{CodecError, Reader, Wire, Writer};
use super::lock_key::LockKeyError;
use crate::protocol::{GlobalStatus, TransactionExceptionCode};

/// Which limit of [`SessionLimits`](super::SessionLimits) was hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    GlobalSessions,
    BranchesPerGlobalSession,
    XidBytes,
    NameBytes,
    ApplicationDataBytes,
}

impl Limit {
    const fn code(self) -> u8 {
        match self {
            Limit::GlobalSessions => 1,
            Limit::BranchesPerGlobalSession => 2,
            Limit::XidBytes => 3,
            Limit::NameBytes => 4,
            Limit::ApplicationDataBytes => 5,
        }
    }

    const fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Limit::GlobalSessions,
            2 => Limit::BranchesPerGlobalSession,
            3 => Limit::XidBytes,
            4 => Limit::NameBytes,
            5 => Limit::ApplicationDataBytes,
            _ => return None,
        })
    }

    /// The limit's name in `SessionLimits`.
    pub const fn name(self) -> &'static str {
        match self {
            Limit::GlobalSessions => "max_global_sessions",
            Limit::BranchesPerGlobalSession => "max_branches_per_global_session",
            Limit::XidBytes => "max_xid_bytes",
            Limit::NameBytes => "max_name_bytes",
            Limit::ApplicationDataBytes => "max_application_data_bytes",
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A session command the partition refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CoordinatorError {
    #[error("global transaction {xid} does not exist (it may have finished)")]
    GlobalTransactionNotExist { xid: String },

    /// The session was closed by commit, rollback or timeout: no more
    /// branches (Seata checks this before the status).
    #[error("global transaction {xid} is not active (status {status}): no branch can register")]
    GlobalTransactionNotActive { xid: String, status: GlobalStatus },

    #[error("global transaction {xid} has status {status}, expected {expected}")]
    GlobalTransactionStatusInvalid {
        xid: String,
        status: GlobalStatus,
        expected: GlobalStatus,
    },

    #[error("branch {branch_id} of global transaction {xid} does not exist")]
    BranchTransactionNotExist { xid: String, branch_id: i64 },

    #[error("global transaction {xid} already exists")]
    GlobalTransactionExists { xid: String },

    #[error("branch {branch_id} is already registered in global transaction {xid}")]
    BranchExists { xid: String, branch_id: i64 },

    /// The XID is not `host:port:transactionId` for the command's
    /// transaction id.
    #[error("XID {xid:?} is not host:port:{transaction_id}")]
    InvalidXid { xid: String, transaction_id: u64 },

    /// Branch ids are positive (-1 names the whole saga in phase two).
    #[error("branch id {branch_id} is not positive")]
    InvalidBranchId { branch_id: i64 },

    #[error("bad lock key for a branch of {xid}: {error}")]
    LockKey { xid: String, error: LockKeyError },

    #[error("{limit}: {value} exceeds the limit of {max}")]
    LimitExceeded { limit: Limit, value: u64, max: u64 },

    /// A phase-two result for a session that is not committing or rolling
    /// back (it ended, failed, or was force-finished meanwhile).
    #[error("global transaction {xid} is not in phase two (status {status})")]
    NotInPhaseTwo { xid: String, status: GlobalStatus },

    /// A log entry that did not decode; applied as a no-op.
    #[error("undecodable command: {0}")]
    MalformedCommand(String),
}

impl CoordinatorError {
    /// The Seata exception code for the response to the TM or RM.
    pub fn exception_code(&self) -> TransactionExceptionCode {
        use TransactionExceptionCode as C;
        match self {
            CoordinatorError::GlobalTransactionNotExist { .. } => C::GlobalTransactionNotExist,
            CoordinatorError::GlobalTransactionNotActive { .. } => C::GlobalTransactionNotActive,
            CoordinatorError::GlobalTransactionStatusInvalid { .. }
            | CoordinatorError::NotInPhaseTwo { .. } => C::GlobalTransactionStatusInvalid,
            CoordinatorError::BranchTransactionNotExist { .. } => C::BranchTransactionNotExist,
            CoordinatorError::GlobalTransactionExists { .. }
            | CoordinatorError::InvalidXid { .. } => C::BeginFailed,
            CoordinatorError::BranchExists { .. } => C::FailedToAddBranch,
            CoordinatorError::InvalidBranchId { .. } | CoordinatorError::LockKey { .. } => {
                C::BranchRegisterFailed
            }
            CoordinatorError::LimitExceeded { limit, .. } => match limit {
                Limit::GlobalSessions | Limit::XidBytes => C::BeginFailed,
                Limit::BranchesPerGlobalSession
                | Limit::NameBytes
                | Limit::ApplicationDataBytes => C::FailedToAddBranch,
            },
            CoordinatorError::MalformedCommand(_) => C::Unknown,
        }
    }
}

impl Wire for CoordinatorError {
    const MIN_BYTES: usize = 1;
    fn put(&self, w: &mut Writer) {
        match self {
            CoordinatorError::GlobalTransactionNotExist { xid } => {
                w.u8(1);
                w.str(xid);
            }
            CoordinatorError::GlobalTransactionNotActive { xid, status } => {
                w.u8(2);
                w.str(xid);
                w.put(status);
            }
            CoordinatorError::GlobalTransactionStatusInvalid {
                xid,
                status,
                expected,
            } => {
                w.u8(3);
                w.str(xid);
                w.put(status);
                w.put(expected);
            }
            CoordinatorError::BranchTransactionNotExist { xid, branch_id } => {
                w.u8(4);
                w.str(xid);
                w.i64(*branch_id);
            }
            CoordinatorError::GlobalTransactionExists { xid } => {
                w.u8(5);
                w.str(xid);
            }
            CoordinatorError::BranchExists { xid, branch_id } => {
                w.u8(6);
                w.str(xid);
                w.i64(*branch_id);
            }
            CoordinatorError::InvalidXid {
                xid,
                transaction_id,
            } => {
                w.u8(7);
                w.str(xid);
                w.u64(*transaction_id);
            }
            CoordinatorError::InvalidBranchId { branch_id } => {
                w.u8(8);
                w.i64(*branch_id);
            }
            CoordinatorError::LockKey { xid, error } => {
                w.u8(9);
                w.str(xid);
                w.put(error);
            }
            CoordinatorError::LimitExceeded { limit, value, max } => {
                w.u8(10);
                w.u8(limit.code());
                w.u64(*value);
                w.u64(*max);
            }
            CoordinatorError::NotInPhaseTwo { xid, status } => {
                w.u8(11);
                w.str(xid);
                w.put(status);
            }
            CoordinatorError::MalformedCommand(msg) => {
                w.u8(12);
                w.str(msg);
            }
        }
    }

    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(match r.u8()? {
            1 => CoordinatorError::GlobalTransactionNotExist { xid: r.string()? },
            2 => CoordinatorError::GlobalTransactionNotActive {
                xid: r.string()?,
                status: r.get()?,
            },
            3 => CoordinatorError::GlobalTransactionStatusInvalid {
                xid: r.string()?,
                status: r.get()?,
                expected: r.get()?,
            },
            4 => CoordinatorError::BranchTransactionNotExist {
                xid: r.string()?,
                branch_id: r.i64()?,
            },
            5 => CoordinatorError::GlobalTransactionExists { xid: r.string()? },
            6 => CoordinatorError::BranchExists {
                xid: r.string()?,
                branch_id: r.i64()?,
            },
            7 => CoordinatorError::InvalidXid {
                xid: r.string()?,
                transaction_id: r.u64()?,
            },
            8 => CoordinatorError::InvalidBranchId {
                branch_id: r.i64()?,
            },
            9 => CoordinatorError::LockKey {
                xid: r.string()?,
                error: r.get()?,
            },
            10 => {
                let code = r.u8()?;
                let limit = Limit::from_code(code).ok_or_else(|| r.unknown_tag("Limit", code))?;
                CoordinatorError::LimitExceeded {
                    limit,
                    value: r.u64()?,
                    max: r.u64()?,
                }
            }
            11 => CoordinatorError::NotInPhaseTwo {
                xid: r.string()?,
                status: r.get()?,
            },
            12 => CoordinatorError::MalformedCommand(r.string()?),
            tag => return Err(r.unknown_tag("CoordinatorError", tag)),
        })
    }
}
