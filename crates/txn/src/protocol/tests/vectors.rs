//! Byte-exact body vectors, one or more per message type, and the body
//! decoder's handling of malformed input.
//!
//! `|` separates fields. Test class paths are relative to
//! `serializer/seata-serializer-seata/src/test/java/io/seata/serializer/seata/protocol/`
//! (v1.8.0; the same tests live under `org/apache/seata/...` in 2.x).

use super::super::*;
use super::util::{body_bytes, hex, to_hex};

/// Asserts `encode(msg) == hex` and `decode(hex) == msg`.
fn check(hex_body: &str, msg: Message) {
    let bytes = hex(hex_body);
    assert_eq!(
        to_hex(&body_bytes(&msg)),
        to_hex(&bytes),
        "encoding {msg:?}"
    );
    assert_eq!(
        decode_body(&bytes, &FrameLimits::default()).unwrap(),
        msg,
        "decoding {hex_body}"
    );
}

fn decode_err(hex_body: &str) -> ProtocolError {
    decode_body(&hex(hex_body), &FrameLimits::default()).unwrap_err()
}

fn encode_err(msg: &Message) -> ProtocolError {
    let mut out = vec![0xaa];
    let err = encode_body(msg, &mut out).unwrap_err();
    assert_eq!(
        out,
        vec![0xaa],
        "a failed encode leaves the buffer as it was"
    );
    err
}

#[test]
fn global_begin_request() {
    // transaction/GlobalBeginRequestSerializerTest: timeout 10, name "a24".
    check(
        "0001 | 0000000a | 0003 613234",
        Message::GlobalBeginRequest(GlobalBeginRequest {
            timeout: 10,
            transaction_name: "a24".into(),
        }),
    );
}

#[test]
fn global_begin_response() {
    // transaction/GlobalBeginResponseSerializerTest: Failed "abcs",
    // GlobalTransactionNotActive (11), xid "2454", extraData "absd".
    check(
        "0002 | 00 | 0004 61626373 | 0b | 0004 32343534 | 0004 61627364",
        Message::GlobalBeginResponse(GlobalBeginResponse {
            result_code: ResultCode::Failed,
            msg: "abcs".into(),
            transaction_exception_code: TransactionExceptionCode::GlobalTransactionNotActive,
            xid: "2454".into(),
            extra_data: "absd".into(),
        }),
    );
}

#[test]
fn branch_commit_request() {
    // transaction/BranchCommitRequestSerializerTest: xid "a3", branchId 123,
    // AT, resourceId "t", applicationData "abc".
    check(
        "0003 | 0002 6133 | 000000000000007b | 00 | 0001 74 | 00000003 616263",
        Message::BranchCommitRequest(BranchCommitRequest {
            xid: "a3".into(),
            branch_id: 123,
            branch_type: BranchType::At,
            resource_id: "t".into(),
            application_data: "abc".into(),
        }),
    );
}

#[test]
fn branch_commit_response() {
    // transaction/BranchCommitResponseSerializerTest: Failed "abc",
    // BranchTransactionNotExist (9), xid "a3", branchId 123, PhaseOne_Done (2).
    check(
        "0004 | 00 | 0003 616263 | 09 | 0002 6133 | 000000000000007b | 02",
        Message::BranchCommitResponse(BranchCommitResponse {
            result_code: ResultCode::Failed,
            msg: "abc".into(),
            transaction_exception_code: TransactionExceptionCode::BranchTransactionNotExist,
            xid: "a3".into(),
            branch_id: 123,
            branch_status: BranchStatus::PhaseOneDone,
        }),
    );
}

#[test]
fn branch_rollback_request() {
    // transaction/BranchRollbackRequestSerializerTest: xid "123", branchId
    // 112232 (0x1b668), TCC, resourceId "343", applicationData "abcd".
    check(
        "0005 | 0003 313233 | 000000000001b668 | 01 | 0003 333433 | 00000004 61626364",
        Message::BranchRollbackRequest(BranchRollbackRequest {
            xid: "123".into(),
            branch_id: 112_232,
            branch_type: BranchType::Tcc,
            resource_id: "343".into(),
            application_data: "abcd".into(),
        }),
    );
}

