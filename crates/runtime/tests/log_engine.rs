//! Log engine behaviour: round trips, group commit, recovery (torn tail versus
//! corruption), limits, rotation and purge, and a smoke test on real files.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::{Model, Op, batch_of, entries, entry, observe, random_op, summary, temp_dir};
use rhea_raft::{HardState, Membership, SnapshotMeta, SplitMix64};
use rhea_runtime::{
    Disk, LogEngine, LogEngineError, LogEngineOptions, RECORD_HEADER_BYTES, RECORD_MAGIC, SimDisk,
    StdDisk, WriteBatch, segment_file_name,
};

const DIR: &str = "/wal";

fn small(segment_max_bytes: u64) -> LogEngineOptions {
    LogEngineOptions {
        segment_max_bytes,
        ..LogEngineOptions::default()
    }
}

fn seg(n: u64) -> PathBuf {
    Path::new(DIR).join(segment_file_name(n))
}

fn hs(term: u64) -> HardState {
    HardState {
        term,
        voted_for: 1,
        commit: 0,
    }
}

fn write(engine: &mut LogEngine, ops: &[Op], model: &mut Model, sync: bool) {
    for op in ops {
        model.apply(op);
    }
    engine.write(&batch_of(ops), sync).expect("write");
}

/// Files on the disk, as the engine should list them.
fn files_on(disk: &SimDisk) -> Vec<PathBuf> {
    disk.list_files(Path::new(DIR))
        .expect("list")
        .into_iter()
        .map(|n| Path::new(DIR).join(n))
        .collect()
}

/// A hand-built record following docs/log-engine.md (pins the format).
fn record(ty: u8, flags: u8, group: u64, payload: &[u8]) -> Vec<u8> {
    let mut crc = crc32c::crc32c(&[ty, flags]);
    crc = crc32c::crc32c_append(crc, &group.to_le_bytes());
    crc = crc32c::crc32c_append(crc, payload);
    let mut r = Vec::new();
    r.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    r.push(ty);
    r.push(flags);
    r.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    r.extend_from_slice(&crc.to_le_bytes());
    r.extend_from_slice(&group.to_le_bytes());
    r.extend_from_slice(payload);
    r
}

fn hard_state_record(group: u64, term: u64) -> Vec<u8> {
    let mut p = Vec::new();
    for v in [term, 2, 0] {
        p.extend_from_slice(&v.to_le_bytes());
    }
    record(2, 1, group, &p)
}

#[test]
fn record_format_matches_the_documentation() {
    let disk = SimDisk::new();
    // Group 7: an Entries record holding entry 1 (term 3, Normal "hi") and a
    // HardState record, written as one batch (flag 1 on the last record only).
    let mut payload = Vec::new();
    payload.extend_from_slice(&1u32.to_le_bytes()); // count
    payload.extend_from_slice(&3u64.to_le_bytes()); // term
    payload.extend_from_slice(&1u64.to_le_bytes()); // index
    payload.push(1); // Normal
    payload.extend_from_slice(&2u32.to_le_bytes());
    payload.extend_from_slice(b"hi");
    let mut file = record(1, 0, 7, &payload);
    file.extend(hard_state_record(7, 3));
    assert_eq!(&file[..2], b"Rh");
    disk.write_durable(&seg(1), &file);

    let (engine, report) =
        LogEngine::open(disk.clone(), DIR, LogEngineOptions::default()).expect("open");
    assert_eq!(report.records, 2);
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(
        engine.entries(7, 1, 2).expect("entries"),
        vec![entry(3, 1, b"hi")]
    );
    assert_eq!(
        engine.hard_state(7),
        Some(HardState {
            term: 3,
            voted_for: 2,
            commit: 0
        })
    );
    drop(engine);

    // And the engine writes exactly those bytes.
    let disk2 = SimDisk::new();
    let (mut engine, _) =
        LogEngine::open(disk2.clone(), DIR, LogEngineOptions::default()).expect("open");
    let mut b = WriteBatch::new();
    b.append(7, vec![entry(3, 1, b"hi")]);
    b.set_hard_state(
        7,
        HardState {
            term: 3,
            voted_for: 2,
            commit: 0,
        },
    );
    engine.write(&b, true).expect("write");
    assert_eq!(disk2.read_all(&seg(1)).expect("read"), file);
    assert_eq!(RECORD_HEADER_BYTES, 20);
}

