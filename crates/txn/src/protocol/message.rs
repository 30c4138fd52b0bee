//! The messages of the SEATA codec and the enums they carry.
//!
//! Field names follow Seata's Java classes (`xid`, `branch_id`,
//! `application_data`, ...). Where several Java classes share one layout
//! (their codecs inherit from one abstract codec) they share one Rust struct,
//! and the Java class names are type aliases of it: `BranchCommitRequest`
//! and `BranchRollbackRequest` are both [`BranchEndRequest`].
//!
//! **Strings.** Seata writes a null string and an empty string the same way
//! (length 0) and reads length 0 back as null, so on the wire the two cannot
//! be told apart. Every string field here is a plain `String` and `""` stands
//! for Java's null. (The head map is the exception: it writes null as length
//! -1, see [`HeadMap`](super::HeadMap).)

use std::fmt;

/// Defines a `#[repr(u8)]` enum whose discriminants are the wire codes, with
/// `code`, `from_code`, `java_name` and `ALL`.
macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal => $java:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum $name {
            $( $(#[$vmeta])* $variant = $code, )+
        }

        impl $name {
            /// Every value, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The byte written on the wire.
            pub const fn code(self) -> u8 {
                self as u8
            }

            /// The value with this wire code, if any.
            pub const fn from_code(code: u8) -> Option<Self> {
                match code {
                    $( $code => Some($name::$variant), )+
                    _ => None,
                }
            }

            /// The Java enum constant's name, for logs.
            pub const fn java_name(self) -> &'static str {
                match self {
                    $( $name::$variant => $java, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.java_name())
            }
        }
    };
}

code_enum! {
    /// `ResultCode`: written as its ordinal.
    pub enum ResultCode {
        Failed = 0 => "Failed",
        Success = 1 => "Success",
    }
}

code_enum! {
    /// `BranchType`: written as its ordinal (the same in 1.2.0, 1.8.0 and 2.x).
    pub enum BranchType {
        At = 0 => "AT",
        Tcc = 1 => "TCC",
        Saga = 2 => "SAGA",
        Xa = 3 => "XA",
    }
}

code_enum! {
    /// `GlobalStatus`: written as its code. 16 and 17 were added in 1.5.0.
    pub enum GlobalStatus {
        UnKnown = 0 => "UnKnown",
        Begin = 1 => "Begin",
        Committing = 2 => "Committing",
        CommitRetrying = 3 => "CommitRetrying",
        Rollbacking = 4 => "Rollbacking",
        RollbackRetrying = 5 => "RollbackRetrying",
        TimeoutRollbacking = 6 => "TimeoutRollbacking",
        TimeoutRollbackRetrying = 7 => "TimeoutRollbackRetrying",
        AsyncCommitting = 8 => "AsyncCommitting",
        Committed = 9 => "Committed",
        CommitFailed = 10 => "CommitFailed",
        Rollbacked = 11 => "Rollbacked",
        RollbackFailed = 12 => "RollbackFailed",
        TimeoutRollbacked = 13 => "TimeoutRollbacked",
        TimeoutRollbackFailed = 14 => "TimeoutRollbackFailed",
        Finished = 15 => "Finished",
        /// Since 1.5: failed to commit after retrying past the retry timeout.
        CommitRetryTimeout = 16 => "CommitRetryTimeout",
        /// Since 1.5: failed to roll back after retrying past the retry timeout.
        RollbackRetryTimeout = 17 => "RollbackRetryTimeout",
    }
}

