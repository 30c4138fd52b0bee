//! Frames: the unit written to a connection after the handshake.
//!
//! ```text
//! Frame   = length u32, crc u32, payload (length bytes)
//! payload = count u32 (>= 1), count x (len u32, len bytes of one Message)
//! ```
//!
//! `length` counts the payload only and is at most `max_frame_bytes`; `crc` is
//! the CRC-32C of the payload. Layout tables: `docs/transport.md`.

use bytes::Bytes;
use rhea_raft::Message;
use thiserror::Error;

use crate::codec::{CodecError, Reader};
use crate::message_codec::{self, MESSAGE_HEADER_BYTES, MessageCodecError};

/// Size of a frame header: payload length u32, payload CRC-32C u32.
pub const FRAME_HEADER_BYTES: usize = 8;
/// The message count at the start of every payload.
pub const FRAME_COUNT_BYTES: usize = 4;
/// The length prefix of each message in a payload.
pub const MESSAGE_LEN_BYTES: usize = 4;

/// Why a frame was refused. Any of these closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("frame length {len} exceeds max_frame_bytes = {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("frame length {len} is shorter than its message count")]
    TooShort { len: usize },
    #[error("frame checksum mismatch: header {expected:#010x}, payload {actual:#010x}")]
    BadChecksum { expected: u32, actual: u32 },
    #[error("frame carries no message")]
    Empty,
    #[error("frame claims {count} messages but has {left} bytes left")]
    CountTooLarge { count: usize, left: usize },
    #[error("message {index} of the frame: {source}")]
    Message {
        index: usize,
        #[source]
        source: MessageCodecError,
    },
    #[error("frame payload: {0}")]
    Payload(#[from] CodecError),
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: usize,
    pub crc: u32,
}

/// Parse a header, refusing a length over `max_frame_bytes` (before anything
/// is allocated for the payload) or too short to hold the message count.
pub fn parse_header(
    h: &[u8; FRAME_HEADER_BYTES],
    max_frame_bytes: usize,
) -> Result<FrameHeader, FrameError> {
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if len > max_frame_bytes {
        return Err(FrameError::TooLarge {
            len,
            limit: max_frame_bytes,
        });
    }
    if len < FRAME_COUNT_BYTES {
        return Err(FrameError::TooShort { len });
    }
    Ok(FrameHeader { len, crc })
}

/// Check the payload's checksum and decode its messages. All or nothing: a
/// frame with one bad message yields no message.
pub fn decode_payload(
    header: FrameHeader,
    payload: Bytes,
    max_message_bytes: usize,
) -> Result<Vec<Message>, FrameError> {
    let actual = crc32c::crc32c(&payload);
    if actual != header.crc {
        return Err(FrameError::BadChecksum {
            expected: header.crc,
            actual,
        });
    }
    let mut r = Reader::new(payload);
    let count = r.u32()? as usize;
    if count == 0 {
        return Err(FrameError::Empty);
    }
    let min_message = MESSAGE_LEN_BYTES + MESSAGE_HEADER_BYTES;
    if count.saturating_mul(min_message) > r.remaining() {
        return Err(FrameError::CountTooLarge {
            count,
            left: r.remaining(),
        });
    }
    let mut out = Vec::with_capacity(count);
    for index in 0..count {
        let len = r.u32()? as usize;
        if len > max_message_bytes {
            return Err(FrameError::Message {
                index,
                source: MessageCodecError::TooLarge {
                    bytes: len,
                    limit: max_message_bytes,
                },
            });
        }
        let bytes = r.bytes(len)?;
        let msg = message_codec::decode_message(bytes, max_message_bytes)
            .map_err(|source| FrameError::Message { index, source })?;
        out.push(msg);
    }
    r.finish()?;
    Ok(out)
}

/// Builds one frame in a reusable buffer.
pub struct FrameBuilder {
    buf: Vec<u8>,
    count: usize,
    max_frame_bytes: usize,
}

impl FrameBuilder {
    pub fn new(max_frame_bytes: usize) -> Self {
        let mut b = FrameBuilder {
            buf: Vec::new(),
            count: 0,
            max_frame_bytes,
        };
        b.clear();
        b
    }

    /// Start a new, empty frame (keeps the buffer's allocation).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.buf.resize(FRAME_HEADER_BYTES + FRAME_COUNT_BYTES, 0);
        self.count = 0;
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// Payload bytes so far.
    pub fn payload_len(&self) -> usize {
        self.buf.len() - FRAME_HEADER_BYTES
    }

    /// True when a message of `encoded_len` bytes still fits under
    /// `max_frame_bytes`. The first message always fits (options guarantee
    /// `max_frame_bytes >= max_message_bytes + 8`).
    pub fn fits(&self, encoded_len: usize) -> bool {
        self.count == 0
            || self.payload_len() + MESSAGE_LEN_BYTES + encoded_len <= self.max_frame_bytes
    }

    /// Append `msg`, whose encoded length is `encoded_len`.
    pub fn push(&mut self, msg: &Message, encoded_len: usize) {
        let len = u32::try_from(encoded_len).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(&len.to_le_bytes());
        let written = message_codec::encode_message(msg, &mut self.buf);
        debug_assert_eq!(written, encoded_len);
        self.count += 1;
    }

    /// Fill in the count, length and checksum; returns the whole frame.
    pub fn finish(&mut self) -> &[u8] {
        let count = u32::try_from(self.count).unwrap_or(u32::MAX);
        self.buf[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + FRAME_COUNT_BYTES]
            .copy_from_slice(&count.to_le_bytes());
        let len = u32::try_from(self.payload_len()).unwrap_or(u32::MAX);
        let crc = crc32c::crc32c(&self.buf[FRAME_HEADER_BYTES..]);
        self.buf[0..4].copy_from_slice(&len.to_le_bytes());
        self.buf[4..8].copy_from_slice(&crc.to_le_bytes());
        &self.buf
    }
}

