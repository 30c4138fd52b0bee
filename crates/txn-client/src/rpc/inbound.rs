//! The TC's requests to this client, Seata's `DefaultRMHandler`:
//!
//! * `BranchCommitRequest` / `BranchRollbackRequest`: run the registered
//!   [`ResourceManager`](crate::ResourceManager) of the branch's resource in
//!   a spawned task and answer with the branch status it reports, in a
//!   response frame with the request's id. Without a resource manager for
//!   the resource the answer is `Failed` with a retryable status, so that
//!   the TC tries again later (or on another connection).
//! * `UndoLogDeleteRequest` (oneway): logged and ignored; branch
//!   implementations purge their own undo logs.
//! * `MergedWarpMessage`: each request inside is handled in order and the
//!   results are answered together as a `MergeResultMessage`.
//!
//! Concurrency is bounded: at most `branch_call_concurrency` resource
//! manager calls run at once, and at most `max_queued_branch_calls` wait;
//! beyond that a call is answered at once with a retryable failure.

use std::sync::Arc;

use rhea_txn::protocol::{
    BranchEndRequest, BranchEndResponse, BranchStatus, Frame, FrameBody, MergeResultMessage,
    Message, ResultCode, TransactionExceptionCode,
};
use tracing::{debug, warn};

use super::Inner;
use super::conn::Conn;

/// Phase two, direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase2 {
    Commit,
    Rollback,
}

impl Phase2 {
    fn retryable_failure(self) -> BranchStatus {
        match self {
            Phase2::Commit => BranchStatus::PhaseTwoCommitFailedRetryable,
            Phase2::Rollback => BranchStatus::PhaseTwoRollbackFailedRetryable,
        }
    }

    fn response(self, r: BranchEndResponse) -> Message {
        match self {
            Phase2::Commit => Message::BranchCommitResponse(r),
            Phase2::Rollback => Message::BranchRollbackResponse(r),
        }
    }
}

fn failure(phase: Phase2, req: &BranchEndRequest, msg: String) -> Message {
    phase.response(BranchEndResponse {
        result_code: ResultCode::Failed,
        msg,
        transaction_exception_code: TransactionExceptionCode::Unknown,
        xid: req.xid.clone(),
        branch_id: req.branch_id,
        branch_status: phase.retryable_failure(),
    })
}

/// Handles one request (or oneway message) from the TC; called by the
/// reader, never blocks.
pub(crate) fn on_request(
    inner: &Arc<Inner>,
    conn: &Arc<Conn>,
    request_id: u32,
    msg: Message,
    expects_reply: bool,
) {
    match msg {
        Message::BranchCommitRequest(req) => {
            on_branch_end(inner, conn, request_id, Phase2::Commit, req, expects_reply)
        }
        Message::BranchRollbackRequest(req) => on_branch_end(
            inner,
            conn,
            request_id,
            Phase2::Rollback,
            req,
            expects_reply,
        ),
        Message::UndoLogDeleteRequest(req) => debug!(
            addr = %conn.addr,
            resource_id = %req.resource_id,
            save_days = req.save_days,
            "undo log delete request from TC ignored"
        ),
        Message::MergedWarpMessage(merged) => {
            let Ok(permit) = inner.branch_queue.clone().try_acquire_owned() else {
                warn!(addr = %conn.addr, "too many phase-two calls queued; merged request dropped");
                return;
            };
            let (inner, conn) = (inner.clone(), conn.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let mut results = Vec::with_capacity(merged.msgs.len().min(1024));
                for msg in merged.msgs {
                    match msg {
                        Message::BranchCommitRequest(req) => {
                            results.push(run_branch_end(&inner, Phase2::Commit, req).await);
                        }
                        Message::BranchRollbackRequest(req) => {
                            results.push(run_branch_end(&inner, Phase2::Rollback, req).await);
                        }
                        Message::UndoLogDeleteRequest(_) => {
                            debug!("undo log delete request from TC ignored");
                        }
                        other => warn!(
                            addr = %conn.addr,
                            message = other.name(),
                            "unexpected message inside a merged request from TC ignored"
                        ),
                    }
                }
                let reply = Message::MergeResultMessage(MergeResultMessage { msgs: results });
                conn.send(Frame::new(request_id, FrameBody::Response(reply)))
                    .await;
            });
        }
        other => warn!(
            addr = %conn.addr,
            request_id,
            message = other.name(),
            "unexpected request from TC ignored"
        ),
    }
}

fn on_branch_end(
    inner: &Arc<Inner>,
    conn: &Arc<Conn>,
    request_id: u32,
    phase: Phase2,
    req: BranchEndRequest,
    expects_reply: bool,
) {
    let conn = conn.clone();
    let Ok(permit) = inner.branch_queue.clone().try_acquire_owned() else {
        warn!(
            addr = %conn.addr,
            xid = %req.xid,
            branch_id = req.branch_id,
            "too many phase-two calls queued; answering a retryable failure"
        );
        if expects_reply {
            let reply = failure(phase, &req, "resource manager busy".into());
            tokio::spawn(async move {
                conn.send(Frame::new(request_id, FrameBody::Response(reply)))
                    .await;
            });
        }
        return;
    };
    let inner = inner.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let reply = run_branch_end(&inner, phase, req).await;
        if expects_reply {
            conn.send(Frame::new(request_id, FrameBody::Response(reply)))
                .await;
        }
    });
}

/// Runs one phase-two call and builds its answer.
async fn run_branch_end(inner: &Arc<Inner>, phase: Phase2, req: BranchEndRequest) -> Message {
    let Some(rm) = inner.resource(&req.resource_id) else {
        warn!(
            xid = %req.xid,
            branch_id = req.branch_id,
            resource_id = %req.resource_id,
            ?phase,
            "phase-two call for a resource with no registered resource manager"
        );
        let msg = format!(
            "no resource manager registered for resource {}",
            req.resource_id
        );
        return failure(phase, &req, msg);
    };
    let Ok(_exec) = inner.branch_exec.acquire().await else {
        return failure(phase, &req, "client shutting down".into());
    };
    if rm.branch_type() != req.branch_type {
        debug!(
            resource_id = %req.resource_id,
            expected = %rm.branch_type(),
            got = %req.branch_type,
            "phase-two call with another branch type than the resource manager's"
        );
    }
    // Run the resource manager in its own task so that a panic in it becomes
    // a failure answer instead of silence.
    let call = {
        let req = req.clone();
        tokio::spawn(async move {
            let data = Some(req.application_data.as_str()).filter(|d| !d.is_empty());
            match phase {
                Phase2::Commit => rm.branch_commit(&req.xid, req.branch_id, data).await,
                Phase2::Rollback => rm.branch_rollback(&req.xid, req.branch_id, data).await,
            }
        })
    };
    match call.await {
        Ok(status) => {
            debug!(xid = %req.xid, branch_id = req.branch_id, ?phase, %status, "phase two done");
            phase.response(BranchEndResponse {
                result_code: ResultCode::Success,
                msg: String::new(),
                transaction_exception_code: TransactionExceptionCode::Unknown,
                xid: req.xid,
                branch_id: req.branch_id,
                branch_status: status,
            })
        }
        Err(e) => {
            warn!(xid = %req.xid, branch_id = req.branch_id, ?phase, error = %e, "resource manager failed");
            failure(phase, &req, format!("resource manager failed: {e}"))
        }
    }
}