#[test]
fn branch_rollback_response() {
    // transaction/BranchRollbackResponseSerializerTest: Success (so its msg
    // "abc" is not written), BranchTransactionNotExist, xid "123", branchId
    // 112232, PhaseOne_Done.
    let expected = "0006 | 01 | 09 | 0003 313233 | 000000000001b668 | 02";
    let mut response = BranchRollbackResponse {
        result_code: ResultCode::Success,
        msg: String::new(),
        transaction_exception_code: TransactionExceptionCode::BranchTransactionNotExist,
        xid: "123".into(),
        branch_id: 112_232,
        branch_status: BranchStatus::PhaseOneDone,
    };
    check(expected, Message::BranchRollbackResponse(response.clone()));
    // The Java test sets msg "abc" too: with Success it is dropped.
    response.msg = "abc".into();
    assert_eq!(
        to_hex(&body_bytes(&Message::BranchRollbackResponse(response))),
        to_hex(&hex(expected))
    );
}

#[test]
fn global_commit_request() {
    // transaction/GlobalCommitRequestCodecTest: xid "adf", extraData "aaaa".
    check(
        "0007 | 0003 616466 | 0004 61616161",
        Message::GlobalCommitRequest(GlobalCommitRequest {
            xid: "adf".into(),
            extra_data: "aaaa".into(),
        }),
    );
}

#[test]
fn global_commit_response() {
    // transaction/GlobalCommitResponseSerializerTest: Failed "aaa",
    // GlobalTransactionStatusInvalid (12), AsyncCommitting (8).
    check(
        "0008 | 00 | 0003 616161 | 0c | 08",
        Message::GlobalCommitResponse(GlobalCommitResponse {
            result_code: ResultCode::Failed,
            msg: "aaa".into(),
            transaction_exception_code: TransactionExceptionCode::GlobalTransactionStatusInvalid,
            global_status: GlobalStatus::AsyncCommitting,
        }),
    );
}

#[test]
fn global_rollback_request() {
    // transaction/GlobalRollbackRequestCodecTest: xid "aaaa", extraData "aaaa".
    check(
        "0009 | 0004 61616161 | 0004 61616161",
        Message::GlobalRollbackRequest(GlobalRollbackRequest {
            xid: "aaaa".into(),
            extra_data: "aaaa".into(),
        }),
    );
}

#[test]
fn global_rollback_response() {
    // transaction/GlobalRollbackResponseSerializerTest: Failed "aaa",
    // GlobalTransactionNotExist (10), AsyncCommitting (8).
    check(
        "000a | 00 | 0003 616161 | 0a | 08",
        Message::GlobalRollbackResponse(GlobalRollbackResponse {
            result_code: ResultCode::Failed,
            msg: "aaa".into(),
            transaction_exception_code: TransactionExceptionCode::GlobalTransactionNotExist,
            global_status: GlobalStatus::AsyncCommitting,
        }),
    );
}

#[test]
fn branch_register_request() {
    // transaction/BranchRegisterRequestSerializerTest: xid "abc134", AT,
    // resourceId "124", lockKey "a:1,b:2" and applicationData "abc" (both
    // with int lengths).
    check(
        "000b | 0006 616263313334 | 00 | 0003 313234 | 00000007 613a312c623a32 | 00000003 616263",
        Message::BranchRegisterRequest(BranchRegisterRequest {
            xid: "abc134".into(),
            branch_type: BranchType::At,
            resource_id: "124".into(),
            lock_key: "a:1,b:2".into(),
            application_data: "abc".into(),
        }),
    );
}

#[test]
fn branch_register_response() {
    // transaction/BranchRegisterResponseSerializerTest: Failed "addd",
    // BranchTransactionNotExist, branchId 1346 (0x542).
    check(
        "000c | 00 | 0004 61646464 | 09 | 0000000000000542",
        Message::BranchRegisterResponse(BranchRegisterResponse {
            result_code: ResultCode::Failed,
            msg: "addd".into(),
            transaction_exception_code: TransactionExceptionCode::BranchTransactionNotExist,
            branch_id: 1346,
        }),
    );
}

