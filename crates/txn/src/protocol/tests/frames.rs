//! Whole frames: byte-exact vectors (header + head map + body), streaming
//! (every prefix is incomplete, frames split anywhere), and malformed
//! headers and head maps.

use super::super::*;
use super::util::{XorShift, frame_bytes, hex, to_hex};

fn limits() -> FrameLimits {
    FrameLimits::default()
}

fn branch_commit_request() -> Message {
    Message::BranchCommitRequest(BranchCommitRequest {
        xid: "xid-1234".into(),
        branch_id: 12345,
        branch_type: BranchType::At,
        resource_id: "resource-1234".into(),
        application_data: "application".into(),
    })
}

/// (name, hex, frame) for every frame vector.
pub(super) fn frame_vectors() -> Vec<(&'static str, &'static str, Frame)> {
    let mut v = Vec::new();

    // test/src/test/java/io/seata/core/rpc/netty/v1/ProtocolV1SerializerTest
    // (with ProtocolV1Client.sendRpc): the first request (id 1 from the
    // client's counter, SEATA codec, no compression, sync request) with head
    // map {tracerId: "xxadadadada", token: "adadadad", hello: null} and a
    // BranchCommitRequest. The entries are in the order Java's HashMap
    // (16 buckets) iterates them: hello (bucket 11), tracerId then token
    // (both bucket 15, in insertion order). Head length 16 + 49 = 0x41,
    // full length 0x41 + 51 = 0x74.
    let mut frame = Frame::new(1, FrameBody::Request(branch_commit_request()));
    frame.head_map.insert("hello", None);
    frame
        .head_map
        .insert("tracerId", Some("xxadadadada".into()));
    frame.head_map.insert("token", Some("adadadad".into()));
    v.push((
        "ProtocolV1SerializerTest request",
        "dada | 01 | 00000074 | 0041 | 00 | 01 | 00 | 00000001 \
         | 0005 68656c6c6f ffff \
         | 0008 7472616365724964 000b 7878616461646164616461 \
         | 0005 746f6b656e 0008 6164616461646164 \
         | 0003 | 0008 7869642d31323334 | 0000000000003039 | 00 | 000d 7265736f757263652d31323334 \
         | 0000000b 6170706c69636174696f6e",
        frame,
    ));

    // ProtocolV1Encoder with HeartbeatMessage.PING: message type 3, no body.
    v.push((
        "heartbeat ping",
        "dada | 01 | 00000010 | 0010 | 03 | 01 | 00 | 00000007",
        Frame::new(7, FrameBody::HeartbeatRequest),
    ));
    // The server's PONG echoes the ping's id (buildResponseMessage).
    v.push((
        "heartbeat pong",
        "dada | 01 | 00000010 | 0010 | 04 | 01 | 00 | 00000007",
        Frame::new(7, FrameBody::HeartbeatResponse),
    ));

    // test/.../netty/v1/HeadMapSerializerTest.encode: {"1":"2", "":"x",
    // "a":"", "b":null} is 21 bytes; Java's HashMap iterates "" (bucket 0),
    // "1" then "a" (bucket 1), "b" (bucket 2). Carried by a ping.
    let mut frame = Frame::new(2, FrameBody::HeartbeatRequest);
    frame.head_map.insert("", Some("x".into()));
    frame.head_map.insert("1", Some("2".into()));
    frame.head_map.insert("a", Some(String::new()));
    frame.head_map.insert("b", None);
    v.push((
        "HeadMapSerializerTest map on a ping",
        "dada | 01 | 00000025 | 0025 | 03 | 01 | 00 | 00000002 \
         | 0000 0001 78 | 0001 31 0001 32 | 0001 61 0000 | 0001 62 ffff",
        frame,
    ));

    // A response: GlobalBeginResponseSerializerTest's body answering
    // request 42.
    v.push((
        "GlobalBeginResponse response",
        "dada | 01 | 00000026 | 0010 | 01 | 01 | 00 | 0000002a \
         | 0002 | 00 | 0004 61626373 | 0b | 0004 32343534 | 0004 61627364",
        Frame::new(
            42,
            FrameBody::Response(Message::GlobalBeginResponse(GlobalBeginResponse {
                result_code: ResultCode::Failed,
                msg: "abcs".into(),
                transaction_exception_code: TransactionExceptionCode::GlobalTransactionNotActive,
                xid: "2454".into(),
                extra_data: "absd".into(),
            })),
        ),
    ));

    // MergedWarpMessageSerializerTest's body as clients since 1.3.0 send it
    // (AbstractNettyRemotingClient's merge thread calls sendAsyncRequest:
    // oneway, type 2; 1.2.0 sent type 0 and no ids), and
    // BatchResultMessageSerializerTest's body answering it (a response, type
    // 1, with the merged frame's id).
    let begin = |name: &str| {
        Message::GlobalBeginRequest(GlobalBeginRequest {
            timeout: 3000,
            transaction_name: name.into(),
        })
    };
    v.push((
        "MergedWarpMessage oneway",
        "dada | 01 | 00000034 | 0010 | 02 | 01 | 00 | 00000064 \
         | 003b 0000001e 0002 0001 00000bb8 0002 7831 0001 00000bb8 0002 7832 00000001 00000002",
        Frame::new(
            100,
            FrameBody::Oneway(Message::MergedWarpMessage(MergedWarpMessage {
                msgs: vec![begin("x1"), begin("x2")],
                msg_ids: vec![1, 2],
            })),
        ),
    ));
    v.push((
        "MergedWarpMessage request from a 1.2.0 client",
        "dada | 01 | 0000002c | 0010 | 00 | 01 | 00 | 00000065 \
         | 003b 00000016 0002 0001 00000bb8 0002 7831 0001 00000bb8 0002 7832",
        Frame::new(
            101,
            FrameBody::Request(Message::MergedWarpMessage(MergedWarpMessage {
                msgs: vec![begin("x1"), begin("x2")],
                msg_ids: vec![],
            })),
        ),
    ));
    let commit = |xid: &str, branch_id, branch_status| {
        Message::BranchCommitResponse(BranchCommitResponse {
            result_code: ResultCode::Success,
            msg: String::new(),
            transaction_exception_code: TransactionExceptionCode::Unknown,
            xid: xid.into(),
            branch_id,
            branch_status,
        })
    };
    v.push((
        "BatchResultMessage response",
        "dada | 01 | 00000042 | 0010 | 01 | 01 | 00 | 00000064 \
         | 0079 0000002c 0002 0004 01 00 0002 7831 0000000000bc614e 05 \
         0004 01 00 0002 7832 0000000005397fb1 03 00000457 000008ae",
        Frame::new(
            100,
            FrameBody::Response(Message::BatchResultMessage(BatchResultMessage {
                result_messages: vec![
                    commit("x1", 12_345_678, BranchStatus::PhaseTwoCommitted),
                    commit("x2", 87_654_321, BranchStatus::PhaseOneFailed),
                ],
                msg_ids: vec![1111, 2222],
            })),
        ),
    ));

    // AbstractNettyRemotingServer.sendAsyncRequest sends oneway (type 2):
    // UndoLogDeleteRequestSerializerTest's body.
    v.push((
        "UndoLogDeleteRequest oneway",
        "dada | 01 | 00000018 | 0010 | 02 | 01 | 00 | 00000005 | 006f 00 0001 74 0007",
        Frame::new(
            5,
            FrameBody::Oneway(Message::UndoLogDeleteRequest(UndoLogDeleteRequest {
                branch_type: BranchType::At,
                resource_id: "t".into(),
                save_days: 7,
            })),
        ),
    ));
    v
}

