//! The KV state machine's storage: one redb database per node, shared by
//! every region, that keeps the data **and each region's applied index in
//! the same transaction**, so a restart replays only the log after it.
//!
//! Tables:
//! ```text
//! data     user key            -> value                 (all regions; ranges are disjoint)
//! regions  region id (u64)     -> applied:u64le conf_ver:u64le version:u64le
//! nodes    (region id, node)   -> raft_addr_len:u32le raft_addr client_addr_len:u32le client_addr
//! ```
//!
//! Durability: each applied batch is one write transaction. Most commit
//! without fsync (`Durability::None`); one every `durable_interval_ms` (and
//! every snapshot restore, and [`Storage::sync`] at shutdown) commits with
//! fsync, which also makes the earlier ones durable. A crash loses at most
//! the non-durable tail, which the raft log (fsynced before commit) replays:
//! the applied index stored with the data says from where.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redb::{Database, Durability, ReadableTable, TableDefinition};
use rhea_raft::{Entry, EntryPayload, GroupId, Index, NodeId};
use rhea_runtime::{ApplyContext, StateMachine, StateMachineError};
use thiserror::Error;
use tracing::warn;

use crate::command::{KvAnswer, KvCommand, ReadOp};
use crate::region::{RegionEpoch, RegionId, RegionRange};

const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("data");
const REGIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("regions");
const NODES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("nodes");

/// Magic at the start of a region snapshot image.
const SNAPSHOT_MAGIC: &[u8; 4] = b"RhKs";

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("storage {path}: {source}")]
    Open {
        path: String,
        source: Box<redb::Error>,
    },
    #[error("storage: {0}")]
    Db(Box<redb::Error>),
    #[error("corrupt storage record: {0}")]
    Corrupt(&'static str),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(
        impl From<$t> for StorageError {
            fn from(e: $t) -> Self {
                StorageError::Db(Box::new(e.into()))
            }
        }
    )*};
}
db_err!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<StorageError> for StateMachineError {
    fn from(e: StorageError) -> Self {
        StateMachineError(e.to_string())
    }
}

/// A node's addresses as its directory entry records them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeAddrs {
    pub raft_addr: String,
    pub client_addr: String,
}

/// What other tasks may read about a region without going to the driver.
#[derive(Debug, Default)]
pub struct RegionShared {
    applied: AtomicU64,
    conf_ver: AtomicU64,
    version: AtomicU64,
}

impl RegionShared {
    pub fn applied(&self) -> Index {
        self.applied.load(Ordering::Acquire)
    }
    pub fn epoch(&self) -> RegionEpoch {
        RegionEpoch {
            conf_ver: self.conf_ver.load(Ordering::Acquire),
            version: self.version.load(Ordering::Acquire),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RegionMeta {
    applied: Index,
    conf_ver: u64,
    version: u64,
}

impl RegionMeta {
    fn encode(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[..8].copy_from_slice(&self.applied.to_le_bytes());
        b[8..16].copy_from_slice(&self.conf_ver.to_le_bytes());
        b[16..].copy_from_slice(&self.version.to_le_bytes());
        b
    }
    fn decode(b: &[u8]) -> Result<Self, StorageError> {
        let u = |r: std::ops::Range<usize>| -> Result<u64, StorageError> {
            let s = b
                .get(r)
                .ok_or(StorageError::Corrupt("region meta too short"))?;
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            Ok(u64::from_le_bytes(a))
        };
        if b.len() != 24 {
            return Err(StorageError::Corrupt("region meta is not 24 bytes"));
        }
        Ok(RegionMeta {
            applied: u(0..8)?,
            conf_ver: u(8..16)?,
            version: u(16..24)?,
        })
    }
}

fn encode_addrs(a: &NodeAddrs) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + a.raft_addr.len() + a.client_addr.len());
    for s in [&a.raft_addr, &a.client_addr] {
        v.extend_from_slice(&(s.len() as u32).to_le_bytes());
        v.extend_from_slice(s.as_bytes());
    }
    v
}

fn decode_addrs(b: &[u8]) -> Result<NodeAddrs, StorageError> {
    let mut pos = 0;
    let mut take = || -> Result<String, StorageError> {
        let len_bytes = b
            .get(pos..pos + 4)
            .ok_or(StorageError::Corrupt("node record truncated"))?;
        let mut a = [0u8; 4];
        a.copy_from_slice(len_bytes);
        let len = u32::from_le_bytes(a) as usize;
        let s = b
            .get(pos + 4..pos + 4 + len)
            .ok_or(StorageError::Corrupt("node record truncated"))?;
        pos += 4 + len;
        String::from_utf8(s.to_vec()).map_err(|_| StorageError::Corrupt("node address not UTF-8"))
    };
    Ok(NodeAddrs {
        raft_addr: take()?,
        client_addr: take()?,
    })
}

/// Options of the storage.
#[derive(Clone, Debug)]
pub struct StorageOptions {
    /// Longest time between two fsynced commits of applied state. Default 1000.
    pub durable_interval_ms: u64,
    /// redb's page cache. Default 64 MiB.
    pub cache_bytes: usize,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            durable_interval_ms: 1000,
            cache_bytes: 64 << 20,
        }
    }
}

