//! The task-local transaction context, Seata's `RootContext`: which global
//! transaction (XID) the current task works for, and whether it runs in
//! "global lock" mode (a local transaction that must not overwrite rows a
//! global transaction holds).
//!
//! The context lives in a tokio task-local: it is set for the duration of a
//! future with [`scope`], and [`bind`]/[`unbind`] change it inside that
//! scope. Outside any scope there is no XID and binding fails.
//!
//! Across service calls the XID travels as the `TX_XID` header (Seata's
//! convention): [`XID_HEADER`], [`outgoing_header`], [`scope`] with the
//! received value.

use std::cell::RefCell;
use std::future::Future;

use crate::api::TxnError;

/// Seata's header / RPC attachment name for the XID.
pub const XID_HEADER: &str = "TX_XID";

#[derive(Clone, Debug, Default)]
struct Context {
    xid: Option<String>,
    global_lock: bool,
    lock_retry: Option<LockRetryConfig>,
}

/// How a branch retries when the TC answers a lock conflict (Seata's
/// `GlobalLockConfig`, set per transaction by `@GlobalTransactional(
/// lockRetryInterval, lockRetryTimes)`). `None` in the context means "use
/// the branch implementation's defaults" (Seata: 10 ms, 30 times).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockRetryConfig {
    /// Pause between two attempts, in milliseconds.
    pub interval_ms: u64,
    /// Attempts after the first conflict.
    pub times: u32,
}

tokio::task_local! {
    static CONTEXT: RefCell<Context>;
}

/// Run `fut` with its own context, starting with `xid` bound (or none).
/// Nested scopes shadow the outer one and restore it when they end.
pub async fn scope<F: Future>(xid: Option<String>, fut: F) -> F::Output {
    CONTEXT
        .scope(
            RefCell::new(Context {
                xid,
                global_lock: false,
                lock_retry: None,
            }),
            fut,
        )
        .await
}

/// Run `fut` in global lock mode (Seata's `@GlobalLock`), without an XID.
pub async fn scope_global_lock<F: Future>(fut: F) -> F::Output {
    CONTEXT
        .scope(
            RefCell::new(Context {
                xid: None,
                global_lock: true,
                lock_retry: None,
            }),
            fut,
        )
        .await
}

/// Like [`scope`], with a lock retry configuration that branch
/// implementations read with [`lock_retry_config`] (the template sets the
/// [`TransactionInfo`](crate::tm::TransactionInfo)'s).
pub async fn scope_with_lock_retry<F: Future>(
    xid: Option<String>,
    lock_retry: Option<LockRetryConfig>,
    fut: F,
) -> F::Output {
    CONTEXT
        .scope(
            RefCell::new(Context {
                xid,
                global_lock: false,
                lock_retry,
            }),
            fut,
        )
        .await
}

/// The lock retry configuration of the current transaction, if one was set.
pub fn lock_retry_config() -> Option<LockRetryConfig> {
    CONTEXT.try_with(|c| c.borrow().lock_retry).ok().flatten()
}

/// The XID the current task works for, if any.
pub fn current_xid() -> Option<String> {
    CONTEXT.try_with(|c| c.borrow().xid.clone()).ok().flatten()
}

/// True when the current task runs in global lock mode.
pub fn in_global_lock() -> bool {
    CONTEXT
        .try_with(|c| c.borrow().global_lock)
        .unwrap_or(false)
}

/// Bind `xid` to the current scope. Fails outside a [`scope`].
pub fn bind(xid: &str) -> Result<(), TxnError> {
    CONTEXT
        .try_with(|c| c.borrow_mut().xid = Some(xid.to_owned()))
        .map_err(|_| {
            TxnError::Propagation("no transaction context: run inside context::scope".into())
        })
}

/// Unbind and answer the XID of the current scope (none outside a scope).
pub fn unbind() -> Option<String> {
    CONTEXT
        .try_with(|c| c.borrow_mut().xid.take())
        .ok()
        .flatten()
}

/// The `(TX_XID, xid)` header to attach to an outgoing call, if the task is
/// in a global transaction.
pub fn outgoing_header() -> Option<(&'static str, String)> {
    current_xid().map(|x| (XID_HEADER, x))
}

/// Longest XID accepted from a header, in bytes (Seata's `xid` columns are
/// `VARCHAR(128)`).
pub const MAX_XID_BYTES: usize = 128;

/// Validates an incoming [`XID_HEADER`] value.
///
/// * `None`, or a value that is empty after trimming: no global transaction
///   (`Ok(None)`), as Seata treats a blank `TX_XID`.
/// * A value longer than [`MAX_XID_BYTES`] or containing whitespace or
///   control characters inside: [`TxnError::Propagation`]. The shape is not
///   checked further (Seata's is `ip:port:transactionId`, but a TC may use
///   another), so that any XID the TC issued passes.
pub fn parse_xid_header(value: Option<&str>) -> Result<Option<String>, TxnError> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if value.len() > MAX_XID_BYTES {
        return Err(TxnError::Propagation(format!(
            "{XID_HEADER} header of {} bytes exceeds the limit of {MAX_XID_BYTES} bytes",
            value.len()
        )));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(TxnError::Propagation(format!(
            "{XID_HEADER} header contains whitespace or control characters"
        )));
    }
    Ok(Some(value.to_owned()))
}

/// Run `fut` in a new [`scope`] bound to the XID received in an incoming
/// call's [`XID_HEADER`] (or none when the header is absent or blank).
/// Fails without running `fut` when the value is not a plausible XID (see
/// [`parse_xid_header`]).
pub async fn scope_from_header<F: Future>(
    value: Option<&str>,
    fut: F,
) -> Result<F::Output, TxnError> {
    let xid = parse_xid_header(value)?;
    Ok(scope(xid, fut).await)
}
