//! Codecs: every variant round-trips; nothing panics on arbitrary bytes.

use super::lock::rows_in;
use super::*;

pub(super) fn sample_session_commands() -> Vec<SessionCommand> {
    let xid = xid_of(42);
    vec![
        begin_cmd(42, "order", 60_000, 123),
        SessionCommand::Begin {
            xid: "é:1:2".into(),
            transaction_id: u64::MAX,
            application_id: String::new(),
            transaction_service_group: "g".into(),
            transaction_name: "$Saga_x".into(),
            timeout_ms: 0,
            application_data: "{\"a\":1}".into(),
            now_ms: u64::MAX,
        },
        register_cmd(&xid, 7, BranchType::At, "t:1,2;u:3"),
        register_cmd(&xid, i64::MIN, BranchType::Xa, ""),
        SessionCommand::CancelBranchRegistration {
            xid: xid.clone(),
            branch_id: 7,
        },
        SessionCommand::ReportBranch {
            xid: xid.clone(),
            branch_id: 7,
            status: BranchStatus::PhaseOneRdonly,
            application_data: "d".into(),
        },
        SessionCommand::Commit {
            xid: xid.clone(),
            now_ms: 5,
        },
        SessionCommand::Rollback {
            xid: xid.clone(),
            now_ms: 6,
        },
        result_cmd(
            &xid,
            -1,
            BranchStatus::PhaseTwoRollbackFailedXaerNotaRetryable,
            7,
        ),
        SessionCommand::TimeoutCheck { now_ms: 8 },
        SessionCommand::GlobalReport {
            xid: xid.clone(),
            status: GlobalStatus::RollbackRetryTimeout,
            now_ms: 9,
        },
        SessionCommand::Status { xid: xid.clone() },
        SessionCommand::ForceFinish { xid },
        SessionCommand::AckLockRelease { release_id: 3 },
    ]
}

fn sample_lock_work() -> Vec<LockWork> {
    vec![
        LockWork::Release(LockRelease {
            release_id: 1,
            xid: xid_of(1),
            transaction_id: 1,
            scope: ReleaseScope::Global,
            partitions: vec![0, 2],
        }),
        LockWork::Release(LockRelease {
            release_id: 2,
            xid: xid_of(1),
            transaction_id: 1,
            scope: ReleaseScope::Branch(-5),
            partitions: vec![],
        }),
        LockWork::MarkRollbacking {
            xid: xid_of(2),
            transaction_id: 2,
            partitions: vec![1],
        },
    ]
}

fn sample_errors() -> Vec<CoordinatorError> {
    let xid = xid_of(1);
    let lock_key_errors = vec![
        LockKeyError::LockKeyTooLong { bytes: 9, limit: 8 },
        LockKeyError::EmptyGroup { group: 1 },
        LockKeyError::MissingColon { group: 2 },
        LockKeyError::EmptyTable { group: 3 },
        LockKeyError::NoPrimaryKey { group: 4 },
        LockKeyError::ReservedSeparator { group: 5 },
        LockKeyError::ResourceIdSeparator,
        LockKeyError::TooManyKeys { limit: 10 },
        LockKeyError::RowKeyTooLong {
            group: 6,
            bytes: 700,
            limit: 512,
        },
    ];
    let mut errors = vec![
        CoordinatorError::GlobalTransactionNotExist { xid: xid.clone() },
        CoordinatorError::GlobalTransactionNotActive {
            xid: xid.clone(),
            status: GlobalStatus::Committing,
        },
        CoordinatorError::GlobalTransactionStatusInvalid {
            xid: xid.clone(),
            status: GlobalStatus::CommitRetrying,
            expected: GlobalStatus::Begin,
        },
        CoordinatorError::BranchTransactionNotExist {
            xid: xid.clone(),
            branch_id: 3,
        },
        CoordinatorError::GlobalTransactionExists { xid: xid.clone() },
        CoordinatorError::BranchExists {
            xid: xid.clone(),
            branch_id: 4,
        },
        CoordinatorError::InvalidXid {
            xid: "x".into(),
            transaction_id: 5,
        },
        CoordinatorError::InvalidBranchId { branch_id: -7 },
        CoordinatorError::NotInPhaseTwo {
            xid: xid.clone(),
            status: GlobalStatus::Finished,
        },
        CoordinatorError::MalformedCommand("bad".into()),
    ];
    for limit in [
        Limit::GlobalSessions,
        Limit::BranchesPerGlobalSession,
        Limit::XidBytes,
        Limit::NameBytes,
        Limit::ApplicationDataBytes,
    ] {
        errors.push(CoordinatorError::LimitExceeded {
            limit,
            value: 2,
            max: 1,
        });
    }
    errors.extend(
        lock_key_errors
            .into_iter()
            .map(|error| CoordinatorError::LockKey {
                xid: xid.clone(),
                error,
            }),
    );
    errors
}