code_enum! {
    /// `BranchStatus`: written as its code. 11 and 12 were added in
    /// 1.2.0; 13 (`PhaseOne_RDONLY`) only exists since 2.2 and is accepted so
    /// that 2.2+ XA clients can report it, but must not be sent to 1.x peers.
    pub enum BranchStatus {
        Unknown = 0 => "Unknown",
        Registered = 1 => "Registered",
        PhaseOneDone = 2 => "PhaseOne_Done",
        PhaseOneFailed = 3 => "PhaseOne_Failed",
        PhaseOneTimeout = 4 => "PhaseOne_Timeout",
        PhaseTwoCommitted = 5 => "PhaseTwo_Committed",
        PhaseTwoCommitFailedRetryable = 6 => "PhaseTwo_CommitFailed_Retryable",
        PhaseTwoCommitFailedUnretryable = 7 => "PhaseTwo_CommitFailed_Unretryable",
        PhaseTwoRollbacked = 8 => "PhaseTwo_Rollbacked",
        PhaseTwoRollbackFailedRetryable = 9 => "PhaseTwo_RollbackFailed_Retryable",
        PhaseTwoRollbackFailedUnretryable = 10 => "PhaseTwo_RollbackFailed_Unretryable",
        PhaseTwoCommitFailedXaerNotaRetryable = 11 => "PhaseTwo_CommitFailed_XAER_NOTA_Retryable",
        PhaseTwoRollbackFailedXaerNotaRetryable = 12 => "PhaseTwo_RollbackFailed_XAER_NOTA_Retryable",
        PhaseOneRdonly = 13 => "PhaseOne_RDONLY",
    }
}

code_enum! {
    /// `TransactionExceptionCode`: written as its ordinal, **in the 1.x
    /// order** (1.2.0 has 0..=18, 1.5.0 appends 19, 1.7.0 20..=22). Seata 2.1
    /// inserted `NotRaftLeader` at 19, shifting the last four by one: to a
    /// 2.1+ peer 19..=22 mean `NotRaftLeader`..`CommitHeuristic`, and its 23
    /// (`Broken`) is rejected here. 0..=18 mean the same everywhere.
    pub enum TransactionExceptionCode {
        Unknown = 0 => "Unknown",
        BeginFailed = 1 => "BeginFailed",
        LockKeyConflict = 2 => "LockKeyConflict",
        Io = 3 => "IO",
        BranchRollbackFailedRetriable = 4 => "BranchRollbackFailed_Retriable",
        BranchRollbackFailedUnretriable = 5 => "BranchRollbackFailed_Unretriable",
        BranchRegisterFailed = 6 => "BranchRegisterFailed",
        BranchReportFailed = 7 => "BranchReportFailed",
        LockableCheckFailed = 8 => "LockableCheckFailed",
        BranchTransactionNotExist = 9 => "BranchTransactionNotExist",
        GlobalTransactionNotExist = 10 => "GlobalTransactionNotExist",
        GlobalTransactionNotActive = 11 => "GlobalTransactionNotActive",
        GlobalTransactionStatusInvalid = 12 => "GlobalTransactionStatusInvalid",
        FailedToSendBranchCommitRequest = 13 => "FailedToSendBranchCommitRequest",
        FailedToSendBranchRollbackRequest = 14 => "FailedToSendBranchRollbackRequest",
        FailedToAddBranch = 15 => "FailedToAddBranch",
        /// Spelled `FailedLockGlobalTranscation` in 1.x.
        FailedLockGlobalTransaction = 16 => "FailedLockGlobalTranscation",
        FailedWriteSession = 17 => "FailedWriteSession",
        FailedStore = 18 => "FailedStore",
        /// Since 1.5.
        LockKeyConflictFailFast = 19 => "LockKeyConflictFailFast",
        /// Since 1.7.
        TransactionTimeout = 20 => "TransactionTimeout",
        /// Since 1.7.
        CommitHeuristic = 21 => "CommitHeuristic",
        /// Since 1.7.
        Broken = 22 => "Broken",
    }
}

