//! All-or-none acquisition of a branch's row locks across lock partitions.
//!
//! A sans-IO driver for the async layer: it says which command to propose
//! to which lock partition next, and is told the answer.
//!
//! 1. `TryLock` on each partition of the plan **in ascending partition
//!    order**, one at a time. Each partition grants all the branch's rows in
//!    it or refuses (granting none).
//! 2. On the first refusal: `Unlock` the branch on every partition already
//!    granted (newest first), then report the refusal. `Unlock` is
//!    idempotent and never refused, so this always completes.
//!
//! Why this is all-or-none and deadlock-free: no step ever waits for a
//! lock; a refusal ends the attempt and gives back what it took, so the
//! outcome is either every partition granted or, once the releases are
//! applied, none. No cycle of waiting branches can form because nothing
//! waits; and because every branch climbs the partitions in the same order,
//! of two branches contending for rows, the one refused is always the one
//! that reached a shared partition second, so at least one of any set of
//! contenders gets through (the full argument is in
//! `docs/tc-state-machine.md`). The refused branch's RM retries later under
//! Seata's lock retry policy.
//!
//! Crash safety does not rest on this driver: the branch is registered in
//! its session before the first `TryLock`, so if the async layer dies
//! midway, `CancelBranchRegistration` or the session's rollback releases
//! every partition of the plan through the session partition's durable
//! outbox.

use super::command::{LockAnswer, LockCommand, LockError, LockHolder};
use crate::coordinator::lock_key::{PartitionRows, sorted_by_row_key};

/// Why an acquisition failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockRefusal {
    /// Another transaction holds a row (Seata's `LockKeyConflict`, or
    /// `LockKeyConflictFailFast` for a non-autocommit branch when the
    /// holder is `Rollbacking`).
    Conflict(LockHolder),
    /// The branch or its transaction was already released: its session is
    /// ending; the registration must fail.
    Fenced,
    /// A partition refused the command.
    Error(LockError),
    /// A partition answered something that is not an answer to `TryLock`.
    UnexpectedAnswer(LockAnswer),
}

/// How an acquisition ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcquisitionOutcome {
    /// Every row of the plan is locked for the branch.
    Acquired,
    /// No row of the plan is held by the branch any more.
    Refused(LockRefusal),
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AcquisitionStep {
    /// Propose `command` to lock partition `partition`, then call
    /// [`LockAcquisition::on_answer`] with its answer.
    Send {
        partition: u32,
        command: LockCommand,
    },
    Done(AcquisitionOutcome),
}

/// The fixed-order, all-or-none lock protocol for one branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockAcquisition {
    xid: String,
    transaction_id: u64,
    branch_id: i64,
    now_ms: u64,
    /// Ascending partitions, each once.
    plan: Vec<PartitionRows>,
    /// Index in `plan` of the next `TryLock`.
    next: usize,
    /// Partitions granted and not yet released, ascending.
    granted: Vec<u32>,
    refusal: Option<LockRefusal>,
}

impl LockAcquisition {
    /// Starts acquiring `plan` (as answered by `RegisterBranch`; sorted and
    /// merged here anyway). `now_ms` goes into the commands.
    pub fn new(
        xid: &str,
        transaction_id: u64,
        branch_id: i64,
        plan: Vec<PartitionRows>,
        now_ms: u64,
    ) -> Self {
        let mut merged: Vec<PartitionRows> = Vec::with_capacity(plan.len());
        let mut plan = plan;
        plan.sort_by_key(|p| p.partition);
        for part in plan {
            match merged.last_mut() {
                Some(last) if last.partition == part.partition => {
                    let mut rows = std::mem::take(&mut last.rows);
                    rows.extend(part.rows);
                    last.rows = sorted_by_row_key(rows);
                }
                _ => merged.push(part),
            }
        }
        LockAcquisition {
            xid: xid.to_owned(),
            transaction_id,
            branch_id,
            now_ms,
            plan: merged,
            next: 0,
            granted: Vec::new(),
            refusal: None,
        }
    }

    /// The next command to send, or the outcome.
    pub fn step(&self) -> AcquisitionStep {
        match &self.refusal {
            Some(refusal) => match self.granted.last() {
                Some(&partition) => AcquisitionStep::Send {
                    partition,
                    command: LockCommand::Unlock {
                        transaction_id: self.transaction_id,
                        branch_id: self.branch_id,
                        now_ms: self.now_ms,
                    },
                },
                None => AcquisitionStep::Done(AcquisitionOutcome::Refused(refusal.clone())),
            },
            None => match self.plan.get(self.next) {
                Some(part) => AcquisitionStep::Send {
                    partition: part.partition,
                    command: LockCommand::TryLock {
                        xid: self.xid.clone(),
                        transaction_id: self.transaction_id,
                        branch_id: self.branch_id,
                        rows: part.rows.clone(),
                        now_ms: self.now_ms,
                    },
                },
                None => AcquisitionStep::Done(AcquisitionOutcome::Acquired),
            },
        }
    }

    /// The answer to the command of the last [`step`](Self::step). Ignored
    /// once done.
    pub fn on_answer(&mut self, answer: &LockAnswer) {
        if self.refusal.is_some() {
            // Releasing: any answer ends that partition's release (Unlock is
            // idempotent and the outbox repeats it if this one was lost).
            self.granted.pop();
            return;
        }
        let Some(part) = self.plan.get(self.next) else {
            return;
        };
        match answer {
            LockAnswer::Granted { .. } => {
                self.granted.push(part.partition);
                self.next += 1;
            }
            LockAnswer::Conflict(holder) => {
                self.refusal = Some(LockRefusal::Conflict(holder.clone()))
            }
            LockAnswer::Fenced { .. } => self.refusal = Some(LockRefusal::Fenced),
            LockAnswer::Refused(e) => self.refusal = Some(LockRefusal::Error(e.clone())),
            other => self.refusal = Some(LockRefusal::UnexpectedAnswer(other.clone())),
        }
    }

    /// Whether [`step`](Self::step) answers `Done`.
    pub fn is_done(&self) -> bool {
        matches!(self.step(), AcquisitionStep::Done(_))
    }

    /// Partitions whose rows the branch holds now (as far as this driver
    /// knows), ascending.
    pub fn granted_partitions(&self) -> &[u32] {
        &self.granted
    }

    /// Every partition of the plan, ascending.
    pub fn plan_partitions(&self) -> Vec<u32> {
        self.plan.iter().map(|p| p.partition).collect()
    }
}
