//! Phase two, the TC's calls to this resource manager: commit deletes the
//! undo log (bounded queue, concurrent commits batched into one DELETE) and
//! answers `PhaseTwo_Committed` only once the delete committed, so an undo
//! log never outlives a branch the TC recorded as committed (a crash in
//! between makes the TC resend; deleting twice is harmless); rollback
//! undoes the branch's items with the dirty check, or leaves the defensive
//! row when phase one never committed.

use std::sync::Arc;

use rhea_txn::protocol::{BranchStatus, BranchType};
use rhea_txn_client::{BoxFuture, ResourceManager};
use tokio::sync::{mpsc, oneshot};

use crate::backend::DbKind;
use crate::datasource::{AtDataSource, Counters};
use crate::error::AtError;
use crate::pool::Pool;
use crate::undo::{self, Undone};

pub(crate) enum CommitMsg {
    Delete {
        xid: String,
        branch_id: i64,
        /// Told whether the batch holding this delete committed.
        done: Option<oneshot::Sender<bool>>,
    },
    Flush(oneshot::Sender<()>),
}

/// The background deleter: takes what is queued (up to `batch_size`), one
/// DELETE per batch. Ends when the data source is dropped.
pub(crate) async fn deleter(pool: Arc<Pool>, mut rx: mpsc::Receiver<CommitMsg>, batch_size: usize) {
    while let Some(first) = rx.recv().await {
        let mut branches = Vec::new();
        let mut waiting = Vec::new();
        let mut flushes = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                CommitMsg::Delete {
                    xid,
                    branch_id,
                    done,
                } => {
                    branches.push((xid, branch_id));
                    waiting.extend(done);
                }
                CommitMsg::Flush(tx) => flushes.push(tx),
            }
            if branches.len() < batch_size {
                next = rx.try_recv().ok();
            }
        }
        let ok = if branches.is_empty() {
            true
        } else {
            match delete_undo_logs(&pool, &branches).await {
                Ok(()) => true,
                Err(e) => {
                    // The branches answer a retryable failure: the TC resends.
                    tracing::warn!(error = %e, count = branches.len(), "deleting undo logs after phase-two commit failed");
                    false
                }
            }
        };
        for w in waiting {
            let _ = w.send(ok);
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}

/// Delete defensive rows older than `save_days`, every `interval_ms`, at
/// most `batch` per statement, until the data source is dropped. Normal
/// undo logs are never deleted by age: they belong to branches the TC still
/// tracks (a stuck one is for an operator to resolve, not to forget).
pub(crate) async fn defensive_row_cleaner(
    pool: std::sync::Weak<Pool>,
    save_days: u32,
    interval_ms: u64,
    batch: usize,
) {
    let interval = std::time::Duration::from_millis(interval_ms.max(1000));
    loop {
        tokio::time::sleep(interval).await;
        let Some(pool) = pool.upgrade() else {
            return;
        };
        let r = async {
            let mut c = pool.get().await?;
            let kind = c.conn().kind();
            let sql = undo::delete_old_defensive_rows_sql(kind, save_days, batch);
            c.conn().execute(&sql).await
        }
        .await;
        match r {
            Ok(n) if n > 0 => {
                tracing::info!(rows = n, save_days, "old defensive undo rows deleted")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "deleting old defensive undo rows failed"),
        }
    }
}

async fn delete_undo_logs(pool: &Arc<Pool>, branches: &[(String, i64)]) -> Result<(), AtError> {
    let mut c = pool.get().await?;
    let kind = c.conn().kind();
    c.conn().execute(&undo::delete_sql(kind, branches)).await?;
    Ok(())
}

impl AtDataSource {
    async fn commit_branch(&self, xid: &str, branch_id: i64) -> BranchStatus {
        let (done, result) = oneshot::channel();
        let msg = CommitMsg::Delete {
            xid: xid.to_owned(),
            branch_id,
            done: Some(done),
        };
        match self.inner.commit_queue.try_send(msg) {
            Ok(()) => match result.await {
                Ok(true) => BranchStatus::PhaseTwoCommitted,
                _ => BranchStatus::PhaseTwoCommitFailedRetryable,
            },
            Err(_) => {
                // Queue full (or deleter gone): delete now.
                match delete_undo_logs(&self.inner.pool, &[(xid.to_owned(), branch_id)]).await {
                    Ok(()) => BranchStatus::PhaseTwoCommitted,
                    Err(e) => {
                        tracing::warn!(%xid, branch_id, error = %e, "phase-two commit: undo log delete failed");
                        BranchStatus::PhaseTwoCommitFailedRetryable
                    }
                }
            }
        }
    }