#[test]
fn round_trip_many_groups() {
    let disk = SimDisk::new();
    let opts = small(4096);
    let (mut engine, _) = LogEngine::open(disk.clone(), DIR, opts.clone()).expect("open");
    let mut model = Model::default();
    let mut rng = SplitMix64::new(99);
    let mut purged_files = 0;
    for i in 0..400 {
        let ops: Vec<Op> = (0..rng.range(1, 8))
            .map(|_| random_op(&mut rng, &mut model, 40))
            .collect();
        engine.write(&batch_of(&ops), i % 3 == 0).expect("write");
        if i % 50 == 49 {
            purged_files += engine.purge().expect("purge").removed.len();
        }
    }
    // Every kind of record was exercised.
    let before = observe(&engine);
    assert_eq!(
        before,
        model.view(),
        "engine differs from the model before reopen"
    );
    assert!(before.len() >= 35, "groups: {}", before.len());
    assert!(before.values().any(|g| g.snapshot.is_some()));
    assert!(before.values().any(|g| {
        g.first > 1
            && g.snapshot
                .as_ref()
                .is_none_or(|s| s.last_index + 1 < g.first)
    }));
    assert!(purged_files > 0, "no segment was purged");
    assert!(engine.segment_files().len() > 2);
    drop(engine);

    let (engine, report) = LogEngine::open(disk.clone(), DIR, opts).expect("reopen");
    assert_eq!(report.truncated_bytes, 0);
    let after = observe(&engine);
    assert_eq!(
        after,
        before,
        "state changed across reopen:\n{}",
        summary(&after)
    );
    assert_eq!(files_on(&disk), engine.segment_files());
}

#[test]
fn conflicting_suffix_snapshot_and_purge_survive_reopen() {
    let disk = SimDisk::new();
    let (mut engine, _) =
        LogEngine::open(disk.clone(), DIR, LogEngineOptions::default()).expect("open");
    let mut model = Model::default();
    write(
        &mut engine,
        &[
            Op::Append(1, entries(1, 1..=10, 8)),
            Op::Append(2, entries(1, 1..=3, 8)),
        ],
        &mut model,
        false,
    );
    // A new leader overwrites 6..10 of group 1 with 6..7 of term 2.
    write(
        &mut engine,
        &[Op::Append(1, entries(2, 6..=7, 9)), Op::HardState(1, hs(2))],
        &mut model,
        true,
    );
    assert_eq!(engine.last_index(1), Some(7));
    // Group 2 installs a snapshot at 50: its whole log goes.
    let meta = SnapshotMeta {
        last_index: 50,
        last_term: 4,
        membership: Membership::new([1, 2, 3]),
    };
    write(
        &mut engine,
        &[
            Op::Snapshot(2, meta.clone()),
            Op::Append(2, entries(4, 51..=52, 3)),
        ],
        &mut model,
        false,
    );
    // Group 1 compacts to 4.
    write(&mut engine, &[Op::Purge(1, 4)], &mut model, true);
    assert_eq!(engine.first_index(1), Some(5));
    assert!(matches!(
        engine.entries(1, 4, 6),
        Err(LogEngineError::OutOfRange { .. })
    ));
    assert!(matches!(
        engine.entries(1, 5, 9),
        Err(LogEngineError::OutOfRange { .. })
    ));
    assert_eq!(
        engine.entries(1, 6, 8).expect("entries"),
        entries(2, 6..=7, 9)
    );
    assert_eq!(engine.snapshot_meta(2), Some(meta));
    assert_eq!(
        (engine.first_index(2), engine.last_index(2)),
        (Some(51), Some(52))
    );
    assert_eq!(engine.groups(), vec![1, 2]);
    let before = observe(&engine);
    assert_eq!(before, model.view());
    drop(engine);
    let (engine, _) = LogEngine::open(disk, DIR, LogEngineOptions::default()).expect("reopen");
    assert_eq!(observe(&engine), before);
}

#[test]
fn invalid_writes_are_refused_and_write_nothing() {
    let disk = SimDisk::new();
    let (mut engine, _) =
        LogEngine::open(disk.clone(), DIR, LogEngineOptions::default()).expect("open");
    let mut b = WriteBatch::new();
    b.append(1, entries(1, 1..=5, 4));
    b.purge(1, 2);
    engine.write(&b, true).expect("write");
    let len = disk.len_of(&seg(1)).expect("len");
    let cases: Vec<(&str, WriteBatch)> = vec![
        ("gap", {
            let mut b = WriteBatch::new();
            b.append(1, entries(1, 7..=8, 4));
            b
        }),
        ("rewrite below purge point", {
            let mut b = WriteBatch::new();
            b.append(1, entries(1, 2..=3, 4));
            b
        }),
        ("not contiguous", {
            let mut b = WriteBatch::new();
            b.append(1, vec![entry(1, 6, b"a"), entry(1, 8, b"b")]);
            b
        }),
        ("purge beyond last", {
            let mut b = WriteBatch::new();
            b.purge(1, 6);
            b
        }),
        ("stale snapshot", {
            let mut b = WriteBatch::new();
            b.install_snapshot(
                1,
                SnapshotMeta {
                    last_index: 1,
                    last_term: 1,
                    membership: Membership::new([1]),
                },
            );
            b
        }),
        ("new group not starting at 1, after a valid op", {
            let mut b = WriteBatch::new();
            b.set_hard_state(3, hs(1));
            b.append(3, entries(1, 2..=2, 4));
            b
        }),
    ];
    for (name, b) in cases {
        match engine.write(&b, true) {
            Err(LogEngineError::InvalidWrite { .. }) => {}
            other => panic!("{name}: expected InvalidWrite, got {other:?}"),
        }
    }
    assert_eq!(
        disk.len_of(&seg(1)).expect("len"),
        len,
        "a refused batch wrote bytes"
    );
    assert_eq!(engine.groups(), vec![1]);
    // Validation follows the batch's own earlier operations.
    let mut b = WriteBatch::new();
    b.append(2, entries(1, 1..=3, 4));
    b.purge(2, 3);
    b.append(2, entries(1, 4..=4, 4));
    engine.write(&b, false).expect("valid batch");
    assert_eq!(
        (engine.first_index(2), engine.last_index(2)),
        (Some(4), Some(4))
    );
}

