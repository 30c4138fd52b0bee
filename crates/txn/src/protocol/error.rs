//! The codec's one error type.
//!
//! Every error is fatal for the connection it came from: the frame boundary
//! may be known (see [`decode_header`](super::decode_header)), but Seata's own
//! decoder closes the channel on any decode failure and Rhea's TC does the
//! same. The messages are meant for a log line: they name the field, the
//! value seen and the limit or the expected value.

use thiserror::Error;

/// What can go wrong while decoding or encoding Seata protocol v1.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// One of the first two bytes is not Seata's magic code `0xda 0xda`.
    #[error("bad magic byte 0x{found:02x} at offset {offset}: a Seata frame starts with 0xdada")]
    BadMagic { offset: usize, found: u8 },

    /// The protocol version byte is not 1 (version 0 is the pre-0.7 protocol,
    /// which this codec does not speak).
    #[error("unsupported protocol version {0}: only Seata protocol v1 is supported")]
    UnsupportedVersion(u8),

    /// The header's full length is above the decoder's `max_frame_bytes`.
    /// Reported as soon as the length field is read, before the frame arrives.
    #[error("frame full length {declared} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge { declared: u32, limit: usize },

    /// The header's full length cannot even hold the 16-byte header.
    #[error("frame full length {0} bytes is less than the 16-byte header")]
    FrameTooShort(u32),

    /// The head length is below 16, above the full length, or above 32767
    /// (Java reads it as a signed short).
    #[error(
        "bad head length {head_length} bytes (full length {full_length} bytes): it must be at least 16, \
         at most the full length and at most 32767"
    )]
    BadHeadLength { head_length: u16, full_length: u32 },

    /// The frame's message type byte is not 0..=4.
    #[error("unknown frame message type {0} (0 request, 1 response, 2 oneway, 3/4 heartbeat)")]
    UnknownFrameType(u8),

    /// The frame's codec byte is not SEATA (0x01): the client was configured
    /// with another serializer (protobuf, kryo, fst, hessian, jackson).
    #[error(
        "unsupported codec 0x{codec:02x} in frame {request_id}: only the SEATA codec (0x01) is supported"
    )]
    UnsupportedCodec { codec: u8, request_id: u32 },

    /// The frame's compressor byte is not NONE (0): the client was configured
    /// with `transport.compressor` other than `none`.
    #[error(
        "unsupported compressor {compressor} in frame {request_id}: only uncompressed bodies (compressor 0) are supported"
    )]
    UnsupportedCompressor { compressor: u8, request_id: u32 },

    /// The head map is longer than the decoder's `max_head_map_bytes`.
    #[error("head map of {bytes} bytes exceeds the limit of {limit} bytes")]
    HeadMapTooLarge { bytes: usize, limit: usize },

    /// The head map has more entries than the decoder's `max_head_map_entries`.
    #[error("head map has more than {limit} entries")]
    HeadMapTooManyEntries { limit: usize },

    /// The head map is malformed (a null key or a repeated key).
    #[error("bad head map: {0}")]
    BadHeadMap(&'static str),

    /// A heartbeat frame (message type 3 or 4) carries body bytes.
    #[error("heartbeat frame carries a {0}-byte body; heartbeats have none")]
    HeartbeatWithBody(usize),

    /// A request, response or oneway frame has no body.
    #[error("frame of message type {0} has no body")]
    EmptyBody(u8),

    /// The body's type code is not a message of the SEATA codec (this
    /// includes 120, the heartbeat, which only exists as a frame type).
    #[error("unknown or unsupported message type code {0}")]
    UnknownMessageType(i16),

    /// A known message appears where it may not: a batch inside a batch, a
    /// response inside a `MergedWarpMessage`, a request inside a
    /// `MergeResultMessage` or `BatchResultMessage`.
    #[error("message type code {type_code} is not allowed {context}")]
    UnexpectedMessageType {
        type_code: i16,
        context: &'static str,
    },

    /// The body ends inside a field.
    #[error("truncated message: {field} needs {needed} bytes, {remaining} left")]
    Truncated {
        field: &'static str,
        needed: usize,
        remaining: usize,
    },

    /// A length or count field is negative.
    #[error("negative length {length} for {field}")]
    NegativeLength { field: &'static str, length: i32 },

    /// A field holds a value outside its enum or range.
    #[error("invalid value {value} for {field}")]
    InvalidValue { field: &'static str, value: i64 },

    /// Bytes are left over after the last field.
    #[error("{count} unexpected trailing bytes after {context}")]
    TrailingBytes { context: &'static str, count: usize },

    /// A batch message holds more messages than allowed (the decoder's
    /// `max_batch_messages`, or 32767 when encoding: the count is a short).
    #[error("{count} messages in one {context} exceed the limit of {limit}")]
    TooManyMessages {
        context: &'static str,
        count: usize,
        limit: usize,
    },

    /// A batch's content length field disagrees with the bytes that follow.
    #[error("batch declares {declared} bytes of content but {actual} bytes follow")]
    BatchLengthMismatch { declared: i32, actual: usize },

    /// A batch's message ids do not pair up with its messages.
    #[error("{context} has {msgs} messages but {msg_ids} message ids")]
    MsgIdsMismatch {
        context: &'static str,
        msgs: usize,
        msg_ids: usize,
    },

    /// Encoding: a string does not fit its length prefix (32767 bytes for a
    /// short prefix, 2^31-1 for an int prefix).
    #[error("{field} is {len} bytes, more than the {max} bytes its length prefix allows")]
    FieldTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },

    /// Encoding: the frame would exceed the 8 MiB a Seata peer accepts.
    #[error(
        "encoded frame would be {len} bytes, more than the {limit}-byte frame limit of Seata peers"
    )]
    EncodedFrameTooLarge { len: usize, limit: usize },
}