    async fn rollback_branch(&self, xid: &str, branch_id: i64) -> BranchStatus {
        match self.try_rollback(xid, branch_id).await {
            Ok(()) => BranchStatus::PhaseTwoRollbacked,
            Err(e @ AtError::DirtyRollback { .. }) => {
                Counters::bump(&self.inner.counters.dirty_rollbacks);
                tracing::error!(%xid, branch_id, error = %e, "AT rollback refused: dirty rows; data and undo log left untouched");
                BranchStatus::PhaseTwoRollbackFailedUnretryable
            }
            Err(e @ AtError::Image(_)) => {
                tracing::error!(%xid, branch_id, error = %e, "AT rollback impossible: bad undo log");
                BranchStatus::PhaseTwoRollbackFailedUnretryable
            }
            Err(e) => {
                tracing::warn!(%xid, branch_id, error = %e, "AT rollback failed (retryable)");
                BranchStatus::PhaseTwoRollbackFailedRetryable
            }
        }
    }

    async fn try_rollback(&self, xid: &str, branch_id: i64) -> Result<(), AtError> {
        let mut pc = self.inner.pool.get().await?;
        let conn = pc.conn();
        let kind = conn.kind();
        // Never wait forever for a row an application holds: the TC retries.
        let timeout_ms = self.inner.options.phase_two_lock_timeout_ms;
        match kind {
            DbKind::Postgres => {
                conn.execute(kind.begin_sql()).await?;
                conn.execute(&format!("SET LOCAL lock_timeout = {timeout_ms}"))
                    .await?;
            }
            DbKind::MySql => {
                // Session scope (restored below); whole seconds, at least 1.
                let secs = timeout_ms.div_ceil(1000).max(1);
                conn.execute(&format!("SET SESSION innodb_lock_wait_timeout = {secs}"))
                    .await?;
                conn.execute(kind.begin_sql()).await?;
            }
        }
        let result: Result<(), AtError> = async {
            let found = conn
                .query(&undo::select_for_update_sql(kind, xid, branch_id))
                .await?;
            let Some(row) = found.rows.first() else {
                // Phase one has not committed (or never will): leave the
                // defensive row so that a late phase-one commit fails on
                // the unique key (xid, branch_id).
                conn.execute(&undo::insert_sql(
                    kind,
                    xid,
                    branch_id,
                    b"{}",
                    undo::STATUS_GLOBAL_FINISHED,
                ))
                .await?;
                Counters::bump(&self.inner.counters.defensive_rows);
                tracing::info!(%xid, branch_id, "no undo log: defensive row inserted");
                return Ok(());
            };
            let status = row.get(1).cloned().flatten().unwrap_or_default();
            if status != undo::STATUS_NORMAL.to_string() {
                // Already finished (defensive row): nothing to undo.
                return Ok(());
            }
            let info = row
                .first()
                .cloned()
                .flatten()
                .ok_or_else(|| AtError::Image("rollback_info is NULL".into()))?;
            let log = undo::decode(&info)?;
            for item in log.items.iter().rev() {
                match undo::undo_item(conn, xid, branch_id, item).await? {
                    Undone::Restored | Undone::NothingToDo => {}
                }
            }
            conn.execute(&undo::delete_sql(kind, &[(xid.to_owned(), branch_id)]))
                .await?;
            Ok(())
        }
        .await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = conn.execute(end).await;
        let restored = match kind {
            DbKind::MySql => conn
                .execute("SET SESSION innodb_lock_wait_timeout = DEFAULT")
                .await
                .map(|_| ()),
            DbKind::Postgres => Ok(()),
        };
        if ended.is_err() || restored.is_err() {
            pc.discard();
        }
        result?;
        ended.map(|_| ())
    }
}

impl ResourceManager for AtDataSource {
    fn resource_id(&self) -> &str {
        &self.inner.resource_id
    }

    fn branch_type(&self) -> BranchType {
        BranchType::At
    }

    fn branch_commit<'a>(
        &'a self,
        xid: &'a str,
        branch_id: i64,
        _application_data: Option<&'a str>,
    ) -> BoxFuture<'a, BranchStatus> {
        Box::pin(self.commit_branch(xid, branch_id))
    }

    fn branch_rollback<'a>(
        &'a self,
        xid: &'a str,
        branch_id: i64,
        _application_data: Option<&'a str>,
    ) -> BoxFuture<'a, BranchStatus> {
        Box::pin(self.rollback_branch(xid, branch_id))
    }
}
