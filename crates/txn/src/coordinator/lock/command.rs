//! What a lock partition's raft log carries, what applying it answers, and
//! their binary encoding (same conventions as the session commands:
//! `version:u8 (= 1) tag:u8 fields...` for commands, `tag:u8 fields...` for
//! answers).

use thiserror::Error;

use crate::coordinator::codec::{self, CodecError, Reader, Wire, Writer};
use crate::coordinator::lock_key::RowKey;

/// Format version written before every lock command.
pub const LOCK_COMMAND_VERSION: u8 = 1;

/// Seata's `LockStatus` (`lock_table.status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LockStatus {
    Locked = 0,
    /// The holding transaction is rolling back (a non-autocommit branch
    /// conflicting with it fails fast, `LockKeyConflictFailFast`).
    Rollbacking = 1,
}

/// A command of a lock partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockCommand {
    /// Lock all `rows` (all in this partition) for the branch, or none:
    /// refused with the first conflicting holder (in row key order) if
    /// another transaction holds any of them. Rows the same transaction
    /// already holds are granted again (re-entrant; the first branch stays
    /// the owner). Refused as fenced if the transaction or branch was
    /// released within the fence retention.
    TryLock {
        xid: String,
        transaction_id: u64,
        branch_id: i64,
        rows: Vec<RowKey>,
        now_ms: u64,
    },
    /// Release the rows the branch owns, and fence the branch. Idempotent.
    Unlock {
        transaction_id: u64,
        branch_id: i64,
        now_ms: u64,
    },
    /// Release every row of the transaction, and fence it. Idempotent.
    ReleaseGlobal { transaction_id: u64, now_ms: u64 },
    /// Mark the transaction's rows `Rollbacking`.
    MarkRollbacking { transaction_id: u64 },
    /// `GlobalLockQuery`: could `transaction_id` lock these rows? (Rows it
    /// holds itself count as lockable.) Changes nothing.
    Query {
        transaction_id: u64,
        rows: Vec<RowKey>,
    },
}

/// Who holds a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHolder {
    pub row_key: String,
    pub xid: String,
    pub transaction_id: u64,
    pub branch_id: i64,
    pub status: LockStatus,
}

/// Why a lock partition refused a command (nothing changed).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum LockError {
    /// The row belongs to another lock partition: the sender's partition
    /// count or hash disagrees with this partition's configuration.
    #[error("row {row_key} belongs to lock partition {expected}, not {partition}")]
    WrongPartition {
        row_key: String,
        partition: u32,
        expected: u32,
    },
    #[error("{rows} rows in one command exceed the limit of {limit}")]
    TooManyRows { rows: u64, limit: u64 },
    #[error("row key of {bytes} bytes exceeds the limit of {limit} bytes")]
    RowKeyTooLong { bytes: u64, limit: u64 },
    #[error("{row_locks} row locks would exceed the partition's limit of {limit}")]
    PartitionFull { row_locks: u64, limit: u64 },
    #[error("undecodable command: {0}")]
    MalformedCommand(String),
}

/// What applying a [`LockCommand`] answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockAnswer {
    /// `TryLock` took every row: `newly_locked` were free, `already_held`
    /// were held by the same transaction.
    Granted {
        newly_locked: u32,
        already_held: u32,
    },
    /// `TryLock` (nothing taken) or `Query`: another transaction holds this
    /// row.
    Conflict(LockHolder),
    /// `TryLock` for a transaction (`branch_id` none) or branch released
    /// recently: nothing taken.
    Fenced {
        transaction_id: u64,
        branch_id: Option<i64>,
    },
    /// `Unlock` / `ReleaseGlobal`: rows released.
    Released { rows: u32 },
    /// `MarkRollbacking`: rows marked.
    Marked { rows: u32 },
    /// `Query`: no other transaction holds any of the rows.
    Lockable,
    /// The command was refused and changed nothing.
    Refused(LockError),
}

impl Wire for LockStatus {
    const MIN_BYTES: usize = 1;
    fn put(&self, w: &mut Writer) {
        w.u8(*self as u8);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        match r.u8()? {
            0 => Ok(LockStatus::Locked),
            1 => Ok(LockStatus::Rollbacking),
            tag => Err(r.unknown_tag("LockStatus", tag)),
        }
    }
}

impl Wire for LockHolder {
    const MIN_BYTES: usize = 4 + 4 + 8 + 8 + 1;
    fn put(&self, w: &mut Writer) {
        w.str(&self.row_key);
        w.str(&self.xid);
        w.u64(self.transaction_id);
        w.i64(self.branch_id);
        w.put(&self.status);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(LockHolder {
            row_key: r.string()?,
            xid: r.string()?,
            transaction_id: r.u64()?,
            branch_id: r.i64()?,
            status: r.get()?,
        })
    }
}

