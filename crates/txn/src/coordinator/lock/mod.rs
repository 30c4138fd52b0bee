//! The lock partition: global row locks.
//!
//! One [`LockPartition`] is the replicated state of one lock raft group; a
//! row lock lives in partition
//! [`lock_partition_of`](super::lock_partition_of)`(row_key)`. A branch
//! whose rows span several partitions takes them with the fixed-order
//! protocol of [`LockAcquisition`] (all or none, no deadlock); see
//! `docs/tc-state-machine.md`.
//!
//! Every command is all-or-nothing within the partition, and a refusal never
//! waits: a conflicting `TryLock` is answered at once with the holder, and
//! the RM retries per Seata's lock retry policy (`client.rm.lock.retryInterval`
//! 10 ms, `retryTimes` 30).
//!
//! **Fences.** `Unlock` and `ReleaseGlobal` leave a fence on the branch or
//! transaction for `fence_retention_ms`; a `TryLock` for a fenced branch or
//! transaction is refused. This closes a race between raft groups: a
//! branch's `TryLock` delayed past its transaction's rollback (which
//! released the branch's rows on this partition) would otherwise lock rows
//! that nobody will ever release.

mod acquisition;
mod command;
mod snapshot;

use std::collections::{BTreeMap, BTreeSet};

pub use acquisition::{AcquisitionOutcome, AcquisitionStep, LockAcquisition, LockRefusal};
pub use command::{
    LOCK_COMMAND_VERSION, LockAnswer, LockCommand, LockError, LockHolder, LockStatus,
};
pub use snapshot::LOCK_SNAPSHOT_VERSION;

use super::config::{ConfigError, LockConfig};
use super::ids::lock_partition_of;
use super::lock_key::{RowKey, sorted_by_row_key};

/// A global row lock (Seata's `lock_table` row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowLock {
    pub row: RowKey,
    pub xid: String,
    pub transaction_id: u64,
    /// The branch that took the lock first (re-entrant grants to other
    /// branches of the same transaction do not change it).
    pub branch_id: i64,
    pub status: LockStatus,
}

impl RowLock {
    fn holder(&self, row_key: &str) -> LockHolder {
        LockHolder {
            row_key: row_key.to_owned(),
            xid: self.xid.clone(),
            transaction_id: self.transaction_id,
            branch_id: self.branch_id,
            status: self.status,
        }
    }
}

/// A fenced transaction (`branch_id` none) or branch.
type FenceKey = (u64, Option<i64>);

/// Fences with their expiry, indexed both ways so that pruning is cheap.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Fences {
    expiry_of: BTreeMap<FenceKey, u64>,
    by_expiry: BTreeSet<(u64, FenceKey)>,
}

impl Fences {
    /// Drops fences whose expiry is at or before `now_ms`.
    fn prune(&mut self, now_ms: u64) {
        while let Some(&(expires, key)) = self.by_expiry.first() {
            if expires > now_ms {
                break;
            }
            self.by_expiry.remove(&(expires, key));
            self.expiry_of.remove(&key);
        }
    }

    fn insert(&mut self, key: FenceKey, expires_ms: u64, max_fences: usize) {
        if let Some(old) = self.expiry_of.insert(key, expires_ms) {
            self.by_expiry.remove(&(old, key));
        }
        self.by_expiry.insert((expires_ms, key));
        while self.expiry_of.len() > max_fences {
            let Some((_, key)) = self.by_expiry.pop_first() else {
                break;
            };
            self.expiry_of.remove(&key);
        }
    }

    fn fenced(&self, transaction_id: u64, branch_id: i64) -> Option<Option<i64>> {
        if self.expiry_of.contains_key(&(transaction_id, None)) {
            Some(None)
        } else if self
            .expiry_of
            .contains_key(&(transaction_id, Some(branch_id)))
        {
            Some(Some(branch_id))
        } else {
            None
        }
    }
}

