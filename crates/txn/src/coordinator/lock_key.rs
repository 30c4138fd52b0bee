//! Seata's lock key string and the row keys it names.
//!
//! An AT resource manager registers a branch with a lock key
//! `table:pk1,pk2;table2:pk3`: `;` separates tables, `:` ends the table
//! name, `,` separates primary keys (composite keys are already joined with
//! `_` by the RM). The TC locks one row per primary key, under the row key
//! `resourceId^^^table^^^pk` (Seata's `lock_table.row_key`).
//!
//! Seata's `AbstractLockManager.collectRowLocks` silently stops at the first
//! malformed table group and locks whatever it parsed so far; Rhea refuses
//! the whole lock key instead, naming the group ([`LockKeyError`]). What is
//! the same: a blank lock key locks nothing, blank primary keys are skipped,
//! trailing `;` are ignored (Java's `split` drops trailing empty strings),
//! and the table name ends at the *first* `:` (a primary key may contain
//! `:`).

use std::collections::BTreeMap;

use thiserror::Error;

use super::codec::{CodecError, Reader, Wire, Writer};
use super::ids::lock_partition_of;

/// Separates resource id, table and primary key in a row key.
pub const ROW_KEY_SEPARATOR: &str = "^^^";

/// Default of [`LockKeyLimits::max_lock_keys_per_branch`].
pub const DEFAULT_MAX_LOCK_KEYS_PER_BRANCH: usize = 10_000;
/// Default of [`LockKeyLimits::max_row_key_bytes`]. (Seata's DB store caps
/// `row_key` at 128 characters; the file and raft stores have no cap.)
pub const DEFAULT_MAX_ROW_KEY_BYTES: usize = 512;
/// Default of [`LockKeyLimits::max_lock_key_bytes`].
pub const DEFAULT_MAX_LOCK_KEY_BYTES: usize = 4 * 1024 * 1024;

/// Bounds on one branch's lock key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockKeyLimits {
    /// Most primary keys in one lock key (duplicates included).
    pub max_lock_keys_per_branch: usize,
    /// Longest row key `resourceId^^^table^^^pk`, in bytes.
    pub max_row_key_bytes: usize,
    /// Longest lock key string, in bytes.
    pub max_lock_key_bytes: usize,
}

impl Default for LockKeyLimits {
    fn default() -> Self {
        LockKeyLimits {
            max_lock_keys_per_branch: DEFAULT_MAX_LOCK_KEYS_PER_BRANCH,
            max_row_key_bytes: DEFAULT_MAX_ROW_KEY_BYTES,
            max_lock_key_bytes: DEFAULT_MAX_LOCK_KEY_BYTES,
        }
    }
}

/// Why a lock key was refused. `group` is the 0-based index of the
/// `;`-separated table group.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum LockKeyError {
    #[error("lock key of {bytes} bytes exceeds the limit of {limit} bytes")]
    LockKeyTooLong { bytes: u64, limit: u64 },
    #[error("table group {group} of the lock key is empty")]
    EmptyGroup { group: u32 },
    #[error("table group {group} of the lock key has no ':' after the table name")]
    MissingColon { group: u32 },
    #[error("table group {group} of the lock key has an empty table name")]
    EmptyTable { group: u32 },
    #[error("table group {group} of the lock key has no primary key")]
    NoPrimaryKey { group: u32 },
    #[error("table group {group} of the lock key contains the row key separator \"^^^\"")]
    ReservedSeparator { group: u32 },
    #[error("the resource id contains the row key separator \"^^^\"")]
    ResourceIdSeparator,
    #[error("the lock key names more than {limit} primary keys")]
    TooManyKeys { limit: u64 },
    #[error("row key of {bytes} bytes in table group {group} exceeds the limit of {limit} bytes")]
    RowKeyTooLong { group: u32, bytes: u64, limit: u64 },
}

/// One row a branch locks.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowKey {
    pub resource_id: String,
    pub table: String,
    pub pk: String,
}

impl RowKey {
    pub fn new(resource_id: &str, table: &str, pk: &str) -> Self {
        RowKey {
            resource_id: resource_id.to_owned(),
            table: table.to_owned(),
            pk: pk.to_owned(),
        }
    }

    /// `resourceId^^^table^^^pk`, Seata's `lock_table.row_key`.
    pub fn row_key(&self) -> String {
        let mut s = String::with_capacity(self.row_key_len());
        s.push_str(&self.resource_id);
        s.push_str(ROW_KEY_SEPARATOR);
        s.push_str(&self.table);
        s.push_str(ROW_KEY_SEPARATOR);
        s.push_str(&self.pk);
        s
    }

    /// The byte length of [`row_key`](Self::row_key).
    pub fn row_key_len(&self) -> usize {
        self.resource_id
            .len()
            .saturating_add(self.table.len())
            .saturating_add(self.pk.len())
            .saturating_add(2 * ROW_KEY_SEPARATOR.len())
    }
}

/// The rows of one branch that live in one lock partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionRows {
    pub partition: u32,
    /// In row key order, without duplicates.
    pub rows: Vec<RowKey>,
}

fn is_blank(s: &str) -> bool {
    s.chars().all(char::is_whitespace)
}

