//! Seata wire protocol v1 with the SEATA codec, byte-exact with Seata's Java
//! implementation (1.2.0 through 1.8.0; 2.x too, except that 2.1 renumbered
//! the `TransactionExceptionCode`s from 19 on) and with seata-go.
//!
//! * [`decode_frame`] / [`encode_frame`]: whole frames (16-byte header, head
//!   map, body), streaming: decoding a prefix of a frame answers `Ok(None)`.
//! * [`decode_body`] / [`encode_body`]: a message body alone.
//! * [`Message`] and its structs: every message a TC exchanges with TMs and
//!   RMs, with Seata's field names.
//!
//! Only the SEATA codec (0x01) without compression is supported; anything
//! else is refused with [`ProtocolError::UnsupportedCodec`] or
//! [`ProtocolError::UnsupportedCompressor`]. Decoding never panics and
//! allocates only for data present in a complete frame within
//! [`FrameLimits`]. The byte layouts, the version differences and where each
//! test vector comes from are in `docs/seata-protocol.md`.

mod codec;
mod error;
mod frame;
mod head_map;
mod message;
mod wire;

#[cfg(test)]
mod tests;

pub use codec::{decode_body, encode_body};
pub use error::ProtocolError;
pub use frame::{
    CODEC_SEATA, COMPRESSOR_NONE, Frame, FrameBody, FrameHeader, FrameLimits, HEADER_BYTES, MAGIC,
    MAX_HEAD_LENGTH_BYTES, MSGTYPE_HEARTBEAT_REQUEST, MSGTYPE_HEARTBEAT_RESPONSE,
    MSGTYPE_REQUEST_ONEWAY, MSGTYPE_REQUEST_SYNC, MSGTYPE_RESPONSE, PROTOCOL_VERSION,
    SEATA_MAX_BATCH_MESSAGES, SEATA_MAX_FRAME_BYTES, decode_frame, decode_header, encode_frame,
};
pub use head_map::HeadMap;
pub use message::{
    BatchResultMessage, BranchCommitRequest, BranchCommitResponse, BranchEndRequest,
    BranchEndResponse, BranchRegisterRequest, BranchRegisterResponse, BranchReportRequest,
    BranchReportResponse, BranchRollbackRequest, BranchRollbackResponse, BranchStatus, BranchType,
    GlobalBeginRequest, GlobalBeginResponse, GlobalCommitRequest, GlobalCommitResponse,
    GlobalEndRequest, GlobalEndResponse, GlobalLockQueryRequest, GlobalLockQueryResponse,
    GlobalReportRequest, GlobalReportResponse, GlobalRollbackRequest, GlobalRollbackResponse,
    GlobalStatus, GlobalStatusRequest, GlobalStatusResponse, IdentifyResponse, MergeResultMessage,
    MergedWarpMessage, Message, RegisterRmRequest, RegisterRmResponse, RegisterTmRequest,
    RegisterTmResponse, ResultCode, TransactionExceptionCode, TransactionResponse,
    UndoLogDeleteRequest, type_code,
};