#[test]
fn branch_report_request() {
    // transaction/BranchReportRequestSerializerTest: xid "abc123", branchId
    // 1346, PhaseOne_Done, resourceId "aaa", applicationData "acds", TCC
    // (the branch type comes last).
    check(
        "000d | 0006 616263313233 | 0000000000000542 | 02 | 0003 616161 | 00000004 61636473 | 01",
        Message::BranchReportRequest(BranchReportRequest {
            xid: "abc123".into(),
            branch_id: 1346,
            status: BranchStatus::PhaseOneDone,
            resource_id: "aaa".into(),
            application_data: "acds".into(),
            branch_type: BranchType::Tcc,
        }),
    );
}

#[test]
fn branch_report_response() {
    // transaction/BranchReportResponseSerializerTest: Failed "abac",
    // BranchTransactionNotExist.
    check(
        "000e | 00 | 0004 61626163 | 09",
        Message::BranchReportResponse(BranchReportResponse {
            result_code: ResultCode::Failed,
            msg: "abac".into(),
            transaction_exception_code: TransactionExceptionCode::BranchTransactionNotExist,
        }),
    );
}

#[test]
fn global_status_request() {
    // transaction/GlobalStatusRequestCodecTest: xid "aaa123", extraData "aaaa".
    check(
        "000f | 0006 616161313233 | 0004 61616161",
        Message::GlobalStatusRequest(GlobalStatusRequest {
            xid: "aaa123".into(),
            extra_data: "aaaa".into(),
        }),
    );
}

#[test]
fn global_status_response() {
    // transaction/GlobalStatusResponseSerializerTest: Failed "aaaa",
    // GlobalTransactionNotExist, CommitRetrying (3).
    check(
        "0010 | 00 | 0004 61616161 | 0a | 03",
        Message::GlobalStatusResponse(GlobalStatusResponse {
            result_code: ResultCode::Failed,
            msg: "aaaa".into(),
            transaction_exception_code: TransactionExceptionCode::GlobalTransactionNotExist,
            global_status: GlobalStatus::CommitRetrying,
        }),
    );
}

#[test]
fn global_report_request() {
    // Seata has no serializer test for it; from GlobalReportRequestCodec
    // (AbstractGlobalEndRequestCodec fields, then the status byte): a saga TM
    // reporting Committed (9) with a null extraData (length 0).
    check(
        "0011 | 001b 3139322e3136382e302e313a383039313a32303030303432393438 | 0000 | 09",
        Message::GlobalReportRequest(GlobalReportRequest {
            xid: "192.168.0.1:8091:2000042948".into(),
            extra_data: String::new(),
            global_status: Some(GlobalStatus::Committed),
        }),
    );
    // A null status is the byte -1.
    check(
        "0011 | 0001 78 | 0001 65 | ff",
        Message::GlobalReportRequest(GlobalReportRequest {
            xid: "x".into(),
            extra_data: "e".into(),
            global_status: None,
        }),
    );
}

#[test]
fn global_report_response() {
    // No Seata test; from GlobalReportResponseCodec
    // (AbstractGlobalEndResponseCodec): Success (no msg), Unknown, Committed.
    check(
        "0012 | 01 | 00 | 09",
        Message::GlobalReportResponse(GlobalReportResponse {
            result_code: ResultCode::Success,
            msg: String::new(),
            transaction_exception_code: TransactionExceptionCode::Unknown,
            global_status: GlobalStatus::Committed,
        }),
    );
}

#[test]
fn global_lock_query_request() {
    // transaction/GlobalLockQueryRequestSerializerTest: xid "aaa", TCC,
    // resourceId "1s", lockKey "a:1,b,2", applicationData "aaaa" (the
    // BranchRegisterRequest layout).
    check(
        "0015 | 0003 616161 | 01 | 0002 3173 | 00000007 613a312c622c32 | 00000004 61616161",
        Message::GlobalLockQueryRequest(GlobalLockQueryRequest {
            xid: "aaa".into(),
            branch_type: BranchType::Tcc,
            resource_id: "1s".into(),
            lock_key: "a:1,b,2".into(),
            application_data: "aaaa".into(),
        }),
    );
}

