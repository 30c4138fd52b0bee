//! Protocol v1 frames (Seata's `ProtocolV1Encoder` / `ProtocolV1Decoder`,
//! named `ProtocolEncoderV1` / `ProtocolDecoderV1` in 2.x).
//!
//! ```text
//! offset  size  field
//!      0     2  magic 0xda 0xda
//!      2     1  protocol version (1)
//!      3     4  full length: header + head map + body, in bytes
//!      7     2  head length: header + head map, in bytes (>= 16)
//!      9     1  message type: 0 request, 1 response, 2 oneway,
//!                             3 heartbeat request, 4 heartbeat response
//!     10     1  codec (serializer): 0x01 SEATA
//!     11     1  compressor: 0 NONE
//!     12     4  request id
//!     16     .  head map (head length - 16 bytes)
//!      .     .  body (full length - head length bytes; none for heartbeats)
//! ```
//!
//! All integers are big-endian.

use super::codec::{decode_body, encode_body};
use super::error::ProtocolError;
use super::head_map::{HeadMap, decode_head_map, encode_head_map};
use super::message::Message;
use super::wire::{patch, put_u8, put_u32};

/// The first two bytes of every frame.
pub const MAGIC: [u8; 2] = [0xda, 0xda];
/// The only protocol version spoken (Seata 0.7.0 and later).
pub const PROTOCOL_VERSION: u8 = 1;
/// Size of the fixed header, in bytes.
pub const HEADER_BYTES: usize = 16;
/// Codec byte of the SEATA serializer, the only one supported.
pub const CODEC_SEATA: u8 = 0x01;
/// Compressor byte of "no compression", the only one supported.
pub const COMPRESSOR_NONE: u8 = 0;
/// The frame size limit of Seata's decoder (`MAX_FRAME_LENGTH`), in bytes:
/// the default of [`FrameLimits::max_frame_bytes`] and the most
/// [`encode_frame`] writes, as a Seata peer drops longer frames.
pub const SEATA_MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;
/// Largest head length, in bytes, Seata can read (a signed short), so
/// header plus head map.
pub const MAX_HEAD_LENGTH_BYTES: usize = i16::MAX as usize;
/// Largest number of messages in one batch message: the count is a short.
pub const SEATA_MAX_BATCH_MESSAGES: usize = i16::MAX as usize;

/// Frame message type byte: request expecting a response.
pub const MSGTYPE_REQUEST_SYNC: u8 = 0;
/// Frame message type byte: response.
pub const MSGTYPE_RESPONSE: u8 = 1;
/// Frame message type byte: request expecting no response.
pub const MSGTYPE_REQUEST_ONEWAY: u8 = 2;
/// Frame message type byte: heartbeat request (Java `HeartbeatMessage.PING`).
pub const MSGTYPE_HEARTBEAT_REQUEST: u8 = 3;
/// Frame message type byte: heartbeat response (Java `HeartbeatMessage.PONG`).
pub const MSGTYPE_HEARTBEAT_RESPONSE: u8 = 4;

/// What the decoder accepts from a peer. Each bound is checked as soon as
/// the field declaring it is read, before the data it announces arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest full length (header + head map + body) in bytes. Default
    /// 8 MiB, Seata's own limit.
    pub max_frame_bytes: usize,
    /// Largest head map in bytes (the head length minus 16). Default
    /// 16 KiB. Whatever this says, a head length over 32767 bytes is
    /// rejected: Java reads it as a signed short.
    pub max_head_map_bytes: usize,
    /// Most entries in one head map. Default 128.
    pub max_head_map_entries: usize,
    /// Most messages in one `MergedWarpMessage`, `MergeResultMessage` or
    /// `BatchResultMessage`. Default 32767, the most the short count allows.
    pub max_batch_messages: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_frame_bytes: SEATA_MAX_FRAME_BYTES,
            max_head_map_bytes: 16 * 1024,
            max_head_map_entries: 128,
            max_batch_messages: SEATA_MAX_BATCH_MESSAGES,
        }
    }
}

/// The 16-byte header, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Header + head map + body, in bytes.
    pub full_length: u32,
    /// Header + head map, in bytes.
    pub head_length: u16,
    /// One of the `MSGTYPE_*` constants.
    pub message_type: u8,
    /// Always [`CODEC_SEATA`] once validated.
    pub codec: u8,
    /// Always [`COMPRESSOR_NONE`] once validated.
    pub compressor: u8,
    pub request_id: u32,
}

/// What a frame carries; the variant is the frame's message type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameBody {
    /// Type 0: a request whose response carries the same request id
    /// (including 1.2.0 clients' `MergedWarpMessage`).
    Request(Message),
    /// Type 1: a response to the request with the same id.
    Response(Message),
    /// Type 2: a request expecting no response of its own: the TC's
    /// `UndoLogDeleteRequest`, and clients' `MergedWarpMessage` since 1.3.0
    /// (answered nevertheless, by a response with the same request id).
    Oneway(Message),
    /// Type 3, no body: Java's `HeartbeatMessage.PING`.
    HeartbeatRequest,
    /// Type 4, no body: Java's `HeartbeatMessage.PONG`, echoing the ping's
    /// request id.
    HeartbeatResponse,
}

