//! The inbound side: the accept loop and one task per inbound connection,
//! which runs the listening side of the handshake, then reads frames and
//! delivers their messages to the driver's channel.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use rhea_raft::NodeId;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::frame::{self, FRAME_HEADER_BYTES};
use super::handshake::{
    HELLO_BYTES, HandshakeStatus, PROTOCOL_VERSION, Reply, decode_hello, encode_reply, judge_hello,
};
use super::stats::add;
use super::{Ctx, lock, stopped};

/// Read buffer of an inbound connection.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// A frame payload buffer grows by at most this much per read, so a header
/// claiming a large frame costs memory only as its bytes actually arrive.
const PAYLOAD_CHUNK_BYTES: usize = 256 * 1024;
/// Pause after a failed `accept` (e.g. out of file descriptors) before retrying.
const ACCEPT_RETRY_MS: u64 = 20;

pub(crate) async fn accept_loop(
    ctx: Arc<Ctx>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conns: JoinSet<()> = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    if conns.len() >= ctx.opts.max_inbound_connections {
                        add(&ctx.counters.inbound_refused, 1);
                        warn!(
                            node = ctx.node_id,
                            peer = %addr,
                            limit = ctx.opts.max_inbound_connections,
                            "refusing raft connection: max_inbound_connections reached"
                        );
                        drop(stream);
                        continue;
                    }
                    conns.spawn(handle_connection(ctx.clone(), stream, addr, shutdown.clone()));
                }
                Err(e) => {
                    warn!(node = ctx.node_id, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                }
            },
        }
    }
    // Close the listening socket first, then every connection.
    drop(listener);
    conns.shutdown().await;
}

/// How an established connection ended without a protocol error.
enum Closed {
    Eof,
    Shutdown,
    /// A newer connection from the same peer node replaced this one.
    Superseded,
    /// The driver dropped the inbound receiver.
    ReceiverGone,
}

async fn handle_connection(
    ctx: Arc<Ctx>,
    stream: TcpStream,
    addr: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(READ_BUFFER_BYTES, rd);
    let handshake_timeout = Duration::from_millis(ctx.opts.handshake_timeout_ms);

    let mut buf = [0u8; HELLO_BYTES];
    let read = tokio::select! {
        biased;
        _ = stopped(&mut shutdown) => return,
        r = tokio::time::timeout(handshake_timeout, rd.read_exact(&mut buf)) => r,
    };
    let refuse = |reason: String| {
        add(&ctx.counters.inbound_refused, 1);
        warn!(node = ctx.node_id, peer = %addr, %reason, "refusing raft connection");
    };
    match read {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return refuse(format!("handshake read failed: {e}")),
        Err(_) => {
            return refuse(format!(
                "no handshake within handshake_timeout_ms = {}",
                ctx.opts.handshake_timeout_ms
            ));
        }
    }
    let hello = match decode_hello(&buf) {
        Ok(h) => h,
        Err(magic) => {
            return refuse(format!(
                "bad magic {magic:#010x}: not a rhea raft transport"
            ));
        }
    };
    let status = judge_hello(&hello, ctx.opts.cluster_id, ctx.node_id);
    let reply = encode_reply(&Reply {
        version: PROTOCOL_VERSION,
        status: status as u8,
        cluster_id: ctx.opts.cluster_id,
        node_id: ctx.node_id,
    });
    // The reply is tiny and the socket fresh: a peer that does not read it
    // within the handshake timeout is dropped like any other failure.
    let wrote = tokio::time::timeout(handshake_timeout, wr.write_all(&reply)).await;
    if status != HandshakeStatus::Accepted {
        return refuse(format!(
            "{}: theirs cluster {} node {} -> node {} version {}; ours cluster {} node {} version {PROTOCOL_VERSION}",
            status.describe(),
            hello.cluster_id,
            hello.from,
            hello.to,
            hello.version,
            ctx.opts.cluster_id,
            ctx.node_id,
        ));
    }
    match wrote {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return refuse(format!("handshake reply failed: {e}")),
        Err(_) => return refuse("handshake reply timed out".into()),
    }
    let peer = hello.from;
    add(&ctx.counters.inbound_accepted, 1);
    debug!(node = ctx.node_id, peer, %addr, "raft connection accepted");

    // At most one inbound connection per peer node: a newer one (the peer
    // reconnected, maybe after the old one went half-open) closes this one.
    let conn_id = ctx.next_conn_id.fetch_add(1, Ordering::Relaxed);
    let (superseded_tx, mut superseded) = watch::channel(());
    let old = lock(&ctx.inbound_conns).insert(peer, (conn_id, superseded_tx));
    drop(old);

    let result = read_frames(&ctx, &mut rd, peer, &mut shutdown, &mut superseded).await;

    {
        let mut conns = lock(&ctx.inbound_conns);
        if conns.get(&peer).is_some_and(|(id, _)| *id == conn_id) {
            conns.remove(&peer);
        }
    }
    match result {
        Ok(closed) => {
            let why = match closed {
                Closed::Eof => "peer closed the connection",
                Closed::Shutdown => "transport shut down",
                Closed::Superseded => "replaced by a newer connection from the same node",
                Closed::ReceiverGone => "inbound receiver dropped",
            };
            debug!(node = ctx.node_id, peer, %addr, why, "raft connection closed");
        }
        Err(reason) => {
            add(&ctx.counters.inbound_protocol_errors, 1);
            warn!(
                node = ctx.node_id,
                peer,
                %addr,
                %reason,
                "closing raft connection"
            );
        }
    }
}

