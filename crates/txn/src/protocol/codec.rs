//! Message bodies in the SEATA codec (serializer code 0x01).
//!
//! A body is the message's type code as a big-endian short, then its fields
//! in the order of the Java codec class (`serializer/seata-serializer-seata`,
//! `io.seata.serializer.seata.protocol`). The field layouts are listed in
//! `docs/seata-protocol.md`.
//!
//! Decoding is strict where Seata's decoders are lenient: every field must be
//! present, the body must be consumed exactly, enum codes must be known and
//! booleans must be 0 or 1. Seata's encoders (Java 1.2.0 to 2.x, and the Go
//! client) never produce what this rejects from values that fit their length
//! prefixes, with one exception handled here: seata-go writes the `msg` of a
//! failed `BranchCommitResponse` / `BranchRollbackResponse` with a one-byte
//! length (see [`decode_body`]).

use super::error::ProtocolError;
use super::frame::{FrameLimits, SEATA_MAX_BATCH_MESSAGES};
use super::message::{
    BatchResultMessage, BranchEndRequest, BranchEndResponse, BranchRegisterRequest,
    BranchRegisterResponse, BranchReportRequest, BranchStatus, BranchType, GlobalBeginRequest,
    GlobalBeginResponse, GlobalEndRequest, GlobalEndResponse, GlobalLockQueryResponse,
    GlobalReportRequest, GlobalStatus, IdentifyResponse, MergeResultMessage, MergedWarpMessage,
    Message, RegisterRmRequest, RegisterTmRequest, ResultCode, TransactionExceptionCode,
    TransactionResponse, UndoLogDeleteRequest, type_code,
};
use super::wire::{
    MAX_STR16_BYTES, MAX_STR32_BYTES, Reader, patch, put_i16, put_i32, put_i64, put_str16,
    put_str32, put_u8, put_u32, truncate_utf8,
};

