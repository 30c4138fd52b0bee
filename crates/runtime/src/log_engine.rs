//! The log engine: one segmented, append-only log shared by every raft group
//! of a process (multi-raft), like a write-ahead log.
//!
//! See `docs/log-engine.md` for the file layout, the record byte layout and
//! the recovery rules. In short:
//!
//! * records go into numbered segment files (`00000000000000000001.log`, ...);
//!   a new segment starts once the active one would pass `segment_max_bytes`;
//! * a [`WriteBatch`] (records for any number of groups) is appended with one
//!   write call and, when synced, one fsync: group commit across groups. A
//!   batch never spans two segments and is atomic on recovery: its last record
//!   carries the batch-end flag, and a batch without it at the end of the log
//!   is a torn tail;
//! * the engine keeps, per group, an index of *where* each live entry is (the
//!   record holding it), not the entries themselves: the raft core already
//!   keeps its unsnapshotted log in memory, so caching payloads here would hold
//!   them twice. [`LogEngine::entries`] re-reads and re-verifies the records;
//!   it is meant for restarts and for tools, not for the replication hot path;
//! * [`LogEngine::purge`] deletes every non-active segment that holds no live
//!   record, after copying a group's small live records (hard state, snapshot
//!   meta, purge point) out of segments that would otherwise be deletable.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rhea_raft::{Entry, GroupId, HardState, Index, SnapshotMeta};
use tracing::warn;

use crate::codec::{self, Reader};
use crate::disk::{Disk, DiskFile};
use crate::error::LogEngineError;

/// First two bytes of every record (`"Rh"` on disk).
pub const RECORD_MAGIC: u16 = u16::from_le_bytes(*b"Rh");
/// Size of a record header: magic u16, type u8, flags u8, payload length u32,
/// crc32c u32, group id u64.
pub const RECORD_HEADER_BYTES: usize = 20;
/// Flag bit: this record is the last one of its write batch.
const FLAG_BATCH_END: u8 = 0x01;
const KNOWN_FLAGS: u8 = FLAG_BATCH_END;

/// Default `segment_max_bytes`: 64 MiB.
pub const DEFAULT_SEGMENT_MAX_BYTES: u64 = 64 << 20;
/// Default `max_record_bytes`: 64 MiB.
pub const DEFAULT_MAX_RECORD_BYTES: u32 = 64 << 20;
/// Smallest accepted `max_record_bytes`: room for any small record.
const MIN_MAX_RECORD_BYTES: u32 = 256;
/// Largest log index the engine stores (so that `last + 1` never overflows).
pub const MAX_INDEX: Index = u64::MAX - 1;

/// The kinds of record in a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    /// A run of contiguous entries of one group; replaces the group's stored
    /// entries with index >= the run's first index.
    Entries = 1,
    /// The group's hard state (term, vote, commit).
    HardState = 2,
    /// A snapshot was installed: entries up to its last index are dropped and
    /// its metadata recorded (with the reset byte set, the whole log is dropped).
    SnapshotInstalled = 3,
    /// The group no longer needs entries up to an index.
    Purge = 4,
}

impl RecordType {
    fn from_u8(v: u8) -> Option<RecordType> {
        match v {
            1 => Some(RecordType::Entries),
            2 => Some(RecordType::HardState),
            3 => Some(RecordType::SnapshotInstalled),
            4 => Some(RecordType::Purge),
            _ => None,
        }
    }
}

/// File name of segment `seq`: 20 digits, zero-padded, `.log`.
pub fn segment_file_name(seq: u64) -> String {
    format!("{seq:020}.log")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Tuning and limits of a [`LogEngine`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEngineOptions {
    /// A new segment is started before a batch that would make the active one
    /// larger than this many bytes (a single larger batch gets a segment of
    /// its own). Default 64 MiB.
    pub segment_max_bytes: u64,
    /// Largest record payload in bytes, checked on write and on recovery. Runs
    /// of entries are split into several records to stay under it; one entry
    /// that does not fit is refused. Never lower it below what existing
    /// segments hold: larger records would then read as corruption.
    /// Default 64 MiB; at least 256.
    pub max_record_bytes: u32,
    /// When false, the fsyncs that [`LogEngine::write`] (with `sync = true`) and
    /// [`LogEngine::sync`] would perform are skipped. Writes are then
    /// acknowledged before they are durable and **a power loss or kernel crash
    /// loses acknowledged writes**: Raft's promises (a vote is never forgotten,
    /// an acknowledged entry is never lost) no longer hold. Only for tests and
    /// benchmarks. A process crash alone loses nothing (the data is in the page
    /// cache). Rotation and purge still fsync. Default true.
    pub sync_writes: bool,
}

impl Default for LogEngineOptions {
    fn default() -> Self {
        LogEngineOptions {
            segment_max_bytes: DEFAULT_SEGMENT_MAX_BYTES,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            sync_writes: true,
        }
    }
}

impl LogEngineOptions {
    fn validate(&self) -> Result<(), LogEngineError> {
        if self.segment_max_bytes == 0 {
            return Err(LogEngineError::InvalidOptions(
                "segment_max_bytes must be > 0".into(),
            ));
        }
        if self.max_record_bytes < MIN_MAX_RECORD_BYTES {
            return Err(LogEngineError::InvalidOptions(format!(
                "max_record_bytes must be >= {MIN_MAX_RECORD_BYTES}, got {}",
                self.max_record_bytes
            )));
        }
        Ok(())
    }
}

/// What [`LogEngine::open`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files replayed.
    pub segments: usize,
    /// Records replayed (kept).
    pub records: u64,
    /// Bytes of records replayed (kept).
    pub bytes: u64,
    /// Records cut off as a torn tail: the complete records of the unfinished
    /// last batch plus the partial record, if any.
    pub truncated_records: u64,
    /// Bytes cut off the end of the last segment as a torn tail.
    pub truncated_bytes: u64,
    /// The segment and offset where the torn tail was cut, if one was.
    pub truncated_at: Option<(PathBuf, u64)>,
}

/// What [`LogEngine::purge`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Segment files deleted.
    pub removed: Vec<PathBuf>,
    /// Live small records (hard state, snapshot meta, purge point) copied to
    /// the active segment so that their old segments could go.
    pub rewritten_records: usize,
}

