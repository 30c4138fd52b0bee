//! Counters: atomics updated by the tasks, copied out as plain structs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Process-wide transport counters (every peer together), as returned by
/// [`super::Transport::stats`]. All are totals since `bind`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Frames written completely to a peer connection.
    pub frames_sent: u64,
    /// Messages in those frames.
    pub messages_sent: u64,
    /// Bytes of those frames, headers included.
    pub bytes_sent: u64,
    /// Messages dropped by `send` because the peer's queue was full.
    pub dropped_queue_full: u64,
    /// Messages dropped by `send` because no address was known for `msg.to`.
    pub dropped_unknown_peer: u64,
    /// Messages dropped by `send` because they exceed `max_message_bytes`.
    pub dropped_too_large: u64,
    /// Messages lost in a frame whose write failed (the connection broke).
    pub dropped_write_failed: u64,
    /// Outbound connections that completed the handshake.
    pub connects: u64,
    /// Outbound connection attempts that failed (TCP, timeout or handshake).
    pub connect_failures: u64,
    /// Outbound handshakes the peer refused (wrong cluster, node or version).
    pub handshakes_refused: u64,
    /// Inbound connections that completed the handshake.
    pub inbound_accepted: u64,
    /// Inbound connections refused at the handshake (bad magic, wrong
    /// cluster, node or version, timeout) or over `max_inbound_connections`.
    pub inbound_refused: u64,
    /// Established inbound connections closed for a protocol error
    /// (oversize or malformed frame, bad checksum, misaddressed message).
    pub inbound_protocol_errors: u64,
    /// Frames received and decoded.
    pub frames_received: u64,
    /// Messages delivered to the inbound channel.
    pub messages_received: u64,
    /// Bytes of decoded frames, headers included.
    pub bytes_received: u64,
}

/// One peer's outbound state, as returned by [`super::Transport::peer_stats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerStats {
    pub addr: SocketAddr,
    /// An outbound connection is established (handshake done).
    pub connected: bool,
    /// Messages waiting in the queue.
    pub queued_messages: usize,
    /// Encoded bytes waiting in the queue.
    pub queued_bytes: usize,
    pub frames_sent: u64,
    pub messages_sent: u64,
    pub bytes_sent: u64,
    pub dropped_queue_full: u64,
    pub dropped_write_failed: u64,
    pub connects: u64,
    pub connect_failures: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub frames_sent: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_unknown_peer: AtomicU64,
    pub dropped_too_large: AtomicU64,
    pub dropped_write_failed: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub handshakes_refused: AtomicU64,
    pub inbound_accepted: AtomicU64,
    pub inbound_refused: AtomicU64,
    pub inbound_protocol_errors: AtomicU64,
    pub frames_received: AtomicU64,
    pub messages_received: AtomicU64,
    pub bytes_received: AtomicU64,
}

pub(crate) fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

impl Counters {
    pub fn snapshot(&self) -> TransportStats {
        TransportStats {
            frames_sent: get(&self.frames_sent),
            messages_sent: get(&self.messages_sent),
            bytes_sent: get(&self.bytes_sent),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_unknown_peer: get(&self.dropped_unknown_peer),
            dropped_too_large: get(&self.dropped_too_large),
            dropped_write_failed: get(&self.dropped_write_failed),
            connects: get(&self.connects),
            connect_failures: get(&self.connect_failures),
            handshakes_refused: get(&self.handshakes_refused),
            inbound_accepted: get(&self.inbound_accepted),
            inbound_refused: get(&self.inbound_refused),
            inbound_protocol_errors: get(&self.inbound_protocol_errors),
            frames_received: get(&self.frames_received),
            messages_received: get(&self.messages_received),
            bytes_received: get(&self.bytes_received),
        }
    }
}

#[derive(Default)]
pub(crate) struct PeerCounters {
    pub connected: AtomicBool,
    pub queued_bytes: AtomicUsize,
    pub frames_sent: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_write_failed: AtomicU64,
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
}

impl PeerCounters {
    pub fn snapshot(&self, addr: SocketAddr, queued_messages: usize) -> PeerStats {
        PeerStats {
            addr,
            connected: self.connected.load(Ordering::Relaxed),
            queued_messages,
            queued_bytes: self.queued_bytes.load(Ordering::Relaxed),
            frames_sent: get(&self.frames_sent),
            messages_sent: get(&self.messages_sent),
            bytes_sent: get(&self.bytes_sent),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_write_failed: get(&self.dropped_write_failed),
            connects: get(&self.connects),
            connect_failures: get(&self.connect_failures),
        }
    }
}
