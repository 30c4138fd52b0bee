//! Hand-written binary encoding of the raft types the log engine stores.
//!
//! All integers are little-endian and fixed-width. The layouts (documented
//! byte by byte in `docs/log-engine.md`):
//!
//! ```text
//! Entry        = term u64, index u64, kind u8, body
//!                kind 0 Blank:      no body
//!                kind 1 Normal:     len u32, len bytes
//!                kind 2 Membership: Membership
//! Membership   = voters Set, has_old u8 (0|1), [old_voters Set], learners Set,
//!                priorities: count u32, count x (node u64, priority i32)
//! Set          = count u32, count x node u64 (strictly increasing)
//! HardState    = term u64, voted_for u64, commit u64
//! SnapshotMeta = last_index u64, last_term u64, Membership
//! ```
//!
//! Decoding checks every length against the bytes actually left before it
//! allocates, rejects unknown tags, non-canonical sets and trailing bytes, and
//! never panics: any input gives a value or a [`CodecError`].

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use rhea_raft::{Entry, EntryPayload, HardState, Membership, NodeId, SnapshotMeta};
use thiserror::Error;

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    #[error("truncated: needed {needed} more bytes at offset {at}")]
    Truncated { at: usize, needed: usize },
    #[error("unknown {what} tag {tag} at offset {at}")]
    BadTag {
        what: &'static str,
        tag: u8,
        at: usize,
    },
    #[error("{what} count {count} at offset {at} exceeds the {left} bytes left")]
    CountTooLarge {
        what: &'static str,
        count: u64,
        left: usize,
        at: usize,
    },
    #[error("set of node ids at offset {at} is not strictly increasing")]
    UnsortedSet { at: usize },
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    #[error("entries are not contiguous: index {found} follows {prev}")]
    NotContiguous { prev: u64, found: u64 },
    #[error("empty entry run")]
    EmptyRun,
    #[error("{0}")]
    Invalid(&'static str),
}

const KIND_BLANK: u8 = 0;
const KIND_NORMAL: u8 = 1;
const KIND_MEMBERSHIP: u8 = 2;

/// Smallest encoded entry (a Blank): term, index, kind.
const MIN_ENTRY_BYTES: usize = 8 + 8 + 1;

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Lengths written as u32. Callers bound sizes long before 4 GiB
/// (`max_record_bytes`), so saturating is only a guard: an oversized value
/// then fails the record-size check instead of wrapping silently.
fn put_len(out: &mut Vec<u8>, len: usize) {
    put_u32(out, u32::try_from(len).unwrap_or(u32::MAX));
}

fn put_set(out: &mut Vec<u8>, set: &BTreeSet<NodeId>) {
    put_len(out, set.len());
    for id in set {
        put_u64(out, *id);
    }
}

/// Append the encoding of `m` to `out`.
pub fn encode_membership(m: &Membership, out: &mut Vec<u8>) {
    put_set(out, &m.voters);
    match &m.old_voters {
        Some(old) => {
            out.push(1);
            put_set(out, old);
        }
        None => out.push(0),
    }
    put_set(out, &m.learners);
    put_len(out, m.priorities.len());
    for (id, prio) in &m.priorities {
        put_u64(out, *id);
        out.extend_from_slice(&prio.to_le_bytes());
    }
}

/// Append the encoding of `e` to `out`.
pub fn encode_entry(e: &Entry, out: &mut Vec<u8>) {
    put_u64(out, e.term);
    put_u64(out, e.index);
    match &e.payload {
        EntryPayload::Blank => out.push(KIND_BLANK),
        EntryPayload::Normal(data) => {
            out.push(KIND_NORMAL);
            put_len(out, data.len());
            out.extend_from_slice(data);
        }
        EntryPayload::Membership(m) => {
            out.push(KIND_MEMBERSHIP);
            encode_membership(m, out);
        }
    }
}

/// Exact size of [`encode_entry`]'s output.
pub fn entry_encoded_len(e: &Entry) -> usize {
    MIN_ENTRY_BYTES
        + match &e.payload {
            EntryPayload::Blank => 0,
            EntryPayload::Normal(data) => 4 + data.len(),
            EntryPayload::Membership(m) => membership_encoded_len(m),
        }
}