/// Read and deliver frames. `Err` carries the reason of a protocol error.
async fn read_frames<R: AsyncRead + Unpin>(
    ctx: &Ctx,
    rd: &mut R,
    peer: NodeId,
    shutdown: &mut watch::Receiver<bool>,
    superseded: &mut watch::Receiver<()>,
) -> Result<Closed, String> {
    let max_frame = ctx.opts.max_frame_bytes;
    let max_message = ctx.opts.max_message_bytes;
    loop {
        let mut h = [0u8; FRAME_HEADER_BYTES];
        let got = tokio::select! {
            biased;
            _ = stopped(shutdown) => return Ok(Closed::Shutdown),
            _ = superseded.changed() => return Ok(Closed::Superseded),
            r = read_header(rd, &mut h) => r,
        };
        match got {
            Ok(true) => {}
            Ok(false) => return Ok(Closed::Eof),
            Err(e) => return Err(format!("reading a frame header: {e}")),
        }
        // The length is checked before anything is allocated for the payload.
        let header = frame::parse_header(&h, max_frame).map_err(|e| e.to_string())?;
        let payload = tokio::select! {
            biased;
            _ = stopped(shutdown) => return Ok(Closed::Shutdown),
            _ = superseded.changed() => return Ok(Closed::Superseded),
            r = read_payload(rd, header.len) => r.map_err(|e| {
                format!("reading a frame payload of {} bytes: {e}", header.len)
            })?,
        };
        let messages =
            frame::decode_payload(header, payload, max_message).map_err(|e| e.to_string())?;
        for m in &messages {
            if m.from != peer || m.to != ctx.node_id {
                return Err(format!(
                    "misaddressed {} message from node {} to node {} on the connection of node {peer} to node {}",
                    m.body.kind(),
                    m.from,
                    m.to,
                    ctx.node_id
                ));
            }
        }
        add(&ctx.counters.frames_received, 1);
        add(
            &ctx.counters.bytes_received,
            (FRAME_HEADER_BYTES + header.len) as u64,
        );
        for m in messages {
            // Waiting here when the driver is behind stops this connection's
            // reads: TCP flow control then pushes back to the sender.
            tokio::select! {
                biased;
                _ = stopped(shutdown) => return Ok(Closed::Shutdown),
                _ = superseded.changed() => return Ok(Closed::Superseded),
                sent = ctx.inbound_tx.send(m) => {
                    if sent.is_err() {
                        return Ok(Closed::ReceiverGone);
                    }
                    add(&ctx.counters.messages_received, 1);
                }
            }
        }
    }
}

/// Fill `h`; `Ok(false)` on a clean end of stream before its first byte.
async fn read_header<R: AsyncRead + Unpin>(
    rd: &mut R,
    h: &mut [u8; FRAME_HEADER_BYTES],
) -> io::Result<bool> {
    let n = rd.read(h).await?;
    if n == 0 {
        return Ok(false);
    }
    if n < h.len() {
        rd.read_exact(&mut h[n..]).await?;
    }
    Ok(true)
}

/// Read exactly `len` bytes, growing the buffer only as bytes arrive.
async fn read_payload<R: AsyncRead + Unpin>(rd: &mut R, len: usize) -> io::Result<Bytes> {
    let mut buf = Vec::with_capacity(len.min(PAYLOAD_CHUNK_BYTES));
    while buf.len() < len {
        let start = buf.len();
        let want = (len - start).min(PAYLOAD_CHUNK_BYTES);
        buf.resize(start + want, 0);
        rd.read_exact(&mut buf[start..]).await?;
    }
    Ok(Bytes::from(buf))
}