#[test]
fn global_lock_query_response() {
    // transaction/GlobalLockQueryResponseSerializerTest: Failed "aa",
    // GlobalTransactionStatusInvalid, lockable true as a short.
    check(
        "0016 | 00 | 0002 6161 | 0c | 0001",
        Message::GlobalLockQueryResponse(GlobalLockQueryResponse {
            result_code: ResultCode::Failed,
            msg: "aa".into(),
            transaction_exception_code: TransactionExceptionCode::GlobalTransactionStatusInvalid,
            lockable: true,
        }),
    );
}

fn begin(name: &str) -> Message {
    Message::GlobalBeginRequest(GlobalBeginRequest {
        timeout: 3000,
        transaction_name: name.into(),
    })
}

#[test]
fn merged_warp_message() {
    // MergedWarpMessageSerializerTest: GlobalBeginRequest("x1", 3000) and
    // ("x2", 3000) with msgIds 1 and 2. Content length 0x1e = 30 bytes.
    check(
        "003b | 0000001e | 0002 | 0001 00000bb8 0002 7831 | 0001 00000bb8 0002 7832 | 00000001 00000002",
        Message::MergedWarpMessage(MergedWarpMessage {
            msgs: vec![begin("x1"), begin("x2")],
            msg_ids: vec![1, 2],
        }),
    );
}

#[test]
fn merged_warp_message_from_a_1_2_client() {
    // The same messages as a 1.2.0-1.4.x client writes them: no msgIds
    // (MergedWarpMessageCodec at v1.2.0), content length 22.
    check(
        "003b | 00000016 | 0002 | 0001 00000bb8 0002 7831 | 0001 00000bb8 0002 7832",
        Message::MergedWarpMessage(MergedWarpMessage {
            msgs: vec![begin("x1"), begin("x2")],
            msg_ids: vec![],
        }),
    );
}

#[test]
fn merge_result_message() {
    // MergeResultMessageSerializerTest: two GlobalBeginResponses, Failed
    // "success", BranchTransactionNotExist, xid "a1" / "a2", extraData
    // "data". Content length 0x30 = 48 bytes.
    let response = |xid: &str| {
        Message::GlobalBeginResponse(GlobalBeginResponse {
            result_code: ResultCode::Failed,
            msg: "success".into(),
            transaction_exception_code: TransactionExceptionCode::BranchTransactionNotExist,
            xid: xid.into(),
            extra_data: "data".into(),
        })
    };
    check(
        "003c | 00000030 | 0002 \
         | 0002 00 0007 73756363657373 09 0002 6131 0004 64617461 \
         | 0002 00 0007 73756363657373 09 0002 6132 0004 64617461",
        Message::MergeResultMessage(MergeResultMessage {
            msgs: vec![response("a1"), response("a2")],
        }),
    );
}

#[test]
fn register_tm_request() {
    // RegisterTMRequestSerializerTest.test_codec: version "1",
    // applicationId "abc", transactionServiceGroup "def", extraData "abc123".
    check(
        "0065 | 0001 31 | 0003 616263 | 0003 646566 | 0006 616263313233",
        Message::RegisterTmRequest(RegisterTmRequest {
            version: "1".into(),
            application_id: "abc".into(),
            transaction_service_group: "def".into(),
            extra_data: "abc123".into(),
        }),
    );
}

#[test]
fn register_tm_response() {
    // RegisterTMResponseSerializerTest: identified true, version "abc". Its
    // extraData, msg and resultCode are not on the wire (the Java test
    // comments those assertions out).
    check(
        "0066 | 01 | 0003 616263",
        Message::RegisterTmResponse(RegisterTmResponse {
            identified: true,
            version: "abc".into(),
        }),
    );
}

#[test]
fn register_rm_request() {
    // RegisterRMRequestSerializerTest: version "1", applicationId "abc",
    // transactionServiceGroup "def", extraData "abc124", resourceIds "a1,a2"
    // (int length).
    check(
        "0067 | 0001 31 | 0003 616263 | 0003 646566 | 0006 616263313234 | 00000005 61312c6132",
        Message::RegisterRmRequest(RegisterRmRequest {
            version: "1".into(),
            application_id: "abc".into(),
            transaction_service_group: "def".into(),
            extra_data: "abc124".into(),
            resource_ids: "a1,a2".into(),
        }),
    );
}