/// The node's KV database. Share it in an `Arc`.
pub struct Storage {
    db: Database,
    opts: StorageOptions,
    last_durable: Mutex<Instant>,
    regions: RwLock<BTreeMap<RegionId, Arc<RegionShared>>>,
    /// The union of every region's node directory (newest write wins).
    directory: RwLock<BTreeMap<NodeId, NodeAddrs>>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage").finish_non_exhaustive()
    }
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}
fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl Storage {
    /// Open (or create) the database file at `path`.
    pub fn open(path: &Path, opts: StorageOptions) -> Result<Arc<Storage>, StorageError> {
        let open_err = |e: redb::Error| StorageError::Open {
            path: path.display().to_string(),
            source: Box::new(e),
        };
        let db = Database::builder()
            .set_cache_size(opts.cache_bytes)
            .create(path)
            .map_err(|e| open_err(e.into()))?;
        let txn = db.begin_write()?;
        {
            txn.open_table(DATA)?;
            txn.open_table(REGIONS)?;
            let nodes = txn.open_table(NODES)?;
            drop(nodes);
        }
        txn.commit()?;
        let mut directory = BTreeMap::new();
        {
            let r = db.begin_read()?;
            let nodes = r.open_table(NODES)?;
            for item in nodes.iter()? {
                let (k, v) = item?;
                directory.insert(k.value().1, decode_addrs(v.value())?);
            }
        }
        Ok(Arc::new(Storage {
            db,
            opts,
            last_durable: Mutex::new(Instant::now()),
            regions: RwLock::new(BTreeMap::new()),
            directory: RwLock::new(directory),
        }))
    }

    /// The region's state machine, loaded from what is stored.
    pub fn state_machine(
        self: &Arc<Self>,
        range: RegionRange,
    ) -> Result<RegionStateMachine, StorageError> {
        let meta = {
            let r = self.db.begin_read()?;
            let t = r.open_table(REGIONS)?;
            match t.get(range.id)? {
                Some(v) => RegionMeta::decode(v.value())?,
                None => RegionMeta::default(),
            }
        };
        let shared = Arc::new(RegionShared::default());
        publish(&shared, &meta);
        write_lock(&self.regions).insert(range.id, shared.clone());
        Ok(RegionStateMachine {
            storage: self.clone(),
            range,
            meta,
            shared,
        })
    }

    /// What other tasks may read about `region` (None: not hosted).
    pub fn region(&self, region: RegionId) -> Option<Arc<RegionShared>> {
        read_lock(&self.regions).get(&region).cloned()
    }

    /// Every node's addresses as the regions' directories record them.
    pub fn directory(&self) -> BTreeMap<NodeId, NodeAddrs> {
        read_lock(&self.directory).clone()
    }

    /// One region's node directory as applied on this replica.
    pub fn region_directory(&self, region: RegionId) -> BTreeMap<NodeId, NodeAddrs> {
        let read = || -> Result<BTreeMap<NodeId, NodeAddrs>, StorageError> {
            let r = self.db.begin_read()?;
            let t = r.open_table(NODES)?;
            let mut out = BTreeMap::new();
            for item in t.range((region, 0)..=(region, u64::MAX))? {
                let (k, v) = item?;
                out.insert(k.value().1, decode_addrs(v.value())?);
            }
            Ok(out)
        };
        read().unwrap_or_default()
    }

    /// Serve a read from the applied state (the caller established that the
    /// state is recent enough for the read's consistency).
    pub fn read(&self, range: &RegionRange, op: &ReadOp) -> Result<KvAnswer, StorageError> {
        let r = self.db.begin_read()?;
        let t = r.open_table(DATA)?;
        eval_read(&t, range, op)
    }

    /// Make every applied batch durable now (at shutdown).
    pub fn sync(&self) -> Result<(), StorageError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        txn.commit()?;
        *self.last_durable.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        Ok(())
    }

    /// The durability of the next commit: fsync when the interval passed.
    fn next_durability(&self) -> Durability {
        let mut last = self.last_durable.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= Duration::from_millis(self.opts.durable_interval_ms) {
            *last = Instant::now();
            Durability::Immediate
        } else {
            Durability::None
        }
    }
}

