//! `AtDataSource`: one database as an AT resource: its pool, metadata
//! cache, undo log table, the phase-two undo-log deleter, and the
//! `ResourceManager` the TC calls (see `phase_two`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rhea_txn_client::{BoxFuture, TcApi};
use tokio::sync::mpsc;

use crate::backend::DbKind;
use crate::error::AtError;
use crate::meta::MetaCache;
use crate::phase_two::{self, CommitMsg};
use crate::pool::Pool;
use crate::transaction::AtTransaction;
use crate::undo;

/// Options of a data source; every limit is named with its unit.
#[derive(Clone, Debug)]
pub struct AtOptions {
    /// Connections open at most (pool bound).
    pub max_connections: usize,
    /// Longest wait for a free connection.
    pub acquire_timeout_ms: u64,
    /// Re-runs of a local transaction after a global lock conflict (Seata's
    /// `client.rm.lock.retryTimes`), also the bound of the `SELECT ... FOR
    /// UPDATE` global lock check.
    pub lock_retry_times: u32,
    /// Pause between those re-runs (`client.rm.lock.retryInterval`).
    pub lock_retry_interval_ms: u64,
    /// Rows an image may hold (before image of a statement, rows of a
    /// `SELECT ... FOR UPDATE` lock check).
    pub max_image_rows: usize,
    /// Size of one branch's encoded `rollback_info`.
    pub max_undo_log_bytes: usize,
    /// Phase-two commits waiting for their undo log to be deleted; when the
    /// queue is full the delete runs synchronously.
    pub max_pending_undo_deletes: usize,
    /// Undo logs deleted by one statement of the background deleter.
    pub undo_delete_batch_size: usize,
    /// Longest wait of a phase-two rollback for a row lock (PostgreSQL
    /// `lock_timeout`; MySQL `innodb_lock_wait_timeout`, rounded up to
    /// seconds); past it the rollback answers retryable.
    pub phase_two_lock_timeout_ms: u64,
    /// Defensive rows (written by a rollback that found no undo log) older
    /// than this many days are deleted (Seata's `logSaveDays`); 0 keeps
    /// them. Default 7.
    pub undo_log_save_days: u32,
    /// How often that cleanup runs. Default 3,600,000 (an hour).
    pub undo_cleanup_interval_ms: u64,
}

impl Default for AtOptions {
    fn default() -> Self {
        AtOptions {
            max_connections: 10,
            acquire_timeout_ms: 5_000,
            lock_retry_times: 30,
            lock_retry_interval_ms: 10,
            max_image_rows: 10_000,
            max_undo_log_bytes: 4 * 1024 * 1024,
            max_pending_undo_deletes: 10_000,
            undo_delete_batch_size: 1_000,
            phase_two_lock_timeout_ms: 10_000,
            undo_log_save_days: 7,
            undo_cleanup_interval_ms: 3_600_000,
        }
    }
}

impl AtOptions {
    /// The lock retry policy in force: the global transaction's own
    /// (`TransactionInfo::lock_retry`, published in the task's context) if
    /// it set one, else `lock_retry_times` / `lock_retry_interval_ms`.
    /// Answers (retries, interval in ms).
    pub fn lock_retry(&self) -> (u32, u64) {
        match rhea_txn_client::context::lock_retry_config() {
            Some(c) => (c.times, c.interval_ms),
            None => (self.lock_retry_times, self.lock_retry_interval_ms),
        }
    }

    fn validate(&self) -> Result<(), AtError> {
        let positive = [
            ("max_connections", self.max_connections),
            ("max_image_rows", self.max_image_rows),
            ("max_undo_log_bytes", self.max_undo_log_bytes),
            ("max_pending_undo_deletes", self.max_pending_undo_deletes),
            ("undo_delete_batch_size", self.undo_delete_batch_size),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(AtError::Config(format!("{name} must be positive")));
            }
        }
        Ok(())
    }
}

