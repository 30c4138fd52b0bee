//! `rhea-txn-at`: Seata's AT mode over PostgreSQL and MariaDB/MySQL.
//!
//! **Layer rule:** imports `rhea-txn` (protocol types) and
//! `rhea-txn-client` (TC seam, XID context); imported only by the `rhea`
//! binary and applications.
//!
//! # Modules
//! - [`datasource`]: the data source [`AtDataSource`], one database as an AT resource
//!   (pool, metadata cache, `undo_log` table, [`AtOptions`], the `run`
//!   retry loop); it is the `ResourceManager` the TC calls.
//! - [`transaction`]: the handle [`AtTransaction`], a local transaction that is an AT
//!   branch, a global-lock-mode transaction or a plain one, depending on the
//!   task's context at begin.
//! - `sql`: statement parsing and planning (sqlparser, dialect per database).
//! - `meta`: table metadata from `information_schema`.
//! - `image`: before/after images, lock keys, the dirty-check comparison.
//! - `undo`: the undo log table, `rollback_info` layout, undoing one item.
//! - `phase_two`: branch commit (asynchronous undo log deletion) and
//!   rollback (dirty check, defensive row).
//! - `backend`: the PostgreSQL and MySQL connections (text values), quoting.
//! - `pool`: the bounded connection pool.
//! - [`error`]: the crate's error type, [`AtError`].
//!
//! See `docs/at-mode.md` for the behaviour, formats and limits.

mod backend;
pub mod datasource;
pub mod error;
mod image;
mod meta;
mod phase_two;
mod pool;
mod sql;
pub mod transaction;
mod undo;

pub use backend::{DbKind, Rows};
pub use datasource::{AtDataSource, AtOptions, AtStats};
pub use error::AtError;
pub use transaction::AtTransaction;
