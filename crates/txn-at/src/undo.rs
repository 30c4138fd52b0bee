//! The undo log: its table, the `rollback_info` layout (JSON, see
//! docs/at-mode.md), and undoing one branch's items with the dirty check.

use serde::{Deserialize, Serialize};

use crate::backend::{Conn, DbKind, Rows};
use crate::error::AtError;
use crate::image::{column_list, describe, pk_condition, pk_values, same_rows};
use crate::sql::TableName;

/// The undo log table's name (Seata's).
pub(crate) const UNDO_TABLE: &str = "undo_log";
/// `undo_log.context`: how `rollback_info` is encoded.
pub(crate) const CONTEXT: &str = "serializer=rhea-json-v1";
/// `log_status` of a normal undo log.
pub(crate) const STATUS_NORMAL: i32 = 0;
/// `log_status` of the defensive row ("global finished").
pub(crate) const STATUS_GLOBAL_FINISHED: i32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub(crate) enum SqlType {
    Insert,
    Update,
    Delete,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct UndoTable {
    pub schema: Option<String>,
    pub name: String,
}

/// One undo item: one table's images for one statement (or one table group
/// of a batch).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct UndoItem {
    pub sql_type: SqlType,
    pub table: UndoTable,
    pub pk: Vec<String>,
    pub before: Rows,
    pub after: Rows,
}

/// `rollback_info`: everything one branch must undo, in execution order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct BranchUndoLog {
    pub version: u32,
    pub xid: String,
    pub items: Vec<UndoItem>,
}

pub(crate) fn create_table_sql(kind: DbKind) -> String {
    match kind {
        DbKind::Postgres => format!(
            "CREATE TABLE IF NOT EXISTS {UNDO_TABLE} (\
             id BIGSERIAL PRIMARY KEY, \
             branch_id BIGINT NOT NULL, \
             xid VARCHAR(128) NOT NULL, \
             context VARCHAR(128) NOT NULL, \
             rollback_info BYTEA NOT NULL, \
             log_status INT NOT NULL, \
             log_created TIMESTAMP(6) NOT NULL, \
             log_modified TIMESTAMP(6) NOT NULL, \
             CONSTRAINT ux_undo_log UNIQUE (xid, branch_id))"
        ),
        DbKind::MySql => format!(
            "CREATE TABLE IF NOT EXISTS {UNDO_TABLE} (\
             id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
             branch_id BIGINT NOT NULL, \
             xid VARCHAR(128) NOT NULL, \
             context VARCHAR(128) NOT NULL, \
             rollback_info LONGBLOB NOT NULL, \
             log_status INT NOT NULL, \
             log_created DATETIME(6) NOT NULL, \
             log_modified DATETIME(6) NOT NULL, \
             UNIQUE KEY ux_undo_log (xid, branch_id)) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4"
        ),
    }
}

pub(crate) fn insert_sql(
    kind: DbKind,
    xid: &str,
    branch_id: i64,
    info: &[u8],
    status: i32,
) -> String {
    let now = kind.now_sql();
    format!(
        "INSERT INTO {UNDO_TABLE} (branch_id, xid, context, rollback_info, log_status, log_created, log_modified) \
         VALUES ({branch_id}, {}, {}, {}, {status}, {now}, {now})",
        kind.literal(Some(xid)),
        kind.literal(Some(CONTEXT)),
        kind.bytes_literal(info),
    )
}

pub(crate) fn select_for_update_sql(kind: DbKind, xid: &str, branch_id: i64) -> String {
    let info = match kind {
        DbKind::Postgres => "convert_from(rollback_info, 'UTF8')",
        DbKind::MySql => "rollback_info",
    };
    format!(
        "SELECT {info}, log_status FROM {UNDO_TABLE} WHERE xid = {} AND branch_id = {branch_id} FOR UPDATE",
        kind.literal(Some(xid))
    )
}

pub(crate) fn delete_sql(kind: DbKind, branches: &[(String, i64)]) -> String {
    let cond = branches
        .iter()
        .map(|(xid, b)| format!("(xid = {} AND branch_id = {b})", kind.literal(Some(xid))))
        .collect::<Vec<_>>()
        .join(" OR ");
    format!("DELETE FROM {UNDO_TABLE} WHERE {cond}")
}

/// Delete at most `limit` defensive rows (status "global finished") older
/// than `days` days.
pub(crate) fn delete_old_defensive_rows_sql(kind: DbKind, days: u32, limit: usize) -> String {
    match kind {
        DbKind::Postgres => format!(
            "DELETE FROM {UNDO_TABLE} WHERE id IN (SELECT id FROM {UNDO_TABLE} \
             WHERE log_status = {STATUS_GLOBAL_FINISHED} \
             AND log_created < LOCALTIMESTAMP - INTERVAL '{days} days' LIMIT {limit})"
        ),
        DbKind::MySql => format!(
            "DELETE FROM {UNDO_TABLE} WHERE log_status = {STATUS_GLOBAL_FINISHED} \
             AND log_created < NOW(6) - INTERVAL {days} DAY LIMIT {limit}"
        ),
    }
}

