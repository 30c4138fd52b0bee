//! Hand-written binary encoding of [`rhea_raft::Message`], the unit the peer
//! transport carries.
//!
//! All integers are little-endian and fixed-width; a boolean is one byte, 0
//! or 1. Entries and snapshot metadata reuse the log engine's layouts from
//! [`crate::codec`] (documented byte by byte in `docs/log-engine.md`); the
//! message layout itself is documented in `docs/transport.md`:
//!
//! ```text
//! Message = group u64, from u64, to u64, term u64, kind u8, body
//!  kind  1 PreVote                  last_log_index u64, last_log_term u64
//!  kind  2 PreVoteResponse          granted bool
//!  kind  3 RequestVote              last_log_index u64, last_log_term u64, leader_transfer bool
//!  kind  4 RequestVoteResponse      granted bool
//!  kind  5 AppendEntries            prev_log_index u64, prev_log_term u64, leader_commit u64,
//!                                   send_tick u64, count u32, count x Entry (may be 0)
//!  kind  6 AppendEntriesResponse    success bool, index u64, send_tick u64, has_hint bool,
//!                                   [hint_index u64, hint_term u64]
//!  kind  7 Heartbeat                leader_commit u64, read_seq u64, send_tick u64
//!  kind  8 HeartbeatResponse        read_seq u64, send_tick u64, last_index u64
//!  kind  9 InstallSnapshot          SnapshotMeta, offset u64, total_bytes u64, send_tick u64,
//!                                   len u32, len bytes of data
//!  kind 10 InstallSnapshotResponse  last_index u64, last_term u64, next_offset u64,
//!                                   rejected bool, send_tick u64
//!  kind 11 TimeoutNow               no body
//!  kind 12 ReadIndexRequest         batch_id u64
//!  kind 13 ReadIndexResponse        batch_id u64, result u8, [index u64 when result = 0]
//!                                   result 0 Ok, 1 NotLeader, 2 RetryLater, 3 Busy, 4 Timeout
//! ```
//!
//! The codec carries messages faithfully: it does not judge whether an append
//! is contiguous or a term plausible (the core checks that and counts what it
//! drops). Decoding checks every count and length against the bytes actually
//! left before it allocates, rejects unknown tags, non-boolean booleans,
//! non-canonical sets and trailing bytes, refuses a buffer longer than
//! `max_message_bytes`, and never panics. `Normal` entry payloads and snapshot
//! data are zero-copy slices of the buffer given to [`decode_message`].

use bytes::Bytes;
use rhea_raft::{Message, MessageBody, ReadIndexFailure};
use thiserror::Error;

use crate::codec::{self, CodecError, Reader};

/// Why a message could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MessageCodecError {
    /// The bytes are not a valid message.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The message is larger than the configured `max_message_bytes`.
    #[error("message of {bytes} bytes exceeds max_message_bytes = {limit}")]
    TooLarge { bytes: usize, limit: usize },
}

/// Size of the fixed header every message starts with: group, from, to, term
/// (u64 each) and the kind byte.
pub const MESSAGE_HEADER_BYTES: usize = 8 * 4 + 1;

/// Smallest encoded entry (a Blank): term u64, index u64, kind u8.
const MIN_ENTRY_BYTES: usize = 8 + 8 + 1;

const KIND_PRE_VOTE: u8 = 1;
const KIND_PRE_VOTE_RESPONSE: u8 = 2;
const KIND_REQUEST_VOTE: u8 = 3;
const KIND_REQUEST_VOTE_RESPONSE: u8 = 4;
const KIND_APPEND_ENTRIES: u8 = 5;
const KIND_APPEND_ENTRIES_RESPONSE: u8 = 6;
const KIND_HEARTBEAT: u8 = 7;
const KIND_HEARTBEAT_RESPONSE: u8 = 8;
const KIND_INSTALL_SNAPSHOT: u8 = 9;
const KIND_INSTALL_SNAPSHOT_RESPONSE: u8 = 10;
const KIND_TIMEOUT_NOW: u8 = 11;
const KIND_READ_INDEX_REQUEST: u8 = 12;
const KIND_READ_INDEX_RESPONSE: u8 = 13;

const READ_OK: u8 = 0;
const READ_NOT_LEADER: u8 = 1;
const READ_RETRY_LATER: u8 = 2;
const READ_BUSY: u8 = 3;
const READ_TIMEOUT: u8 = 4;

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bool(out: &mut Vec<u8>, v: bool) {
    out.push(u8::from(v));
}

