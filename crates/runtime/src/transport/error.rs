//! The transport's error types.

use std::io;
use std::net::SocketAddr;

use rhea_raft::NodeId;
use thiserror::Error;

/// Errors of [`super::Transport::bind`] and [`super::Transport::set_peer`].
#[derive(Debug, Error)]
pub enum TransportError {
    /// The listening socket could not be created or bound (most often: the
    /// port is in use). The message names the address.
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("invalid transport options: {0}")]
    InvalidOptions(String),
    #[error("invalid peer {node}: {reason}")]
    InvalidPeer { node: NodeId, reason: &'static str },
    /// `bind` was called outside a tokio runtime.
    #[error("the transport needs a tokio runtime: {0}")]
    NoRuntime(String),
    #[error("the transport is shut down")]
    Shutdown,
}

/// Why [`super::Transport::send`] did not queue a message. The message is
/// dropped in every case (Raft tolerates loss) and counted in the stats.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SendError {
    /// No address was set for the destination (`msg.to`).
    #[error("no address known for node {0}")]
    UnknownPeer(NodeId),
    /// The queue to the destination is at `max_queue_messages` or would pass
    /// `max_queue_bytes`.
    #[error("queue to node {to} is full: message dropped")]
    QueueFull { to: NodeId },
    /// The encoded message is larger than `max_message_bytes`.
    #[error("message of {bytes} bytes exceeds max_message_bytes = {limit}")]
    TooLarge { bytes: usize, limit: usize },
    /// `msg.from` is not this transport's node: the receiver would refuse it.
    #[error("message from node {from} handed to the transport of node {node}")]
    WrongSender { from: NodeId, node: NodeId },
    #[error("the transport is shut down")]
    Shutdown,
}
