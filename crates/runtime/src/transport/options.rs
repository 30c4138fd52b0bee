//! The transport's limits and timeouts, all named with their unit.

use super::error::TransportError;
use super::frame::{FRAME_COUNT_BYTES, MESSAGE_LEN_BYTES};
use crate::message_codec::MESSAGE_HEADER_BYTES;

/// Limits and timeouts of a [`super::Transport`]. Every field names its unit;
/// [`TransportOptions::default`] gives values suited to the raft core's own
/// defaults (`max_entry_bytes` = 8 MiB, `snapshot_chunk_bytes` = 128 KiB).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportOptions {
    /// Identifies the cluster. Both ends of a connection must agree, so a node
    /// of another cluster pointed at this one by mistake is refused at the
    /// handshake. Default 0: set it in any real deployment.
    pub cluster_id: u64,
    /// Largest encoded message sent or accepted. `send` refuses a larger one
    /// (`SendError::TooLarge`); a peer sending one has its connection closed.
    /// Default 12 MiB: an append of `max_append_bytes` (512 KiB) plus one entry
    /// of `max_entry_bytes` (8 MiB) with room to spare.
    pub max_message_bytes: usize,
    /// Largest frame payload (the frame's length field): the message count
    /// plus the length-prefixed messages. Must be at least 8 bytes more than
    /// `max_message_bytes`, so that any single message fits. A frame header claiming more closes
    /// the connection before anything is allocated. Default 16 MiB.
    pub max_frame_bytes: usize,
    /// Most messages written in one frame. Default 1024.
    pub max_batch_messages: usize,
    /// Most messages waiting for one peer. When full, `send` drops the message
    /// and counts it (`SendError::QueueFull`); it never waits. Default 16384.
    pub max_queue_messages: usize,
    /// Most encoded bytes waiting for one peer; at least `max_message_bytes`.
    /// Same drop rule as `max_queue_messages`. Default 64 MiB.
    pub max_queue_bytes: usize,
    /// Capacity of the channel delivering received messages to the driver
    /// (all peers together). When it is full, connections stop reading, so
    /// TCP flow control pushes back to the senders, whose queues then drop.
    /// Default 16384.
    pub max_inbound_messages: usize,
    /// Most inbound connections open at once (handshaking or established);
    /// a connection beyond it is closed on accept. Default 1024.
    pub max_inbound_connections: usize,
    /// First delay before reconnecting to a peer after a failure; doubled
    /// after each consecutive failure, up to `reconnect_backoff_ms_max`, and
    /// jittered down by up to half. Default 50 ms.
    pub reconnect_backoff_ms_min: u64,
    /// Longest delay between reconnection attempts. Default 2000 ms.
    pub reconnect_backoff_ms_max: u64,
    /// Limit on establishing a TCP connection to a peer. Default 1000 ms.
    pub connect_timeout_ms: u64,
    /// Limit on the handshake, on both sides (a silent inbound connection is
    /// closed after it). Default 2000 ms.
    pub handshake_timeout_ms: u64,
    /// Limit on writing one frame; a peer that stops reading for that long
    /// has its connection closed and reconnected. Default 10000 ms.
    pub write_timeout_ms: u64,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            cluster_id: 0,
            max_message_bytes: 12 * 1024 * 1024,
            max_frame_bytes: 16 * 1024 * 1024,
            max_batch_messages: 1024,
            max_queue_messages: 16 * 1024,
            max_queue_bytes: 64 * 1024 * 1024,
            max_inbound_messages: 16 * 1024,
            max_inbound_connections: 1024,
            reconnect_backoff_ms_min: 50,
            reconnect_backoff_ms_max: 2000,
            connect_timeout_ms: 1000,
            handshake_timeout_ms: 2000,
            write_timeout_ms: 10_000,
        }
    }
}

/// Smallest accepted `max_message_bytes`: room for any message without
/// entries or snapshot data.
pub const MIN_MESSAGE_BYTES: usize = 256;

impl TransportOptions {
    /// Check the options are consistent; [`super::Transport::bind`] calls it.
    pub fn validate(&self) -> Result<(), TransportError> {
        let bad = |reason: String| Err(TransportError::InvalidOptions(reason));
        if self.max_message_bytes < MIN_MESSAGE_BYTES.max(MESSAGE_HEADER_BYTES) {
            return bad(format!(
                "max_message_bytes = {} is below the minimum {MIN_MESSAGE_BYTES}",
                self.max_message_bytes
            ));
        }
        let frame_min = self
            .max_message_bytes
            .saturating_add(FRAME_COUNT_BYTES + MESSAGE_LEN_BYTES);
        if self.max_frame_bytes < frame_min {
            return bad(format!(
                "max_frame_bytes = {} must be at least max_message_bytes + {} = {frame_min}",
                self.max_frame_bytes,
                FRAME_COUNT_BYTES + MESSAGE_LEN_BYTES
            ));
        }
        if u32::try_from(self.max_frame_bytes).is_err() {
            return bad(format!(
                "max_frame_bytes = {} does not fit the u32 length field",
                self.max_frame_bytes
            ));
        }
        if self.max_batch_messages == 0 {
            return bad("max_batch_messages must be at least 1".into());
        }
        if self.max_queue_messages == 0 {
            return bad("max_queue_messages must be at least 1".into());
        }
        if self.max_queue_bytes < self.max_message_bytes {
            return bad(format!(
                "max_queue_bytes = {} must be at least max_message_bytes = {}",
                self.max_queue_bytes, self.max_message_bytes
            ));
        }
        if self.max_inbound_messages == 0 {
            return bad("max_inbound_messages must be at least 1".into());
        }
        if self.max_inbound_connections == 0 {
            return bad("max_inbound_connections must be at least 1".into());
        }
        if self.reconnect_backoff_ms_min == 0
            || self.reconnect_backoff_ms_min > self.reconnect_backoff_ms_max
        {
            return bad(format!(
                "need 1 <= reconnect_backoff_ms_min ({}) <= reconnect_backoff_ms_max ({})",
                self.reconnect_backoff_ms_min, self.reconnect_backoff_ms_max
            ));
        }
        for (name, v) in [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            ("write_timeout_ms", self.write_timeout_ms),
        ] {
            if v == 0 {
                return bad(format!("{name} must be at least 1"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        TransportOptions::default().validate().expect("valid");
    }

    #[test]
    fn inconsistent_limits_are_refused() {
        let base = TransportOptions::default();
        let cases = [
            TransportOptions {
                max_frame_bytes: base.max_message_bytes,
                ..base.clone()
            },
            TransportOptions {
                max_message_bytes: 10,
                ..base.clone()
            },
            TransportOptions {
                max_batch_messages: 0,
                ..base.clone()
            },
            TransportOptions {
                max_queue_bytes: 1,
                ..base.clone()
            },
            TransportOptions {
                reconnect_backoff_ms_min: 10,
                reconnect_backoff_ms_max: 5,
                ..base.clone()
            },
            TransportOptions {
                write_timeout_ms: 0,
                ..base.clone()
            },
            TransportOptions {
                max_frame_bytes: usize::MAX,
                ..base.clone()
            },
        ];
        for opts in cases {
            assert!(opts.validate().is_err(), "{opts:?}");
        }
    }
}