#[test]
fn register_rm_response() {
    // RegisterRMResponseSerializerTest: identified true, version "12".
    check(
        "0068 | 01 | 0002 3132",
        Message::RegisterRmResponse(RegisterRmResponse {
            identified: true,
            version: "12".into(),
        }),
    );
}

#[test]
fn undo_log_delete_request() {
    // transaction/UndoLogDeleteRequestSerializerTest: AT, resourceId "t",
    // saveDays 7.
    check(
        "006f | 00 | 0001 74 | 0007",
        Message::UndoLogDeleteRequest(UndoLogDeleteRequest {
            branch_type: BranchType::At,
            resource_id: "t".into(),
            save_days: 7,
        }),
    );
}

#[test]
fn batch_result_message() {
    // BatchResultMessageSerializerTest: BranchCommitResponses (Success,
    // exception code Unknown) "x1"/12345678 PhaseTwo_Committed and
    // "x2"/87654321 PhaseOne_Failed, msgIds 1111 and 2222. Content length
    // 0x2c = 44 bytes.
    let response = |xid: &str, branch_id, branch_status| {
        Message::BranchCommitResponse(BranchCommitResponse {
            result_code: ResultCode::Success,
            msg: String::new(),
            transaction_exception_code: TransactionExceptionCode::Unknown,
            xid: String::from(xid),
            branch_id,
            branch_status,
        })
    };
    check(
        "0079 | 0000002c | 0002 \
         | 0004 01 00 0002 7831 0000000000bc614e 05 \
         | 0004 01 00 0002 7832 0000000005397fb1 03 \
         | 00000457 000008ae",
        Message::BatchResultMessage(BatchResultMessage {
            result_messages: vec![
                response("x1", 12_345_678, BranchStatus::PhaseTwoCommitted),
                response("x2", 87_654_321, BranchStatus::PhaseOneFailed),
            ],
            msg_ids: vec![1111, 2222],
        }),
    );
}

#[test]
fn utf8_strings_are_byte_counted() {
    // HeadMapSerializerTest.testUTF8 uses "你好"; in a body the length
    // prefix counts UTF-8 bytes (6), not chars.
    check(
        "0001 | 00007530 | 0006 e4bda0e5a5bd",
        Message::GlobalBeginRequest(GlobalBeginRequest {
            timeout: 30_000,
            transaction_name: "你好".into(),
        }),
    );
}

#[test]
fn malformed_utf8_is_replaced_as_java_does() {
    let msg = decode_body(
        &hex("0001 | 00000001 | 0003 61ff62"),
        &FrameLimits::default(),
    )
    .unwrap();
    assert_eq!(
        msg,
        Message::GlobalBeginRequest(GlobalBeginRequest {
            timeout: 1,
            transaction_name: "a\u{fffd}b".into(),
        })
    );
}

#[test]
fn failed_message_is_cut_to_32767_bytes_on_a_char_boundary() {
    // AbstractResultMessageCodec (1.4.0+) cuts msg to Short.MAX_VALUE chars;
    // here it is cut to as many whole chars as fit 32767 bytes.
    let long = "é".repeat(20_000); // 40 000 bytes
    let msg = Message::BranchReportResponse(BranchReportResponse {
        result_code: ResultCode::Failed,
        msg: long,
        transaction_exception_code: TransactionExceptionCode::Io,
    });
    let bytes = body_bytes(&msg);
    assert_eq!(
        &bytes[..5],
        &hex("000e | 00 | 7ffe")[..],
        "16383 two-byte chars = 32766 bytes"
    );
    let Message::BranchReportResponse(decoded) =
        decode_body(&bytes, &FrameLimits::default()).unwrap()
    else {
        panic!("wrong type");
    };
    assert_eq!(decoded.msg, "é".repeat(16_383));
    assert_eq!(
        decoded.transaction_exception_code,
        TransactionExceptionCode::Io
    );
}