// ---------------------------------------------------------------------------
// Write batches
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum BatchOp {
    Entries(Vec<Entry>),
    HardState(HardState),
    InstallSnapshot(SnapshotMeta),
    Purge(Index),
}

/// Records for any number of groups, written together by [`LogEngine::write`]:
/// one write call, at most one fsync, atomic on recovery. Operations take
/// effect in the order they were added.
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    ops: Vec<(GroupId, BatchOp)>,
}

impl WriteBatch {
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    /// Append contiguous `entries` to `group`'s log, first dropping every
    /// stored entry with an index >= `entries[0].index` (the conflicting suffix
    /// a new leader overwrites). The first index must lie in
    /// `[first_index, last_index + 1]`. An empty vector is ignored.
    pub fn append(&mut self, group: GroupId, entries: Vec<Entry>) {
        if !entries.is_empty() {
            self.ops.push((group, BatchOp::Entries(entries)));
        }
    }

    /// Record `group`'s hard state.
    pub fn set_hard_state(&mut self, group: GroupId, hs: HardState) {
        self.ops.push((group, BatchOp::HardState(hs)));
    }

    /// A snapshot received from the leader was installed: `group`'s whole log
    /// is replaced by it (as the core does), so the log becomes empty and
    /// starts after `meta.last_index`; `meta` is recorded. `meta.last_index`
    /// must not be below the group's purge point.
    pub fn install_snapshot(&mut self, group: GroupId, meta: SnapshotMeta) {
        self.ops.push((group, BatchOp::InstallSnapshot(meta)));
    }

    /// `group` no longer needs its entries `<= to` (its state machine snapshot
    /// covers them: the core's `Ready::compacted_to`). `to` must not exceed the
    /// group's last index; a `to` at or below the current purge point is a
    /// no-op.
    pub fn purge(&mut self, group: GroupId, to: Index) {
        self.ops.push((group, BatchOp::Purge(to)));
    }

    /// Number of operations added.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn clear(&mut self) {
        self.ops.clear();
    }
}

// ---------------------------------------------------------------------------
// Index
// ---------------------------------------------------------------------------

/// Where a record is: segment, offset of its header, payload length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RecordLoc {
    seg: u64,
    offset: u64,
    payload_len: u32,
}

impl RecordLoc {
    fn total_len(&self) -> usize {
        RECORD_HEADER_BYTES + self.payload_len as usize
    }
}

/// Live entries `[first, last]` of a group, stored in the record at `loc`
/// (which may hold more entries, trimmed away by purges or truncations).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    first: Index,
    last: Index,
    loc: RecordLoc,
}

/// The decoded meaning of a record (entry payloads left on disk).
#[derive(Clone, Debug)]
enum Op {
    Entries { first: Index, last: Index },
    HardState(HardState),
    Snapshot { meta: SnapshotMeta, reset: bool },
    Purge { to: Index, last: Index },
}

/// What the engine knows about one group.
///
/// Invariants after every successful write and after recovery: `runs` are
/// sorted, contiguous and cover exactly `[purged + 1, last]`. While segments
/// are replayed they are sorted and disjoint but may have gaps.
#[derive(Clone, Debug, Default)]
struct GroupState {
    /// Entries `<= purged` are gone (purged, or covered by a snapshot).
    purged: Index,
    last: Index,
    runs: VecDeque<Run>,
    hard_state: Option<(HardState, RecordLoc)>,
    snapshot: Option<(SnapshotMeta, RecordLoc)>,
    /// The latest Purge record.
    purge_rec: Option<RecordLoc>,
    /// The latest record that set the end of the log (Entries, Purge, or a
    /// resetting SnapshotInstalled). Kept live: replaying it re-asserts
    /// `last` even when older records that shortened the log were deleted.
    last_log_rec: Option<RecordLoc>,
}

impl GroupState {
    /// Drop entries `>= from`.
    fn truncate_from(&mut self, from: Index) {
        while let Some(run) = self.runs.back_mut() {
            if run.first >= from {
                self.runs.pop_back();
            } else {
                if run.last >= from {
                    run.last = from - 1;
                }
                break;
            }
        }
    }

    /// Drop entries `<= to`.
    fn drop_through(&mut self, to: Index) {
        while let Some(run) = self.runs.front_mut() {
            if run.last <= to {
                self.runs.pop_front();
            } else {
                if run.first <= to {
                    run.first = to + 1;
                }
                break;
            }
        }
    }

