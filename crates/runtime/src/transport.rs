//! The peer transport: one TCP transport shared by every raft group of a
//! process (multi-raft).
//!
//! * **One listener per node** ([`Transport::bind`]); received messages of
//!   every group go to one bounded [`tokio::sync::mpsc`] channel whose
//!   receiver the driver owns.
//! * **One outbound connection per peer node**, carrying the messages of
//!   every group (each message names its group). Messages queued for a peer
//!   are batched into frames of up to `max_batch_messages` messages and
//!   `max_frame_bytes`, one write per frame.
//! * [`Transport::send`] never waits: it queues the message for `msg.to`, or
//!   drops and counts it when the peer is unknown or its queue is full. Raft
//!   tolerates loss; a blocked driver would stall every group.
//! * A handshake on every connection (magic, version, cluster id, sender and
//!   addressed node) keeps nodes of another cluster, and stale address books,
//!   out. Malformed input closes the connection with a `tracing::warn!`
//!   naming the peer address and the reason; nothing a peer sends can make
//!   the transport panic or allocate beyond its limits.
//!
//! Frame and handshake layouts, limits and failure behaviour:
//! `docs/transport.md`.

mod error;
mod frame;
mod handshake;
mod inbound;
mod options;
mod outbound;
mod stats;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rhea_raft::{Message, NO_NODE, NodeId};
use tokio::net::TcpSocket;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use error::{SendError, TransportError};
pub use frame::{FRAME_COUNT_BYTES, FRAME_HEADER_BYTES, MESSAGE_LEN_BYTES};
pub use handshake::{HELLO_BYTES, HELLO_REPLY_BYTES, PROTOCOL_VERSION, TRANSPORT_MAGIC};
pub use options::{MIN_MESSAGE_BYTES, TransportOptions};
pub use stats::{PeerStats, TransportStats};

use crate::message_codec::message_encoded_len;
use outbound::{PeerWriter, Queued};
use stats::{Counters, PeerCounters, add};

/// Backlog of the listening socket.
const LISTEN_BACKLOG: u32 = 1024;

/// State shared by the transport's tasks.
pub(crate) struct Ctx {
    node_id: NodeId,
    opts: TransportOptions,
    counters: Counters,
    inbound_tx: mpsc::Sender<Message>,
    /// The established inbound connection of each peer node, with the sender
    /// whose drop tells it that a newer connection replaced it.
    inbound_conns: Mutex<HashMap<NodeId, (u64, watch::Sender<()>)>>,
    next_conn_id: AtomicU64,
}

struct PeerEntry {
    addr_tx: watch::Sender<SocketAddr>,
    queue: mpsc::Sender<Queued>,
    counters: Arc<PeerCounters>,
    task: JoinHandle<()>,
}

/// The peer transport of one node. Create it with [`Transport::bind`], share
/// it (e.g. in an `Arc`) between the groups' drivers, and stop it with
/// [`Transport::shutdown`]. Dropping it also stops its tasks, without
/// waiting for them.
pub struct Transport {
    ctx: Arc<Ctx>,
    local_addr: SocketAddr,
    runtime: Handle,
    peers: RwLock<HashMap<NodeId, PeerEntry>>,
    shutdown_tx: watch::Sender<bool>,
    accept_task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("node_id", &self.ctx.node_id)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// Resolves once the transport is shutting down (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Locks that survive a panic elsewhere: the data they guard stays
/// consistent (every critical section is a single map operation).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

impl Transport {
    /// Listen on `addr` as node `node_id` (port 0 picks a free port: see
    /// [`Transport::local_addr`]). Returns the transport and the receiver of
    /// every message peers send to this node, for all groups. Must be called
    /// inside a tokio runtime; the transport's tasks run on it.
    ///
    /// A port already in use gives [`TransportError::Bind`], whose message
    /// names the address.
    pub async fn bind(
        node_id: NodeId,
        addr: SocketAddr,
        opts: TransportOptions,
    ) -> Result<(Transport, mpsc::Receiver<Message>), TransportError> {
        opts.validate()?;
        if node_id == NO_NODE {
            return Err(TransportError::InvalidOptions(
                "node id 0 is reserved for \"no node\"".into(),
            ));
        }
        let runtime =
            Handle::try_current().map_err(|e| TransportError::NoRuntime(e.to_string()))?;
        let bind_err = |source| TransportError::Bind { addr, source };
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(bind_err)?;
        // Lets a restarted node listen again while connections of its previous
        // incarnation linger in TIME_WAIT. It does not let two listeners share
        // a port on Unix. (On Windows it would, so it is not set there.)
        #[cfg(unix)]
        socket.set_reuseaddr(true).map_err(bind_err)?;
        socket.bind(addr).map_err(bind_err)?;
        let listener = socket.listen(LISTEN_BACKLOG).map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;

        let (inbound_tx, inbound_rx) = mpsc::channel(opts.max_inbound_messages);
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let ctx = Arc::new(Ctx {
            node_id,
            opts,
            counters: Counters::default(),
            inbound_tx,
            inbound_conns: Mutex::new(HashMap::new()),
            next_conn_id: AtomicU64::new(0),
        });
        let accept_task = runtime.spawn(inbound::accept_loop(ctx.clone(), listener, shutdown_rx));
        let transport = Transport {
            ctx,
            local_addr,
            runtime,
            peers: RwLock::new(HashMap::new()),
            shutdown_tx,
            accept_task: Mutex::new(Some(accept_task)),
        };
        Ok((transport, inbound_rx))
    }