impl FrameBody {
    /// The frame message type byte.
    pub const fn message_type(&self) -> u8 {
        match self {
            FrameBody::Request(_) => MSGTYPE_REQUEST_SYNC,
            FrameBody::Response(_) => MSGTYPE_RESPONSE,
            FrameBody::Oneway(_) => MSGTYPE_REQUEST_ONEWAY,
            FrameBody::HeartbeatRequest => MSGTYPE_HEARTBEAT_REQUEST,
            FrameBody::HeartbeatResponse => MSGTYPE_HEARTBEAT_RESPONSE,
        }
    }

    /// The message, unless this is a heartbeat.
    pub const fn message(&self) -> Option<&Message> {
        match self {
            FrameBody::Request(m) | FrameBody::Response(m) | FrameBody::Oneway(m) => Some(m),
            FrameBody::HeartbeatRequest | FrameBody::HeartbeatResponse => None,
        }
    }
}

/// One protocol v1 frame with the SEATA codec and no compression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Java's `RpcMessage.id` (a positive `int` from the sender's counter).
    pub request_id: u32,
    /// Usually empty: Seata's clients send none by default.
    pub head_map: HeadMap,
    pub body: FrameBody,
}

impl Frame {
    /// A frame with an empty head map.
    pub fn new(request_id: u32, body: FrameBody) -> Self {
        Frame {
            request_id,
            head_map: HeadMap::new(),
            body,
        }
    }
}

fn be_u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    <[u8; 4]>::try_from(bytes).ok().map(u32::from_be_bytes)
}

fn be_u16_at(buf: &[u8], at: usize) -> Option<u16> {
    let bytes = buf.get(at..at.checked_add(2)?)?;
    <[u8; 2]>::try_from(bytes).ok().map(u16::from_be_bytes)
}

/// Validates the header at the start of `buf`.
///
/// `Ok(None)` means `buf` is a valid prefix of a header: read more. Each
/// field is checked as soon as its bytes are present, so a wrong magic byte
/// fails on that byte and an oversized full length fails after 7 bytes.
/// Checks, in order: magic, version, full length (>= 16, <= limit), head
/// length (>= 16, <= full length, <= 32767, head map <= limit), message type
/// (0..=4; a heartbeat must have no body and any other frame a body), then,
/// once the request id is there, codec (SEATA) and compressor (NONE).
pub fn decode_header(
    buf: &[u8],
    limits: &FrameLimits,
) -> Result<Option<FrameHeader>, ProtocolError> {
    for (offset, expected) in MAGIC.iter().enumerate() {
        match buf.get(offset) {
            None => return Ok(None),
            Some(&found) if found != *expected => {
                return Err(ProtocolError::BadMagic { offset, found });
            }
            Some(_) => {}
        }
    }
    match buf.get(2) {
        None => return Ok(None),
        Some(&version) if version != PROTOCOL_VERSION => {
            return Err(ProtocolError::UnsupportedVersion(version));
        }
        Some(_) => {}
    }
    let Some(full_length) = be_u32_at(buf, 3) else {
        return Ok(None);
    };
    let full_bytes = usize::try_from(full_length).unwrap_or(usize::MAX);
    if full_bytes > limits.max_frame_bytes {
        return Err(ProtocolError::FrameTooLarge {
            declared: full_length,
            limit: limits.max_frame_bytes,
        });
    }
    if full_bytes < HEADER_BYTES {
        return Err(ProtocolError::FrameTooShort(full_length));
    }
    let Some(head_length) = be_u16_at(buf, 7) else {
        return Ok(None);
    };
    if usize::from(head_length) < HEADER_BYTES
        || u32::from(head_length) > full_length
        || usize::from(head_length) > MAX_HEAD_LENGTH_BYTES
    {
        return Err(ProtocolError::BadHeadLength {
            head_length,
            full_length,
        });
    }
    let head_map_bytes = usize::from(head_length).saturating_sub(HEADER_BYTES);
    if head_map_bytes > limits.max_head_map_bytes {
        return Err(ProtocolError::HeadMapTooLarge {
            bytes: head_map_bytes,
            limit: limits.max_head_map_bytes,
        });
    }
    let Some(&message_type) = buf.get(9) else {
        return Ok(None);
    };
    let body_bytes = full_length.saturating_sub(u32::from(head_length));
    match message_type {
        MSGTYPE_HEARTBEAT_REQUEST | MSGTYPE_HEARTBEAT_RESPONSE if body_bytes > 0 => {
            return Err(ProtocolError::HeartbeatWithBody(
                usize::try_from(body_bytes).unwrap_or(usize::MAX),
            ));
        }
        MSGTYPE_HEARTBEAT_REQUEST | MSGTYPE_HEARTBEAT_RESPONSE => {}
        MSGTYPE_REQUEST_SYNC | MSGTYPE_RESPONSE | MSGTYPE_REQUEST_ONEWAY if body_bytes == 0 => {
            return Err(ProtocolError::EmptyBody(message_type));
        }
        MSGTYPE_REQUEST_SYNC | MSGTYPE_RESPONSE | MSGTYPE_REQUEST_ONEWAY => {}
        other => return Err(ProtocolError::UnknownFrameType(other)),
    }
    let (Some(&codec), Some(&compressor), Some(request_id)) =
        (buf.get(10), buf.get(11), be_u32_at(buf, 12))
    else {
        return Ok(None);
    };
    if codec != CODEC_SEATA {
        return Err(ProtocolError::UnsupportedCodec { codec, request_id });
    }
    if compressor != COMPRESSOR_NONE {
        return Err(ProtocolError::UnsupportedCompressor {
            compressor,
            request_id,
        });
    }
    Ok(Some(FrameHeader {
        full_length,
        head_length,
        message_type,
        codec,
        compressor,
        request_id,
    }))
}

