//! The TC's Seata-protocol listener: one task per client connection reads
//! frames, answers requests (each on its own task, at most
//! `max_in_flight_per_connection` per connection), answers heartbeats, and
//! hands responses to phase-two calls waiting for them; one writer task per
//! connection owns the socket's write half.
//!
//! A malformed or oversize frame closes its connection with a warning; it
//! never affects other connections. Merged requests (`MergedWarpMessage`)
//! are answered with one `MergeResultMessage`, which Seata clients 1.2.0
//! and later all accept.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::registry::ClientConn;
use super::service::{Coordinator, TcError};
use crate::protocol::{
    BranchRegisterResponse, Frame, FrameBody, GlobalBeginResponse, GlobalEndResponse,
    GlobalLockQueryResponse, GlobalStatus, IdentifyResponse, MergeResultMessage, Message,
    ResultCode, TransactionExceptionCode as Code, TransactionResponse, decode_frame, encode_frame,
};

/// Version the TC reports when clients register.
pub const TC_VERSION: &str = "1.2.0";
/// Global transaction timeout used when `GlobalBegin` carries none (ms).
pub const DEFAULT_GLOBAL_TIMEOUT_MS: u64 = 60_000;
/// Bytes read from a socket at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;

pub(crate) async fn accept_loop(
    tc: Coordinator,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let next_id = AtomicU64::new(1);
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            a = listener.accept() => a,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "TC accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if tc.0.registry.len() >= tc.config().max_connections {
            warn!(%peer, limit = tc.config().max_connections, "TC connection refused: max_connections reached");
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        conns.spawn(connection(tc.clone(), stream, peer.to_string(), id));
    }
    conns.abort_all();
}

async fn connection(tc: Coordinator, stream: TcpStream, peer: String, id: u64) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Frame>(tc.config().write_queue_frames);
    let conn = Arc::new(ClientConn::new(id, peer.clone(), tx));
    tc.0.registry.add(conn.clone());
    debug!(%peer, "TC client connected");
    let writer = tokio::spawn(async move {
        let mut buf = Vec::with_capacity(4096);
        while let Some(frame) = rx.recv().await {
            buf.clear();
            if let Err(e) = encode_frame(&frame, &mut buf) {
                warn!(error = %e, "TC could not encode a frame; dropped");
                continue;
            }
            // Write whatever else is queued in the same syscall.
            while buf.len() < READ_CHUNK_BYTES {
                match rx.try_recv() {
                    Ok(f) => {
                        if let Err(e) = encode_frame(&f, &mut buf) {
                            warn!(error = %e, "TC could not encode a frame; dropped");
                        }
                    }
                    Err(_) => break,
                }
            }
            if wr.write_all(&buf).await.is_err() {
                return;
            }
        }
    });
    let permits = Arc::new(Semaphore::new(tc.config().max_in_flight_per_connection));
    let limits = tc.config().frame_limits;
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK_BYTES);
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    'read: loop {
        loop {
            match decode_frame(&buf, &limits) {
                Ok(Some((frame, used))) => {
                    buf.drain(..used);
                    dispatch(&tc, &conn, &permits, frame).await;
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(%peer, error = %e, "malformed frame from TC client; closing the connection");
                    break 'read;
                }
            }
        }
        match rd.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) => {
                debug!(%peer, error = %e, "TC client read failed");
                break;
            }
        }
    }
    tc.0.registry.remove(id);
    writer.abort();
    debug!(%peer, "TC client disconnected");
}

async fn dispatch(
    tc: &Coordinator,
    conn: &Arc<ClientConn>,
    permits: &Arc<Semaphore>,
    frame: Frame,
) {
    let request_id = frame.request_id;
    match frame.body {
        FrameBody::HeartbeatRequest => {
            let _ = conn
                .out
                .send(Frame::new(request_id, FrameBody::HeartbeatResponse))
                .await;
        }
        FrameBody::HeartbeatResponse => {}
        FrameBody::Response(msg) => {
            if !conn.complete(request_id, msg) {
                debug!(peer = %conn.peer, request_id, "response to no pending request");
            }
        }
        FrameBody::Request(msg) | FrameBody::Oneway(msg) => {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let tc = tc.clone();
            let conn = conn.clone();
            tokio::spawn(async move {
                let reply = handle(&tc, &conn, msg).await;
                if let Some(reply) = reply {
                    let _ = conn
                        .out
                        .send(Frame::new(request_id, FrameBody::Response(reply)))
                        .await;
                }
                drop(permit);
            });
        }
    }
}

async fn handle(tc: &Coordinator, conn: &Arc<ClientConn>, msg: Message) -> Option<Message> {
    if let Message::MergedWarpMessage(m) = msg {
        let mut set = JoinSet::new();
        for (i, sub) in m.msgs.into_iter().enumerate() {
            let tc = tc.clone();
            let conn = conn.clone();
            set.spawn(async move { (i, handle_one(&tc, &conn, sub).await) });
        }
        let mut answers: Vec<(usize, Option<Message>)> = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(a) = r {
                answers.push(a);
            }
        }
        answers.sort_by_key(|(i, _)| *i);
        let msgs: Vec<Message> = answers.into_iter().filter_map(|(_, a)| a).collect();
        return Some(Message::MergeResultMessage(MergeResultMessage { msgs }));
    }
    handle_one(tc, conn, msg).await
}

fn failure(e: &TcError, fallback: Code) -> (ResultCode, String, Code) {
    (
        ResultCode::Failed,
        e.to_string(),
        e.exception_code(fallback),
    )
}

