//! The session partition: global sessions and their branch sessions.
//!
//! One [`SessionPartition`] is the replicated state of one session raft
//! group; global sessions are spread over the groups by transaction id
//! ([`session_partition_of`](super::session_partition_of)). It follows
//! Seata's `DefaultCore` / `SessionHelper` / `DefaultCoordinator` semantics,
//! with the network calls cut out: where Seata sends a `BranchCommit` and
//! acts on the answer in one method, here [`SessionPartition::due_phase_two`]
//! says what to send and a later
//! [`SessionCommand::BranchPhaseTwoResult`] applies the answer.
//!
//! Row locks live in lock partitions; a session partition only *says* which
//! lock partitions to release, through a durable outbox
//! ([`LockRelease`], [`SessionCommand::AckLockRelease`]). The rules:
//! * **commit** releases every row lock of the transaction at once (Seata's
//!   `globalSession.clean()` in `DefaultCore.commit`): the local
//!   transactions are committed, phase two only deletes undo logs;
//! * **rollback** releases a branch's locks when that branch is rolled back
//!   (Seata's `removeBranch` → `unlockBranch`);
//! * a session that **ends in failure** (`CommitFailed`, `RollbackFailed`,
//!   `TimeoutRollbackFailed`, `CommitRetryTimeout`, `RollbackRetryTimeout`)
//!   stays, visible, and keeps the locks it still holds until
//!   [`SessionCommand::ForceFinish`];
//! * a session that **ends in success** is removed and releases whatever
//!   its remaining branches still hold.
//!
//! Applying is deterministic: ordered maps only, time only from commands.

mod command;
mod snapshot;

use std::collections::{BTreeMap, BTreeSet};

pub use command::{
    LockRelease, LockWork, ReleaseScope, SESSION_COMMAND_VERSION, SessionAnswer, SessionCommand,
};
pub use snapshot::SESSION_SNAPSHOT_VERSION;

use super::config::{ConfigError, SessionConfig};
use super::error::{CoordinatorError, Limit};
use super::ids::parse_xid;
use super::lock_key::{LockKeyError, parse_lock_key, plan_by_partition};
use crate::protocol::{BranchStatus, BranchType, GlobalStatus};

/// The branch id of a saga's session-wide phase two: Seata sends one
/// `BranchCommit` / `BranchRollback` with branch id -1 to the saga RM.
pub const SAGA_SESSION_BRANCH_ID: i64 = -1;

/// Transaction names of sagas start with this (Seata's
/// `Constants.SAGA_TRANS_NAME_PREFIX`).
pub const SAGA_TRANSACTION_NAME_PREFIX: &str = "$Saga_";

/// Phase-two retry bookkeeping of a global session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetryState {
    /// Failed phase-two rounds since phase two began (failures of several
    /// branches within one backoff period count once).
    pub failures: u32,
    /// When the first attempt failed.
    pub first_failure_ms: Option<u64>,
    /// Phase-two work of this session is due from this time on.
    pub next_attempt_ms: u64,
}

impl RetryState {
    fn starting(now_ms: u64) -> Self {
        RetryState {
            failures: 0,
            first_failure_ms: None,
            next_attempt_ms: now_ms,
        }
    }
}

/// A branch session (Seata's `branch_table` row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchSession {
    pub branch_id: i64,
    pub resource_id: String,
    pub branch_type: BranchType,
    pub status: BranchStatus,
    pub client_id: String,
    pub application_data: String,
    /// As the RM sent it.
    pub lock_key: String,
    /// The lock partitions holding this branch's row locks, ascending
    /// (empty unless AT with a non-blank lock key).
    pub lock_partitions: Vec<u32>,
    /// Failed phase-two attempts of this branch.
    pub phase_two_failures: u32,
}

impl BranchSession {
    /// Seata's `BranchSession.canBeCommittedAsync`: AT branches (phase two
    /// only deletes undo logs) and branches whose phase one failed.
    pub fn can_be_committed_async(&self) -> bool {
        self.branch_type == BranchType::At || self.status == BranchStatus::PhaseOneFailed
    }
}

/// A global session (Seata's `global_table` row) with its branches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalSession {
    pub xid: String,
    pub transaction_id: u64,
    pub status: GlobalStatus,
    /// False once commit, rollback or timeout closed the session: no more
    /// branches may register.
    pub active: bool,
    pub application_id: String,
    pub transaction_service_group: String,
    pub transaction_name: String,
    pub timeout_ms: u64,
    pub begin_time_ms: u64,
    pub application_data: String,
    /// In registration order.
    pub branches: Vec<BranchSession>,
    pub retry: RetryState,
}

impl GlobalSession {
    /// Seata's `isSaga`: the first branch is a saga branch, or (no branches)
    /// the name starts with `$Saga_`.
    pub fn is_saga(&self) -> bool {
        match self.branches.first() {
            Some(b) => b.branch_type == BranchType::Saga,
            None => self
                .transaction_name
                .starts_with(SAGA_TRANSACTION_NAME_PREFIX),
        }
    }

