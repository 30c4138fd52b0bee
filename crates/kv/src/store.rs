//! `KvStore`: the node-local RheaKV API over the regions this node hosts.
//! It executes a request on this node or says who should (`NotLeader`); the
//! [`crate::router::Router`] turns that into forwarding and retries.
//!
//! ## The read path (the seed's signature behaviour)
//!
//! A linearizable read ([`ReadConsistency::Linearizable`], the default) on
//! the region leader asks the raft core for a read index, waits until the
//! local state machine applied it, and reads locally. **When the read index
//! fails and this node is still leader, the read is proposed through the raft
//! log** as a [`KvCommand::Read`] and answered by the state machine when the
//! entry applies (followers skip read entries). On a node that is not the
//! leader the request is refused with `NotLeader` and goes to the leader.
//!
//! Per request the caller may relax this: `Lease` (leader lease, no quorum
//! round while the lease is valid), `Follower` (a read index asked of the
//! leader, served on this replica) or `Stale` (this replica's applied state,
//! no check at all).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use rhea_raft::{NodeId, ProposeError, ReadError, ReadMode, Role};
use rhea_runtime::{DriverError, DriverHandle, GroupStatus};

use crate::command::{KvAnswer, KvCommand, ReadOp};
use crate::error::KvError;
use crate::region::{RegionEpoch, RegionId, RegionRange, region_of};
use crate::storage::{NodeAddrs, Storage};

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadConsistency {
    /// ReadIndex on the leader; through the raft log when ReadIndex fails.
    #[default]
    Linearizable,
    /// The leader's lease (falls back to ReadIndex when the lease is not valid).
    Lease,
    /// ReadIndex asked of the leader, served on any replica.
    Follower,
    /// This replica's applied state, however old.
    Stale,
}

impl ReadConsistency {
    pub fn name(self) -> &'static str {
        match self {
            ReadConsistency::Linearizable => "linearizable",
            ReadConsistency::Lease => "lease",
            ReadConsistency::Follower => "follower",
            ReadConsistency::Stale => "stale",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "linearizable" | "linear" | "default" => ReadConsistency::Linearizable,
            "lease" => ReadConsistency::Lease,
            "follower" => ReadConsistency::Follower,
            "stale" => ReadConsistency::Stale,
            _ => return None,
        })
    }

    /// True when any replica may serve the read (no leader needed).
    pub fn any_replica(self) -> bool {
        matches!(self, ReadConsistency::Follower | ReadConsistency::Stale)
    }
}

/// Size limits on requests, each checked before anything is proposed.
#[derive(Clone, Debug)]
pub struct KvLimits {
    /// Longest key. Default 64 KiB.
    pub max_key_bytes: usize,
    /// Longest value. Default 4 MiB.
    pub max_value_bytes: usize,
    /// Most keys in one batch or multi-key request. Default 10,000.
    pub max_batch_keys: usize,
    /// Largest total of keys and values in one write. Default 8 MiB
    /// (the raft core's `max_entry_bytes`).
    pub max_write_bytes: usize,
    /// Most pairs one scan returns. Default 100,000.
    pub max_scan_limit: u32,
}

impl Default for KvLimits {
    fn default() -> Self {
        KvLimits {
            max_key_bytes: 64 * 1024,
            max_value_bytes: 4 * 1024 * 1024,
            max_batch_keys: 10_000,
            max_write_bytes: 8 * 1024 * 1024 - 1024,
            max_scan_limit: 100_000,
        }
    }
}

/// Options of a [`KvStore`].
#[derive(Clone, Debug)]
pub struct KvOptions {
    pub limits: KvLimits,
    /// Longest wait for a proposal (a write, or a read through the log) to be
    /// applied; then the caller gets `KvError::Timeout` (outcome unknown).
    /// Default 10,000.
    pub propose_timeout_ms: u64,
    /// **Fault injection, for tests:** make every n-th read index on a leader
    /// fail as if it timed out (0: never), to exercise the fallback through
    /// the log. Never set it in production.
    pub debug_fail_read_index_every: u64,
}

impl Default for KvOptions {
    fn default() -> Self {
        KvOptions {
            limits: KvLimits::default(),
            propose_timeout_ms: 10_000,
            debug_fail_read_index_every: 0,
        }
    }
}