/// Body type codes (Seata's `MessageType`, without the `TYPE_` prefix).
pub mod type_code {
    pub const GLOBAL_BEGIN: i16 = 1;
    pub const GLOBAL_BEGIN_RESULT: i16 = 2;
    pub const BRANCH_COMMIT: i16 = 3;
    pub const BRANCH_COMMIT_RESULT: i16 = 4;
    pub const BRANCH_ROLLBACK: i16 = 5;
    pub const BRANCH_ROLLBACK_RESULT: i16 = 6;
    pub const GLOBAL_COMMIT: i16 = 7;
    pub const GLOBAL_COMMIT_RESULT: i16 = 8;
    pub const GLOBAL_ROLLBACK: i16 = 9;
    pub const GLOBAL_ROLLBACK_RESULT: i16 = 10;
    pub const BRANCH_REGISTER: i16 = 11;
    pub const BRANCH_REGISTER_RESULT: i16 = 12;
    pub const BRANCH_STATUS_REPORT: i16 = 13;
    pub const BRANCH_STATUS_REPORT_RESULT: i16 = 14;
    pub const GLOBAL_STATUS: i16 = 15;
    pub const GLOBAL_STATUS_RESULT: i16 = 16;
    pub const GLOBAL_REPORT: i16 = 17;
    pub const GLOBAL_REPORT_RESULT: i16 = 18;
    pub const GLOBAL_LOCK_QUERY: i16 = 21;
    pub const GLOBAL_LOCK_QUERY_RESULT: i16 = 22;
    pub const SEATA_MERGE: i16 = 59;
    pub const SEATA_MERGE_RESULT: i16 = 60;
    pub const REG_CLT: i16 = 101;
    pub const REG_CLT_RESULT: i16 = 102;
    pub const REG_RM: i16 = 103;
    pub const REG_RM_RESULT: i16 = 104;
    pub const RM_DELETE_UNDOLOG: i16 = 111;
    /// Heartbeats travel as frame types 3/4 without a body; the SEATA codec
    /// has no codec for this code and neither has this one.
    pub const HEARTBEAT_MSG: i16 = 120;
    pub const BATCH_RESULT_MSG: i16 = 121;

    /// Whether the code is a result message (Java `AbstractResultMessage`).
    pub const fn is_result(code: i16) -> bool {
        matches!(
            code,
            2 | 4 | 6 | 8 | 10 | 12 | 14 | 16 | 18 | 22 | 102 | 104
        )
    }

    /// Whether the code is one of the three batch messages (59, 60, 121).
    pub const fn is_batch(code: i16) -> bool {
        matches!(code, SEATA_MERGE | SEATA_MERGE_RESULT | BATCH_RESULT_MSG)
    }

    /// Whether the code is a message this codec knows.
    pub const fn is_known(code: i16) -> bool {
        matches!(code, 1..=18 | 21 | 22 | 59 | 60 | 101..=104 | 111 | 121)
    }
}

/// `RegisterTMRequest` (101), sent by a TM when it connects. Java's
/// `AbstractIdentifyRequest` fields, each with a short length prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterTmRequest {
    /// The client's Seata version, e.g. `"1.8.0"`. A TC answers a
    /// `MergedWarpMessage` with a `BatchResultMessage` only for 1.5.0 and up.
    pub version: String,
    pub application_id: String,
    pub transaction_service_group: String,
    pub extra_data: String,
}

/// `RegisterRMRequest` (103): the identify fields plus `resource_ids`, a
/// comma-separated list with an int length prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterRmRequest {
    pub version: String,
    pub application_id: String,
    pub transaction_service_group: String,
    pub extra_data: String,
    pub resource_ids: String,
}

/// `AbstractIdentifyResponse`: `RegisterTMResponse` (102) and
/// `RegisterRMResponse` (104). Only `identified` and `version` are on the
/// wire: the Java codec writes neither the result code, nor the message, nor
/// the extra data of these responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentifyResponse {
    pub identified: bool,
    pub version: String,
}
pub type RegisterTmResponse = IdentifyResponse;
pub type RegisterRmResponse = IdentifyResponse;

/// `GlobalBeginRequest` (1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalBeginRequest {
    /// Milliseconds (Java `int`; default 60000).
    pub timeout: i32,
    pub transaction_name: String,
}

/// `GlobalBeginResponse` (2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalBeginResponse {
    pub result_code: ResultCode,
    /// Only transmitted when `result_code` is `Failed` (see [`TransactionResponse`]).
    pub msg: String,
    pub transaction_exception_code: TransactionExceptionCode,
    pub xid: String,
    pub extra_data: String,
}

/// `AbstractBranchEndRequest`: `BranchCommitRequest` (3) and
/// `BranchRollbackRequest` (5), sent by the TC to an RM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchEndRequest {
    pub xid: String,
    pub branch_id: i64,
    pub branch_type: BranchType,
    pub resource_id: String,
    /// Int length prefix.
    pub application_data: String,
}
pub type BranchCommitRequest = BranchEndRequest;
pub type BranchRollbackRequest = BranchEndRequest;