    /// Seata's `isTimeout`: more than `timeout` since begin.
    pub fn is_timed_out(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.begin_time_ms) > self.timeout_ms
    }

    pub fn branch(&self, branch_id: i64) -> Option<&BranchSession> {
        self.branches.iter().find(|b| b.branch_id == branch_id)
    }

    /// Every lock partition of every branch, ascending.
    pub fn lock_partitions(&self) -> Vec<u32> {
        let set: BTreeSet<u32> = self
            .branches
            .iter()
            .flat_map(|b| b.lock_partitions.iter().copied())
            .collect();
        set.into_iter().collect()
    }
}

/// Phase-two action for a branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhaseTwoAction {
    Commit,
    Rollback,
}

/// A `BranchCommit` or `BranchRollback` the async layer should send now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhaseTwoWork {
    pub xid: String,
    pub transaction_id: u64,
    /// [`SAGA_SESSION_BRANCH_ID`] for a saga's session-wide phase two.
    pub branch_id: i64,
    pub branch_type: BranchType,
    /// For a saga's session-wide phase two: `applicationId#txServiceGroup`,
    /// the saga RM's resource id.
    pub resource_id: String,
    /// The RM that registered the branch (empty for a saga's session-wide
    /// phase two: any channel of the saga resource).
    pub client_id: String,
    /// For a saga's session-wide phase two: the global status's name, as
    /// Seata sends it.
    pub application_data: String,
    pub action: PhaseTwoAction,
}

/// Seata's `SessionStatusValidator.isTimeoutGlobalStatus`.
pub fn is_timeout_status(status: GlobalStatus) -> bool {
    matches!(
        status,
        GlobalStatus::TimeoutRollbacking
            | GlobalStatus::TimeoutRollbackRetrying
            | GlobalStatus::TimeoutRollbacked
            | GlobalStatus::TimeoutRollbackFailed
    )
}

/// The phase-two action a status drives, if it is one of phase two's
/// in-progress statuses.
pub fn phase_two_action(status: GlobalStatus) -> Option<PhaseTwoAction> {
    match status {
        GlobalStatus::Committing | GlobalStatus::CommitRetrying | GlobalStatus::AsyncCommitting => {
            Some(PhaseTwoAction::Commit)
        }
        GlobalStatus::Rollbacking
        | GlobalStatus::RollbackRetrying
        | GlobalStatus::TimeoutRollbacking
        | GlobalStatus::TimeoutRollbackRetrying => Some(PhaseTwoAction::Rollback),
        _ => None,
    }
}

/// What a TM is told: `AsyncCommitting` is `Committed` (Seata's
/// `DefaultCore.commit`).
fn tm_view(status: GlobalStatus) -> GlobalStatus {
    if status == GlobalStatus::AsyncCommitting {
        GlobalStatus::Committed
    } else {
        status
    }
}

/// Seata's `queueToRetryRollback`.
fn retry_rollback_status(current: GlobalStatus) -> GlobalStatus {
    if is_timeout_status(current) {
        GlobalStatus::TimeoutRollbackRetrying
    } else {
        GlobalStatus::RollbackRetrying
    }
}

/// The successful end of a rollback from `current`.
fn rollbacked_status(current: GlobalStatus) -> GlobalStatus {
    if is_timeout_status(current) {
        GlobalStatus::TimeoutRollbacked
    } else {
        GlobalStatus::Rollbacked
    }
}

/// The failed end of a rollback from `current`.
fn rollback_failed_status(current: GlobalStatus) -> GlobalStatus {
    if is_timeout_status(current) {
        GlobalStatus::TimeoutRollbackFailed
    } else {
        GlobalStatus::RollbackFailed
    }
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn check_len(limit: Limit, len: usize, max: usize) -> Result<(), CoordinatorError> {
    if len > max {
        return Err(CoordinatorError::LimitExceeded {
            limit,
            value: as_u64(len),
            max: as_u64(max),
        });
    }
    Ok(())
}

/// The durable list of lock releases still to execute.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Outbox {
    next_release_id: u64,
    releases: BTreeMap<u64, LockRelease>,
}

impl Outbox {
    fn push(
        &mut self,
        xid: &str,
        transaction_id: u64,
        scope: ReleaseScope,
        partitions: Vec<u32>,
    ) -> LockWork {
        let release = LockRelease {
            release_id: self.next_release_id,
            xid: xid.to_owned(),
            transaction_id,
            scope,
            partitions,
        };
        self.next_release_id = self.next_release_id.saturating_add(1);
        self.releases.insert(release.release_id, release.clone());
        LockWork::Release(release)
    }

    /// Queues a release if there is anything to release.
    fn release(
        &mut self,
        work: &mut Vec<LockWork>,
        session: &GlobalSession,
        scope: ReleaseScope,
        partitions: Vec<u32>,
    ) {
        if !partitions.is_empty() {
            work.push(self.push(&session.xid, session.transaction_id, scope, partitions));
        }
    }
}

/// The replicated state of one session raft group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPartition {
    config: SessionConfig,
    sessions: BTreeMap<String, GlobalSession>,
    outbox: Outbox,
}

type Handled = Result<SessionAnswer, CoordinatorError>;