pub(super) fn sample_session_answers() -> Vec<SessionAnswer> {
    let mut answers = vec![
        SessionAnswer::Began { xid: xid_of(1) },
        SessionAnswer::BranchRegistered {
            branch_id: 9,
            lock_plan: vec![
                PartitionRows {
                    partition: 0,
                    rows: rows_in(0, 2, "r"),
                },
                PartitionRows {
                    partition: 2,
                    rows: vec![],
                },
            ],
        },
        SessionAnswer::BranchReported,
        SessionAnswer::GlobalStatus {
            status: GlobalStatus::Committed,
            lock_work: sample_lock_work(),
        },
        SessionAnswer::TimeoutChecked {
            timed_out: vec![xid_of(1), xid_of(2)],
            retry_timed_out: vec![xid_of(3)],
            lock_work: sample_lock_work(),
        },
        SessionAnswer::BranchRegistrationCancelled { lock_work: vec![] },
        SessionAnswer::ForceFinished {
            previous_status: GlobalStatus::RollbackRetryTimeout,
            lock_work: sample_lock_work(),
        },
        SessionAnswer::LockReleaseAcked { found: true },
        SessionAnswer::LockReleaseAcked { found: false },
    ];
    answers.extend(sample_errors().into_iter().map(SessionAnswer::Refused));
    answers
}

pub(super) fn sample_lock_commands() -> Vec<LockCommand> {
    vec![
        LockCommand::TryLock {
            xid: xid_of(1),
            transaction_id: 1,
            branch_id: 2,
            rows: rows_in(0, 3, "r"),
            now_ms: 4,
        },
        LockCommand::Unlock {
            transaction_id: 1,
            branch_id: -2,
            now_ms: 5,
        },
        LockCommand::ReleaseGlobal {
            transaction_id: u64::MAX,
            now_ms: 0,
        },
        LockCommand::MarkRollbacking { transaction_id: 1 },
        LockCommand::Query {
            transaction_id: 1,
            rows: vec![],
        },
    ]
}

fn sample_lock_answers() -> Vec<LockAnswer> {
    vec![
        LockAnswer::Granted {
            newly_locked: 1,
            already_held: 2,
        },
        LockAnswer::Conflict(LockHolder {
            row_key: "r^^^t^^^1".into(),
            xid: xid_of(1),
            transaction_id: 1,
            branch_id: 2,
            status: LockStatus::Rollbacking,
        }),
        LockAnswer::Fenced {
            transaction_id: 1,
            branch_id: None,
        },
        LockAnswer::Fenced {
            transaction_id: 1,
            branch_id: Some(3),
        },
        LockAnswer::Released { rows: 4 },
        LockAnswer::Marked { rows: 5 },
        LockAnswer::Lockable,
        LockAnswer::Refused(LockError::WrongPartition {
            row_key: "k".into(),
            partition: 1,
            expected: 2,
        }),
        LockAnswer::Refused(LockError::TooManyRows { rows: 3, limit: 2 }),
        LockAnswer::Refused(LockError::RowKeyTooLong { bytes: 3, limit: 2 }),
        LockAnswer::Refused(LockError::PartitionFull {
            row_locks: 3,
            limit: 2,
        }),
        LockAnswer::Refused(LockError::MalformedCommand("m".into())),
    ]
}

/// A session partition with sessions in many statuses, branches, retry
/// state and outbox entries.
pub(super) fn populated_sessions() -> SessionPartition {
    let mut p = sessions();
    for tid in 1..=6 {
        let xid = begin(&mut p, tid);
        register(&mut p, &xid, 1, BranchType::At, &lock_key_in(&[0, 2], "a"));
        register(&mut p, &xid, 2, BranchType::Tcc, "");
        register(&mut p, &xid, 3, BranchType::At, &lock_key_in(&[1], "b"));
    }
    p.apply(SessionCommand::Commit {
        xid: xid_of(2),
        now_ms: 10,
    });
    p.apply(result_cmd(
        &xid_of(2),
        2,
        BranchStatus::PhaseTwoCommitFailedRetryable,
        11,
    ));
    p.apply(SessionCommand::Rollback {
        xid: xid_of(3),
        now_ms: 10,
    });
    p.apply(result_cmd(
        &xid_of(3),
        3,
        BranchStatus::PhaseTwoRollbacked,
        11,
    ));
    p.apply(SessionCommand::Rollback {
        xid: xid_of(4),
        now_ms: 10,
    });
    p.apply(result_cmd(
        &xid_of(4),
        3,
        BranchStatus::PhaseTwoRollbackFailedUnretryable,
        11,
    ));
    p.apply(SessionCommand::ReportBranch {
        xid: xid_of(5),
        branch_id: 2,
        status: BranchStatus::PhaseOneDone,
        application_data: "x".into(),
    });
    p.apply(begin_cmd(7, "$Saga_s", 1, 0));
    p.apply(SessionCommand::TimeoutCheck { now_ms: 2 });
    assert!(p.pending_lock_releases().count() >= 2);
    p
}

