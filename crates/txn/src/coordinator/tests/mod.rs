//! Tests of the coordinator state machines.

#![allow(clippy::unwrap_used)]

mod codec;
mod determinism;
mod ids;
mod lock;
mod lock_key;
mod protocol;
mod session;

use super::*;
use crate::protocol::{BranchStatus, BranchType, GlobalStatus};

/// xorshift64*, seeded: the tests' only randomness.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform-ish in `0..n` (`n` > 0).
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub(super) fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len as u64 + 1) as usize;
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

pub(super) const LOCK_PARTITIONS: u32 = 3;

/// A test configuration: 3 lock partitions, small retry numbers.
pub(super) fn session_config() -> SessionConfig {
    SessionConfig {
        lock_partitions: LOCK_PARTITIONS,
        retry: RetryPolicy {
            max_commit_retries: 3,
            max_rollback_retries: 3,
            max_retry_duration_ms: 10_000,
            retry_interval_ms: 100,
            max_retry_interval_ms: 1_000,
        },
        ..SessionConfig::default()
    }
}

pub(super) fn sessions() -> SessionPartition {
    SessionPartition::new(session_config()).unwrap()
}

pub(super) fn lock_partition(index: u32) -> LockPartition {
    LockPartition::new(LockConfig {
        partition_index: index,
        partitions: LOCK_PARTITIONS,
        fence_retention_ms: 1_000,
        ..LockConfig::default()
    })
    .unwrap()
}

pub(super) fn xid_of(tid: u64) -> String {
    make_xid("10.0.0.1", 8091, tid)
}

pub(super) fn begin_cmd(tid: u64, name: &str, timeout_ms: u64, now_ms: u64) -> SessionCommand {
    SessionCommand::Begin {
        xid: xid_of(tid),
        transaction_id: tid,
        application_id: "app".into(),
        transaction_service_group: "group".into(),
        transaction_name: name.into(),
        timeout_ms,
        application_data: String::new(),
        now_ms,
    }
}

/// Begins transaction `tid` at time 0 with a 60 s timeout.
pub(super) fn begin(p: &mut SessionPartition, tid: u64) -> String {
    let answer = p.apply(begin_cmd(tid, "tx", 60_000, 0));
    assert_eq!(
        answer,
        SessionAnswer::Began { xid: xid_of(tid) },
        "begin {tid}"
    );
    xid_of(tid)
}

pub(super) fn register_cmd(
    xid: &str,
    branch_id: i64,
    branch_type: BranchType,
    lock_key: &str,
) -> SessionCommand {
    SessionCommand::RegisterBranch {
        xid: xid.into(),
        branch_id,
        resource_id: "jdbc:mysql://db/orders".into(),
        branch_type,
        lock_key: lock_key.into(),
        client_id: "app:10.0.0.2:50000".into(),
        application_data: String::new(),
    }
}

pub(super) fn register(
    p: &mut SessionPartition,
    xid: &str,
    branch_id: i64,
    branch_type: BranchType,
    lock_key: &str,
) -> Vec<PartitionRows> {
    match p.apply(register_cmd(xid, branch_id, branch_type, lock_key)) {
        SessionAnswer::BranchRegistered {
            branch_id: id,
            lock_plan,
        } => {
            assert_eq!(id, branch_id);
            lock_plan
        }
        other => panic!("register {branch_id}: {other:?}"),
    }
}

pub(super) fn status_of(p: &mut SessionPartition, xid: &str) -> GlobalStatus {
    match p.apply(SessionCommand::Status { xid: xid.into() }) {
        SessionAnswer::GlobalStatus { status, lock_work } => {
            assert!(lock_work.is_empty());
            status
        }
        other => panic!("status: {other:?}"),
    }
}

/// The status and lock work of a `GlobalStatus` answer.
pub(super) fn global_status(answer: SessionAnswer) -> (GlobalStatus, Vec<LockWork>) {
    match answer {
        SessionAnswer::GlobalStatus { status, lock_work } => (status, lock_work),
        other => panic!("expected a GlobalStatus answer, got {other:?}"),
    }
}

pub(super) fn refused(answer: SessionAnswer) -> CoordinatorError {
    match answer {
        SessionAnswer::Refused(e) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

pub(super) fn result_cmd(
    xid: &str,
    branch_id: i64,
    outcome: BranchStatus,
    now_ms: u64,
) -> SessionCommand {
    SessionCommand::BranchPhaseTwoResult {
        xid: xid.into(),
        branch_id,
        outcome,
        now_ms,
    }
}

/// A lock key whose rows land in the given lock partitions (one row each,
/// table `t`), found by trying primary keys `k0`, `k1`, ...
pub(super) fn lock_key_in(partitions: &[u32], salt: &str) -> String {
    let mut pks = Vec::new();
    for &want in partitions {
        let pk = (0..)
            .map(|i| format!("{salt}{i}"))
            .find(|pk| {
                lock_partition_of(
                    &RowKey::new("jdbc:mysql://db/orders", "t", pk).row_key(),
                    LOCK_PARTITIONS,
                ) == want
                    && !pks.contains(pk)
            })
            .unwrap();
        pks.push(pk);
    }
    format!("t:{}", pks.join(","))
}