fn global_end(r: Result<GlobalStatus, TcError>, fallback: Code) -> GlobalEndResponse {
    match r {
        Ok(global_status) => GlobalEndResponse {
            result_code: ResultCode::Success,
            msg: String::new(),
            transaction_exception_code: Code::Unknown,
            global_status,
        },
        Err(e) => {
            let (result_code, msg, code) = failure(&e, fallback);
            GlobalEndResponse {
                result_code,
                msg,
                transaction_exception_code: code,
                global_status: GlobalStatus::UnKnown,
            }
        }
    }
}

async fn handle_one(tc: &Coordinator, conn: &Arc<ClientConn>, msg: Message) -> Option<Message> {
    let info = conn.info();
    Some(match msg {
        Message::RegisterTmRequest(r) => {
            set_info(
                conn,
                &r.application_id,
                &r.transaction_service_group,
                &r.version,
            );
            info!(peer = %conn.peer, app = %r.application_id, "TM registered");
            Message::RegisterTmResponse(IdentifyResponse {
                identified: true,
                version: TC_VERSION.into(),
            })
        }
        Message::RegisterRmRequest(r) => {
            set_info(
                conn,
                &r.application_id,
                &r.transaction_service_group,
                &r.version,
            );
            tc.0.registry.register_resources(conn.id, &r.resource_ids);
            info!(peer = %conn.peer, app = %r.application_id, resources = %r.resource_ids, "RM registered");
            Message::RegisterRmResponse(IdentifyResponse {
                identified: true,
                version: TC_VERSION.into(),
            })
        }
        Message::GlobalBeginRequest(r) => {
            let timeout_ms = u64::try_from(r.timeout)
                .ok()
                .filter(|t| *t > 0)
                .unwrap_or(DEFAULT_GLOBAL_TIMEOUT_MS);
            let res = tc
                .begin(
                    &info.application_id,
                    &info.transaction_service_group,
                    &r.transaction_name,
                    timeout_ms,
                )
                .await;
            Message::GlobalBeginResponse(match res {
                Ok(xid) => GlobalBeginResponse {
                    result_code: ResultCode::Success,
                    msg: String::new(),
                    transaction_exception_code: Code::Unknown,
                    xid,
                    extra_data: String::new(),
                },
                Err(e) => {
                    let (result_code, msg, code) = failure(&e, Code::BeginFailed);
                    GlobalBeginResponse {
                        result_code,
                        msg,
                        transaction_exception_code: code,
                        xid: String::new(),
                        extra_data: String::new(),
                    }
                }
            })
        }
        Message::BranchRegisterRequest(r) => {
            let res = tc
                .branch_register(
                    &r.xid,
                    r.branch_type,
                    &r.resource_id,
                    &r.lock_key,
                    &info.client_id,
                    &r.application_data,
                )
                .await;
            Message::BranchRegisterResponse(match res {
                Ok(branch_id) => BranchRegisterResponse {
                    result_code: ResultCode::Success,
                    msg: String::new(),
                    transaction_exception_code: Code::Unknown,
                    branch_id,
                },
                Err(e) => {
                    let (result_code, msg, code) = failure(&e, Code::BranchRegisterFailed);
                    BranchRegisterResponse {
                        result_code,
                        msg,
                        transaction_exception_code: code,
                        branch_id: 0,
                    }
                }
            })
        }
        Message::BranchReportRequest(r) => {
            let res = tc
                .branch_report(&r.xid, r.branch_id, r.status, &r.application_data)
                .await;
            Message::BranchReportResponse(match res {
                Ok(()) => TransactionResponse {
                    result_code: ResultCode::Success,
                    msg: String::new(),
                    transaction_exception_code: Code::Unknown,
                },
                Err(e) => {
                    let (result_code, msg, code) = failure(&e, Code::BranchReportFailed);
                    TransactionResponse {
                        result_code,
                        msg,
                        transaction_exception_code: code,
                    }
                }
            })
        }
        Message::GlobalCommitRequest(r) => {
            Message::GlobalCommitResponse(global_end(tc.commit(&r.xid).await, Code::Unknown))
        }
        Message::GlobalRollbackRequest(r) => {
            Message::GlobalRollbackResponse(global_end(tc.rollback(&r.xid).await, Code::Unknown))
        }
        Message::GlobalStatusRequest(r) => {
            Message::GlobalStatusResponse(global_end(tc.status(&r.xid).await, Code::Unknown))
        }
        Message::GlobalReportRequest(r) => {
            let res = match r.global_status {
                Some(s) => tc.global_report(&r.xid, s).await,
                None => Err(TcError::Invalid("GlobalReport without a status".into())),
            };
            Message::GlobalReportResponse(global_end(res, Code::Unknown))
        }
        Message::GlobalLockQueryRequest(r) => {
            let res = tc.lock_query(&r.xid, &r.resource_id, &r.lock_key).await;
            Message::GlobalLockQueryResponse(match res {
                Ok(lockable) => GlobalLockQueryResponse {
                    result_code: ResultCode::Success,
                    msg: String::new(),
                    transaction_exception_code: Code::Unknown,
                    lockable,
                },
                Err(e) => {
                    let (result_code, msg, code) = failure(&e, Code::LockableCheckFailed);
                    GlobalLockQueryResponse {
                        result_code,
                        msg,
                        transaction_exception_code: code,
                        lockable: false,
                    }
                }
            })
        }
        other => {
            debug!(peer = %conn.peer, message = ?other, "TC ignores a message it does not serve");
            return None;
        }
    })
}

fn set_info(conn: &ClientConn, application_id: &str, group: &str, version: &str) {
    let mut i = super::machine::lock_shared(&conn.info);
    i.application_id = application_id.to_owned();
    i.transaction_service_group = group.to_owned();
    i.version = version.to_owned();
    i.client_id = format!("{application_id}:{}", conn.peer);
}