#[test]
fn seata_go_failed_branch_responses_are_understood() {
    // seata-go pkg/protocol/codec/branch_commit_response_codec.go writes a
    // failed result's msg with a one-byte length: the BranchCommitResponse
    // of BranchCommitResponseSerializerTest as seata-go sends it.
    let go = "0004 | 00 | 03 616263 | 09 | 0002 6133 | 000000000000007b | 02";
    let expected = BranchCommitResponse {
        result_code: ResultCode::Failed,
        msg: "abc".into(),
        transaction_exception_code: TransactionExceptionCode::BranchTransactionNotExist,
        xid: "a3".into(),
        branch_id: 123,
        branch_status: BranchStatus::PhaseOneDone,
    };
    let decoded = decode_body(&hex(go), &FrameLimits::default()).unwrap();
    assert_eq!(decoded, Message::BranchCommitResponse(expected.clone()));
    // Re-encoded in Seata's layout.
    assert_eq!(
        to_hex(&body_bytes(&decoded)),
        to_hex(&hex(
            "0004 | 00 | 0003 616263 | 09 | 0002 6133 | 000000000000007b | 02"
        ))
    );
    // The same for a rollback, with an empty message.
    let go = "0006 | 00 | 00 | 05 | 0002 6133 | 000000000000007b | 0a";
    let decoded = decode_body(&hex(go), &FrameLimits::default()).unwrap();
    assert_eq!(
        decoded,
        Message::BranchRollbackResponse(BranchRollbackResponse {
            result_code: ResultCode::Failed,
            msg: String::new(),
            transaction_exception_code: TransactionExceptionCode::BranchRollbackFailedUnretriable,
            xid: "a3".into(),
            branch_id: 123,
            branch_status: BranchStatus::PhaseTwoRollbackFailedUnretryable,
        })
    );
    // Garbage fitting neither layout reports Seata's layout's error.
    assert_eq!(
        decode_err("0004 | 00 | 05 61"),
        ProtocolError::Truncated {
            field: "msg",
            needed: 1377,
            remaining: 0
        }
    );
}

#[test]
fn unknown_and_unsupported_type_codes() {
    assert_eq!(
        decode_err("03e7 | 00"),
        ProtocolError::UnknownMessageType(999)
    );
    // The heartbeat's code has no body codec in Seata either.
    assert_eq!(decode_err("0078"), ProtocolError::UnknownMessageType(120));
    assert_eq!(
        decode_err("0013 | 0000"),
        ProtocolError::UnknownMessageType(19)
    );
    assert_eq!(
        decode_err("00"),
        ProtocolError::Truncated {
            field: "message type code",
            needed: 2,
            remaining: 1
        }
    );
}

#[test]
fn truncated_and_trailing_bodies() {
    let full = hex("0003 | 0002 6133 | 000000000000007b | 00 | 0001 74 | 00000003 616263");
    for end in 0..full.len() {
        assert!(
            matches!(
                decode_body(&full[..end], &FrameLimits::default()),
                Err(ProtocolError::Truncated { .. })
            ),
            "prefix of {end} bytes"
        );
    }
    let mut longer = full.clone();
    longer.push(0);
    assert_eq!(
        decode_body(&longer, &FrameLimits::default()).unwrap_err(),
        ProtocolError::TrailingBytes {
            context: "message body",
            count: 1
        }
    );
}

#[test]
fn negative_lengths() {
    assert_eq!(
        decode_err("0007 | ffff | 0000"),
        ProtocolError::NegativeLength {
            field: "xid",
            length: -1
        }
    );
    assert_eq!(
        decode_err("000b | 0000 | 00 | 0000 | 80000000 | 00000000"),
        ProtocolError::NegativeLength {
            field: "lock_key",
            length: i32::MIN
        }
    );
    assert!(matches!(
        decode_err("003b | 00000002 | ffff"),
        ProtocolError::NegativeLength {
            field: "message count",
            ..
        }
    ));
    assert!(matches!(
        decode_err("003b | ffffffff"),
        ProtocolError::NegativeLength {
            field: "batch length",
            ..
        }
    ));
}