/// A length written as u32. Callers refuse messages over `max_message_bytes`
/// (itself at most `u32::MAX`) before encoding, so saturation is only a guard:
/// a saturated length can never decode as a valid message.
fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
}

/// Append the encoding of `msg` to `out`; returns the number of bytes written
/// (always [`message_encoded_len`]`(msg)`).
///
/// Encoding cannot fail, but a message over the receiver's
/// `max_message_bytes` will be refused: check [`message_encoded_len`] first.
pub fn encode_message(msg: &Message, out: &mut Vec<u8>) -> usize {
    let start = out.len();
    put_u64(out, msg.group);
    put_u64(out, msg.from);
    put_u64(out, msg.to);
    put_u64(out, msg.term);
    match &msg.body {
        MessageBody::PreVote {
            last_log_index,
            last_log_term,
        } => {
            out.push(KIND_PRE_VOTE);
            put_u64(out, *last_log_index);
            put_u64(out, *last_log_term);
        }
        MessageBody::PreVoteResponse { granted } => {
            out.push(KIND_PRE_VOTE_RESPONSE);
            put_bool(out, *granted);
        }
        MessageBody::RequestVote {
            last_log_index,
            last_log_term,
            leader_transfer,
        } => {
            out.push(KIND_REQUEST_VOTE);
            put_u64(out, *last_log_index);
            put_u64(out, *last_log_term);
            put_bool(out, *leader_transfer);
        }
        MessageBody::RequestVoteResponse { granted } => {
            out.push(KIND_REQUEST_VOTE_RESPONSE);
            put_bool(out, *granted);
        }
        MessageBody::AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit,
            send_tick,
        } => {
            out.push(KIND_APPEND_ENTRIES);
            put_u64(out, *prev_log_index);
            put_u64(out, *prev_log_term);
            put_u64(out, *leader_commit);
            put_u64(out, *send_tick);
            // count u32 then each entry: the log engine's entry-run layout
            // (which, unlike a stored run, may be empty here).
            codec::encode_entries(entries, out);
        }
        MessageBody::AppendEntriesResponse {
            success,
            index,
            reject_hint,
            send_tick,
        } => {
            out.push(KIND_APPEND_ENTRIES_RESPONSE);
            put_bool(out, *success);
            put_u64(out, *index);
            put_u64(out, *send_tick);
            match reject_hint {
                Some((hint_index, hint_term)) => {
                    put_bool(out, true);
                    put_u64(out, *hint_index);
                    put_u64(out, *hint_term);
                }
                None => put_bool(out, false),
            }
        }
        MessageBody::Heartbeat {
            leader_commit,
            read_seq,
            send_tick,
        } => {
            out.push(KIND_HEARTBEAT);
            put_u64(out, *leader_commit);
            put_u64(out, *read_seq);
            put_u64(out, *send_tick);
        }
        MessageBody::HeartbeatResponse {
            read_seq,
            send_tick,
            last_index,
        } => {
            out.push(KIND_HEARTBEAT_RESPONSE);
            put_u64(out, *read_seq);
            put_u64(out, *send_tick);
            put_u64(out, *last_index);
        }
        MessageBody::InstallSnapshot {
            meta,
            offset,
            total_bytes,
            data,
            send_tick,
        } => {
            out.push(KIND_INSTALL_SNAPSHOT);
            codec::encode_snapshot_meta(meta, out);
            put_u64(out, *offset);
            put_u64(out, *total_bytes);
            put_u64(out, *send_tick);
            put_len(out, data.len());
            out.extend_from_slice(data);
        }
        MessageBody::InstallSnapshotResponse {
            last_index,
            last_term,
            next_offset,
            rejected,
            send_tick,
        } => {
            out.push(KIND_INSTALL_SNAPSHOT_RESPONSE);
            put_u64(out, *last_index);
            put_u64(out, *last_term);
            put_u64(out, *next_offset);
            put_bool(out, *rejected);
            put_u64(out, *send_tick);
        }
        MessageBody::TimeoutNow => out.push(KIND_TIMEOUT_NOW),
        MessageBody::ReadIndexRequest { batch_id } => {
            out.push(KIND_READ_INDEX_REQUEST);
            put_u64(out, *batch_id);
        }
        MessageBody::ReadIndexResponse { batch_id, result } => {
            out.push(KIND_READ_INDEX_RESPONSE);
            put_u64(out, *batch_id);
            match result {
                Ok(index) => {
                    out.push(READ_OK);
                    put_u64(out, *index);
                }
                Err(ReadIndexFailure::NotLeader) => out.push(READ_NOT_LEADER),
                Err(ReadIndexFailure::RetryLater) => out.push(READ_RETRY_LATER),
                Err(ReadIndexFailure::Busy) => out.push(READ_BUSY),
                Err(ReadIndexFailure::Timeout) => out.push(READ_TIMEOUT),
            }
        }
    }
    let written = out.len() - start;
    debug_assert_eq!(written, message_encoded_len(msg));
    written
}

