//! Client connections known to this TC node, and the RMs registered on
//! them: phase-two requests (`BranchCommit` / `BranchRollback`) go to an RM
//! over a connection it opened (`RegisterRM`), as in Seata.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::machine::lock_shared;
use crate::protocol::{Frame, FrameBody, Message};

/// What a client said about itself when it registered.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClientInfo {
    pub application_id: String,
    pub transaction_service_group: String,
    /// Seata's client id: `applicationId:ip:port`.
    pub client_id: String,
    pub version: String,
}

/// One client connection: its writer queue and the requests this node sent
/// on it that wait for a response.
pub(crate) struct ClientConn {
    pub id: u64,
    pub peer: String,
    pub info: Mutex<ClientInfo>,
    pub out: mpsc::Sender<Frame>,
    pending: Mutex<HashMap<u32, oneshot::Sender<Message>>>,
    next_request_id: AtomicU32,
}

impl ClientConn {
    pub fn new(id: u64, peer: String, out: mpsc::Sender<Frame>) -> ClientConn {
        ClientConn {
            id,
            peer,
            info: Mutex::new(ClientInfo::default()),
            out,
            pending: Mutex::new(HashMap::new()),
            // Server-initiated ids count from the top half so they never
            // look like the small ids a client uses (harmless either way:
            // they travel in the other direction).
            next_request_id: AtomicU32::new(1 << 30),
        }
    }

    pub fn info(&self) -> ClientInfo {
        lock_shared(&self.info).clone()
    }

    /// A response arrived: hand it to whoever waits for it.
    pub fn complete(&self, request_id: u32, msg: Message) -> bool {
        match lock_shared(&self.pending).remove(&request_id) {
            Some(tx) => tx.send(msg).is_ok(),
            None => false,
        }
    }

    /// Send `msg` as a request and wait for the response.
    pub async fn call(&self, msg: Message, timeout_ms: u64) -> Result<Message, String> {
        let id = self.next_request_id.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
        let (tx, rx) = oneshot::channel();
        lock_shared(&self.pending).insert(id, tx);
        let frame = Frame::new(id, FrameBody::Request(msg));
        let sent = self.out.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => "the connection's write queue is full".to_owned(),
            mpsc::error::TrySendError::Closed(_) => "the connection is closed".to_owned(),
        });
        if let Err(e) = sent {
            lock_shared(&self.pending).remove(&id);
            return Err(e);
        }
        let r = tokio::time::timeout(Duration::from_millis(timeout_ms), rx).await;
        lock_shared(&self.pending).remove(&id);
        match r {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(_)) => Err("the connection closed before answering".into()),
            Err(_) => Err(format!("no answer within {timeout_ms} ms")),
        }
    }

    /// Fail every waiting call (the connection closed).
    pub fn close(&self) {
        lock_shared(&self.pending).clear();
    }
}

/// Connections by id, and which connections registered which resource.
#[derive(Default)]
pub(crate) struct Registry {
    conns: Mutex<HashMap<u64, Arc<ClientConn>>>,
    resources: Mutex<HashMap<String, Vec<u64>>>,
}

impl Registry {
    pub fn len(&self) -> usize {
        lock_shared(&self.conns).len()
    }

    pub fn add(&self, conn: Arc<ClientConn>) {
        lock_shared(&self.conns).insert(conn.id, conn);
    }

    pub fn remove(&self, id: u64) {
        if let Some(c) = lock_shared(&self.conns).remove(&id) {
            c.close();
        }
        let mut res = lock_shared(&self.resources);
        res.retain(|_, ids| {
            ids.retain(|i| *i != id);
            !ids.is_empty()
        });
    }

    /// Record that connection `id` serves the comma-separated resources.
    pub fn register_resources(&self, id: u64, resource_ids: &str) {
        let mut res = lock_shared(&self.resources);
        for r in resource_ids
            .split(',')
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            let ids = res.entry(r.to_owned()).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }

    /// A connection for `resource_id`: the one of `client_id` (the client
    /// that registered the branch, `application:ip:port`) if it is
    /// connected here, else one of the same application (the branch may
    /// have been registered through another TC node, or by an instance that
    /// restarted), else any. For AT any RM of the resource can do phase two:
    /// the undo log is in the database.
    pub fn pick(&self, resource_id: &str, client_id: &str) -> Option<Arc<ClientConn>> {
        let ids = lock_shared(&self.resources).get(resource_id).cloned()?;
        let conns = lock_shared(&self.conns);
        let candidates: Vec<&Arc<ClientConn>> = ids.iter().filter_map(|i| conns.get(i)).collect();
        let application = client_id.split(':').next().unwrap_or_default();
        candidates
            .iter()
            .find(|c| c.info().client_id == client_id)
            .or_else(|| {
                candidates
                    .iter()
                    .find(|c| c.info().application_id == application)
            })
            .or_else(|| candidates.first())
            .map(|c| Arc::clone(c))
    }
}