/// Counters of a data source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AtStats {
    /// Branches registered at the TC (phase one with undo log).
    pub branches_registered: u64,
    /// Global lock conflicts met (registration, lock checks).
    pub lock_conflicts: u64,
    /// Phase-two rollbacks refused because rows changed since phase one.
    pub dirty_rollbacks: u64,
    /// Phase-two rollbacks that found no undo log and left the defensive row.
    pub defensive_rows: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub branches_registered: AtomicU64,
    pub lock_conflicts: AtomicU64,
    pub dirty_rollbacks: AtomicU64,
    pub defensive_rows: AtomicU64,
}

impl Counters {
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

pub(crate) struct Inner {
    pub resource_id: String,
    pub tc: Arc<dyn TcApi>,
    pub options: AtOptions,
    pub pool: Arc<Pool>,
    pub meta: MetaCache,
    pub commit_queue: mpsc::Sender<CommitMsg>,
    pub counters: Counters,
}

/// A database as an AT resource. Cheap to clone.
#[derive(Clone)]
pub struct AtDataSource {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for AtDataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtDataSource")
            .field("resource_id", &self.inner.resource_id)
            .finish()
    }
}

impl AtDataSource {
    /// A PostgreSQL data source, e.g. `postgres://user@127.0.0.1:5432/db`.
    /// Creates `undo_log` if missing. Must be called inside a tokio runtime
    /// (it spawns the undo-log deleter).
    pub async fn postgres(
        url: &str,
        tc: Arc<dyn TcApi>,
        options: AtOptions,
    ) -> Result<Self, AtError> {
        Self::open(DbKind::Postgres, url, tc, options).await
    }

    /// A MariaDB/MySQL data source, e.g. `mysql://root@127.0.0.1:3306/db`.
    pub async fn mysql(url: &str, tc: Arc<dyn TcApi>, options: AtOptions) -> Result<Self, AtError> {
        Self::open(DbKind::MySql, url, tc, options).await
    }

    async fn open(
        kind: DbKind,
        url: &str,
        tc: Arc<dyn TcApi>,
        options: AtOptions,
    ) -> Result<Self, AtError> {
        options.validate()?;
        let resource_id = resource_id(kind, url)?;
        let pool = Pool::new(
            kind,
            url.to_owned(),
            options.max_connections,
            options.acquire_timeout_ms,
        );
        {
            let mut c = pool.get().await?;
            if let Err(e) = c.conn().execute(&undo::create_table_sql(kind)).await {
                // Concurrent creators may race on PostgreSQL's catalog: fine
                // if the table exists now.
                let check = match kind {
                    DbKind::Postgres => "SELECT to_regclass('undo_log') IS NOT NULL".to_owned(),
                    DbKind::MySql => "SELECT 1 FROM information_schema.tables \
                         WHERE table_schema = DATABASE() AND table_name = 'undo_log'"
                        .to_owned(),
                };
                let exists = c.conn().query(&check).await?;
                let found = exists
                    .rows
                    .first()
                    .and_then(|r| r.first())
                    .cloned()
                    .flatten()
                    .is_some_and(|v| v == "t" || v == "1");
                if !found {
                    return Err(e);
                }
            }
        }
        let (tx, rx) = mpsc::channel(options.max_pending_undo_deletes);
        tokio::spawn(phase_two::deleter(
            pool.clone(),
            rx,
            options.undo_delete_batch_size,
        ));
        if options.undo_log_save_days > 0 {
            tokio::spawn(phase_two::defensive_row_cleaner(
                Arc::downgrade(&pool),
                options.undo_log_save_days,
                options.undo_cleanup_interval_ms,
                options.undo_delete_batch_size,
            ));
        }
        tracing::info!(%resource_id, "AT data source ready");
        Ok(AtDataSource {
            inner: Arc::new(Inner {
                resource_id,
                tc,
                options,
                pool,
                meta: MetaCache::default(),
                commit_queue: tx,
                counters: Counters::default(),
            }),
        })
    }

    /// Seata's resource id: the URL without credentials or parameters.
    pub fn resource_id(&self) -> &str {
        &self.inner.resource_id
    }

    pub fn kind(&self) -> DbKind {
        self.inner.pool.kind()
    }

    pub fn options(&self) -> &AtOptions {
        &self.inner.options
    }