/// `AbstractBranchEndResponse`: `BranchCommitResponse` (4) and
/// `BranchRollbackResponse` (6), the RM's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchEndResponse {
    pub result_code: ResultCode,
    /// Only transmitted when `result_code` is `Failed`.
    pub msg: String,
    pub transaction_exception_code: TransactionExceptionCode,
    pub xid: String,
    pub branch_id: i64,
    pub branch_status: BranchStatus,
}
pub type BranchCommitResponse = BranchEndResponse;
pub type BranchRollbackResponse = BranchEndResponse;

/// `AbstractGlobalEndRequest`: `GlobalCommitRequest` (7),
/// `GlobalRollbackRequest` (9) and `GlobalStatusRequest` (15).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalEndRequest {
    pub xid: String,
    pub extra_data: String,
}
pub type GlobalCommitRequest = GlobalEndRequest;
pub type GlobalRollbackRequest = GlobalEndRequest;
pub type GlobalStatusRequest = GlobalEndRequest;

/// `AbstractGlobalEndResponse`: `GlobalCommitResponse` (8),
/// `GlobalRollbackResponse` (10), `GlobalStatusResponse` (16) and
/// `GlobalReportResponse` (18).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalEndResponse {
    pub result_code: ResultCode,
    /// Only transmitted when `result_code` is `Failed`.
    pub msg: String,
    pub transaction_exception_code: TransactionExceptionCode,
    pub global_status: GlobalStatus,
}
pub type GlobalCommitResponse = GlobalEndResponse;
pub type GlobalRollbackResponse = GlobalEndResponse;
pub type GlobalStatusResponse = GlobalEndResponse;
pub type GlobalReportResponse = GlobalEndResponse;

/// `BranchRegisterRequest` (11); also `GlobalLockQueryRequest` (21), whose
/// Java class and codec extend it without adding fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchRegisterRequest {
    pub xid: String,
    pub branch_type: BranchType,
    pub resource_id: String,
    /// `table:pk1,pk2;table2:pk`. Int length prefix.
    pub lock_key: String,
    /// Int length prefix.
    pub application_data: String,
}
pub type GlobalLockQueryRequest = BranchRegisterRequest;

/// `BranchRegisterResponse` (12).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchRegisterResponse {
    pub result_code: ResultCode,
    /// Only transmitted when `result_code` is `Failed`.
    pub msg: String,
    pub transaction_exception_code: TransactionExceptionCode,
    pub branch_id: i64,
}

/// `BranchReportRequest` (13).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BranchReportRequest {
    pub xid: String,
    pub branch_id: i64,
    /// Java field `status`.
    pub status: BranchStatus,
    pub resource_id: String,
    /// Int length prefix.
    pub application_data: String,
    pub branch_type: BranchType,
}

/// `AbstractTransactionResponse` with no fields of its own:
/// `BranchReportResponse` (14). Its three fields start every transaction
/// response: the result code byte, then — only if the result code is
/// `Failed` — the message with a short length prefix, then the exception
/// code byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionResponse {
    pub result_code: ResultCode,
    /// Only transmitted when `result_code` is `Failed`; ignored otherwise.
    /// Longer messages are cut to 32767 bytes (on a char boundary) when
    /// encoded, as Seata cuts them to 32767 chars.
    pub msg: String,
    pub transaction_exception_code: TransactionExceptionCode,
}
pub type BranchReportResponse = TransactionResponse;

/// `GlobalReportRequest` (17), the saga TM reporting a final status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalReportRequest {
    pub xid: String,
    pub extra_data: String,
    /// Java null is written as the byte -1 (0xff).
    pub global_status: Option<GlobalStatus>,
}

/// `GlobalLockQueryResponse` (22).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalLockQueryResponse {
    pub result_code: ResultCode,
    /// Only transmitted when `result_code` is `Failed`.
    pub msg: String,
    pub transaction_exception_code: TransactionExceptionCode,
    /// Written as a **short** (0 or 1), not a byte.
    pub lockable: bool,
}

/// `UndoLogDeleteRequest` (111), sent oneway by the TC to AT resource
/// managers to purge old undo logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UndoLogDeleteRequest {
    pub branch_type: BranchType,
    pub resource_id: String,
    /// Java `short`; Seata's default is 7.
    pub save_days: i16,
}

