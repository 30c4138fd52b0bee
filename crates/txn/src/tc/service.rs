//! The coordinator's request handling: what each Seata request does to the
//! session and lock partitions.
//!
//! A request may arrive at any node. Commands go to the partition's leader
//! through the node's router (locally, or forwarded with `RHEA.EXEC`), so
//! nothing here depends on which node leads what. Ids are made locally:
//! `make_transaction_id(node_id, counter)` where the counter follows the
//! clock (`unix_ms * 64`) so that a restarted node never repeats an id
//! unless it made more than 64 ids per millisecond on average.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rhea_kv::{KvError, Router};
use rhea_raft::Role;
use tokio::sync::{Notify, Semaphore};
use tracing::{debug, warn};

use super::config::{TcConfig, lock_group, session_group};
use super::machine::lock_shared;
use super::registry::Registry;
use crate::coordinator::{
    AcquisitionOutcome, AcquisitionStep, CodecError, CoordinatorError, LockAcquisition, LockAnswer,
    LockCommand, LockRefusal, LockRelease, LockWork, MAX_TRANSACTION_ID_COUNTER, PhaseTwoAction,
    PhaseTwoWork, ReleaseScope, SessionAnswer, SessionCommand, SessionPartition,
    make_transaction_id, make_xid, parse_lock_key, parse_xid, plan_by_partition,
    session_partition_of,
};
use crate::protocol::{
    BranchEndRequest, BranchStatus, BranchType, GlobalStatus, Message, ResultCode,
    TransactionExceptionCode,
};