fn populated_locks() -> LockPartition {
    let mut p = lock_partition(1);
    let rows = rows_in(1, 6, "r");
    p.apply(LockCommand::TryLock {
        xid: xid_of(1),
        transaction_id: 1,
        branch_id: 1,
        rows: rows[..3].to_vec(),
        now_ms: 0,
    });
    p.apply(LockCommand::TryLock {
        xid: xid_of(2),
        transaction_id: 2,
        branch_id: 5,
        rows: rows[3..].to_vec(),
        now_ms: 0,
    });
    p.apply(LockCommand::MarkRollbacking { transaction_id: 2 });
    p.apply(LockCommand::Unlock {
        transaction_id: 3,
        branch_id: 1,
        now_ms: 10,
    });
    p.apply(LockCommand::ReleaseGlobal {
        transaction_id: 4,
        now_ms: 20,
    });
    p
}

/// Every strict prefix fails to decode, and so does one extra byte.
fn assert_length_checked<T: std::fmt::Debug>(
    bytes: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, CodecError>,
) {
    for len in 0..bytes.len() {
        assert!(
            decode(&bytes[..len]).is_err(),
            "prefix of {len} bytes decoded"
        );
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    assert!(matches!(
        decode(&longer),
        Err(CodecError::TrailingBytes { count: 1 })
    ));
}

#[test]
fn session_commands_round_trip() {
    for cmd in sample_session_commands() {
        let bytes = cmd.encode();
        assert_eq!(bytes[0], SESSION_COMMAND_VERSION);
        assert_eq!(SessionCommand::decode(&bytes).unwrap(), cmd);
        assert_length_checked(&bytes, SessionCommand::decode);
    }
    let mut bytes = sample_session_commands()[0].encode();
    bytes[0] = 2;
    assert!(matches!(
        SessionCommand::decode(&bytes),
        Err(CodecError::UnsupportedVersion { found: 2, .. })
    ));
}

#[test]
fn session_answers_round_trip() {
    for answer in sample_session_answers() {
        let bytes = answer.encode();
        assert_eq!(SessionAnswer::decode(&bytes).unwrap(), answer);
        assert_length_checked(&bytes, SessionAnswer::decode);
    }
}

#[test]
fn lock_commands_and_answers_round_trip() {
    for cmd in sample_lock_commands() {
        let bytes = cmd.encode();
        assert_eq!(LockCommand::decode(&bytes).unwrap(), cmd);
        assert_length_checked(&bytes, LockCommand::decode);
    }
    for answer in sample_lock_answers() {
        let bytes = answer.encode();
        assert_eq!(LockAnswer::decode(&bytes).unwrap(), answer);
        assert_length_checked(&bytes, LockAnswer::decode);
    }
}

#[test]
fn snapshots_round_trip() {
    let p = populated_sessions();
    let image = p.snapshot();
    let restored = SessionPartition::restore(session_config(), &image).unwrap();
    assert_eq!(restored, p);
    assert_eq!(restored.snapshot(), image);
    assert_length_checked(&image, |b| SessionPartition::restore(session_config(), b));

    let l = populated_locks();
    let image = l.snapshot();
    let restored = LockPartition::restore(*l.config(), &image).unwrap();
    assert_eq!(restored, l);
    assert_eq!(restored.snapshot(), image);
    assert_length_checked(&image, |b| LockPartition::restore(*l.config(), b));

    // Empty partitions too.
    let empty = sessions();
    assert_eq!(
        SessionPartition::restore(session_config(), &empty.snapshot()).unwrap(),
        empty
    );
}

#[test]
fn snapshots_that_disagree_with_the_configuration_are_refused() {
    // Locks of partition 1 restored as partition 0.
    let l = populated_locks();
    let other = LockConfig {
        partition_index: 0,
        ..*l.config()
    };
    assert!(matches!(
        LockPartition::restore(other, &l.snapshot()),
        Err(CodecError::Invalid { .. })
    ));
    // Sessions naming lock partition 2 restored with 2 lock partitions.
    let p = populated_sessions();
    let fewer = SessionConfig {
        lock_partitions: 2,
        ..session_config()
    };
    assert!(matches!(
        SessionPartition::restore(fewer, &p.snapshot()),
        Err(CodecError::Invalid { .. })
    ));
    // Wrong magic: a lock image is not a session image.
    assert!(matches!(
        SessionPartition::restore(session_config(), &l.snapshot()),
        Err(CodecError::BadMagic { .. })
    ));
}

/// Random bytes, or a valid encoding with a few bytes changed, cut or added.
fn fuzz_input(rng: &mut Rng, valid: &[Vec<u8>]) -> Vec<u8> {
    if rng.below(4) == 0 || valid.is_empty() {
        return rng.bytes(64);
    }
    let mut bytes = valid[rng.below(valid.len() as u64) as usize].clone();
    for _ in 0..=rng.below(3) {
        match rng.below(4) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes[i] = rng.next_u64() as u8;
            }
            1 if !bytes.is_empty() => {
                let i = rng.below(bytes.len() as u64) as usize;
                bytes.truncate(i);
            }
            2 => {
                let i = rng.below(bytes.len() as u64 + 1) as usize;
                bytes.insert(i, rng.next_u64() as u8);
            }
            _ => {
                // A length or count field blown up.
                if bytes.len() >= 6 {
                    let i = rng.below(bytes.len() as u64 - 4) as usize;
                    bytes[i..i + 4].copy_from_slice(&u32::MAX.to_le_bytes());
                }
            }
        }
    }
    bytes
}

