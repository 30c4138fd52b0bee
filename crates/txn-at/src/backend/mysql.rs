//! MariaDB/MySQL over `mysql_async`, text protocol (multi-statement
//! strings allowed: the client sets `CLIENT_MULTI_STATEMENTS`).

use mysql_async::prelude::Queryable;
use mysql_async::{Opts, Row, Value};

use super::Rows;
use crate::error::AtError;

pub(crate) struct MyConn {
    conn: mysql_async::Conn,
    last_insert_id: Option<u64>,
}

impl MyConn {
    pub(crate) async fn connect(url: &str) -> Result<MyConn, AtError> {
        let opts = Opts::from_url(url).map_err(|e| AtError::Config(format!("MySQL URL: {e}")))?;
        let conn = mysql_async::Conn::new(opts).await?;
        Ok(MyConn {
            conn,
            last_insert_id: None,
        })
    }

    pub(crate) fn last_insert_id(&self) -> Option<u64> {
        self.last_insert_id
    }

    pub(crate) async fn execute(&mut self, sql: &str) -> Result<u64, AtError> {
        let mut result = self.conn.query_iter(sql).await?;
        // The first statement's OK packet is read; each `collect` moves to
        // the next result (reading its OK packet) while more follow.
        let mut affected = result.affected_rows();
        let mut last_id = result.last_insert_id();
        while !result.is_empty() {
            let _rows: Vec<Row> = result.collect().await?;
            affected += result.affected_rows();
            if let Some(id) = result.last_insert_id() {
                last_id = Some(id);
            }
        }
        drop(result);
        self.last_insert_id = last_id.filter(|id| *id != 0);
        Ok(affected)
    }

    pub(crate) async fn query(&mut self, sql: &str) -> Result<Rows, AtError> {
        let mut result = self.conn.query_iter(sql).await?;
        let columns: Vec<String> = result
            .columns()
            .map(|cols| cols.iter().map(|c| c.name_str().into_owned()).collect())
            .unwrap_or_default();
        let raw: Vec<Row> = result.collect().await?;
        result.drop_result().await?;
        let mut rows = Vec::with_capacity(raw.len());
        for row in raw {
            let mut values = Vec::with_capacity(columns.len());
            for v in row.unwrap() {
                values.push(text_value(v)?);
            }
            rows.push(values);
        }
        Ok(Rows { columns, rows })
    }
}

/// A text-protocol value as an optional string.
fn text_value(v: Value) -> Result<Option<String>, AtError> {
    Ok(match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8(b).map_err(|_| {
            AtError::Image("a value is not valid UTF-8 (binary columns are not supported)".into())
        })?),
        Value::Int(i) => Some(i.to_string()),
        Value::UInt(u) => Some(u.to_string()),
        Value::Float(f) => Some(f.to_string()),
        Value::Double(d) => Some(d.to_string()),
        other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
    })
}
