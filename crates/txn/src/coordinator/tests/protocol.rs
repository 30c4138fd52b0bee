//! The multi-partition lock protocol: all or none, no deadlock, progress;
//! and the session and lock partitions working together.

use super::lock::rows_in;
use super::*;

/// Three lock partitions and the acquisitions running against them.
#[derive(Clone)]
struct World {
    parts: Vec<LockPartition>,
    acqs: Vec<LockAcquisition>,
}

/// One contender: a branch of transaction `tid` wanting `rows`.
#[derive(Clone)]
struct Contender {
    tid: u64,
    branch_id: i64,
    rows: Vec<RowKey>,
}

impl World {
    fn new(contenders: &[Contender]) -> World {
        World {
            parts: (0..LOCK_PARTITIONS).map(lock_partition).collect(),
            acqs: contenders
                .iter()
                .map(|c| {
                    LockAcquisition::new(
                        &xid_of(c.tid),
                        c.tid,
                        c.branch_id,
                        plan_by_partition(c.rows.clone(), LOCK_PARTITIONS),
                        0,
                    )
                })
                .collect(),
        }
    }

    /// Runs one step of acquisition `i`: one command applied to one
    /// partition, its answer fed back.
    fn step(&mut self, i: usize) {
        if let AcquisitionStep::Send { partition, command } = self.acqs[i].step() {
            let answer = self.parts[partition as usize].apply(command);
            self.acqs[i].on_answer(&answer);
        }
    }

    fn runnable(&self) -> Vec<usize> {
        (0..self.acqs.len())
            .filter(|&i| !self.acqs[i].is_done())
            .collect()
    }

    /// Who holds `row` now.
    fn holder(&self, row: &RowKey) -> Option<(u64, i64)> {
        let key = row.row_key();
        let p = lock_partition_of(&key, LOCK_PARTITIONS) as usize;
        self.parts[p]
            .row_lock(&key)
            .map(|l| (l.transaction_id, l.branch_id))
    }

    fn rows_held_by(&self, tid: u64) -> usize {
        self.parts.iter().map(|p| p.row_keys_of(tid).len()).sum()
    }

    /// Checks the final state; returns how many contenders acquired.
    fn check_final(&self, contenders: &[Contender]) -> usize {
        let mut acquired = 0;
        for (acq, c) in self.acqs.iter().zip(contenders) {
            match acq.step() {
                AcquisitionStep::Done(AcquisitionOutcome::Acquired) => {
                    acquired += 1;
                    for row in &c.rows {
                        assert_eq!(
                            self.holder(row).map(|(tid, _)| tid),
                            Some(c.tid),
                            "an acquired branch holds every row"
                        );
                    }
                    assert_eq!(acq.granted_partitions(), acq.plan_partitions().as_slice());
                }
                AcquisitionStep::Done(AcquisitionOutcome::Refused(refusal)) => {
                    assert!(matches!(refusal, LockRefusal::Conflict(_)), "{refusal:?}");
                    assert_eq!(self.rows_held_by(c.tid), 0, "a refused branch holds no row");
                    assert!(acq.granted_partitions().is_empty());
                }
                AcquisitionStep::Send { .. } => panic!("not done"),
            }
        }
        acquired
    }
}

/// Explores every interleaving of the contenders' steps; calls `leaf` on
/// each final world. Returns the number of interleavings.
fn explore(world: World, leaf: &mut dyn FnMut(&World)) -> usize {
    let runnable = world.runnable();
    if runnable.is_empty() {
        leaf(&world);
        return 1;
    }
    let mut n = 0;
    for i in runnable {
        let mut next = world.clone();
        next.step(i);
        n += explore(next, leaf);
    }
    n
}

fn contender(tid: u64, rows: Vec<Vec<RowKey>>) -> Contender {
    Contender {
        tid,
        branch_id: tid as i64 * 10,
        rows: rows.into_iter().flatten().collect(),
    }
}