/// Encode `messages` as one frame.
#[cfg(test)]
fn encode_frame(messages: &[Message]) -> Vec<u8> {
    let mut b = FrameBuilder::new(usize::MAX);
    for m in messages {
        b.push(m, message_codec::message_encoded_len(m));
    }
    b.finish().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rhea_raft::{Entry, EntryPayload, MessageBody, SplitMix64};

    fn heartbeat(group: u64) -> Message {
        Message {
            group,
            from: 1,
            to: 2,
            term: 3,
            body: MessageBody::Heartbeat {
                leader_commit: 4,
                read_seq: 5,
                send_tick: 6,
            },
        }
    }

    fn append(group: u64, payload_bytes: usize) -> Message {
        Message {
            group,
            from: 1,
            to: 2,
            term: 3,
            body: MessageBody::AppendEntries {
                prev_log_index: 0,
                prev_log_term: 0,
                entries: vec![Entry {
                    term: 3,
                    index: 1,
                    payload: EntryPayload::Normal(vec![7; payload_bytes].into()),
                }],
                leader_commit: 0,
                send_tick: 0,
            },
        }
    }

    fn split(frame: &[u8], max_frame_bytes: usize) -> Result<Vec<Message>, FrameError> {
        let mut h = [0u8; FRAME_HEADER_BYTES];
        h.copy_from_slice(&frame[..FRAME_HEADER_BYTES]);
        let header = parse_header(&h, max_frame_bytes)?;
        assert_eq!(header.len, frame.len() - FRAME_HEADER_BYTES);
        decode_payload(
            header,
            Bytes::copy_from_slice(&frame[FRAME_HEADER_BYTES..]),
            1 << 20,
        )
    }

    #[test]
    fn frame_round_trip_and_layout() {
        let msgs: Vec<Message> = (0..5).map(heartbeat).chain([append(9, 100)]).collect();
        let frame = encode_frame(&msgs);
        // count at offset 8, first message length at offset 12.
        assert_eq!(&frame[8..12], &6u32.to_le_bytes());
        let first = message_codec::message_encoded_len(&msgs[0]) as u32;
        assert_eq!(&frame[12..16], &first.to_le_bytes());
        assert_eq!(split(&frame, 1 << 20), Ok(msgs));
    }

    #[test]
    fn builder_respects_max_frame_bytes() {
        let max = 1000;
        let mut b = FrameBuilder::new(max);
        let m = append(1, 200);
        let len = message_codec::message_encoded_len(&m);
        let mut n = 0;
        while b.fits(len) {
            b.push(&m, len);
            n += 1;
        }
        assert!(n >= 2);
        assert!(b.payload_len() <= max);
        assert!(b.payload_len() + MESSAGE_LEN_BYTES + len > max);
        let frame = b.finish().to_vec();
        assert_eq!(split(&frame, max).map(|v| v.len()), Ok(n));
        // A single message always fits an empty frame.
        b.clear();
        assert!(b.fits(usize::MAX / 2));
    }

    #[test]
    fn header_checks_come_before_allocation() {
        let mut h = [0u8; 8];
        h[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            parse_header(&h, 1 << 20),
            Err(FrameError::TooLarge { .. })
        ));
        h[..4].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(
            parse_header(&h, 1 << 20),
            Err(FrameError::TooShort { len: 3 })
        );
    }

    #[test]
    fn bad_frames_are_refused() {
        let frame = encode_frame(&[heartbeat(1), heartbeat(2)]);
        // Flipped payload bit: checksum.
        let mut f = frame.clone();
        f[20] ^= 0x10;
        assert!(matches!(
            split(&f, 1 << 20),
            Err(FrameError::BadChecksum { .. })
        ));
        // Zero count with a valid checksum.
        let empty = FrameBuilder::new(100).finish().to_vec();
        assert_eq!(split(&empty, 100), Err(FrameError::Empty));
        // Oversize message length inside a frame with a valid checksum.
        let mut payload = Vec::new();
        payload.extend_from_slice(&1u32.to_le_bytes());
        payload.extend_from_slice(&(2u32 << 20).to_le_bytes());
        payload.extend_from_slice(&[0; 64]);
        let header = FrameHeader {
            len: payload.len(),
            crc: crc32c::crc32c(&payload),
        };
        assert!(matches!(
            decode_payload(header, payload.into(), 1 << 20),
            Err(FrameError::Message { index: 0, .. })
        ));
    }

    #[test]
    fn random_payloads_never_panic() {
        let mut rng = SplitMix64::new(99);
        let valid = encode_frame(&[heartbeat(1), append(2, 10)]);
        for _ in 0..5_000 {
            let mut payload = valid[FRAME_HEADER_BYTES..].to_vec();
            for _ in 0..rng.range(1, 4) {
                match rng.range(0, 3) {
                    0 if !payload.is_empty() => {
                        let at = rng.range(0, payload.len() as u64) as usize;
                        payload[at] ^= 1 << rng.range(0, 8);
                    }
                    1 => payload.truncate(rng.range(0, payload.len() as u64) as usize),
                    _ => payload.push(rng.next_u64() as u8),
                }
            }
            // A valid checksum so decoding goes past it.
            let header = FrameHeader {
                len: payload.len(),
                crc: crc32c::crc32c(&payload),
            };
            let _ = decode_payload(header, payload.into(), 1 << 20);
        }
    }
}