    /// Apply one record. Writes are validated beforehand; on recovery the
    /// same code is lenient (older records may have been purged), and the
    /// result is checked once at the end by [`GroupState::check`].
    fn apply(&mut self, op: Op, loc: RecordLoc) {
        match op {
            Op::Entries { first, last } => {
                // On recovery the run may not attach to what is left (the
                // entries between were in deleted segments and a later record
                // covers the gap): runs are then sorted but not contiguous
                // until that record is replayed.
                self.truncate_from(first);
                self.runs.push_back(Run { first, last, loc });
                self.last = last;
                self.last_log_rec = Some(loc);
            }
            Op::HardState(hs) => self.hard_state = Some((hs, loc)),
            Op::Snapshot { meta, reset } => {
                let at = meta.last_index;
                self.purged = self.purged.max(at);
                if reset {
                    self.runs.clear();
                    self.last = at;
                    self.last_log_rec = Some(loc);
                } else {
                    self.drop_through(self.purged);
                    self.last = self.last.max(at);
                }
                self.snapshot = Some((meta, loc));
            }
            Op::Purge { to, last } => {
                self.purged = self.purged.max(to);
                self.drop_through(self.purged);
                self.truncate_from(last.saturating_add(1));
                self.last = last;
                self.purge_rec = Some(loc);
                self.last_log_rec = Some(loc);
            }
        }
    }