/// Appends `msg`'s body: its type code, then its fields.
///
/// Fails, leaving `out` as it was, if a string does not fit its length
/// prefix, a batch holds more than 32767 messages, a batch's ids do not pair
/// up with its messages, or a batch holds a message it may not (see
/// [`MergedWarpMessage`], [`MergeResultMessage`], [`BatchResultMessage`]).
/// A result message's `msg` is cut to 32767 bytes rather than failing.
pub fn encode_body(msg: &Message, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    let start = out.len();
    let result = encode_message(msg, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Decodes one complete body (the bytes after the head map of a request,
/// response or oneway frame).
///
/// `limits.max_batch_messages` bounds the messages of a batch. Strings are
/// decoded as Java does, malformed UTF-8 becoming U+FFFD.
///
/// **seata-go compatibility.** seata-go (checked at its main branch) writes
/// the `msg` of a *failed* `BranchCommitResponse` or
/// `BranchRollbackResponse` with a one-byte length instead of a short. When
/// such a body does not decode in Seata's layout, it is decoded in the
/// seata-go layout, which must then consume it exactly; if neither works,
/// the error is the one of Seata's layout. Re-encoding such a message writes
/// Seata's layout.
pub fn decode_body(body: &[u8], limits: &FrameLimits) -> Result<Message, ProtocolError> {
    let mut r = Reader::new(body);
    let code = r.i16("message type code")?;
    let fields = r.rest();
    match decode_exact(code, fields, limits) {
        Err(err)
            if matches!(
                code,
                type_code::BRANCH_COMMIT_RESULT | type_code::BRANCH_ROLLBACK_RESULT
            ) =>
        {
            decode_go_branch_end_response(code, fields).map_err(|_| err)
        }
        other => other,
    }
}

fn encode_message(msg: &Message, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    put_i16(out, msg.type_code());
    encode_fields(msg, out)
}

fn encode_fields(msg: &Message, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
    match msg {
        Message::GlobalBeginRequest(m) => {
            put_i32(out, m.timeout);
            put_str16(out, "transaction_name", &m.transaction_name)
        }
        Message::GlobalBeginResponse(m) => {
            put_tx_result(out, m.result_code, &m.msg, m.transaction_exception_code)?;
            put_str16(out, "xid", &m.xid)?;
            put_str16(out, "extra_data", &m.extra_data)
        }
        Message::BranchCommitRequest(m) | Message::BranchRollbackRequest(m) => {
            put_str16(out, "xid", &m.xid)?;
            put_i64(out, m.branch_id);
            put_u8(out, m.branch_type.code());
            put_str16(out, "resource_id", &m.resource_id)?;
            put_str32(out, "application_data", &m.application_data)
        }
        Message::BranchCommitResponse(m) | Message::BranchRollbackResponse(m) => {
            put_tx_result(out, m.result_code, &m.msg, m.transaction_exception_code)?;
            put_str16(out, "xid", &m.xid)?;
            put_i64(out, m.branch_id);
            put_u8(out, m.branch_status.code());
            Ok(())
        }
        Message::GlobalCommitRequest(m)
        | Message::GlobalRollbackRequest(m)
        | Message::GlobalStatusRequest(m) => put_global_end_request(out, &m.xid, &m.extra_data),
        Message::GlobalCommitResponse(m)
        | Message::GlobalRollbackResponse(m)
        | Message::GlobalStatusResponse(m)
        | Message::GlobalReportResponse(m) => {
            put_tx_result(out, m.result_code, &m.msg, m.transaction_exception_code)?;
            put_u8(out, m.global_status.code());
            Ok(())
        }
        Message::BranchRegisterRequest(m) | Message::GlobalLockQueryRequest(m) => {
            put_str16(out, "xid", &m.xid)?;
            put_u8(out, m.branch_type.code());
            put_str16(out, "resource_id", &m.resource_id)?;
            put_str32(out, "lock_key", &m.lock_key)?;
            put_str32(out, "application_data", &m.application_data)
        }
        Message::BranchRegisterResponse(m) => {
            put_tx_result(out, m.result_code, &m.msg, m.transaction_exception_code)?;
            put_i64(out, m.branch_id);
            Ok(())
        }
        Message::BranchReportRequest(m) => {
            put_str16(out, "xid", &m.xid)?;
            put_i64(out, m.branch_id);
            put_u8(out, m.status.code());
            put_str16(out, "resource_id", &m.resource_id)?;
            put_str32(out, "application_data", &m.application_data)?;
            put_u8(out, m.branch_type.code());
            Ok(())
        }
        Message::BranchReportResponse(m) => {
            put_tx_result(out, m.result_code, &m.msg, m.transaction_exception_code)
        }
        Message::GlobalReportRequest(m) => {
            put_global_end_request(out, &m.xid, &m.extra_data)?;
            put_u8(
                out,
                m.global_status
                    .map_or(NULL_GLOBAL_STATUS, GlobalStatus::code),
            );
            Ok(())
        }
        Message::GlobalLockQueryResponse(m) => {
            put_tx_result(out, m.result_code, &m.msg, m.transaction_exception_code)?;
            put_i16(out, i16::from(m.lockable));
            Ok(())
        }
        Message::MergedWarpMessage(m) => {
            if !m.msg_ids.is_empty() && m.msg_ids.len() != m.msgs.len() {
                return Err(ProtocolError::MsgIdsMismatch {
                    context: "MergedWarpMessage",
                    msgs: m.msgs.len(),
                    msg_ids: m.msg_ids.len(),
                });
            }
            put_batch(out, &MERGED_WARP, &m.msgs, &m.msg_ids)
        }
        Message::MergeResultMessage(m) => put_batch(out, &MERGE_RESULT, &m.msgs, &[]),
        Message::BatchResultMessage(m) => {
            if m.msg_ids.len() != m.result_messages.len() {
                return Err(ProtocolError::MsgIdsMismatch {
                    context: "BatchResultMessage",
                    msgs: m.result_messages.len(),
                    msg_ids: m.msg_ids.len(),
                });
            }
            put_batch(out, &BATCH_RESULT, &m.result_messages, &m.msg_ids)
        }
        Message::RegisterTmRequest(m) => put_identify_request(
            out,
            &m.version,
            &m.application_id,
            &m.transaction_service_group,
            &m.extra_data,
        ),
        Message::RegisterRmRequest(m) => {
            put_identify_request(
                out,
                &m.version,
                &m.application_id,
                &m.transaction_service_group,
                &m.extra_data,
            )?;
            put_str32(out, "resource_ids", &m.resource_ids)
        }
        Message::RegisterTmResponse(m) | Message::RegisterRmResponse(m) => {
            put_u8(out, u8::from(m.identified));
            put_str16(out, "version", &m.version)
        }
        Message::UndoLogDeleteRequest(m) => {
            put_u8(out, m.branch_type.code());
            put_str16(out, "resource_id", &m.resource_id)?;
            put_i16(out, m.save_days);
            Ok(())
        }
    }
}

/// `GlobalReportRequest` writes a null status as the byte -1.
const NULL_GLOBAL_STATUS: u8 = 0xff;

/// `AbstractResultMessage` then `AbstractTransactionResponse`: result code,
/// the message only if failed, exception code.
fn put_tx_result(
    out: &mut Vec<u8>,
    result_code: ResultCode,
    msg: &str,
    exception_code: TransactionExceptionCode,
) -> Result<(), ProtocolError> {
    put_u8(out, result_code.code());
    if result_code == ResultCode::Failed {
        put_str16(out, "msg", truncate_utf8(msg, MAX_STR16_BYTES))?;
    }
    put_u8(out, exception_code.code());
    Ok(())
}

fn put_global_end_request(
    out: &mut Vec<u8>,
    xid: &str,
    extra_data: &str,
) -> Result<(), ProtocolError> {
    put_str16(out, "xid", xid)?;
    put_str16(out, "extra_data", extra_data)
}

fn put_identify_request(
    out: &mut Vec<u8>,
    version: &str,
    application_id: &str,
    transaction_service_group: &str,
    extra_data: &str,
) -> Result<(), ProtocolError> {
    put_str16(out, "version", version)?;
    put_str16(out, "application_id", application_id)?;
    put_str16(out, "transaction_service_group", transaction_service_group)?;
    put_str16(out, "extra_data", extra_data)
}

/// What a batch message may contain.
struct BatchKind {
    name: &'static str,
    inside: &'static str,
    results: bool,
}

const MERGED_WARP: BatchKind = BatchKind {
    name: "MergedWarpMessage",
    inside: "inside a MergedWarpMessage (requests only)",
    results: false,
};
const MERGE_RESULT: BatchKind = BatchKind {
    name: "MergeResultMessage",
    inside: "inside a MergeResultMessage (results only)",
    results: true,
};
const BATCH_RESULT: BatchKind = BatchKind {
    name: "BatchResultMessage",
    inside: "inside a BatchResultMessage (results only)",
    results: true,
};

fn check_element(code: i16, kind: &BatchKind) -> Result<(), ProtocolError> {
    if !type_code::is_known(code) {
        return Err(ProtocolError::UnknownMessageType(code));
    }
    if type_code::is_batch(code) || type_code::is_result(code) != kind.results {
        return Err(ProtocolError::UnexpectedMessageType {
            type_code: code,
            context: kind.inside,
        });
    }
    Ok(())
}

/// Int content length, short count, the messages, the ids.
fn put_batch(
    out: &mut Vec<u8>,
    kind: &BatchKind,
    msgs: &[Message],
    ids: &[u32],
) -> Result<(), ProtocolError> {
    let count = i16::try_from(msgs.len()).map_err(|_| ProtocolError::TooManyMessages {
        context: kind.name,
        count: msgs.len(),
        limit: SEATA_MAX_BATCH_MESSAGES,
    })?;
    let length_at = out.len();
    put_i32(out, 0);
    let content_start = out.len();
    put_i16(out, count);
    for msg in msgs {
        check_element(msg.type_code(), kind)?;
        encode_message(msg, out)?;
    }
    for id in ids {
        put_u32(out, *id);
    }
    let len = out.len().saturating_sub(content_start);
    let len = i32::try_from(len).map_err(|_| ProtocolError::FieldTooLong {
        field: kind.name,
        len,
        max: MAX_STR32_BYTES,
    })?;
    patch(out, length_at, &len.to_be_bytes());
    Ok(())
}

fn decode_exact(code: i16, fields: &[u8], limits: &FrameLimits) -> Result<Message, ProtocolError> {
    let mut r = Reader::new(fields);
    let msg = decode_fields(code, &mut r, limits)?;
    r.finish("message body")?;
    Ok(msg)
}

fn get_enum<T>(
    r: &mut Reader<'_>,
    field: &'static str,
    from_code: fn(u8) -> Option<T>,
) -> Result<T, ProtocolError> {
    let code = r.u8(field)?;
    from_code(code).ok_or(ProtocolError::InvalidValue {
        field,
        value: i64::from(code),
    })
}

fn get_branch_type(r: &mut Reader<'_>) -> Result<BranchType, ProtocolError> {
    get_enum(r, "branch_type", BranchType::from_code)
}

fn get_branch_status(
    r: &mut Reader<'_>,
    field: &'static str,
) -> Result<BranchStatus, ProtocolError> {
    get_enum(r, field, BranchStatus::from_code)
}

fn get_global_status(r: &mut Reader<'_>) -> Result<GlobalStatus, ProtocolError> {
    get_enum(r, "global_status", GlobalStatus::from_code)
}

fn get_bool(field: &'static str, value: i16) -> Result<bool, ProtocolError> {
    match value {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(ProtocolError::InvalidValue {
            field,
            value: i64::from(value),
        }),
    }
}

fn get_tx_result(r: &mut Reader<'_>) -> Result<TransactionResponse, ProtocolError> {
    let result_code = get_enum(r, "result_code", ResultCode::from_code)?;
    let msg = match result_code {
        ResultCode::Failed => r.str16("msg")?,
        ResultCode::Success => String::new(),
    };
    let transaction_exception_code = get_enum(
        r,
        "transaction_exception_code",
        TransactionExceptionCode::from_code,
    )?;
    Ok(TransactionResponse {
        result_code,
        msg,
        transaction_exception_code,
    })
}

fn get_global_end_request(r: &mut Reader<'_>) -> Result<GlobalEndRequest, ProtocolError> {
    Ok(GlobalEndRequest {
        xid: r.str16("xid")?,
        extra_data: r.str16("extra_data")?,
    })
}

fn get_global_end_response(r: &mut Reader<'_>) -> Result<GlobalEndResponse, ProtocolError> {
    let head = get_tx_result(r)?;
    Ok(GlobalEndResponse {
        result_code: head.result_code,
        msg: head.msg,
        transaction_exception_code: head.transaction_exception_code,
        global_status: get_global_status(r)?,
    })
}

fn get_branch_end_request(r: &mut Reader<'_>) -> Result<BranchEndRequest, ProtocolError> {
    Ok(BranchEndRequest {
        xid: r.str16("xid")?,
        branch_id: r.i64("branch_id")?,
        branch_type: get_branch_type(r)?,
        resource_id: r.str16("resource_id")?,
        application_data: r.str32("application_data")?,
    })
}

fn get_branch_end_response(r: &mut Reader<'_>) -> Result<BranchEndResponse, ProtocolError> {
    let head = get_tx_result(r)?;
    Ok(BranchEndResponse {
        result_code: head.result_code,
        msg: head.msg,
        transaction_exception_code: head.transaction_exception_code,
        xid: r.str16("xid")?,
        branch_id: r.i64("branch_id")?,
        branch_status: get_branch_status(r, "branch_status")?,
    })
}

fn get_branch_register_request(r: &mut Reader<'_>) -> Result<BranchRegisterRequest, ProtocolError> {
    Ok(BranchRegisterRequest {
        xid: r.str16("xid")?,
        branch_type: get_branch_type(r)?,
        resource_id: r.str16("resource_id")?,
        lock_key: r.str32("lock_key")?,
        application_data: r.str32("application_data")?,
    })
}

fn get_identify_response(r: &mut Reader<'_>) -> Result<IdentifyResponse, ProtocolError> {
    let identified = r.u8("identified")?;
    Ok(IdentifyResponse {
        identified: get_bool("identified", i16::from(identified))?,
        version: r.str16("version")?,
    })
}

fn get_register_tm_request(r: &mut Reader<'_>) -> Result<RegisterTmRequest, ProtocolError> {
    Ok(RegisterTmRequest {
        version: r.str16("version")?,
        application_id: r.str16("application_id")?,
        transaction_service_group: r.str16("transaction_service_group")?,
        extra_data: r.str16("extra_data")?,
    })
}

/// The content of a batch message: an int length that must cover exactly
/// the rest of the body.
fn batch_content<'a>(r: &mut Reader<'a>) -> Result<Reader<'a>, ProtocolError> {
    let declared = r.i32("batch length")?;
    let len = usize::try_from(declared).map_err(|_| ProtocolError::NegativeLength {
        field: "batch length",
        length: declared,
    })?;
    if len != r.remaining() {
        return Err(ProtocolError::BatchLengthMismatch {
            declared,
            actual: r.remaining(),
        });
    }
    r.take(len, "batch content").map(Reader::new)
}

fn get_batch_msgs(
    r: &mut Reader<'_>,
    kind: &BatchKind,
    limits: &FrameLimits,
) -> Result<Vec<Message>, ProtocolError> {
    let count = r.i16("message count")?;
    let count = usize::try_from(count).map_err(|_| ProtocolError::NegativeLength {
        field: "message count",
        length: i32::from(count),
    })?;
    if count > limits.max_batch_messages {
        return Err(ProtocolError::TooManyMessages {
            context: kind.name,
            count,
            limit: limits.max_batch_messages,
        });
    }
    // No preallocation from the declared count: the vector grows with what
    // was actually decoded.
    let mut msgs = Vec::new();
    for _ in 0..count {
        let code = r.i16("message type code")?;
        check_element(code, kind)?;
        msgs.push(decode_fields(code, r, limits)?);
    }
    Ok(msgs)
}

fn get_msg_ids(r: &mut Reader<'_>, count: usize) -> Result<Vec<u32>, ProtocolError> {
    (0..count).map(|_| r.u32("msg_ids")).collect()
}

fn decode_fields(
    code: i16,
    r: &mut Reader<'_>,
    limits: &FrameLimits,
) -> Result<Message, ProtocolError> {
    use type_code as t;
    let msg = match code {
        t::GLOBAL_BEGIN => Message::GlobalBeginRequest(GlobalBeginRequest {
            timeout: r.i32("timeout")?,
            transaction_name: r.str16("transaction_name")?,
        }),
        t::GLOBAL_BEGIN_RESULT => {
            let head = get_tx_result(r)?;
            Message::GlobalBeginResponse(GlobalBeginResponse {
                result_code: head.result_code,
                msg: head.msg,
                transaction_exception_code: head.transaction_exception_code,
                xid: r.str16("xid")?,
                extra_data: r.str16("extra_data")?,
            })
        }
        t::BRANCH_COMMIT => Message::BranchCommitRequest(get_branch_end_request(r)?),
        t::BRANCH_COMMIT_RESULT => Message::BranchCommitResponse(get_branch_end_response(r)?),
        t::BRANCH_ROLLBACK => Message::BranchRollbackRequest(get_branch_end_request(r)?),
        t::BRANCH_ROLLBACK_RESULT => Message::BranchRollbackResponse(get_branch_end_response(r)?),
        t::GLOBAL_COMMIT => Message::GlobalCommitRequest(get_global_end_request(r)?),
        t::GLOBAL_COMMIT_RESULT => Message::GlobalCommitResponse(get_global_end_response(r)?),
        t::GLOBAL_ROLLBACK => Message::GlobalRollbackRequest(get_global_end_request(r)?),
        t::GLOBAL_ROLLBACK_RESULT => Message::GlobalRollbackResponse(get_global_end_response(r)?),
        t::BRANCH_REGISTER => Message::BranchRegisterRequest(get_branch_register_request(r)?),
        t::BRANCH_REGISTER_RESULT => {
            let head = get_tx_result(r)?;
            Message::BranchRegisterResponse(BranchRegisterResponse {
                result_code: head.result_code,
                msg: head.msg,
                transaction_exception_code: head.transaction_exception_code,
                branch_id: r.i64("branch_id")?,
            })
        }
        t::BRANCH_STATUS_REPORT => Message::BranchReportRequest(BranchReportRequest {
            xid: r.str16("xid")?,
            branch_id: r.i64("branch_id")?,
            status: get_branch_status(r, "status")?,
            resource_id: r.str16("resource_id")?,
            application_data: r.str32("application_data")?,
            branch_type: get_branch_type(r)?,
        }),
        t::BRANCH_STATUS_REPORT_RESULT => Message::BranchReportResponse(get_tx_result(r)?),
        t::GLOBAL_STATUS => Message::GlobalStatusRequest(get_global_end_request(r)?),
        t::GLOBAL_STATUS_RESULT => Message::GlobalStatusResponse(get_global_end_response(r)?),
        t::GLOBAL_REPORT => {
            let end = get_global_end_request(r)?;
            let status = r.u8("global_status")?;
            let global_status = match status {
                NULL_GLOBAL_STATUS => None,
                code => Some(
                    GlobalStatus::from_code(code).ok_or(ProtocolError::InvalidValue {
                        field: "global_status",
                        value: i64::from(code),
                    })?,
                ),
            };
            Message::GlobalReportRequest(GlobalReportRequest {
                xid: end.xid,
                extra_data: end.extra_data,
                global_status,
            })
        }
        t::GLOBAL_REPORT_RESULT => Message::GlobalReportResponse(get_global_end_response(r)?),
        t::GLOBAL_LOCK_QUERY => Message::GlobalLockQueryRequest(get_branch_register_request(r)?),
        t::GLOBAL_LOCK_QUERY_RESULT => {
            let head = get_tx_result(r)?;
            let lockable = r.i16("lockable")?;
            Message::GlobalLockQueryResponse(GlobalLockQueryResponse {
                result_code: head.result_code,
                msg: head.msg,
                transaction_exception_code: head.transaction_exception_code,
                lockable: get_bool("lockable", lockable)?,
            })
        }
        t::SEATA_MERGE => {
            let mut content = batch_content(r)?;
            let msgs = get_batch_msgs(&mut content, &MERGED_WARP, limits)?;
            // Clients before 1.5.0 send no ids.
            let msg_ids = match content.remaining() {
                0 => Vec::new(),
                _ => get_msg_ids(&mut content, msgs.len())?,
            };
            content.finish("MergedWarpMessage ids")?;
            Message::MergedWarpMessage(MergedWarpMessage { msgs, msg_ids })
        }
        t::SEATA_MERGE_RESULT => {
            let mut content = batch_content(r)?;
            let msgs = get_batch_msgs(&mut content, &MERGE_RESULT, limits)?;
            content.finish("MergeResultMessage messages")?;
            Message::MergeResultMessage(MergeResultMessage { msgs })
        }
        t::BATCH_RESULT_MSG => {
            let mut content = batch_content(r)?;
            let result_messages = get_batch_msgs(&mut content, &BATCH_RESULT, limits)?;
            let msg_ids = get_msg_ids(&mut content, result_messages.len())?;
            content.finish("BatchResultMessage ids")?;
            Message::BatchResultMessage(BatchResultMessage {
                result_messages,
                msg_ids,
            })
        }
        t::REG_CLT => Message::RegisterTmRequest(get_register_tm_request(r)?),
        t::REG_CLT_RESULT => Message::RegisterTmResponse(get_identify_response(r)?),
        t::REG_RM => {
            let tm = get_register_tm_request(r)?;
            Message::RegisterRmRequest(RegisterRmRequest {
                version: tm.version,
                application_id: tm.application_id,
                transaction_service_group: tm.transaction_service_group,
                extra_data: tm.extra_data,
                resource_ids: r.str32("resource_ids")?,
            })
        }
        t::REG_RM_RESULT => Message::RegisterRmResponse(get_identify_response(r)?),
        t::RM_DELETE_UNDOLOG => Message::UndoLogDeleteRequest(UndoLogDeleteRequest {
            branch_type: get_branch_type(r)?,
            resource_id: r.str16("resource_id")?,
            save_days: r.i16("save_days")?,
        }),
        other => return Err(ProtocolError::UnknownMessageType(other)),
    };
    Ok(msg)
}

/// seata-go's layout of a failed branch end response: as Seata's, except
/// that `msg` has a one-byte length.
fn decode_go_branch_end_response(code: i16, fields: &[u8]) -> Result<Message, ProtocolError> {
    let mut r = Reader::new(fields);
    let result_code = get_enum(&mut r, "result_code", ResultCode::from_code)?;
    if result_code != ResultCode::Failed {
        return Err(ProtocolError::InvalidValue {
            field: "result_code",
            value: i64::from(result_code.code()),
        });
    }
    let msg_len = r.u8("msg")?;
    let response = BranchEndResponse {
        result_code,
        msg: r.utf8(usize::from(msg_len), "msg")?,
        transaction_exception_code: get_enum(
            &mut r,
            "transaction_exception_code",
            TransactionExceptionCode::from_code,
        )?,
        xid: r.str16("xid")?,
        branch_id: r.i64("branch_id")?,
        branch_status: get_branch_status(&mut r, "branch_status")?,
    };
    r.finish("message body")?;
    Ok(match code {
        type_code::BRANCH_COMMIT_RESULT => Message::BranchCommitResponse(response),
        _ => Message::BranchRollbackResponse(response),
    })
}
