//! Per-node configuration. Every limit carries its unit in its name.

use crate::error::ConfigError;
use crate::membership::PRIORITY_DISABLED;
use crate::types::{GroupId, NodeId};

/// How a read index request is confirmed (SOFAJRaft `ReadOnlyOption`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadMode {
    /// `ReadOnlySafe`: one heartbeat round acknowledged by a quorum. The default.
    Safe,
    /// `ReadOnlyLeaseBased`: answered at once while the leader lease is valid;
    /// silently downgraded to [`ReadMode::Safe`] when it is not.
    LeaseBased,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub id: NodeId,
    pub group: GroupId,
    /// Seed of the node's private RNG (randomised election timeouts, read
    /// batch ids). **Must differ at every start of the same node**: the ids of
    /// follower read batches are drawn from it, and a restarted node that reused
    /// its seed could take a late answer meant for its previous incarnation as
    /// the answer to a new read. Drivers derive it from the OS; the simulator
    /// from the run seed and the incarnation.
    pub seed: u64,
    /// Base election timeout. The effective timeout is drawn from
    /// `[election_timeout_ticks, 2 * election_timeout_ticks)` at every reset.
    pub election_timeout_ticks: u64,
    /// Interval between leader heartbeats. Must be less than the election timeout.
    pub heartbeat_interval_ticks: u64,
    /// Leader lease as a percentage of the election timeout (SOFAJRaft
    /// `leaderLeaseTimeRatio`, default 90).
    pub leader_lease_ratio_percent: u64,
    /// Appends in flight to one follower in pipeline state (SOFAJRaft
    /// `maxReplicatorInflightMsgs`, default 256).
    pub max_inflight_appends: usize,
    /// Entries in one AppendEntries (SOFAJRaft `maxEntriesSize`, default 1024).
    pub max_append_entries: usize,
    /// Payload bytes in one AppendEntries (SOFAJRaft `maxBodySize`, default 512 KiB).
    /// A single larger entry is still sent alone.
    pub max_append_bytes: usize,
    /// Largest payload `propose` accepts.
    pub max_entry_bytes: usize,
    /// Entries appended but not yet committed above which `propose` refuses (back-pressure).
    pub max_uncommitted_entries: usize,
    /// Read requests waiting for confirmation above which `read_index` refuses.
    pub max_pending_reads: usize,
    /// Entries kept below a snapshot when compacting (SOFAJRaft `snapshotLogIndexMargin`).
    pub snapshot_log_index_margin: u64,
    /// Size of one InstallSnapshot chunk (SOFAJRaft `maxByteCountPerRpc`, 128 KiB).
    pub snapshot_chunk_bytes: usize,
    /// Snapshot bytes the leader may send per tick, over all followers
    /// (SOFAJRaft `ThroughputSnapshotThrottle`). 0 means unlimited.
    pub snapshot_throttle_bytes_per_tick: u64,
    /// Largest snapshot a follower accepts.
    pub max_snapshot_bytes: u64,
    /// New voters must get within this many entries of the leader's last index
    /// before the joint configuration is proposed (SOFAJRaft `catchupMargin`).
    pub catchup_margin_entries: u64,
    /// A membership change whose new voters have not caught up after this many
    /// ticks is aborted.
    pub catchup_timeout_ticks: u64,
    /// This node's election priority (SOFAJRaft `electionPriority`): -1 disabled,
    /// 0 never elected, higher wins first. The priority other nodes see is the one
    /// recorded in the membership; this value is used when the node is not listed there.
    pub election_priority: i32,
    /// Minimum step by which a node lowers the target priority after missing an
    /// election (SOFAJRaft `decayPriorityGap`, default 10).
    pub decay_priority_gap: i32,
    /// How read index requests are confirmed by default.
    pub read_mode: ReadMode,
}

impl Config {
    /// Defaults mirroring SOFAJRaft, with time in ticks (1 tick = 100 ms at
    /// the SOFAJRaft default election timeout of 1000 ms).
    pub fn new(id: NodeId, group: GroupId) -> Self {
        Config {
            id,
            group,
            seed: id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ group,
            election_timeout_ticks: 10,
            heartbeat_interval_ticks: 1,
            leader_lease_ratio_percent: 90,
            max_inflight_appends: 256,
            max_append_entries: 1024,
            max_append_bytes: 512 * 1024,
            max_entry_bytes: 8 * 1024 * 1024,
            max_uncommitted_entries: 65_536,
            max_pending_reads: 65_536,
            snapshot_log_index_margin: 0,
            snapshot_chunk_bytes: 128 * 1024,
            snapshot_throttle_bytes_per_tick: 0,
            max_snapshot_bytes: 64 * 1024 * 1024 * 1024,
            catchup_margin_entries: 1000,
            catchup_timeout_ticks: 10,
            election_priority: PRIORITY_DISABLED,
            decay_priority_gap: 10,
            read_mode: ReadMode::Safe,
        }
    }

    /// The lease in ticks: `election_timeout_ticks * leader_lease_ratio_percent / 100`.
    pub fn lease_ticks(&self) -> u64 {
        self.election_timeout_ticks * self.leader_lease_ratio_percent / 100
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |what: &str| Err(ConfigError(what.to_string()));
        if self.id == crate::types::NO_NODE {
            return fail("id must not be 0 (0 means no node)");
        }
        if self.election_timeout_ticks < 2 {
            return fail("election_timeout_ticks must be at least 2");
        }
        if self.heartbeat_interval_ticks == 0
            || self.heartbeat_interval_ticks >= self.election_timeout_ticks
        {
            return fail("heartbeat_interval_ticks must be in 1..election_timeout_ticks");
        }
        if self.leader_lease_ratio_percent == 0 || self.leader_lease_ratio_percent >= 100 {
            return fail("leader_lease_ratio_percent must be in 1..100");
        }
        if self.max_inflight_appends == 0 {
            return fail("max_inflight_appends must be at least 1");
        }
        if self.max_append_entries == 0 || self.max_append_bytes == 0 {
            return fail("max_append_entries and max_append_bytes must be at least 1");
        }
        if self.max_uncommitted_entries == 0 || self.max_pending_reads == 0 {
            return fail("max_uncommitted_entries and max_pending_reads must be at least 1");
        }
        if self.snapshot_chunk_bytes == 0 {
            return fail("snapshot_chunk_bytes must be at least 1");
        }
        if self.catchup_timeout_ticks == 0 {
            return fail("catchup_timeout_ticks must be at least 1");
        }
        if self.decay_priority_gap < 1 {
            return fail("decay_priority_gap must be at least 1");
        }
        if self.election_priority < PRIORITY_DISABLED {
            return fail("election_priority must be -1 (disabled), 0 (never elected) or positive");
        }
        Ok(())
    }
}