#[test]
fn group_commit_one_fsync_for_fifty_groups() {
    let disk = SimDisk::new();
    let (mut engine, _) =
        LogEngine::open(disk.clone(), DIR, LogEngineOptions::default()).expect("open");
    let file_syncs = disk.total_file_syncs();
    let mut b = WriteBatch::new();
    for g in 1..=50 {
        b.append(g, entries(1, 1..=3, 100));
        b.set_hard_state(g, hs(1));
    }
    engine.write(&b, true).expect("write");
    assert_eq!(
        disk.total_file_syncs() - file_syncs,
        1,
        "one fsync for the whole batch"
    );
    assert_eq!(disk.file_syncs(&seg(1)), 1);
    assert_eq!(engine.groups().len(), 50);
    // An unsynced batch costs no fsync; an explicit sync then costs exactly one.
    let mut b = WriteBatch::new();
    for g in 1..=50 {
        b.append(g, entries(1, 4..=4, 100));
    }
    engine.write(&b, false).expect("write");
    assert_eq!(disk.file_syncs(&seg(1)), 1);
    engine.sync().expect("sync");
    engine.sync().expect("nothing left to sync");
    assert_eq!(disk.file_syncs(&seg(1)), 2);
    assert_eq!(engine.fsync_count(), 2);

    // sync_writes = false turns the fsync off.
    let disk = SimDisk::new();
    let opts = LogEngineOptions {
        sync_writes: false,
        ..LogEngineOptions::default()
    };
    let (mut engine, _) = LogEngine::open(disk.clone(), DIR, opts).expect("open");
    let mut b = WriteBatch::new();
    b.append(1, entries(1, 1..=3, 100));
    engine.write(&b, true).expect("write");
    assert_eq!(disk.total_file_syncs(), 0);
}

/// Collects what `tracing` prints while `f` runs.
fn capture_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf(Arc::new(Mutex::new(Vec::new())));
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::WARN)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text =
        String::from_utf8_lossy(&buf.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned();
    (out, text)
}

#[test]
fn torn_tail_is_truncated_and_logged() {
    let disk = SimDisk::new();
    let (mut engine, _) =
        LogEngine::open(disk.clone(), DIR, LogEngineOptions::default()).expect("open");
    let mut model = Model::default();
    write(
        &mut engine,
        &[
            Op::Append(1, entries(1, 1..=3, 50)),
            Op::HardState(1, hs(1)),
        ],
        &mut model,
        true,
    );
    let good = disk.len_of(&seg(1)).expect("len");
    // A three-record batch, then the last record torn in the middle.
    engine
        .write(
            &batch_of(&[
                Op::Append(1, entries(1, 4..=5, 50)),
                Op::Append(2, entries(1, 1..=1, 50)),
                Op::HardState(2, hs(3)),
            ]),
            false,
        )
        .expect("write");
    let full = disk.len_of(&seg(1)).expect("len");
    drop(engine);
    let mut f = disk.open(&seg(1)).expect("open file");
    f.truncate(full - 10).expect("tear");
    f.sync().expect("sync");

    let ((engine, report), logs) = capture_logs(|| {
        LogEngine::open(disk.clone(), DIR, LogEngineOptions::default()).expect("reopen")
    });
    assert_eq!(report.truncated_records, 3, "{report:?}");
    assert_eq!(report.truncated_bytes, full - 10 - good);
    assert_eq!(report.truncated_at, Some((seg(1), good)));
    assert!(logs.contains("torn tail"), "logs: {logs}");
    assert!(logs.contains(&seg(1).display().to_string()), "logs: {logs}");
    assert!(logs.contains(&format!("offset={good}")), "logs: {logs}");
    assert_eq!(
        disk.len_of(&seg(1)).expect("len"),
        good,
        "file cut at the batch start"
    );
    assert_eq!(
        observe(&engine),
        model.view(),
        "the whole torn batch is gone, nothing else"
    );
    drop(engine);

    // A bad checksum on the very last record is a torn tail too.
    let (mut engine, _) =
        LogEngine::open(disk.clone(), DIR, LogEngineOptions::default()).expect("open");
    write(&mut engine, &[Op::HardState(3, hs(9))], &mut model, true);
    let end = disk.len_of(&seg(1)).expect("len");
    drop(engine);
    disk.flip_bit(&seg(1), end - 1, 0).expect("flip");
    let (engine, report) =
        LogEngine::open(disk.clone(), DIR, LogEngineOptions::default()).expect("reopen");
    assert_eq!(report.truncated_records, 1);
    assert_eq!(report.truncated_bytes, end - good);
    assert_eq!(engine.hard_state(3), None);
}