impl SessionPartition {
    /// An empty partition.
    pub fn new(config: SessionConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(SessionPartition {
            config,
            sessions: BTreeMap::new(),
            outbox: Outbox::default(),
        })
    }

    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Applies one command. Deterministic: the same state and command give
    /// the same new state and answer on every replica.
    pub fn apply(&mut self, cmd: SessionCommand) -> SessionAnswer {
        let handled = match cmd {
            SessionCommand::Begin {
                xid,
                transaction_id,
                application_id,
                transaction_service_group,
                transaction_name,
                timeout_ms,
                application_data,
                now_ms,
            } => self.begin(GlobalSession {
                xid,
                transaction_id,
                status: GlobalStatus::Begin,
                active: true,
                application_id,
                transaction_service_group,
                transaction_name,
                timeout_ms,
                begin_time_ms: now_ms,
                application_data,
                branches: Vec::new(),
                retry: RetryState::default(),
            }),
            SessionCommand::RegisterBranch {
                xid,
                branch_id,
                resource_id,
                branch_type,
                lock_key,
                client_id,
                application_data,
            } => self.register_branch(
                &xid,
                BranchSession {
                    branch_id,
                    resource_id,
                    branch_type,
                    status: BranchStatus::Registered,
                    client_id,
                    application_data,
                    lock_key,
                    lock_partitions: Vec::new(),
                    phase_two_failures: 0,
                },
            ),
            SessionCommand::CancelBranchRegistration { xid, branch_id } => {
                self.cancel_branch_registration(&xid, branch_id)
            }
            SessionCommand::ReportBranch {
                xid,
                branch_id,
                status,
                application_data,
            } => self.report_branch(&xid, branch_id, status, application_data),
            SessionCommand::Commit { xid, now_ms } => Ok(self.commit(&xid, now_ms)),
            SessionCommand::Rollback { xid, now_ms } => Ok(self.rollback(&xid, now_ms)),
            SessionCommand::BranchPhaseTwoResult {
                xid,
                branch_id,
                outcome,
                now_ms,
            } => self.phase_two_result(&xid, branch_id, outcome, now_ms),
            SessionCommand::TimeoutCheck { now_ms } => Ok(self.timeout_check(now_ms)),
            SessionCommand::GlobalReport {
                xid,
                status,
                now_ms,
            } => Ok(self.global_report(&xid, status, now_ms)),
            SessionCommand::Status { xid } => Ok(SessionAnswer::GlobalStatus {
                status: self
                    .sessions
                    .get(&xid)
                    .map_or(GlobalStatus::Finished, |s| s.status),
                lock_work: Vec::new(),
            }),
            SessionCommand::ForceFinish { xid } => self.force_finish(&xid),
            SessionCommand::AckLockRelease { release_id } => Ok(SessionAnswer::LockReleaseAcked {
                found: self.outbox.releases.remove(&release_id).is_some(),
            }),
        };
        handled.unwrap_or_else(SessionAnswer::Refused)
    }

    /// Decodes and applies a raft log entry; an entry that does not decode
    /// changes nothing and answers [`CoordinatorError::MalformedCommand`].
    pub fn apply_bytes(&mut self, bytes: &[u8]) -> SessionAnswer {
        match SessionCommand::decode(bytes) {
            Ok(cmd) => self.apply(cmd),
            Err(e) => SessionAnswer::Refused(CoordinatorError::MalformedCommand(e.to_string())),
        }
    }

    // ----- queries (local, not through the log) -----

    pub fn global_session(&self, xid: &str) -> Option<&GlobalSession> {
        self.sessions.get(xid)
    }

