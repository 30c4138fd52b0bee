//! Session partition: every status transition, with Seata's semantics.

use super::*;
use crate::protocol::TransactionExceptionCode;

fn release_of(work: &[LockWork]) -> Vec<(ReleaseScope, Vec<u32>)> {
    work.iter()
        .filter_map(|w| match w {
            LockWork::Release(r) => Some((r.scope, r.partitions.clone())),
            LockWork::MarkRollbacking { .. } => None,
        })
        .collect()
}

fn marked_of(work: &[LockWork]) -> Vec<Vec<u32>> {
    work.iter()
        .filter_map(|w| match w {
            LockWork::MarkRollbacking { partitions, .. } => Some(partitions.clone()),
            LockWork::Release(_) => None,
        })
        .collect()
}

fn due_ids(p: &SessionPartition, now_ms: u64) -> Vec<(i64, PhaseTwoAction)> {
    p.due_phase_two(now_ms)
        .into_iter()
        .map(|w| (w.branch_id, w.action))
        .collect()
}

#[test]
fn begin_creates_a_session_in_begin_status() {
    let mut p = sessions();
    let answer = p.apply(begin_cmd(7, "order", 30_000, 1_000));
    let xid = xid_of(7);
    assert_eq!(answer, SessionAnswer::Began { xid: xid.clone() });
    assert_eq!(status_of(&mut p, &xid), GlobalStatus::Begin);
    let s = p.global_session(&xid).unwrap();
    assert_eq!(s.transaction_id, 7);
    assert!(s.active);
    assert_eq!(s.begin_time_ms, 1_000);
    assert_eq!(s.timeout_ms, 30_000);
    assert_eq!(s.transaction_name, "order");
    assert_eq!(s.application_id, "app");
    assert_eq!(s.transaction_service_group, "group");
    assert_eq!(p.len(), 1);
}

#[test]
fn begin_refuses_duplicates_bad_xids_and_limits() {
    let mut p = sessions();
    begin(&mut p, 1);
    let e = refused(p.apply(begin_cmd(1, "tx", 1, 0)));
    assert_eq!(
        e,
        CoordinatorError::GlobalTransactionExists { xid: xid_of(1) }
    );
    assert_eq!(e.exception_code(), TransactionExceptionCode::BeginFailed);

    // XID naming another transaction id, and an XID that does not parse.
    let mut cmd = begin_cmd(2, "tx", 1, 0);
    if let SessionCommand::Begin { xid, .. } = &mut cmd {
        *xid = xid_of(3);
    }
    assert!(matches!(
        refused(p.apply(cmd)),
        CoordinatorError::InvalidXid {
            transaction_id: 2,
            ..
        }
    ));
    let mut cmd = begin_cmd(2, "tx", 1, 0);
    if let SessionCommand::Begin { xid, .. } = &mut cmd {
        *xid = "no-port:2".into();
    }
    assert!(matches!(
        refused(p.apply(cmd)),
        CoordinatorError::InvalidXid { .. }
    ));

    let long = "n".repeat(257);
    assert!(matches!(
        refused(p.apply(begin_cmd(2, &long, 1, 0))),
        CoordinatorError::LimitExceeded {
            limit: Limit::NameBytes,
            value: 257,
            max: 256
        }
    ));

    let mut config = session_config();
    config.limits.max_global_sessions = 1;
    let mut small = SessionPartition::new(config).unwrap();
    begin(&mut small, 1);
    assert!(matches!(
        refused(small.apply(begin_cmd(2, "tx", 1, 0))),
        CoordinatorError::LimitExceeded {
            limit: Limit::GlobalSessions,
            ..
        }
    ));
    assert_eq!(small.len(), 1);
}

#[test]
fn register_branch_answers_the_lock_plan_in_ascending_partition_order() {
    let mut p = sessions();
    let xid = begin(&mut p, 1);
    let key = lock_key_in(&[2, 0, 1, 2], "k");
    let plan = register(&mut p, &xid, 11, BranchType::At, &key);
    let partitions: Vec<u32> = plan.iter().map(|r| r.partition).collect();
    assert_eq!(partitions, vec![0, 1, 2]);
    assert_eq!(plan.iter().map(|r| r.rows.len()).sum::<usize>(), 4);
    for part in &plan {
        for row in &part.rows {
            assert_eq!(
                lock_partition_of(&row.row_key(), LOCK_PARTITIONS),
                part.partition
            );
            assert_eq!(row.table, "t");
            assert_eq!(row.resource_id, "jdbc:mysql://db/orders");
        }
    }
    let branch = p.global_session(&xid).unwrap().branch(11).unwrap();
    assert_eq!(branch.lock_partitions, vec![0, 1, 2]);
    assert_eq!(branch.status, BranchStatus::Registered);
    assert_eq!(branch.lock_key, key);

    // Only AT branches lock rows.
    assert!(register(&mut p, &xid, 12, BranchType::Tcc, "t:1").is_empty());
    assert!(register(&mut p, &xid, 13, BranchType::At, "  ").is_empty());
    assert!(
        p.global_session(&xid)
            .unwrap()
            .branch(12)
            .unwrap()
            .lock_partitions
            .is_empty()
    );
}