    fn check(&self) -> Result<(), String> {
        match (self.runs.front(), self.runs.back()) {
            (Some(front), Some(back)) => {
                for pair in self.runs.iter().zip(self.runs.iter().skip(1)) {
                    if pair.0.last + 1 != pair.1.first {
                        return Err(format!(
                            "entries {} to {} are missing (missing segment?)",
                            pair.0.last + 1,
                            pair.1.first - 1
                        ));
                    }
                }
                if front.first != self.purged + 1 {
                    return Err(format!(
                        "entries start at {} but the log starts at {} (missing segment?)",
                        front.first,
                        self.purged + 1
                    ));
                }
                if back.last != self.last {
                    return Err(format!(
                        "entries end at {} but the last index is {}",
                        back.last, self.last
                    ));
                }
            }
            _ => {
                if self.last != self.purged {
                    return Err(format!(
                        "no entries stored but the log spans [{}, {}] (missing segment?)",
                        self.purged + 1,
                        self.last
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every record this group still needs.
    fn live_records(&self) -> impl Iterator<Item = RecordLoc> + '_ {
        self.runs
            .iter()
            .map(|r| r.loc)
            .chain(self.hard_state.as_ref().map(|(_, l)| *l))
            .chain(self.snapshot.as_ref().map(|(_, l)| *l))
            .chain(self.purge_rec)
            .chain(self.last_log_rec)
    }
}

// ---------------------------------------------------------------------------
// Record framing
// ---------------------------------------------------------------------------

fn record_crc(ty: u8, flags: u8, group: GroupId, payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&[ty, flags]);
    let crc = crc32c::crc32c_append(crc, &group.to_le_bytes());
    crc32c::crc32c_append(crc, payload)
}

/// A record header that passed every check, payload at `data[payload]`.
struct Parsed {
    ty: RecordType,
    flags: u8,
    group: GroupId,
    payload: std::ops::Range<usize>,
}

impl Parsed {
    fn total_len(&self) -> usize {
        RECORD_HEADER_BYTES + self.payload.len()
    }
}

fn le_u16(b: &[u8]) -> u16 {
    u16::from_le_bytes([b[0], b[1]])
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Check the record starting at `data[off..]`. Never reads past `data`, never
/// allocates from a length field.
fn parse_record(data: &[u8], off: usize, max_payload: u32) -> Result<Parsed, String> {
    let left = data.len().saturating_sub(off);
    if left < RECORD_HEADER_BYTES {
        return Err(format!(
            "truncated header: {left} bytes left, a header is {RECORD_HEADER_BYTES}"
        ));
    }
    let h = &data[off..off + RECORD_HEADER_BYTES];
    let magic = le_u16(&h[0..2]);
    if magic != RECORD_MAGIC {
        return Err(format!("bad magic {magic:#06x}"));
    }
    let ty_byte = h[2];
    let Some(ty) = RecordType::from_u8(ty_byte) else {
        return Err(format!("unknown record type {ty_byte}"));
    };
    let flags = h[3];
    if flags & !KNOWN_FLAGS != 0 {
        return Err(format!("unknown flags {flags:#04x}"));
    }
    let len = le_u32(&h[4..8]);
    if len > max_payload {
        return Err(format!(
            "payload length {len} exceeds max_record_bytes = {max_payload}"
        ));
    }
    let start = off + RECORD_HEADER_BYTES;
    let end = start + len as usize;
    if end > data.len() {
        return Err(format!(
            "payload length {len} runs past the end of the file ({} bytes left)",
            data.len() - start
        ));
    }
    let crc = le_u32(&h[8..12]);
    let group = le_u64(&h[12..20]);
    let actual = record_crc(ty_byte, flags, group, &data[start..end]);
    if crc != actual {
        return Err(format!(
            "checksum mismatch (stored {crc:#010x}, computed {actual:#010x})"
        ));
    }
    Ok(Parsed {
        ty,
        flags,
        group,
        payload: start..end,
    })
}

/// True if a valid record starts anywhere in `data[from..]`.
fn valid_record_after(data: &[u8], from: usize, max_payload: u32) -> bool {
    let magic = RECORD_MAGIC.to_le_bytes();
    let mut pos = from;
    while pos + RECORD_HEADER_BYTES <= data.len() {
        if data[pos..pos + 2] == magic && parse_record(data, pos, max_payload).is_ok() {
            return true;
        }
        pos += 1;
    }
    false
}

/// Decode a record's payload into what the index needs.
fn decode_op(ty: RecordType, payload: Bytes) -> Result<Op, String> {
    match ty {
        RecordType::Entries => {
            let entries = codec::decode_entries(payload).map_err(|e| e.to_string())?;
            let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
                return Err("empty entry run".into());
            };
            if first.index == 0 || last.index > MAX_INDEX {
                return Err(format!("entry index out of range [1, {MAX_INDEX}]"));
            }
            Ok(Op::Entries {
                first: first.index,
                last: last.index,
            })
        }
        RecordType::HardState => Ok(Op::HardState(
            codec::decode_hard_state(payload).map_err(|e| e.to_string())?,
        )),
        RecordType::SnapshotInstalled => {
            let mut r = Reader::new(payload);
            let reset = match r.u8().map_err(|e| e.to_string())? {
                0 => false,
                1 => true,
                other => return Err(format!("bad snapshot reset byte {other}")),
            };
            let meta = r.snapshot_meta().map_err(|e| e.to_string())?;
            r.finish().map_err(|e| e.to_string())?;
            if meta.last_index > MAX_INDEX {
                return Err(format!("snapshot index {} out of range", meta.last_index));
            }
            Ok(Op::Snapshot { meta, reset })
        }
        RecordType::Purge => {
            let mut r = Reader::new(payload);
            let to = r.u64().map_err(|e| e.to_string())?;
            let last = r.u64().map_err(|e| e.to_string())?;
            r.finish().map_err(|e| e.to_string())?;
            if to > last || last > MAX_INDEX {
                return Err(format!("purge to {to} with last index {last} out of range"));
            }
            Ok(Op::Purge { to, last })
        }
    }
}

/// Records being assembled for one append: bytes plus what each record means.
struct Encoder {
    buf: Vec<u8>,
    records: Vec<(GroupId, Op, usize, u32)>,
    max_payload: u32,
}

impl Encoder {
    fn new(max_payload: u32) -> Encoder {
        Encoder {
            buf: Vec::new(),
            records: Vec::new(),
            max_payload,
        }
    }

    fn push(
        &mut self,
        group: GroupId,
        ty: RecordType,
        op: Op,
        payload: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), LogEngineError> {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0u8; RECORD_HEADER_BYTES]);
        payload(&mut self.buf);
        let len = self.buf.len() - start - RECORD_HEADER_BYTES;
        let len32 = u32::try_from(len)
            .ok()
            .filter(|l| *l <= self.max_payload)
            .ok_or_else(|| LogEngineError::InvalidWrite {
                group,
                reason: format!(
                    "{ty:?} record of {len} bytes exceeds max_record_bytes = {}",
                    self.max_payload
                ),
            })?;
        let h = &mut self.buf[start..start + RECORD_HEADER_BYTES];
        h[0..2].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        h[2] = ty as u8;
        h[3] = 0;
        h[4..8].copy_from_slice(&len32.to_le_bytes());
        h[12..20].copy_from_slice(&group.to_le_bytes());
        self.records.push((group, op, start, len32));
        Ok(())
    }

    /// Set the batch-end flag on the last record and fill in every checksum.
    fn seal(&mut self) {
        let n = self.records.len();
        for (i, (group, _, start, len)) in self.records.iter().enumerate() {
            let start = *start;
            let flags = if i + 1 == n { FLAG_BATCH_END } else { 0 };
            self.buf[start + 3] = flags;
            let payload =
                &self.buf[start + RECORD_HEADER_BYTES..start + RECORD_HEADER_BYTES + *len as usize];
            let crc = record_crc(self.buf[start + 2], flags, *group, payload);
            self.buf[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
        }
    }

    fn entries(&mut self, group: GroupId, entries: &[Entry]) -> Result<(), LogEngineError> {
        // Split the run into records of at most max_payload bytes.
        let limit = self.max_payload as usize;
        let mut chunk_start = 0;
        let mut chunk_bytes = 4; // the count
        for (i, e) in entries.iter().enumerate() {
            let n = codec::entry_encoded_len(e);
            if 4 + n > limit {
                return Err(LogEngineError::EntryTooLarge {
                    group,
                    index: e.index,
                    bytes: (4 + n) as u64,
                    limit: limit as u64,
                });
            }
            if chunk_bytes + n > limit {
                self.entries_record(group, &entries[chunk_start..i])?;
                chunk_start = i;
                chunk_bytes = 4;
            }
            chunk_bytes += n;
        }
        self.entries_record(group, &entries[chunk_start..])
    }

    fn entries_record(&mut self, group: GroupId, run: &[Entry]) -> Result<(), LogEngineError> {
        let (Some(first), Some(last)) = (run.first(), run.last()) else {
            return Ok(());
        };
        let op = Op::Entries {
            first: first.index,
            last: last.index,
        };
        self.push(group, RecordType::Entries, op, |out| {
            codec::encode_entries(run, out)
        })
    }

    fn hard_state(&mut self, group: GroupId, hs: HardState) -> Result<(), LogEngineError> {
        self.push(group, RecordType::HardState, Op::HardState(hs), |out| {
            codec::encode_hard_state(&hs, out)
        })
    }

    fn snapshot(
        &mut self,
        group: GroupId,
        meta: &SnapshotMeta,
        reset: bool,
    ) -> Result<(), LogEngineError> {
        let op = Op::Snapshot {
            meta: meta.clone(),
            reset,
        };
        self.push(group, RecordType::SnapshotInstalled, op, |out| {
            out.push(u8::from(reset));
            codec::encode_snapshot_meta(meta, out);
        })
    }

    fn purge(&mut self, group: GroupId, to: Index, last: Index) -> Result<(), LogEngineError> {
        self.push(group, RecordType::Purge, Op::Purge { to, last }, |out| {
            out.extend_from_slice(&to.to_le_bytes());
            out.extend_from_slice(&last.to_le_bytes());
        })
    }
}

// ---------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------

struct Active {
    seq: u64,
    file: Box<dyn DiskFile>,
    size: u64,
    unsynced: bool,
}

/// The shared log of every raft group of a process. See the module
/// documentation and `docs/log-engine.md`.
pub struct LogEngine {
    disk: Box<dyn Disk>,
    dir: PathBuf,
    opts: LogEngineOptions,
    /// Segment sequence number -> size in bytes, the active one included.
    segments: BTreeMap<u64, u64>,
    active: Active,
    groups: BTreeMap<GroupId, GroupState>,
    poisoned: Option<String>,
    fsyncs: u64,
}

impl std::fmt::Debug for LogEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogEngine")
            .field("dir", &self.dir)
            .field("opts", &self.opts)
            .field("segments", &self.segments)
            .field("active", &self.active.seq)
            .field("groups", &self.groups.len())
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl LogEngine {
    /// Open (or create) the log in `dir` and replay it.
    ///
    /// A bad record in the last segment with no valid record anywhere after
    /// it is a torn tail: the file is cut before the unfinished batch it
    /// belongs to, a warning names file and offset, and the report counts
    /// what was cut. Any other bad record is corruption and the log refuses
    /// to open ([`LogEngineError::Corruption`] names file and offset).
    pub fn open(
        disk: impl Disk + 'static,
        dir: impl Into<PathBuf>,
        opts: LogEngineOptions,
    ) -> Result<(LogEngine, RecoveryReport), LogEngineError> {
        opts.validate()?;
        let disk: Box<dyn Disk> = Box::new(disk);
        let dir = dir.into();
        disk.create_dir_all(&dir)
            .map_err(|e| LogEngineError::io("create_dir_all", &dir, e))?;
        let names = disk
            .list_files(&dir)
            .map_err(|e| LogEngineError::io("list", &dir, e))?;
        let seqs: Vec<u64> = {
            let mut v: Vec<u64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
            v.sort_unstable();
            v
        };
        let mut report = RecoveryReport::default();
        let mut groups: BTreeMap<GroupId, GroupState> = BTreeMap::new();
        let mut segments = BTreeMap::new();
        let mut truncate_to: Option<u64> = None;
        for (i, &seq) in seqs.iter().enumerate() {
            let path = dir.join(segment_file_name(seq));
            let data = disk
                .read_all(&path)
                .map_err(|e| LogEngineError::io("read", &path, e))?;
            let is_last = i + 1 == seqs.len();
            let kept = replay_segment(
                &path,
                seq,
                Bytes::from(data),
                is_last,
                opts.max_record_bytes,
                &mut groups,
                &mut report,
            )?;
            if kept.1 {
                truncate_to = Some(kept.0);
            }
            segments.insert(seq, kept.0);
            report.segments += 1;
        }
        for (group, state) in &groups {
            state
                .check()
                .map_err(|reason| LogEngineError::Inconsistent {
                    group: *group,
                    reason,
                })?;
        }

        // The active segment: the last one (cut if torn), or a new first one.
        let (seq, size) = match segments.last_key_value() {
            Some((seq, size)) => (*seq, *size),
            None => (1, 0),
        };
        let path = dir.join(segment_file_name(seq));
        let mut file = disk
            .open(&path)
            .map_err(|e| LogEngineError::io("open", &path, e))?;
        let mut fsyncs = 0;
        if let Some(len) = truncate_to {
            file.truncate(len)
                .map_err(|e| LogEngineError::io("truncate", &path, e))?;
            file.sync()
                .map_err(|e| LogEngineError::io("fsync", &path, e))?;
            fsyncs += 1;
        }
        if segments.is_empty() {
            disk.sync_dir(&dir)
                .map_err(|e| LogEngineError::io("sync_dir", &dir, e))?;
            segments.insert(seq, 0);
        }
        let engine = LogEngine {
            disk,
            dir,
            opts,
            segments,
            active: Active {
                seq,
                file,
                size,
                unsynced: false,
            },
            groups,
            poisoned: None,
            fsyncs,
        };
        Ok((engine, report))
    }

    pub fn options(&self) -> &LogEngineOptions {
        &self.opts
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn segment_path(&self, seq: u64) -> PathBuf {
        self.dir.join(segment_file_name(seq))
    }

    /// Paths of the segment files, oldest first (the last one is active).
    pub fn segment_files(&self) -> Vec<PathBuf> {
        self.segments
            .keys()
            .map(|s| self.segment_path(*s))
            .collect()
    }

    /// Path of the segment new records go to.
    pub fn active_segment(&self) -> PathBuf {
        self.segment_path(self.active.seq)
    }

    /// File fsyncs this engine performed (writes, syncs, rotations, purges).
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs
    }

    /// Groups with any stored state, ascending.
    pub fn groups(&self) -> Vec<GroupId> {
        self.groups.keys().copied().collect()
    }

    pub fn hard_state(&self, group: GroupId) -> Option<HardState> {
        self.groups
            .get(&group)?
            .hard_state
            .as_ref()
            .map(|(hs, _)| *hs)
    }

    /// The metadata of the last snapshot installed with
    /// [`WriteBatch::install_snapshot`] (or kept by purge's rewrite).
    pub fn snapshot_meta(&self, group: GroupId) -> Option<SnapshotMeta> {
        self.groups
            .get(&group)?
            .snapshot
            .as_ref()
            .map(|(m, _)| m.clone())
    }

    /// Index of the first stored entry (one past the purge / snapshot point;
    /// `last_index + 1` when no entry is stored).
    pub fn first_index(&self, group: GroupId) -> Option<Index> {
        Some(self.groups.get(&group)?.purged + 1)
    }

    /// Index of the last entry of the log (the snapshot's or purge point's
    /// index when no entry is stored after it; 0 for an empty log).
    pub fn last_index(&self, group: GroupId) -> Option<Index> {
        Some(self.groups.get(&group)?.last)
    }

    /// Entries `[lo, hi)` of `group`, read back from the segments and checked.
    pub fn entries(
        &self,
        group: GroupId,
        lo: Index,
        hi: Index,
    ) -> Result<Vec<Entry>, LogEngineError> {
        let empty = GroupState::default();
        let gs = self.groups.get(&group).unwrap_or(&empty);
        if lo >= hi {
            return Ok(Vec::new());
        }
        if lo <= gs.purged || hi > gs.last.saturating_add(1) {
            return Err(LogEngineError::OutOfRange {
                group,
                lo,
                hi,
                first: gs.purged + 1,
                last: gs.last,
            });
        }
        let mut out = Vec::with_capacity(usize::try_from(hi - lo).unwrap_or(0).min(1 << 16));
        let start = gs.runs.partition_point(|r| r.last < lo);
        for run in gs.runs.range(start..) {
            if run.first >= hi {
                break;
            }
            let entries = self.read_run(group, run)?;
            out.extend(
                entries
                    .into_iter()
                    .filter(|e| e.index >= lo.max(run.first) && e.index < hi.min(run.last + 1)),
            );
        }
        if out.len() as u64 != hi - lo {
            return Err(LogEngineError::Inconsistent {
                group,
                reason: format!("read {} entries for [{lo}, {hi})", out.len()),
            });
        }
        Ok(out)
    }

    fn read_run(&self, group: GroupId, run: &Run) -> Result<Vec<Entry>, LogEngineError> {
        let loc = run.loc;
        let path = self.segment_path(loc.seg);
        let corrupt = |reason: String| LogEngineError::Corruption {
            file: path.clone(),
            offset: loc.offset,
            reason,
        };
        let data = self
            .disk
            .read_range(&path, loc.offset, loc.total_len())
            .map_err(|e| LogEngineError::io("read", &path, e))?;
        let parsed = parse_record(&data, 0, self.opts.max_record_bytes).map_err(corrupt)?;
        if parsed.ty != RecordType::Entries || parsed.group != group {
            return Err(corrupt(format!(
                "expected an Entries record of group {group}, found {:?} of group {}",
                parsed.ty, parsed.group
            )));
        }
        let payload = Bytes::from(data).slice(parsed.payload);
        let entries = codec::decode_entries(payload).map_err(|e| corrupt(e.to_string()))?;
        let covers = |i: Index| entries.iter().any(|e| e.index == i);
        if !covers(run.first) || !covers(run.last) {
            return Err(corrupt(format!(
                "record does not hold entries [{}, {}]",
                run.first, run.last
            )));
        }
        Ok(entries)
    }

    fn check_poisoned(&self) -> Result<(), LogEngineError> {
        match &self.poisoned {
            Some(why) => Err(LogEngineError::Poisoned(why.clone())),
            None => Ok(()),
        }
    }

    fn poison(&mut self, e: LogEngineError) -> LogEngineError {
        self.poisoned = Some(e.to_string());
        e
    }

    /// Validate `batch` against the current state and encode it.
    fn encode(&self, batch: &WriteBatch) -> Result<Encoder, LogEngineError> {
        let mut enc = Encoder::new(self.opts.max_record_bytes);
        // (purged, last) per group as the batch goes.
        let mut view: HashMap<GroupId, (Index, Index)> = HashMap::new();
        for (group, op) in &batch.ops {
            let group = *group;
            let (purged, last) = *view.entry(group).or_insert_with(|| {
                self.groups
                    .get(&group)
                    .map_or((0, 0), |g| (g.purged, g.last))
            });
            let invalid = |reason: String| LogEngineError::InvalidWrite { group, reason };
            match op {
                BatchOp::Entries(entries) => {
                    let (Some(first), Some(end)) = (entries.first(), entries.last()) else {
                        continue;
                    };
                    for w in entries.windows(2) {
                        if w[0].index.checked_add(1) != Some(w[1].index) {
                            return Err(invalid(format!(
                                "entries not contiguous: {} follows {}",
                                w[1].index, w[0].index
                            )));
                        }
                    }
                    if end.index > MAX_INDEX {
                        return Err(invalid(format!(
                            "entry index {} exceeds {MAX_INDEX}",
                            end.index
                        )));
                    }
                    if first.index <= purged {
                        return Err(invalid(format!(
                            "entry {} is at or below the purge point {purged}",
                            first.index
                        )));
                    }
                    if first.index > last + 1 {
                        return Err(invalid(format!(
                            "entry {} leaves a gap after the last index {last}",
                            first.index
                        )));
                    }
                    enc.entries(group, entries)?;
                    view.insert(group, (purged, end.index));
                }
                BatchOp::HardState(hs) => enc.hard_state(group, *hs)?,
                BatchOp::InstallSnapshot(meta) => {
                    if meta.last_index > MAX_INDEX {
                        return Err(invalid(format!(
                            "snapshot index {} exceeds {MAX_INDEX}",
                            meta.last_index
                        )));
                    }
                    if meta.last_index < purged {
                        return Err(invalid(format!(
                            "snapshot at {} is older than the purge point {purged}",
                            meta.last_index
                        )));
                    }
                    enc.snapshot(group, meta, true)?;
                    view.insert(group, (meta.last_index, meta.last_index));
                }
                BatchOp::Purge(to) => {
                    if *to <= purged {
                        continue;
                    }
                    if *to > last {
                        return Err(invalid(format!(
                            "purge to {to} is beyond the last index {last}"
                        )));
                    }
                    enc.purge(group, *to, last)?;
                    view.insert(group, (*to, last));
                }
            }
        }
        enc.seal();
        Ok(enc)
    }

    /// Append `batch` (records for any number of groups) with one write call
    /// and, when `sync` (and `sync_writes`), exactly one fsync of the log file
    /// for the whole batch. On success the batch is in the index; with `sync`
    /// it is durable. On error nothing of the batch is in the index; an I/O
    /// error leaves the engine poisoned (reopen to recover).
    pub fn write(&mut self, batch: &WriteBatch, sync: bool) -> Result<(), LogEngineError> {
        self.check_poisoned()?;
        let enc = self.encode(batch)?;
        self.append(enc)?;
        if sync {
            self.sync()?;
        }
        Ok(())
    }

    fn append(&mut self, enc: Encoder) -> Result<(), LogEngineError> {
        if enc.buf.is_empty() {
            return Ok(());
        }
        let len = enc.buf.len() as u64;
        if self.active.size > 0 && self.active.size + len > self.opts.segment_max_bytes {
            self.rotate()?;
        }
        let base = self.active.size;
        if let Err(e) = self.active.file.append(&enc.buf) {
            let path = self.active_segment();
            return Err(self.poison(LogEngineError::io("append", path, e)));
        }
        self.active.size += len;
        self.active.unsynced = true;
        self.segments.insert(self.active.seq, self.active.size);
        let seg = self.active.seq;
        for (group, op, start, payload_len) in enc.records {
            let loc = RecordLoc {
                seg,
                offset: base + start as u64,
                payload_len,
            };
            self.groups.entry(group).or_default().apply(op, loc);
        }
        Ok(())
    }

    /// fsync the active segment if it holds unsynced records (a no-op when
    /// `sync_writes` is false).
    pub fn sync(&mut self) -> Result<(), LogEngineError> {
        self.check_poisoned()?;
        if self.opts.sync_writes {
            self.sync_active()?;
        }
        Ok(())
    }

    fn sync_active(&mut self) -> Result<(), LogEngineError> {
        if !self.active.unsynced {
            return Ok(());
        }
        if let Err(e) = self.active.file.sync() {
            let path = self.active_segment();
            return Err(self.poison(LogEngineError::io("fsync", path, e)));
        }
        self.fsyncs += 1;
        self.active.unsynced = false;
        Ok(())
    }

    /// Start a new segment. The old one is synced first, whatever
    /// `sync_writes` says: only the last segment may end in a torn batch.
    fn rotate(&mut self) -> Result<(), LogEngineError> {
        self.sync_active()?;
        let Some(seq) = self.active.seq.checked_add(1) else {
            let path = self.active_segment();
            let e = std::io::Error::other("segment sequence numbers exhausted");
            return Err(self.poison(LogEngineError::io("rotate", path, e)));
        };
        let path = self.segment_path(seq);
        let file = match self.disk.open(&path) {
            Ok(f) => f,
            Err(e) => return Err(self.poison(LogEngineError::io("create", path, e))),
        };
        if let Err(e) = self.disk.sync_dir(&self.dir) {
            let dir = self.dir.clone();
            return Err(self.poison(LogEngineError::io("sync_dir", dir, e)));
        }
        self.active = Active {
            seq,
            file,
            size: 0,
            unsynced: false,
        };
        self.segments.insert(seq, 0);
        Ok(())
    }

    fn live_segments(&self) -> BTreeSet<u64> {
        let mut live: BTreeSet<u64> = self
            .groups
            .values()
            .flat_map(|g| g.live_records().map(|l| l.seg))
            .collect();
        live.insert(self.active.seq);
        live
    }

    /// Delete every segment no group needs any more, keeping the active one.
    ///
    /// 1. Segments without live entries but with a group's live small records
    ///    (latest hard state, snapshot meta, purge point) get those records
    ///    copied to the active segment (one batch), so an idle group does not
    ///    pin old segments forever.
    /// 2. The active segment is fsynced, whatever `sync_writes` says: every
    ///    record that makes the old ones dead must be durable before they go.
    /// 3. Dead segments are removed and the directory synced.
    ///
    /// Entries are never rewritten: a segment holding one live entry stays.
    pub fn purge(&mut self) -> Result<PurgeReport, LogEngineError> {
        self.check_poisoned()?;
        let mut report = PurgeReport::default();
        let entry_pinned: BTreeSet<u64> = self
            .groups
            .values()
            .flat_map(|g| g.runs.iter().map(|r| r.loc.seg))
            .collect();
        let candidates: BTreeSet<u64> = self
            .segments
            .keys()
            .copied()
            .filter(|s| *s != self.active.seq && !entry_pinned.contains(s))
            .collect();
        if candidates.is_empty() {
            return Ok(report);
        }
        let mut enc = Encoder::new(self.opts.max_record_bytes);
        for (group, gs) in &self.groups {
            if !gs.live_records().any(|l| candidates.contains(&l.seg)) {
                continue;
            }
            if let Some((hs, _)) = &gs.hard_state {
                enc.hard_state(*group, *hs)?;
            }
            if let Some((meta, _)) = &gs.snapshot {
                enc.snapshot(*group, meta, false)?;
            }
            if gs.last_log_rec.is_some() || gs.purge_rec.is_some() {
                enc.purge(*group, gs.purged, gs.last)?;
            }
        }
        report.rewritten_records = enc.records.len();
        enc.seal();
        self.append(enc)?;
        self.sync_active()?;

        let live = self.live_segments();
        for seq in candidates {
            if live.contains(&seq) {
                continue;
            }
            let path = self.segment_path(seq);
            if let Err(e) = self.disk.remove(&path) {
                return Err(self.poison(LogEngineError::io("remove", path, e)));
            }
            self.segments.remove(&seq);
            report.removed.push(path);
        }
        if !report.removed.is_empty()
            && let Err(e) = self.disk.sync_dir(&self.dir)
        {
            let dir = self.dir.clone();
            return Err(self.poison(LogEngineError::io("sync_dir", dir, e)));
        }
        Ok(report)
    }
}

/// Replay one segment into `groups`. Returns the length to keep and whether
/// the file must be cut to it (torn tail).
fn replay_segment(
    path: &Path,
    seq: u64,
    data: Bytes,
    is_last: bool,
    max_payload: u32,
    groups: &mut BTreeMap<GroupId, GroupState>,
    report: &mut RecoveryReport,
) -> Result<(u64, bool), LogEngineError> {
    let corrupt = |offset: usize, reason: String| LogEngineError::Corruption {
        file: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    // Records of the batch being read, applied once its last record is seen.
    let mut pending: Vec<(GroupId, Op, RecordLoc)> = Vec::new();
    let mut batch_start = 0usize;
    let mut off = 0usize;
    let torn_at = loop {
        if off == data.len() {
            if pending.is_empty() {
                break None;
            }
            if !is_last {
                return Err(corrupt(off, "segment ends inside a write batch".into()));
            }
            break Some(batch_start);
        }
        match parse_record(&data, off, max_payload) {
            Ok(rec) => {
                let payload = data.slice(rec.payload.clone());
                let op = decode_op(rec.ty, payload).map_err(|reason| corrupt(off, reason))?;
                let payload_len = rec.payload.len() as u32;
                pending.push((
                    rec.group,
                    op,
                    RecordLoc {
                        seg: seq,
                        offset: off as u64,
                        payload_len,
                    },
                ));
                off += rec.total_len();
                if rec.flags & FLAG_BATCH_END != 0 {
                    for (group, op, loc) in pending.drain(..) {
                        groups.entry(group).or_default().apply(op, loc);
                        report.records += 1;
                        report.bytes += loc.total_len() as u64;
                    }
                    batch_start = off;
                }
            }
            Err(reason) => {
                if is_last && !valid_record_after(&data, off + 1, max_payload) {
                    break Some(batch_start);
                }
                return Err(corrupt(off, reason));
            }
        }
    };
    match torn_at {
        None => Ok((data.len() as u64, false)),
        Some(at) => {
            let cut = (data.len() - at) as u64;
            let partial = u64::from(off < data.len());
            report.truncated_records = pending.len() as u64 + partial;
            report.truncated_bytes = cut;
            report.truncated_at = Some((path.to_path_buf(), at as u64));
            warn!(
                file = %path.display(),
                offset = at,
                truncated_bytes = cut,
                truncated_records = report.truncated_records,
                "log engine: torn tail in the last segment, truncating"
            );
            Ok((at as u64, true))
        }
    }
}
