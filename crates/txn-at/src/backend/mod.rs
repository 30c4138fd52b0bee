//! The two database backends behind one connection type: PostgreSQL over
//! `tokio-postgres` (simple query protocol) and MariaDB/MySQL over
//! `mysql_async` (text protocol). Every value travels as text
//! (`Option<String>`), which is what the images and the undo log keep.

mod mysql;
mod pg;

use serde::{Deserialize, Serialize};

use crate::error::AtError;

/// Which database (and so which SQL dialect) a data source talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbKind {
    Postgres,
    MySql,
}

impl DbKind {
    /// Quote an identifier (`"x"` / `` `x` ``), doubling the quote inside.
    pub(crate) fn quote_ident(self, s: &str) -> String {
        match self {
            DbKind::Postgres => format!("\"{}\"", s.replace('"', "\"\"")),
            DbKind::MySql => format!("`{}`", s.replace('`', "``")),
        }
    }

    /// A literal for a text value, or `NULL`. PostgreSQL: a standard string
    /// (the connection forces `standard_conforming_strings`), an untyped
    /// literal the server coerces to the column type. MySQL: a hex literal
    /// with a character set introducer (`_utf8mb4 X'..'`), immune to
    /// `sql_mode` and backslash escapes, converted like a string.
    pub(crate) fn literal(self, v: Option<&str>) -> String {
        match v {
            None => "NULL".to_owned(),
            Some(s) => match self {
                DbKind::Postgres => format!("'{}'", s.replace('\'', "''")),
                DbKind::MySql => format!("_utf8mb4 X'{}'", hex(s.as_bytes())),
            },
        }
    }

    /// A literal for bytes going to a binary column (`undo_log.rollback_info`).
    pub(crate) fn bytes_literal(self, b: &[u8]) -> String {
        match self {
            DbKind::Postgres => format!("'\\x{}'::bytea", hex(b)),
            DbKind::MySql => format!("X'{}'", hex(b)),
        }
    }

    pub(crate) fn begin_sql(self) -> &'static str {
        match self {
            DbKind::Postgres => "BEGIN",
            DbKind::MySql => "START TRANSACTION",
        }
    }

    pub(crate) fn now_sql(self) -> &'static str {
        match self {
            DbKind::Postgres => "LOCALTIMESTAMP",
            DbKind::MySql => "NOW(6)",
        }
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(DIGITS[usize::from(x >> 4)] as char);
        s.push(DIGITS[usize::from(x & 0xf)] as char);
    }
    s
}

/// Rows as text: column names and, per row, one optional string per column
/// (`None` is SQL `NULL`). Also the layout of the images in the undo log.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Index of a column by name (exact match first, then ASCII
    /// case-insensitive).
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name).or_else(|| {
            self.columns
                .iter()
                .position(|c| c.eq_ignore_ascii_case(name))
        })
    }

    /// The value of `column` in row `row` (`None` if NULL or absent).
    pub fn get(&self, row: usize, column: &str) -> Option<&str> {
        let i = self.column_index(column)?;
        self.rows.get(row)?.get(i)?.as_deref()
    }
}

/// One open database connection.
pub(crate) enum Conn {
    Pg(pg::PgConn),
    My(mysql::MyConn),
}

impl Conn {
    pub(crate) async fn connect(kind: DbKind, url: &str) -> Result<Conn, AtError> {
        Ok(match kind {
            DbKind::Postgres => Conn::Pg(pg::PgConn::connect(url).await?),
            DbKind::MySql => Conn::My(mysql::MyConn::connect(url).await?),
        })
    }

    pub(crate) fn kind(&self) -> DbKind {
        match self {
            Conn::Pg(_) => DbKind::Postgres,
            Conn::My(_) => DbKind::MySql,
        }
    }

    /// False when the connection is known to be unusable.
    pub(crate) fn is_healthy(&self) -> bool {
        match self {
            Conn::Pg(c) => c.is_healthy(),
            Conn::My(_) => true,
        }
    }

    /// Run SQL text (one or several `;`-separated statements); answers the
    /// total of affected rows.
    pub(crate) async fn execute(&mut self, sql: &str) -> Result<u64, AtError> {
        tracing::trace!(sql, "execute");
        match self {
            Conn::Pg(c) => c.execute(sql).await,
            Conn::My(c) => c.execute(sql).await,
        }
    }

    /// Run one statement; answers its rows as text.
    pub(crate) async fn query(&mut self, sql: &str) -> Result<Rows, AtError> {
        tracing::trace!(sql, "query");
        match self {
            Conn::Pg(c) => c.query(sql).await,
            Conn::My(c) => c.query(sql).await,
        }
    }

    /// MySQL: the first auto-increment id generated by the last statement.
    pub(crate) fn last_insert_id(&self) -> Option<u64> {
        match self {
            Conn::Pg(_) => None,
            Conn::My(c) => c.last_insert_id(),
        }
    }
}