#[test]
fn register_branch_refusals() {
    let mut p = sessions();
    let e = refused(p.apply(register_cmd(&xid_of(9), 1, BranchType::At, "t:1")));
    assert_eq!(
        e,
        CoordinatorError::GlobalTransactionNotExist { xid: xid_of(9) }
    );
    assert_eq!(
        e.exception_code(),
        TransactionExceptionCode::GlobalTransactionNotExist
    );

    let xid = begin(&mut p, 1);
    let e = refused(p.apply(register_cmd(&xid, 1, BranchType::At, "t1:1;t2")));
    assert_eq!(
        e,
        CoordinatorError::LockKey {
            xid: xid.clone(),
            error: LockKeyError::MissingColon { group: 1 }
        }
    );
    assert_eq!(
        e.exception_code(),
        TransactionExceptionCode::BranchRegisterFailed
    );
    assert!(matches!(
        refused(p.apply(register_cmd(&xid, -1, BranchType::At, "t:1"))),
        CoordinatorError::InvalidBranchId { branch_id: -1 }
    ));
    register(&mut p, &xid, 1, BranchType::At, "t:1");
    assert!(matches!(
        refused(p.apply(register_cmd(&xid, 1, BranchType::At, "t:2"))),
        CoordinatorError::BranchExists { branch_id: 1, .. }
    ));
    let mut big = register_cmd(&xid, 2, BranchType::Tcc, "");
    if let SessionCommand::RegisterBranch {
        application_data, ..
    } = &mut big
    {
        *application_data = "x".repeat(64_001);
    }
    let e = refused(p.apply(big));
    assert_eq!(
        e.exception_code(),
        TransactionExceptionCode::FailedToAddBranch
    );
    assert_eq!(p.global_session(&xid).unwrap().branches.len(), 1);
}

#[test]
fn registration_after_commit_or_rollback_is_refused() {
    let mut p = sessions();
    let committed = begin(&mut p, 1);
    register(&mut p, &committed, 1, BranchType::Tcc, "");
    p.apply(SessionCommand::Commit {
        xid: committed.clone(),
        now_ms: 10,
    });
    // Seata checks `active` first: a closed session is "not active".
    let e = refused(p.apply(register_cmd(&committed, 2, BranchType::At, "t:1")));
    assert_eq!(
        e,
        CoordinatorError::GlobalTransactionNotActive {
            xid: committed.clone(),
            status: GlobalStatus::Committing
        }
    );
    assert_eq!(
        e.exception_code(),
        TransactionExceptionCode::GlobalTransactionNotActive
    );

    let rolled = begin(&mut p, 2);
    register(&mut p, &rolled, 1, BranchType::Tcc, "");
    p.apply(SessionCommand::Rollback {
        xid: rolled.clone(),
        now_ms: 10,
    });
    assert!(matches!(
        refused(p.apply(register_cmd(&rolled, 2, BranchType::At, "t:1"))),
        CoordinatorError::GlobalTransactionNotActive {
            status: GlobalStatus::Rollbacking,
            ..
        }
    ));

    // Still active but no longer Begin (a saga reported a status):
    // GlobalTransactionStatusInvalid.
    p.apply(begin_cmd(3, "$Saga_order", 60_000, 0));
    let saga = xid_of(3);
    p.apply(SessionCommand::GlobalReport {
        xid: saga.clone(),
        status: GlobalStatus::CommitRetrying,
        now_ms: 5,
    });
    let e = refused(p.apply(register_cmd(&saga, 2, BranchType::Saga, "")));
    assert_eq!(
        e,
        CoordinatorError::GlobalTransactionStatusInvalid {
            xid: saga,
            status: GlobalStatus::CommitRetrying,
            expected: GlobalStatus::Begin
        }
    );
    assert_eq!(
        e.exception_code(),
        TransactionExceptionCode::GlobalTransactionStatusInvalid
    );
}

#[test]
fn report_branch_sets_status_and_application_data() {
    let mut p = sessions();
    let xid = begin(&mut p, 1);
    register(&mut p, &xid, 5, BranchType::At, "t:1");
    let answer = p.apply(SessionCommand::ReportBranch {
        xid: xid.clone(),
        branch_id: 5,
        status: BranchStatus::PhaseOneDone,
        application_data: "{\"k\":1}".into(),
    });
    assert_eq!(answer, SessionAnswer::BranchReported);
    let b = p.global_session(&xid).unwrap().branch(5).unwrap();
    assert_eq!(b.status, BranchStatus::PhaseOneDone);
    assert_eq!(b.application_data, "{\"k\":1}");
    let e = refused(p.apply(SessionCommand::ReportBranch {
        xid: xid.clone(),
        branch_id: 6,
        status: BranchStatus::PhaseOneDone,
        application_data: String::new(),
    }));
    assert_eq!(
        e,
        CoordinatorError::BranchTransactionNotExist { xid, branch_id: 6 }
    );
    assert_eq!(
        e.exception_code(),
        TransactionExceptionCode::BranchTransactionNotExist
    );
}

#[test]
fn commit_with_only_at_branches_is_async_committing_and_releases_all_locks() {
    let mut p = sessions();
    let xid = begin(&mut p, 1);
    register(&mut p, &xid, 1, BranchType::At, &lock_key_in(&[0], "a"));
    register(&mut p, &xid, 2, BranchType::At, &lock_key_in(&[2], "b"));
    let (status, work) = global_status(p.apply(SessionCommand::Commit {
        xid: xid.clone(),
        now_ms: 100,
    }));
    // Seata tells the TM "Committed" at once.
    assert_eq!(status, GlobalStatus::Committed);
    assert_eq!(release_of(&work), vec![(ReleaseScope::Global, vec![0, 2])]);
    assert_eq!(
        p.global_session(&xid).unwrap().status,
        GlobalStatus::AsyncCommitting
    );
    assert!(!p.global_session(&xid).unwrap().active);
    assert_eq!(status_of(&mut p, &xid), GlobalStatus::AsyncCommitting);
    assert_eq!(
        due_ids(&p, 100),
        vec![(1, PhaseTwoAction::Commit), (2, PhaseTwoAction::Commit)]
    );

    let (status, work) =
        global_status(p.apply(result_cmd(&xid, 1, BranchStatus::PhaseTwoCommitted, 110)));
    assert_eq!(status, GlobalStatus::AsyncCommitting);
    assert!(work.is_empty(), "locks went at commit");
    let (status, work) =
        global_status(p.apply(result_cmd(&xid, 2, BranchStatus::PhaseTwoCommitted, 120)));
    assert_eq!(status, GlobalStatus::Committed);
    assert!(work.is_empty());
    assert!(p.global_session(&xid).is_none());
    assert_eq!(status_of(&mut p, &xid), GlobalStatus::Finished);
}

