//! Table metadata (columns, primary key) from `information_schema`, cached
//! per data source.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::backend::{Conn, DbKind};
use crate::error::AtError;
use crate::sql::TableName;

#[derive(Debug)]
pub(crate) struct TableMeta {
    pub table: TableName,
    /// All columns, in ordinal order, exactly as the database names them.
    pub all_columns: Vec<String>,
    /// The columns images hold: all but generated (computed) columns, which
    /// can be neither written back nor need to be.
    pub columns: Vec<String>,
    /// Primary key columns, in key order (never empty).
    pub pk: Vec<String>,
    /// MySQL: the auto-increment column, if any.
    pub auto_increment: Option<String>,
}

impl TableMeta {
    /// The table's own spelling of a (normalized) column name.
    pub fn column(&self, kind: DbKind, name: &str) -> Option<&str> {
        self.all_columns
            .iter()
            .find(|c| crate::sql::same_column(kind, c, name))
            .map(String::as_str)
    }

    pub fn is_pk(&self, kind: DbKind, name: &str) -> bool {
        self.pk
            .iter()
            .any(|c| crate::sql::same_column(kind, c, name))
    }
}

/// The cache: one entry per table name as written (schema-qualified or not).
#[derive(Default)]
pub(crate) struct MetaCache {
    tables: Mutex<HashMap<TableName, Arc<TableMeta>>>,
}

impl MetaCache {
    pub async fn get(&self, conn: &mut Conn, table: &TableName) -> Result<Arc<TableMeta>, AtError> {
        if let Some(m) = self.lock().get(table) {
            return Ok(m.clone());
        }
        let meta = Arc::new(load(conn, table).await?);
        self.lock().insert(table.clone(), meta.clone());
        Ok(meta)
    }

    /// Forget every table (after DDL).
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TableName, Arc<TableMeta>>> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }
}

async fn load(conn: &mut Conn, table: &TableName) -> Result<TableMeta, AtError> {
    let kind = conn.kind();
    let schema = match &table.schema {
        Some(s) => kind.literal(Some(s)),
        None => match kind {
            DbKind::Postgres => "current_schema()".to_owned(),
            DbKind::MySql => "DATABASE()".to_owned(),
        },
    };
    let name = kind.literal(Some(&table.name));
    let (columns_sql, pk_sql) = match kind {
        DbKind::Postgres => (
            format!(
                "SELECT column_name, is_generated FROM information_schema.columns \
                 WHERE table_schema = {schema} AND table_name = {name} ORDER BY ordinal_position"
            ),
            format!(
                "SELECT k.column_name FROM information_schema.table_constraints t \
                 JOIN information_schema.key_column_usage k \
                 ON k.constraint_schema = t.constraint_schema AND k.constraint_name = t.constraint_name \
                 AND k.table_schema = t.table_schema AND k.table_name = t.table_name \
                 WHERE t.constraint_type = 'PRIMARY KEY' AND t.table_schema = {schema} \
                 AND t.table_name = {name} ORDER BY k.ordinal_position"
            ),
        ),
        DbKind::MySql => (
            format!(
                "SELECT column_name, extra FROM information_schema.columns \
                 WHERE table_schema = {schema} AND table_name = {name} ORDER BY ordinal_position"
            ),
            format!(
                "SELECT column_name FROM information_schema.key_column_usage \
                 WHERE table_schema = {schema} AND table_name = {name} \
                 AND constraint_name = 'PRIMARY' ORDER BY ordinal_position"
            ),
        ),
    };
    let cols = conn.query(&columns_sql).await?;
    if cols.is_empty() {
        return Err(AtError::NoSuchTable(table.display()));
    }
    let mut all_columns = Vec::with_capacity(cols.len());
    let mut columns = Vec::with_capacity(cols.len());
    let mut auto_increment = None;
    for r in &cols.rows {
        let Some(Some(c)) = r.first() else {
            return Err(AtError::Image(format!(
                "information_schema answered a NULL column name for {}",
                table.display()
            )));
        };
        // PostgreSQL: `is_generated` ('ALWAYS' / 'NEVER'); MySQL: `extra`.
        let extra = r
            .get(1)
            .and_then(|e| e.as_deref())
            .unwrap_or_default()
            .to_ascii_lowercase();
        if extra.contains("auto_increment") {
            auto_increment = Some(c.clone());
        }
        let generated = extra == "always"
            || extra.contains("virtual")
            || extra.contains("stored")
            || extra.contains("persistent");
        all_columns.push(c.clone());
        if !generated {
            columns.push(c.clone());
        }
    }
    let pk: Vec<String> = conn
        .query(&pk_sql)
        .await?
        .rows
        .into_iter()
        .filter_map(|r| r.into_iter().next().flatten())
        .collect();
    if pk.is_empty() {
        return Err(AtError::NoPrimaryKey(table.display()));
    }
    tracing::debug!(table = %table.display(), ?columns, ?pk, "table metadata loaded");
    Ok(TableMeta {
        table: table.clone(),
        all_columns,
        columns,
        pk,
        auto_increment,
    })
}