#[test]
fn frame_vectors_encode_and_decode_exactly() {
    for (name, hex_frame, frame) in frame_vectors() {
        let bytes = hex(hex_frame);
        assert_eq!(
            to_hex(&frame_bytes(&frame)),
            to_hex(&bytes),
            "encoding {name}"
        );
        assert_eq!(
            decode_frame(&bytes, &limits()).unwrap(),
            Some((frame.clone(), bytes.len())),
            "decoding {name}"
        );
        // What follows a frame is left for the next one.
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0xda, 0xda, 0x01]);
        assert_eq!(
            decode_frame(&longer, &limits()).unwrap(),
            Some((frame, bytes.len())),
            "decoding {name} with more after it"
        );
    }
}

#[test]
fn every_prefix_of_a_frame_is_incomplete() {
    for (name, hex_frame, _) in frame_vectors() {
        let bytes = hex(hex_frame);
        for end in 0..bytes.len() {
            assert_eq!(
                decode_frame(&bytes[..end], &limits()),
                Ok(None),
                "{name}: prefix of {end} of {} bytes",
                bytes.len()
            );
        }
    }
}

#[test]
fn stream_split_at_random_points() {
    let vectors = frame_vectors();
    let mut stream = Vec::new();
    let mut expected = Vec::new();
    for _ in 0..5 {
        for (_, hex_frame, frame) in &vectors {
            stream.extend_from_slice(&hex(hex_frame));
            expected.push(frame.clone());
        }
    }
    let mut rng = XorShift::new(0x5eed);
    for _ in 0..20 {
        let mut buffer = Vec::new();
        let mut decoded = Vec::new();
        let mut fed = 0;
        while fed < stream.len() {
            let chunk = (1 + rng.below(40)).min(stream.len() - fed);
            buffer.extend_from_slice(&stream[fed..fed + chunk]);
            fed += chunk;
            while let Some((frame, used)) = decode_frame(&buffer, &limits()).unwrap() {
                decoded.push(frame);
                buffer.drain(..used);
            }
        }
        assert!(buffer.is_empty());
        assert_eq!(decoded, expected);
    }
}

