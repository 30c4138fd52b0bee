//! A small bounded connection pool: a semaphore for the bound, a stack of
//! idle connections. A connection dropped in the middle of a transaction is
//! discarded (the server rolls its transaction back when it closes).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::backend::{Conn, DbKind};
use crate::error::AtError;

pub(crate) struct Pool {
    kind: DbKind,
    url: String,
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<Conn>>,
    acquire_timeout_ms: u64,
}

impl Pool {
    pub fn new(
        kind: DbKind,
        url: String,
        max_connections: usize,
        acquire_timeout_ms: u64,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            kind,
            url,
            permits: Arc::new(Semaphore::new(max_connections)),
            idle: Mutex::new(Vec::new()),
            acquire_timeout_ms,
        })
    }

    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// A connection, waiting at most the acquire timeout for a free one.
    pub async fn get(self: &Arc<Self>) -> Result<PooledConn, AtError> {
        let permit = tokio::time::timeout(
            Duration::from_millis(self.acquire_timeout_ms),
            self.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| AtError::PoolTimeout(self.acquire_timeout_ms))?
        .map_err(|_| AtError::Config("connection pool closed".into()))?;
        let reused = loop {
            let c = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match c {
                Some(c) if c.is_healthy() => break Some(c),
                Some(_) => continue,
                None => break None,
            }
        };
        let conn = match reused {
            Some(c) => c,
            None => Conn::connect(self.kind, &self.url).await?,
        };
        Ok(PooledConn {
            inner: Some((conn, permit)),
            pool: self.clone(),
            reuse: true,
        })
    }
}

/// A connection on loan from the pool.
pub(crate) struct PooledConn {
    inner: Option<(Conn, OwnedSemaphorePermit)>,
    pool: Arc<Pool>,
    reuse: bool,
}

impl PooledConn {
    /// Do not give the connection back to the pool (closing it).
    pub fn discard(&mut self) {
        self.reuse = false;
    }

    pub fn conn(&mut self) -> &mut Conn {
        match &mut self.inner {
            Some((c, _)) => c,
            // `inner` is only taken in `drop`.
            None => unreachable!("pooled connection used after drop"),
        }
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        if let Some((conn, permit)) = self.inner.take() {
            if self.reuse && conn.is_healthy() {
                self.pool
                    .idle
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(conn);
            }
            drop(permit);
        }
    }
}