/// Exact size of [`encode_message`]'s output, computed without encoding
/// (the transport checks it against its limits before queueing a message).
pub fn message_encoded_len(msg: &Message) -> usize {
    MESSAGE_HEADER_BYTES
        + match &msg.body {
            MessageBody::PreVote { .. } => 16,
            MessageBody::PreVoteResponse { .. } => 1,
            MessageBody::RequestVote { .. } => 17,
            MessageBody::RequestVoteResponse { .. } => 1,
            MessageBody::AppendEntries { entries, .. } => {
                32 + 4 + entries.iter().map(codec::entry_encoded_len).sum::<usize>()
            }
            MessageBody::AppendEntriesResponse { reject_hint, .. } => {
                1 + 8 + 8 + 1 + if reject_hint.is_some() { 16 } else { 0 }
            }
            MessageBody::Heartbeat { .. } => 24,
            MessageBody::HeartbeatResponse { .. } => 24,
            MessageBody::InstallSnapshot { meta, data, .. } => {
                // SnapshotMeta = last_index, last_term, Membership; a Membership
                // is exactly a membership entry's body.
                16 + membership_len(&meta.membership) + 24 + 4 + data.len()
            }
            MessageBody::InstallSnapshotResponse { .. } => 8 + 8 + 8 + 1 + 8,
            MessageBody::TimeoutNow => 0,
            MessageBody::ReadIndexRequest { .. } => 8,
            MessageBody::ReadIndexResponse { result, .. } => {
                8 + 1 + if result.is_ok() { 8 } else { 0 }
            }
        }
}

/// Encoded size of [`codec::encode_membership`]'s output (the layout in
/// `docs/log-engine.md`); pinned against the encoder by the round-trip tests.
fn membership_len(m: &rhea_raft::Membership) -> usize {
    let set = |n: usize| 4 + 8 * n;
    set(m.voters.len())
        + 1
        + m.old_voters.as_ref().map_or(0, |o| set(o.len()))
        + set(m.learners.len())
        + 4
        + 12 * m.priorities.len()
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

fn bool_at(r: &mut Reader, what: &'static str) -> Result<bool, CodecError> {
    let at = r.position();
    match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        tag => Err(CodecError::BadTag { what, tag, at }),
    }
}

/// An entry count, checked against the bytes left before anything is allocated.
fn entry_count(r: &mut Reader) -> Result<usize, CodecError> {
    let at = r.position();
    let count = r.u32()? as usize;
    if count.saturating_mul(MIN_ENTRY_BYTES) > r.remaining() {
        return Err(CodecError::CountTooLarge {
            what: "entry",
            count: count as u64,
            left: r.remaining(),
            at,
        });
    }
    Ok(count)
}

/// Decode one message occupying all of `buf`. A buffer longer than
/// `max_message_bytes` is refused before any decoding.
pub fn decode_message(buf: Bytes, max_message_bytes: usize) -> Result<Message, MessageCodecError> {
    if buf.len() > max_message_bytes {
        return Err(MessageCodecError::TooLarge {
            bytes: buf.len(),
            limit: max_message_bytes,
        });
    }
    let mut r = Reader::new(buf);
    let msg = read_message(&mut r)?;
    r.finish()?;
    Ok(msg)
}