fn header(full: u32, head: u16, message_type: u8, codec: u8, compressor: u8, id: u32) -> Vec<u8> {
    let mut h = vec![0xda, 0xda, 0x01];
    h.extend_from_slice(&full.to_be_bytes());
    h.extend_from_slice(&head.to_be_bytes());
    h.extend_from_slice(&[message_type, codec, compressor]);
    h.extend_from_slice(&id.to_be_bytes());
    h
}

#[test]
fn bad_magic_is_refused_on_the_first_wrong_byte() {
    assert_eq!(
        decode_frame(&[0x00], &limits()),
        Err(ProtocolError::BadMagic {
            offset: 0,
            found: 0
        })
    );
    assert_eq!(
        decode_frame(&[0xda, 0xdb], &limits()),
        Err(ProtocolError::BadMagic {
            offset: 1,
            found: 0xdb
        })
    );
    // An HTTP client on the Seata port.
    assert!(matches!(
        decode_frame(b"GET / HTTP/1.1\r\n", &limits()),
        Err(ProtocolError::BadMagic { offset: 0, .. })
    ));
}

#[test]
fn bad_version_is_refused() {
    assert_eq!(
        decode_frame(&[0xda, 0xda, 0x00], &limits()),
        Err(ProtocolError::UnsupportedVersion(0))
    );
    assert_eq!(
        decode_frame(&[0xda, 0xda, 0x02, 0, 0], &limits()),
        Err(ProtocolError::UnsupportedVersion(2))
    );
}

#[test]
fn oversize_frames_are_refused_before_their_bytes_arrive() {
    let declared = (SEATA_MAX_FRAME_BYTES + 1) as u32;
    let h = header(declared, 16, 0, 1, 0, 1);
    // Seven bytes are enough to know.
    assert_eq!(
        decode_frame(&h[..7], &limits()),
        Err(ProtocolError::FrameTooLarge {
            declared,
            limit: SEATA_MAX_FRAME_BYTES
        })
    );
    assert_eq!(
        decode_header(&header(u32::MAX, 16, 0, 1, 0, 1), &limits()),
        Err(ProtocolError::FrameTooLarge {
            declared: u32::MAX,
            limit: SEATA_MAX_FRAME_BYTES
        })
    );
    // Exactly the limit is fine: the decoder waits for the rest.
    let h = header(SEATA_MAX_FRAME_BYTES as u32, 16, 0, 1, 0, 1);
    assert_eq!(decode_frame(&h, &limits()), Ok(None));
    // A tighter limit.
    let small = FrameLimits {
        max_frame_bytes: 64,
        ..limits()
    };
    assert_eq!(
        decode_frame(&header(65, 16, 0, 1, 0, 1)[..7], &small),
        Err(ProtocolError::FrameTooLarge {
            declared: 65,
            limit: 64
        })
    );
}

#[test]
fn a_frame_of_exactly_8_mib_round_trips_and_one_byte_more_is_refused() {
    // BranchRegisterRequest: 16 header + 2 code + 3 xid + 1 type + 3
    // resource + 4 + lock key + 4 application data.
    let fixed = 16 + 2 + 3 + 1 + 3 + 4 + 4;
    let request = |lock_key_len: usize| {
        Frame::new(
            9,
            FrameBody::Request(Message::BranchRegisterRequest(BranchRegisterRequest {
                xid: "x".into(),
                branch_type: BranchType::At,
                resource_id: "r".into(),
                lock_key: "k".repeat(lock_key_len),
                application_data: String::new(),
            })),
        )
    };
    let frame = request(SEATA_MAX_FRAME_BYTES - fixed);
    let bytes = frame_bytes(&frame);
    assert_eq!(bytes.len(), SEATA_MAX_FRAME_BYTES);
    assert_eq!(
        decode_frame(&bytes, &limits()).unwrap(),
        Some((frame, bytes.len()))
    );

    let mut out = vec![1, 2, 3];
    assert_eq!(
        encode_frame(&request(SEATA_MAX_FRAME_BYTES - fixed + 1), &mut out),
        Err(ProtocolError::EncodedFrameTooLarge {
            len: SEATA_MAX_FRAME_BYTES + 1,
            limit: SEATA_MAX_FRAME_BYTES
        })
    );
    assert_eq!(
        out,
        vec![1, 2, 3],
        "a failed encode leaves the buffer as it was"
    );
}