#[test]
fn every_interleaving_of_two_overlapping_branches_is_all_or_none() {
    let a = |p: u32| rows_in(p, 2, "a");
    let b = |p: u32| rows_in(p, 2, "b");
    let s = |p: u32| rows_in(p, 1, "shared");
    // (A's rows, B's rows): overlaps in every partition, only the lowest,
    // only the highest, the outer two with B skipping the middle, and B's
    // rows a subset of A's.
    type Rows = Vec<Vec<RowKey>>;
    let scenarios: Vec<(Rows, Rows)> = vec![
        (
            vec![a(0), s(0), a(1), s(1), s(2)],
            vec![s(0), b(0), s(1), b(2), s(2)],
        ),
        (vec![s(0), a(1), a(2)], vec![s(0), b(1), b(2)]),
        (vec![a(0), a(1), s(2)], vec![b(0), b(1), s(2)]),
        (vec![s(0), a(1), s(2)], vec![s(2), s(0)]),
        (vec![s(0), s(1), s(2), a(2)], vec![s(1)]),
        (vec![s(2), a(0)], vec![s(0), b(1), s(2)]),
    ];
    let mut total = 0;
    for (i, (rows_a, rows_b)) in scenarios.into_iter().enumerate() {
        let contenders = vec![contender(1, rows_a), contender(2, rows_b)];
        let mut winners = [0usize; 2];
        let n = explore(World::new(&contenders), &mut |w: &World| {
            let acquired = w.check_final(&contenders);
            assert!(acquired >= 1, "scenario {i}: someone must get through");
            assert!(
                acquired < 2,
                "scenario {i}: overlapping rows cannot both be granted"
            );
            for (k, acq) in w.acqs.iter().enumerate() {
                if acq.step() == AcquisitionStep::Done(AcquisitionOutcome::Acquired) {
                    winners[k] += 1;
                }
            }
        });
        assert!(n > 1, "scenario {i}");
        // Either may win, depending on the schedule.
        assert!(
            winners[0] > 0 && winners[1] > 0,
            "scenario {i}: {winners:?}"
        );
        total += n;
    }
    assert!(total >= 50, "{total} interleavings explored");
}

#[test]
fn branches_of_one_transaction_share_rows_in_every_interleaving() {
    let s = |p: u32| rows_in(p, 1, "shared");
    let a = Contender {
        tid: 7,
        branch_id: 1,
        rows: [s(0), s(1), s(2)].concat(),
    };
    let b = Contender {
        tid: 7,
        branch_id: 2,
        rows: [s(1), s(2), rows_in(2, 1, "b")].concat(),
    };
    let contenders = vec![a, b];
    let n = explore(World::new(&contenders), &mut |w: &World| {
        assert_eq!(w.check_final(&contenders), 2);
    });
    assert!(n > 1);
}

#[test]
fn three_contenders_under_random_schedules() {
    let s = |p: u32| rows_in(p, 1, "shared");
    let own = |p: u32, tid: u64| rows_in(p, 1, &format!("own{tid}-"));
    let contenders = vec![
        contender(1, vec![s(0), own(1, 1), s(2)]),
        contender(2, vec![own(0, 2), s(1), s(2)]),
        contender(3, vec![s(0), s(1), own(2, 3)]),
    ];
    let mut rng = Rng::new(0x5eed);
    for _ in 0..2_000 {
        let mut world = World::new(&contenders);
        loop {
            let runnable = world.runnable();
            if runnable.is_empty() {
                break;
            }
            let i = runnable[rng.below(runnable.len() as u64) as usize];
            world.step(i);
        }
        assert!(world.check_final(&contenders) >= 1);
    }
}

