//! One TCP connection to one TC node: a reader task that decodes frames and
//! routes them (responses to their waiting callers, the TC's requests to
//! [`super::inbound`]), a writer task that owns the write half and sends a
//! heartbeat when nothing was written for the heartbeat interval, and the
//! table of requests in flight, matched to responses by request id.
//!
//! A request in flight that the writer has not started to write when the
//! connection dies fails with [`CallError::NotSent`] (safe to send to
//! another node); one that was (maybe partly) written fails with
//! [`CallError::Lost`] (outcome unknown).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rhea_txn::protocol::{Frame, FrameBody, Message, decode_frame, encode_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, timeout, timeout_at};
use tracing::{debug, trace, warn};

use super::Inner;
use super::inbound;

/// Bytes asked of the socket per read.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Most bytes the writer gathers from its queue into one socket write.
const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// Why a request got no response.
#[derive(Debug)]
pub(crate) enum CallError {
    /// Never written to the socket: may be sent elsewhere.
    NotSent(String),
    /// Written (or maybe partly written), then the connection died: the
    /// outcome is unknown.
    Lost(String),
    /// No response before the deadline.
    Timeout,
}

/// A frame queued for the writer.
pub(crate) struct Outgoing {
    /// The request id of a tracked request (marked written before writing).
    tracked: Option<u32>,
    bytes: Vec<u8>,
}

struct Pending {
    reply: oneshot::Sender<Result<Message, CallError>>,
    written: bool,
}

#[derive(Default)]
struct State {
    closed: bool,
    pending: HashMap<u32, Pending>,
}

/// One connection to one TC node.
pub(crate) struct Conn {
    pub(crate) addr: String,
    out: mpsc::Sender<Outgoing>,
    state: Mutex<State>,
    closed: watch::Sender<bool>,
}

impl Conn {
    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked while holding
        // it; the map itself is still consistent.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Resolves once the connection is closed.
    pub(crate) async fn wait_closed(&self) {
        let mut rx = self.closed.subscribe();
        // Err only if the sender is gone, which it is not while `self` lives.
        let _ = rx.wait_for(|closed| *closed).await;
    }

    /// Closes the connection (idempotent): the reader and writer stop, every
    /// request in flight fails.
    pub(crate) fn close(&self, reason: &str) {
        let pending = {
            let mut state = self.state();
            if state.closed {
                return;
            }
            state.closed = true;
            std::mem::take(&mut state.pending)
        };
        debug!(addr = %self.addr, reason, in_flight = pending.len(), "closing TC connection");
        for (_, p) in pending {
            let err = if p.written {
                CallError::Lost(format!("connection to TC {} closed: {reason}", self.addr))
            } else {
                CallError::NotSent(format!("connection to TC {} closed: {reason}", self.addr))
            };
            let _ = p.reply.send(Err(err));
        }
        self.closed.send_replace(true);
    }

    /// Delivers a response to the request waiting for it.
    fn complete(&self, request_id: u32, msg: Message) {
        let pending = self.state().pending.remove(&request_id);
        match pending {
            Some(p) => {
                let _ = p.reply.send(Ok(msg));
            }
            None => debug!(
                addr = %self.addr,
                request_id,
                message = msg.name(),
                "response to no request in flight (timed out?)"
            ),
        }
    }

    /// Marks a request as handed to the socket; false if nobody waits for
    /// it any more (then it is not written at all).
    fn mark_written(&self, request_id: u32) -> bool {
        match self.state().pending.get_mut(&request_id) {
            Some(p) => {
                p.written = true;
                true
            }
            None => false,
        }
    }

    fn forget(&self, request_id: u32) {
        self.state().pending.remove(&request_id);
    }

    /// Sends `msg` as a request and waits for its response until
    /// `deadline`.
    pub(crate) async fn call(
        &self,
        inner: &Inner,
        msg: Message,
        deadline: Instant,
    ) -> Result<Message, CallError> {
        let request_id = inner.next_request_id();
        let mut bytes = Vec::new();
        if let Err(e) = encode_frame(&Frame::new(request_id, FrameBody::Request(msg)), &mut bytes) {
            return Err(CallError::NotSent(format!("cannot encode request: {e}")));
        }
        let (reply, rx) = oneshot::channel();
        {
            let mut state = self.state();
            if state.closed {
                return Err(CallError::NotSent(format!(
                    "connection to TC {} closed",
                    self.addr
                )));
            }
            state.pending.insert(
                request_id,
                Pending {
                    reply,
                    written: false,
                },
            );
        }
        let queued = Outgoing {
            tracked: Some(request_id),
            bytes,
        };
        match timeout_at(deadline, self.out.send(queued)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                self.forget(request_id);
                return Err(CallError::NotSent(format!(
                    "connection to TC {} closed",
                    self.addr
                )));
            }
            Err(_) => {
                self.forget(request_id);
                return Err(CallError::Timeout);
            }
        }
        match timeout_at(deadline, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(CallError::Lost(format!(
                "connection to TC {} dropped the request",
                self.addr
            ))),
            Err(_) => {
                self.forget(request_id);
                Err(CallError::Timeout)
            }
        }
    }

    /// Queues a frame that expects no answer (a response, a heartbeat).
    pub(crate) async fn send(&self, frame: Frame) {
        let mut bytes = Vec::new();
        if let Err(e) = encode_frame(&frame, &mut bytes) {
            warn!(addr = %self.addr, error = %e, "cannot encode frame for the TC; dropped");
            return;
        }
        let queued = Outgoing {
            tracked: None,
            bytes,
        };
        if self.out.send(queued).await.is_err() {
            debug!(addr = %self.addr, request_id = frame.request_id, "connection closed; frame dropped");
        }
    }

    /// Like [`send`](Self::send) without waiting for room in the queue
    /// (dropped if full); for heartbeat answers from the reader.
    fn try_send(&self, frame: &Frame) {
        let mut bytes = Vec::new();
        if encode_frame(frame, &mut bytes).is_ok() {
            let _ = self.out.try_send(Outgoing {
                tracked: None,
                bytes,
            });
        }
    }
}