#[test]
fn invalid_enum_and_boolean_values() {
    let invalid = |field, value| ProtocolError::InvalidValue { field, value };
    assert_eq!(decode_err("0012 | 02 | 00 | 09"), invalid("result_code", 2));
    // 23 is Broken in 2.x, past the end of the 1.x exception codes.
    assert_eq!(
        decode_err("0012 | 01 | 17 | 09"),
        invalid("transaction_exception_code", 23)
    );
    assert_eq!(
        decode_err("0012 | 01 | 00 | 12"),
        invalid("global_status", 18)
    );
    assert_eq!(
        decode_err("006f | 04 | 0000 | 0007"),
        invalid("branch_type", 4)
    );
    assert_eq!(
        decode_err("0011 | 0000 | 0000 | fe"),
        invalid("global_status", 254)
    );
    assert_eq!(
        decode_err("0004 | 01 | 00 | 0000 | 0000000000000001 | 0e"),
        invalid("branch_status", 14)
    );
    assert_eq!(decode_err("0066 | 02 | 0000"), invalid("identified", 2));
    assert_eq!(
        decode_err("0016 | 01 | 00 | 0100"),
        invalid("lockable", 256)
    );
}

#[test]
fn enum_codes_match_seata() {
    // reference/seata.md and GlobalStatus/BranchStatus/TransactionExceptionCode.java.
    assert_eq!(GlobalStatus::ALL.len(), 18);
    assert_eq!(GlobalStatus::RollbackRetryTimeout.code(), 17);
    assert_eq!(BranchStatus::ALL.len(), 14);
    assert_eq!(BranchStatus::PhaseOneRdonly.java_name(), "PhaseOne_RDONLY");
    assert_eq!(TransactionExceptionCode::ALL.len(), 23);
    assert_eq!(TransactionExceptionCode::LockKeyConflictFailFast.code(), 19);
    assert_eq!(TransactionExceptionCode::Broken.code(), 22);
    assert_eq!(BranchType::Xa.code(), 3);
    for (i, status) in GlobalStatus::ALL.iter().enumerate() {
        assert_eq!(usize::from(status.code()), i);
        assert_eq!(GlobalStatus::from_code(status.code()), Some(*status));
    }
    for (i, status) in BranchStatus::ALL.iter().enumerate() {
        assert_eq!(usize::from(status.code()), i);
    }
    for (i, code) in TransactionExceptionCode::ALL.iter().enumerate() {
        assert_eq!(usize::from(code.code()), i);
    }
    assert_eq!(ResultCode::Success.to_string(), "Success");
}

#[test]
fn batch_contents_are_checked() {
    let unexpected =
        |type_code, context| ProtocolError::UnexpectedMessageType { type_code, context };
    let merged = "inside a MergedWarpMessage (requests only)";
    let results = "inside a MergeResultMessage (results only)";
    // A response inside a MergedWarpMessage.
    assert_eq!(
        decode_err("003b | 00000007 | 0001 | 000e 01 00 | 00"),
        unexpected(14, merged)
    );
    // A batch inside a batch.
    assert_eq!(
        decode_err("003b | 0000000a | 0001 | 003b 00000002 0000"),
        unexpected(59, merged)
    );
    // A request inside a MergeResultMessage.
    assert_eq!(
        decode_err("003c | 00000008 | 0001 | 000f 0000 0000"),
        unexpected(15, results)
    );
    // An unknown code inside a batch.
    assert_eq!(
        decode_err("003c | 00000004 | 0001 | 0400"),
        ProtocolError::UnknownMessageType(1024)
    );
    // The content length must cover exactly the rest of the body.
    assert_eq!(
        decode_err("003b | 00000003 | 0000"),
        ProtocolError::BatchLengthMismatch {
            declared: 3,
            actual: 2
        }
    );
    // msgIds must pair up with the messages: one id for two messages.
    assert!(matches!(
        decode_err(
            "003b | 0000001a | 0002 | 0001 00000bb8 0002 7831 | 0001 00000bb8 0002 7832 | 00000001"
        ),
        ProtocolError::Truncated {
            field: "msg_ids",
            ..
        }
    ));
    // BatchResultMessage ids are mandatory.
    assert!(matches!(
        decode_err("0079 | 00000006 | 0001 | 000e 01 00"),
        ProtocolError::Truncated {
            field: "msg_ids",
            ..
        }
    ));
    // Too many messages for the limit, refused before decoding them.
    let limits = FrameLimits {
        max_batch_messages: 1,
        ..FrameLimits::default()
    };
    assert_eq!(
        decode_body(&hex("003c | 00000002 | 0002"), &limits).unwrap_err(),
        ProtocolError::TooManyMessages {
            context: "MergeResultMessage",
            count: 2,
            limit: 1
        }
    );
}