#[test]
fn commit_with_non_at_branches_is_committing_then_async() {
    let mut p = sessions();
    let xid = begin(&mut p, 1);
    register(&mut p, &xid, 1, BranchType::At, "t:1");
    register(&mut p, &xid, 2, BranchType::Tcc, "");
    register(&mut p, &xid, 3, BranchType::Xa, "");
    register(&mut p, &xid, 4, BranchType::At, "t:2");
    let (status, _) = global_status(p.apply(SessionCommand::Commit {
        xid: xid.clone(),
        now_ms: 0,
    }));
    assert_eq!(status, GlobalStatus::Committing);
    // Synchronous branches first, one at a time, in registration order.
    assert_eq!(due_ids(&p, 0), vec![(2, PhaseTwoAction::Commit)]);
    let (status, _) =
        global_status(p.apply(result_cmd(&xid, 2, BranchStatus::PhaseTwoCommitted, 1)));
    assert_eq!(status, GlobalStatus::Committing);
    assert_eq!(due_ids(&p, 1), vec![(3, PhaseTwoAction::Commit)]);
    let (status, _) =
        global_status(p.apply(result_cmd(&xid, 3, BranchStatus::PhaseTwoCommitted, 2)));
    // Only AT left: asynchronous commit.
    assert_eq!(status, GlobalStatus::AsyncCommitting);
    assert_eq!(
        due_ids(&p, 2),
        vec![(1, PhaseTwoAction::Commit), (4, PhaseTwoAction::Commit)]
    );
    // Committing again answers the TM "Committed".
    let (status, work) = global_status(p.apply(SessionCommand::Commit {
        xid: xid.clone(),
        now_ms: 3,
    }));
    assert_eq!(status, GlobalStatus::Committed);
    assert!(work.is_empty());
}

#[test]
fn commit_without_branches_ends_at_once() {
    let mut p = sessions();
    let xid = begin(&mut p, 1);
    let (status, work) = global_status(p.apply(SessionCommand::Commit {
        xid: xid.clone(),
        now_ms: 0,
    }));
    assert_eq!(status, GlobalStatus::Committed);
    assert!(work.is_empty());
    assert!(p.is_empty());
    // Seata answers Finished for an unknown session.
    let (status, _) = global_status(p.apply(SessionCommand::Commit { xid, now_ms: 0 }));
    assert_eq!(status, GlobalStatus::Finished);
}

#[test]
fn commit_after_the_timeout_rolls_back() {
    let mut p = sessions();
    p.apply(begin_cmd(1, "tx", 1_000, 0));
    let xid = xid_of(1);
    register(&mut p, &xid, 1, BranchType::At, &lock_key_in(&[1], "a"));
    let (status, work) = global_status(p.apply(SessionCommand::Commit {
        xid: xid.clone(),
        now_ms: 1_001,
    }));
    assert_eq!(status, GlobalStatus::TimeoutRollbacking);
    assert_eq!(marked_of(&work), vec![vec![1]]);
    assert!(
        release_of(&work).is_empty(),
        "a rollback keeps the locks until undone"
    );
    assert_eq!(due_ids(&p, 1_001), vec![(1, PhaseTwoAction::Rollback)]);
}

#[test]
fn commit_retryable_failure_is_commit_retrying_with_backoff() {
    let mut p = sessions();
    let xid = begin(&mut p, 1);
    register(&mut p, &xid, 1, BranchType::Tcc, "");
    p.apply(SessionCommand::Commit {
        xid: xid.clone(),
        now_ms: 1_000,
    });
    let (status, _) = global_status(p.apply(result_cmd(
        &xid,
        1,
        BranchStatus::PhaseTwoCommitFailedRetryable,
        1_000,
    )));
    assert_eq!(status, GlobalStatus::CommitRetrying);
    let s = p.global_session(&xid).unwrap();
    assert_eq!(s.retry.failures, 1);
    assert_eq!(s.retry.first_failure_ms, Some(1_000));
    assert_eq!(s.branch(1).unwrap().phase_two_failures, 1);
    assert_eq!(
        s.branch(1).unwrap().status,
        BranchStatus::PhaseTwoCommitFailedRetryable
    );
    // Backoff: due again after retry_interval_ms.
    assert!(due_ids(&p, 1_099).is_empty());
    assert_eq!(p.next_phase_two_due_ms(), Some(1_100));
    assert_eq!(due_ids(&p, 1_100), vec![(1, PhaseTwoAction::Commit)]);
    let (status, _) = global_status(p.apply(result_cmd(
        &xid,
        1,
        BranchStatus::PhaseTwoCommitFailedRetryable,
        1_100,
    )));
    assert_eq!(status, GlobalStatus::CommitRetrying);
    assert!(due_ids(&p, 1_299).is_empty(), "doubled backoff");
    assert_eq!(due_ids(&p, 1_300).len(), 1);
    let (status, _) =
        global_status(p.apply(result_cmd(&xid, 1, BranchStatus::PhaseTwoCommitted, 1_300)));
    assert_eq!(status, GlobalStatus::Committed);
    assert!(p.is_empty());
}

#[test]
fn commit_unretryable_failure_is_commit_failed_and_stays() {
    let mut p = sessions();
    let xid = begin(&mut p, 1);
    register(&mut p, &xid, 1, BranchType::Tcc, "");
    p.apply(SessionCommand::Commit {
        xid: xid.clone(),
        now_ms: 0,
    });
    let (status, _) = global_status(p.apply(result_cmd(
        &xid,
        1,
        BranchStatus::PhaseTwoCommitFailedUnretryable,
        1,
    )));
    assert_eq!(status, GlobalStatus::CommitFailed);
    assert_eq!(status_of(&mut p, &xid), GlobalStatus::CommitFailed);
    assert!(due_ids(&p, 1_000_000).is_empty());
    // Late results are refused: the session is no longer in phase two.
    let e = refused(p.apply(result_cmd(&xid, 1, BranchStatus::PhaseTwoCommitted, 2)));
    assert_eq!(
        e,
        CoordinatorError::NotInPhaseTwo {
            xid,
            status: GlobalStatus::CommitFailed
        }
    );
}