fn publish(shared: &RegionShared, meta: &RegionMeta) {
    shared.conf_ver.store(meta.conf_ver, Ordering::Release);
    shared.version.store(meta.version, Ordering::Release);
    shared.applied.store(meta.applied, Ordering::Release);
}

fn in_range<'a>(range: &RegionRange, keys: impl IntoIterator<Item = &'a Bytes>) -> bool {
    keys.into_iter().all(|k| range.contains(k))
}

/// redb bounds of the key range `[lo, hi)` (empty `hi`: to the end).
fn key_bounds<'a>(lo: &'a [u8], hi: &'a [u8]) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    let end = if hi.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Excluded(hi)
    };
    (Bound::Included(lo), end)
}

/// Every key in `[lo, hi)` (to delete them after the iteration ends).
fn keys_in<T: ReadableTable<&'static [u8], &'static [u8]>>(
    t: &T,
    lo: &[u8],
    hi: &[u8],
) -> Result<Vec<Vec<u8>>, StorageError> {
    let keys = t
        .range::<&[u8]>(key_bounds(lo, hi))?
        .map(|i| i.map(|(k, _)| k.value().to_vec()))
        .collect::<Result<_, _>>()?;
    Ok(keys)
}

type Pair<'a> = (
    redb::AccessGuard<'a, &'static [u8]>,
    redb::AccessGuard<'a, &'static [u8]>,
);