fn read_message(r: &mut Reader) -> Result<Message, CodecError> {
    let group = r.u64()?;
    let from = r.u64()?;
    let to = r.u64()?;
    let term = r.u64()?;
    let at = r.position();
    let body = match r.u8()? {
        KIND_PRE_VOTE => MessageBody::PreVote {
            last_log_index: r.u64()?,
            last_log_term: r.u64()?,
        },
        KIND_PRE_VOTE_RESPONSE => MessageBody::PreVoteResponse {
            granted: bool_at(r, "granted")?,
        },
        KIND_REQUEST_VOTE => MessageBody::RequestVote {
            last_log_index: r.u64()?,
            last_log_term: r.u64()?,
            leader_transfer: bool_at(r, "leader_transfer")?,
        },
        KIND_REQUEST_VOTE_RESPONSE => MessageBody::RequestVoteResponse {
            granted: bool_at(r, "granted")?,
        },
        KIND_APPEND_ENTRIES => {
            let prev_log_index = r.u64()?;
            let prev_log_term = r.u64()?;
            let leader_commit = r.u64()?;
            let send_tick = r.u64()?;
            let n = entry_count(r)?;
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                entries.push(r.entry()?);
            }
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                send_tick,
            }
        }
        KIND_APPEND_ENTRIES_RESPONSE => {
            let success = bool_at(r, "success")?;
            let index = r.u64()?;
            let send_tick = r.u64()?;
            let reject_hint = if bool_at(r, "reject hint presence")? {
                Some((r.u64()?, r.u64()?))
            } else {
                None
            };
            MessageBody::AppendEntriesResponse {
                success,
                index,
                reject_hint,
                send_tick,
            }
        }
        KIND_HEARTBEAT => MessageBody::Heartbeat {
            leader_commit: r.u64()?,
            read_seq: r.u64()?,
            send_tick: r.u64()?,
        },
        KIND_HEARTBEAT_RESPONSE => MessageBody::HeartbeatResponse {
            read_seq: r.u64()?,
            send_tick: r.u64()?,
            last_index: r.u64()?,
        },
        KIND_INSTALL_SNAPSHOT => {
            let meta = r.snapshot_meta()?;
            let offset = r.u64()?;
            let total_bytes = r.u64()?;
            let send_tick = r.u64()?;
            let len = r.u32()? as usize;
            // `bytes` checks `len` against what is left; the slice is zero-copy.
            let data = r.bytes(len)?;
            MessageBody::InstallSnapshot {
                meta,
                offset,
                total_bytes,
                data,
                send_tick,
            }
        }
        KIND_INSTALL_SNAPSHOT_RESPONSE => MessageBody::InstallSnapshotResponse {
            last_index: r.u64()?,
            last_term: r.u64()?,
            next_offset: r.u64()?,
            rejected: bool_at(r, "rejected")?,
            send_tick: r.u64()?,
        },
        KIND_TIMEOUT_NOW => MessageBody::TimeoutNow,
        KIND_READ_INDEX_REQUEST => MessageBody::ReadIndexRequest { batch_id: r.u64()? },
        KIND_READ_INDEX_RESPONSE => {
            let batch_id = r.u64()?;
            let at = r.position();
            let result = match r.u8()? {
                READ_OK => Ok(r.u64()?),
                READ_NOT_LEADER => Err(ReadIndexFailure::NotLeader),
                READ_RETRY_LATER => Err(ReadIndexFailure::RetryLater),
                READ_BUSY => Err(ReadIndexFailure::Busy),
                READ_TIMEOUT => Err(ReadIndexFailure::Timeout),
                tag => {
                    return Err(CodecError::BadTag {
                        what: "read index result",
                        tag,
                        at,
                    });
                }
            };
            MessageBody::ReadIndexResponse { batch_id, result }
        }
        tag => {
            return Err(CodecError::BadTag {
                what: "message kind",
                tag,
                at,
            });
        }
    };
    Ok(Message {
        group,
        from,
        to,
        term,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhea_raft::{Entry, EntryPayload, Membership, SnapshotMeta, SplitMix64};

    const LIMIT: usize = 1 << 20;

    fn joint_membership() -> Membership {
        Membership {
            voters: [1, 2, 3].into(),
            old_voters: Some([1, 2, 4].into()),
            learners: [7, 9].into(),
            priorities: [(1, 10), (2, -1), (3, 0)].into(),
        }
    }

    fn msg(body: MessageBody) -> Message {
        Message {
            group: 0xDEAD_BEEF_0000_0042,
            from: 3,
            to: u64::MAX,
            term: 17,
            body,
        }
    }

    /// One message of every kind, with every payload kind and option.
    pub(crate) fn every_variant() -> Vec<Message> {
        let entries = vec![
            Entry {
                term: 4,
                index: 10,
                payload: EntryPayload::Blank,
            },
            Entry {
                term: 4,
                index: 11,
                payload: EntryPayload::Normal(Bytes::from_static(b"put k v")),
            },
            Entry {
                term: 4,
                index: 12,
                payload: EntryPayload::Normal(Bytes::new()),
            },
            Entry {
                term: 5,
                index: 13,
                payload: EntryPayload::Membership(joint_membership()),
            },
            Entry {
                term: 5,
                index: 14,
                payload: EntryPayload::Membership(Membership::default()),
            },
        ];
        let mut out = vec![
            msg(MessageBody::PreVote {
                last_log_index: 9,
                last_log_term: 3,
            }),
            msg(MessageBody::PreVoteResponse { granted: true }),
            msg(MessageBody::PreVoteResponse { granted: false }),
            msg(MessageBody::RequestVote {
                last_log_index: u64::MAX,
                last_log_term: 0,
                leader_transfer: true,
            }),
            msg(MessageBody::RequestVote {
                last_log_index: 1,
                last_log_term: 1,
                leader_transfer: false,
            }),
            msg(MessageBody::RequestVoteResponse { granted: true }),
            msg(MessageBody::AppendEntries {
                prev_log_index: 9,
                prev_log_term: 3,
                entries: entries.clone(),
                leader_commit: 8,
                send_tick: 1234,
            }),
            msg(MessageBody::AppendEntries {
                prev_log_index: 9,
                prev_log_term: 3,
                entries: Vec::new(),
                leader_commit: 8,
                send_tick: 0,
            }),
            msg(MessageBody::AppendEntriesResponse {
                success: true,
                index: 14,
                reject_hint: None,
                send_tick: 1234,
            }),
            msg(MessageBody::AppendEntriesResponse {
                success: false,
                index: 9,
                reject_hint: Some((5, 2)),
                send_tick: 1234,
            }),
            msg(MessageBody::Heartbeat {
                leader_commit: 8,
                read_seq: 77,
                send_tick: 99,
            }),
            msg(MessageBody::HeartbeatResponse {
                read_seq: 77,
                send_tick: 99,
                last_index: 14,
            }),
            msg(MessageBody::InstallSnapshot {
                meta: SnapshotMeta {
                    last_index: 100,
                    last_term: 6,
                    membership: joint_membership(),
                },
                offset: 4096,
                total_bytes: 10_000,
                data: Bytes::from(vec![0xAB; 300]),
                send_tick: 55,
            }),
            msg(MessageBody::InstallSnapshot {
                meta: SnapshotMeta {
                    last_index: 100,
                    last_term: 6,
                    membership: Membership::new([1, 2, 3]),
                },
                offset: 0,
                total_bytes: 0,
                data: Bytes::new(),
                send_tick: 56,
            }),
            msg(MessageBody::InstallSnapshotResponse {
                last_index: 100,
                last_term: 6,
                next_offset: 4396,
                rejected: false,
                send_tick: 55,
            }),
            msg(MessageBody::InstallSnapshotResponse {
                last_index: 100,
                last_term: 6,
                next_offset: 0,
                rejected: true,
                send_tick: 55,
            }),
            msg(MessageBody::TimeoutNow),
            msg(MessageBody::ReadIndexRequest { batch_id: 31 }),
            msg(MessageBody::ReadIndexResponse {
                batch_id: 31,
                result: Ok(14),
            }),
        ];
        for failure in [
            ReadIndexFailure::NotLeader,
            ReadIndexFailure::RetryLater,
            ReadIndexFailure::Busy,
            ReadIndexFailure::Timeout,
        ] {
            out.push(msg(MessageBody::ReadIndexResponse {
                batch_id: 32,
                result: Err(failure),
            }));
        }
        out
    }

    fn encode(m: &Message) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_message(m, &mut buf);
        buf
    }

    #[test]
    fn every_variant_round_trips_with_exact_length() {
        let all = every_variant();
        let mut kinds: Vec<&str> = all.iter().map(|m| m.body.kind()).collect();
        kinds.dedup();
        assert_eq!(kinds.len(), 13, "every MessageBody variant is covered");
        for m in &all {
            let buf = encode(m);
            assert_eq!(buf.len(), message_encoded_len(m), "{}", m.body.kind());
            let back = decode_message(Bytes::from(buf), LIMIT).expect("decodes");
            assert_eq!(&back, m);
        }
    }

    #[test]
    fn header_layout_is_pinned() {
        let m = Message {
            group: 1,
            from: 2,
            to: 3,
            term: 4,
            body: MessageBody::ReadIndexRequest { batch_id: 5 },
        };
        let mut expected = Vec::new();
        for v in [1u64, 2, 3, 4] {
            expected.extend_from_slice(&v.to_le_bytes());
        }
        expected.push(12);
        expected.extend_from_slice(&5u64.to_le_bytes());
        assert_eq!(encode(&m), expected);
    }

    #[test]
    fn every_truncation_is_an_error() {
        for m in every_variant() {
            let buf = encode(&m);
            for cut in 0..buf.len() {
                let r = decode_message(Bytes::copy_from_slice(&buf[..cut]), LIMIT);
                assert!(r.is_err(), "{} cut at {cut} decoded", m.body.kind());
            }
            let mut longer = buf.clone();
            longer.push(0);
            assert_eq!(
                decode_message(Bytes::from(longer), LIMIT),
                Err(MessageCodecError::Codec(CodecError::TrailingBytes(1)))
            );
        }
    }

    #[test]
    fn limit_is_enforced_before_decoding() {
        let m = msg(MessageBody::TimeoutNow);
        let buf = Bytes::from(encode(&m));
        let len = buf.len();
        assert_eq!(decode_message(buf.clone(), len), Ok(m));
        assert_eq!(
            decode_message(buf, len - 1),
            Err(MessageCodecError::TooLarge {
                bytes: len,
                limit: len - 1
            })
        );
    }

    #[test]
    fn bad_tags_and_booleans_are_refused() {
        let mut buf = encode(&msg(MessageBody::TimeoutNow));
        buf[32] = 14;
        assert!(matches!(
            decode_message(Bytes::from(buf), LIMIT),
            Err(MessageCodecError::Codec(CodecError::BadTag {
                what: "message kind",
                ..
            }))
        ));
        let mut buf = encode(&msg(MessageBody::PreVoteResponse { granted: true }));
        *buf.last_mut().expect("non-empty") = 2;
        assert!(decode_message(Bytes::from(buf), LIMIT).is_err());
        let mut buf = encode(&msg(MessageBody::ReadIndexResponse {
            batch_id: 1,
            result: Err(ReadIndexFailure::Busy),
        }));
        *buf.last_mut().expect("non-empty") = 5;
        assert!(decode_message(Bytes::from(buf), LIMIT).is_err());
    }

    #[test]
    fn huge_counts_are_refused_without_allocating() {
        // An AppendEntries claiming u32::MAX entries in a tiny buffer.
        let mut buf = encode(&msg(MessageBody::AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: Vec::new(),
            leader_commit: 0,
            send_tick: 0,
        }));
        let n = buf.len();
        buf[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_message(Bytes::from(buf), LIMIT),
            Err(MessageCodecError::Codec(CodecError::CountTooLarge { .. }))
        ));
        // A snapshot chunk claiming more data than there is.
        let mut buf = encode(&msg(MessageBody::InstallSnapshot {
            meta: SnapshotMeta {
                last_index: 1,
                last_term: 1,
                membership: Membership::new([1]),
            },
            offset: 0,
            total_bytes: 4,
            data: Bytes::from_static(b"abcd"),
            send_tick: 0,
        }));
        let n = buf.len();
        buf[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_message(Bytes::from(buf), LIMIT),
            Err(MessageCodecError::Codec(CodecError::Truncated { .. }))
        ));
    }

    #[test]
    fn payloads_are_zero_copy_slices() {
        let m = msg(MessageBody::InstallSnapshot {
            meta: SnapshotMeta {
                last_index: 1,
                last_term: 1,
                membership: Membership::new([1]),
            },
            offset: 0,
            total_bytes: 3,
            data: Bytes::from_static(b"xyz"),
            send_tick: 0,
        });
        let buf = Bytes::from(encode(&m));
        let range = buf.as_ptr_range();
        let back = decode_message(buf.clone(), LIMIT).expect("decodes");
        let MessageBody::InstallSnapshot { data, .. } = back.body else {
            panic!("kind changed");
        };
        assert!(range.contains(&data.as_ptr()));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = SplitMix64::new(0x5EED);
        let valid: Vec<Vec<u8>> = every_variant().iter().map(encode).collect();
        let mut ok = 0;
        for round in 0..30_000u64 {
            let buf: Vec<u8> = if round % 2 == 0 {
                let len = rng.range(0, 120) as usize;
                let kind = rng.range(0, 16) as u8;
                (0..len)
                    .map(|i| {
                        if i == 32 {
                            kind
                        } else if rng.chance(1, 2) {
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
            let limit = rng.range(0, 200) as usize;
            ok += usize::from(decode_message(Bytes::from(buf), limit).is_ok());
        }
        // Some mutations (a flipped term bit) stay valid: the fuzzer reached the end.
        assert!(ok > 0);
    }
}