/// `MergedWarpMessage` (59): several requests a client batched into one
/// frame.
///
/// Layout: int content length, short count, `count` × (short type code +
/// fields), then — since 1.5.0 — `count` × int message id. Clients before
/// 1.5.0 send no ids (`msg_ids` decodes empty); the decoder accepts both.
/// Encoding writes the ids present: `msg_ids` must be empty or pair up with
/// `msgs`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergedWarpMessage {
    /// Requests only (no results, no batches).
    pub msgs: Vec<Message>,
    /// The client's rpc id of each message (Java `Integer`s).
    pub msg_ids: Vec<u32>,
}

/// `MergeResultMessage` (60): the answer to a `MergedWarpMessage` for
/// clients older than 1.5.0 (and for any client when the TC disables batched
/// responses), results in request order, sent as the response to the merged
/// frame's request id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeResultMessage {
    /// Results only.
    pub msgs: Vec<Message>,
}

/// `BatchResultMessage` (121, since 1.5.0): results of merged requests
/// paired with their message ids, possibly spread over several responses.
/// Layout as [`MergedWarpMessage`], the ids always present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchResultMessage {
    /// Results only.
    pub result_messages: Vec<Message>,
    /// Must pair up with `result_messages`.
    pub msg_ids: Vec<u32>,
}

/// A message of the SEATA codec: the body of a request, response or oneway
/// frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    GlobalBeginRequest(GlobalBeginRequest),
    GlobalBeginResponse(GlobalBeginResponse),
    BranchCommitRequest(BranchCommitRequest),
    BranchCommitResponse(BranchCommitResponse),
    BranchRollbackRequest(BranchRollbackRequest),
    BranchRollbackResponse(BranchRollbackResponse),
    GlobalCommitRequest(GlobalCommitRequest),
    GlobalCommitResponse(GlobalCommitResponse),
    GlobalRollbackRequest(GlobalRollbackRequest),
    GlobalRollbackResponse(GlobalRollbackResponse),
    BranchRegisterRequest(BranchRegisterRequest),
    BranchRegisterResponse(BranchRegisterResponse),
    BranchReportRequest(BranchReportRequest),
    BranchReportResponse(BranchReportResponse),
    GlobalStatusRequest(GlobalStatusRequest),
    GlobalStatusResponse(GlobalStatusResponse),
    GlobalReportRequest(GlobalReportRequest),
    GlobalReportResponse(GlobalReportResponse),
    GlobalLockQueryRequest(GlobalLockQueryRequest),
    GlobalLockQueryResponse(GlobalLockQueryResponse),
    MergedWarpMessage(MergedWarpMessage),
    MergeResultMessage(MergeResultMessage),
    RegisterTmRequest(RegisterTmRequest),
    RegisterTmResponse(RegisterTmResponse),
    RegisterRmRequest(RegisterRmRequest),
    RegisterRmResponse(RegisterRmResponse),
    UndoLogDeleteRequest(UndoLogDeleteRequest),
    BatchResultMessage(BatchResultMessage),
}