fn membership_encoded_len(m: &Membership) -> usize {
    let set = |s: &BTreeSet<NodeId>| 4 + 8 * s.len();
    set(&m.voters)
        + 1
        + m.old_voters.as_ref().map_or(0, set)
        + set(&m.learners)
        + 4
        + 12 * m.priorities.len()
}

/// A run of contiguous entries: count u32, then each entry.
pub fn encode_entries(entries: &[Entry], out: &mut Vec<u8>) {
    put_len(out, entries.len());
    for e in entries {
        encode_entry(e, out);
    }
}

pub fn encode_hard_state(hs: &HardState, out: &mut Vec<u8>) {
    put_u64(out, hs.term);
    put_u64(out, hs.voted_for);
    put_u64(out, hs.commit);
}

pub fn encode_snapshot_meta(meta: &SnapshotMeta, out: &mut Vec<u8>) {
    put_u64(out, meta.last_index);
    put_u64(out, meta.last_term);
    encode_membership(&meta.membership, out);
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

/// A cursor over a [`Bytes`] buffer; `Normal` payloads are zero-copy slices of it.
pub struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    pub fn new(buf: Bytes) -> Reader {
        Reader { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Error unless every byte was consumed.
    pub fn finish(&self) -> Result<(), CodecError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(CodecError::TrailingBytes(n)),
        }
    }

    fn need(&self, n: usize) -> Result<(), CodecError> {
        if self.remaining() < n {
            return Err(CodecError::Truncated {
                at: self.pos,
                needed: n - self.remaining(),
            });
        }
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        self.need(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn i32(&mut self) -> Result<i32, CodecError> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn bytes(&mut self, len: usize) -> Result<Bytes, CodecError> {
        self.need(len)?;
        let b = self.buf.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(b)
    }

    /// A count of items of at least `min_item_bytes` each, checked against the
    /// bytes left so a corrupt count cannot trigger a huge allocation.
    fn count(&mut self, what: &'static str, min_item_bytes: usize) -> Result<usize, CodecError> {
        let at = self.pos;
        let count = self.u32()? as usize;
        if count.saturating_mul(min_item_bytes) > self.remaining() {
            return Err(CodecError::CountTooLarge {
                what,
                count: count as u64,
                left: self.remaining(),
                at,
            });
        }
        Ok(count)
    }

    fn set(&mut self, what: &'static str) -> Result<BTreeSet<NodeId>, CodecError> {
        let at = self.pos;
        let n = self.count(what, 8)?;
        let mut set = BTreeSet::new();
        let mut prev: Option<u64> = None;
        for _ in 0..n {
            let id = self.u64()?;
            if prev.is_some_and(|p| p >= id) {
                return Err(CodecError::UnsortedSet { at });
            }
            prev = Some(id);
            set.insert(id);
        }
        Ok(set)
    }

    pub fn membership(&mut self) -> Result<Membership, CodecError> {
        let voters = self.set("voter")?;
        let at = self.pos;
        let old_voters = match self.u8()? {
            0 => None,
            1 => Some(self.set("old voter")?),
            tag => {
                return Err(CodecError::BadTag {
                    what: "old-voters presence",
                    tag,
                    at,
                });
            }
        };
        let learners = self.set("learner")?;
        let at = self.pos;
        let n = self.count("priority", 12)?;
        let mut priorities = BTreeMap::new();
        let mut prev: Option<u64> = None;
        for _ in 0..n {
            let id = self.u64()?;
            if prev.is_some_and(|p| p >= id) {
                return Err(CodecError::UnsortedSet { at });
            }
            prev = Some(id);
            priorities.insert(id, self.i32()?);
        }
        Ok(Membership {
            voters,
            old_voters,
            learners,
            priorities,
        })
    }

    pub fn entry(&mut self) -> Result<Entry, CodecError> {
        let term = self.u64()?;
        let index = self.u64()?;
        let at = self.pos;
        let payload = match self.u8()? {
            KIND_BLANK => EntryPayload::Blank,
            KIND_NORMAL => {
                let len = self.u32()? as usize;
                EntryPayload::Normal(self.bytes(len)?)
            }
            KIND_MEMBERSHIP => EntryPayload::Membership(self.membership()?),
            tag => {
                return Err(CodecError::BadTag {
                    what: "entry kind",
                    tag,
                    at,
                });
            }
        };
        Ok(Entry {
            term,
            index,
            payload,
        })
    }

    pub fn hard_state(&mut self) -> Result<HardState, CodecError> {
        Ok(HardState {
            term: self.u64()?,
            voted_for: self.u64()?,
            commit: self.u64()?,
        })
    }

    pub fn snapshot_meta(&mut self) -> Result<SnapshotMeta, CodecError> {
        Ok(SnapshotMeta {
            last_index: self.u64()?,
            last_term: self.u64()?,
            membership: self.membership()?,
        })
    }
}

/// Decode one entry occupying all of `buf`.
pub fn decode_entry(buf: Bytes) -> Result<Entry, CodecError> {
    let mut r = Reader::new(buf);
    let e = r.entry()?;
    r.finish()?;
    Ok(e)
}

/// Decode a run written by [`encode_entries`] occupying all of `buf`: at least
/// one entry, indices contiguous.
pub fn decode_entries(buf: Bytes) -> Result<Vec<Entry>, CodecError> {
    let mut r = Reader::new(buf);
    let n = r.count("entry", MIN_ENTRY_BYTES)?;
    if n == 0 {
        return Err(CodecError::EmptyRun);
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let e = r.entry()?;
        if let Some(prev) = out.last().map(|p: &Entry| p.index)
            && prev.checked_add(1) != Some(e.index)
        {
            return Err(CodecError::NotContiguous {
                prev,
                found: e.index,
            });
        }
        out.push(e);
    }
    r.finish()?;
    Ok(out)
}

pub fn decode_hard_state(buf: Bytes) -> Result<HardState, CodecError> {
    let mut r = Reader::new(buf);
    let hs = r.hard_state()?;
    r.finish()?;
    Ok(hs)
}

pub fn decode_snapshot_meta(buf: Bytes) -> Result<SnapshotMeta, CodecError> {
    let mut r = Reader::new(buf);
    let m = r.snapshot_meta()?;
    r.finish()?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhea_raft::SplitMix64;

    fn membership(rng: &mut SplitMix64) -> Membership {
        let mut set =
            |n: u64| -> BTreeSet<u64> { (0..rng.range(0, n)).map(|i| i * 3 + 1).collect() };
        let voters = set(6);
        let old_voters = if voters.len() % 2 == 0 {
            Some(set(5))
        } else {
            None
        };
        let learners = set(3);
        Membership {
            priorities: voters.iter().map(|v| (*v, *v as i32 - 2)).collect(),
            voters,
            old_voters,
            learners,
        }
    }

    fn random_entry(rng: &mut SplitMix64, index: u64) -> Entry {
        let payload = match rng.range(0, 3) {
            0 => EntryPayload::Blank,
            1 => {
                let len = rng.range(0, 40) as usize;
                EntryPayload::Normal(
                    (0..len)
                        .map(|_| rng.next_u64() as u8)
                        .collect::<Vec<_>>()
                        .into(),
                )
            }
            _ => EntryPayload::Membership(membership(rng)),
        };
        Entry {
            term: rng.range(1, 1 << 40),
            index,
            payload,
        }
    }

    #[test]
    fn round_trip_every_kind() {
        let mut rng = SplitMix64::new(7);
        for i in 0..300 {
            let first = rng.range(1, 1 << 50);
            let entries: Vec<Entry> = (0..rng.range(1, 6))
                .map(|k| random_entry(&mut rng, first + k))
                .collect();
            let mut buf = Vec::new();
            encode_entries(&entries, &mut buf);
            assert_eq!(
                buf.len(),
                4 + entries.iter().map(entry_encoded_len).sum::<usize>(),
                "case {i}"
            );
            assert_eq!(decode_entries(buf.into()).expect("decodes"), entries);

            let e = random_entry(&mut rng, first);
            let mut one = Vec::new();
            encode_entry(&e, &mut one);
            assert_eq!(decode_entry(one.into()).expect("decodes"), e);
        }
        let hs = HardState {
            term: 9,
            voted_for: 3,
            commit: u64::MAX,
        };
        let mut buf = Vec::new();
        encode_hard_state(&hs, &mut buf);
        assert_eq!(decode_hard_state(buf.into()).expect("decodes"), hs);
        let meta = SnapshotMeta {
            last_index: 100,
            last_term: 7,
            membership: membership(&mut rng),
        };
        let mut buf = Vec::new();
        encode_snapshot_meta(&meta, &mut buf);
        assert_eq!(decode_snapshot_meta(buf.into()).expect("decodes"), meta);
    }

    #[test]
    fn malformed_inputs_are_errors() {
        let mut buf = Vec::new();
        encode_entries(
            &[
                Entry {
                    term: 1,
                    index: 5,
                    payload: EntryPayload::Blank,
                },
                Entry {
                    term: 1,
                    index: 7,
                    payload: EntryPayload::Blank,
                },
            ],
            &mut buf,
        );
        assert_eq!(
            decode_entries(buf.into()),
            Err(CodecError::NotContiguous { prev: 5, found: 7 })
        );
        assert_eq!(
            decode_entries(Bytes::from_static(&[0, 0, 0, 0])),
            Err(CodecError::EmptyRun)
        );
        // A count claiming four billion entries in a 4-byte buffer.
        assert!(matches!(
            decode_entries(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff])),
            Err(CodecError::CountTooLarge { .. })
        ));
        // A Normal payload claiming 4 GiB.
        let mut e = Vec::new();
        put_u64(&mut e, 1);
        put_u64(&mut e, 1);
        e.push(KIND_NORMAL);
        put_u32(&mut e, u32::MAX);
        assert!(matches!(
            decode_entry(e.into()),
            Err(CodecError::Truncated { .. })
        ));
        let mut hs = Vec::new();
        encode_hard_state(&HardState::default(), &mut hs);
        hs.push(0);
        assert_eq!(
            decode_hard_state(hs.into()),
            Err(CodecError::TrailingBytes(1))
        );
    }

    /// Random bytes and mutated valid encodings never panic the decoders.
    #[test]
    fn fuzz_decoders_never_panic() {
        let mut rng = SplitMix64::new(42);
        let mut valid = Vec::new();
        for i in 0..50 {
            let entries: Vec<Entry> = (0..rng.range(1, 4))
                .map(|k| random_entry(&mut rng, 10 + i + k))
                .collect();
            let mut buf = Vec::new();
            encode_entries(&entries, &mut buf);
            valid.push(buf);
        }
        let mut ok = 0;
        for round in 0..20_000u64 {
            let buf: Vec<u8> = if round % 2 == 0 {
                let len = rng.range(0, 80) as usize;
                // Small values make counts and tags plausible more often.
                (0..len)
                    .map(|_| {
                        if rng.chance(1, 2) {
                            rng.range(0, 4) as u8
                        } else {
                            rng.next_u64() as u8
                        }
                    })
                    .collect()
            } else {
                let mut b = valid[rng.range(0, valid.len() as u64) as usize].clone();
                for _ in 0..rng.range(1, 4) {
                    match rng.range(0, 3) {
                        0 if !b.is_empty() => {
                            let at = rng.range(0, b.len() as u64) as usize;
                            b[at] ^= 1 << rng.range(0, 8);
                        }
                        1 => b.truncate(rng.range(0, b.len() as u64 + 1) as usize),
                        _ => b.push(rng.next_u64() as u8),
                    }
                }
                b
            };
            let bytes = Bytes::from(buf);
            ok += usize::from(decode_entries(bytes.clone()).is_ok());
            let _ = decode_entry(bytes.clone());
            let _ = decode_hard_state(bytes.clone());
            let _ = decode_snapshot_meta(bytes.clone());
            let _ = Reader::new(bytes).membership();
        }
        // Some mutations (a flipped payload byte) stay valid: the fuzzer reached the end.
        assert!(ok > 0);
    }
}
