//! The outbound side: one task per peer node owns the connection to it,
//! reconnects with bounded exponential backoff, and drains the peer's queue
//! into frames of up to `max_batch_messages` messages and `max_frame_bytes`.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rhea_raft::{Message, NodeId, SplitMix64};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::Ctx;
use super::frame::FrameBuilder;
use super::handshake::{
    HELLO_REPLY_BYTES, HandshakeStatus, Hello, PROTOCOL_VERSION, decode_reply, encode_hello,
};
use super::stats::{PeerCounters, add};
use super::stopped;

/// A message waiting in a peer's queue with its encoded size.
pub(crate) struct Queued {
    pub msg: Message,
    pub bytes: usize,
}

/// Why a connection attempt failed.
enum ConnectError {
    /// TCP-level failure or timeout: the peer is down or unreachable (common,
    /// logged at debug level).
    Unreachable(String),
    /// The peer answered but the handshake failed: a configuration problem
    /// (logged as a warning).
    Refused(String),
}

/// Why an established connection ended.
enum Exit {
    Shutdown,
    /// The peer was removed (`remove_peer`).
    Removed,
    AddressChanged,
    Broken(String),
}

pub(crate) struct PeerWriter {
    pub ctx: Arc<Ctx>,
    pub peer: NodeId,
    pub counters: Arc<PeerCounters>,
    pub queue: mpsc::Receiver<Queued>,
    pub addr_rx: watch::Receiver<SocketAddr>,
    pub shutdown: watch::Receiver<bool>,
}

impl PeerWriter {
    pub async fn run(mut self) {
        let opts = &self.ctx.opts;
        let min = opts.reconnect_backoff_ms_min;
        let max = opts.reconnect_backoff_ms_max;
        let mut backoff_ms = min;
        let mut rng = SplitMix64::new(self.ctx.node_id ^ self.peer.rotate_left(32));
        // Messages taken off the queue but not yet written; kept across reconnects.
        let mut carry: VecDeque<Queued> = VecDeque::new();
        let mut frame = FrameBuilder::new(opts.max_frame_bytes);
        let mut failures_in_a_row = 0u64;
        loop {
            let addr = *self.addr_rx.borrow_and_update();
            let attempt = tokio::select! {
                biased;
                _ = stopped(&mut self.shutdown) => return,
                changed = self.addr_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    backoff_ms = min;
                    continue;
                }
                r = connect(&self.ctx, self.peer, addr) => r,
            };
            match attempt {
                Ok(stream) => {
                    backoff_ms = min;
                    failures_in_a_row = 0;
                    add(&self.counters.connects, 1);
                    add(&self.ctx.counters.connects, 1);
                    self.counters.connected.store(true, Ordering::Relaxed);
                    debug!(node = self.ctx.node_id, peer = self.peer, %addr, "raft connection established");
                    let exit = self.serve(stream, &mut carry, &mut frame).await;
                    self.counters.connected.store(false, Ordering::Relaxed);
                    match exit {
                        Exit::Shutdown | Exit::Removed => return,
                        Exit::AddressChanged => continue,
                        Exit::Broken(reason) => {
                            warn!(
                                node = self.ctx.node_id,
                                peer = self.peer,
                                %addr,
                                %reason,
                                "raft connection to peer lost; reconnecting"
                            );
                        }
                    }
                }
                Err(e) => {
                    failures_in_a_row += 1;
                    add(&self.counters.connect_failures, 1);
                    add(&self.ctx.counters.connect_failures, 1);
                    match e {
                        ConnectError::Unreachable(reason) => debug!(
                            node = self.ctx.node_id,
                            peer = self.peer,
                            %addr,
                            %reason,
                            failures_in_a_row,
                            "cannot connect to raft peer"
                        ),
                        ConnectError::Refused(reason) => {
                            add(&self.ctx.counters.handshakes_refused, 1);
                            warn!(
                                node = self.ctx.node_id,
                                peer = self.peer,
                                %addr,
                                %reason,
                                "raft peer refused the handshake"
                            );
                        }
                    }
                }
            }
            // Jittered down by up to half so that nodes restarting together
            // do not reconnect in lockstep.
            let delay_ms = backoff_ms - rng.range(0, backoff_ms / 2 + 1);
            backoff_ms = backoff_ms.saturating_mul(2).min(max);
            tokio::select! {
                biased;
                _ = stopped(&mut self.shutdown) => return,
                changed = self.addr_rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    backoff_ms = min;
                }
                _ = tokio::time::sleep(Duration::from_millis(delay_ms)) => {}
            }
        }
    }

    /// Move a message from the queue to the carry, releasing its queue bytes.
    fn take(&self, q: Queued, carry: &mut VecDeque<Queued>) {
        self.counters
            .queued_bytes
            .fetch_sub(q.bytes, Ordering::Relaxed);
        carry.push_back(q);
    }

    /// Write frames until the connection breaks, the address changes, the
    /// peer is removed or the transport shuts down.
    async fn serve(
        &mut self,
        stream: TcpStream,
        carry: &mut VecDeque<Queued>,
        frame: &mut FrameBuilder,
    ) -> Exit {
        let max_batch = self.ctx.opts.max_batch_messages;
        let write_timeout = Duration::from_millis(self.ctx.opts.write_timeout_ms);
        let (mut rd, mut wr) = stream.into_split();
        let mut probe = [0u8; 1];
        let mut got: Vec<Queued> = Vec::new();
        loop {
            if carry.is_empty() {
                tokio::select! {
                    biased;
                    _ = stopped(&mut self.shutdown) => return Exit::Shutdown,
                    changed = self.addr_rx.changed() => {
                        return if changed.is_err() { Exit::Removed } else { Exit::AddressChanged };
                    }
                    // The peer never writes after its handshake reply: a
                    // readable socket means it closed or misbehaves, and we
                    // learn it now rather than on the next write.
                    r = rd.read(&mut probe) => {
                        return Exit::Broken(match r {
                            Ok(0) => "peer closed the connection".to_string(),
                            Ok(_) => "peer sent bytes after the handshake".to_string(),
                            Err(e) => e.to_string(),
                        });
                    }
                    n = self.queue.recv_many(&mut got, max_batch) => {
                        if n == 0 {
                            return Exit::Removed;
                        }
                        for q in got.drain(..) {
                            self.take(q, carry);
                        }
                    }
                }
            }
            // Batch whatever else is already queued, without waiting.
            while carry.len() < max_batch {
                match self.queue.try_recv() {
                    Ok(q) => self.take(q, carry),
                    Err(_) => break,
                }
            }
            frame.clear();
            while let Some(q) = carry.front() {
                if frame.count() >= max_batch || !frame.fits(q.bytes) {
                    break;
                }
                if let Some(q) = carry.pop_front() {
                    frame.push(&q.msg, q.bytes);
                }
            }
            let n = frame.count() as u64;
            let bytes = frame.finish();
            let len = bytes.len() as u64;
            let result = tokio::select! {
                biased;
                _ = stopped(&mut self.shutdown) => return Exit::Shutdown,
                r = tokio::time::timeout(write_timeout, wr.write_all(bytes)) => r,
            };
            match result {
                Ok(Ok(())) => {
                    for c in [&self.counters.frames_sent, &self.ctx.counters.frames_sent] {
                        add(c, 1);
                    }
                    for c in [
                        &self.counters.messages_sent,
                        &self.ctx.counters.messages_sent,
                    ] {
                        add(c, n);
                    }
                    for c in [&self.counters.bytes_sent, &self.ctx.counters.bytes_sent] {
                        add(c, len);
                    }
                }
                Ok(Err(e)) => {
                    self.lost(n);
                    return Exit::Broken(format!("write failed: {e}"));
                }
                Err(_) => {
                    self.lost(n);
                    return Exit::Broken(format!(
                        "writing a frame of {len} bytes took over write_timeout_ms = {}",
                        self.ctx.opts.write_timeout_ms
                    ));
                }
            }
        }
    }

    fn lost(&self, n: u64) {
        add(&self.counters.dropped_write_failed, n);
        add(&self.ctx.counters.dropped_write_failed, n);
    }
}

