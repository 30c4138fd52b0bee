//! `rhea-txn-client`: the application side of Rhea's distributed
//! transactions, in the manner of Seata's client:
//!
//! * [`tm`]: the TM API — [`GlobalTransaction`] (begin, commit, rollback,
//!   suspend, resume) and the scoped template [`tm::execute`] with Seata's
//!   six propagation modes.
//! * [`context`]: the task-local XID (Seata's `RootContext`) and the
//!   `TX_XID` header that carries it across service calls.
//! * [`rpc`]: [`TcClient`], one registered connection to every TC node over
//!   Seata's wire protocol, carrying TM and RM requests and dispatching the
//!   TC's phase-two calls to the registered [`ResourceManager`]s.
//! * [`api`]: the seams between them ([`TcApi`], [`ResourceManager`]), so
//!   that branch implementations and tests can use an in-memory TC.
//!
//! **Layer rule:** imports `rhea-txn` (for the wire protocol only); imported
//! by branch implementations (`rhea-txn-at`) and the `rhea` binary. No
//! server code here.

pub mod api;
pub mod context;
pub mod rpc;
pub mod tm;

pub use api::{BoxFuture, ResourceManager, TcApi, TxnError};
pub use rpc::{ConnectError, TcClient, TcClientOptions};
pub use tm::{
    GlobalTransaction, GlobalTransactionRole, Propagation, SuspendedResources, TemplateError,
    TransactionInfo, TransactionalTemplate,
};
