//! The log engine's error type.

use std::io;
use std::path::PathBuf;

use rhea_raft::{GroupId, Index};
use thiserror::Error;

/// Everything [`crate::LogEngine`] can fail with.
#[derive(Debug, Error)]
pub enum LogEngineError {
    /// An operating-system I/O call failed.
    #[error("log engine I/O error: {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A record that is not a torn tail failed its checks (bad magic, bad
    /// checksum, impossible length, undecodable payload): the engine refuses to
    /// open rather than silently drop data that may have been acknowledged.
    #[error("log corruption in {} at offset {offset}: {reason}", file.display())]
    Corruption {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// Every record decoded but together they do not describe a contiguous log
    /// for a group (a segment file went missing).
    #[error("log of group {group} is inconsistent after recovery: {reason}")]
    Inconsistent { group: GroupId, reason: String },
    /// The batch asks for something the log cannot hold (a gap, a rewrite of
    /// purged entries, a snapshot older than the log's start). Nothing of the
    /// batch was written.
    #[error("invalid write for group {group}: {reason}")]
    InvalidWrite { group: GroupId, reason: String },
    /// One entry does not fit in a record of `max_record_bytes`.
    #[error("entry {index} of group {group} needs {bytes} bytes, over max_record_bytes = {limit}")]
    EntryTooLarge {
        group: GroupId,
        index: Index,
        bytes: u64,
        limit: u64,
    },
    /// `entries(group, lo, hi)` asked for indexes outside `[first, last + 1)`.
    #[error("entries [{lo}, {hi}) of group {group} are not stored (stored: [{first}, {last}])")]
    OutOfRange {
        group: GroupId,
        lo: Index,
        hi: Index,
        first: Index,
        last: Index,
    },
    /// An earlier write or sync failed: what is on disk is unknown, so the
    /// engine accepts no more writes. Reopen it to recover.
    #[error("log engine unusable after an earlier failure ({0}); reopen it")]
    Poisoned(String),
    #[error("invalid log engine options: {0}")]
    InvalidOptions(String),
}

impl LogEngineError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LogEngineError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
