//! `rhea-txn`: distributed transactions in the manner of Seata v1.2.0.
//!
//! **Layer rule:** may import `rhea-raft`, `rhea-runtime` and `rhea-kv`;
//! only the `rhea` binary imports it.
//!
//! Built so far: [`protocol`], Seata's wire protocol v1 with the SEATA codec,
//! byte-exact with Seata's Java and Go clients (`docs/seata-protocol.md`).
//! The coordinator, the TM API and AT mode are issue 4's remaining work.

pub mod protocol;
