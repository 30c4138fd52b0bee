//! The transaction manager (TM) API, with Seata's semantics:
//!
//! * [`GlobalTransaction`] (Seata's `GlobalTransaction` /
//!   `DefaultGlobalTransaction`): begin, commit, rollback, status, suspend
//!   and resume of one global transaction. A transaction is either the
//!   [`Launcher`](GlobalTransactionRole::Launcher), which began it and alone
//!   talks to the TC, or a [`Participant`](GlobalTransactionRole::Participant)
//!   that joined an XID found in the context and whose begin, commit and
//!   rollback do nothing.
//! * [`execute`] / [`TransactionalTemplate`] (Seata's
//!   `TransactionalTemplate.execute`, what `@GlobalTransactional` runs): a
//!   closure run inside a global transaction according to a [`Propagation`]
//!   mode; commit on `Ok`, rollback on `Err` (Seata's default rollback rule:
//!   any error).
//!
//! The XID lives in the task-local context ([`crate::context`]). The template
//! runs the business future in a context scope of its own, so that nested
//! templates and branch implementations see the right XID, and the caller's
//! context is exactly as it was when the template returns.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use rhea_txn::protocol::GlobalStatus;
use tracing::{debug, info, warn};

use crate::api::{TcApi, TxnError};
use crate::context::{self, LockRetryConfig};

/// Default global transaction timeout, in milliseconds (Seata's 60 s).
pub const DEFAULT_TIMEOUT_MS: u32 = 60_000;
/// Default transaction name (Seata's `DEFAULT_GLOBAL_TX_NAME`).
pub const DEFAULT_TRANSACTION_NAME: &str = "default";
/// Default attempts of a global commit that fails in transport or times out
/// (Seata's `client.tm.commitRetryCount`).
pub const DEFAULT_COMMIT_RETRY_COUNT: u32 = 5;
/// Default attempts of a global rollback that fails in transport or times
/// out (Seata's `client.tm.rollbackRetryCount`).
pub const DEFAULT_ROLLBACK_RETRY_COUNT: u32 = 5;

/// Seata's six propagation modes (`io.seata.tm.api.transaction.Propagation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Propagation {
    /// Join the transaction in the context, or begin a new one.
    #[default]
    Required,
    /// Suspend the transaction in the context (if any), begin a new one,
    /// resume the suspended one afterwards.
    RequiresNew,
    /// Suspend the transaction in the context (if any) and run without one.
    NotSupported,
    /// Join the transaction in the context, or run without one.
    Supports,
    /// Fail if there is a transaction in the context; run without one.
    Never,
    /// Join the transaction in the context; fail if there is none.
    Mandatory,
}

/// Whether a [`GlobalTransaction`] began the transaction or joined it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GlobalTransactionRole {
    /// Began it: commits or rolls it back.
    Launcher,
    /// Joined it: begin, commit and rollback are no-ops.
    Participant,
}

/// How a scoped transaction runs (Seata's `TransactionInfo`, the attributes
/// of `@GlobalTransactional`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionInfo {
    /// Global timeout, in milliseconds, after which the TC rolls the
    /// transaction back. Default [`DEFAULT_TIMEOUT_MS`].
    pub timeout_ms: u32,
    /// Transaction name, for the TC's records and logs.
    pub name: String,
    /// Default [`Propagation::Required`].
    pub propagation: Propagation,
    /// Attempts of the global commit on transport errors and timeouts.
    pub commit_retry_count: u32,
    /// Attempts of the global rollback on transport errors and timeouts.
    pub rollback_retry_count: u32,
    /// Lock conflict retry policy for the branches of this transaction
    /// (`None`: the branch implementation's defaults). Published in the
    /// context, see [`context::lock_retry_config`].
    pub lock_retry: Option<LockRetryConfig>,
}