#[test]
fn lengths_that_cannot_be_right() {
    assert_eq!(
        decode_frame(&header(15, 16, 3, 1, 0, 1)[..7], &limits()),
        Err(ProtocolError::FrameTooShort(15))
    );
    let bad = |full, head| ProtocolError::BadHeadLength {
        head_length: head,
        full_length: full,
    };
    assert_eq!(
        decode_frame(&header(16, 15, 3, 1, 0, 1)[..9], &limits()),
        Err(bad(16, 15))
    );
    assert_eq!(
        decode_frame(&header(20, 21, 3, 1, 0, 1)[..9], &limits()),
        Err(bad(20, 21))
    );
    // Java reads the head length as a signed short.
    assert_eq!(
        decode_frame(&header(40_000, 32_768, 3, 1, 0, 1)[..9], &limits()),
        Err(bad(40_000, 32_768))
    );
}

#[test]
fn unknown_frame_type() {
    assert_eq!(
        decode_frame(&header(18, 16, 5, 1, 0, 1)[..10], &limits()),
        Err(ProtocolError::UnknownFrameType(5))
    );
}

#[test]
fn other_codecs_and_compressors_are_refused_with_the_request_id() {
    // SerializerType HESSIAN is 0x16; CompressorType GZIP is 1.
    assert_eq!(
        decode_frame(&header(30, 16, 0, 0x16, 0, 77), &limits()),
        Err(ProtocolError::UnsupportedCodec {
            codec: 0x16,
            request_id: 77
        })
    );
    assert_eq!(
        decode_frame(&header(30, 16, 0, 1, 1, 78), &limits()),
        Err(ProtocolError::UnsupportedCompressor {
            compressor: 1,
            request_id: 78
        })
    );
    // Also on heartbeats, which have no body to decompress.
    assert!(matches!(
        decode_frame(&header(16, 16, 3, 0x02, 0, 1), &limits()),
        Err(ProtocolError::UnsupportedCodec { codec: 2, .. })
    ));
    let message = ProtocolError::UnsupportedCodec {
        codec: 0x16,
        request_id: 77,
    }
    .to_string();
    assert_eq!(
        message,
        "unsupported codec 0x16 in frame 77: only the SEATA codec (0x01) is supported"
    );
}

#[test]
fn heartbeats_have_no_body_and_messages_have_one() {
    assert_eq!(
        decode_frame(&header(18, 16, 3, 1, 0, 1)[..10], &limits()),
        Err(ProtocolError::HeartbeatWithBody(2))
    );
    assert_eq!(
        decode_frame(&header(16, 16, 0, 1, 0, 1)[..10], &limits()),
        Err(ProtocolError::EmptyBody(0))
    );
    assert_eq!(
        decode_frame(&header(16, 16, 2, 1, 0, 1)[..10], &limits()),
        Err(ProtocolError::EmptyBody(2))
    );
}

#[test]
fn unknown_body_type_in_a_complete_frame() {
    let mut bytes = header(20, 16, 0, 1, 0, 3);
    bytes.extend_from_slice(&hex("03e7 0000"));
    assert_eq!(decode_frame(&bytes[..19], &limits()), Ok(None));
    assert_eq!(
        decode_frame(&bytes, &limits()),
        Err(ProtocolError::UnknownMessageType(999))
    );
    // A heartbeat's type code as a request body.
    let mut bytes = header(18, 16, 0, 1, 0, 3);
    bytes.extend_from_slice(&hex("0078"));
    assert_eq!(
        decode_frame(&bytes, &limits()),
        Err(ProtocolError::UnknownMessageType(120))
    );
}

/// A ping carrying the given head map bytes.
fn ping_with_head_map(map: &str) -> Vec<u8> {
    let map = hex(map);
    let len = 16 + map.len();
    let mut bytes = header(len as u32, len as u16, 3, 1, 0, 1);
    bytes.extend_from_slice(&map);
    bytes
}