/// Counters of the read and write paths (also exported as metrics).
#[derive(Debug, Default)]
pub struct KvCounters {
    pub writes: AtomicU64,
    pub reads_read_index: AtomicU64,
    pub reads_lease: AtomicU64,
    pub reads_follower: AtomicU64,
    pub reads_stale: AtomicU64,
    /// Linearizable reads whose read index failed on a leader and that went
    /// through the raft log instead.
    pub reads_log_fallback: AtomicU64,
    pub read_index_failures: AtomicU64,
    pub not_leader: AtomicU64,
}

impl KvCounters {
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            ("writes", g(&self.writes)),
            ("reads_read_index", g(&self.reads_read_index)),
            ("reads_lease", g(&self.reads_lease)),
            ("reads_follower", g(&self.reads_follower)),
            ("reads_stale", g(&self.reads_stale)),
            ("reads_log_fallback", g(&self.reads_log_fallback)),
            ("read_index_failures", g(&self.read_index_failures)),
            ("not_leader", g(&self.not_leader)),
        ]
    }
}

struct Inner {
    node: NodeId,
    driver: DriverHandle,
    storage: Arc<Storage>,
    layout: Vec<RegionRange>,
    /// Raft groups hosted beside the regions (the transaction
    /// coordinator's partitions), for admin listings.
    extra_groups: Vec<RegionId>,
    opts: KvOptions,
    counters: KvCounters,
    read_index_calls: AtomicU64,
}