    pub fn node_id(&self) -> NodeId {
        self.ctx.node_id
    }

    /// The address the listener is bound to (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn options(&self) -> &TransportOptions {
        &self.ctx.opts
    }

    fn is_shut_down(&self) -> bool {
        *self.shutdown_tx.borrow()
    }

    /// Set (or change) the address of peer `node`. The first call starts the
    /// peer's connection task; a later call with another address closes the
    /// current connection and reconnects there, keeping the queue. Callable
    /// from any thread.
    pub fn set_peer(&self, node: NodeId, addr: SocketAddr) -> Result<(), TransportError> {
        if node == NO_NODE || node == self.ctx.node_id {
            return Err(TransportError::InvalidPeer {
                node,
                reason: "a peer must be another node, and node id 0 is reserved",
            });
        }
        let mut peers = write(&self.peers);
        // Checked under the lock: `shutdown` takes the peers under it too, so
        // no peer task can start after shutdown collected them.
        if self.is_shut_down() {
            return Err(TransportError::Shutdown);
        }
        if let Some(p) = peers.get(&node) {
            p.addr_tx.send_if_modified(|a| {
                let changed = *a != addr;
                *a = addr;
                changed
            });
            return Ok(());
        }
        let (addr_tx, addr_rx) = watch::channel(addr);
        let (queue, queue_rx) = mpsc::channel(self.ctx.opts.max_queue_messages);
        let counters = Arc::new(PeerCounters::default());
        let writer = PeerWriter {
            ctx: self.ctx.clone(),
            peer: node,
            counters: counters.clone(),
            queue: queue_rx,
            addr_rx,
            shutdown: self.shutdown_tx.subscribe(),
        };
        let task = self.runtime.spawn(writer.run());
        peers.insert(
            node,
            PeerEntry {
                addr_tx,
                queue,
                counters,
                task,
            },
        );
        Ok(())
    }

    /// Forget peer `node`: its connection closes and its queued messages are
    /// dropped. Returns false if it was unknown.
    pub fn remove_peer(&self, node: NodeId) -> bool {
        // Dropping the entry drops the address sender: the task sees it and exits.
        write(&self.peers).remove(&node).is_some()
    }

    /// The peers and their addresses, by node id.
    pub fn peers(&self) -> Vec<(NodeId, SocketAddr)> {
        let mut v: Vec<_> = read(&self.peers)
            .iter()
            .map(|(id, p)| (*id, *p.addr_tx.borrow()))
            .collect();
        v.sort_unstable();
        v
    }

    /// Queue `msg` for `msg.to`. Never waits and never blocks on I/O: when the
    /// message cannot be queued it is dropped, counted, and the reason
    /// returned (a raft driver may ignore it: Raft retransmits).
    pub fn send(&self, msg: Message) -> Result<(), SendError> {
        let counters = &self.ctx.counters;
        if self.is_shut_down() {
            return Err(SendError::Shutdown);
        }
        if msg.from != self.ctx.node_id {
            return Err(SendError::WrongSender {
                from: msg.from,
                node: self.ctx.node_id,
            });
        }
        let bytes = message_encoded_len(&msg);
        let limit = self.ctx.opts.max_message_bytes;
        if bytes > limit {
            add(&counters.dropped_too_large, 1);
            return Err(SendError::TooLarge { bytes, limit });
        }
        let to = msg.to;
        let peers = read(&self.peers);
        let Some(peer) = peers.get(&to) else {
            add(&counters.dropped_unknown_peer, 1);
            return Err(SendError::UnknownPeer(to));
        };
        let full = || {
            add(&peer.counters.dropped_queue_full, 1);
            add(&counters.dropped_queue_full, 1);
            Err(SendError::QueueFull { to })
        };
        // Reserve the bytes first; give them back if the message is not queued.
        let queued_bytes = &peer.counters.queued_bytes;
        let before = queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        if before.saturating_add(bytes) > self.ctx.opts.max_queue_bytes {
            queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            return full();
        }
        match peer.queue.try_send(Queued { msg, bytes }) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                full()
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                Err(SendError::Shutdown)
            }
        }
    }

    /// Counters of the whole transport.
    pub fn stats(&self) -> TransportStats {
        self.ctx.counters.snapshot()
    }

    /// One peer's outbound counters and queue, or `None` for an unknown peer.
    pub fn peer_stats(&self, node: NodeId) -> Option<PeerStats> {
        let peers = read(&self.peers);
        let p = peers.get(&node)?;
        let queued = p.queue.max_capacity() - p.queue.capacity();
        Some(p.counters.snapshot(*p.addr_tx.borrow(), queued))
    }

    /// Stop: close the listener and every connection, drop queued messages,
    /// and wait for the transport's tasks to finish. When it returns, the
    /// listening port is free. Later `send`s fail with
    /// [`SendError::Shutdown`]. Idempotent.
    pub async fn shutdown(&self) {
        self.shutdown_tx.send_replace(true);
        let accept = lock(&self.accept_task).take();
        let peers: Vec<PeerEntry> = write(&self.peers).drain().map(|(_, p)| p).collect();
        if let Some(task) = accept {
            let _ = task.await;
        }
        for p in peers {
            let PeerEntry { task, .. } = p;
            let _ = task.await;
        }
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        self.shutdown_tx.send_replace(true);
    }
}