/// Encode, refusing more than `max_bytes`.
pub(crate) fn encode(log: &BranchUndoLog, max_bytes: usize) -> Result<Vec<u8>, AtError> {
    let bytes =
        serde_json::to_vec(log).map_err(|e| AtError::Image(format!("undo log encoding: {e}")))?;
    if bytes.len() > max_bytes {
        return Err(AtError::Limit {
            what: "undo log bytes",
            actual: bytes.len(),
            limit: max_bytes,
        });
    }
    Ok(bytes)
}

pub(crate) fn decode(text: &str) -> Result<BranchUndoLog, AtError> {
    serde_json::from_str(text).map_err(|e| AtError::Image(format!("undo log does not decode: {e}")))
}

/// What undoing one item found.
pub(crate) enum Undone {
    Restored,
    NothingToDo,
}

/// Undo one item inside the rollback's local transaction. Current rows are
/// locked by primary key and compared: equal to the after image → restore
/// the before image; equal to the before image → nothing to do; else dirty.
pub(crate) async fn undo_item(
    conn: &mut Conn,
    xid: &str,
    branch_id: i64,
    item: &UndoItem,
) -> Result<Undone, AtError> {
    let kind = conn.kind();
    let table = TableName {
        schema: item.table.schema.clone(),
        name: item.table.name.clone(),
    };
    let tsql = table.sql(kind);
    if item.sql_type == SqlType::Update && same_rows(&item.before, &item.after) {
        return Ok(Undone::NothingToDo);
    }
    // The rows this item touched, by key.
    let image = match item.sql_type {
        SqlType::Delete => &item.before,
        SqlType::Insert | SqlType::Update => &item.after,
    };
    let columns = if image.columns.is_empty() {
        &item.before.columns
    } else {
        &image.columns
    };
    let keys = pk_values(image, &item.pk)?;
    if keys.is_empty() {
        return Ok(Undone::NothingToDo);
    }
    let current = conn
        .query(&format!(
            "SELECT {} FROM {tsql} WHERE {} FOR UPDATE",
            column_list(kind, columns),
            pk_condition(kind, &item.pk, &keys)
        ))
        .await?;
    let empty = Rows {
        columns: columns.clone(),
        rows: Vec::new(),
    };
    let (expected_after, expected_before) = match item.sql_type {
        SqlType::Insert => (&item.after, &empty),
        SqlType::Update => (&item.after, &item.before),
        SqlType::Delete => (&empty, &item.before),
    };
    if !same_rows(&current, expected_after) {
        if same_rows(&current, expected_before) {
            return Ok(Undone::NothingToDo);
        }
        return Err(AtError::DirtyRollback {
            xid: xid.to_owned(),
            branch_id,
            table: table.display(),
            detail: format!(
                "current rows {} differ from the after image {}",
                describe(&current),
                describe(expected_after)
            ),
        });
    }
    match item.sql_type {
        SqlType::Insert => {
            conn.execute(&format!(
                "DELETE FROM {tsql} WHERE {}",
                pk_condition(kind, &item.pk, &keys)
            ))
            .await?;
        }
        SqlType::Update => {
            let before_keys = pk_values(&item.before, &item.pk)?;
            for (row, key) in item.before.rows.iter().zip(before_keys) {
                let sets = item
                    .before
                    .columns
                    .iter()
                    .zip(row)
                    .filter(|(c, _)| !item.pk.contains(c))
                    .map(|(c, v)| {
                        format!("{} = {}", kind.quote_ident(c), kind.literal(v.as_deref()))
                    })
                    .collect::<Vec<_>>();
                if sets.is_empty() {
                    continue;
                }
                conn.execute(&format!(
                    "UPDATE {tsql} SET {} WHERE {}",
                    sets.join(", "),
                    pk_condition(kind, &item.pk, &[key])
                ))
                .await?;
            }
        }
        SqlType::Delete => {
            for chunk in item.before.rows.chunks(500) {
                let values = chunk
                    .iter()
                    .map(|r| {
                        let vs = r
                            .iter()
                            .map(|v| kind.literal(v.as_deref()))
                            .collect::<Vec<_>>()
                            .join(", ");
                        format!("({vs})")
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                // PostgreSQL identity columns GENERATED ALWAYS take the
                // old key back only with OVERRIDING SYSTEM VALUE.
                let overriding = match kind {
                    DbKind::Postgres => " OVERRIDING SYSTEM VALUE",
                    DbKind::MySql => "",
                };
                conn.execute(&format!(
                    "INSERT INTO {tsql} ({}){overriding} VALUES {values}",
                    column_list(kind, &item.before.columns)
                ))
                .await?;
            }
        }
    }
    Ok(Undone::Restored)
}