/// Starts the reader and writer of a new connection.
pub(crate) fn start(
    inner: &Arc<Inner>,
    addr: String,
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
) -> Arc<Conn> {
    let (out, rx) = mpsc::channel(inner.opts.write_queue_frames.max(1));
    let (closed, _) = watch::channel(false);
    let conn = Arc::new(Conn {
        addr,
        out,
        state: Mutex::new(State::default()),
        closed,
    });
    tokio::spawn(writer(inner.clone(), conn.clone(), wr, rx));
    tokio::spawn(reader(inner.clone(), conn.clone(), rd));
    conn
}

async fn writer(
    inner: Arc<Inner>,
    conn: Arc<Conn>,
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Outgoing>,
) {
    let heartbeat = Duration::from_millis(inner.opts.heartbeat_interval_ms.max(1));
    let mut closed = conn.closed.subscribe();
    let mut batch = Vec::with_capacity(WRITE_BATCH_BYTES);
    loop {
        let first = tokio::select! {
            _ = closed.wait_for(|c| *c) => break,
            next = timeout(heartbeat, rx.recv()) => match next {
                Ok(Some(item)) => Some(item),
                Ok(None) => break,
                Err(_) => None,
            },
        };
        batch.clear();
        match first {
            Some(item) => {
                add_to_batch(&conn, item, &mut batch);
                while batch.len() < WRITE_BATCH_BYTES {
                    match rx.try_recv() {
                        Ok(item) => add_to_batch(&conn, item, &mut batch),
                        Err(_) => break,
                    }
                }
            }
            None => {
                // Nothing written for a heartbeat interval: ping (Seata's
                // client does so on write idle).
                let ping = Frame::new(inner.next_request_id(), FrameBody::HeartbeatRequest);
                if encode_frame(&ping, &mut batch).is_err() {
                    continue;
                }
                trace!(addr = %conn.addr, "heartbeat");
            }
        }
        if batch.is_empty() {
            continue;
        }
        if let Err(e) = wr.write_all(&batch).await {
            warn!(addr = %conn.addr, error = %e, "write to TC failed");
            conn.close("write failed");
            break;
        }
    }
    conn.close("writer stopped");
    // Requests still queued were never written: fail them as not sent.
    rx.close();
    while let Ok(item) = rx.try_recv() {
        drop(item);
    }
    let _ = wr.shutdown().await;
}

fn add_to_batch(conn: &Conn, item: Outgoing, batch: &mut Vec<u8>) {
    if let Some(id) = item.tracked
        && !conn.mark_written(id)
    {
        return;
    }
    batch.extend_from_slice(&item.bytes);
}

async fn reader(inner: Arc<Inner>, conn: Arc<Conn>, mut rd: OwnedReadHalf) {
    let read_idle = Duration::from_millis(inner.opts.read_idle_timeout_ms.max(1));
    let mut closed = conn.closed.subscribe();
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK_BYTES);
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    loop {
        let read = tokio::select! {
            _ = closed.wait_for(|c| *c) => return,
            read = timeout(read_idle, rd.read(&mut chunk)) => read,
        };
        let n = match read {
            Err(_) => {
                warn!(addr = %conn.addr, read_idle_ms = inner.opts.read_idle_timeout_ms, "nothing read from TC: closing");
                conn.close("read idle");
                return;
            }
            Ok(Ok(0)) => {
                debug!(addr = %conn.addr, "TC closed the connection");
                conn.close("closed by the TC");
                return;
            }
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                warn!(addr = %conn.addr, error = %e, "read from TC failed");
                conn.close("read failed");
                return;
            }
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let mut used = 0;
        loop {
            let rest = buf.get(used..).unwrap_or_default();
            match decode_frame(rest, &inner.limits) {
                Ok(Some((frame, len))) => {
                    used += len;
                    on_frame(&inner, &conn, frame);
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(addr = %conn.addr, error = %e, "malformed frame from TC: closing the connection");
                    conn.close("malformed frame");
                    return;
                }
            }
        }
        buf.drain(..used.min(buf.len()));
    }
}

fn on_frame(inner: &Arc<Inner>, conn: &Arc<Conn>, frame: Frame) {
    let request_id = frame.request_id;
    match frame.body {
        FrameBody::Response(Message::BatchResultMessage(batch)) => {
            // Answers to merged requests, paired with their ids. This client
            // sends no merged requests, but accepts their answers.
            for (msg, id) in batch.result_messages.into_iter().zip(batch.msg_ids) {
                conn.complete(id, msg);
            }
        }
        FrameBody::Response(msg) => conn.complete(request_id, msg),
        FrameBody::Request(msg) => inbound::on_request(inner, conn, request_id, msg, true),
        FrameBody::Oneway(msg) => inbound::on_request(inner, conn, request_id, msg, false),
        FrameBody::HeartbeatRequest => {
            conn.try_send(&Frame::new(request_id, FrameBody::HeartbeatResponse));
        }
        FrameBody::HeartbeatResponse => trace!(addr = %conn.addr, "heartbeat answered"),
    }
}