/// The node-local store. Cheap to clone.
#[derive(Clone)]
pub struct KvStore(Arc<Inner>);

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore")
            .field("node", &self.0.node)
            .finish_non_exhaustive()
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl KvStore {
    /// `layout` must be the regions the driver hosts, sorted by start key.
    pub fn new(
        node: NodeId,
        driver: DriverHandle,
        storage: Arc<Storage>,
        layout: Vec<RegionRange>,
        opts: KvOptions,
    ) -> KvStore {
        KvStore::with_extra_groups(node, driver, storage, layout, Vec::new(), opts)
    }

    /// [`KvStore::new`] on a driver that also hosts `extra_groups`.
    pub fn with_extra_groups(
        node: NodeId,
        driver: DriverHandle,
        storage: Arc<Storage>,
        layout: Vec<RegionRange>,
        extra_groups: Vec<RegionId>,
        opts: KvOptions,
    ) -> KvStore {
        KvStore(Arc::new(Inner {
            node,
            driver,
            storage,
            layout,
            extra_groups,
            opts,
            counters: KvCounters::default(),
            read_index_calls: AtomicU64::new(0),
        }))
    }

    pub fn node_id(&self) -> NodeId {
        self.0.node
    }
    pub fn layout(&self) -> &[RegionRange] {
        &self.0.layout
    }
    /// The non-region groups this node hosts.
    pub fn extra_groups(&self) -> &[RegionId] {
        &self.0.extra_groups
    }
    pub fn limits(&self) -> &KvLimits {
        &self.0.opts.limits
    }
    pub fn counters(&self) -> &KvCounters {
        &self.0.counters
    }
    pub fn driver(&self) -> &DriverHandle {
        &self.0.driver
    }
    pub fn storage(&self) -> &Arc<Storage> {
        &self.0.storage
    }
    pub fn directory(&self) -> BTreeMap<NodeId, NodeAddrs> {
        self.0.storage.directory()
    }
    pub fn region_of(&self, key: &[u8]) -> Option<&RegionRange> {
        region_of(&self.0.layout, key)
    }
    pub fn range(&self, region: RegionId) -> Result<&RegionRange, KvError> {
        self.0
            .layout
            .iter()
            .find(|r| r.id == region)
            .ok_or(KvError::UnknownRegion(region))
    }
    /// The region's current epoch as this replica applied it.
    pub fn epoch(&self, region: RegionId) -> Result<RegionEpoch, KvError> {
        self.0
            .storage
            .region(region)
            .map(|s| s.epoch())
            .ok_or(KvError::UnknownRegion(region))
    }
    pub async fn status(&self, region: RegionId) -> Result<GroupStatus, KvError> {
        self.0
            .driver
            .status(region)
            .await
            .map_err(|e| self.driver_error(region, e))
    }

    fn not_leader(&self, region: RegionId, leader: NodeId) -> KvError {
        bump(&self.0.counters.not_leader);
        let leader_addr = self
            .0
            .storage
            .directory()
            .get(&leader)
            .map(|a| a.client_addr.clone())
            .filter(|a| !a.is_empty());
        KvError::NotLeader {
            region,
            leader,
            leader_addr,
        }
    }

    fn driver_error(&self, region: RegionId, e: DriverError) -> KvError {
        match e {
            DriverError::NotLeader { leader_hint } => self.not_leader(region, leader_hint),
            DriverError::UnknownGroup(g) => KvError::UnknownRegion(g),
            DriverError::Propose(ProposeError::TooLarge { .. }) => KvError::Invalid(e.to_string()),
            e if e.is_retryable() => KvError::TryAgain {
                region,
                reason: e.to_string(),
            },
            e => KvError::Driver(e),
        }
    }

    fn check(&self, region: RegionId, epoch: Option<RegionEpoch>) -> Result<&RegionRange, KvError> {
        let range = self.range(region)?;
        if let Some(want) = epoch {
            let current = self.epoch(region)?;
            if want != current {
                return Err(KvError::EpochMismatch { region, current });
            }
        }
        Ok(range)
    }

    fn check_keys<'a>(
        &self,
        range: &RegionRange,
        keys: impl IntoIterator<Item = &'a Bytes>,
    ) -> Result<(), KvError> {
        let l = &self.0.opts.limits;
        let mut n = 0usize;
        for k in keys {
            n += 1;
            if k.len() > l.max_key_bytes {
                return Err(KvError::Invalid(format!(
                    "key of {} bytes exceeds max_key_bytes {}",
                    k.len(),
                    l.max_key_bytes
                )));
            }
            if !range.contains(k) {
                return Err(KvError::KeyNotInRegion { region: range.id });
            }
        }
        if n > l.max_batch_keys {
            return Err(KvError::Invalid(format!(
                "{n} keys exceed max_batch_keys {}",
                l.max_batch_keys
            )));
        }
        Ok(())
    }

    fn check_write(&self, range: &RegionRange, cmd: &KvCommand) -> Result<(), KvError> {
        self.check_keys(range, cmd.keys())?;
        let l = &self.0.opts.limits;
        let values: Vec<&Bytes> = match cmd {
            KvCommand::Put { value, .. }
            | KvCommand::PutIfAbsent { value, .. }
            | KvCommand::GetAndPut { value, .. } => vec![value],
            KvCommand::CompareAndPut { expect, value, .. } => vec![expect, value],
            KvCommand::BatchPut { pairs } => pairs.iter().map(|(_, v)| v).collect(),
            _ => Vec::new(),
        };
        for v in values {
            if v.len() > l.max_value_bytes {
                return Err(KvError::Invalid(format!(
                    "value of {} bytes exceeds max_value_bytes {}",
                    v.len(),
                    l.max_value_bytes
                )));
            }
        }
        Ok(())
    }

    /// Execute a write (or a read through the log) on this node, which must
    /// lead the region. `epoch`: the caller's view of the region (None: no check).
    pub async fn write(
        &self,
        region: RegionId,
        epoch: Option<RegionEpoch>,
        cmd: KvCommand,
    ) -> Result<KvAnswer, KvError> {
        let range = self.check(region, epoch)?;
        self.check_write(range, &cmd)?;
        let data = cmd.encode();
        if data.len() > self.0.opts.limits.max_write_bytes {
            return Err(KvError::Invalid(format!(
                "write of {} bytes exceeds max_write_bytes {}",
                data.len(),
                self.0.opts.limits.max_write_bytes
            )));
        }
        bump(&self.0.counters.writes);
        self.propose(region, data).await
    }

    async fn propose(&self, region: RegionId, data: Bytes) -> Result<KvAnswer, KvError> {
        let timeout_ms = self.0.opts.propose_timeout_ms;
        let (_, answer) = tokio::time::timeout(
            std::time::Duration::from_millis(timeout_ms),
            self.0.driver.execute(region, data),
        )
        .await
        .map_err(|_| KvError::Timeout { region, timeout_ms })?
        .map_err(|e| self.driver_error(region, e))?;
        match KvAnswer::decode(&answer) {
            Ok(KvAnswer::Failed(m)) => Err(KvError::Failed(m)),
            Ok(a) => Ok(a),
            Err(e) => Err(KvError::Protocol(format!("state machine answer: {e}"))),
        }
    }

    /// Execute `payload` on a raft group this node hosts that is not a KV
    /// region (the transaction coordinator's partitions), answering what the
    /// group's state machine responds. Served by the group's leader only
    /// (else `NotLeader` naming the leader and its client address). An
    /// expired `propose_timeout_ms` is `Timeout`: the outcome is unknown.
    pub async fn execute_group(&self, group: RegionId, payload: Bytes) -> Result<Bytes, KvError> {
        if self.range(group).is_ok() {
            return Err(KvError::Invalid(format!(
                "group {group} is a KV region: use RHEA.R"
            )));
        }
        if payload.len() > self.0.opts.limits.max_write_bytes {
            return Err(KvError::Invalid(format!(
                "command of {} bytes exceeds max_write_bytes {}",
                payload.len(),
                self.0.opts.limits.max_write_bytes
            )));
        }
        match self.0.driver.role_hint(group) {
            None => return Err(KvError::UnknownRegion(group)),
            Some((Role::Leader, _, _)) => {}
            Some((_, leader, _)) => return Err(self.not_leader(group, leader)),
        }
        let timeout_ms = self.0.opts.propose_timeout_ms;
        let (_, answer) = tokio::time::timeout(
            std::time::Duration::from_millis(timeout_ms),
            self.0.driver.execute(group, payload),
        )
        .await
        .map_err(|_| KvError::Timeout {
            region: group,
            timeout_ms,
        })?
        .map_err(|e| self.driver_error(group, e))?;
        Ok(answer)
    }

    /// Serve a read with the given consistency. Linearizable and lease reads
    /// need this node to lead the region (else `NotLeader`).
    pub async fn read(
        &self,
        region: RegionId,
        epoch: Option<RegionEpoch>,
        op: ReadOp,
        consistency: ReadConsistency,
    ) -> Result<KvAnswer, KvError> {
        let range = self.check(region, epoch)?.clone();
        self.check_keys(&range, op.keys())?;
        if let ReadOp::Scan { limit, .. } = &op
            && *limit > self.0.opts.limits.max_scan_limit
        {
            return Err(KvError::Invalid(format!(
                "scan limit {limit} exceeds max_scan_limit {}",
                self.0.opts.limits.max_scan_limit
            )));
        }
        let c = &self.0.counters;
        match consistency {
            ReadConsistency::Stale => {
                bump(&c.reads_stale);
                metrics::counter!("rhea_kv_reads_total", "path" => "stale").increment(1);
            }
            ReadConsistency::Follower => {
                self.0
                    .driver
                    .read_index(region)
                    .await
                    .map_err(|e| self.driver_error(region, e))?;
                bump(&c.reads_follower);
                metrics::counter!("rhea_kv_reads_total", "path" => "follower").increment(1);
            }
            ReadConsistency::Linearizable | ReadConsistency::Lease => {
                // A hint without a driver round trip; the read index below is
                // what decides (it fails on a node that is not leader).
                let (role, leader, _) = self
                    .0
                    .driver
                    .role_hint(region)
                    .ok_or(KvError::UnknownRegion(region))?;
                if role != Role::Leader {
                    return Err(self.not_leader(region, leader));
                }
                let mode = if consistency == ReadConsistency::Lease {
                    ReadMode::LeaseBased
                } else {
                    ReadMode::Safe
                };
                match self.read_index(region, mode).await {
                    Ok(()) => {
                        if consistency == ReadConsistency::Lease {
                            bump(&c.reads_lease);
                            metrics::counter!("rhea_kv_reads_total", "path" => "lease")
                                .increment(1);
                        } else {
                            bump(&c.reads_read_index);
                            metrics::counter!("rhea_kv_reads_total", "path" => "read_index")
                                .increment(1);
                        }
                    }
                    Err(DriverError::NotLeader { leader_hint }) => {
                        return Err(self.not_leader(region, leader_hint));
                    }
                    Err(e) => {
                        bump(&c.read_index_failures);
                        // The seed's rule: still leader -> read through the log.
                        let status = self.status(region).await?;
                        if status.role != Role::Leader {
                            return Err(self.not_leader(region, status.leader));
                        }
                        tracing::debug!(region, error = %e, "read index failed on the leader; reading through the log");
                        bump(&c.reads_log_fallback);
                        metrics::counter!("rhea_kv_reads_total", "path" => "log_fallback")
                            .increment(1);
                        return self.propose(region, KvCommand::Read(op).encode()).await;
                    }
                }
            }
        }
        match self.0.storage.read(&range, &op)? {
            KvAnswer::Failed(m) => Err(KvError::Failed(m)),
            a => Ok(a),
        }
    }

    async fn read_index(&self, region: RegionId, mode: ReadMode) -> Result<(), DriverError> {
        let every = self.0.opts.debug_fail_read_index_every;
        if every > 0
            && self
                .0
                .read_index_calls
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(every)
        {
            return Err(DriverError::Read(ReadError::Timeout));
        }
        self.0
            .driver
            .read_index_with(region, mode)
            .await
            .map(|_| ())
    }
}