/// Evaluate a read on a table (the write transaction's, on the log path, or
/// a read transaction's).
fn eval_read<T: ReadableTable<&'static [u8], &'static [u8]>>(
    t: &T,
    range: &RegionRange,
    op: &ReadOp,
) -> Result<KvAnswer, StorageError> {
    if !in_range(range, op.keys()) {
        return Ok(KvAnswer::Failed(format!("key outside region {}", range.id)));
    }
    let get = |k: &[u8]| -> Result<Option<Bytes>, StorageError> {
        Ok(t.get(k)?.map(|v| Bytes::copy_from_slice(v.value())))
    };
    Ok(match op {
        ReadOp::Get { key } => KvAnswer::Value(get(key)?),
        ReadOp::ContainsKey { key } => KvAnswer::Bool(t.get(&key[..])?.is_some()),
        ReadOp::MultiGet { keys } => {
            KvAnswer::Values(keys.iter().map(|k| get(k)).collect::<Result<Vec<_>, _>>()?)
        }
        ReadOp::Scan {
            start,
            end,
            limit,
            reverse,
        } => {
            let Some((lo, hi)) = range.clamp(start, end) else {
                return Ok(KvAnswer::Pairs(Vec::new()));
            };
            let iter = t.range::<&[u8]>(key_bounds(&lo, &hi))?;
            let mut out = Vec::new();
            let mut push =
                |item: Result<Pair<'_>, redb::StorageError>| -> Result<bool, StorageError> {
                    let (k, v) = item?;
                    out.push((
                        Bytes::copy_from_slice(k.value()),
                        Bytes::copy_from_slice(v.value()),
                    ));
                    Ok(out.len() < *limit as usize)
                };
            if *limit > 0 {
                if *reverse {
                    for item in iter.rev() {
                        if !push(item)? {
                            break;
                        }
                    }
                } else {
                    for item in iter {
                        if !push(item)? {
                            break;
                        }
                    }
                }
            }
            KvAnswer::Pairs(out)
        }
    })
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.pos.checked_add(n).ok_or("length overflow")?;
        let s = self.buf.get(self.pos..end).ok_or("truncated")?;
        self.pos = end;
        Ok(s)
    }
    fn u64(&mut self) -> Result<u64, &'static str> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        self.take(u32::from_le_bytes(a) as usize)
    }
}

type Image = (
    RegionMeta,
    Vec<(NodeId, NodeAddrs)>,
    Vec<(Vec<u8>, Vec<u8>)>,
);

/// Decode a region snapshot image (layout: see `RegionStateMachine::snapshot`).
fn parse_image(image: &[u8]) -> Result<Image, &'static str> {
    let mut c = Cursor { buf: image, pos: 0 };
    if c.take(4)? != SNAPSHOT_MAGIC {
        return Err("bad magic");
    }
    let meta = RegionMeta::decode(c.take(24)?).map_err(|_| "bad region meta")?;
    let ndir = c.u64()?;
    let mut dir = Vec::new();
    for _ in 0..ndir {
        let node = c.u64()?;
        let addrs = decode_addrs(c.bytes()?).map_err(|_| "bad node record")?;
        dir.push((node, addrs));
    }
    let mut pairs = Vec::new();
    while c.pos < image.len() {
        let k = c.bytes()?.to_vec();
        let v = c.bytes()?.to_vec();
        pairs.push((k, v));
    }
    Ok((meta, dir, pairs))
}

/// The state machine of one region.
pub struct RegionStateMachine {
    storage: Arc<Storage>,
    range: RegionRange,
    meta: RegionMeta,
    shared: Arc<RegionShared>,
}