#[test]
fn encoder_refuses_what_seata_cannot_read() {
    let register = |lock_key: String| {
        Message::BranchRegisterRequest(BranchRegisterRequest {
            xid: "x".into(),
            branch_type: BranchType::At,
            resource_id: "r".into(),
            lock_key,
            application_data: String::new(),
        })
    };
    // A short-prefixed string over 32767 bytes.
    let mut too_long = register(String::new());
    if let Message::BranchRegisterRequest(m) = &mut too_long {
        m.xid = "x".repeat(32_768);
    }
    assert_eq!(
        encode_err(&too_long),
        ProtocolError::FieldTooLong {
            field: "xid",
            len: 32_768,
            max: 32_767
        }
    );
    // An int-prefixed string of 32768 bytes is fine.
    body_bytes(&register("k".repeat(32_768)));
    // Ids that do not pair up.
    let merged = Message::MergedWarpMessage(MergedWarpMessage {
        msgs: vec![begin("a"), begin("b")],
        msg_ids: vec![1],
    });
    assert_eq!(
        encode_err(&merged),
        ProtocolError::MsgIdsMismatch {
            context: "MergedWarpMessage",
            msgs: 2,
            msg_ids: 1
        }
    );
    let batch = Message::BatchResultMessage(BatchResultMessage {
        result_messages: vec![],
        msg_ids: vec![7],
    });
    assert!(matches!(
        encode_err(&batch),
        ProtocolError::MsgIdsMismatch { .. }
    ));
    // Wrong kinds of element.
    let merged = Message::MergedWarpMessage(MergedWarpMessage {
        msgs: vec![begin("a"), merged],
        msg_ids: vec![],
    });
    assert!(matches!(
        encode_err(&merged),
        ProtocolError::UnexpectedMessageType { type_code: 59, .. }
    ));
    let results = Message::MergeResultMessage(MergeResultMessage {
        msgs: vec![begin("a")],
    });
    assert!(matches!(
        encode_err(&results),
        ProtocolError::UnexpectedMessageType { type_code: 1, .. }
    ));
    // More than 32767 messages.
    let many = Message::MergedWarpMessage(MergedWarpMessage {
        msgs: vec![begin(""); 32_768],
        msg_ids: vec![],
    });
    assert!(matches!(
        encode_err(&many),
        ProtocolError::TooManyMessages { count: 32_768, .. }
    ));
}

#[test]
fn known_type_codes_are_exactly_the_decodable_ones() {
    for code in -3i16..=400 {
        let mut body = code.to_be_bytes().to_vec();
        body.extend_from_slice(&[0; 64]);
        let unknown = matches!(
            decode_body(&body, &FrameLimits::default()),
            Err(ProtocolError::UnknownMessageType(c)) if c == code
        );
        assert_eq!(unknown, !type_code::is_known(code), "type code {code}");
    }
}

#[test]
fn message_metadata() {
    let msg = Message::RegisterTmResponse(RegisterTmResponse {
        identified: false,
        version: String::new(),
    });
    assert_eq!(
        (msg.type_code(), msg.name(), msg.is_result(), msg.is_batch()),
        (102, "RegisterTMResponse", true, false)
    );
    let msg = Message::MergedWarpMessage(MergedWarpMessage {
        msgs: vec![],
        msg_ids: vec![],
    });
    assert_eq!(
        (msg.type_code(), msg.is_result(), msg.is_batch()),
        (59, false, true)
    );
    // An empty batch is valid: content length 2, count 0.
    check("003b | 00000002 | 0000", msg);
}
