//! The transaction coordinator served by a Rhea node (feature `server`).
//!
//! * [`partition_machines`]: the session and lock partitions as raft state
//!   machines, to host on the node's multi-raft driver
//!   (`KvNode::start_with_groups`); group ids [`session_group`] and
//!   [`lock_group`].
//! * [`TcServer::start`]: the Seata-protocol listener (`--tc-addr`) and the
//!   phase-two worker, over the node's router, which sends each command to
//!   its partition's leader (locally or forwarded with `RHEA.EXEC`).
//!
//! Any node accepts any request. An RM registers on every TC node (the
//! Rust client does), so whichever node leads a session's partition can
//! call it in phase two.

mod admin;
mod config;
mod machine;
mod registry;
mod server;
mod service;
mod worker;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rhea_kv::Router;
use rhea_runtime::StateMachine;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{
    LOCK_GROUP_BASE, MAX_PARTITIONS, SESSION_GROUP_BASE, TcConfig, lock_group, session_group,
};
pub use machine::{LockMachine, SessionMachine};
pub use server::{DEFAULT_GLOBAL_TIMEOUT_MS, TC_VERSION};
pub use service::{Coordinator, TcError};

use crate::coordinator::SessionPartition;

/// This node's replicas of the session partitions, shared between their
/// state machines and the phase-two worker.
pub struct PartitionReplicas {
    sessions: Vec<Arc<Mutex<SessionPartition>>>,
}

/// Raft groups to host: (group id, state machine).
pub type HostedGroups = Vec<(u64, Box<dyn StateMachine>)>;

/// The raft state machines of every partition, with their group ids.
pub fn partition_machines(cfg: &TcConfig) -> Result<(HostedGroups, PartitionReplicas), String> {
    cfg.validate()?;
    let mut groups: HostedGroups = Vec::new();
    let mut sessions = Vec::new();
    for p in 0..cfg.session_partitions {
        let m = SessionMachine::new(cfg.session_config()).map_err(|e| e.0)?;
        sessions.push(m.shared());
        groups.push((session_group(p), Box::new(m)));
    }
    for p in 0..cfg.lock_partitions {
        let m = LockMachine::new(cfg.lock_config(p)).map_err(|e| e.0)?;
        groups.push((lock_group(p), Box::new(m)));
    }
    Ok((groups, PartitionReplicas { sessions }))
}

/// A running TC: the listener and the phase-two worker.
pub struct TcServer {
    coordinator: Coordinator,
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl TcServer {
    /// Serve on `listener` (already bound, so a port in use is reported by
    /// the caller), with `router` of the node hosting the partitions.
    pub fn start(
        cfg: TcConfig,
        replicas: PartitionReplicas,
        router: Router,
        listener: TcpListener,
    ) -> Result<TcServer, String> {
        cfg.validate()?;
        let local_addr = listener.local_addr().map_err(|e| e.to_string())?;
        let coordinator = Coordinator::new(cfg, router, replicas.sessions);
        let (stop, stop_rx) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(server::accept_loop(
                coordinator.clone(),
                listener,
                stop_rx.clone(),
            )),
            tokio::spawn(worker::run(coordinator.clone(), stop_rx)),
        ];
        tracing::info!(addr = %local_addr, "transaction coordinator listening");
        Ok(TcServer {
            coordinator,
            local_addr,
            stop,
            tasks,
        })
    }

    /// The handler of `RHEA.X` requests other nodes send this one (relayed
    /// phase-two calls): put it in the KV server's `ServerOptions`.
    pub fn extension(&self) -> rhea_kv::server::Extension {
        rhea_kv::server::Extension(Arc::new(Relay(self.coordinator.clone())))
    }

    pub fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stop accepting, close connections, stop the worker.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

struct Relay(Coordinator);

impl rhea_kv::server::ServerExtension for Relay {
    fn call(&self, args: Vec<bytes::Bytes>) -> rhea_kv::server::BoxFuture<rhea_kv::resp::Value> {
        let tc = self.0.clone();
        Box::pin(async move { admin::serve(&tc, &args).await })
    }
}