#[test]
fn decoders_and_apply_never_panic_on_arbitrary_bytes() {
    let mut rng = Rng::new(0x00c0_ffee);
    let session_cmds: Vec<Vec<u8>> = sample_session_commands()
        .iter()
        .map(SessionCommand::encode)
        .collect();
    let session_answers: Vec<Vec<u8>> = sample_session_answers()
        .iter()
        .map(SessionAnswer::encode)
        .collect();
    let lock_cmds: Vec<Vec<u8>> = sample_lock_commands()
        .iter()
        .map(LockCommand::encode)
        .collect();
    let lock_answers: Vec<Vec<u8>> = sample_lock_answers()
        .iter()
        .map(LockAnswer::encode)
        .collect();
    let session_state = populated_sessions();
    let lock_state = populated_locks();
    let session_images = vec![session_state.snapshot()];
    let lock_images = vec![lock_state.snapshot()];
    let mut decoded = [0usize; 6];

    for i in 0..20_000 {
        match i % 6 {
            0 => {
                let bytes = fuzz_input(&mut rng, &session_cmds);
                let mut p = session_state.clone();
                let answer = p.apply_bytes(&bytes);
                if let Ok(cmd) = SessionCommand::decode(&bytes) {
                    decoded[0] += 1;
                    assert_eq!(cmd.encode(), bytes, "canonical encoding");
                } else {
                    assert!(matches!(
                        answer,
                        SessionAnswer::Refused(CoordinatorError::MalformedCommand(_))
                    ));
                    assert_eq!(p, session_state, "a malformed entry changes nothing");
                }
            }
            1 => {
                let bytes = fuzz_input(&mut rng, &session_answers);
                if let Ok(answer) = SessionAnswer::decode(&bytes) {
                    decoded[1] += 1;
                    assert_eq!(answer.encode(), bytes);
                }
            }
            2 => {
                let bytes = fuzz_input(&mut rng, &lock_cmds);
                let mut p = lock_state.clone();
                let answer = p.apply_bytes(&bytes);
                if let Ok(cmd) = LockCommand::decode(&bytes) {
                    decoded[2] += 1;
                    assert_eq!(cmd.encode(), bytes);
                } else {
                    assert!(matches!(
                        answer,
                        LockAnswer::Refused(LockError::MalformedCommand(_))
                    ));
                    assert_eq!(p, lock_state);
                }
            }
            3 => {
                let bytes = fuzz_input(&mut rng, &lock_answers);
                if let Ok(answer) = LockAnswer::decode(&bytes) {
                    decoded[3] += 1;
                    assert_eq!(answer.encode(), bytes);
                }
            }
            4 => {
                let bytes = fuzz_input(&mut rng, &session_images);
                if let Ok(p) = SessionPartition::restore(session_config(), &bytes) {
                    decoded[4] += 1;
                    let again = SessionPartition::restore(session_config(), &p.snapshot()).unwrap();
                    assert_eq!(again, p);
                    // A restored state keeps working.
                    let _ = p.due_phase_two(u64::MAX);
                    let mut p = p;
                    p.apply(SessionCommand::TimeoutCheck { now_ms: u64::MAX });
                }
            }
            _ => {
                let bytes = fuzz_input(&mut rng, &lock_images);
                if let Ok(p) = LockPartition::restore(*lock_state.config(), &bytes) {
                    decoded[5] += 1;
                    let again = LockPartition::restore(*p.config(), &p.snapshot()).unwrap();
                    assert_eq!(again, p);
                }
            }
        }
    }
    // The mutations reach past the first bytes: some inputs decode.
    assert!(decoded.iter().all(|&n| n > 0), "{decoded:?}");
}