#[test]
fn bad_head_maps() {
    assert_eq!(
        decode_frame(&ping_with_head_map("ffff 0000"), &limits()),
        Err(ProtocolError::BadHeadMap("null key"))
    );
    assert_eq!(
        decode_frame(
            &ping_with_head_map("0001 61 0000 | 0001 61 ffff"),
            &limits()
        ),
        Err(ProtocolError::BadHeadMap("repeated key"))
    );
    // The value runs past the head map (Java would read on into the body).
    let mut bytes = header(28, 22, 0, 1, 0, 1);
    bytes.extend_from_slice(&hex("0001 61 0005 62"));
    bytes.extend_from_slice(&hex("000f 0000 0000"));
    assert_eq!(
        decode_frame(&bytes, &limits()),
        Err(ProtocolError::Truncated {
            field: "head map value",
            needed: 5,
            remaining: 1
        })
    );
    // A key length cut in half by the end of the map.
    assert_eq!(
        decode_frame(&ping_with_head_map("0001 61 0000 | 00"), &limits()),
        Err(ProtocolError::Truncated {
            field: "head map key",
            needed: 2,
            remaining: 1
        })
    );
    assert_eq!(
        decode_frame(&ping_with_head_map("fffe 0000"), &limits()),
        Err(ProtocolError::NegativeLength {
            field: "head map key",
            length: -2
        })
    );
    let few = FrameLimits {
        max_head_map_entries: 2,
        ..limits()
    };
    assert_eq!(
        decode_frame(
            &ping_with_head_map("0001 61 0000 | 0001 62 0000 | 0001 63 0000"),
            &few
        ),
        Err(ProtocolError::HeadMapTooManyEntries { limit: 2 })
    );
    assert!(decode_frame(&ping_with_head_map("0001 61 0000 | 0001 62 0000"), &few).is_ok());
    // Too large: refused from the header alone.
    let small = FrameLimits {
        max_head_map_bytes: 4,
        ..limits()
    };
    let bytes = ping_with_head_map("0001 61 0000");
    assert_eq!(
        decode_frame(&bytes[..9], &small),
        Err(ProtocolError::HeadMapTooLarge { bytes: 5, limit: 4 })
    );
}

#[test]
fn head_map_api() {
    let mut map: HeadMap = [("a", Some("1".to_string())), ("b", None)]
        .into_iter()
        .collect();
    assert_eq!(map.get("a"), Some(Some("1")));
    assert_eq!(map.get("b"), Some(None));
    assert_eq!(map.get("c"), None);
    assert_eq!(map.insert("a", Some("2".into())), Some(Some("1".into())));
    assert_eq!(
        map.iter().collect::<Vec<_>>(),
        vec![("a", Some("2")), ("b", None)]
    );
    assert_eq!(map.encoded_len(), 4 + 1 + 1 + 4 + 1);
    assert_eq!(map.remove("a"), Some(Some("2".into())));
    assert_eq!(map.len(), 1);
    assert!(!map.is_empty());
}

#[test]
fn encoder_refuses_head_maps_seata_cannot_read() {
    let mut frame = Frame::new(1, FrameBody::HeartbeatRequest);
    frame.head_map.insert("k".repeat(32_768), None);
    let mut out = vec![9];
    assert_eq!(
        encode_frame(&frame, &mut out),
        Err(ProtocolError::FieldTooLong {
            field: "head map key",
            len: 32_768,
            max: 32_767
        })
    );
    assert_eq!(out, vec![9]);
    // Each string fits, the whole map does not: 16 + 4 + 32 000 + 1 000 > 32 767.
    let mut frame = Frame::new(1, FrameBody::HeartbeatRequest);
    frame
        .head_map
        .insert("k".repeat(32_000), Some("v".repeat(1_000)));
    assert_eq!(
        encode_frame(&frame, &mut out),
        Err(ProtocolError::FieldTooLong {
            field: "head map",
            len: 33_004,
            max: 32_751
        })
    );
    assert_eq!(out, vec![9]);
}

#[test]
fn decode_header_exposes_the_request_id() {
    let bytes = hex("dada | 01 | 00000026 | 0010 | 01 | 01 | 00 | 0000002a");
    assert_eq!(
        decode_header(&bytes, &limits()),
        Ok(Some(FrameHeader {
            full_length: 0x26,
            head_length: 16,
            message_type: MSGTYPE_RESPONSE,
            codec: CODEC_SEATA,
            compressor: COMPRESSOR_NONE,
            request_id: 42,
        }))
    );
    assert_eq!(decode_header(&bytes[..15], &limits()), Ok(None));
}
