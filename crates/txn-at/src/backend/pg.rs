//! PostgreSQL over `tokio-postgres`, simple query protocol (text values).

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use super::Rows;
use crate::error::AtError;

pub(crate) struct PgConn {
    client: Client,
}

impl PgConn {
    pub(crate) async fn connect(url: &str) -> Result<PgConn, AtError> {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "postgres connection ended");
            }
        });
        // Literals are written as standard strings: make sure backslashes are
        // not escapes whatever the server's default.
        client
            .simple_query("SET standard_conforming_strings = on")
            .await?;
        Ok(PgConn { client })
    }

    pub(crate) fn is_healthy(&self) -> bool {
        !self.client.is_closed()
    }

    pub(crate) async fn execute(&mut self, sql: &str) -> Result<u64, AtError> {
        let msgs = self.client.simple_query(sql).await?;
        Ok(msgs
            .iter()
            .map(|m| match m {
                SimpleQueryMessage::CommandComplete(n) => *n,
                _ => 0,
            })
            .sum())
    }

    pub(crate) async fn query(&mut self, sql: &str) -> Result<Rows, AtError> {
        let msgs = self.client.simple_query(sql).await?;
        let mut out = Rows::default();
        let mut described = false;
        for m in msgs {
            match m {
                SimpleQueryMessage::RowDescription(cols) if !described => {
                    out.columns = cols.iter().map(|c| c.name().to_owned()).collect();
                    described = true;
                }
                SimpleQueryMessage::Row(row) => {
                    if !described {
                        out.columns = row.columns().iter().map(|c| c.name().to_owned()).collect();
                        described = true;
                    }
                    let mut values = Vec::with_capacity(row.len());
                    for i in 0..row.len() {
                        values.push(row.try_get(i)?.map(str::to_owned));
                    }
                    out.rows.push(values);
                }
                // Only the first statement's rows are answered.
                SimpleQueryMessage::CommandComplete(_) if described => break,
                _ => {}
            }
        }
        Ok(out)
    }
}