#[test]
fn rollback_undoes_branches_newest_first_releasing_each() {
    let mut p = sessions();
    let xid = begin(&mut p, 1);
    register(&mut p, &xid, 1, BranchType::At, &lock_key_in(&[0], "a"));
    register(&mut p, &xid, 2, BranchType::At, &lock_key_in(&[1, 2], "b"));
    register(&mut p, &xid, 3, BranchType::Tcc, "");
    let (status, work) = global_status(p.apply(SessionCommand::Rollback {
        xid: xid.clone(),
        now_ms: 0,
    }));
    assert_eq!(status, GlobalStatus::Rollbacking);
    assert_eq!(marked_of(&work), vec![vec![0, 1, 2]]);
    assert!(release_of(&work).is_empty());

    assert_eq!(due_ids(&p, 0), vec![(3, PhaseTwoAction::Rollback)]);
    let (status, work) =
        global_status(p.apply(result_cmd(&xid, 3, BranchStatus::PhaseTwoRollbacked, 1)));
    assert_eq!(status, GlobalStatus::Rollbacking);
    assert!(work.is_empty(), "a TCC branch holds no row lock");
    assert_eq!(due_ids(&p, 1), vec![(2, PhaseTwoAction::Rollback)]);
    let (_, work) =
        global_status(p.apply(result_cmd(&xid, 2, BranchStatus::PhaseTwoRollbacked, 2)));
    assert_eq!(
        release_of(&work),
        vec![(ReleaseScope::Branch(2), vec![1, 2])]
    );
    let (status, work) =
        global_status(p.apply(result_cmd(&xid, 1, BranchStatus::PhaseTwoRollbacked, 3)));
    assert_eq!(status, GlobalStatus::Rollbacked);
    assert_eq!(release_of(&work), vec![(ReleaseScope::Branch(1), vec![0])]);
    assert!(p.is_empty());
    assert_eq!(p.pending_lock_releases().count(), 2);

    // Rolling back an unknown session answers Finished.
    let (status, _) = global_status(p.apply(SessionCommand::Rollback { xid, now_ms: 4 }));
    assert_eq!(status, GlobalStatus::Finished);
}

#[test]
fn rollback_of_a_session_in_phase_two_changes_nothing() {
    let mut p = sessions();
    let xid = begin(&mut p, 1);
    register(&mut p, &xid, 1, BranchType::At, "t:1");
    p.apply(SessionCommand::Commit {
        xid: xid.clone(),
        now_ms: 0,
    });
    let (status, work) = global_status(p.apply(SessionCommand::Rollback {
        xid: xid.clone(),
        now_ms: 1,
    }));
    assert_eq!(status, GlobalStatus::AsyncCommitting);
    assert!(work.is_empty());
}

#[test]
fn rollback_retryable_failure_is_rollback_retrying() {
    let mut p = sessions();
    let xid = begin(&mut p, 1);
    register(&mut p, &xid, 1, BranchType::At, "t:1");
    p.apply(SessionCommand::Rollback {
        xid: xid.clone(),
        now_ms: 0,
    });
    let (status, work) = global_status(p.apply(result_cmd(
        &xid,
        1,
        BranchStatus::PhaseTwoRollbackFailedRetryable,
        0,
    )));
    assert_eq!(status, GlobalStatus::RollbackRetrying);
    assert!(work.is_empty());
    assert!(due_ids(&p, 99).is_empty());
    assert_eq!(due_ids(&p, 100), vec![(1, PhaseTwoAction::Rollback)]);
    // Any other answer is retried too (Seata's default branch).
    let (status, _) = global_status(p.apply(result_cmd(&xid, 1, BranchStatus::Unknown, 100)));
    assert_eq!(status, GlobalStatus::RollbackRetrying);
    let (status, work) =
        global_status(p.apply(result_cmd(&xid, 1, BranchStatus::PhaseTwoRollbacked, 300)));
    assert_eq!(status, GlobalStatus::Rollbacked);
    assert_eq!(release_of(&work).len(), 1);
}