fn group_index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Parses a branch's lock key into its rows, sorted by row key and without
/// duplicates. A blank lock key gives no rows.
pub fn parse_lock_key(
    resource_id: &str,
    lock_key: &str,
    limits: &LockKeyLimits,
) -> Result<Vec<RowKey>, LockKeyError> {
    if lock_key.len() > limits.max_lock_key_bytes {
        return Err(LockKeyError::LockKeyTooLong {
            bytes: as_u64(lock_key.len()),
            limit: as_u64(limits.max_lock_key_bytes),
        });
    }
    if is_blank(lock_key) {
        return Ok(Vec::new());
    }
    if resource_id.contains(ROW_KEY_SEPARATOR) {
        return Err(LockKeyError::ResourceIdSeparator);
    }
    // Java's split drops trailing empty strings.
    let body = lock_key.trim_end_matches(';');
    let mut rows = Vec::new();
    let mut count: usize = 0;
    for (i, group) in body.split(';').enumerate() {
        let g = group_index(i);
        if group.is_empty() {
            return Err(LockKeyError::EmptyGroup { group: g });
        }
        let (table, pks) = group
            .split_once(':')
            .ok_or(LockKeyError::MissingColon { group: g })?;
        if is_blank(table) {
            return Err(LockKeyError::EmptyTable { group: g });
        }
        if table.contains(ROW_KEY_SEPARATOR) {
            return Err(LockKeyError::ReservedSeparator { group: g });
        }
        let mut any = false;
        for pk in pks.split(',') {
            if is_blank(pk) {
                continue;
            }
            any = true;
            count = count.saturating_add(1);
            if count > limits.max_lock_keys_per_branch {
                return Err(LockKeyError::TooManyKeys {
                    limit: as_u64(limits.max_lock_keys_per_branch),
                });
            }
            if pk.contains(ROW_KEY_SEPARATOR) {
                return Err(LockKeyError::ReservedSeparator { group: g });
            }
            let row = RowKey::new(resource_id, table, pk);
            if row.row_key_len() > limits.max_row_key_bytes {
                return Err(LockKeyError::RowKeyTooLong {
                    group: g,
                    bytes: as_u64(row.row_key_len()),
                    limit: as_u64(limits.max_row_key_bytes),
                });
            }
            rows.push(row);
        }
        if !any {
            return Err(LockKeyError::NoPrimaryKey { group: g });
        }
    }
    Ok(sorted_by_row_key(rows))
}

/// Sorts rows by row key and drops rows with an equal row key (two rows
/// whose row keys coincide share one lock, as in Seata).
pub(crate) fn sorted_by_row_key(rows: Vec<RowKey>) -> Vec<RowKey> {
    let mut keyed: Vec<(String, RowKey)> = rows.into_iter().map(|r| (r.row_key(), r)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    keyed.dedup_by(|a, b| a.0 == b.0);
    keyed.into_iter().map(|(_, r)| r).collect()
}

/// Groups rows by lock partition, in ascending partition order (the order in
/// which the lock protocol acquires them); rows keep row key order.
pub fn plan_by_partition(rows: Vec<RowKey>, partitions: u32) -> Vec<PartitionRows> {
    let mut by_partition: BTreeMap<u32, Vec<RowKey>> = BTreeMap::new();
    for row in rows {
        let p = lock_partition_of(&row.row_key(), partitions);
        by_partition.entry(p).or_default().push(row);
    }
    by_partition
        .into_iter()
        .map(|(partition, rows)| PartitionRows {
            partition,
            rows: sorted_by_row_key(rows),
        })
        .collect()
}

impl Wire for RowKey {
    const MIN_BYTES: usize = 12;
    fn put(&self, w: &mut Writer) {
        w.str(&self.resource_id);
        w.str(&self.table);
        w.str(&self.pk);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(RowKey {
            resource_id: r.string()?,
            table: r.string()?,
            pk: r.string()?,
        })
    }
}

impl Wire for PartitionRows {
    const MIN_BYTES: usize = 8;
    fn put(&self, w: &mut Writer) {
        w.u32(self.partition);
        w.put(&self.rows);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(PartitionRows {
            partition: r.u32()?,
            rows: r.get()?,
        })
    }
}

impl Wire for LockKeyError {
    const MIN_BYTES: usize = 1;
    fn put(&self, w: &mut Writer) {
        match self {
            LockKeyError::LockKeyTooLong { bytes, limit } => {
                w.u8(1);
                w.u64(*bytes);
                w.u64(*limit);
            }
            LockKeyError::EmptyGroup { group } => {
                w.u8(2);
                w.u32(*group);
            }
            LockKeyError::MissingColon { group } => {
                w.u8(3);
                w.u32(*group);
            }
            LockKeyError::EmptyTable { group } => {
                w.u8(4);
                w.u32(*group);
            }
            LockKeyError::NoPrimaryKey { group } => {
                w.u8(5);
                w.u32(*group);
            }
            LockKeyError::ReservedSeparator { group } => {
                w.u8(6);
                w.u32(*group);
            }
            LockKeyError::ResourceIdSeparator => w.u8(7),
            LockKeyError::TooManyKeys { limit } => {
                w.u8(8);
                w.u64(*limit);
            }
            LockKeyError::RowKeyTooLong {
                group,
                bytes,
                limit,
            } => {
                w.u8(9);
                w.u32(*group);
                w.u64(*bytes);
                w.u64(*limit);
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(match r.u8()? {
            1 => LockKeyError::LockKeyTooLong {
                bytes: r.u64()?,
                limit: r.u64()?,
            },
            2 => LockKeyError::EmptyGroup { group: r.u32()? },
            3 => LockKeyError::MissingColon { group: r.u32()? },
            4 => LockKeyError::EmptyTable { group: r.u32()? },
            5 => LockKeyError::NoPrimaryKey { group: r.u32()? },
            6 => LockKeyError::ReservedSeparator { group: r.u32()? },
            7 => LockKeyError::ResourceIdSeparator,
            8 => LockKeyError::TooManyKeys { limit: r.u64()? },
            9 => LockKeyError::RowKeyTooLong {
                group: r.u32()?,
                bytes: r.u64()?,
                limit: r.u64()?,
            },
            tag => return Err(r.unknown_tag("LockKeyError", tag)),
        })
    }
}