impl Message {
    /// The body type code (Seata's `getTypeCode()`).
    pub const fn type_code(&self) -> i16 {
        use type_code as t;
        match self {
            Message::GlobalBeginRequest(_) => t::GLOBAL_BEGIN,
            Message::GlobalBeginResponse(_) => t::GLOBAL_BEGIN_RESULT,
            Message::BranchCommitRequest(_) => t::BRANCH_COMMIT,
            Message::BranchCommitResponse(_) => t::BRANCH_COMMIT_RESULT,
            Message::BranchRollbackRequest(_) => t::BRANCH_ROLLBACK,
            Message::BranchRollbackResponse(_) => t::BRANCH_ROLLBACK_RESULT,
            Message::GlobalCommitRequest(_) => t::GLOBAL_COMMIT,
            Message::GlobalCommitResponse(_) => t::GLOBAL_COMMIT_RESULT,
            Message::GlobalRollbackRequest(_) => t::GLOBAL_ROLLBACK,
            Message::GlobalRollbackResponse(_) => t::GLOBAL_ROLLBACK_RESULT,
            Message::BranchRegisterRequest(_) => t::BRANCH_REGISTER,
            Message::BranchRegisterResponse(_) => t::BRANCH_REGISTER_RESULT,
            Message::BranchReportRequest(_) => t::BRANCH_STATUS_REPORT,
            Message::BranchReportResponse(_) => t::BRANCH_STATUS_REPORT_RESULT,
            Message::GlobalStatusRequest(_) => t::GLOBAL_STATUS,
            Message::GlobalStatusResponse(_) => t::GLOBAL_STATUS_RESULT,
            Message::GlobalReportRequest(_) => t::GLOBAL_REPORT,
            Message::GlobalReportResponse(_) => t::GLOBAL_REPORT_RESULT,
            Message::GlobalLockQueryRequest(_) => t::GLOBAL_LOCK_QUERY,
            Message::GlobalLockQueryResponse(_) => t::GLOBAL_LOCK_QUERY_RESULT,
            Message::MergedWarpMessage(_) => t::SEATA_MERGE,
            Message::MergeResultMessage(_) => t::SEATA_MERGE_RESULT,
            Message::RegisterTmRequest(_) => t::REG_CLT,
            Message::RegisterTmResponse(_) => t::REG_CLT_RESULT,
            Message::RegisterRmRequest(_) => t::REG_RM,
            Message::RegisterRmResponse(_) => t::REG_RM_RESULT,
            Message::UndoLogDeleteRequest(_) => t::RM_DELETE_UNDOLOG,
            Message::BatchResultMessage(_) => t::BATCH_RESULT_MSG,
        }
    }

    /// The Java class name, for logs.
    pub const fn name(&self) -> &'static str {
        match self {
            Message::GlobalBeginRequest(_) => "GlobalBeginRequest",
            Message::GlobalBeginResponse(_) => "GlobalBeginResponse",
            Message::BranchCommitRequest(_) => "BranchCommitRequest",
            Message::BranchCommitResponse(_) => "BranchCommitResponse",
            Message::BranchRollbackRequest(_) => "BranchRollbackRequest",
            Message::BranchRollbackResponse(_) => "BranchRollbackResponse",
            Message::GlobalCommitRequest(_) => "GlobalCommitRequest",
            Message::GlobalCommitResponse(_) => "GlobalCommitResponse",
            Message::GlobalRollbackRequest(_) => "GlobalRollbackRequest",
            Message::GlobalRollbackResponse(_) => "GlobalRollbackResponse",
            Message::BranchRegisterRequest(_) => "BranchRegisterRequest",
            Message::BranchRegisterResponse(_) => "BranchRegisterResponse",
            Message::BranchReportRequest(_) => "BranchReportRequest",
            Message::BranchReportResponse(_) => "BranchReportResponse",
            Message::GlobalStatusRequest(_) => "GlobalStatusRequest",
            Message::GlobalStatusResponse(_) => "GlobalStatusResponse",
            Message::GlobalReportRequest(_) => "GlobalReportRequest",
            Message::GlobalReportResponse(_) => "GlobalReportResponse",
            Message::GlobalLockQueryRequest(_) => "GlobalLockQueryRequest",
            Message::GlobalLockQueryResponse(_) => "GlobalLockQueryResponse",
            Message::MergedWarpMessage(_) => "MergedWarpMessage",
            Message::MergeResultMessage(_) => "MergeResultMessage",
            Message::RegisterTmRequest(_) => "RegisterTMRequest",
            Message::RegisterTmResponse(_) => "RegisterTMResponse",
            Message::RegisterRmRequest(_) => "RegisterRMRequest",
            Message::RegisterRmResponse(_) => "RegisterRMResponse",
            Message::UndoLogDeleteRequest(_) => "UndoLogDeleteRequest",
            Message::BatchResultMessage(_) => "BatchResultMessage",
        }
    }

    /// Whether this is a result message (Java `AbstractResultMessage`).
    pub const fn is_result(&self) -> bool {
        type_code::is_result(self.type_code())
    }

    /// Whether this is one of the batch messages (59, 60, 121).
    pub const fn is_batch(&self) -> bool {
        type_code::is_batch(self.type_code())
    }
}
