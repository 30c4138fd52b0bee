//! Determinism: the same command sequence gives the same answers and the
//! same snapshot bytes on every replica, including one restored from a
//! snapshot midway.

use super::lock::rows_in;
use super::*;

const OUTCOMES: [BranchStatus; 8] = [
    BranchStatus::PhaseTwoCommitted,
    BranchStatus::PhaseTwoCommitFailedRetryable,
    BranchStatus::PhaseTwoCommitFailedUnretryable,
    BranchStatus::PhaseTwoRollbacked,
    BranchStatus::PhaseTwoRollbackFailedRetryable,
    BranchStatus::PhaseTwoRollbackFailedUnretryable,
    BranchStatus::PhaseTwoCommitFailedXaerNotaRetryable,
    BranchStatus::PhaseTwoRollbackFailedXaerNotaRetryable,
];

const TYPES: [BranchType; 4] = [
    BranchType::At,
    BranchType::Tcc,
    BranchType::Saga,
    BranchType::Xa,
];

/// A random session command over a small universe of transactions and
/// branches, so that commands often hit existing sessions.
fn random_session_command(rng: &mut Rng, now: &mut u64, p: &SessionPartition) -> SessionCommand {
    // Time mostly moves forward, sometimes back (another proposer's clock).
    *now = if rng.below(10) == 0 {
        now.saturating_sub(rng.below(500))
    } else {
        *now + rng.below(400)
    };
    let now_ms = *now;
    let tid = 1 + rng.below(8);
    let xid = xid_of(tid);
    let branch_id = 1 + rng.below(4) as i64;
    match rng.below(14) {
        0 | 1 => begin_cmd(
            tid,
            if rng.below(5) == 0 { "$Saga_t" } else { "t" },
            1_000 + rng.below(5_000),
            now_ms,
        ),
        2..=4 => {
            let partitions: Vec<u32> = (0..LOCK_PARTITIONS).filter(|_| rng.below(2) == 0).collect();
            register_cmd(
                &xid,
                branch_id,
                TYPES[rng.below(4) as usize],
                &lock_key_in(&partitions, &format!("k{}", rng.below(3))),
            )
        }
        5 => SessionCommand::ReportBranch {
            xid,
            branch_id,
            status: BranchStatus::ALL[rng.below(BranchStatus::ALL.len() as u64) as usize],
            application_data: String::new(),
        },
        6 => SessionCommand::Commit { xid, now_ms },
        7 => SessionCommand::Rollback { xid, now_ms },
        8 | 9 => {
            // Prefer due work, as the async layer would.
            let due = p.due_phase_two(now_ms);
            let (xid, branch_id) = match due.get(rng.below(due.len() as u64 + 1) as usize) {
                Some(w) => (w.xid.clone(), w.branch_id),
                None => (xid, branch_id),
            };
            result_cmd(&xid, branch_id, OUTCOMES[rng.below(8) as usize], now_ms)
        }
        10 => SessionCommand::TimeoutCheck { now_ms },
        11 => SessionCommand::GlobalReport {
            xid,
            status: GlobalStatus::ALL[rng.below(GlobalStatus::ALL.len() as u64) as usize],
            now_ms,
        },
        12 => match p.pending_lock_releases().next() {
            Some(r) if rng.below(2) == 0 => SessionCommand::AckLockRelease {
                release_id: r.release_id,
            },
            _ => SessionCommand::CancelBranchRegistration { xid, branch_id },
        },
        _ => {
            if rng.below(4) == 0 {
                SessionCommand::ForceFinish { xid }
            } else {
                SessionCommand::Status { xid }
            }
        }
    }
}

/// Invariants that hold after every command.
fn check_session_invariants(p: &SessionPartition) {
    for s in p.global_sessions() {
        if s.status != GlobalStatus::Begin {
            // Only a saga report moves a session out of Begin without
            // closing it.
            assert!(!s.active || s.is_saga(), "{s:?}");
        }
        for b in &s.branches {
            assert!(b.lock_partitions.iter().all(|&q| q < LOCK_PARTITIONS));
            assert!(b.lock_partitions.windows(2).all(|w| w[0] < w[1]));
        }
    }
    for r in p.pending_lock_releases() {
        assert!(!r.partitions.is_empty());
        assert!(r.partitions.iter().all(|&q| q < LOCK_PARTITIONS));
    }
}