impl RegionStateMachine {
    fn apply_command(
        &self,
        data: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
        nodes: &mut redb::Table<'_, (u64, u64), &'static [u8]>,
        cmd: KvCommand,
        want: bool,
        dir_updates: &mut Vec<(NodeId, NodeAddrs)>,
    ) -> Result<KvAnswer, StorageError> {
        if !in_range(&self.range, cmd.keys()) {
            return Ok(KvAnswer::Failed(format!(
                "key outside region {}",
                self.range.id
            )));
        }
        let old = |data: &redb::Table<'_, &'static [u8], &'static [u8]>,
                   k: &[u8]|
         -> Result<Option<Bytes>, StorageError> {
            Ok(data.get(k)?.map(|v| Bytes::copy_from_slice(v.value())))
        };
        Ok(match cmd {
            KvCommand::Put { key, value } => {
                data.insert(&key[..], &value[..])?;
                KvAnswer::Done
            }
            KvCommand::PutIfAbsent { key, value } => match old(data, &key)? {
                Some(prev) => KvAnswer::Value(Some(prev)),
                None => {
                    data.insert(&key[..], &value[..])?;
                    KvAnswer::Value(None)
                }
            },
            KvCommand::GetAndPut { key, value } => {
                let prev = data
                    .insert(&key[..], &value[..])?
                    .map(|v| Bytes::copy_from_slice(v.value()));
                KvAnswer::Value(prev)
            }
            KvCommand::CompareAndPut { key, expect, value } => {
                if old(data, &key)?.as_deref() == Some(&expect[..]) {
                    data.insert(&key[..], &value[..])?;
                    KvAnswer::Bool(true)
                } else {
                    KvAnswer::Bool(false)
                }
            }
            KvCommand::Delete { key } => KvAnswer::Bool(data.remove(&key[..])?.is_some()),
            KvCommand::DeleteRange { start, end } => {
                let Some((lo, hi)) = self.range.clamp(&start, &end) else {
                    return Ok(KvAnswer::Count(0));
                };
                let keys = keys_in(data, &lo, &hi)?;
                for k in &keys {
                    data.remove(&k[..])?;
                }
                KvAnswer::Count(keys.len() as u64)
            }
            KvCommand::BatchPut { pairs } => {
                for (k, v) in &pairs {
                    data.insert(&k[..], &v[..])?;
                }
                KvAnswer::Done
            }
            KvCommand::BatchDelete { keys } => {
                let mut n = 0;
                for k in &keys {
                    n += u64::from(data.remove(&k[..])?.is_some());
                }
                KvAnswer::Count(n)
            }
            KvCommand::Read(op) => {
                if want {
                    eval_read(data, &self.range, &op)?
                } else {
                    // Followers (and anyone nobody waits on) skip reads.
                    KvAnswer::Done
                }
            }
            KvCommand::RegisterNode {
                node,
                raft_addr,
                client_addr,
            } => {
                let mut addrs = match nodes.get((self.range.id, node))? {
                    Some(v) => decode_addrs(v.value())?,
                    None => NodeAddrs::default(),
                };
                if !raft_addr.is_empty() {
                    addrs.raft_addr = raft_addr;
                }
                if !client_addr.is_empty() {
                    addrs.client_addr = client_addr;
                }
                nodes.insert((self.range.id, node), &encode_addrs(&addrs)[..])?;
                dir_updates.push((node, addrs));
                KvAnswer::Done
            }
        })
    }
}