impl Default for TransactionInfo {
    fn default() -> Self {
        TransactionInfo {
            timeout_ms: DEFAULT_TIMEOUT_MS,
            name: DEFAULT_TRANSACTION_NAME.to_owned(),
            propagation: Propagation::Required,
            commit_retry_count: DEFAULT_COMMIT_RETRY_COUNT,
            rollback_retry_count: DEFAULT_ROLLBACK_RETRY_COUNT,
            lock_retry: None,
        }
    }
}

impl TransactionInfo {
    /// Defaults with this name.
    pub fn named(name: impl Into<String>) -> Self {
        TransactionInfo {
            name: name.into(),
            ..TransactionInfo::default()
        }
    }

    /// The same, with this propagation.
    pub fn with_propagation(mut self, propagation: Propagation) -> Self {
        self.propagation = propagation;
        self
    }

    /// The same, with this timeout in milliseconds.
    pub fn with_timeout_ms(mut self, timeout_ms: u32) -> Self {
        self.timeout_ms = timeout_ms;
        self
    }
}

/// An XID taken out of the context by [`suspend`], to give back with
/// [`resume`] (Seata's `SuspendedResourcesHolder`).
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a suspended transaction must be resumed"]
pub struct SuspendedResources {
    xid: String,
}

impl SuspendedResources {
    /// The suspended XID.
    pub fn xid(&self) -> &str {
        &self.xid
    }
}

/// Unbinds the XID of the current context, if any, and answers it for
/// [`resume`].
pub fn suspend() -> Option<SuspendedResources> {
    let xid = context::unbind()?;
    debug!(%xid, "suspended global transaction");
    Some(SuspendedResources { xid })
}

/// Binds a suspended XID to the current context again (nothing for
/// `None`). Fails outside a [`context::scope`].
pub fn resume(suspended: Option<SuspendedResources>) -> Result<(), TxnError> {
    let Some(s) = suspended else {
        return Ok(());
    };
    context::bind(&s.xid)?;
    debug!(xid = %s.xid, "resumed global transaction");
    Ok(())
}

/// Whether a commit answered with this status succeeded: the TC decided to
/// commit (it finishes phase two by itself, retrying as needed).
fn is_commit_decided(status: GlobalStatus) -> bool {
    matches!(
        status,
        GlobalStatus::Committed
            | GlobalStatus::AsyncCommitting
            | GlobalStatus::Committing
            | GlobalStatus::CommitRetrying
    )
}

/// Whether a rollback answered with this status succeeded: rolled back or
/// rolling back, or `Finished` (the TC no longer knows the XID, as after a
/// timeout rollback completed).
fn is_rollback_decided(status: GlobalStatus) -> bool {
    matches!(
        status,
        GlobalStatus::Rollbacked
            | GlobalStatus::Rollbacking
            | GlobalStatus::RollbackRetrying
            | GlobalStatus::TimeoutRollbacked
            | GlobalStatus::TimeoutRollbacking
            | GlobalStatus::TimeoutRollbackRetrying
            | GlobalStatus::Finished
    )
}

/// Whether a failed commit or rollback is worth another attempt: the
/// outcome is unknown (transport, timeout) or the TC failed transiently
/// (its store or I/O; `Unknown` is what a TC answers when a command's
/// outcome is unknown to it). Refusals such as `GlobalTransactionNotExist`
/// or a status conflict are final.
fn is_retryable(e: &TxnError) -> bool {
    use rhea_txn::protocol::TransactionExceptionCode as C;
    match e {
        TxnError::Transport(_) | TxnError::Timeout(_) => true,
        TxnError::Tc { code, .. } => matches!(
            code,
            C::Unknown | C::Io | C::FailedStore | C::FailedWriteSession
        ),
        _ => false,
    }
}

/// One global transaction, as seen by the TM.
pub struct GlobalTransaction {
    tc: Arc<dyn TcApi>,
    xid: Option<String>,
    status: GlobalStatus,
    role: GlobalTransactionRole,
    /// Reloaded by XID: may commit or roll back but not begin.
    reloaded: bool,
    commit_retry_count: u32,
    rollback_retry_count: u32,
    began_at: Option<Instant>,
}

