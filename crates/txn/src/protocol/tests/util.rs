//! Test helpers: hex, a seeded xorshift generator, random messages and frames.

use super::super::*;

/// Parses hex, ignoring whitespace and `|` (used to separate fields).
pub(super) fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
    assert!(
        s.bytes()
            .all(|b| b.is_ascii_hexdigit() || b.is_ascii_whitespace() || b == b'|'),
        "bad hex literal {s}"
    );
    assert_eq!(digits.len() % 2, 0, "odd hex literal {s}");
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

pub(super) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Encodes `frame` into a fresh vector.
pub(super) fn frame_bytes(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(frame, &mut out).unwrap();
    out
}

/// Encodes `msg` into a fresh vector.
pub(super) fn body_bytes(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode_body(msg, &mut out).unwrap();
    out
}

/// Marsaglia's xorshift64, seeded: every run sees the same inputs.
pub(super) struct XorShift(u64);

impl XorShift {
    pub(super) fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-ish in `0..n` (n > 0).
    pub(super) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub(super) fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    pub(super) fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    pub(super) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    pub(super) fn i16(&mut self) -> i16 {
        self.next_u64() as i16
    }

    pub(super) fn i32(&mut self) -> i32 {
        self.next_u64() as i32
    }

    pub(super) fn u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    pub(super) fn i64(&mut self) -> i64 {
        self.next_u64() as i64
    }

    pub(super) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    /// A string of 1- to 4-byte characters, usually short, sometimes long.
    pub(super) fn string(&mut self) -> String {
        const CHARS: &[char] = &[
            'a', 'Z', '0', ':', ',', ';', '^', ' ', '\0', 'é', '你', '好', '🚀',
        ];
        let len = match self.below(10) {
            0 => 0,
            1 => self.below(400),
            _ => self.below(24),
        };
        (0..len).map(|_| self.pick(CHARS)).collect()
    }
}

fn result_code(rng: &mut XorShift) -> ResultCode {
    rng.pick(ResultCode::ALL)
}

/// A result message's `msg` only travels when the result failed.
fn msg_for(rng: &mut XorShift, code: ResultCode) -> String {
    match code {
        ResultCode::Failed => rng.string(),
        ResultCode::Success => String::new(),
    }
}

fn tx_response(rng: &mut XorShift) -> TransactionResponse {
    let result_code = result_code(rng);
    TransactionResponse {
        result_code,
        msg: msg_for(rng, result_code),
        transaction_exception_code: rng.pick(TransactionExceptionCode::ALL),
    }
}

fn global_end_response(rng: &mut XorShift) -> GlobalEndResponse {
    let head = tx_response(rng);
    GlobalEndResponse {
        result_code: head.result_code,
        msg: head.msg,
        transaction_exception_code: head.transaction_exception_code,
        global_status: rng.pick(GlobalStatus::ALL),
    }
}

fn branch_end_request(rng: &mut XorShift) -> BranchEndRequest {
    BranchEndRequest {
        xid: rng.string(),
        branch_id: rng.i64(),
        branch_type: rng.pick(BranchType::ALL),
        resource_id: rng.string(),
        application_data: rng.string(),
    }
}

fn branch_end_response(rng: &mut XorShift) -> BranchEndResponse {
    let head = tx_response(rng);
    BranchEndResponse {
        result_code: head.result_code,
        msg: head.msg,
        transaction_exception_code: head.transaction_exception_code,
        xid: rng.string(),
        branch_id: rng.i64(),
        branch_status: rng.pick(BranchStatus::ALL),
    }
}

fn global_end_request(rng: &mut XorShift) -> GlobalEndRequest {
    GlobalEndRequest {
        xid: rng.string(),
        extra_data: rng.string(),
    }
}

fn branch_register_request(rng: &mut XorShift) -> BranchRegisterRequest {
    BranchRegisterRequest {
        xid: rng.string(),
        branch_type: rng.pick(BranchType::ALL),
        resource_id: rng.string(),
        lock_key: rng.string(),
        application_data: rng.string(),
    }
}

fn identify_response(rng: &mut XorShift) -> IdentifyResponse {
    IdentifyResponse {
        identified: rng.chance(2),
        version: rng.string(),
    }
}