impl Wire for LockError {
    const MIN_BYTES: usize = 1;
    fn put(&self, w: &mut Writer) {
        match self {
            LockError::WrongPartition {
                row_key,
                partition,
                expected,
            } => {
                w.u8(1);
                w.str(row_key);
                w.u32(*partition);
                w.u32(*expected);
            }
            LockError::TooManyRows { rows, limit } => {
                w.u8(2);
                w.u64(*rows);
                w.u64(*limit);
            }
            LockError::RowKeyTooLong { bytes, limit } => {
                w.u8(3);
                w.u64(*bytes);
                w.u64(*limit);
            }
            LockError::PartitionFull { row_locks, limit } => {
                w.u8(4);
                w.u64(*row_locks);
                w.u64(*limit);
            }
            LockError::MalformedCommand(msg) => {
                w.u8(5);
                w.str(msg);
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(match r.u8()? {
            1 => LockError::WrongPartition {
                row_key: r.string()?,
                partition: r.u32()?,
                expected: r.u32()?,
            },
            2 => LockError::TooManyRows {
                rows: r.u64()?,
                limit: r.u64()?,
            },
            3 => LockError::RowKeyTooLong {
                bytes: r.u64()?,
                limit: r.u64()?,
            },
            4 => LockError::PartitionFull {
                row_locks: r.u64()?,
                limit: r.u64()?,
            },
            5 => LockError::MalformedCommand(r.string()?),
            tag => return Err(r.unknown_tag("LockError", tag)),
        })
    }
}

impl LockCommand {
    /// The bytes for the raft log.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(LOCK_COMMAND_VERSION);
        match self {
            LockCommand::TryLock {
                xid,
                transaction_id,
                branch_id,
                rows,
                now_ms,
            } => {
                w.u8(1);
                w.str(xid);
                w.u64(*transaction_id);
                w.i64(*branch_id);
                w.put(rows);
                w.u64(*now_ms);
            }
            LockCommand::Unlock {
                transaction_id,
                branch_id,
                now_ms,
            } => {
                w.u8(2);
                w.u64(*transaction_id);
                w.i64(*branch_id);
                w.u64(*now_ms);
            }
            LockCommand::ReleaseGlobal {
                transaction_id,
                now_ms,
            } => {
                w.u8(3);
                w.u64(*transaction_id);
                w.u64(*now_ms);
            }
            LockCommand::MarkRollbacking { transaction_id } => {
                w.u8(4);
                w.u64(*transaction_id);
            }
            LockCommand::Query {
                transaction_id,
                rows,
            } => {
                w.u8(5);
                w.u64(*transaction_id);
                w.put(rows);
            }
        }
        w.into_vec()
    }

    /// Decodes a raft log entry; never panics.
    pub fn decode(bytes: &[u8]) -> Result<LockCommand, CodecError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != LOCK_COMMAND_VERSION {
            return Err(CodecError::UnsupportedVersion {
                what: "lock command",
                found: version,
                supported: LOCK_COMMAND_VERSION,
            });
        }
        let cmd = match r.u8()? {
            1 => LockCommand::TryLock {
                xid: r.string()?,
                transaction_id: r.u64()?,
                branch_id: r.i64()?,
                rows: r.get()?,
                now_ms: r.u64()?,
            },
            2 => LockCommand::Unlock {
                transaction_id: r.u64()?,
                branch_id: r.i64()?,
                now_ms: r.u64()?,
            },
            3 => LockCommand::ReleaseGlobal {
                transaction_id: r.u64()?,
                now_ms: r.u64()?,
            },
            4 => LockCommand::MarkRollbacking {
                transaction_id: r.u64()?,
            },
            5 => LockCommand::Query {
                transaction_id: r.u64()?,
                rows: r.get()?,
            },
            tag => return Err(r.unknown_tag("LockCommand", tag)),
        };
        r.finish()?;
        Ok(cmd)
    }
}

impl Wire for LockAnswer {
    const MIN_BYTES: usize = 1;
    fn put(&self, w: &mut Writer) {
        match self {
            LockAnswer::Granted {
                newly_locked,
                already_held,
            } => {
                w.u8(1);
                w.u32(*newly_locked);
                w.u32(*already_held);
            }
            LockAnswer::Conflict(holder) => {
                w.u8(2);
                w.put(holder);
            }
            LockAnswer::Fenced {
                transaction_id,
                branch_id,
            } => {
                w.u8(3);
                w.u64(*transaction_id);
                w.put(branch_id);
            }
            LockAnswer::Released { rows } => {
                w.u8(4);
                w.u32(*rows);
            }
            LockAnswer::Marked { rows } => {
                w.u8(5);
                w.u32(*rows);
            }
            LockAnswer::Lockable => w.u8(6),
            LockAnswer::Refused(error) => {
                w.u8(7);
                w.put(error);
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(match r.u8()? {
            1 => LockAnswer::Granted {
                newly_locked: r.u32()?,
                already_held: r.u32()?,
            },
            2 => LockAnswer::Conflict(r.get()?),
            3 => LockAnswer::Fenced {
                transaction_id: r.u64()?,
                branch_id: r.get()?,
            },
            4 => LockAnswer::Released { rows: r.u32()? },
            5 => LockAnswer::Marked { rows: r.u32()? },
            6 => LockAnswer::Lockable,
            7 => LockAnswer::Refused(r.get()?),
            tag => return Err(r.unknown_tag("LockAnswer", tag)),
        })
    }
}

impl LockAnswer {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode_one(self)
    }

    /// Never panics.
    pub fn decode(bytes: &[u8]) -> Result<LockAnswer, CodecError> {
        codec::decode_all(bytes)
    }
}