    /// Every global session, in XID order.
    pub fn global_sessions(&self) -> impl Iterator<Item = &GlobalSession> {
        self.sessions.values()
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// The outbox: lock releases not yet acknowledged, by release id.
    pub fn pending_lock_releases(&self) -> impl Iterator<Item = &LockRelease> {
        self.outbox.releases.values()
    }

    /// `Begin` sessions past their timeout (what `TimeoutCheck{now_ms}`
    /// would time out), in XID order.
    pub fn sessions_to_timeout(&self, now_ms: u64) -> Vec<String> {
        self.sessions
            .values()
            .filter(|s| s.status == GlobalStatus::Begin && s.is_timed_out(now_ms))
            .map(|s| s.xid.clone())
            .collect()
    }

    /// The earliest time some phase-two work becomes due, if any session is
    /// in phase two.
    pub fn next_phase_two_due_ms(&self) -> Option<u64> {
        self.sessions
            .values()
            .filter(|s| phase_two_action(s.status).is_some())
            .map(|s| s.retry.next_attempt_ms)
            .min()
    }

    /// The `BranchCommit` / `BranchRollback` requests due at `now_ms`, in
    /// XID order: for every session in `Committing`, `CommitRetrying`,
    /// `AsyncCommitting`, `Rollbacking`, `RollbackRetrying`,
    /// `TimeoutRollbacking` or `TimeoutRollbackRetrying` whose retry backoff
    /// has elapsed:
    /// * `AsyncCommitting`: every branch (in any order; they are AT);
    /// * `Committing` / `CommitRetrying`: the first branch in registration
    ///   order that cannot be committed asynchronously (AT branches wait
    ///   until the session turns `AsyncCommitting`);
    /// * rolling back: the last branch in registration order (undo runs
    ///   newest first: two branches of one transaction may have changed the
    ///   same row);
    /// * a saga: one session-wide item with branch id -1.
    ///
    /// With `parallel_phase_two`, "first"/"last" is per resource id.
    /// Sending an item twice is harmless (RMs' phase two is idempotent), but
    /// the async layer should not resend one while it is in flight.
    pub fn due_phase_two(&self, now_ms: u64) -> Vec<PhaseTwoWork> {
        let mut due = Vec::new();
        for s in self.sessions.values() {
            let Some(action) = phase_two_action(s.status) else {
                continue;
            };
            if now_ms < s.retry.next_attempt_ms {
                continue;
            }
            if s.is_saga() {
                due.push(PhaseTwoWork {
                    xid: s.xid.clone(),
                    transaction_id: s.transaction_id,
                    branch_id: SAGA_SESSION_BRANCH_ID,
                    branch_type: BranchType::Saga,
                    resource_id: format!("{}#{}", s.application_id, s.transaction_service_group),
                    client_id: String::new(),
                    application_data: s.status.java_name().to_owned(),
                    action,
                });
                continue;
            }
            let picked: Vec<&BranchSession> = match action {
                PhaseTwoAction::Commit => {
                    let sync: Vec<&BranchSession> = s
                        .branches
                        .iter()
                        .filter(|b| !b.can_be_committed_async())
                        .collect();
                    if s.status == GlobalStatus::AsyncCommitting || sync.is_empty() {
                        s.branches.iter().collect()
                    } else {
                        self.first_per_resource(sync)
                    }
                }
                PhaseTwoAction::Rollback => {
                    self.first_per_resource(s.branches.iter().rev().collect())
                }
            };
            due.extend(picked.into_iter().map(|b| PhaseTwoWork {
                xid: s.xid.clone(),
                transaction_id: s.transaction_id,
                branch_id: b.branch_id,
                branch_type: b.branch_type,
                resource_id: b.resource_id.clone(),
                client_id: b.client_id.clone(),
                application_data: b.application_data.clone(),
                action,
            }));
        }
        due
    }

    /// The first branch (sequential), or the first of each resource id
    /// (parallel phase two).
    fn first_per_resource<'a>(&self, ordered: Vec<&'a BranchSession>) -> Vec<&'a BranchSession> {
        if !self.config.parallel_phase_two {
            return ordered.into_iter().take(1).collect();
        }
        let mut seen = BTreeSet::new();
        ordered
            .into_iter()
            .filter(|b| seen.insert(b.resource_id.as_str()))
            .collect()
    }

    // ----- commands -----

    fn begin(&mut self, session: GlobalSession) -> Handled {
        let limits = &self.config.limits;
        check_len(Limit::XidBytes, session.xid.len(), limits.max_xid_bytes)?;
        for name in [
            &session.application_id,
            &session.transaction_service_group,
            &session.transaction_name,
        ] {
            check_len(Limit::NameBytes, name.len(), limits.max_name_bytes)?;
        }
        check_len(
            Limit::ApplicationDataBytes,
            session.application_data.len(),
            limits.max_application_data_bytes,
        )?;
        if parse_xid(&session.xid).map(|(_, _, tid)| tid) != Some(session.transaction_id) {
            return Err(CoordinatorError::InvalidXid {
                xid: session.xid,
                transaction_id: session.transaction_id,
            });
        }
        if self.sessions.contains_key(&session.xid) {
            return Err(CoordinatorError::GlobalTransactionExists { xid: session.xid });
        }
        if self.sessions.len() >= limits.max_global_sessions {
            return Err(CoordinatorError::LimitExceeded {
                limit: Limit::GlobalSessions,
                value: as_u64(self.sessions.len().saturating_add(1)),
                max: as_u64(limits.max_global_sessions),
            });
        }
        let xid = session.xid.clone();
        self.sessions.insert(xid.clone(), session);
        Ok(SessionAnswer::Began { xid })
    }

    fn session_mut(&mut self, xid: &str) -> Result<&mut GlobalSession, CoordinatorError> {
        self.sessions
            .get_mut(xid)
            .ok_or_else(|| CoordinatorError::GlobalTransactionNotExist {
                xid: xid.to_owned(),
            })
    }

    fn register_branch(&mut self, xid: &str, mut branch: BranchSession) -> Handled {
        let config = self.config;
        let limits = &config.limits;
        let session = self.session_mut(xid)?;
        // Seata's AbstractCore.globalSessionStatusCheck: active first.
        if !session.active {
            return Err(CoordinatorError::GlobalTransactionNotActive {
                xid: xid.to_owned(),
                status: session.status,
            });
        }
        if session.status != GlobalStatus::Begin {
            return Err(CoordinatorError::GlobalTransactionStatusInvalid {
                xid: xid.to_owned(),
                status: session.status,
                expected: GlobalStatus::Begin,
            });
        }
        if branch.branch_id <= 0 {
            return Err(CoordinatorError::InvalidBranchId {
                branch_id: branch.branch_id,
            });
        }
        if session.branch(branch.branch_id).is_some() {
            return Err(CoordinatorError::BranchExists {
                xid: xid.to_owned(),
                branch_id: branch.branch_id,
            });
        }
        if session.branches.len() >= limits.max_branches_per_global_session {
            return Err(CoordinatorError::LimitExceeded {
                limit: Limit::BranchesPerGlobalSession,
                value: as_u64(session.branches.len().saturating_add(1)),
                max: as_u64(limits.max_branches_per_global_session),
            });
        }
        check_len(
            Limit::NameBytes,
            branch.resource_id.len(),
            limits.max_name_bytes,
        )?;
        check_len(
            Limit::NameBytes,
            branch.client_id.len(),
            limits.max_name_bytes,
        )?;
        check_len(
            Limit::ApplicationDataBytes,
            branch.application_data.len(),
            limits.max_application_data_bytes,
        )?;
        // Only AT branches take row locks (Seata's BranchSession.lock).
        let lock_plan = if branch.branch_type == BranchType::At {
            let rows = parse_lock_key(&branch.resource_id, &branch.lock_key, &limits.lock_keys)
                .map_err(|error| CoordinatorError::LockKey {
                    xid: xid.to_owned(),
                    error,
                })?;
            plan_by_partition(rows, config.lock_partitions)
        } else {
            // Kept but not parsed; still bounded.
            let max = limits.lock_keys.max_lock_key_bytes;
            if branch.lock_key.len() > max {
                return Err(CoordinatorError::LockKey {
                    xid: xid.to_owned(),
                    error: LockKeyError::LockKeyTooLong {
                        bytes: as_u64(branch.lock_key.len()),
                        limit: as_u64(max),
                    },
                });
            }
            Vec::new()
        };
        branch.lock_partitions = lock_plan.iter().map(|p| p.partition).collect();
        let branch_id = branch.branch_id;
        session.branches.push(branch);
        Ok(SessionAnswer::BranchRegistered {
            branch_id,
            lock_plan,
        })
    }

    fn cancel_branch_registration(&mut self, xid: &str, branch_id: i64) -> Handled {
        let session = self.sessions.get_mut(xid).ok_or_else(|| {
            CoordinatorError::GlobalTransactionNotExist {
                xid: xid.to_owned(),
            }
        })?;
        let index = branch_index(session, xid, branch_id)?;
        let branch = session.branches.remove(index);
        let mut work = Vec::new();
        self.outbox.release(
            &mut work,
            session,
            ReleaseScope::Branch(branch_id),
            branch.lock_partitions,
        );
        self.settle(xid, &mut work);
        Ok(SessionAnswer::BranchRegistrationCancelled { lock_work: work })
    }

    fn report_branch(
        &mut self,
        xid: &str,
        branch_id: i64,
        status: BranchStatus,
        application_data: String,
    ) -> Handled {
        check_len(
            Limit::ApplicationDataBytes,
            application_data.len(),
            self.config.limits.max_application_data_bytes,
        )?;
        let session = self.session_mut(xid)?;
        let index = branch_index(session, xid, branch_id)?;
        if let Some(branch) = session.branches.get_mut(index) {
            branch.status = status;
            branch.application_data = application_data;
        }
        Ok(SessionAnswer::BranchReported)
    }

    /// Seata's `DefaultCore.commit`.
    fn commit(&mut self, xid: &str, now_ms: u64) -> SessionAnswer {
        let mut work = Vec::new();
        let Some(session) = self.sessions.get_mut(xid) else {
            return SessionAnswer::GlobalStatus {
                status: GlobalStatus::Finished,
                lock_work: work,
            };
        };
        if session.status != GlobalStatus::Begin {
            return SessionAnswer::GlobalStatus {
                status: tm_view(session.status),
                lock_work: work,
            };
        }
        if session.is_timed_out(now_ms) {
            // Seata answers TimeoutRollbacking and leaves the transition to
            // the timeout check a moment later; here it happens now.
            start_rollback(
                session,
                &mut self.outbox,
                GlobalStatus::TimeoutRollbacking,
                now_ms,
                &mut work,
            );
            let status = self.settle(xid, &mut work);
            return SessionAnswer::GlobalStatus {
                status,
                lock_work: work,
            };
        }
        // Close first: no branch can register any more.
        session.active = false;
        let partitions = session.lock_partitions();
        // Phase two skips branches whose phase one failed, and XA branches
        // that were read-only.
        session.branches.retain(|b| {
            !(b.status == BranchStatus::PhaseOneFailed
                || (b.branch_type == BranchType::Xa && b.status == BranchStatus::PhaseOneRdonly))
        });
        session.status = if session
            .branches
            .iter()
            .all(BranchSession::can_be_committed_async)
        {
            GlobalStatus::AsyncCommitting
        } else {
            GlobalStatus::Committing
        };
        session.retry = RetryState::starting(now_ms);
        // Local transactions are committed: release every row lock now.
        self.outbox
            .release(&mut work, session, ReleaseScope::Global, partitions);
        let status = self.settle(xid, &mut work);
        SessionAnswer::GlobalStatus {
            status: tm_view(status),
            lock_work: work,
        }
    }

    /// Seata's `DefaultCore.rollback` (the branch rollbacks themselves are
    /// driven by `due_phase_two`).
    fn rollback(&mut self, xid: &str, now_ms: u64) -> SessionAnswer {
        let mut work = Vec::new();
        let Some(session) = self.sessions.get_mut(xid) else {
            return SessionAnswer::GlobalStatus {
                status: GlobalStatus::Finished,
                lock_work: work,
            };
        };
        session.active = false;
        if session.status != GlobalStatus::Begin {
            return SessionAnswer::GlobalStatus {
                status: session.status,
                lock_work: work,
            };
        }
        start_rollback(
            session,
            &mut self.outbox,
            GlobalStatus::Rollbacking,
            now_ms,
            &mut work,
        );
        let status = self.settle(xid, &mut work);
        SessionAnswer::GlobalStatus {
            status,
            lock_work: work,
        }
    }

    fn phase_two_result(
        &mut self,
        xid: &str,
        branch_id: i64,
        outcome: BranchStatus,
        now_ms: u64,
    ) -> Handled {
        let config = self.config;
        let session = self.sessions.get_mut(xid).ok_or_else(|| {
            CoordinatorError::GlobalTransactionNotExist {
                xid: xid.to_owned(),
            }
        })?;
        let action =
            phase_two_action(session.status).ok_or_else(|| CoordinatorError::NotInPhaseTwo {
                xid: xid.to_owned(),
                status: session.status,
            })?;
        if branch_id == SAGA_SESSION_BRANCH_ID && session.is_saga() {
            return Ok(self.saga_phase_two_result(xid, action, outcome, now_ms));
        }
        let index = branch_index(session, xid, branch_id)?;
        let outcome = resolve_xaer_nota(session, outcome, action, now_ms, &config);
        let mut work = Vec::new();
        match (action, outcome) {
            (PhaseTwoAction::Commit, BranchStatus::PhaseTwoCommitted) => {
                // The locks went at commit.
                session.branches.remove(index);
            }
            (PhaseTwoAction::Commit, BranchStatus::PhaseTwoCommitFailedUnretryable) => {
                session.status = GlobalStatus::CommitFailed;
            }
            (PhaseTwoAction::Rollback, BranchStatus::PhaseTwoRollbacked) => {
                let branch = session.branches.remove(index);
                self.outbox.release(
                    &mut work,
                    session,
                    ReleaseScope::Branch(branch_id),
                    branch.lock_partitions,
                );
            }
            (PhaseTwoAction::Rollback, BranchStatus::PhaseTwoRollbackFailedUnretryable) => {
                // Locks stay: the branch's data may still be dirty.
                session.status = rollback_failed_status(session.status);
            }
            (action, other) => {
                if let Some(branch) = session.branches.get_mut(index) {
                    branch.status = other;
                    branch.phase_two_failures = branch.phase_two_failures.saturating_add(1);
                }
                session.status = match action {
                    PhaseTwoAction::Commit if session.status == GlobalStatus::Committing => {
                        GlobalStatus::CommitRetrying
                    }
                    PhaseTwoAction::Commit => session.status,
                    PhaseTwoAction::Rollback => retry_rollback_status(session.status),
                };
                record_failure(session, &mut self.outbox, &config, now_ms, &mut work);
            }
        }
        let status = self.settle(xid, &mut work);
        Ok(SessionAnswer::GlobalStatus {
            status,
            lock_work: work,
        })
    }

    /// Seata's `SagaCore.doGlobalCommit` / `doGlobalRollback` acting on the
    /// saga RM's answer.
    fn saga_phase_two_result(
        &mut self,
        xid: &str,
        action: PhaseTwoAction,
        outcome: BranchStatus,
        now_ms: u64,
    ) -> SessionAnswer {
        let config = self.config;
        let mut work = Vec::new();
        let Some(session) = self.sessions.get_mut(xid) else {
            return SessionAnswer::GlobalStatus {
                status: GlobalStatus::Finished,
                lock_work: work,
            };
        };
        let current = session.status;
        let end = match (action, outcome) {
            (PhaseTwoAction::Commit, BranchStatus::PhaseTwoCommitted) => {
                Some(GlobalStatus::Committed)
            }
            (PhaseTwoAction::Commit, BranchStatus::PhaseTwoRollbacked)
            | (PhaseTwoAction::Rollback, BranchStatus::PhaseTwoRollbacked) => {
                Some(rollbacked_status(current))
            }
            (PhaseTwoAction::Commit, BranchStatus::PhaseOneFailed) => Some(GlobalStatus::Finished),
            (PhaseTwoAction::Commit, BranchStatus::PhaseTwoCommitFailedUnretryable) => {
                if session.branches.is_empty() {
                    Some(GlobalStatus::Committed)
                } else {
                    session.status = GlobalStatus::CommitFailed;
                    None
                }
            }
            (PhaseTwoAction::Rollback, BranchStatus::PhaseTwoRollbackFailedUnretryable) => {
                session.status = rollback_failed_status(current);
                None
            }
            (PhaseTwoAction::Commit, BranchStatus::PhaseTwoRollbackFailedRetryable) => {
                session.status = retry_rollback_status(current);
                record_failure(session, &mut self.outbox, &config, now_ms, &mut work);
                None
            }
            (PhaseTwoAction::Rollback, BranchStatus::PhaseTwoCommitFailedRetryable) => {
                // Forward recovery.
                session.status = GlobalStatus::CommitRetrying;
                record_failure(session, &mut self.outbox, &config, now_ms, &mut work);
                None
            }
            (PhaseTwoAction::Commit, _) => {
                session.status = GlobalStatus::CommitRetrying;
                record_failure(session, &mut self.outbox, &config, now_ms, &mut work);
                None
            }
            (PhaseTwoAction::Rollback, _) => {
                session.status = retry_rollback_status(current);
                record_failure(session, &mut self.outbox, &config, now_ms, &mut work);
                None
            }
        };
        let status = match end {
            Some(end) => self.end_success(xid, end, &mut work),
            None => self
                .sessions
                .get(xid)
                .map_or(GlobalStatus::Finished, |s| s.status),
        };
        SessionAnswer::GlobalStatus {
            status,
            lock_work: work,
        }
    }

    /// Seata's `timeoutCheck` plus the retry-duration bound of
    /// `handleRetryCommitting` / `handleRetryRollbacking`.
    fn timeout_check(&mut self, now_ms: u64) -> SessionAnswer {
        let config = self.config;
        let timed_out = self.sessions_to_timeout(now_ms);
        let retry_timed_out: Vec<String> = self
            .sessions
            .values()
            .filter(|s| {
                phase_two_action(s.status).is_some()
                    && s.retry.first_failure_ms.is_some_and(|first| {
                        now_ms.saturating_sub(first) > config.retry.max_retry_duration_ms
                    })
            })
            .map(|s| s.xid.clone())
            .collect();
        let mut work = Vec::new();
        for xid in &timed_out {
            if let Some(session) = self.sessions.get_mut(xid) {
                start_rollback(
                    session,
                    &mut self.outbox,
                    GlobalStatus::TimeoutRollbacking,
                    now_ms,
                    &mut work,
                );
                self.settle(xid, &mut work);
            }
        }
        for xid in &retry_timed_out {
            if let Some(session) = self.sessions.get_mut(xid) {
                give_up(session, &mut self.outbox, &config, &mut work);
            }
        }
        SessionAnswer::TimeoutChecked {
            timed_out,
            retry_timed_out,
            lock_work: work,
        }
    }

    /// Seata's `DefaultCore.globalReport` → `SagaCore.doGlobalReport`.
    fn global_report(&mut self, xid: &str, reported: GlobalStatus, now_ms: u64) -> SessionAnswer {
        let mut work = Vec::new();
        let Some(session) = self.sessions.get_mut(xid) else {
            return SessionAnswer::GlobalStatus {
                status: reported,
                lock_work: work,
            };
        };
        if !session.is_saga() {
            return SessionAnswer::GlobalStatus {
                status: session.status,
                lock_work: work,
            };
        }
        let status = match reported {
            GlobalStatus::Committed => self.end_success(xid, GlobalStatus::Committed, &mut work),
            GlobalStatus::Rollbacked | GlobalStatus::Finished => {
                let end = rollbacked_status(session.status);
                self.end_success(xid, end, &mut work)
            }
            other => {
                session.status = match other {
                    GlobalStatus::RollbackRetrying
                    | GlobalStatus::TimeoutRollbackRetrying
                    | GlobalStatus::UnKnown => retry_rollback_status(other),
                    other => other,
                };
                session.retry.next_attempt_ms = now_ms;
                session.status
            }
        };
        SessionAnswer::GlobalStatus {
            status,
            lock_work: work,
        }
    }

    fn force_finish(&mut self, xid: &str) -> Handled {
        let session = self.sessions.remove(xid).ok_or_else(|| {
            CoordinatorError::GlobalTransactionNotExist {
                xid: xid.to_owned(),
            }
        })?;
        let mut work = Vec::new();
        let partitions = session.lock_partitions();
        self.outbox
            .release(&mut work, &session, ReleaseScope::Global, partitions);
        Ok(SessionAnswer::ForceFinished {
            previous_status: session.status,
            lock_work: work,
        })
    }

    /// After branches were removed or phase two began: ends a non-saga
    /// session in phase two that has no branch left (removing it), and moves
    /// a synchronous commit whose remaining branches are all AT to
    /// `AsyncCommitting`. Returns the status to report.
    fn settle(&mut self, xid: &str, work: &mut Vec<LockWork>) -> GlobalStatus {
        let Some(session) = self.sessions.get_mut(xid) else {
            return GlobalStatus::Finished;
        };
        let Some(action) = phase_two_action(session.status) else {
            return session.status;
        };
        if session.is_saga() {
            return session.status;
        }
        if session.branches.is_empty() {
            let end = match action {
                PhaseTwoAction::Commit => GlobalStatus::Committed,
                PhaseTwoAction::Rollback => rollbacked_status(session.status),
            };
            return self.end_success(xid, end, work);
        }
        if matches!(
            session.status,
            GlobalStatus::Committing | GlobalStatus::CommitRetrying
        ) && session
            .branches
            .iter()
            .all(BranchSession::can_be_committed_async)
        {
            session.status = GlobalStatus::AsyncCommitting;
        }
        session.status
    }

    /// Ends a session successfully: removes it and releases whatever locks
    /// its remaining branches hold (Seata's `GlobalSession.end` → `clean`).
    fn end_success(
        &mut self,
        xid: &str,
        end: GlobalStatus,
        work: &mut Vec<LockWork>,
    ) -> GlobalStatus {
        if let Some(session) = self.sessions.remove(xid) {
            let partitions = session.lock_partitions();
            self.outbox
                .release(work, &session, ReleaseScope::Global, partitions);
        }
        end
    }
}