impl std::fmt::Debug for GlobalTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalTransaction")
            .field("xid", &self.xid)
            .field("status", &self.status)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl GlobalTransaction {
    fn with(tc: Arc<dyn TcApi>, xid: Option<String>, role: GlobalTransactionRole) -> Self {
        let status = if xid.is_some() && role == GlobalTransactionRole::Participant {
            GlobalStatus::Begin
        } else {
            GlobalStatus::UnKnown
        };
        GlobalTransaction {
            tc,
            xid,
            status,
            role,
            reloaded: false,
            commit_retry_count: DEFAULT_COMMIT_RETRY_COUNT,
            rollback_retry_count: DEFAULT_ROLLBACK_RETRY_COUNT,
            began_at: None,
        }
    }

    /// A new transaction, not begun yet (Seata's
    /// `GlobalTransactionContext.createNew()`): role Launcher.
    pub fn new(tc: Arc<dyn TcApi>) -> Self {
        Self::with(tc, None, GlobalTransactionRole::Launcher)
    }

    /// The transaction of the current context, as a Participant (Seata's
    /// `getCurrent()`), or `None` when the context has no XID.
    pub fn current(tc: Arc<dyn TcApi>) -> Option<Self> {
        let xid = context::current_xid()?;
        Some(Self::with(
            tc,
            Some(xid),
            GlobalTransactionRole::Participant,
        ))
    }

    /// [`current`](Self::current), or else [`new`](Self::new) (Seata's
    /// `getCurrentOrCreate()`).
    pub fn current_or_new(tc: Arc<dyn TcApi>) -> Self {
        match Self::current(tc.clone()) {
            Some(tx) => tx,
            None => Self::new(tc),
        }
    }

    /// An existing transaction by XID, as a Launcher that may commit or roll
    /// it back but not begin it (Seata's `GlobalTransactionContext.reload`).
    pub fn reload(tc: Arc<dyn TcApi>, xid: impl Into<String>) -> Self {
        let mut tx = Self::with(tc, Some(xid.into()), GlobalTransactionRole::Launcher);
        tx.reloaded = true;
        tx
    }

    /// Sets the attempts of commit and rollback (each at least 1).
    pub fn with_retry_counts(mut self, commit: u32, rollback: u32) -> Self {
        self.commit_retry_count = commit.max(1);
        self.rollback_retry_count = rollback.max(1);
        self
    }

    /// The XID, once begun or joined.
    pub fn xid(&self) -> Option<&str> {
        self.xid.as_deref()
    }

    pub fn role(&self) -> GlobalTransactionRole {
        self.role
    }

    /// The last status known locally, without asking the TC.
    pub fn local_status(&self) -> GlobalStatus {
        self.status
    }

    /// `GlobalBegin` at the TC, then binds the XID to the current context
    /// (when the caller runs inside a [`context::scope`]; otherwise the XID
    /// is only in [`xid`](Self::xid)). A participant's begin does nothing.
    ///
    /// Fails with [`TxnError::Propagation`] if this transaction already has
    /// an XID, was reloaded, or the context already holds one (Seata: "Global
    /// transaction already exists").
    pub async fn begin(&mut self, timeout_ms: u32, name: &str) -> Result<(), TxnError> {
        if self.role == GlobalTransactionRole::Participant {
            debug!(xid = ?self.xid, "ignore begin: just involved in global transaction");
            return Ok(());
        }
        if self.reloaded {
            return Err(TxnError::Propagation(
                "never begin a reloaded global transaction".into(),
            ));
        }
        if let Some(xid) = &self.xid {
            return Err(TxnError::Propagation(format!(
                "global transaction {xid} already begun"
            )));
        }
        if let Some(current) = context::current_xid() {
            return Err(TxnError::Propagation(format!(
                "global transaction already exists, can't begin a new one, current XID = {current}"
            )));
        }
        let xid = self.tc.global_begin(name, timeout_ms).await?;
        info!(%xid, name, timeout_ms, "began global transaction");
        self.status = GlobalStatus::Begin;
        self.began_at = Some(Instant::now());
        if context::bind(&xid).is_err() {
            debug!(%xid, "no context scope: XID not bound");
        }
        self.xid = Some(xid);
        Ok(())
    }

    fn launcher_xid(&self) -> Result<String, TxnError> {
        self.xid
            .clone()
            .ok_or_else(|| TxnError::Propagation("global transaction not begun".into()))
    }

    /// Unbinds our XID from the context if it is the one bound there.
    fn unbind_if_current(&self, xid: &str) {
        if context::current_xid().as_deref() == Some(xid) {
            context::unbind();
        }
    }

    /// `GlobalCommit`, retried on transport errors, timeouts and transient
    /// TC failures (`Unknown`, `IO`, `FailedStore`, `FailedWriteSession`) up
    /// to the commit retry count (the TC's commit is idempotent). Unbinds the XID
    /// from the context whatever the outcome. Answers the TC's status when
    /// the TC decided to commit (`Committed`, `AsyncCommitting`,
    /// `Committing`, `CommitRetrying`), else [`TxnError::Ended`] (e.g.
    /// `TimeoutRollbacking` after the global timeout). A participant's commit
    /// does nothing and answers its local status.
    pub async fn commit(&mut self) -> Result<GlobalStatus, TxnError> {
        if self.role == GlobalTransactionRole::Participant {
            debug!(xid = ?self.xid, "ignore commit: just involved in global transaction");
            return Ok(self.status);
        }
        let xid = self.launcher_xid()?;
        let result = self.end(&xid, true).await;
        self.unbind_if_current(&xid);
        let status = result?;
        self.status = status;
        if is_commit_decided(status) {
            info!(%xid, %status, "committed global transaction");
            Ok(status)
        } else {
            warn!(%xid, %status, "global commit answered a status other than committed");
            Err(TxnError::Ended { xid, status })
        }
    }

    /// `GlobalRollback`, retried like [`commit`](Self::commit). Unbinds the
    /// XID whatever the outcome. Answers the TC's status when it is a
    /// rolled back or rolling back status (or `Finished`), else
    /// [`TxnError::Ended`]. A participant's rollback does nothing.
    pub async fn rollback(&mut self) -> Result<GlobalStatus, TxnError> {
        if self.role == GlobalTransactionRole::Participant {
            debug!(xid = ?self.xid, "ignore rollback: just involved in global transaction");
            return Ok(self.status);
        }
        let xid = self.launcher_xid()?;
        let result = self.end(&xid, false).await;
        self.unbind_if_current(&xid);
        let status = result?;
        self.status = status;
        if is_rollback_decided(status) {
            info!(%xid, %status, "rolled back global transaction");
            Ok(status)
        } else {
            warn!(%xid, %status, "global rollback answered a status other than rolled back");
            Err(TxnError::Ended { xid, status })
        }
    }

    async fn end(&self, xid: &str, commit: bool) -> Result<GlobalStatus, TxnError> {
        let attempts = if commit {
            self.commit_retry_count
        } else {
            self.rollback_retry_count
        }
        .max(1);
        let mut attempt = 1;
        loop {
            let result = if commit {
                self.tc.global_commit(xid).await
            } else {
                self.tc.global_rollback(xid).await
            };
            match result {
                Err(e) if attempt < attempts && is_retryable(&e) => {
                    warn!(%xid, commit, attempt, attempts, error = %e, "global end failed, retrying");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Asks the TC for the status (`UnKnown` without an XID) and remembers
    /// it. A participant answers its local status without asking.
    pub async fn status(&mut self) -> Result<GlobalStatus, TxnError> {
        let Some(xid) = self.xid.clone() else {
            return Ok(GlobalStatus::UnKnown);
        };
        if self.role == GlobalTransactionRole::Participant {
            return Ok(self.status);
        }
        let status = self.tc.global_status(&xid).await?;
        self.status = status;
        Ok(status)
    }

    /// Unbinds the context's XID (see [`suspend`]).
    pub fn suspend(&self) -> Option<SuspendedResources> {
        suspend()
    }

    /// Binds a suspended XID again (see [`resume`]).
    pub fn resume(&self, suspended: Option<SuspendedResources>) -> Result<(), TxnError> {
        resume(suspended)
    }

    /// Milliseconds since begin (0 if not begun here).
    fn elapsed_ms(&self) -> u128 {
        self.began_at.map_or(0, |t| t.elapsed().as_millis())
    }
}

/// The outcome of a failed [`execute`].
#[derive(Debug, thiserror::Error)]
pub enum TemplateError<E> {
    /// The propagation mode refused the call (NEVER inside a transaction,
    /// MANDATORY outside one). The business did not run.
    #[error("{0}")]
    Propagation(TxnError),
    /// The global transaction could not begin. The business did not run.
    #[error("global transaction begin failed: {0}")]
    Begin(TxnError),
    /// The business returned an error. If this call launched the
    /// transaction it was rolled back; a joined transaction is left to its
    /// launcher (which sees the error when it is propagated).
    #[error("{0}")]
    Business(E),
    /// The business returned an error and the rollback failed too (the TC
    /// still rolls back at the global timeout).
    #[error("{business} (and the global rollback failed: {error})")]
    RollbackFailed { business: E, error: TxnError },
    /// The business succeeded but the commit failed: [`TxnError::Ended`]
    /// when the TC rolled back instead (e.g. global timeout, or the business
    /// outlasted `timeout_ms` and the template rolled back), transport or
    /// timeout when the outcome is unknown.
    #[error("global commit failed: {0}")]
    Commit(TxnError),
}

impl<E> TemplateError<E> {
    /// The business error, if the business failed.
    pub fn business(&self) -> Option<&E> {
        match self {
            TemplateError::Business(e) | TemplateError::RollbackFailed { business: e, .. } => {
                Some(e)
            }
            _ => None,
        }
    }

    /// The business error, if the business failed.
    pub fn into_business(self) -> Option<E> {
        match self {
            TemplateError::Business(e) | TemplateError::RollbackFailed { business: e, .. } => {
                Some(e)
            }
            _ => None,
        }
    }

    /// Flattens into a [`TxnError`], the business error becoming
    /// [`TxnError::Application`] with its message.
    pub fn into_txn_error(self) -> TxnError
    where
        E: std::fmt::Display,
    {
        match self {
            TemplateError::Propagation(e) | TemplateError::Begin(e) | TemplateError::Commit(e) => e,
            TemplateError::Business(e) => TxnError::Application(e.to_string()),
            TemplateError::RollbackFailed { business, error } => TxnError::Application(format!(
                "{business} (and the global rollback failed: {error})"
            )),
        }
    }

    /// The transaction error, if the transaction (not the business) failed.
    pub fn txn_error(&self) -> Option<&TxnError> {
        match self {
            TemplateError::Propagation(e)
            | TemplateError::Begin(e)
            | TemplateError::Commit(e)
            | TemplateError::RollbackFailed { error: e, .. } => Some(e),
            TemplateError::Business(_) => None,
        }
    }
}

/// [`execute`] bound to one TC.
#[derive(Clone)]
pub struct TransactionalTemplate {
    tc: Arc<dyn TcApi>,
}

impl TransactionalTemplate {
    pub fn new(tc: Arc<dyn TcApi>) -> Self {
        TransactionalTemplate { tc }
    }

    /// See [`execute`].
    pub async fn execute<T, E, F, Fut>(
        &self,
        info: &TransactionInfo,
        business: F,
    ) -> Result<T, TemplateError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        execute(&self.tc, info, business).await
    }
}

/// Runs `business` in a global transaction according to
/// `info.propagation` (Seata's `TransactionalTemplate.execute`):
///
/// | propagation | XID in the context | no XID |
/// |---|---|---|
/// | Required | join | begin a new one |
/// | RequiresNew | suspend, begin a new one, resume | begin a new one |
/// | NotSupported | suspend, run without, resume | run without |
/// | Supports | join | run without |
/// | Never | `TemplateError::Propagation` | run without |
/// | Mandatory | join | `TemplateError::Propagation` |
///
/// A new transaction is committed when the business answers `Ok` and rolled
/// back when it answers `Err` (whose error is then returned as
/// [`TemplateError::Business`]). A joined transaction is never committed or
/// rolled back here. If the business took longer than `info.timeout_ms` the
/// new transaction is rolled back instead of committed (as Seata 1.5 does)
/// and the result is `TemplateError::Commit(TxnError::Ended { .. })`.
///
/// The business runs in a context scope of its own holding the XID it
/// works for (or none), so the caller's context is untouched: "suspend" and
/// "resume" amount to shadowing the caller's scope.
pub async fn execute<T, E, F, Fut>(
    tc: &Arc<dyn TcApi>,
    info: &TransactionInfo,
    business: F,
) -> Result<T, TemplateError<E>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let existing = context::current_xid();
    let lock_retry = info.lock_retry.or_else(context::lock_retry_config);
    match (info.propagation, existing) {
        (Propagation::NotSupported, existing) => {
            if let Some(xid) = &existing {
                debug!(%xid, "NOT_SUPPORTED: suspending global transaction");
            }
            run_without(business).await
        }
        (Propagation::Supports, None) => run_without(business).await,
        (Propagation::Never, Some(xid)) => {
            Err(TemplateError::Propagation(TxnError::Propagation(format!(
                "existing transaction found for transaction marked with propagation 'never', xid = {xid}"
            ))))
        }
        (Propagation::Never, None) => run_without(business).await,
        (Propagation::Mandatory, None) => Err(TemplateError::Propagation(TxnError::Propagation(
            "no existing transaction found for transaction marked with propagation 'mandatory'"
                .into(),
        ))),
        (Propagation::RequiresNew, existing) => {
            if let Some(xid) = &existing {
                debug!(%xid, "REQUIRES_NEW: suspending global transaction");
            }
            launch(tc, info, lock_retry, business).await
        }
        (Propagation::Required | Propagation::Supports | Propagation::Mandatory, Some(xid)) => {
            debug!(%xid, "joining global transaction");
            context::scope_with_lock_retry(Some(xid), lock_retry, business())
                .await
                .map_err(TemplateError::Business)
        }
        (Propagation::Required, None) => launch(tc, info, lock_retry, business).await,
    }
}

async fn run_without<T, E, F, Fut>(business: F) -> Result<T, TemplateError<E>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    context::scope(None, business())
        .await
        .map_err(TemplateError::Business)
}

async fn launch<T, E, F, Fut>(
    tc: &Arc<dyn TcApi>,
    info: &TransactionInfo,
    lock_retry: Option<LockRetryConfig>,
    business: F,
) -> Result<T, TemplateError<E>>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut tx = GlobalTransaction::new(tc.clone())
        .with_retry_counts(info.commit_retry_count, info.rollback_retry_count);
    let run = async {
        tx.begin(info.timeout_ms, &info.name)
            .await
            .map_err(TemplateError::Begin)?;
        match business().await {
            Ok(value) => {
                if tx.elapsed_ms() > u128::from(info.timeout_ms) {
                    warn!(
                        xid = ?tx.xid(),
                        timeout_ms = info.timeout_ms,
                        "business outlasted the global timeout: rolling back instead of committing"
                    );
                    let xid = tx.xid().unwrap_or_default().to_owned();
                    let status = tx.rollback().await.map_err(TemplateError::Commit)?;
                    return Err(TemplateError::Commit(TxnError::Ended { xid, status }));
                }
                tx.commit().await.map_err(TemplateError::Commit)?;
                Ok(value)
            }
            Err(business) => match tx.rollback().await {
                Ok(_) => Err(TemplateError::Business(business)),
                Err(error) => Err(TemplateError::RollbackFailed { business, error }),
            },
        }
    };
    context::scope_with_lock_retry(None, lock_retry, run).await
}