/// Why a coordinator operation failed, with the Seata code it is answered
/// with.
#[derive(Debug, thiserror::Error)]
pub enum TcError {
    #[error(transparent)]
    Refused(#[from] CoordinatorError),
    #[error("lock conflict: row {row_key} is held by {holder_xid}")]
    LockConflict { row_key: String, holder_xid: String },
    #[error("the branch's locks could not be taken: {0}")]
    LockRefused(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("store: {0}")]
    Store(#[from] KvError),
    #[error("undecodable partition answer: {0}")]
    Codec(#[from] CodecError),
    #[error("unexpected partition answer: {0}")]
    Unexpected(String),
}

impl TcError {
    pub fn exception_code(&self, fallback: TransactionExceptionCode) -> TransactionExceptionCode {
        match self {
            TcError::Refused(e) => e.exception_code(),
            TcError::LockConflict { .. } => TransactionExceptionCode::LockKeyConflict,
            TcError::LockRefused(_) => TransactionExceptionCode::FailedLockGlobalTransaction,
            _ => fallback,
        }
    }
}

/// Ids drawn at most per `GlobalBegin` looking for one whose session
/// partition this node leads (ids are plentiful: 64 per ms).
const BEGIN_ID_TRIES: usize = 8;

/// Milliseconds since the epoch, never going back within the process.
pub(crate) fn now_ms() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let prev = LAST.fetch_max(wall, Ordering::Relaxed);
    prev.max(wall)
}

/// Transaction and branch ids.
struct IdGenerator {
    node_id: u16,
    counter: AtomicU64,
}

impl IdGenerator {
    fn next(&self) -> u64 {
        let floor = now_ms().saturating_mul(64) & MAX_TRANSACTION_ID_COUNTER;
        let mut cur = self.counter.load(Ordering::Relaxed);
        loop {
            let next = (cur + 1).max(floor) & MAX_TRANSACTION_ID_COUNTER;
            match self.counter.compare_exchange_weak(
                cur,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return make_transaction_id(self.node_id, next),
                Err(c) => cur = c,
            }
        }
    }
}

pub(crate) struct Inner {
    pub cfg: TcConfig,
    pub router: Router,
    /// This node's replicas of the session partitions (read by the worker on
    /// the partitions it leads).
    pub sessions: Vec<Arc<Mutex<SessionPartition>>>,
    pub registry: Registry,
    ids: IdGenerator,
    pub wake: Notify,
    pub phase_two_permits: Arc<Semaphore>,
    /// Phase-two items and lock releases being worked on by this node.
    pub in_flight: Mutex<HashSet<(String, i64)>>,
    pub releases_in_flight: Mutex<HashSet<(u32, u64)>>,
}

/// A node's coordinator: cheap to clone.
#[derive(Clone)]
pub struct Coordinator(pub(crate) Arc<Inner>);

impl Coordinator {
    pub(crate) fn new(
        cfg: TcConfig,
        router: Router,
        sessions: Vec<Arc<Mutex<SessionPartition>>>,
    ) -> Coordinator {
        let permits = Arc::new(Semaphore::new(cfg.phase_two_concurrency));
        Coordinator(Arc::new(Inner {
            ids: IdGenerator {
                node_id: cfg.node_id,
                counter: AtomicU64::new(0),
            },
            cfg,
            router,
            sessions,
            registry: Registry::default(),
            wake: Notify::new(),
            phase_two_permits: permits,
            in_flight: Mutex::new(HashSet::new()),
            releases_in_flight: Mutex::new(HashSet::new()),
        }))
    }

    pub fn config(&self) -> &TcConfig {
        &self.0.cfg
    }

    fn session_partition(&self, xid: &str) -> Result<(u32, u64), TcError> {
        let (_, _, tid) =
            parse_xid(xid).ok_or_else(|| TcError::Invalid(format!("malformed XID {xid:?}")))?;
        Ok((
            session_partition_of(tid, self.0.cfg.session_partitions),
            tid,
        ))
    }

    pub(crate) async fn session(
        &self,
        partition: u32,
        cmd: &SessionCommand,
    ) -> Result<SessionAnswer, TcError> {
        let payload = Bytes::from(cmd.encode());
        let answer = self
            .0
            .router
            .execute_group(session_group(partition), &payload)
            .await?;
        Ok(SessionAnswer::decode(&answer)?)
    }

    pub(crate) async fn lock(
        &self,
        partition: u32,
        cmd: &LockCommand,
    ) -> Result<LockAnswer, TcError> {
        let payload = Bytes::from(cmd.encode());
        let answer = self
            .0
            .router
            .execute_group(lock_group(partition), &payload)
            .await?;
        Ok(LockAnswer::decode(&answer)?)
    }

    /// True when this node leads session partition `p` (by its own view).
    pub(crate) fn leads_session(&self, p: u32) -> bool {
        self.0
            .router
            .local()
            .and_then(|s| s.driver().role_hint(session_group(p)))
            .is_some_and(|(role, _, _)| role == Role::Leader)
    }

    /// `GlobalBegin`.
    pub async fn begin(
        &self,
        application_id: &str,
        transaction_service_group: &str,
        name: &str,
        timeout_ms: u64,
    ) -> Result<String, TcError> {
        // Prefer an id whose session partition this node leads: the XID
        // names this node, clients send the transaction's requests here
        // (the Rust client does), and its commands need no forwarding.
        let mut tid = self.0.ids.next();
        for _ in 0..BEGIN_ID_TRIES {
            if self.leads_session(session_partition_of(tid, self.0.cfg.session_partitions)) {
                break;
            }
            tid = self.0.ids.next();
        }
        let (host, port) = self.0.cfg.advertise_host_port();
        let xid = make_xid(&host, port, tid);
        let p = session_partition_of(tid, self.0.cfg.session_partitions);
        let cmd = SessionCommand::Begin {
            xid: xid.clone(),
            transaction_id: tid,
            application_id: application_id.to_owned(),
            transaction_service_group: transaction_service_group.to_owned(),
            transaction_name: name.to_owned(),
            timeout_ms,
            application_data: String::new(),
            now_ms: now_ms(),
        };
        match self.session(p, &cmd).await? {
            SessionAnswer::Began { xid } => {
                metrics::counter!("rhea_tc_global_begin_total").increment(1);
                Ok(xid)
            }
            other => Err(refusal(other)),
        }
    }

    /// `BranchRegister`: add the branch, then take its row locks across the
    /// lock partitions, all or none; a refusal cancels the registration.
    pub async fn branch_register(
        &self,
        xid: &str,
        branch_type: BranchType,
        resource_id: &str,
        lock_key: &str,
        client_id: &str,
        application_data: &str,
    ) -> Result<i64, TcError> {
        let (p, tid) = self.session_partition(xid)?;
        let branch_id = i64::try_from(self.0.ids.next())
            .map_err(|_| TcError::Invalid("branch id out of range".into()))?;
        let cmd = SessionCommand::RegisterBranch {
            xid: xid.to_owned(),
            branch_id,
            resource_id: resource_id.to_owned(),
            branch_type,
            lock_key: lock_key.to_owned(),
            client_id: client_id.to_owned(),
            application_data: application_data.to_owned(),
        };
        let plan = match self.session(p, &cmd).await? {
            SessionAnswer::BranchRegistered { lock_plan, .. } => lock_plan,
            other => return Err(refusal(other)),
        };
        if plan.is_empty() {
            metrics::counter!("rhea_tc_branch_register_total").increment(1);
            return Ok(branch_id);
        }
        let mut acq = LockAcquisition::new(xid, tid, branch_id, plan, now_ms());
        let outcome = loop {
            match acq.step() {
                AcquisitionStep::Done(o) => break Ok(o),
                AcquisitionStep::Send { partition, command } => {
                    match self.lock(partition, &command).await {
                        Ok(a) => acq.on_answer(&a),
                        Err(e) => break Err(e),
                    }
                }
            }
        };
        match outcome {
            Ok(AcquisitionOutcome::Acquired) => {
                metrics::counter!("rhea_tc_branch_register_total").increment(1);
                Ok(branch_id)
            }
            Ok(AcquisitionOutcome::Refused(r)) => {
                self.cancel_branch(p, xid, branch_id).await;
                metrics::counter!("rhea_tc_lock_conflicts_total").increment(1);
                Err(match r {
                    LockRefusal::Conflict(h) => TcError::LockConflict {
                        row_key: h.row_key,
                        holder_xid: h.xid,
                    },
                    other => TcError::LockRefused(format!("{other:?}")),
                })
            }
            Err(e) => {
                // Partway: whatever was taken is released by the cancel (or,
                // if that fails too, by the session's rollback).
                self.cancel_branch(p, xid, branch_id).await;
                Err(e)
            }
        }
    }

    async fn cancel_branch(&self, p: u32, xid: &str, branch_id: i64) {
        let cmd = SessionCommand::CancelBranchRegistration {
            xid: xid.to_owned(),
            branch_id,
        };
        match self.session(p, &cmd).await {
            Ok(a) => self.do_lock_work(p, a.lock_work()).await,
            Err(e) => {
                warn!(xid, branch_id, error = %e, "cancelling a branch registration failed; the session's end releases its locks")
            }
        }
    }

    /// `BranchReport`.
    pub async fn branch_report(
        &self,
        xid: &str,
        branch_id: i64,
        status: BranchStatus,
        application_data: &str,
    ) -> Result<(), TcError> {
        let (p, _) = self.session_partition(xid)?;
        let cmd = SessionCommand::ReportBranch {
            xid: xid.to_owned(),
            branch_id,
            status,
            application_data: application_data.to_owned(),
        };
        match self.session(p, &cmd).await? {
            SessionAnswer::BranchReported => Ok(()),
            other => Err(refusal(other)),
        }
    }

    /// `GlobalLockQuery`: can `xid` (or no transaction) lock these rows?
    pub async fn lock_query(
        &self,
        xid: &str,
        resource_id: &str,
        lock_key: &str,
    ) -> Result<bool, TcError> {
        let tid = parse_xid(xid).map(|(_, _, t)| t).unwrap_or(0);
        let rows = parse_lock_key(resource_id, lock_key, &self.0.cfg.session.limits.lock_keys)
            .map_err(|e| TcError::Invalid(e.to_string()))?;
        for part in plan_by_partition(rows, self.0.cfg.lock_partitions) {
            let cmd = LockCommand::Query {
                transaction_id: tid,
                rows: part.rows,
            };
            match self.lock(part.partition, &cmd).await? {
                LockAnswer::Lockable => {}
                LockAnswer::Conflict(_) => return Ok(false),
                other => return Err(TcError::Unexpected(format!("{other:?}"))),
            }
        }
        Ok(true)
    }

    /// `GlobalCommit`: close the session; all-AT sessions become
    /// `AsyncCommitting` and answer `Committed` at once; others run phase
    /// two before answering.
    pub async fn commit(&self, xid: &str) -> Result<GlobalStatus, TcError> {
        let (p, _) = self.session_partition(xid)?;
        let cmd = SessionCommand::Commit {
            xid: xid.to_owned(),
            now_ms: now_ms(),
        };
        // The commit's row locks are released (Seata releases them at
        // commit too) after answering: the release is already durable in the
        // session partition's outbox, so answering first only shortens the
        // TM's wait; a transaction that meets the rows meanwhile retries.
        let status = match self.session(p, &cmd).await? {
            SessionAnswer::GlobalStatus { status, lock_work } => {
                if !lock_work.is_empty() {
                    let tc = self.clone();
                    tokio::spawn(async move { tc.do_lock_work(p, &lock_work).await });
                }
                status
            }
            other => return Err(refusal(other)),
        };
        metrics::counter!("rhea_tc_global_commit_total").increment(1);
        self.0.wake.notify_one();
        if matches!(
            status,
            GlobalStatus::Committing | GlobalStatus::CommitRetrying
        ) {
            return self.wait_phase_two(p, xid, status).await;
        }
        Ok(status)
    }

    /// `GlobalRollback`: close the session and run phase two; answers the
    /// status reached within `phase_two_wait_ms`.
    pub async fn rollback(&self, xid: &str) -> Result<GlobalStatus, TcError> {
        let (p, _) = self.session_partition(xid)?;
        let cmd = SessionCommand::Rollback {
            xid: xid.to_owned(),
            now_ms: now_ms(),
        };
        let status = self.global_status_answer(p, &cmd).await?;
        metrics::counter!("rhea_tc_global_rollback_total").increment(1);
        self.0.wake.notify_one();
        if matches!(
            status,
            GlobalStatus::Rollbacking | GlobalStatus::TimeoutRollbacking
        ) {
            return self.wait_phase_two(p, xid, status).await;
        }
        Ok(status)
    }

    /// `GlobalStatus`.
    pub async fn status(&self, xid: &str) -> Result<GlobalStatus, TcError> {
        let (p, _) = self.session_partition(xid)?;
        let cmd = SessionCommand::Status {
            xid: xid.to_owned(),
        };
        self.global_status_answer(p, &cmd).await
    }

    /// `GlobalReport` (saga).
    pub async fn global_report(
        &self,
        xid: &str,
        status: GlobalStatus,
    ) -> Result<GlobalStatus, TcError> {
        let (p, _) = self.session_partition(xid)?;
        let cmd = SessionCommand::GlobalReport {
            xid: xid.to_owned(),
            status,
            now_ms: now_ms(),
        };
        let s = self.global_status_answer(p, &cmd).await?;
        self.0.wake.notify_one();
        Ok(s)
    }

    /// Operator: forget a stuck session and release its locks.
    pub async fn force_finish(&self, xid: &str) -> Result<GlobalStatus, TcError> {
        let (p, _) = self.session_partition(xid)?;
        let cmd = SessionCommand::ForceFinish {
            xid: xid.to_owned(),
        };
        match self.session(p, &cmd).await? {
            SessionAnswer::ForceFinished {
                previous_status,
                lock_work,
            } => {
                self.do_lock_work(p, &lock_work).await;
                Ok(previous_status)
            }
            other => Err(refusal(other)),
        }
    }

    async fn global_status_answer(
        &self,
        p: u32,
        cmd: &SessionCommand,
    ) -> Result<GlobalStatus, TcError> {
        match self.session(p, cmd).await? {
            SessionAnswer::GlobalStatus { status, lock_work } => {
                self.do_lock_work(p, &lock_work).await;
                Ok(status)
            }
            other => Err(refusal(other)),
        }
    }

    /// Wait until phase two of `xid` is no longer in its first pass (done,
    /// retrying or failed), or `phase_two_wait_ms` passed; answer the
    /// status then. Reads this node's replica when it leads the partition,
    /// else asks the leader.
    async fn wait_phase_two(
        &self,
        p: u32,
        xid: &str,
        mut status: GlobalStatus,
    ) -> Result<GlobalStatus, TcError> {
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(self.0.cfg.phase_two_wait_ms);
        let first_pass = |s: GlobalStatus| {
            matches!(
                s,
                GlobalStatus::Committing
                    | GlobalStatus::Rollbacking
                    | GlobalStatus::TimeoutRollbacking
            )
        };
        while first_pass(status) && tokio::time::Instant::now() < deadline {
            // Done when the session is gone and so are its lock releases:
            // a TM told `Rollbacked` finds its rows free, as with Seata.
            let peek = if self.leads_session(p) {
                tokio::time::sleep(Duration::from_millis(2)).await;
                Some(self.peek_local(p, xid))
            } else {
                tokio::time::sleep(Duration::from_millis(5)).await;
                // Ask the leader's replica (no log write); through the log
                // only if that fails.
                self.peek_at_leader(p, xid).await
            };
            status = match peek {
                Some(Peek::Active(s)) => s,
                Some(Peek::Releasing) => status,
                Some(Peek::Gone) => completed(status),
                None => match self.status(xid).await? {
                    GlobalStatus::Finished => completed(status),
                    s => s,
                },
            };
        }
        Ok(match status {
            GlobalStatus::AsyncCommitting => GlobalStatus::Committed,
            s => s,
        })
    }

    /// What the replica of session partition `p`'s leader says about `xid`,
    /// asked over the client port (`RHEA.X TC.PEEK`); `None` if the leader
    /// could not be asked. Not linearizable (a deposed leader may answer);
    /// only for waiting.
    async fn peek_at_leader(&self, p: u32, xid: &str) -> Option<Peek> {
        let addr = self.session_leader_addr(p)?;
        let args: [&[u8]; 3] = [b"RHEA.X", PEEK_VERB.as_bytes(), xid.as_bytes()];
        match self.0.router.call_addr(&addr, &args).await.ok()? {
            rhea_kv::resp::Value::Integer(PEEK_RELEASING) => Some(Peek::Releasing),
            rhea_kv::resp::Value::Integer(code) => u8::try_from(code)
                .ok()
                .and_then(GlobalStatus::from_code)
                .map(Peek::Active),
            rhea_kv::resp::Value::Nil => Some(Peek::Gone),
            _ => None,
        }
    }

    /// The client address of session partition `p`'s leader, as this node
    /// knows it.
    pub(crate) fn session_leader_addr(&self, p: u32) -> Option<String> {
        let local = self.0.router.local()?;
        let (_, leader, _) = local.driver().role_hint(session_group(p))?;
        local
            .directory()
            .get(&leader)
            .map(|a| a.client_addr.clone())
            .filter(|a| !a.is_empty())
    }

    /// What this node's replica of partition `p` says about `xid`.
    fn peek_local(&self, p: u32, xid: &str) -> Peek {
        let Some(shared) = self.0.sessions.get(p as usize) else {
            return Peek::Gone;
        };
        let part = lock_shared(shared);
        if let Some(g) = part.global_session(xid) {
            Peek::Active(g.status)
        } else if part.pending_lock_releases().any(|r| r.xid == xid) {
            Peek::Releasing
        } else {
            Peek::Gone
        }
    }

    /// Serve `RHEA.X TC.PEEK <xid>`: this node's replica's status of `xid`
    /// (an integer; -1 once it ended while its locks are being released),
    /// nil if it has no such session; an error unless this node leads the
    /// session's partition.
    pub(crate) fn serve_peek(&self, xid: &str) -> rhea_kv::resp::Value {
        use rhea_kv::resp::Value;
        let Ok((p, _)) = self.session_partition(xid) else {
            return Value::error("ERR malformed XID");
        };
        if !self.leads_session(p) {
            return Value::error("ERR not the session partition's leader");
        }
        match self.peek_local(p, xid) {
            Peek::Active(status) => Value::Integer(i64::from(status.code())),
            Peek::Releasing => Value::Integer(PEEK_RELEASING),
            Peek::Gone => Value::Nil,
        }
    }

    /// Execute the lock work an answer calls for: releases (then
    /// acknowledged to the session partition's outbox) and best-effort
    /// marks.
    pub(crate) async fn do_lock_work(&self, p: u32, work: &[LockWork]) {
        for w in work {
            match w {
                LockWork::Release(r) => {
                    if let Err(e) = self.release(p, r).await {
                        // Stays in the outbox: the worker retries it.
                        debug!(release = r.release_id, error = %e, "lock release deferred");
                    }
                }
                LockWork::MarkRollbacking {
                    transaction_id,
                    partitions,
                    ..
                } => {
                    for &lp in partitions {
                        let cmd = LockCommand::MarkRollbacking {
                            transaction_id: *transaction_id,
                        };
                        let _ = self.lock(lp, &cmd).await;
                    }
                }
            }
        }
    }

    /// Release the rows of one outbox entry on all its partitions, then
    /// drop the entry. Idempotent.
    pub(crate) async fn release(&self, p: u32, r: &LockRelease) -> Result<(), TcError> {
        let now = now_ms();
        for &lp in &r.partitions {
            let cmd = match r.scope {
                ReleaseScope::Global => LockCommand::ReleaseGlobal {
                    transaction_id: r.transaction_id,
                    now_ms: now,
                },
                ReleaseScope::Branch(branch_id) => LockCommand::Unlock {
                    transaction_id: r.transaction_id,
                    branch_id,
                    now_ms: now,
                },
            };
            match self.lock(lp, &cmd).await? {
                LockAnswer::Released { .. } => {}
                other => return Err(TcError::Unexpected(format!("{other:?}"))),
            }
        }
        let ack = SessionCommand::AckLockRelease {
            release_id: r.release_id,
        };
        self.session(p, &ack).await?;
        Ok(())
    }

    /// Send one phase-two item to its RM and record the outcome.
    pub(crate) async fn phase_two(&self, p: u32, w: &PhaseTwoWork) -> Result<(), TcError> {
        let outcome = self.call_rm(w).await;
        let cmd = SessionCommand::BranchPhaseTwoResult {
            xid: w.xid.clone(),
            branch_id: w.branch_id,
            outcome,
            now_ms: now_ms(),
        };
        match self.session(p, &cmd).await? {
            SessionAnswer::GlobalStatus { lock_work, .. } => {
                self.do_lock_work(p, &lock_work).await;
                Ok(())
            }
            // Ended meanwhile (another node's attempt, or force-finished).
            SessionAnswer::Refused(e) => {
                debug!(xid = %w.xid, error = %e, "phase-two result not needed");
                Ok(())
            }
            other => Err(TcError::Unexpected(format!("{other:?}"))),
        }
    }

    async fn call_rm(&self, w: &PhaseTwoWork) -> BranchStatus {
        if self.0.registry.pick(&w.resource_id, &w.client_id).is_none() {
            return self.relay_phase_two(w).await;
        }
        self.call_local_rm(w).await
    }

    /// Phase two through an RM connected to this node.
    pub(crate) async fn call_local_rm(&self, w: &PhaseTwoWork) -> BranchStatus {
        let retryable = retryable_status(w.action);
        let Some(conn) = self.0.registry.pick(&w.resource_id, &w.client_id) else {
            debug!(xid = %w.xid, resource = %w.resource_id, "no RM connected for the resource; will retry");
            return retryable;
        };
        let req = BranchEndRequest {
            xid: w.xid.clone(),
            branch_id: w.branch_id,
            branch_type: w.branch_type,
            resource_id: w.resource_id.clone(),
            application_data: w.application_data.clone(),
        };
        let msg = match w.action {
            PhaseTwoAction::Commit => Message::BranchCommitRequest(req),
            PhaseTwoAction::Rollback => Message::BranchRollbackRequest(req),
        };
        match conn.call(msg, self.0.cfg.branch_call_timeout_ms).await {
            Ok(Message::BranchCommitResponse(r) | Message::BranchRollbackResponse(r))
                if r.result_code == ResultCode::Success =>
            {
                r.branch_status
            }
            Ok(other) => {
                warn!(xid = %w.xid, branch = w.branch_id, answer = ?other, "RM answered phase two with a failure");
                retryable
            }
            Err(e) => {
                warn!(xid = %w.xid, branch = w.branch_id, peer = %conn.peer, error = %e, "phase-two call failed; will retry");
                retryable
            }
        }
    }
}

fn retryable_status(action: PhaseTwoAction) -> BranchStatus {
    match action {
        PhaseTwoAction::Commit => BranchStatus::PhaseTwoCommitFailedRetryable,
        PhaseTwoAction::Rollback => BranchStatus::PhaseTwoRollbackFailedRetryable,
    }
}

/// `RHEA.X` verb of a relayed phase-two call.
pub(crate) const RELAY_VERB: &str = "TC.PHASE2";
/// `RHEA.X` verb of a status read on the partition leader's replica.
pub(crate) const PEEK_VERB: &str = "TC.PEEK";
/// `TC.PEEK`'s answer for a session that ended but whose row locks are still
/// being released.
const PEEK_RELEASING: i64 = -1;

/// A session as one replica sees it.
enum Peek {
    Active(GlobalStatus),
    /// Ended; a release of its row locks is still in the outbox.
    Releasing,
    Gone,
}

impl Coordinator {
    /// No RM of the resource is connected here (it registered on other TC
    /// nodes only, e.g. a client given one address): ask every other node,
    /// over the client port, to make the call through its own connection.
    /// The first node that has one answers; the others answer "none".
    async fn relay_phase_two(&self, w: &PhaseTwoWork) -> BranchStatus {
        let retryable = retryable_status(w.action);
        let Some(local) = self.0.router.local() else {
            return retryable;
        };
        let me = local.node_id();
        let action = match w.action {
            PhaseTwoAction::Commit => "commit",
            PhaseTwoAction::Rollback => "rollback",
        };
        let branch_id = w.branch_id.to_string();
        let branch_type = w.branch_type.code().to_string();
        for (node, addrs) in local.directory() {
            if node == me || addrs.client_addr.is_empty() {
                continue;
            }
            let args: [&[u8]; 9] = [
                b"RHEA.X",
                RELAY_VERB.as_bytes(),
                action.as_bytes(),
                w.xid.as_bytes(),
                branch_id.as_bytes(),
                branch_type.as_bytes(),
                w.resource_id.as_bytes(),
                w.client_id.as_bytes(),
                w.application_data.as_bytes(),
            ];
            match self.0.router.call_addr(&addrs.client_addr, &args).await {
                Ok(rhea_kv::resp::Value::Integer(code)) => {
                    if let Some(status) = u8::try_from(code).ok().and_then(BranchStatus::from_code)
                    {
                        debug!(xid = %w.xid, node, "phase two relayed");
                        return status;
                    }
                }
                Ok(_) => {}
                Err(e) => debug!(node, error = %e, "phase-two relay failed"),
            }
        }
        debug!(xid = %w.xid, resource = %w.resource_id, "no TC node has an RM of the resource; will retry");
        retryable
    }

    /// Serve a relayed phase-two call (`RHEA.X TC.PHASE2 ...`) with an RM
    /// connected to this node; never relayed again.
    pub(crate) async fn serve_relay(&self, args: &[bytes::Bytes]) -> rhea_kv::resp::Value {
        use rhea_kv::resp::Value;
        let text = |i: usize| args.get(i).and_then(|b| std::str::from_utf8(b).ok());
        let parsed = (|| {
            let action = match text(1)? {
                "commit" => PhaseTwoAction::Commit,
                "rollback" => PhaseTwoAction::Rollback,
                _ => return None,
            };
            Some(PhaseTwoWork {
                xid: text(2)?.to_owned(),
                transaction_id: parse_xid(text(2)?).map(|(_, _, t)| t).unwrap_or(0),
                branch_id: text(3)?.parse().ok()?,
                branch_type: BranchType::from_code(text(4)?.parse().ok()?)?,
                resource_id: text(5)?.to_owned(),
                client_id: text(6)?.to_owned(),
                application_data: text(7)?.to_owned(),
                action,
            })
        })();
        let Some(w) = parsed.filter(|_| args.len() == 8 && text(0) == Some(RELAY_VERB)) else {
            return Value::error("ERR malformed RHEA.X TC.PHASE2 request");
        };
        if self.0.registry.pick(&w.resource_id, &w.client_id).is_none() {
            return Value::error("ERR no RM of the resource on this node");
        }
        Value::Integer(i64::from(self.call_local_rm(&w).await.code()))
    }
}

/// The status a session in its first phase-two pass ends with when it is
/// removed (all branches done).
fn completed(status: GlobalStatus) -> GlobalStatus {
    match status {
        GlobalStatus::Committing | GlobalStatus::CommitRetrying => GlobalStatus::Committed,
        GlobalStatus::Rollbacking | GlobalStatus::RollbackRetrying => GlobalStatus::Rollbacked,
        GlobalStatus::TimeoutRollbacking | GlobalStatus::TimeoutRollbackRetrying => {
            GlobalStatus::TimeoutRollbacked
        }
        s => s,
    }
}

fn refusal(answer: SessionAnswer) -> TcError {
    match answer {
        SessionAnswer::Refused(e) => TcError::Refused(e),
        other => TcError::Unexpected(format!("{other:?}")),
    }
}