/// Decodes the frame at the start of `buf`.
///
/// * `Ok(None)`: `buf` is a prefix of a frame that is valid so far; call
///   again with more bytes. A prefix of a valid frame never errors.
/// * `Ok(Some((frame, n)))`: a frame was decoded from `buf[..n]`; the bytes
///   after it belong to the next frame.
/// * `Err(_)`: the stream is not valid Seata protocol v1 (see
///   [`ProtocolError`]); close the connection.
///
/// Never panics, never copies an incomplete frame, and allocates only for
/// data present in a complete frame of at most `limits.max_frame_bytes`.
pub fn decode_frame(
    buf: &[u8],
    limits: &FrameLimits,
) -> Result<Option<(Frame, usize)>, ProtocolError> {
    let Some(header) = decode_header(buf, limits)? else {
        return Ok(None);
    };
    let bad_head = ProtocolError::BadHeadLength {
        head_length: header.head_length,
        full_length: header.full_length,
    };
    let full_length = usize::try_from(header.full_length).map_err(|_| bad_head.clone())?;
    let Some(frame) = buf.get(..full_length) else {
        return Ok(None);
    };
    let head_length = usize::from(header.head_length);
    let head_map_bytes = frame
        .get(HEADER_BYTES..head_length)
        .ok_or(bad_head.clone())?;
    let body_bytes = frame.get(head_length..).ok_or(bad_head)?;
    let head_map = decode_head_map(head_map_bytes, limits)?;
    let body = match header.message_type {
        MSGTYPE_HEARTBEAT_REQUEST => FrameBody::HeartbeatRequest,
        MSGTYPE_HEARTBEAT_RESPONSE => FrameBody::HeartbeatResponse,
        MSGTYPE_REQUEST_SYNC => FrameBody::Request(decode_body(body_bytes, limits)?),
        MSGTYPE_RESPONSE => FrameBody::Response(decode_body(body_bytes, limits)?),
        MSGTYPE_REQUEST_ONEWAY => FrameBody::Oneway(decode_body(body_bytes, limits)?),
        other => return Err(ProtocolError::UnknownFrameType(other)),
    };
    let frame = Frame {
        request_id: header.request_id,
        head_map,
        body,
    };
    Ok(Some((frame, full_length)))
}

/// Appends `frame`, encoded as Seata's `ProtocolV1Encoder` would, to `out`.
///
/// Fails, leaving `out` as it was, when the frame cannot be read by a Seata
/// peer: a string longer than its length prefix allows, a head length over
/// 32767 bytes, a frame over 8 MiB, or a malformed batch (see
/// [`encode_body`]).
pub fn encode_frame(frame: &Frame, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    let start = out.len();
    let result = encode_frame_at(frame, out, start);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn encode_frame_at(frame: &Frame, out: &mut Vec<u8>, start: usize) -> Result<(), ProtocolError> {
    out.extend_from_slice(&MAGIC);
    put_u8(out, PROTOCOL_VERSION);
    // Full length and head length, patched below.
    out.extend_from_slice(&[0; 6]);
    put_u8(out, frame.body.message_type());
    put_u8(out, CODEC_SEATA);
    put_u8(out, COMPRESSOR_NONE);
    put_u32(out, frame.request_id);
    encode_head_map(&frame.head_map, out)?;
    let head_length = out.len().saturating_sub(start);
    let head_length = u16::try_from(head_length)
        .ok()
        .filter(|&n| usize::from(n) <= MAX_HEAD_LENGTH_BYTES)
        .ok_or(ProtocolError::FieldTooLong {
            field: "head map",
            len: head_length.saturating_sub(HEADER_BYTES),
            max: MAX_HEAD_LENGTH_BYTES - HEADER_BYTES,
        })?;
    if let Some(msg) = frame.body.message() {
        encode_body(msg, out)?;
    }
    let full_length = out.len().saturating_sub(start);
    let too_large = ProtocolError::EncodedFrameTooLarge {
        len: full_length,
        limit: SEATA_MAX_FRAME_BYTES,
    };
    if full_length > SEATA_MAX_FRAME_BYTES {
        return Err(too_large);
    }
    let full_length = u32::try_from(full_length).map_err(|_| too_large)?;
    patch(out, start + 3, &full_length.to_be_bytes());
    patch(out, start + 7, &head_length.to_be_bytes());
    Ok(())
}