    pub fn stats(&self) -> AtStats {
        let c = &self.inner.counters;
        AtStats {
            branches_registered: c.branches_registered.load(Ordering::Relaxed),
            lock_conflicts: c.lock_conflicts.load(Ordering::Relaxed),
            dirty_rollbacks: c.dirty_rollbacks.load(Ordering::Relaxed),
            defensive_rows: c.defensive_rows.load(Ordering::Relaxed),
        }
    }

    /// Begin a local transaction. Its behaviour is fixed by the task's
    /// context now: an AT branch when an XID is bound, global lock mode in
    /// a global-lock scope, else a plain local transaction.
    pub async fn begin(&self) -> Result<AtTransaction, AtError> {
        AtTransaction::begin(self.clone()).await
    }

    /// Run `f` in a local transaction and commit it; on a global lock
    /// conflict (from `f` or from the commit) roll back and re-run the whole
    /// transaction, at most `lock_retry_times` more times, pausing
    /// `lock_retry_interval_ms` (Seata's `LockRetryPolicy`). Any other error
    /// rolls back and is returned.
    ///
    /// ```ignore
    /// ds.run(|tx| Box::pin(async move {
    ///     tx.execute("UPDATE acc SET balance = balance - 10 WHERE id = 1").await
    /// })).await?;
    /// ```
    pub async fn run<T, F>(&self, mut f: F) -> Result<T, AtError>
    where
        T: Send,
        F: for<'t> FnMut(&'t mut AtTransaction) -> BoxFuture<'t, Result<T, AtError>>,
    {
        let mut retries = 0u32;
        let (retry_times, retry_interval_ms) = self.inner.options.lock_retry();
        loop {
            let mut tx = self.begin().await?;
            let result = match f(&mut tx).await {
                Ok(v) => tx.commit().await.map(|()| v),
                Err(e) => {
                    if let Err(re) = tx.rollback().await {
                        tracing::warn!(error = %re, "rollback after a failed transaction body");
                    }
                    Err(e)
                }
            };
            match result {
                Err(e) if e.is_lock_conflict() && retries < retry_times => {
                    retries += 1;
                    tracing::debug!(retries, error = %e, "global lock conflict: re-running the local transaction");
                    tokio::time::sleep(Duration::from_millis(retry_interval_ms)).await;
                }
                other => return other,
            }
        }
    }

    /// Forget the cached table metadata (call after DDL on a table used in
    /// AT branches).
    pub fn clear_table_metadata(&self) {
        self.inner.meta.clear();
    }

    /// Wait until every phase-two commit queued so far had its undo log
    /// deleted (tests, orderly shutdown).
    pub async fn flush_undo_deletes(&self) -> Result<(), AtError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner
            .commit_queue
            .send(CommitMsg::Flush(tx))
            .await
            .map_err(|_| AtError::Config("undo log deleter stopped".into()))?;
        rx.await
            .map_err(|_| AtError::Config("undo log deleter stopped".into()))
    }
}

/// `scheme://host:port/db` from a connection URL: no user, password or
/// parameters; the default port made explicit.
fn resource_id(kind: DbKind, url: &str) -> Result<String, AtError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| AtError::Config(format!("not a URL: {}", strip_password(url))))?;
    let rest = rest.split(['?', '#']).next().unwrap_or(rest);
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() {
        return Err(AtError::Config(format!(
            "no host in {}",
            strip_password(url)
        )));
    }
    let has_port = host
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let host = if has_port {
        host.to_owned()
    } else {
        let port = match kind {
            DbKind::Postgres => 5432,
            DbKind::MySql => 3306,
        };
        format!("{host}:{port}")
    };
    Ok(format!("{scheme}://{host}{path}"))
}

fn strip_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(a)) if a > s => format!("{}{}", &url[..s + 3], &url[a + 1..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_ids_have_no_credentials() {
        assert_eq!(
            resource_id(
                DbKind::Postgres,
                "postgres://postgres:secret@127.0.0.1:5432/test?sslmode=disable"
            )
            .expect("id"),
            "postgres://127.0.0.1:5432/test"
        );
        assert_eq!(
            resource_id(DbKind::MySql, "mysql://root@127.0.0.1/test").expect("id"),
            "mysql://127.0.0.1:3306/test"
        );
    }
}
