//! Lock partition: conflicts, re-entrance, release, fences, limits.

use super::*;

/// `n` rows of table `t` that live in lock partition `partition`.
pub(super) fn rows_in(partition: u32, n: usize, salt: &str) -> Vec<RowKey> {
    (0..)
        .map(|i| RowKey::new("res", "t", &format!("{salt}{i}")))
        .filter(|r| lock_partition_of(&r.row_key(), LOCK_PARTITIONS) == partition)
        .take(n)
        .collect()
}

fn try_lock(
    p: &mut LockPartition,
    tid: u64,
    branch_id: i64,
    rows: &[RowKey],
    now_ms: u64,
) -> LockAnswer {
    p.apply(LockCommand::TryLock {
        xid: xid_of(tid),
        transaction_id: tid,
        branch_id,
        rows: rows.to_vec(),
        now_ms,
    })
}

#[test]
fn a_conflicting_branch_gets_the_holder_and_no_row() {
    let mut p = lock_partition(0);
    let rows = rows_in(0, 4, "r");
    assert_eq!(
        try_lock(&mut p, 1, 10, &rows[..2], 0),
        LockAnswer::Granted {
            newly_locked: 2,
            already_held: 0
        }
    );
    // Transaction 2 wants rows 1..4: row 1 is held, rows 2 and 3 are free.
    let answer = try_lock(&mut p, 2, 20, &rows[1..], 0);
    let LockAnswer::Conflict(holder) = answer else {
        panic!("{answer:?}")
    };
    assert_eq!(holder.row_key, rows[1].row_key());
    assert_eq!(holder.xid, xid_of(1));
    assert_eq!(holder.transaction_id, 1);
    assert_eq!(holder.branch_id, 10);
    assert_eq!(holder.status, LockStatus::Locked);
    // All or none: rows 2 and 3 were not taken.
    assert_eq!(p.len(), 2);
    assert!(p.row_lock(&rows[2].row_key()).is_none());
    assert_eq!(p.row_keys_of(2), Vec::<String>::new());
}

#[test]
fn the_same_transaction_may_lock_its_rows_again() {
    let mut p = lock_partition(1);
    let rows = rows_in(1, 3, "r");
    try_lock(&mut p, 1, 10, &rows[..2], 0);
    // Another branch of the same transaction: re-entrant.
    assert_eq!(
        try_lock(&mut p, 1, 11, &rows[1..], 0),
        LockAnswer::Granted {
            newly_locked: 1,
            already_held: 1
        }
    );
    // The first branch stays the owner of the shared row.
    assert_eq!(p.row_lock(&rows[1].row_key()).unwrap().branch_id, 10);
    assert_eq!(p.row_lock(&rows[2].row_key()).unwrap().branch_id, 11);
    // Duplicate rows in one command count once.
    assert_eq!(
        try_lock(&mut p, 1, 10, &[rows[0].clone(), rows[0].clone()], 0),
        LockAnswer::Granted {
            newly_locked: 0,
            already_held: 1
        }
    );
    // Unlocking branch 11 releases only what it owns.
    assert_eq!(
        p.apply(LockCommand::Unlock {
            transaction_id: 1,
            branch_id: 11,
            now_ms: 0
        }),
        LockAnswer::Released { rows: 1 }
    );
    assert_eq!(p.len(), 2);
    // Releasing the transaction releases the rest; again is a no-op.
    let release = LockCommand::ReleaseGlobal {
        transaction_id: 1,
        now_ms: 0,
    };
    assert_eq!(p.apply(release.clone()), LockAnswer::Released { rows: 2 });
    assert_eq!(p.apply(release), LockAnswer::Released { rows: 0 });
    assert!(p.is_empty());
    // Now transaction 2 gets them.
    assert!(matches!(
        try_lock(&mut p, 2, 20, &rows, 0),
        LockAnswer::Granted {
            newly_locked: 3,
            ..
        }
    ));
}

#[test]
fn rollbacking_holders_show_in_conflicts_and_queries() {
    let mut p = lock_partition(2);
    let rows = rows_in(2, 2, "r");
    try_lock(&mut p, 1, 10, &rows, 0);
    assert_eq!(
        p.apply(LockCommand::MarkRollbacking { transaction_id: 1 }),
        LockAnswer::Marked { rows: 2 }
    );
    let LockAnswer::Conflict(holder) = try_lock(&mut p, 2, 20, &rows[1..], 0) else {
        panic!()
    };
    assert_eq!(holder.status, LockStatus::Rollbacking);
    let LockAnswer::Conflict(holder) = p.apply(LockCommand::Query {
        transaction_id: 2,
        rows: rows.clone(),
    }) else {
        panic!()
    };
    assert_eq!(holder.row_key, rows[0].row_key());
    // The holder itself may lock them.
    assert_eq!(
        p.apply(LockCommand::Query {
            transaction_id: 1,
            rows: rows.clone()
        }),
        LockAnswer::Lockable
    );
    assert_eq!(
        p.apply(LockCommand::Query {
            transaction_id: 2,
            rows: rows_in(2, 4, "other")
        }),
        LockAnswer::Lockable
    );
}

