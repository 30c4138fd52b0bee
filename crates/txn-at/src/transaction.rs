//! `AtTransaction`: a local transaction on one connection. Inside a global
//! transaction it is an AT branch (images, undo log, branch registration at
//! commit); in global lock mode it checks the TC's locks; otherwise it is a
//! plain local transaction.

use std::sync::Arc;
use std::time::Duration;

use rhea_txn::protocol::{BranchStatus, BranchType};
use rhea_txn_client::{TxnError, context};

use crate::backend::{Conn, DbKind, Rows};
use crate::datasource::{AtDataSource, Counters};
use crate::error::AtError;
use crate::image::{LockKeys, column_list, pk_condition, pk_values};
use crate::meta::TableMeta;
use crate::pool::PooledConn;
use crate::sql::{self, DmlGroup, InsertPlan, InsertValue, Plan, TableName, TableRef};
use crate::undo::{self, BranchUndoLog, SqlType, UndoItem, UndoTable};

/// Key values looked up per statement when reading an image by key.
const KEYS_PER_QUERY: usize = 1_000;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Mode {
    Plain,
    Branch { xid: String },
    GlobalLock,
}

/// A local transaction. Finish it with [`commit`](Self::commit) or
/// [`rollback`](Self::rollback); dropped unfinished, its connection is
/// closed and the database rolls it back.
pub struct AtTransaction {
    ds: AtDataSource,
    conn: PooledConn,
    mode: Mode,
    undo: Vec<UndoItem>,
    locks: LockKeys,
    poisoned: Option<String>,
    finished: bool,
}

impl AtTransaction {
    pub(crate) async fn begin(ds: AtDataSource) -> Result<Self, AtError> {
        let mode = match context::current_xid() {
            Some(xid) => Mode::Branch { xid },
            None if context::in_global_lock() => Mode::GlobalLock,
            None => Mode::Plain,
        };
        let mut conn = ds.inner.pool.get().await?;
        let kind = conn.conn().kind();
        if let Err(e) = conn.conn().execute(kind.begin_sql()).await {
            conn.discard();
            return Err(e);
        }
        Ok(AtTransaction {
            ds,
            conn,
            mode,
            undo: Vec::new(),
            locks: LockKeys::default(),
            poisoned: None,
            finished: false,
        })
    }

    /// The XID when this is an AT branch.
    pub fn xid(&self) -> Option<&str> {
        match &self.mode {
            Mode::Branch { xid } => Some(xid),
            _ => None,
        }
    }

    /// True in global lock mode.
    pub fn is_global_lock(&self) -> bool {
        self.mode == Mode::GlobalLock
    }

    fn kind(&mut self) -> DbKind {
        self.conn.conn().kind()
    }

    fn db(&mut self) -> &mut Conn {
        self.conn.conn()
    }

    /// Run a statement (or, in a branch, an all-UPDATE / all-DELETE batch);
    /// answers the rows affected.
    pub async fn execute(&mut self, sql: &str) -> Result<u64, AtError> {
        self.check_usable()?;
        if self.mode == Mode::Plain {
            return self.db().execute(sql).await;
        }
        let kind = self.kind();
        match sql::plan(kind, sql)? {
            Plan::ReadOnly => self.db().execute(sql).await,
            Plan::SelectForUpdate { from, where_sql } => {
                self.check_select_locks(&from, where_sql.as_deref()).await?;
                self.db().execute(sql).await
            }
            Plan::Update(groups) => self.exec_update_delete(SqlType::Update, groups, sql).await,
            Plan::Delete(groups) => self.exec_update_delete(SqlType::Delete, groups, sql).await,
            Plan::Insert(p) => self.exec_insert(p, sql).await,
        }
    }

    /// Run a query; answers its rows as text. In a branch or in global lock
    /// mode a `SELECT ... FOR UPDATE` first waits (bounded) until no other
    /// global transaction holds the rows it reads.
    pub async fn query(&mut self, sql: &str) -> Result<Rows, AtError> {
        self.check_usable()?;
        if self.mode == Mode::Plain {
            return self.db().query(sql).await;
        }
        let kind = self.kind();
        match sql::plan(kind, sql)? {
            Plan::ReadOnly => self.db().query(sql).await,
            Plan::SelectForUpdate { from, where_sql } => {
                self.check_select_locks(&from, where_sql.as_deref()).await?;
                self.db().query(sql).await
            }
            _ => Err(AtError::unsupported(
                "data changes go through execute() in an AT branch",
                sql,
            )),
        }
    }

