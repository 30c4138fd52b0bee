//! The crate's one error type.

use rhea_txn_client::TxnError;

/// Errors of AT mode (phase one, the pool, the undo log).
#[derive(Debug, thiserror::Error)]
pub enum AtError {
    /// Another global transaction holds a global lock on one of the rows
    /// (from the TC's branch registration, a `SELECT ... FOR UPDATE` check
    /// or a global-lock-mode commit). The local transaction was rolled back;
    /// the whole local transaction may be retried ([`crate::AtDataSource::run`]
    /// does, bounded).
    #[error("global lock conflict: {0}")]
    LockConflict(String),
    /// A statement AT mode cannot protect inside a global transaction (or in
    /// global lock mode). Nothing of it ran.
    #[error("unsupported in an AT branch: {reason}: {sql}")]
    Unsupported { reason: String, sql: String },
    /// The table has no primary key (AT mode needs one to lock and undo rows).
    #[error("table {0} has no primary key: AT mode refuses it")]
    NoPrimaryKey(String),
    /// The table was not found in `information_schema`.
    #[error("table {0} not found")]
    NoSuchTable(String),
    /// Bind parameters (`$1`, `?`) are not supported in v1: send SQL text.
    #[error("bind parameters are not supported in AT mode v1: {0}")]
    Placeholder(String),
    /// A multi-statement string mixing statement kinds: only all-UPDATE or
    /// all-DELETE batches are accepted (Seata 1.2.0).
    #[error("a multi-statement batch must be all UPDATE or all DELETE: {0}")]
    MixedBatch(String),
    /// The SQL text does not parse.
    #[error("SQL does not parse: {message}: {sql}")]
    Parse { message: String, sql: String },
    /// The database answered with an error.
    #[error("database error{}: {message}", code.as_ref().map(|c| format!(" [{c}]")).unwrap_or_default())]
    Database {
        /// SQLSTATE (PostgreSQL) or error number (MySQL/MariaDB), if known.
        code: Option<String>,
        message: String,
    },
    /// The transaction coordinator refused or could not be reached.
    #[error("transaction coordinator: {0}")]
    Tc(#[from] TxnError),
    /// The global transaction already rolled this branch back (the rollback
    /// found no undo log and left the defensive row): the late phase-one
    /// commit was refused and the local transaction rolled back.
    #[error(
        "branch {branch_id} of {xid} was already rolled back by the global transaction; the local transaction was rolled back"
    )]
    BranchAlreadyRolledBack { xid: String, branch_id: i64 },
    /// Phase-two rollback found rows changed by someone else since phase one.
    #[error("dirty rows when undoing branch {branch_id} of {xid} on table {table}: {detail}")]
    DirtyRollback {
        xid: String,
        branch_id: i64,
        table: String,
        detail: String,
    },
    /// A limit was exceeded (image rows, undo log bytes...).
    #[error("limit exceeded: {what} is {actual}, the limit is {limit}")]
    Limit {
        what: &'static str,
        actual: usize,
        limit: usize,
    },
    /// No connection became free within the pool's acquire timeout.
    #[error("no database connection free within {0} ms (pool exhausted)")]
    PoolTimeout(u64),
    /// The images or the undo log are inconsistent (e.g. an inserted row not
    /// found again by its primary key, an undo log that does not decode).
    #[error("AT image/undo log: {0}")]
    Image(String),
    /// An earlier statement of this local transaction failed after it may
    /// have changed data: the transaction can only be rolled back.
    #[error("the local transaction failed earlier ({0}) and was rolled back")]
    Poisoned(String),
    /// The handle was used after commit or rollback.
    #[error("the local transaction is already finished")]
    Finished,
    /// Invalid configuration (URL, options).
    #[error("configuration: {0}")]
    Config(String),
}

impl AtError {
    /// True for a global lock conflict (retryable after a local rollback).
    pub fn is_lock_conflict(&self) -> bool {
        matches!(self, AtError::LockConflict(_))
    }

    /// True for a unique-key violation reported by the database.
    pub(crate) fn is_unique_violation(&self) -> bool {
        matches!(self, AtError::Database { code: Some(c), .. } if c == "23505" || c == "1062")
    }

    pub(crate) fn unsupported(reason: impl Into<String>, sql: &str) -> Self {
        AtError::Unsupported {
            reason: reason.into(),
            sql: sql.to_owned(),
        }
    }

    pub(crate) fn db(message: impl Into<String>) -> Self {
        AtError::Database {
            code: None,
            message: message.into(),
        }
    }
}

impl From<tokio_postgres::Error> for AtError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => AtError::Database {
                code: Some(db.code().code().to_owned()),
                message: db.message().to_owned(),
            },
            None => AtError::db(e.to_string()),
        }
    }
}

impl From<mysql_async::Error> for AtError {
    fn from(e: mysql_async::Error) -> Self {
        match e {
            mysql_async::Error::Server(s) => AtError::Database {
                code: Some(s.code.to_string()),
                message: s.message,
            },
            other => AtError::db(other.to_string()),
        }
    }
}