#[test]
fn commands_with_bad_rows_are_refused_whole() {
    let mut p = lock_partition(0);
    let mut rows = rows_in(0, 2, "r");
    rows.extend(rows_in(1, 1, "r"));
    let answer = try_lock(&mut p, 1, 10, &rows, 0);
    assert!(
        matches!(
            &answer,
            LockAnswer::Refused(LockError::WrongPartition {
                partition: 0,
                expected: 1,
                ..
            })
        ),
        "{answer:?}"
    );
    assert!(p.is_empty());

    let mut small = LockPartition::new(LockConfig {
        partition_index: 0,
        partitions: LOCK_PARTITIONS,
        max_rows_per_command: 2,
        max_row_locks: 3,
        max_row_key_bytes: 20,
        ..LockConfig::default()
    })
    .unwrap();
    let rows = rows_in(0, 4, "r");
    assert_eq!(
        try_lock(&mut small, 1, 10, &rows[..3], 0),
        LockAnswer::Refused(LockError::TooManyRows { rows: 3, limit: 2 })
    );
    assert!(matches!(
        try_lock(&mut small, 1, 10, &rows[..2], 0),
        LockAnswer::Granted { .. }
    ));
    assert_eq!(
        try_lock(&mut small, 2, 20, &rows[2..4], 0),
        LockAnswer::Refused(LockError::PartitionFull {
            row_locks: 4,
            limit: 3
        })
    );
    let long = rows_in(0, 1, &"x".repeat(20));
    assert!(matches!(
        try_lock(&mut small, 2, 20, &long, 0),
        LockAnswer::Refused(LockError::RowKeyTooLong { limit: 20, .. })
    ));
    assert_eq!(small.len(), 2);
}

#[test]
fn released_branches_and_transactions_are_fenced_for_a_while() {
    // fence_retention_ms = 1000 in the test configuration.
    let mut p = lock_partition(0);
    let rows = rows_in(0, 2, "r");
    // A delayed TryLock arriving after its branch was released (the
    // transaction rolled back meanwhile) must not lock anything.
    p.apply(LockCommand::Unlock {
        transaction_id: 1,
        branch_id: 10,
        now_ms: 100,
    });
    assert_eq!(
        try_lock(&mut p, 1, 10, &rows, 200),
        LockAnswer::Fenced {
            transaction_id: 1,
            branch_id: Some(10)
        }
    );
    assert!(p.is_empty());
    // Other branches of the transaction are not fenced by a branch unlock.
    assert!(matches!(
        try_lock(&mut p, 1, 11, &rows[..1], 200),
        LockAnswer::Granted { .. }
    ));
    // A global release fences every branch of the transaction.
    p.apply(LockCommand::ReleaseGlobal {
        transaction_id: 1,
        now_ms: 300,
    });
    assert_eq!(
        try_lock(&mut p, 1, 12, &rows, 400),
        LockAnswer::Fenced {
            transaction_id: 1,
            branch_id: None
        }
    );
    assert_eq!(p.fence_count(), 2);
    // Fences expire.
    assert!(matches!(
        try_lock(&mut p, 1, 10, &rows[..1], 1_100),
        LockAnswer::Fenced { .. }
    ));
    assert!(matches!(
        try_lock(&mut p, 1, 12, &rows, 1_300),
        LockAnswer::Granted { .. }
    ));
    assert_eq!(p.fence_count(), 0);
}

#[test]
fn fences_are_bounded() {
    let mut p = LockPartition::new(LockConfig {
        max_fences: 2,
        ..LockConfig::default()
    })
    .unwrap();
    for tid in 1..=3 {
        p.apply(LockCommand::ReleaseGlobal {
            transaction_id: tid,
            now_ms: tid,
        });
    }
    assert_eq!(p.fence_count(), 2);
    // The oldest (first to expire) went first.
    let rows = vec![RowKey::new("res", "t", "1")];
    assert!(matches!(
        try_lock(&mut p, 1, 1, &rows, 10),
        LockAnswer::Granted { .. }
    ));
    assert!(matches!(
        try_lock(&mut p, 3, 1, &rows, 10),
        LockAnswer::Fenced { .. }
    ));
}

#[test]
fn lock_configuration_is_validated() {
    assert_eq!(
        LockPartition::new(LockConfig {
            partition_index: 3,
            partitions: 3,
            ..LockConfig::default()
        }),
        Err(ConfigError::PartitionIndexOutOfRange {
            index: 3,
            partitions: 3
        })
    );
    assert_eq!(
        SessionPartition::new(SessionConfig {
            lock_partitions: 0,
            ..SessionConfig::default()
        }),
        Err(ConfigError::NoLockPartitions)
    );
}