fn branch_index(
    session: &GlobalSession,
    xid: &str,
    branch_id: i64,
) -> Result<usize, CoordinatorError> {
    session
        .branches
        .iter()
        .position(|b| b.branch_id == branch_id)
        .ok_or_else(|| CoordinatorError::BranchTransactionNotExist {
            xid: xid.to_owned(),
            branch_id,
        })
}

/// Closes the session and enters a rollback status (`Rollbacking` or
/// `TimeoutRollbacking`): branches whose phase one failed are dropped
/// without phase two (their locks released), the rest are marked
/// `Rollbacking` in their lock partitions.
fn start_rollback(
    session: &mut GlobalSession,
    outbox: &mut Outbox,
    status: GlobalStatus,
    now_ms: u64,
    work: &mut Vec<LockWork>,
) {
    session.active = false;
    session.status = status;
    session.retry = RetryState::starting(now_ms);
    let (failed, kept): (Vec<BranchSession>, Vec<BranchSession>) =
        std::mem::take(&mut session.branches)
            .into_iter()
            .partition(|b| b.status == BranchStatus::PhaseOneFailed);
    session.branches = kept;
    for branch in failed {
        outbox.release(
            work,
            session,
            ReleaseScope::Branch(branch.branch_id),
            branch.lock_partitions,
        );
    }
    let partitions = session.lock_partitions();
    if !partitions.is_empty() {
        work.push(LockWork::MarkRollbacking {
            xid: session.xid.clone(),
            transaction_id: session.transaction_id,
            partitions,
        });
    }
}

