//! `rhea-kv`: RheaKV on Rhea's multi-raft runtime.
//!
//! **Layer rule:** imports `rhea-raft` and `rhea-runtime` only (never the
//! binary, never the simulator outside tests). Everything here is async on
//! tokio; the state machine runs on the runtime's driver task.

pub mod command;
pub mod error;
pub mod region;
pub mod storage;
pub mod store;

pub use command::{KvAnswer, KvCommand, ReadOp};
pub use error::KvError;
pub use region::{RegionEpoch, RegionId, RegionRange, even_split};
pub use storage::{NodeAddrs, Storage, StorageError, StorageOptions};
pub use store::{KvCounters, KvLimits, KvOptions, KvStore, ReadConsistency};
pub mod node;
pub mod resp;
pub mod router;

pub use node::{KvNode, NodeConfig, NodeError};
pub use router::{RegionRequest, RouteEntry, Router, RouterOptions};
pub mod client;
pub use client::KvClient;
pub mod admin;
pub mod server;
pub use server::{ServerOptions, serve};