    fn check_usable(&self) -> Result<(), AtError> {
        if self.finished {
            return Err(AtError::Finished);
        }
        if let Some(p) = &self.poisoned {
            return Err(AtError::Poisoned(p.clone()));
        }
        Ok(())
    }

    /// Remember an error that happened once data may have changed: the
    /// transaction can then only roll back.
    fn poison<T>(&mut self, r: Result<T, AtError>) -> Result<T, AtError> {
        if let Err(e) = &r {
            self.poisoned = Some(e.to_string());
        }
        r
    }

    async fn meta(&mut self, table: &TableName) -> Result<Arc<TableMeta>, AtError> {
        let ds = self.ds.clone();
        ds.inner.meta.get(self.conn.conn(), table).await
    }

    /// `SELECT <all columns> FROM t WHERE <w> FOR UPDATE`, bounded.
    async fn before_image(
        &mut self,
        meta: &TableMeta,
        from: &TableRef,
        where_sql: Option<&str>,
    ) -> Result<Rows, AtError> {
        let kind = self.kind();
        let max = self.ds.inner.options.max_image_rows;
        let sql = format!(
            "SELECT {} FROM {}{} LIMIT {} FOR UPDATE",
            column_list(kind, &meta.columns),
            from.table_sql(kind),
            where_sql.map(|w| format!(" WHERE {w}")).unwrap_or_default(),
            max.saturating_add(1)
        );
        let rows = self.db().query(&sql).await?;
        if rows.len() > max {
            return Err(AtError::Limit {
                what: "image rows",
                actual: rows.len(),
                limit: max,
            });
        }
        Ok(rows)
    }

    /// The current rows with these key values (all columns).
    async fn rows_by_keys(
        &mut self,
        meta: &TableMeta,
        keys: &[Vec<String>],
    ) -> Result<Rows, AtError> {
        let kind = self.kind();
        let mut out = Rows {
            columns: meta.columns.clone(),
            rows: Vec::new(),
        };
        for chunk in keys.chunks(KEYS_PER_QUERY) {
            let sql = format!(
                // A locking (current) read: under MySQL REPEATABLE READ a
                // plain read could answer an older snapshot for rows the
                // statement matched but did not change.
                "SELECT {} FROM {} WHERE {} FOR UPDATE",
                column_list(kind, &meta.columns),
                meta.table.sql(kind),
                pk_condition(kind, &meta.pk, chunk)
            );
            let rows = self.db().query(&sql).await?;
            out.rows.extend(rows.rows);
        }
        Ok(out)
    }

    fn record(
        &mut self,
        sql_type: SqlType,
        meta: &TableMeta,
        before: Rows,
        after: Rows,
    ) -> Result<(), AtError> {
        let lock_image = if sql_type == SqlType::Delete {
            &before
        } else {
            &after
        };
        self.locks
            .add(&meta.table.display(), lock_image, &meta.pk)?;
        if matches!(self.mode, Mode::Branch { .. }) && !(before.is_empty() && after.is_empty()) {
            self.undo.push(UndoItem {
                sql_type,
                table: UndoTable {
                    schema: meta.table.schema.clone(),
                    name: meta.table.name.clone(),
                },
                pk: meta.pk.clone(),
                before,
                after,
            });
        }
        Ok(())
    }