/// Seata's `isXaerNotaTimeout`: an XA branch the database does not know is
/// considered done once the time is well past the transaction's timeout.
fn resolve_xaer_nota(
    session: &GlobalSession,
    outcome: BranchStatus,
    action: PhaseTwoAction,
    now_ms: u64,
    config: &SessionConfig,
) -> BranchStatus {
    let xaer_nota = matches!(
        outcome,
        BranchStatus::PhaseTwoCommitFailedXaerNotaRetryable
            | BranchStatus::PhaseTwoRollbackFailedXaerNotaRetryable
    );
    let deadline = session
        .begin_time_ms
        .saturating_add(session.timeout_ms)
        .saturating_add(config.xaer_nota_retry_timeout_ms.max(session.timeout_ms));
    if xaer_nota && now_ms > deadline {
        match action {
            PhaseTwoAction::Commit => BranchStatus::PhaseTwoCommitted,
            PhaseTwoAction::Rollback => BranchStatus::PhaseTwoRollbacked,
        }
    } else {
        outcome
    }
}

/// Counts a failed phase-two round; gives up past the retry policy,
/// otherwise schedules the next round.
///
/// A round is what `due_phase_two` hands out at one time: failures reported
/// while the backoff they scheduled is still pending belong to the same
/// round and count once (fifty AT branches of an RM that is down are one
/// failed round, not fifty).
fn record_failure(
    session: &mut GlobalSession,
    outbox: &mut Outbox,
    config: &SessionConfig,
    now_ms: u64,
    work: &mut Vec<LockWork>,
) {
    let policy = &config.retry;
    let retry = &mut session.retry;
    let new_round = now_ms >= retry.next_attempt_ms;
    if new_round {
        retry.failures = retry.failures.saturating_add(1);
    }
    let first = *retry.first_failure_ms.get_or_insert(now_ms);
    let max_failures = match phase_two_action(session.status) {
        Some(PhaseTwoAction::Commit) => policy.max_commit_retries,
        Some(PhaseTwoAction::Rollback) => policy.max_rollback_retries,
        None => return,
    };
    if retry.failures > max_failures || now_ms.saturating_sub(first) > policy.max_retry_duration_ms
    {
        give_up(session, outbox, config, work);
    } else if new_round {
        retry.next_attempt_ms = now_ms.saturating_add(policy.backoff_ms(retry.failures));
    }
}

/// Phase two exhausted its retry budget: `CommitRetryTimeout` or
/// `RollbackRetryTimeout`. The session stays (visible to queries and
/// operators). A commit's locks went at commit time; a rollback's remaining
/// locks stay unless `release_locks_on_rollback_retry_timeout`.
fn give_up(
    session: &mut GlobalSession,
    outbox: &mut Outbox,
    config: &SessionConfig,
    work: &mut Vec<LockWork>,
) {
    match phase_two_action(session.status) {
        Some(PhaseTwoAction::Commit) => session.status = GlobalStatus::CommitRetryTimeout,
        Some(PhaseTwoAction::Rollback) => {
            session.status = GlobalStatus::RollbackRetryTimeout;
            if config.release_locks_on_rollback_retry_timeout {
                let partitions = session.lock_partitions();
                outbox.release(work, session, ReleaseScope::Global, partitions);
            }
        }
        None => {}
    }
}
