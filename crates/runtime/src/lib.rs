//! # rhea-runtime
//!
//! **Layer rule.** runtime layer: drives rhea-raft with real I/O; may depend on
//! rhea-raft and std/tokio ecosystem crates; must not depend on kv, txn or the
//! binary.
//!
//! This crate holds the storage and network halves of the runtime (the driver
//! that ties them to the core is not built yet):
//!
//! * [`disk`]: a small file-system abstraction, [`Disk`], with [`StdDisk`] (real
//!   files) and [`SimDisk`] (in memory, deterministic, crashable) so that crash
//!   consistency can be tested without a real power cut.
//! * [`codec`]: the hand-written binary encoding of log entries, hard state and
//!   snapshot metadata. Decoding never panics.
//! * [`LogEngine`]: one segmented append-only log shared by every raft group of
//!   a process (multi-raft), with group commit, crash recovery and segment
//!   purging. The byte layout and the recovery rules are in
//!   `docs/log-engine.md`.
//! * [`message_codec`]: the binary encoding of [`rhea_raft::Message`] (every
//!   body kind), reusing the entry and membership layouts of [`codec`].
//! * [`Transport`]: the tokio TCP peer transport shared by every raft group of
//!   a process: one listener per node, one batched outbound connection per
//!   peer node, a handshake refusing other clusters, bounded queues that drop
//!   rather than block. Wire layout, limits and failure behaviour are in
//!   `docs/transport.md`.
//! * [`driver`]: the multi-raft node driver, one tokio task per process that
//!   owns the log engine, the transport and every group, executes each
//!   group's `Ready` with one group-committed write per round, and serves a
//!   [`DriverHandle`] (propose, read index, status, admin, snapshot).
//!
//! How a driver uses the log engine with one [`rhea_raft::Ready`] per group:
//!
//! 1. for every group with a `Ready`, add `snapshot` (its meta) with
//!    [`WriteBatch::install_snapshot`], `entries` with [`WriteBatch::append`]
//!    and `hard_state` with [`WriteBatch::set_hard_state`] to one shared batch;
//! 2. [`LogEngine::write`]`(&batch, any group's must_sync)`: one fsync covers
//!    every group of the batch;
//! 3. after the groups advance, record each `compacted_to` with
//!    [`WriteBatch::purge`], and call [`LogEngine::purge`] from time to time to
//!    delete segments nobody needs.
//!
//! On restart, [`LogEngine::open`] replays the segments and each group's
//! `RestoreState` comes from [`LogEngine::hard_state`],
//! [`LogEngine::snapshot_meta`] (plus the application's snapshot image) and
//! [`LogEngine::entries`].

pub mod codec;
pub mod disk;
pub mod driver;
mod error;
mod log_engine;
pub mod message_codec;
pub mod transport;

pub use codec::CodecError;
pub use disk::{Disk, DiskFile, SimDisk, StdDisk};
pub use driver::{
    ApplyContext, Driver, DriverError, DriverHandle, DriverOptions, DriverStats, GroupSpec,
    GroupStatus, StateMachine, StateMachineError, recover_log,
};
pub use error::LogEngineError;
pub use log_engine::{
    DEFAULT_MAX_RECORD_BYTES, DEFAULT_SEGMENT_MAX_BYTES, LogEngine, LogEngineOptions, MAX_INDEX,
    PurgeReport, RECORD_HEADER_BYTES, RECORD_MAGIC, RecordType, RecoveryReport, WriteBatch,
    segment_file_name,
};
pub use message_codec::{MessageCodecError, decode_message, encode_message, message_encoded_len};
pub use transport::{
    PeerStats, SendError, Transport, TransportError, TransportOptions, TransportStats,
};