impl StateMachine for RegionStateMachine {
    fn apply(
        &mut self,
        group: GroupId,
        entries: &[Entry],
        ctx: &mut ApplyContext,
    ) -> Result<(), StateMachineError> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        let mut meta = self.meta;
        let mut dir_updates = Vec::new();
        let mut txn = self.storage.db.begin_write().map_err(StorageError::from)?;
        txn.set_durability(self.storage.next_durability());
        {
            let mut data = txn.open_table(DATA).map_err(StorageError::from)?;
            let mut nodes = txn.open_table(NODES).map_err(StorageError::from)?;
            for e in entries {
                if e.index <= meta.applied {
                    // Already applied before a restart (durable state machine).
                    continue;
                }
                match &e.payload {
                    EntryPayload::Blank => {}
                    EntryPayload::Membership(_) => meta.conf_ver += 1,
                    EntryPayload::Normal(bytes) => {
                        let want = ctx.wants_response(e.index);
                        let answer = match KvCommand::decode(bytes) {
                            Ok(cmd) => self.apply_command(
                                &mut data,
                                &mut nodes,
                                cmd,
                                want,
                                &mut dir_updates,
                            )?,
                            Err(err) => {
                                warn!(group, index = e.index, %err, "undecodable entry applied as a no-op");
                                KvAnswer::Failed(err.to_string())
                            }
                        };
                        if want {
                            ctx.respond(e.index, answer.encode());
                        }
                    }
                }
            }
            meta.applied = meta.applied.max(last.index);
            let mut regions = txn.open_table(REGIONS).map_err(StorageError::from)?;
            regions
                .insert(self.range.id, &meta.encode()[..])
                .map_err(StorageError::from)?;
        }
        txn.commit().map_err(StorageError::from)?;
        self.meta = meta;
        publish(&self.shared, &meta);
        if !dir_updates.is_empty() {
            let mut dir = write_lock(&self.storage.directory);
            for (n, a) in dir_updates {
                dir.insert(n, a);
            }
        }
        Ok(())
    }

    /// Image layout: `"RhKs"`, region meta (24 bytes), directory count
    /// (u64le) and entries (node u64le, u32le-prefixed record), then
    /// u32le-prefixed key and value pairs to the end.
    fn snapshot(&self) -> Result<Bytes, StateMachineError> {
        let r = self.storage.db.begin_read().map_err(StorageError::from)?;
        let data = r.open_table(DATA).map_err(StorageError::from)?;
        let nodes = r.open_table(NODES).map_err(StorageError::from)?;
        let mut out = Vec::new();
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&self.meta.encode());
        let put = |out: &mut Vec<u8>, b: &[u8]| {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        };
        let id = self.range.id;
        let mut dir = Vec::new();
        for item in nodes
            .range((id, 0)..=(id, u64::MAX))
            .map_err(StorageError::from)?
        {
            let (k, v) = item.map_err(StorageError::from)?;
            dir.push((k.value().1, v.value().to_vec()));
        }
        out.extend_from_slice(&(dir.len() as u64).to_le_bytes());
        for (n, v) in dir {
            out.extend_from_slice(&n.to_le_bytes());
            put(&mut out, &v);
        }
        let iter = data
            .range::<&[u8]>(key_bounds(&self.range.start_key, &self.range.end_key))
            .map_err(StorageError::from)?;
        for item in iter {
            let (k, v) = item.map_err(StorageError::from)?;
            put(&mut out, k.value());
            put(&mut out, v.value());
        }
        Ok(Bytes::from(out))
    }

    fn restore(&mut self, image: Bytes) -> Result<(), StateMachineError> {
        let (meta, dir, pairs) = parse_image(&image)
            .map_err(|m| StateMachineError(format!("region {} snapshot: {m}", self.range.id)))?;
        let id = self.range.id;
        let mut txn = self.storage.db.begin_write().map_err(StorageError::from)?;
        txn.set_durability(Durability::Immediate);
        {
            let mut data = txn.open_table(DATA).map_err(StorageError::from)?;
            let old = keys_in(&data, &self.range.start_key, &self.range.end_key)?;
            for k in &old {
                data.remove(&k[..]).map_err(StorageError::from)?;
            }
            for (k, v) in &pairs {
                data.insert(&k[..], &v[..]).map_err(StorageError::from)?;
            }
            let mut nodes = txn.open_table(NODES).map_err(StorageError::from)?;
            let old_nodes: Vec<u64> = nodes
                .range((id, 0)..=(id, u64::MAX))
                .map_err(StorageError::from)?
                .map(|i| i.map(|(k, _)| k.value().1))
                .collect::<Result<_, _>>()
                .map_err(StorageError::from)?;
            for n in old_nodes {
                nodes.remove((id, n)).map_err(StorageError::from)?;
            }
            for (n, a) in &dir {
                nodes
                    .insert((id, *n), &encode_addrs(a)[..])
                    .map_err(StorageError::from)?;
            }
            let mut regions = txn.open_table(REGIONS).map_err(StorageError::from)?;
            regions
                .insert(id, &meta.encode()[..])
                .map_err(StorageError::from)?;
        }
        txn.commit().map_err(StorageError::from)?;
        self.meta = meta;
        publish(&self.shared, &meta);
        let mut d = write_lock(&self.storage.directory);
        for (n, a) in dir {
            d.insert(n, a);
        }
        Ok(())
    }

    fn applied_index(&self) -> Index {
        self.meta.applied
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rhea_raft::{Entry, EntryPayload, Membership};

    fn entry(index: Index, cmd: KvCommand) -> Entry {
        Entry {
            term: 1,
            index,
            payload: EntryPayload::Normal(cmd.encode()),
        }
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn temp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("rhea-storage-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn apply_answers_waiters_and_persists_applied_index_with_data() {
        let dir = temp("apply");
        let range = crate::region::even_split(2).unwrap()[0].clone();
        {
            let st = Storage::open(&dir.join("kv.redb"), StorageOptions::default()).unwrap();
            let mut sm = st.state_machine(range.clone()).unwrap();
            let entries = vec![
                Entry {
                    term: 1,
                    index: 1,
                    payload: EntryPayload::Membership(Membership::new([1])),
                },
                entry(
                    2,
                    KvCommand::Put {
                        key: b("a"),
                        value: b("1"),
                    },
                ),
                entry(
                    3,
                    KvCommand::CompareAndPut {
                        key: b("a"),
                        expect: b("1"),
                        value: b("2"),
                    },
                ),
                entry(4, KvCommand::Read(ReadOp::Get { key: b("a") })),
                entry(
                    5,
                    KvCommand::Put {
                        key: Bytes::from_static(b"\xff"),
                        value: b("x"),
                    },
                ),
            ];
            let mut ctx = ApplyContext::default();
            // Nobody waits: reads are skipped, nothing is answered.
            sm.apply(1, &entries, &mut ctx).unwrap();
            assert_eq!(sm.applied_index(), 5);
            assert_eq!(st.region(range.id).unwrap().epoch().conf_ver, 1);
            assert_eq!(
                st.read(&range, &ReadOp::Get { key: b("a") }).unwrap(),
                KvAnswer::Value(Some(b("2")))
            );
            // The key outside the region was refused, not written.
            assert_eq!(
                st.read(
                    &range,
                    &ReadOp::Scan {
                        start: Bytes::new(),
                        end: Bytes::new(),
                        limit: 10,
                        reverse: false
                    }
                )
                .unwrap(),
                KvAnswer::Pairs(vec![(b("a"), b("2"))])
            );
            st.sync().unwrap();
        }
        // Reopen: the applied index came back with the data.
        let st = Storage::open(&dir.join("kv.redb"), StorageOptions::default()).unwrap();
        let sm = st.state_machine(range.clone()).unwrap();
        assert_eq!(sm.applied_index(), 5);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn snapshot_restores_elsewhere_and_bad_images_are_errors() {
        let dir = temp("snap");
        let range = crate::region::even_split(1).unwrap()[0].clone();
        let a = Storage::open(&dir.join("a.redb"), StorageOptions::default()).unwrap();
        let mut sa = a.state_machine(range.clone()).unwrap();
        let mut ctx = ApplyContext::default();
        sa.apply(
            1,
            &[
                entry(
                    1,
                    KvCommand::BatchPut {
                        pairs: vec![(b("k1"), b("v1")), (b("k2"), b("v2"))],
                    },
                ),
                entry(
                    2,
                    KvCommand::RegisterNode {
                        node: 7,
                        raft_addr: "127.0.0.1:1".into(),
                        client_addr: "127.0.0.1:2".into(),
                    },
                ),
            ],
            &mut ctx,
        )
        .unwrap();
        let image = sa.snapshot().unwrap();
        let b_ = Storage::open(&dir.join("b.redb"), StorageOptions::default()).unwrap();
        let mut sb = b_.state_machine(range.clone()).unwrap();
        sb.apply(
            1,
            &[entry(
                1,
                KvCommand::Put {
                    key: b("stale"),
                    value: b("x"),
                },
            )],
            &mut ctx,
        )
        .unwrap();
        sb.restore(image.clone()).unwrap();
        assert_eq!(sb.applied_index(), 2);
        assert_eq!(
            b_.read(
                &range,
                &ReadOp::MultiGet {
                    keys: vec![b("k1"), b("k2"), b("stale")]
                }
            )
            .unwrap(),
            KvAnswer::Values(vec![Some(b("v1")), Some(b("v2")), None])
        );
        assert_eq!(b_.directory().get(&7).unwrap().client_addr, "127.0.0.1:2");
        for cut in [0, 3, 10, 28, image.len() - 1] {
            assert!(sb.restore(image.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut bad = image.to_vec();
        bad[0] ^= 1;
        assert!(sb.restore(Bytes::from(bad)).is_err());
        // A failed restore changed nothing.
        assert_eq!(sb.applied_index(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