#[test]
fn rollback_unretryable_failure_keeps_the_locks_until_force_finish() {
    let mut p = sessions();
    let xid = begin(&mut p, 1);
    register(&mut p, &xid, 1, BranchType::At, &lock_key_in(&[0, 2], "a"));
    p.apply(SessionCommand::Rollback {
        xid: xid.clone(),
        now_ms: 0,
    });
    let (status, work) = global_status(p.apply(result_cmd(
        &xid,
        1,
        BranchStatus::PhaseTwoRollbackFailedUnretryable,
        1,
    )));
    assert_eq!(status, GlobalStatus::RollbackFailed);
    assert!(work.is_empty());
    assert_eq!(p.pending_lock_releases().count(), 0);
    assert!(due_ids(&p, 1_000_000).is_empty());

    match p.apply(SessionCommand::ForceFinish { xid: xid.clone() }) {
        SessionAnswer::ForceFinished {
            previous_status,
            lock_work,
        } => {
            assert_eq!(previous_status, GlobalStatus::RollbackFailed);
            assert_eq!(
                release_of(&lock_work),
                vec![(ReleaseScope::Global, vec![0, 2])]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(p.is_empty());
    assert_eq!(
        refused(p.apply(SessionCommand::ForceFinish { xid: xid.clone() })),
        CoordinatorError::GlobalTransactionNotExist { xid }
    );
}

#[test]
fn timeout_check_rolls_back_expired_sessions() {
    let mut p = sessions();
    p.apply(begin_cmd(1, "tx", 1_000, 0));
    p.apply(begin_cmd(2, "tx", 5_000, 0));
    p.apply(begin_cmd(3, "tx", 1_000, 0));
    let (x1, x2, x3) = (xid_of(1), xid_of(2), xid_of(3));
    register(&mut p, &x1, 1, BranchType::At, &lock_key_in(&[1], "a"));
    register(&mut p, &x3, 1, BranchType::Tcc, "");
    // Seata's isTimeout is strict.
    assert!(p.sessions_to_timeout(1_000).is_empty());
    assert_eq!(p.sessions_to_timeout(1_001), vec![x1.clone(), x3.clone()]);

    match p.apply(SessionCommand::TimeoutCheck { now_ms: 1_001 }) {
        SessionAnswer::TimeoutChecked {
            timed_out,
            retry_timed_out,
            lock_work,
        } => {
            assert_eq!(timed_out, vec![x1.clone(), x3.clone()]);
            assert!(retry_timed_out.is_empty());
            assert_eq!(marked_of(&lock_work), vec![vec![1]]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(status_of(&mut p, &x1), GlobalStatus::TimeoutRollbacking);
    assert_eq!(status_of(&mut p, &x2), GlobalStatus::Begin);
    assert!(!p.global_session(&x1).unwrap().active);
    assert!(matches!(
        refused(p.apply(register_cmd(&x1, 2, BranchType::At, "t:9"))),
        CoordinatorError::GlobalTransactionNotActive { .. }
    ));

    // Retryable → TimeoutRollbackRetrying → TimeoutRollbacked.
    let (status, _) = global_status(p.apply(result_cmd(
        &x1,
        1,
        BranchStatus::PhaseTwoRollbackFailedRetryable,
        1_001,
    )));
    assert_eq!(status, GlobalStatus::TimeoutRollbackRetrying);
    let (status, work) =
        global_status(p.apply(result_cmd(&x1, 1, BranchStatus::PhaseTwoRollbacked, 1_200)));
    assert_eq!(status, GlobalStatus::TimeoutRollbacked);
    assert_eq!(release_of(&work), vec![(ReleaseScope::Branch(1), vec![1])]);
    assert!(p.global_session(&x1).is_none());

    // Unretryable → TimeoutRollbackFailed.
    let (status, _) = global_status(p.apply(result_cmd(
        &x3,
        1,
        BranchStatus::PhaseTwoRollbackFailedUnretryable,
        1_002,
    )));
    assert_eq!(status, GlobalStatus::TimeoutRollbackFailed);
}

#[test]
fn timeout_of_a_session_without_branches_ends_at_once() {
    let mut p = sessions();
    p.apply(begin_cmd(1, "tx", 10, 0));
    match p.apply(SessionCommand::TimeoutCheck { now_ms: 11 }) {
        SessionAnswer::TimeoutChecked { timed_out, .. } => assert_eq!(timed_out, vec![xid_of(1)]),
        other => panic!("{other:?}"),
    }
    assert!(p.is_empty());
}

#[test]
fn bounded_commit_retries_end_in_commit_retry_timeout() {
    let mut p = sessions();
    let xid = begin(&mut p, 1);
    register(&mut p, &xid, 1, BranchType::Tcc, "");
    register(&mut p, &xid, 2, BranchType::At, &lock_key_in(&[0], "a"));
    let (_, work) = global_status(p.apply(SessionCommand::Commit {
        xid: xid.clone(),
        now_ms: 0,
    }));
    assert_eq!(release_of(&work).len(), 1, "commit released the locks");
    // max_commit_retries = 3: the 4th failure gives up.
    let mut now = 0;
    for failure in 1..=4 {
        let (status, work) = global_status(p.apply(result_cmd(
            &xid,
            1,
            BranchStatus::PhaseTwoCommitFailedRetryable,
            now,
        )));
        assert!(work.is_empty());
        if failure < 4 {
            assert_eq!(status, GlobalStatus::CommitRetrying, "failure {failure}");
        } else {
            assert_eq!(status, GlobalStatus::CommitRetryTimeout);
        }
        now += 1_000;
    }
    // The session stays visible, with no more work.
    assert_eq!(status_of(&mut p, &xid), GlobalStatus::CommitRetryTimeout);
    assert!(due_ids(&p, u64::MAX).is_empty());
    assert_eq!(p.global_session(&xid).unwrap().retry.failures, 4);
}

#[test]
fn bounded_rollback_duration_ends_in_rollback_retry_timeout_keeping_locks() {
    let mut p = sessions();
    let xid = begin(&mut p, 1);
    register(&mut p, &xid, 1, BranchType::At, &lock_key_in(&[0, 1], "a"));
    p.apply(SessionCommand::Rollback {
        xid: xid.clone(),
        now_ms: 0,
    });
    p.apply(result_cmd(
        &xid,
        1,
        BranchStatus::PhaseTwoRollbackFailedRetryable,
        500,
    ));
    // No further report at all (e.g. the RM is gone): the timeout check
    // enforces max_retry_duration_ms (10 s) from the first failure.
    match p.apply(SessionCommand::TimeoutCheck { now_ms: 10_500 }) {
        SessionAnswer::TimeoutChecked {
            retry_timed_out, ..
        } => assert!(retry_timed_out.is_empty()),
        other => panic!("{other:?}"),
    }
    match p.apply(SessionCommand::TimeoutCheck { now_ms: 10_501 }) {
        SessionAnswer::TimeoutChecked {
            timed_out,
            retry_timed_out,
            lock_work,
        } => {
            assert!(timed_out.is_empty());
            assert_eq!(retry_timed_out, vec![xid.clone()]);
            assert!(lock_work.is_empty(), "locks are kept");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(status_of(&mut p, &xid), GlobalStatus::RollbackRetryTimeout);
    assert_eq!(p.pending_lock_releases().count(), 0);
    assert!(due_ids(&p, u64::MAX).is_empty());
    // The operator releases them.
    match p.apply(SessionCommand::ForceFinish { xid: xid.clone() }) {
        SessionAnswer::ForceFinished { lock_work, .. } => {
            assert_eq!(
                release_of(&lock_work),
                vec![(ReleaseScope::Global, vec![0, 1])]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bounded_rollback_retries_by_count() {
    let mut p = sessions();
    p.apply(begin_cmd(1, "tx", 10, 0));
    let xid = xid_of(1);
    register(&mut p, &xid, 1, BranchType::At, "t:1");
    p.apply(SessionCommand::TimeoutCheck { now_ms: 11 });
    let mut last = GlobalStatus::UnKnown;
    for i in 0..4 {
        last = global_status(p.apply(result_cmd(
            &xid,
            1,
            BranchStatus::PhaseTwoRollbackFailedRetryable,
            20 + i * 1_000,
        )))
        .0;
    }
    // Timeout rollbacks give up with the same code (Seata's endRollbackFailed
    // with isRetryTimeout).
    assert_eq!(last, GlobalStatus::RollbackRetryTimeout);
}

#[test]
fn rollback_retry_timeout_may_release_the_locks_when_configured() {
    let mut config = session_config();
    config.release_locks_on_rollback_retry_timeout = true;
    config.retry.max_rollback_retries = 0;
    let mut p = SessionPartition::new(config).unwrap();
    let xid = begin(&mut p, 1);
    register(&mut p, &xid, 1, BranchType::At, &lock_key_in(&[2], "a"));
    p.apply(SessionCommand::Rollback {
        xid: xid.clone(),
        now_ms: 0,
    });
    let (status, work) = global_status(p.apply(result_cmd(
        &xid,
        1,
        BranchStatus::PhaseTwoRollbackFailedRetryable,
        1,
    )));
    assert_eq!(status, GlobalStatus::RollbackRetryTimeout);
    assert_eq!(release_of(&work), vec![(ReleaseScope::Global, vec![2])]);
}

#[test]
fn xaer_nota_is_retried_until_well_past_the_timeout() {
    let mut p = sessions();
    p.apply(begin_cmd(1, "tx", 1_000, 0));
    let xid = xid_of(1);
    register(&mut p, &xid, 1, BranchType::Xa, "");
    register(&mut p, &xid, 2, BranchType::Xa, "");
    p.apply(SessionCommand::Rollback {
        xid: xid.clone(),
        now_ms: 10,
    });
    // Deadline: begin 0 + timeout 1000 + max(60000, 1000) = 61000.
    let (status, _) = global_status(p.apply(result_cmd(
        &xid,
        2,
        BranchStatus::PhaseTwoRollbackFailedXaerNotaRetryable,
        61_000,
    )));
    assert_eq!(status, GlobalStatus::RollbackRetrying);
    let (status, _) = global_status(p.apply(result_cmd(
        &xid,
        2,
        BranchStatus::PhaseTwoRollbackFailedXaerNotaRetryable,
        61_001,
    )));
    assert_eq!(status, GlobalStatus::RollbackRetrying);
    assert!(
        p.global_session(&xid).unwrap().branch(2).is_none(),
        "treated as rolled back"
    );
    let (status, _) = global_status(p.apply(result_cmd(
        &xid,
        1,
        BranchStatus::PhaseTwoRollbacked,
        61_002,
    )));
    assert_eq!(status, GlobalStatus::Rollbacked);
}

#[test]
fn branches_whose_phase_one_failed_get_no_phase_two() {
    let mut p = sessions();
    let xid = begin(&mut p, 1);
    register(&mut p, &xid, 1, BranchType::Tcc, "");
    register(&mut p, &xid, 2, BranchType::At, "t:1");
    register(&mut p, &xid, 3, BranchType::Xa, "");
    for (id, status) in [
        (1, BranchStatus::PhaseOneFailed),
        (3, BranchStatus::PhaseOneRdonly),
    ] {
        p.apply(SessionCommand::ReportBranch {
            xid: xid.clone(),
            branch_id: id,
            status,
            application_data: String::new(),
        });
    }
    let (status, _) = global_status(p.apply(SessionCommand::Commit {
        xid: xid.clone(),
        now_ms: 0,
    }));
    assert_eq!(status, GlobalStatus::Committed);
    assert_eq!(due_ids(&p, 0), vec![(2, PhaseTwoAction::Commit)]);
    p.apply(result_cmd(&xid, 2, BranchStatus::PhaseTwoCommitted, 0));
    assert!(p.is_empty());

    // Rollback: the failed AT branch's locks go at once.
    let xid = begin(&mut p, 2);
    register(&mut p, &xid, 1, BranchType::At, &lock_key_in(&[1], "a"));
    register(&mut p, &xid, 2, BranchType::At, &lock_key_in(&[0], "b"));
    p.apply(SessionCommand::ReportBranch {
        xid: xid.clone(),
        branch_id: 2,
        status: BranchStatus::PhaseOneFailed,
        application_data: String::new(),
    });
    let (status, work) = global_status(p.apply(SessionCommand::Rollback {
        xid: xid.clone(),
        now_ms: 0,
    }));
    assert_eq!(status, GlobalStatus::Rollbacking);
    assert_eq!(release_of(&work), vec![(ReleaseScope::Branch(2), vec![0])]);
    assert_eq!(marked_of(&work), vec![vec![1]]);
    assert_eq!(due_ids(&p, 0), vec![(1, PhaseTwoAction::Rollback)]);
}

#[test]
fn saga_global_report() {
    let mut p = sessions();
    // Missing session: the reported status comes back.
    let (status, _) = global_status(p.apply(SessionCommand::GlobalReport {
        xid: xid_of(9),
        status: GlobalStatus::Committed,
        now_ms: 0,
    }));
    assert_eq!(status, GlobalStatus::Committed);

    // Not a saga: nothing changes.
    let plain = begin(&mut p, 1);
    let (status, _) = global_status(p.apply(SessionCommand::GlobalReport {
        xid: plain.clone(),
        status: GlobalStatus::Committed,
        now_ms: 0,
    }));
    assert_eq!(status, GlobalStatus::Begin);

    p.apply(begin_cmd(2, "$Saga_a", 60_000, 0));
    let (status, _) = global_status(p.apply(SessionCommand::GlobalReport {
        xid: xid_of(2),
        status: GlobalStatus::Committed,
        now_ms: 1,
    }));
    assert_eq!(status, GlobalStatus::Committed);
    assert!(p.global_session(&xid_of(2)).is_none());

    p.apply(begin_cmd(3, "$Saga_b", 60_000, 0));
    register(&mut p, &xid_of(3), 1, BranchType::Saga, "");
    let (status, _) = global_status(p.apply(SessionCommand::GlobalReport {
        xid: xid_of(3),
        status: GlobalStatus::Finished,
        now_ms: 1,
    }));
    assert_eq!(status, GlobalStatus::Rollbacked);
    assert!(p.global_session(&xid_of(3)).is_none());

    // UnKnown is queued for a rollback retry.
    p.apply(begin_cmd(4, "$Saga_c", 60_000, 0));
    let (status, _) = global_status(p.apply(SessionCommand::GlobalReport {
        xid: xid_of(4),
        status: GlobalStatus::UnKnown,
        now_ms: 5,
    }));
    assert_eq!(status, GlobalStatus::RollbackRetrying);
    let due = p.due_phase_two(5);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].branch_id, SAGA_SESSION_BRANCH_ID);
    assert_eq!(due[0].action, PhaseTwoAction::Rollback);
}

#[test]
fn saga_session_wide_phase_two() {
    let mut p = sessions();
    p.apply(begin_cmd(1, "$Saga_order", 100, 0));
    let xid = xid_of(1);
    register(&mut p, &xid, 1, BranchType::Saga, "");
    p.apply(SessionCommand::TimeoutCheck { now_ms: 101 });
    let due = p.due_phase_two(101);
    assert_eq!(
        due,
        vec![PhaseTwoWork {
            xid: xid.clone(),
            transaction_id: 1,
            branch_id: SAGA_SESSION_BRANCH_ID,
            branch_type: BranchType::Saga,
            resource_id: "app#group".into(),
            client_id: String::new(),
            application_data: "TimeoutRollbacking".into(),
            action: PhaseTwoAction::Rollback,
        }]
    );
    // Forward recovery: the saga RM answers "commit retryable".
    let (status, _) = global_status(p.apply(result_cmd(
        &xid,
        SAGA_SESSION_BRANCH_ID,
        BranchStatus::PhaseTwoCommitFailedRetryable,
        101,
    )));
    assert_eq!(status, GlobalStatus::CommitRetrying);
    assert_eq!(p.due_phase_two(1_000)[0].action, PhaseTwoAction::Commit);
    let (status, _) = global_status(p.apply(result_cmd(
        &xid,
        SAGA_SESSION_BRANCH_ID,
        BranchStatus::PhaseTwoCommitted,
        1_000,
    )));
    assert_eq!(status, GlobalStatus::Committed);
    assert!(p.is_empty());

    p.apply(begin_cmd(2, "$Saga_x", 100, 0));
    p.apply(SessionCommand::TimeoutCheck { now_ms: 101 });
    let (status, _) = global_status(p.apply(result_cmd(
        &xid_of(2),
        SAGA_SESSION_BRANCH_ID,
        BranchStatus::PhaseTwoRollbacked,
        102,
    )));
    assert_eq!(status, GlobalStatus::TimeoutRollbacked);
}

#[test]
fn cancel_branch_registration_removes_the_branch_and_releases_its_rows() {
    let mut p = sessions();
    let xid = begin(&mut p, 1);
    register(&mut p, &xid, 1, BranchType::At, &lock_key_in(&[0, 2], "a"));
    match p.apply(SessionCommand::CancelBranchRegistration {
        xid: xid.clone(),
        branch_id: 1,
    }) {
        SessionAnswer::BranchRegistrationCancelled { lock_work } => {
            assert_eq!(
                release_of(&lock_work),
                vec![(ReleaseScope::Branch(1), vec![0, 2])]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(p.global_session(&xid).unwrap().branches.is_empty());
    assert_eq!(status_of(&mut p, &xid), GlobalStatus::Begin);
    assert!(matches!(
        refused(p.apply(SessionCommand::CancelBranchRegistration {
            xid: xid.clone(),
            branch_id: 1
        })),
        CoordinatorError::BranchTransactionNotExist { .. }
    ));
}

#[test]
fn lock_releases_stay_in_the_outbox_until_acknowledged() {
    let mut p = sessions();
    let xid = begin(&mut p, 1);
    register(&mut p, &xid, 1, BranchType::At, &lock_key_in(&[1], "a"));
    let (_, work) = global_status(p.apply(SessionCommand::Commit {
        xid: xid.clone(),
        now_ms: 0,
    }));
    let LockWork::Release(release) = &work[0] else {
        panic!("{work:?}")
    };
    assert_eq!(release.xid, xid);
    assert_eq!(release.transaction_id, 1);
    // Still there after the session ended.
    p.apply(result_cmd(&xid, 1, BranchStatus::PhaseTwoCommitted, 1));
    assert!(p.is_empty());
    assert_eq!(
        p.pending_lock_releases().cloned().collect::<Vec<_>>(),
        vec![release.clone()]
    );
    assert_eq!(
        p.apply(SessionCommand::AckLockRelease {
            release_id: release.release_id
        }),
        SessionAnswer::LockReleaseAcked { found: true }
    );
    assert_eq!(
        p.apply(SessionCommand::AckLockRelease {
            release_id: release.release_id
        }),
        SessionAnswer::LockReleaseAcked { found: false }
    );
    assert_eq!(p.pending_lock_releases().count(), 0);
}

#[test]
fn phase_two_results_must_match_a_session_in_phase_two() {
    let mut p = sessions();
    let xid = begin(&mut p, 1);
    register(&mut p, &xid, 1, BranchType::At, "t:1");
    assert_eq!(
        refused(p.apply(result_cmd(&xid, 1, BranchStatus::PhaseTwoCommitted, 0))),
        CoordinatorError::NotInPhaseTwo {
            xid: xid.clone(),
            status: GlobalStatus::Begin
        }
    );
    p.apply(SessionCommand::Commit {
        xid: xid.clone(),
        now_ms: 0,
    });
    assert!(matches!(
        refused(p.apply(result_cmd(&xid, 2, BranchStatus::PhaseTwoCommitted, 0))),
        CoordinatorError::BranchTransactionNotExist { branch_id: 2, .. }
    ));
    assert!(matches!(
        refused(p.apply(result_cmd(
            &xid_of(5),
            2,
            BranchStatus::PhaseTwoCommitted,
            0
        ))),
        CoordinatorError::GlobalTransactionNotExist { .. }
    ));
}

#[test]
fn parallel_phase_two_runs_one_branch_per_resource() {
    let mut config = session_config();
    config.parallel_phase_two = true;
    let mut p = SessionPartition::new(config).unwrap();
    let xid = begin(&mut p, 1);
    for (id, resource) in [(1, "a"), (2, "b"), (3, "a"), (4, "b"), (5, "c")] {
        p.apply(SessionCommand::RegisterBranch {
            xid: xid.clone(),
            branch_id: id,
            resource_id: resource.into(),
            branch_type: BranchType::Tcc,
            lock_key: String::new(),
            client_id: String::new(),
            application_data: String::new(),
        });
    }
    p.apply(SessionCommand::Rollback {
        xid: xid.clone(),
        now_ms: 0,
    });
    let mut ids: Vec<i64> = due_ids(&p, 0).into_iter().map(|(id, _)| id).collect();
    ids.sort();
    assert_eq!(ids, vec![3, 4, 5], "newest branch of each resource");
}

#[test]
fn retry_backoff_doubles_up_to_the_cap() {
    let policy = session_config().retry;
    let delays: Vec<u64> = (1..=7).map(|n| policy.backoff_ms(n)).collect();
    assert_eq!(delays, vec![100, 200, 400, 800, 1_000, 1_000, 1_000]);
    assert_eq!(policy.backoff_ms(u32::MAX), 1_000);
}

#[test]
fn refused_commands_change_nothing() {
    let mut p = sessions();
    let xid = begin(&mut p, 1);
    register(&mut p, &xid, 1, BranchType::At, "t:1");
    let before = p.snapshot();
    for cmd in [
        register_cmd(&xid, 1, BranchType::At, "t:2"),
        register_cmd(&xid, 2, BranchType::At, "t"),
        register_cmd(&xid_of(2), 2, BranchType::At, "t:2"),
        begin_cmd(1, "tx", 1, 0),
        result_cmd(&xid, 1, BranchStatus::PhaseTwoCommitted, 0),
        SessionCommand::ForceFinish { xid: xid_of(3) },
    ] {
        assert!(matches!(p.apply(cmd), SessionAnswer::Refused(_)));
        assert_eq!(p.snapshot(), before);
    }
    assert!(matches!(
        p.apply_bytes(&[1, 200]),
        SessionAnswer::Refused(CoordinatorError::MalformedCommand(_))
    ));
    assert_eq!(p.snapshot(), before);
}

#[test]
fn async_commit_failures_stay_async_or_fail() {
    let mut p = sessions();
    let xid = begin(&mut p, 1);
    register(&mut p, &xid, 1, BranchType::At, "t:1");
    register(&mut p, &xid, 2, BranchType::At, "t:2");
    p.apply(SessionCommand::Commit {
        xid: xid.clone(),
        now_ms: 0,
    });
    let (status, _) = global_status(p.apply(result_cmd(
        &xid,
        1,
        BranchStatus::PhaseTwoCommitFailedRetryable,
        0,
    )));
    assert_eq!(status, GlobalStatus::AsyncCommitting);
    assert_eq!(p.global_session(&xid).unwrap().retry.failures, 1);
    let (status, _) = global_status(p.apply(result_cmd(
        &xid,
        2,
        BranchStatus::PhaseTwoCommitFailedUnretryable,
        1,
    )));
    assert_eq!(status, GlobalStatus::CommitFailed);
}

#[test]
fn timeout_rollback_without_retries_ends_timeout_rollbacked() {
    let mut p = sessions();
    p.apply(begin_cmd(1, "tx", 10, 0));
    let xid = xid_of(1);
    register(&mut p, &xid, 1, BranchType::Tcc, "");
    p.apply(SessionCommand::TimeoutCheck { now_ms: 11 });
    let (status, _) =
        global_status(p.apply(result_cmd(&xid, 1, BranchStatus::PhaseTwoRollbacked, 12)));
    assert_eq!(status, GlobalStatus::TimeoutRollbacked);
    assert!(p.is_empty());
}

#[test]
fn failures_within_one_backoff_count_as_one_round() {
    let mut p = sessions();
    let xid = begin(&mut p, 1);
    for id in 1..=10 {
        register(&mut p, &xid, id, BranchType::At, "");
    }
    p.apply(SessionCommand::Commit {
        xid: xid.clone(),
        now_ms: 0,
    });
    // The RM is down: every branch of the round fails.
    for id in 1..=10 {
        let (status, _) = global_status(p.apply(result_cmd(
            &xid,
            id,
            BranchStatus::PhaseTwoCommitFailedRetryable,
            id as u64,
        )));
        assert_eq!(status, GlobalStatus::AsyncCommitting);
    }
    let s = p.global_session(&xid).unwrap();
    assert_eq!(s.retry.failures, 1);
    assert_eq!(s.retry.next_attempt_ms, 1 + 100);
    assert!(s.branches.iter().all(|b| b.phase_two_failures == 1));
}