/// Several segments of records for group 1 (one batch each); returns the record offsets of segment 1.
fn several_segments(disk: &SimDisk) -> LogEngine {
    let (mut engine, _) = LogEngine::open(disk.clone(), DIR, small(600)).expect("open");
    for i in 1..=30 {
        let mut b = WriteBatch::new();
        b.append(1, entries(1, i..=i, 60));
        engine.write(&b, true).expect("write");
    }
    assert!(engine.segment_files().len() >= 4);
    engine
}

/// Offset of the record holding entry 2 in segment 1: second record of the file.
const SECOND_RECORD: u64 = (RECORD_HEADER_BYTES + 4 + 17 + 4 + 60) as u64;

#[test]
fn bit_flip_in_an_earlier_segment_is_corruption() {
    let disk = SimDisk::new();
    drop(several_segments(&disk));
    // Flip a payload bit of the second record of segment 1.
    disk.flip_bit(&seg(1), SECOND_RECORD + 30, 3).expect("flip");
    let err = LogEngine::open(disk.clone(), DIR, small(600)).expect_err("must refuse");
    match &err {
        LogEngineError::Corruption {
            file,
            offset,
            reason,
        } => {
            assert_eq!(file, &seg(1));
            assert_eq!(*offset, SECOND_RECORD);
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("expected Corruption, got {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&seg(1).display().to_string())
            && text.contains(&format!("offset {SECOND_RECORD}")),
        "{text}"
    );
    // Nothing was truncated: the file is intact apart from the flipped bit.
    disk.flip_bit(&seg(1), SECOND_RECORD + 30, 3)
        .expect("flip back");
    let (engine, report) = LogEngine::open(disk, DIR, small(600)).expect("open after repair");
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(engine.last_index(1), Some(30));
}

#[test]
fn bit_flip_followed_by_valid_records_in_last_segment_is_corruption() {
    let disk = SimDisk::new();
    let engine = several_segments(&disk);
    let last = engine.active_segment();
    drop(engine);
    assert!(disk.len_of(&last).expect("len") > SECOND_RECORD + 100);
    // The header's group id is covered by the checksum too.
    disk.flip_bit(&last, 14, 0).expect("flip");
    match LogEngine::open(disk.clone(), DIR, small(600)) {
        Err(LogEngineError::Corruption { file, offset, .. }) => {
            assert_eq!((file, offset), (last.clone(), 0))
        }
        other => panic!("expected Corruption, got {other:?}"),
    }
    // Magic bytes.
    disk.flip_bit(&last, 14, 0).expect("flip back");
    disk.flip_bit(&last, 0, 5).expect("flip");
    match LogEngine::open(disk.clone(), DIR, small(600)) {
        Err(LogEngineError::Corruption {
            file,
            offset,
            reason,
        }) => {
            assert_eq!((file, offset), (last.clone(), 0));
            assert!(reason.contains("magic"), "{reason}");
        }
        other => panic!("expected Corruption, got {other:?}"),
    }
}

#[test]
fn oversize_length_is_a_clean_error() {
    // In the middle of the log: corruption, without allocating 4 GiB.
    let disk = SimDisk::new();
    drop(several_segments(&disk));
    let mut data = disk.read_all(&seg(1)).expect("read");
    let at = SECOND_RECORD as usize + 4;
    data[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    disk.write_durable(&seg(1), &data);
    match LogEngine::open(disk.clone(), DIR, small(600)) {
        Err(LogEngineError::Corruption {
            file,
            offset,
            reason,
        }) => {
            assert_eq!((file, offset), (seg(1), SECOND_RECORD));
            assert!(reason.contains("exceeds max_record_bytes"), "{reason}");
        }
        other => panic!("expected Corruption, got {other:?}"),
    }

    // A length within the limit but past the end of a non-last segment.
    let disk = SimDisk::new();
    drop(several_segments(&disk));
    let mut data = disk.read_all(&seg(1)).expect("read");
    data[at..at + 4].copy_from_slice(&100_000u32.to_le_bytes());
    disk.write_durable(&seg(1), &data);
    match LogEngine::open(disk.clone(), DIR, small(600)) {
        Err(LogEngineError::Corruption { reason, .. }) => {
            assert!(reason.contains("past the end"), "{reason}")
        }
        other => panic!("expected Corruption, got {other:?}"),
    }

    // On the last record of the log it is a torn tail.
    let disk = SimDisk::new();
    let engine = several_segments(&disk);
    let last = engine.active_segment();
    drop(engine);
    let mut data = disk.read_all(&last).expect("read");
    let n = data.len();
    data.extend_from_slice(&hard_state_record(5, 1));
    data[n + 4..n + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    disk.write_durable(&last, &data);
    let (engine, report) = LogEngine::open(disk.clone(), DIR, small(600)).expect("torn tail");
    assert_eq!(report.truncated_at, Some((last, n as u64)));
    assert_eq!(engine.groups(), vec![1]);

    // Writes beyond the limit are refused; long runs are split into records.
    let disk = SimDisk::new();
    let opts = LogEngineOptions {
        max_record_bytes: 1000,
        ..LogEngineOptions::default()
    };
    let (mut engine, _) = LogEngine::open(disk.clone(), DIR, opts.clone()).expect("open");
    let mut b = WriteBatch::new();
    b.append(1, vec![entry(1, 1, &[0; 1000])]);
    assert!(matches!(
        engine.write(&b, true),
        Err(LogEngineError::EntryTooLarge { index: 1, .. })
    ));
    let mut b = WriteBatch::new();
    b.append(1, entries(1, 1..=40, 100));
    engine.write(&b, true).expect("split into several records");
    drop(engine);
    let (engine, report) = LogEngine::open(disk, DIR, opts.clone()).expect("reopen");
    assert!(report.records >= 5, "{report:?}");
    assert_eq!(
        engine.entries(1, 1, 41).expect("entries"),
        entries(1, 1..=40, 100)
    );
    assert!(
        LogEngine::open(
            SimDisk::new(),
            DIR,
            LogEngineOptions {
                max_record_bytes: 10,
                ..opts
            }
        )
        .is_err()
    );
}

#[test]
fn a_segment_ending_inside_a_batch_is_corruption_unless_last() {
    let disk = SimDisk::new();
    let mut file = record(2, 0, 1, &[0; 24]); // no batch-end flag
    file.extend(hard_state_record(1, 1));
    let mut first = file.clone();
    first.truncate(RECORD_HEADER_BYTES + 24); // segment 1 ends inside a batch
    disk.write_durable(&seg(1), &first);
    disk.write_durable(&seg(2), &file);
    match LogEngine::open(disk.clone(), DIR, LogEngineOptions::default()) {
        Err(LogEngineError::Corruption { file, reason, .. }) => {
            assert_eq!(file, seg(1));
            assert!(reason.contains("inside a write batch"), "{reason}");
        }
        other => panic!("expected Corruption, got {other:?}"),
    }
    disk.remove(&seg(2)).expect("remove");
    let (engine, report) =
        LogEngine::open(disk, DIR, LogEngineOptions::default()).expect("torn tail");
    assert_eq!(report.truncated_records, 1);
    assert!(engine.groups().is_empty());
}

#[test]
fn rotation_and_purge_delete_the_right_files() {
    let disk = SimDisk::new();
    let opts = small(1000);
    let (mut engine, _) = LogEngine::open(disk.clone(), DIR, opts.clone()).expect("open");
    let mut model = Model::default();
    // Group 9 writes a hard state in segment 1 and then stays idle.
    write(&mut engine, &[Op::HardState(9, hs(5))], &mut model, true);
    // Group 1: one 300-byte batch per entry -> 3 per segment.
    for i in 1..=12 {
        write(
            &mut engine,
            &[Op::Append(1, entries(1, i..=i, 260))],
            &mut model,
            true,
        );
    }
    let files = engine.segment_files();
    assert_eq!(files, files_on(&disk));
    assert_eq!(files.len(), 4, "{files:?}");
    for f in &files[..3] {
        let len = disk.len_of(f).expect("len");
        assert!(len <= 1000 && len > 600, "{f:?}: {len}");
    }
    // Nothing is dead yet.
    let r = engine.purge().expect("purge");
    assert!(r.removed.is_empty() && r.rewritten_records == 0, "{r:?}");

    // Group 1 compacts through entry 6: segments 1 and 2 hold no live entry;
    // segment 1 still holds group 9's hard state, which gets copied forward.
    write(&mut engine, &[Op::Purge(1, 6)], &mut model, false);
    let r = engine.purge().expect("purge");
    assert_eq!(r.removed, vec![seg(1), seg(2)]);
    assert_eq!(r.rewritten_records, 1);
    assert_eq!(engine.segment_files(), files_on(&disk));
    assert_eq!(observe(&engine), model.view());

    // A conflicting rewrite of 7..12 (it starts segment 5) kills the entries
    // of segments 3 and 4; segment 4 also holds group 1's purge record and
    // group 9's copied hard state, which move on again.
    write(
        &mut engine,
        &[Op::Append(1, entries(2, 7..=7, 10))],
        &mut model,
        true,
    );
    assert_eq!(engine.active_segment(), seg(5));
    let r = engine.purge().expect("purge");
    assert_eq!(r.removed, vec![seg(3), seg(4)]);
    assert_eq!(r.rewritten_records, 2);
    assert_eq!(engine.segment_files(), vec![seg(5)]);
    // The active segment is never deleted, even when nothing in it is live.
    write(&mut engine, &[Op::Purge(1, 7)], &mut model, true);
    assert!(engine.purge().expect("purge").removed.is_empty());
    assert_eq!(observe(&engine), model.view());
    drop(engine);

    let (mut engine, _) =
        LogEngine::open(disk.clone(), DIR, opts.clone()).expect("reopen after purge");
    assert_eq!(observe(&engine), model.view());
    assert_eq!(engine.hard_state(9), Some(hs(5)));
    // Middle segments go too: group 2 fills segment N+1 and compacts, while
    // group 1's live entry pins the older segment.
    write(
        &mut engine,
        &[Op::Append(1, entries(2, 8..=8, 260))],
        &mut model,
        true,
    );
    let pinned = engine.active_segment();
    for i in 1..=6 {
        write(
            &mut engine,
            &[Op::Append(2, entries(1, i..=i, 260))],
            &mut model,
            true,
        );
    }
    write(&mut engine, &[Op::Purge(2, 6)], &mut model, true);
    for i in 9..=11 {
        write(
            &mut engine,
            &[Op::Append(1, entries(2, i..=i, 260))],
            &mut model,
            true,
        );
    }
    let r = engine.purge().expect("purge");
    assert_eq!(
        r.removed,
        vec![seg(6)],
        "only the segment holding nothing but group 2 entries 2..4"
    );
    assert!(r.removed.iter().all(|f| f > &pinned), "{r:?}");
    assert!(engine.segment_files().contains(&pinned));
    assert_eq!(engine.segment_files(), files_on(&disk));
    let before = observe(&engine);
    assert_eq!(before, model.view());
    drop(engine);
    let (engine, _) = LogEngine::open(disk.clone(), DIR, opts).expect("reopen");
    assert_eq!(observe(&engine), before);
}

#[test]
fn a_snapshot_install_frees_old_segments() {
    let disk = SimDisk::new();
    let opts = small(800);
    let (mut engine, _) = LogEngine::open(disk.clone(), DIR, opts.clone()).expect("open");
    let mut model = Model::default();
    for i in 1..=9 {
        write(
            &mut engine,
            &[
                Op::Append(1, entries(1, i..=i, 200)),
                Op::HardState(1, hs(i)),
            ],
            &mut model,
            true,
        );
    }
    assert!(engine.segment_files().len() >= 3);
    let meta = SnapshotMeta {
        last_index: 20,
        last_term: 3,
        membership: Membership::new([1, 2]),
    };
    write(&mut engine, &[Op::Snapshot(1, meta)], &mut model, true);
    let r = engine.purge().expect("purge");
    assert_eq!(
        engine.segment_files(),
        vec![engine.active_segment()],
        "{r:?}"
    );
    drop(engine);
    let (engine, _) = LogEngine::open(disk, DIR, opts).expect("reopen");
    assert_eq!(observe(&engine), model.view());
    assert_eq!(
        (engine.first_index(1), engine.last_index(1)),
        (Some(21), Some(20))
    );
}

#[test]
fn fsync_failure_poisons_until_reopen() {
    let disk = SimDisk::new();
    let (mut engine, _) =
        LogEngine::open(disk.clone(), DIR, LogEngineOptions::default()).expect("open");
    let mut b = WriteBatch::new();
    b.append(1, entries(1, 1..=2, 10));
    engine.write(&b, true).expect("write");
    disk.fail_next_syncs(1);
    let mut b = WriteBatch::new();
    b.append(1, entries(1, 3..=3, 10));
    assert!(matches!(
        engine.write(&b, true),
        Err(LogEngineError::Io { op: "fsync", .. })
    ));
    let mut b = WriteBatch::new();
    b.append(1, entries(1, 4..=4, 10));
    assert!(matches!(
        engine.write(&b, true),
        Err(LogEngineError::Poisoned(_))
    ));
    assert!(matches!(engine.purge(), Err(LogEngineError::Poisoned(_))));
    drop(engine);
    disk.crash(5);
    let (engine, _) = LogEngine::open(disk, DIR, LogEngineOptions::default()).expect("reopen");
    let last = engine.last_index(1).expect("group 1");
    assert!(last == 2 || last == 3, "{last}");
}

#[test]
fn std_disk_round_trip_in_a_temp_dir() {
    let dir = temp_dir("log-engine");
    let opts = small(2000);
    let (mut engine, report) = LogEngine::open(StdDisk, &dir, opts.clone()).expect("open");
    assert_eq!(report.segments, 0);
    let mut model = Model::default();
    let mut rng = SplitMix64::new(5);
    for i in 0..200 {
        let ops: Vec<Op> = (0..rng.range(1, 5))
            .map(|_| random_op(&mut rng, &mut model, 8))
            .collect();
        engine.write(&batch_of(&ops), i % 10 == 0).expect("write");
    }
    engine.purge().expect("purge");
    let before = observe(&engine);
    assert_eq!(before, model.view());
    let files = engine.segment_files();
    drop(engine);
    let (engine, report) = LogEngine::open(StdDisk, &dir, opts).expect("reopen");
    assert_eq!(report.truncated_bytes, 0);
    assert_eq!(observe(&engine), before);
    assert_eq!(engine.segment_files(), files);
    let mut on_disk: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, files);
    drop(engine);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// A deleted segment held the truncation that shortened a group's log, while
/// an older segment (kept alive by another group) still holds the entries it
/// cut off. Replaying without the deleted segment must not bring them back:
/// the purge record re-asserts the end of the log.
#[test]
fn purge_never_resurrects_truncated_entries() {
    let disk = SimDisk::new();
    let opts = small(700);
    let (mut engine, _) = LogEngine::open(disk.clone(), DIR, opts.clone()).expect("open");
    let mut model = Model::default();
    // Segment 1: group 1 entries 1..10 and group 2's live entry.
    write(
        &mut engine,
        &[
            Op::Append(1, entries(1, 1..=10, 20)),
            Op::Append(2, entries(1, 1..=1, 300)),
        ],
        &mut model,
        true,
    );
    // Segment 2: group 1 truncates to 5..6 (term 2).
    write(
        &mut engine,
        &[Op::Append(1, entries(2, 5..=6, 300))],
        &mut model,
        true,
    );
    assert_eq!(engine.active_segment(), seg(2));
    // Segment 3: group 1 compacts through 6; its log is now empty, ending at 6.
    write(
        &mut engine,
        &[Op::Append(3, entries(1, 1..=1, 500))],
        &mut model,
        true,
    );
    write(&mut engine, &[Op::Purge(1, 6)], &mut model, true);
    assert_eq!(engine.active_segment(), seg(3));
    let r = engine.purge().expect("purge");
    assert_eq!(r.removed, vec![seg(2)]);
    assert!(engine.segment_files().contains(&seg(1)));
    drop(engine);
    let (engine, _) = LogEngine::open(disk, DIR, opts).expect("reopen");
    assert_eq!(
        (engine.first_index(1), engine.last_index(1)),
        (Some(7), Some(6))
    );
    assert_eq!(observe(&engine), model.view());
}

/// Recovery on damaged or hostile segments returns a value or an error, never
/// panics: random bit flips, cuts and length rewrites of real segments, and
/// records with a valid checksum around random or extreme payloads.
#[test]
fn recovery_never_panics_on_garbage() {
    let mut rng = SplitMix64::new(2024);
    // Real segments to mutate.
    let source = SimDisk::new();
    let (mut engine, _) = LogEngine::open(source.clone(), DIR, small(500)).expect("open");
    let mut model = Model::default();
    for _ in 0..60 {
        let ops: Vec<Op> = (0..rng.range(1, 4))
            .map(|_| random_op(&mut rng, &mut model, 4))
            .collect();
        engine.write(&batch_of(&ops), false).expect("write");
    }
    let files: Vec<Vec<u8>> = engine
        .segment_files()
        .iter()
        .map(|f| source.read_all(f).expect("read"))
        .collect();
    drop(engine);
    let extremes = [0u64, 1, 2, u64::MAX - 1, u64::MAX, 1 << 32];
    // Every pair of extreme values in well-shaped records with valid checksums,
    // alone or after a valid entry run of the same group.
    let open_all = |disk: &SimDisk| {
        if let Ok((engine, _)) = LogEngine::open(disk.clone(), DIR, small(500)) {
            for g in engine.groups() {
                let first = engine.first_index(g).expect("bounds");
                let last = engine.last_index(g).expect("bounds");
                let _ = engine.entries(g, first, last.saturating_add(1));
                let _ = engine.entries(g, 0, u64::MAX);
            }
        }
    };
    for a in extremes {
        for b in extremes {
            let u = |v: u64| v.to_le_bytes();
            let mut shaped: Vec<(u8, Vec<u8>)> = vec![
                (4, [u(a), u(b)].concat()),
                (2, [u(a), u(b), u(a)].concat()),
                (
                    3,
                    [vec![1], u(a).to_vec(), u(b).to_vec(), vec![0; 13]].concat(),
                ),
                (
                    3,
                    [vec![0], u(a).to_vec(), u(b).to_vec(), vec![0; 13]].concat(),
                ),
            ];
            let mut run = 1u32.to_le_bytes().to_vec();
            run.extend_from_slice(&u(b));
            run.extend_from_slice(&u(a));
            run.push(0);
            shaped.push((1, run));
            for (ty, payload) in shaped {
                for prefix in [false, true] {
                    let disk = SimDisk::new();
                    let mut data = Vec::new();
                    if prefix {
                        let mut p = 1u32.to_le_bytes().to_vec();
                        p.extend_from_slice(&1u64.to_le_bytes());
                        p.extend_from_slice(&1u64.to_le_bytes());
                        p.push(0);
                        data.extend(record(1, 1, 1, &p));
                    }
                    data.extend(record(ty, 1, 1, &payload));
                    disk.write_durable(&seg(1), &data);
                    open_all(&disk);
                }
            }
        }
    }
    let mut opened = 0;
    for round in 0..1500 {
        let disk = SimDisk::new();
        let n = rng.range(1, 4);
        for s in 0..n {
            let mut data = if rng.chance(2, 3) {
                files[rng.range(0, files.len() as u64) as usize].clone()
            } else {
                Vec::new()
            };
            match rng.range(0, 5) {
                0 if !data.is_empty() => {
                    for _ in 0..rng.range(1, 4) {
                        let at = rng.range(0, data.len() as u64) as usize;
                        data[at] ^= 1 << rng.range(0, 8);
                    }
                }
                1 => data.truncate(rng.range(0, data.len() as u64 + 1) as usize),
                2 if data.len() > 8 => {
                    let at = rng.range(0, data.len() as u64 - 4) as usize;
                    let v = extremes[rng.range(0, extremes.len() as u64) as usize] as u32;
                    data[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
                _ => {
                    // A record with a valid checksum around a hostile payload.
                    let ty = rng.range(0, 6) as u8;
                    let mut payload = Vec::new();
                    let mut x =
                        || extremes[rng.range(0, extremes.len() as u64) as usize].to_le_bytes();
                    // Well-shaped payloads with extreme values...
                    match ty {
                        1 => {
                            payload.extend_from_slice(&1u32.to_le_bytes());
                            payload.extend_from_slice(&x());
                            payload.extend_from_slice(&x());
                            payload.push(0);
                        }
                        2 => (0..3).for_each(|_| payload.extend_from_slice(&x())),
                        3 => {
                            payload.push(1);
                            payload.extend_from_slice(&x());
                            payload.extend_from_slice(&x());
                            payload.extend_from_slice(&[0; 13]);
                        }
                        4 => (0..2).for_each(|_| payload.extend_from_slice(&x())),
                        _ => {}
                    }
                    // ...and shapeless ones.
                    if rng.chance(1, 2) {
                        payload.clear();
                    }
                    for _ in 0..rng.range(0, 5) * u64::from(payload.is_empty()) {
                        let v = if rng.chance(1, 2) {
                            extremes[rng.range(0, extremes.len() as u64) as usize]
                        } else {
                            rng.range(0, 8)
                        };
                        payload.extend_from_slice(&v.to_le_bytes()[..rng.range(1, 9) as usize]);
                    }
                    let flags = rng.range(0, 3) as u8;
                    data.extend(record(ty, flags, rng.range(0, 3), &payload));
                }
            }
            disk.write_durable(&seg(s + 1), &data);
        }
        if let Ok((engine, _)) = LogEngine::open(disk.clone(), DIR, small(500)) {
            opened += 1;
            for g in engine.groups() {
                let (Some(first), Some(last)) = (engine.first_index(g), engine.last_index(g))
                else {
                    panic!("round {round}: group {g} listed without bounds");
                };
                let _ = engine.entries(g, first, last.saturating_add(1));
                let _ = engine.entries(g, 0, u64::MAX);
            }
        }
    }
    assert!(
        opened > 100,
        "only {opened} rounds opened: the mutations are too destructive to test replay"
    );
}