#[test]
fn a_row_held_outside_the_contest_refuses_everyone_cleanly() {
    let s = |p: u32| rows_in(p, 1, "shared");
    let contenders = vec![
        contender(1, vec![s(0), s(1), s(2)]),
        contender(2, vec![rows_in(0, 1, "b"), s(2)]),
    ];
    let mut world = World::new(&contenders);
    // Transaction 9 holds the shared row of partition 2 throughout.
    let held = world.parts[2].apply(LockCommand::TryLock {
        xid: xid_of(9),
        transaction_id: 9,
        branch_id: 90,
        rows: s(2),
        now_ms: 0,
    });
    assert!(matches!(held, LockAnswer::Granted { .. }));
    let n = explore(world, &mut |w: &World| {
        assert_eq!(w.check_final(&contenders), 0);
        assert_eq!(w.rows_held_by(9), 1);
    });
    assert!(n > 1);
}

#[test]
fn an_acquisition_after_its_transaction_was_released_is_fenced() {
    let rows = [rows_in(0, 1, "a"), rows_in(1, 1, "a")].concat();
    let mut world = World::new(&[contender(1, vec![rows])]);
    // The transaction rolled back and released partition 1 before the
    // (delayed) acquisition got there.
    world.parts[1].apply(LockCommand::ReleaseGlobal {
        transaction_id: 1,
        now_ms: 0,
    });
    while !world.acqs[0].is_done() {
        world.step(0);
    }
    assert_eq!(
        world.acqs[0].step(),
        AcquisitionStep::Done(AcquisitionOutcome::Refused(LockRefusal::Fenced))
    );
    assert_eq!(world.rows_held_by(1), 0, "partition 0 was given back");
}

#[test]
fn acquisition_plans_are_sorted_and_merged() {
    let rows0 = rows_in(0, 2, "x");
    let plan = vec![
        PartitionRows {
            partition: 2,
            rows: rows_in(2, 1, "x"),
        },
        PartitionRows {
            partition: 0,
            rows: vec![rows0[1].clone()],
        },
        PartitionRows {
            partition: 0,
            rows: vec![rows0[0].clone(), rows0[1].clone()],
        },
    ];
    let acq = LockAcquisition::new("x", 1, 1, plan, 0);
    assert_eq!(acq.plan_partitions(), vec![0, 2]);
    let AcquisitionStep::Send {
        partition: 0,
        command: LockCommand::TryLock { rows, .. },
    } = acq.step()
    else {
        panic!()
    };
    assert_eq!(rows.len(), 2);
    // An empty plan is acquired at once.
    let empty = LockAcquisition::new("x", 1, 1, Vec::new(), 0);
    assert_eq!(
        empty.step(),
        AcquisitionStep::Done(AcquisitionOutcome::Acquired)
    );
}

/// Executes lock work against the partitions, as the async layer will, and
/// acknowledges durable releases.
fn execute(
    parts: &mut [LockPartition],
    sessions: &mut SessionPartition,
    work: &[LockWork],
    now_ms: u64,
) {
    for item in work {
        match item {
            LockWork::Release(release) => {
                for &p in &release.partitions {
                    let cmd = match release.scope {
                        ReleaseScope::Global => LockCommand::ReleaseGlobal {
                            transaction_id: release.transaction_id,
                            now_ms,
                        },
                        ReleaseScope::Branch(branch_id) => LockCommand::Unlock {
                            transaction_id: release.transaction_id,
                            branch_id,
                            now_ms,
                        },
                    };
                    assert!(matches!(
                        parts[p as usize].apply(cmd),
                        LockAnswer::Released { .. }
                    ));
                }
                assert_eq!(
                    sessions.apply(SessionCommand::AckLockRelease {
                        release_id: release.release_id
                    }),
                    SessionAnswer::LockReleaseAcked { found: true }
                );
            }
            LockWork::MarkRollbacking {
                transaction_id,
                partitions,
                ..
            } => {
                for &p in partitions {
                    parts[p as usize].apply(LockCommand::MarkRollbacking {
                        transaction_id: *transaction_id,
                    });
                }
            }
        }
    }
}