    async fn exec_update_delete(
        &mut self,
        sql_type: SqlType,
        groups: Vec<DmlGroup>,
        sql: &str,
    ) -> Result<u64, AtError> {
        let kind = self.kind();
        let mut befores = Vec::with_capacity(groups.len());
        for g in &groups {
            let meta = self.meta(&g.target.table).await?;
            for c in &g.set_columns {
                if meta.column(kind, c).is_none() {
                    return Err(AtError::unsupported(format!("unknown column {c}"), sql));
                }
                if meta.is_pk(kind, c) {
                    return Err(AtError::unsupported(
                        format!("UPDATE of primary key column {c}"),
                        sql,
                    ));
                }
            }
            let before = self
                .before_image(&meta, &g.target, g.where_sql().as_deref())
                .await?;
            befores.push((meta, before));
        }
        let r = self.db().execute(sql).await;
        let affected = self.poison(r)?;
        if let ([g], [(_, before)]) = (groups.as_slice(), befores.as_slice())
            && g.wheres.len() == 1
        {
            // One statement: it must have changed the rows its before image
            // locked, no more (PostgreSQL's READ COMMITTED lets rows inserted
            // meanwhile match the WHERE). MySQL counts only changed rows of
            // an UPDATE.
            let n = before.len() as u64;
            let consistent = match (kind, sql_type) {
                (DbKind::MySql, SqlType::Update) => affected <= n,
                _ => affected == n,
            };
            if !consistent {
                let e = AtError::Image(format!(
                    "the statement changed {affected} rows but its before image holds {n} \
                     (rows changed concurrently?)"
                ));
                return self.poison(Err(e));
            }
        }
        for (meta, before) in befores {
            let after = if sql_type == SqlType::Delete {
                Ok(Rows {
                    columns: meta.columns.clone(),
                    rows: Vec::new(),
                })
            } else {
                match pk_values(&before, &meta.pk) {
                    Ok(keys) => self.rows_by_keys(&meta, &keys).await,
                    Err(e) => Err(e),
                }
            };
            let after = self.poison(after)?;
            let r = self.record(sql_type, &meta, before, after);
            self.poison(r)?;
        }
        Ok(affected)
    }

    async fn exec_insert(&mut self, plan: InsertPlan, sql: &str) -> Result<u64, AtError> {
        let kind = self.kind();
        let meta = self.meta(&plan.table).await?;
        let columns: Vec<String> = if plan.columns.is_empty() {
            meta.all_columns.clone()
        } else {
            let mut v = Vec::with_capacity(plan.columns.len());
            for c in &plan.columns {
                match meta.column(kind, c) {
                    Some(name) => v.push(name.to_owned()),
                    None => return Err(AtError::unsupported(format!("unknown column {c}"), sql)),
                }
            }
            v
        };
        if plan.rows.iter().any(|r| r.len() != columns.len()) {
            return Err(AtError::unsupported(
                "a VALUES row does not match the column list",
                sql,
            ));
        }
        if plan.rows.len() > self.ds.inner.options.max_image_rows {
            return Err(AtError::Limit {
                what: "image rows",
                actual: plan.rows.len(),
                limit: self.ds.inner.options.max_image_rows,
            });
        }
        let pk_pos: Vec<Option<usize>> = meta
            .pk
            .iter()
            .map(|p| columns.iter().position(|c| sql::same_column(kind, c, p)))
            .collect();
        let (affected, after) = match kind {
            DbKind::Postgres => {
                // RETURNING gives the keys whatever computed them.
                let returning = sql::with_returning(&plan.statement, &meta.pk)
                    .ok_or_else(|| AtError::unsupported("not an INSERT", sql))?;
                let r = self.db().query(&returning).await;
                let returned = self.poison(r)?;
                let keys = pk_values(&returned, &meta.pk);
                let keys = self.poison(keys)?;
                let after = self.rows_by_keys(&meta, &keys).await;
                (returned.len() as u64, self.poison(after)?)
            }
            DbKind::MySql => self.mysql_insert(&plan, &meta, &pk_pos, sql).await?,
        };
        if after.len() != plan.rows.len() {
            let e = AtError::Image(format!(
                "{} rows inserted into {} but {} found again by primary key",
                plan.rows.len(),
                meta.table.display(),
                after.len()
            ));
            return self.poison(Err(e));
        }
        let before = Rows {
            columns: meta.columns.clone(),
            rows: Vec::new(),
        };
        let r = self.record(SqlType::Insert, &meta, before, after);
        self.poison(r)?;
        Ok(affected)
    }