/// Any message that is not a batch.
pub(super) fn random_leaf(rng: &mut XorShift) -> Message {
    match rng.below(25) {
        0 => Message::GlobalBeginRequest(GlobalBeginRequest {
            timeout: rng.i32(),
            transaction_name: rng.string(),
        }),
        1 => {
            let head = tx_response(rng);
            Message::GlobalBeginResponse(GlobalBeginResponse {
                result_code: head.result_code,
                msg: head.msg,
                transaction_exception_code: head.transaction_exception_code,
                xid: rng.string(),
                extra_data: rng.string(),
            })
        }
        2 => Message::BranchCommitRequest(branch_end_request(rng)),
        3 => Message::BranchCommitResponse(branch_end_response(rng)),
        4 => Message::BranchRollbackRequest(branch_end_request(rng)),
        5 => Message::BranchRollbackResponse(branch_end_response(rng)),
        6 => Message::GlobalCommitRequest(global_end_request(rng)),
        7 => Message::GlobalCommitResponse(global_end_response(rng)),
        8 => Message::GlobalRollbackRequest(global_end_request(rng)),
        9 => Message::GlobalRollbackResponse(global_end_response(rng)),
        10 => Message::BranchRegisterRequest(branch_register_request(rng)),
        11 => {
            let head = tx_response(rng);
            Message::BranchRegisterResponse(BranchRegisterResponse {
                result_code: head.result_code,
                msg: head.msg,
                transaction_exception_code: head.transaction_exception_code,
                branch_id: rng.i64(),
            })
        }
        12 => Message::BranchReportRequest(BranchReportRequest {
            xid: rng.string(),
            branch_id: rng.i64(),
            status: rng.pick(BranchStatus::ALL),
            resource_id: rng.string(),
            application_data: rng.string(),
            branch_type: rng.pick(BranchType::ALL),
        }),
        13 => Message::BranchReportResponse(tx_response(rng)),
        14 => Message::GlobalStatusRequest(global_end_request(rng)),
        15 => Message::GlobalStatusResponse(global_end_response(rng)),
        16 => Message::GlobalReportRequest(GlobalReportRequest {
            xid: rng.string(),
            extra_data: rng.string(),
            global_status: if rng.chance(4) {
                None
            } else {
                Some(rng.pick(GlobalStatus::ALL))
            },
        }),
        17 => Message::GlobalReportResponse(global_end_response(rng)),
        18 => Message::GlobalLockQueryRequest(branch_register_request(rng)),
        19 => {
            let head = tx_response(rng);
            Message::GlobalLockQueryResponse(GlobalLockQueryResponse {
                result_code: head.result_code,
                msg: head.msg,
                transaction_exception_code: head.transaction_exception_code,
                lockable: rng.chance(2),
            })
        }
        20 => Message::RegisterTmRequest(RegisterTmRequest {
            version: rng.string(),
            application_id: rng.string(),
            transaction_service_group: rng.string(),
            extra_data: rng.string(),
        }),
        21 => Message::RegisterTmResponse(identify_response(rng)),
        22 => Message::RegisterRmRequest(RegisterRmRequest {
            version: rng.string(),
            application_id: rng.string(),
            transaction_service_group: rng.string(),
            extra_data: rng.string(),
            resource_ids: rng.string(),
        }),
        23 => Message::RegisterRmResponse(identify_response(rng)),
        _ => Message::UndoLogDeleteRequest(UndoLogDeleteRequest {
            branch_type: rng.pick(BranchType::ALL),
            resource_id: rng.string(),
            save_days: rng.i16(),
        }),
    }
}

fn random_of_kind(rng: &mut XorShift, result: bool) -> Message {
    loop {
        let msg = random_leaf(rng);
        if msg.is_result() == result {
            return msg;
        }
    }
}

/// Any message, batches included (with up to 5 elements).
pub(super) fn random_message(rng: &mut XorShift) -> Message {
    let n = rng.below(6);
    match rng.below(10) {
        0 => {
            let msgs: Vec<Message> = (0..n).map(|_| random_of_kind(rng, false)).collect();
            let msg_ids = if rng.chance(3) {
                Vec::new()
            } else {
                (0..n).map(|_| rng.u32()).collect()
            };
            Message::MergedWarpMessage(MergedWarpMessage { msgs, msg_ids })
        }
        1 => Message::MergeResultMessage(MergeResultMessage {
            msgs: (0..n).map(|_| random_of_kind(rng, true)).collect(),
        }),
        2 => Message::BatchResultMessage(BatchResultMessage {
            result_messages: (0..n).map(|_| random_of_kind(rng, true)).collect(),
            msg_ids: (0..n).map(|_| rng.u32()).collect(),
        }),
        _ => random_leaf(rng),
    }
}

/// Any frame: random type, request id, head map and message.
pub(super) fn random_frame(rng: &mut XorShift) -> Frame {
    let body = match rng.below(5) {
        0 => FrameBody::Request(random_message(rng)),
        1 => FrameBody::Response(random_message(rng)),
        2 => FrameBody::Oneway(random_message(rng)),
        3 => FrameBody::HeartbeatRequest,
        _ => FrameBody::HeartbeatResponse,
    };
    let mut frame = Frame::new(rng.u32(), body);
    if rng.chance(3) {
        for i in 0..rng.below(5) {
            let value = if rng.chance(4) {
                None
            } else {
                Some(rng.string())
            };
            frame
                .head_map
                .insert(format!("k{i}{}", rng.string()), value);
        }
    }
    frame
}