#[test]
fn session_replicas_agree() {
    let mut seen = std::collections::BTreeSet::new();
    let mut refusals = std::collections::BTreeSet::new();
    for seed in 1..=8u64 {
        let mut rng = Rng::new(seed * 0x9e37_79b9);
        let mut a = sessions();
        let mut b = sessions();
        let mut c: Option<SessionPartition> = None;
        let mut now = 0;
        for step in 0..1_500 {
            let cmd = random_session_command(&mut rng, &mut now, &a);
            // Through the log: encoded, decoded, applied.
            let bytes = cmd.encode();
            let answer_a = a.apply(cmd);
            let answer_b = b.apply_bytes(&bytes);
            assert_eq!(answer_a, answer_b, "seed {seed} step {step}");
            assert_eq!(SessionAnswer::decode(&answer_a.encode()).unwrap(), answer_a);
            if let Some(c) = c.as_mut() {
                assert_eq!(c.apply_bytes(&bytes), answer_a);
            }
            if step == 700 {
                c = Some(SessionPartition::restore(session_config(), &a.snapshot()).unwrap());
            }
            check_session_invariants(&a);
            seen.extend(a.global_sessions().map(|s| s.status.code()));
            match &answer_a {
                SessionAnswer::GlobalStatus { status, .. } => {
                    seen.insert(status.code());
                }
                SessionAnswer::Refused(e) => {
                    refusals.insert(e.exception_code().code());
                }
                _ => {}
            }
        }
        let image = a.snapshot();
        assert_eq!(b.snapshot(), image, "seed {seed}");
        assert_eq!(c.unwrap().snapshot(), image, "seed {seed}");
    }
    // The random walk reaches most of the state diagram.
    assert!(seen.len() >= 14, "{seen:?}");
    assert!(refusals.len() >= 5, "{refusals:?}");
}

#[test]
fn lock_replicas_agree() {
    for seed in 1..=8u64 {
        let mut rng = Rng::new(seed * 0x2545_f491);
        let index = (seed % u64::from(LOCK_PARTITIONS)) as u32;
        let universe = rows_in(index, 12, "u");
        let mut a = lock_partition(index);
        let mut b = lock_partition(index);
        let mut c: Option<LockPartition> = None;
        let mut now = 0u64;
        for step in 0..3_000 {
            now += rng.below(50);
            let tid = 1 + rng.below(6);
            let branch_id = 1 + rng.below(3) as i64;
            let rows: Vec<RowKey> = (0..1 + rng.below(4))
                .map(|_| universe[rng.below(universe.len() as u64) as usize].clone())
                .collect();
            let cmd = match rng.below(8) {
                0..=3 => LockCommand::TryLock {
                    xid: xid_of(tid),
                    transaction_id: tid,
                    branch_id,
                    rows,
                    now_ms: now,
                },
                4 => LockCommand::Unlock {
                    transaction_id: tid,
                    branch_id,
                    now_ms: now,
                },
                5 => LockCommand::ReleaseGlobal {
                    transaction_id: tid,
                    now_ms: now,
                },
                6 => LockCommand::MarkRollbacking {
                    transaction_id: tid,
                },
                _ => LockCommand::Query {
                    transaction_id: tid,
                    rows,
                },
            };
            let bytes = cmd.encode();
            let answer = a.apply(cmd);
            assert_eq!(b.apply_bytes(&bytes), answer, "seed {seed} step {step}");
            if let Some(c) = c.as_mut() {
                assert_eq!(c.apply_bytes(&bytes), answer);
            }
            if step == 1_500 {
                c = Some(LockPartition::restore(*a.config(), &a.snapshot()).unwrap());
            }
            // Every row is held by exactly one transaction, indexed by it.
            let held: usize = (1..=6).map(|t| a.row_keys_of(t).len()).sum();
            assert_eq!(held, a.len());
        }
        assert_eq!(b.snapshot(), a.snapshot());
        assert_eq!(c.unwrap().snapshot(), a.snapshot());
    }
}
