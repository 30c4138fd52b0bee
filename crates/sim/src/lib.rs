//! # rhea-sim: deterministic simulator and linearizability checker
//!
//! **Layer rule.** Test-only. Depends on `rhea-raft` and nothing of Rhea above
//! it; no async runtime, no wall clock, no thread: one seeded generator drives
//! every choice, so any run replays exactly from its seed.
//!
//! * [`sim`]: a cluster of `rhea-raft` nodes over a simulated network and disk,
//!   with a nemesis and a client workload.
//! * [`invariants`]: Raft's safety properties, checked after every event.
//! * [`linearizability`]: a Wing-Gong-Lowe checker with memoisation,
//!   partitioned per key, for client histories (reusable by higher layers).
//! * [`kv`]: the register state machine the workload runs.
//! * [`storage`]: the nodes' durable storage behind a trait (an in-memory
//!   model here; the runtime's tests plug in the real log engine).

pub mod invariants;
pub mod kv;
pub mod linearizability;
pub mod sim;
pub mod storage;

pub use sim::{SimOptions, SimReport, SimStats, StorageFactory, run_seed};
pub use storage::{ModelDisk, NodeStorage, Recovered};
