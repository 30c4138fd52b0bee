//! The lock partition's snapshot image.
//!
//! ```text
//! image = magic "RTCL" version:u8 (= 1)
//!         rows:list<row>  fences:list<fence>
//! row   = resource_id table pk (strings) xid:string transaction_id:u64
//!         branch_id:i64 status:u8
//! fence = transaction_id:u64 branch_id:option<i64> expires_ms:u64
//! ```
//! Rows in row key order, fences in key order: equal states give equal
//! bytes. Restoring rebuilds the owner index and refuses duplicate rows and
//! rows that belong to another partition (a configuration mismatch).

use std::collections::BTreeMap;

use super::{Fences, LockPartition, RowLock};
use crate::coordinator::codec::{CodecError, Reader, Wire, Writer};
use crate::coordinator::config::LockConfig;
use crate::coordinator::ids::lock_partition_of;
use crate::coordinator::lock_key::RowKey;

const MAGIC: &[u8; 4] = b"RTCL";

/// Format version of the lock partition's snapshot image.
pub const LOCK_SNAPSHOT_VERSION: u8 = 1;

impl Wire for RowLock {
    const MIN_BYTES: usize = RowKey::MIN_BYTES + 4 + 8 + 8 + 1;
    fn put(&self, w: &mut Writer) {
        w.put(&self.row);
        w.str(&self.xid);
        w.u64(self.transaction_id);
        w.i64(self.branch_id);
        w.put(&self.status);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(RowLock {
            row: r.get()?,
            xid: r.string()?,
            transaction_id: r.u64()?,
            branch_id: r.i64()?,
            status: r.get()?,
        })
    }
}

struct Fence {
    transaction_id: u64,
    branch_id: Option<i64>,
    expires_ms: u64,
}

impl Wire for Fence {
    const MIN_BYTES: usize = 8 + 1 + 8;
    fn put(&self, w: &mut Writer) {
        w.u64(self.transaction_id);
        w.put(&self.branch_id);
        w.u64(self.expires_ms);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Fence {
            transaction_id: r.u64()?,
            branch_id: r.get()?,
            expires_ms: r.u64()?,
        })
    }
}

fn invalid(detail: String) -> CodecError {
    CodecError::Invalid {
        what: "lock snapshot",
        detail,
    }
}

impl LockPartition {
    /// The snapshot image of the whole partition.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.bytes(MAGIC);
        w.u8(LOCK_SNAPSHOT_VERSION);
        w.len(self.rows.len());
        for lock in self.rows.values() {
            w.put(lock);
        }
        w.len(self.fences.expiry_of.len());
        for (&(transaction_id, branch_id), &expires_ms) in &self.fences.expiry_of {
            w.put(&Fence {
                transaction_id,
                branch_id,
                expires_ms,
            });
        }
        w.into_vec()
    }

    /// Rebuilds a partition from [`snapshot`](Self::snapshot) bytes, with
    /// the configuration every replica uses. Never panics.
    pub fn restore(config: LockConfig, image: &[u8]) -> Result<LockPartition, CodecError> {
        let mut partition = LockPartition::new(config).map_err(|e| CodecError::Invalid {
            what: "lock configuration",
            detail: e.to_string(),
        })?;
        let mut r = Reader::new(image);
        if r.take(MAGIC.len())? != MAGIC {
            return Err(CodecError::BadMagic {
                what: "lock partition",
            });
        }
        let version = r.u8()?;
        if version != LOCK_SNAPSHOT_VERSION {
            return Err(CodecError::UnsupportedVersion {
                what: "lock snapshot",
                found: version,
                supported: LOCK_SNAPSHOT_VERSION,
            });
        }
        let rows: Vec<RowLock> = r.get()?;
        let fences: Vec<Fence> = r.get()?;
        r.finish()?;

        let mut by_key = BTreeMap::new();
        for lock in rows {
            let key = lock.row.row_key();
            let p = lock_partition_of(&key, config.partitions);
            if p != config.partition_index {
                return Err(invalid(format!(
                    "row {key} belongs to partition {p}, not {}",
                    config.partition_index
                )));
            }
            partition
                .owned
                .entry((lock.transaction_id, lock.branch_id))
                .or_default()
                .insert(key.clone());
            if by_key.insert(key.clone(), lock).is_some() {
                return Err(invalid(format!("row {key} appears twice")));
            }
        }
        partition.rows = by_key;
        let mut restored = Fences::default();
        for fence in fences {
            let key = (fence.transaction_id, fence.branch_id);
            if restored.expiry_of.insert(key, fence.expires_ms).is_some() {
                return Err(invalid(format!("fence {key:?} appears twice")));
            }
            restored.by_expiry.insert((fence.expires_ms, key));
        }
        partition.fences = restored;
        Ok(partition)
    }
}