/// The replicated state of one lock raft group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockPartition {
    config: LockConfig,
    /// By row key.
    rows: BTreeMap<String, RowLock>,
    /// Row keys by owning (transaction id, branch id).
    owned: BTreeMap<(u64, i64), BTreeSet<String>>,
    fences: Fences,
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

fn as_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl LockPartition {
    /// An empty partition.
    pub fn new(config: LockConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(LockPartition {
            config,
            rows: BTreeMap::new(),
            owned: BTreeMap::new(),
            fences: Fences::default(),
        })
    }

    pub fn config(&self) -> &LockConfig {
        &self.config
    }

    /// Applies one command; deterministic.
    pub fn apply(&mut self, cmd: LockCommand) -> LockAnswer {
        let handled = match cmd {
            LockCommand::TryLock {
                xid,
                transaction_id,
                branch_id,
                rows,
                now_ms,
            } => self.try_lock(xid, transaction_id, branch_id, rows, now_ms),
            LockCommand::Unlock {
                transaction_id,
                branch_id,
                now_ms,
            } => Ok(self.unlock(transaction_id, Some(branch_id), now_ms)),
            LockCommand::ReleaseGlobal {
                transaction_id,
                now_ms,
            } => Ok(self.unlock(transaction_id, None, now_ms)),
            LockCommand::MarkRollbacking { transaction_id } => {
                let mut marked: usize = 0;
                for key in self.owned_keys(transaction_id, None) {
                    if let Some(lock) = self.rows.get_mut(&key) {
                        lock.status = LockStatus::Rollbacking;
                        marked += 1;
                    }
                }
                Ok(LockAnswer::Marked {
                    rows: as_u32(marked),
                })
            }
            LockCommand::Query {
                transaction_id,
                rows,
            } => self.check_rows(rows).map(|keyed| {
                match self.first_conflict(&keyed, transaction_id) {
                    Some(holder) => LockAnswer::Conflict(holder),
                    None => LockAnswer::Lockable,
                }
            }),
        };
        handled.unwrap_or_else(LockAnswer::Refused)
    }

    /// Decodes and applies a raft log entry; an entry that does not decode
    /// changes nothing and answers [`LockError::MalformedCommand`].
    pub fn apply_bytes(&mut self, bytes: &[u8]) -> LockAnswer {
        match LockCommand::decode(bytes) {
            Ok(cmd) => self.apply(cmd),
            Err(e) => LockAnswer::Refused(LockError::MalformedCommand(e.to_string())),
        }
    }

    // ----- queries (local) -----

    pub fn row_lock(&self, row_key: &str) -> Option<&RowLock> {
        self.rows.get(row_key)
    }

    /// Every row lock with its row key, in row key order.
    pub fn row_locks(&self) -> impl Iterator<Item = (&str, &RowLock)> {
        self.rows.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The row keys held by a transaction, in row key order.
    pub fn row_keys_of(&self, transaction_id: u64) -> Vec<String> {
        let mut keys = self.owned_keys(transaction_id, None);
        keys.sort();
        keys
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Fences currently kept.
    pub fn fence_count(&self) -> usize {
        self.fences.expiry_of.len()
    }

    // ----- commands -----

    /// Validates and sorts a command's rows (by row key, duplicates merged).
    fn check_rows(&self, rows: Vec<RowKey>) -> Result<Vec<(String, RowKey)>, LockError> {
        if rows.len() > self.config.max_rows_per_command {
            return Err(LockError::TooManyRows {
                rows: as_u64(rows.len()),
                limit: as_u64(self.config.max_rows_per_command),
            });
        }
        let rows = sorted_by_row_key(rows);
        let mut keyed = Vec::with_capacity(rows.len());
        for row in rows {
            let key = row.row_key();
            if key.len() > self.config.max_row_key_bytes {
                return Err(LockError::RowKeyTooLong {
                    bytes: as_u64(key.len()),
                    limit: as_u64(self.config.max_row_key_bytes),
                });
            }
            let expected = lock_partition_of(&key, self.config.partitions);
            if expected != self.config.partition_index {
                return Err(LockError::WrongPartition {
                    row_key: key,
                    partition: self.config.partition_index,
                    expected,
                });
            }
            keyed.push((key, row));
        }
        Ok(keyed)
    }

    fn first_conflict(
        &self,
        keyed: &[(String, RowKey)],
        transaction_id: u64,
    ) -> Option<LockHolder> {
        keyed.iter().find_map(|(key, _)| {
            self.rows
                .get(key)
                .filter(|lock| lock.transaction_id != transaction_id)
                .map(|lock| lock.holder(key))
        })
    }

    fn try_lock(
        &mut self,
        xid: String,
        transaction_id: u64,
        branch_id: i64,
        rows: Vec<RowKey>,
        now_ms: u64,
    ) -> Result<LockAnswer, LockError> {
        self.fences.prune(now_ms);
        let keyed = self.check_rows(rows)?;
        if let Some(fenced_branch) = self.fences.fenced(transaction_id, branch_id) {
            return Ok(LockAnswer::Fenced {
                transaction_id,
                branch_id: fenced_branch,
            });
        }
        if let Some(holder) = self.first_conflict(&keyed, transaction_id) {
            return Ok(LockAnswer::Conflict(holder));
        }
        let fresh: Vec<(String, RowKey)> = keyed
            .iter()
            .filter(|(key, _)| !self.rows.contains_key(key))
            .cloned()
            .collect();
        let total = self.rows.len().saturating_add(fresh.len());
        if total > self.config.max_row_locks {
            return Err(LockError::PartitionFull {
                row_locks: as_u64(total),
                limit: as_u64(self.config.max_row_locks),
            });
        }
        let already_held = keyed.len().saturating_sub(fresh.len());
        let newly_locked = fresh.len();
        if !fresh.is_empty() {
            let owned = self.owned.entry((transaction_id, branch_id)).or_default();
            for (key, row) in fresh {
                owned.insert(key.clone());
                self.rows.insert(
                    key,
                    RowLock {
                        row,
                        xid: xid.clone(),
                        transaction_id,
                        branch_id,
                        status: LockStatus::Locked,
                    },
                );
            }
        }
        Ok(LockAnswer::Granted {
            newly_locked: as_u32(newly_locked),
            already_held: as_u32(already_held),
        })
    }

    /// Row keys owned by the branch, or by the whole transaction.
    fn owned_keys(&self, transaction_id: u64, branch_id: Option<i64>) -> Vec<String> {
        let range = match branch_id {
            Some(b) => (transaction_id, b)..=(transaction_id, b),
            None => (transaction_id, i64::MIN)..=(transaction_id, i64::MAX),
        };
        self.owned
            .range(range)
            .flat_map(|(_, keys)| keys.iter().cloned())
            .collect()
    }

    /// `Unlock` (a branch) or `ReleaseGlobal` (`branch_id` none).
    fn unlock(&mut self, transaction_id: u64, branch_id: Option<i64>, now_ms: u64) -> LockAnswer {
        self.fences.prune(now_ms);
        self.fences.insert(
            (transaction_id, branch_id),
            now_ms.saturating_add(self.config.fence_retention_ms),
            self.config.max_fences,
        );
        let owners: Vec<(u64, i64)> = match branch_id {
            Some(b) => vec![(transaction_id, b)],
            None => self
                .owned
                .range((transaction_id, i64::MIN)..=(transaction_id, i64::MAX))
                .map(|(k, _)| *k)
                .collect(),
        };
        let mut released: usize = 0;
        for owner in owners {
            if let Some(keys) = self.owned.remove(&owner) {
                for key in keys {
                    if self.rows.remove(&key).is_some() {
                        released += 1;
                    }
                }
            }
        }
        LockAnswer::Released {
            rows: as_u32(released),
        }
    }
}
