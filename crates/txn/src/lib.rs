//! `rhea-txn`: distributed transactions in the manner of Seata v1.2.0.
//!
//! **Layer rule:** may import `rhea-raft`, `rhea-runtime` and `rhea-kv`;
//! only the `rhea` binary imports it.
//!
//! Built so far: [`protocol`], Seata's wire protocol v1 with the SEATA codec,
//! byte-exact with Seata's Java and Go clients (`docs/seata-protocol.md`);
//! [`coordinator`], the TC's deterministic, sans-IO replicated state
//! machines: session partitions (global and branch sessions) and lock
//! partitions (global row locks), see `docs/tc-state-machine.md`.
//! The coordinator's async/raft layer, the TM API and AT mode are issue 4's
//! remaining work.

pub mod coordinator;
pub mod protocol;