/// Open a TCP connection to `addr` and run the connecting side of the handshake.
async fn connect(ctx: &Ctx, peer: NodeId, addr: SocketAddr) -> Result<TcpStream, ConnectError> {
    let connect_timeout = Duration::from_millis(ctx.opts.connect_timeout_ms);
    let mut stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(ConnectError::Unreachable(e.to_string())),
        Err(_) => {
            return Err(ConnectError::Unreachable(format!(
                "no connection within connect_timeout_ms = {}",
                ctx.opts.connect_timeout_ms
            )));
        }
    };
    // Frames are written whole; Nagle's delay would only add latency.
    stream
        .set_nodelay(true)
        .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
    let handshake_timeout = Duration::from_millis(ctx.opts.handshake_timeout_ms);
    match tokio::time::timeout(handshake_timeout, handshake(ctx, peer, &mut stream)).await {
        Ok(Ok(())) => Ok(stream),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ConnectError::Refused(format!(
            "no handshake reply within handshake_timeout_ms = {}",
            ctx.opts.handshake_timeout_ms
        ))),
    }
}

async fn handshake(ctx: &Ctx, peer: NodeId, stream: &mut TcpStream) -> Result<(), ConnectError> {
    let io_err = |e: io::Error| ConnectError::Unreachable(format!("handshake: {e}"));
    let hello = encode_hello(&Hello {
        version: PROTOCOL_VERSION,
        cluster_id: ctx.opts.cluster_id,
        from: ctx.node_id,
        to: peer,
    });
    stream.write_all(&hello).await.map_err(io_err)?;
    let mut buf = [0u8; HELLO_REPLY_BYTES];
    stream.read_exact(&mut buf).await.map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ConnectError::Refused("peer closed the connection during the handshake".into())
        } else {
            io_err(e)
        }
    })?;
    let reply = decode_reply(&buf).map_err(|magic| {
        ConnectError::Refused(format!(
            "not a rhea raft transport (magic {magic:#010x} in reply)"
        ))
    })?;
    match HandshakeStatus::from_u8(reply.status) {
        Some(HandshakeStatus::Accepted) => {}
        Some(status) => {
            return Err(ConnectError::Refused(format!(
                "{} (ours: cluster {} node {} -> node {} version {}; theirs: cluster {} node {} version {})",
                status.describe(),
                ctx.opts.cluster_id,
                ctx.node_id,
                peer,
                PROTOCOL_VERSION,
                reply.cluster_id,
                reply.node_id,
                reply.version,
            )));
        }
        None => {
            return Err(ConnectError::Refused(format!(
                "unknown handshake status {}",
                reply.status
            )));
        }
    }
    // Accepted: still check the peer is who we meant, in the same cluster.
    if reply.version != PROTOCOL_VERSION
        || reply.cluster_id != ctx.opts.cluster_id
        || reply.node_id != peer
    {
        return Err(ConnectError::Refused(format!(
            "peer accepted but identifies as cluster {} node {} version {} (expected cluster {} node {peer} version {PROTOCOL_VERSION})",
            reply.cluster_id, reply.node_id, reply.version, ctx.opts.cluster_id
        )));
    }
    Ok(())
}