/// Registers an AT branch and runs the lock protocol; on refusal cancels
/// the registration. Returns whether the branch got its locks.
fn register_and_lock(
    parts: &mut [LockPartition],
    sessions: &mut SessionPartition,
    xid: &str,
    branch_id: i64,
    lock_key: &str,
    now_ms: u64,
) -> Result<(), LockRefusal> {
    let plan = register(sessions, xid, branch_id, BranchType::At, lock_key);
    let tid = parse_xid(xid).unwrap().2;
    let mut acq = LockAcquisition::new(xid, tid, branch_id, plan, now_ms);
    loop {
        match acq.step() {
            AcquisitionStep::Send { partition, command } => {
                let answer = parts[partition as usize].apply(command);
                acq.on_answer(&answer);
            }
            AcquisitionStep::Done(AcquisitionOutcome::Acquired) => return Ok(()),
            AcquisitionStep::Done(AcquisitionOutcome::Refused(refusal)) => {
                let answer = sessions.apply(SessionCommand::CancelBranchRegistration {
                    xid: xid.into(),
                    branch_id,
                });
                let work = answer.lock_work().to_vec();
                execute(parts, sessions, &work, now_ms);
                return Err(refusal);
            }
        }
    }
}

#[test]
fn sessions_and_lock_partitions_together() {
    let mut parts: Vec<LockPartition> = (0..LOCK_PARTITIONS).map(lock_partition).collect();
    let mut p = sessions();
    let key = lock_key_in(&[0, 1, 2], "row");
    let x1 = begin(&mut p, 1);
    let x2 = begin(&mut p, 2);
    register_and_lock(&mut parts, &mut p, &x1, 11, &key, 0).unwrap();
    // Transaction 2 conflicts; its registration is cancelled and whatever
    // it took is given back.
    let refusal = register_and_lock(&mut parts, &mut p, &x2, 21, &key, 0).unwrap_err();
    let LockRefusal::Conflict(holder) = refusal else {
        panic!("{refusal:?}")
    };
    assert_eq!((holder.transaction_id, holder.branch_id), (1, 11));
    assert!(p.global_session(&x2).unwrap().branches.is_empty());
    assert_eq!(
        parts.iter().map(|q| q.row_keys_of(2).len()).sum::<usize>(),
        0
    );
    // Re-entrant: another branch of transaction 1 on the same rows.
    register_and_lock(&mut parts, &mut p, &x1, 12, &key, 0).unwrap();

    // Commit releases everything at once (Seata's DefaultCore.commit).
    let (status, work) = global_status(p.apply(SessionCommand::Commit {
        xid: x1.clone(),
        now_ms: 5,
    }));
    assert_eq!(status, GlobalStatus::Committed);
    execute(&mut parts, &mut p, &work, 5);
    assert!(parts.iter().all(LockPartition::is_empty));
    assert_eq!(p.pending_lock_releases().count(), 0);

    // Transaction 2 retries (a new branch id, as Seata's RM does) and gets
    // them, then rolls back: marked Rollbacking, released branch by branch.
    register_and_lock(&mut parts, &mut p, &x2, 22, &key, 6).unwrap();
    let (_, work) = global_status(p.apply(SessionCommand::Rollback {
        xid: x2.clone(),
        now_ms: 7,
    }));
    execute(&mut parts, &mut p, &work, 7);
    assert!(
        parts
            .iter()
            .flat_map(|q| q.row_locks())
            .all(|(_, l)| l.status == LockStatus::Rollbacking)
    );
    let due: Vec<i64> = p
        .due_phase_two(7)
        .into_iter()
        .filter(|w| w.xid == x2)
        .map(|w| w.branch_id)
        .collect();
    assert_eq!(due, vec![22]);
    let (status, work) =
        global_status(p.apply(result_cmd(&x2, 22, BranchStatus::PhaseTwoRollbacked, 8)));
    assert_eq!(status, GlobalStatus::Rollbacked);
    execute(&mut parts, &mut p, &work, 8);
    assert!(parts.iter().all(LockPartition::is_empty));
    // Transaction 1's asynchronous commit is still due.
    assert_eq!(p.len(), 1);
}