    /// MySQL: keys from literal values, or from `LAST_INSERT_ID()` for a
    /// single auto-increment key the statement leaves to the database.
    async fn mysql_insert(
        &mut self,
        plan: &InsertPlan,
        meta: &TableMeta,
        pk_pos: &[Option<usize>],
        sql: &str,
    ) -> Result<(u64, Rows), AtError> {
        let kind = DbKind::MySql;
        let literal_keys: Option<Vec<Vec<String>>> = plan
            .rows
            .iter()
            .map(|row| {
                pk_pos
                    .iter()
                    .map(|p| match p.and_then(|i| row.get(i)) {
                        Some(InsertValue::Literal(s)) => Some(s.clone()),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        if let Some(keys) = literal_keys {
            let r = self.db().execute(sql).await;
            let affected = self.poison(r)?;
            let mut out = Rows {
                columns: meta.columns.clone(),
                rows: Vec::new(),
            };
            for chunk in keys.chunks(KEYS_PER_QUERY) {
                // The literals come from the statement itself.
                let cond = chunk
                    .iter()
                    .map(|k| {
                        let parts = meta
                            .pk
                            .iter()
                            .zip(k)
                            .map(|(c, v)| format!("{} = {v}", kind.quote_ident(c)))
                            .collect::<Vec<_>>()
                            .join(" AND ");
                        format!("({parts})")
                    })
                    .collect::<Vec<_>>()
                    .join(" OR ");
                let q = format!(
                    "SELECT {} FROM {} WHERE {cond} FOR UPDATE",
                    column_list(kind, &meta.columns),
                    meta.table.sql(kind)
                );
                let r = self.db().query(&q).await;
                out.rows.extend(self.poison(r)?.rows);
            }
            return Ok((affected, out));
        }
        let generated = match (&meta.pk[..], &meta.auto_increment, pk_pos) {
            ([pk], Some(auto), [pos]) if pk == auto => plan.rows.iter().all(|row| match pos {
                None => true,
                Some(i) => matches!(row.get(*i), Some(InsertValue::Generated)),
            }),
            _ => false,
        };
        if !generated {
            return Err(AtError::unsupported(
                "the primary key values must be literals, or all generated by a single AUTO_INCREMENT key",
                sql,
            ));
        }
        let r = self.db().execute(sql).await;
        let affected = self.poison(r)?;
        let first = match self.db().last_insert_id() {
            Some(id) => id,
            None => {
                return self.poison(Err(AtError::Image(
                    "no LAST_INSERT_ID after an INSERT".into(),
                )));
            }
        };
        let r = self.db().query("SELECT @@auto_increment_increment").await;
        let step = self
            .poison(r)?
            .rows
            .first()
            .and_then(|r| r.first())
            .cloned()
            .flatten()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(1);
        let keys: Vec<Vec<String>> = (0..plan.rows.len() as u64)
            .map(|i| vec![(first + i * step).to_string()])
            .collect();
        let after = self.rows_by_keys(meta, &keys).await;
        Ok((affected, self.poison(after)?))
    }

    /// Bounded wait until the rows a `SELECT ... FOR UPDATE` reads are not
    /// held by another global transaction (they are locked locally first).
    async fn check_select_locks(
        &mut self,
        from: &TableRef,
        where_sql: Option<&str>,
    ) -> Result<(), AtError> {
        let kind = self.kind();
        let meta = self.meta(&from.table).await?;
        let max = self.ds.inner.options.max_image_rows;
        let sql = format!(
            "SELECT {} FROM {}{} LIMIT {} FOR UPDATE",
            column_list(kind, &meta.pk),
            from.table_sql(kind),
            where_sql.map(|w| format!(" WHERE {w}")).unwrap_or_default(),
            max.saturating_add(1)
        );
        let xid = self.xid().map(str::to_owned);
        let ds = self.ds.clone();
        let opts = &ds.inner.options;
        let mut attempt = 0u32;
        loop {
            let rows = self.db().query(&sql).await?;
            if rows.len() > max {
                return Err(AtError::Limit {
                    what: "image rows",
                    actual: rows.len(),
                    limit: max,
                });
            }
            let mut keys = LockKeys::default();
            keys.add(&meta.table.display(), &rows, &meta.pk)?;
            if keys.is_empty() {
                return Ok(());
            }
            let lock_key = keys.render();
            let free = ds
                .inner
                .tc
                .global_lock_query(
                    BranchType::At,
                    xid.as_deref(),
                    &ds.inner.resource_id,
                    &lock_key,
                )
                .await?;
            if free {
                return Ok(());
            }
            Counters::bump(&ds.inner.counters.lock_conflicts);
            let (retry_times, retry_interval_ms) = opts.lock_retry();
            if attempt >= retry_times {
                return Err(AtError::LockConflict(format!(
                    "{lock_key} held by another global transaction (SELECT FOR UPDATE, {} checks)",
                    attempt + 1
                )));
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(retry_interval_ms)).await;
        }
    }

    /// Commit. In a branch: register at the TC with the lock keys (a
    /// conflict rolls back and fails with [`AtError::LockConflict`]), write
    /// the undo log in this local transaction, commit. In global lock mode:
    /// check the locks first.
    pub async fn commit(mut self) -> Result<(), AtError> {
        if self.finished {
            return Err(AtError::Finished);
        }
        if let Some(p) = self.poisoned.clone() {
            self.rollback_quietly().await;
            return Err(AtError::Poisoned(p));
        }
        let ds = self.ds.clone();
        let inner = &ds.inner;
        match self.mode.clone() {
            Mode::Plain => self.finish("COMMIT").await,
            Mode::GlobalLock => {
                if !self.locks.is_empty() {
                    let lock_key = self.locks.render();
                    match inner
                        .tc
                        .global_lock_query(BranchType::At, None, &inner.resource_id, &lock_key)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => {
                            Counters::bump(&inner.counters.lock_conflicts);
                            self.rollback_quietly().await;
                            return Err(AtError::LockConflict(format!(
                                "{lock_key} held by a global transaction (global lock mode)"
                            )));
                        }
                        Err(e) => {
                            self.rollback_quietly().await;
                            return Err(tc_error(e));
                        }
                    }
                }
                self.finish("COMMIT").await
            }
            Mode::Branch { xid } => {
                if self.undo.is_empty() {
                    return self.finish("COMMIT").await;
                }
                // Encode first: an oversized undo log fails before the TC
                // takes any lock.
                let log = BranchUndoLog {
                    version: 1,
                    xid: xid.clone(),
                    items: std::mem::take(&mut self.undo),
                };
                let bytes = match undo::encode(&log, inner.options.max_undo_log_bytes) {
                    Ok(b) => b,
                    Err(e) => {
                        self.rollback_quietly().await;
                        return Err(e);
                    }
                };
                let lock_key = self.locks.render();
                let branch_id = match inner
                    .tc
                    .branch_register(BranchType::At, &xid, &inner.resource_id, &lock_key, None)
                    .await
                {
                    Ok(id) => id,
                    Err(e) => {
                        if matches!(e, TxnError::LockConflict(_)) {
                            Counters::bump(&inner.counters.lock_conflicts);
                        }
                        self.rollback_quietly().await;
                        return Err(tc_error(e));
                    }
                };
                Counters::bump(&inner.counters.branches_registered);
                tracing::debug!(%xid, branch_id, %lock_key, "AT branch registered");
                let kind = self.kind();
                let insert = undo::insert_sql(kind, &xid, branch_id, &bytes, undo::STATUS_NORMAL);
                // The undo log goes in the same local transaction as the data,
                // sent with the COMMIT in one round trip: if the INSERT fails
                // (the defensive row's unique key), neither database runs the
                // COMMIT after it and the transaction is rolled back below.
                let result = match self.db().execute(&format!("{insert}; COMMIT")).await {
                    Ok(_) => {
                        self.finished = true;
                        Ok(())
                    }
                    Err(e) if e.is_unique_violation() => Err(AtError::BranchAlreadyRolledBack {
                        xid: xid.clone(),
                        branch_id,
                    }),
                    Err(e) => Err(e),
                };
                if let Err(e) = &result {
                    tracing::warn!(%xid, branch_id, error = %e, "AT phase one failed after registration");
                    if !self.finished {
                        self.rollback_quietly().await;
                    }
                    if let Err(re) = inner
                        .tc
                        .branch_report(
                            BranchType::At,
                            &xid,
                            branch_id,
                            BranchStatus::PhaseOneFailed,
                            None,
                        )
                        .await
                    {
                        tracing::warn!(%xid, branch_id, error = %re, "branch report PhaseOne_Failed");
                    }
                }
                result
            }
        }
    }

    /// Roll the local transaction back (nothing was registered yet).
    pub async fn rollback(mut self) -> Result<(), AtError> {
        if self.finished {
            return Ok(());
        }
        self.finish("ROLLBACK").await
    }

    async fn finish(&mut self, sql: &str) -> Result<(), AtError> {
        self.finished = true;
        let r = self.db().execute(sql).await;
        if r.is_err() {
            self.conn.discard();
        }
        r.map(|_| ())
    }

    async fn rollback_quietly(&mut self) {
        if let Err(e) = self.finish("ROLLBACK").await {
            tracing::warn!(error = %e, "local rollback failed; connection discarded");
        }
    }
}

fn tc_error(e: TxnError) -> AtError {
    match e {
        TxnError::LockConflict(m) => AtError::LockConflict(m),
        other => AtError::Tc(other),
    }
}

impl Drop for AtTransaction {
    fn drop(&mut self) {
        if !self.finished {
            // Closing the connection makes the server roll back.
            self.conn.discard();
        }
    }
}
