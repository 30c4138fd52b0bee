//! The seams between the TM/RM client, the branch implementations (AT) and
//! the TC connection. Object-safe (boxed futures) so that a branch
//! implementation can be tested against an in-memory TC.

use std::future::Future;
use std::pin::Pin;

use rhea_txn::protocol::{BranchStatus, BranchType, GlobalStatus, TransactionExceptionCode};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Errors of the transaction client.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    /// The TC refused a branch registration because another global
    /// transaction holds one of the rows (`LockKeyConflict`). Retryable
    /// after the local transaction rolled back.
    #[error("global lock conflict: {0}")]
    LockConflict(String),
    /// The TC answered with a failure.
    #[error("TC refused ({code:?}): {message}")]
    Tc {
        code: TransactionExceptionCode,
        message: String,
    },
    /// The connection to the TC failed (nothing known about the outcome of a
    /// request in flight).
    #[error("TC transport: {0}")]
    Transport(String),
    /// No answer within the request timeout (outcome unknown).
    #[error("no answer from the TC within {0} ms")]
    Timeout(u64),
    /// A propagation rule or the API was used wrongly (e.g. MANDATORY
    /// without a transaction, NEVER inside one, commit by a participant).
    #[error("{0}")]
    Propagation(String),
    /// The global transaction ended in a status other than the one asked
    /// for (e.g. commit requested, `Rollbacked` reported after a timeout).
    #[error("global transaction {xid} ended as {status:?}")]
    Ended { xid: String, status: GlobalStatus },
    /// The application's own error inside a scoped transaction.
    #[error("{0}")]
    Application(String),
}

/// What the TM and RMs ask of the TC. Implemented by the network
/// connection (`rpc`) and by in-memory fakes in tests.
pub trait TcApi: Send + Sync + 'static {
    /// `GlobalBegin`: a new global transaction; answers its XID.
    fn global_begin<'a>(
        &'a self,
        name: &'a str,
        timeout_ms: u32,
    ) -> BoxFuture<'a, Result<String, TxnError>>;
    /// `GlobalCommit`: answers the status the TC reports.
    fn global_commit<'a>(&'a self, xid: &'a str) -> BoxFuture<'a, Result<GlobalStatus, TxnError>>;
    /// `GlobalRollback`.
    fn global_rollback<'a>(&'a self, xid: &'a str)
    -> BoxFuture<'a, Result<GlobalStatus, TxnError>>;
    /// `GlobalStatus`.
    fn global_status<'a>(&'a self, xid: &'a str) -> BoxFuture<'a, Result<GlobalStatus, TxnError>>;
    /// `BranchRegister`: answers the branch id. A lock conflict is
    /// [`TxnError::LockConflict`].
    fn branch_register<'a>(
        &'a self,
        branch_type: BranchType,
        xid: &'a str,
        resource_id: &'a str,
        lock_key: &'a str,
        application_data: Option<&'a str>,
    ) -> BoxFuture<'a, Result<i64, TxnError>>;
    /// `BranchReport`.
    fn branch_report<'a>(
        &'a self,
        branch_type: BranchType,
        xid: &'a str,
        branch_id: i64,
        status: BranchStatus,
        application_data: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), TxnError>>;
    /// `GlobalLockQuery`: true when the rows of `lock_key` are not locked by
    /// another global transaction (`xid` may be `None` outside one).
    fn global_lock_query<'a>(
        &'a self,
        branch_type: BranchType,
        xid: Option<&'a str>,
        resource_id: &'a str,
        lock_key: &'a str,
    ) -> BoxFuture<'a, Result<bool, TxnError>>;
}

/// A resource manager: receives the TC's phase-two calls for its resource.
/// Must be idempotent: the TC resends after a timeout or a leader change.
pub trait ResourceManager: Send + Sync + 'static {
    /// Seata's resource id (for AT: the database's JDBC-style URL).
    fn resource_id(&self) -> &str;
    fn branch_type(&self) -> BranchType;
    /// Phase two, commit. Answers `PhaseTwo_Committed` or
    /// `PhaseTwo_CommitFailed_Retryable` / `_Unretryable`.
    fn branch_commit<'a>(
        &'a self,
        xid: &'a str,
        branch_id: i64,
        application_data: Option<&'a str>,
    ) -> BoxFuture<'a, BranchStatus>;
    /// Phase two, rollback. Answers `PhaseTwo_Rollbacked` or
    /// `PhaseTwo_RollbackFailed_Retryable` / `_Unretryable`.
    fn branch_rollback<'a>(
        &'a self,
        xid: &'a str,
        branch_id: i64,
        application_data: Option<&'a str>,
    ) -> BoxFuture<'a, BranchStatus>;
}
