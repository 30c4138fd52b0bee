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
//! [`tc`] (feature `server`, on by default): the coordinator served by a
//! node, its partitions hosted as raft groups on the node's driver and the
//! Seata-protocol listener. Clients depend on this crate with
//! `default-features = false` (protocol and coordinator types only).

pub mod coordinator;
pub mod protocol;
#[cfg(feature = "server")]
pub mod tc;
