//! The TC server's configuration.

use crate::coordinator::{LockConfig, SessionConfig};
use crate::protocol::FrameLimits;

/// Raft group id of session partition `p` (global and branch sessions).
pub const SESSION_GROUP_BASE: u64 = 1_000_000;
/// Raft group id of lock partition `p` (global row locks).
pub const LOCK_GROUP_BASE: u64 = 2_000_000;
/// Most partitions of each kind.
pub const MAX_PARTITIONS: u32 = 1024;

pub fn session_group(partition: u32) -> u64 {
    SESSION_GROUP_BASE + u64::from(partition)
}

pub fn lock_group(partition: u32) -> u64 {
    LOCK_GROUP_BASE + u64::from(partition)
}

/// Everything the TC of one node needs. The partition counts and the
/// state-machine configurations must be the same on every node.
#[derive(Clone, Debug)]
pub struct TcConfig {
    /// This node's id (the top bits of the transaction and branch ids it
    /// makes, so ids are unique across TC nodes). At most 65,535.
    pub node_id: u16,
    /// `host:port` written into the XIDs this node makes (its Seata address).
    pub advertise_addr: String,
    /// Session partitions (raft groups holding global sessions). Default 4.
    pub session_partitions: u32,
    /// Lock partitions (raft groups holding row locks). Default 4.
    pub lock_partitions: u32,
    /// Session state machine configuration (retry bounds and limits);
    /// `lock_partitions` in it is overwritten with the field above.
    pub session: SessionConfig,
    /// Lock state machine configuration; `partition_index` and `partitions`
    /// are set per partition.
    pub lock: LockConfig,
    /// Wire limits for frames read from clients.
    pub frame_limits: FrameLimits,
    /// Most client connections. Default 4,096.
    pub max_connections: usize,
    /// Most requests one connection has in flight (more wait). Default 512.
    pub max_in_flight_per_connection: usize,
    /// Frames queued for writing to one connection. Default 1,024.
    pub write_queue_frames: usize,
    /// Time an RM has to answer `BranchCommit` / `BranchRollback`; no answer
    /// counts as a retryable failure. Default 10,000.
    pub branch_call_timeout_ms: u64,
    /// Phase-two calls in flight per node. Default 256.
    pub phase_two_concurrency: usize,
    /// How often the phase-two worker looks for due work. Default 20.
    pub worker_interval_ms: u64,
    /// How often leaders check for timed-out sessions. Default 1,000.
    pub timeout_check_interval_ms: u64,
    /// How long `GlobalRollback` (and a synchronous `GlobalCommit`) waits for
    /// phase two before answering the status it reached. Default 10,000.
    pub phase_two_wait_ms: u64,
}

impl TcConfig {
    pub fn new(node_id: u16, advertise_addr: String) -> TcConfig {
        TcConfig {
            node_id,
            advertise_addr,
            session_partitions: 4,
            lock_partitions: 4,
            session: SessionConfig::default(),
            lock: LockConfig::default(),
            frame_limits: FrameLimits::default(),
            max_connections: 4096,
            max_in_flight_per_connection: 512,
            write_queue_frames: 1024,
            branch_call_timeout_ms: 10_000,
            phase_two_concurrency: 256,
            worker_interval_ms: 20,
            timeout_check_interval_ms: 1_000,
            phase_two_wait_ms: 10_000,
        }
    }

    /// Check the values a node cannot run with.
    pub fn validate(&self) -> Result<(), String> {
        for (name, n) in [
            ("session_partitions", self.session_partitions),
            ("lock_partitions", self.lock_partitions),
        ] {
            if n == 0 || n > MAX_PARTITIONS {
                return Err(format!("{name} must be 1..={MAX_PARTITIONS}, not {n}"));
            }
        }
        if self.node_id == 0 {
            return Err("the TC node id must be at least 1".into());
        }
        let (host, port) = self.advertise_addr.rsplit_once(':').ok_or_else(|| {
            format!(
                "advertise address {:?} is not host:port",
                self.advertise_addr
            )
        })?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!(
                "advertise address {:?} is not host:port",
                self.advertise_addr
            ));
        }
        for (name, v) in [
            ("max_connections", self.max_connections),
            (
                "max_in_flight_per_connection",
                self.max_in_flight_per_connection,
            ),
            ("write_queue_frames", self.write_queue_frames),
            ("phase_two_concurrency", self.phase_two_concurrency),
        ] {
            if v == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        Ok(())
    }

    pub(crate) fn session_config(&self) -> SessionConfig {
        let mut c = self.session;
        c.lock_partitions = self.lock_partitions;
        c
    }

    pub(crate) fn lock_config(&self, partition: u32) -> LockConfig {
        let mut c = self.lock;
        c.partition_index = partition;
        c.partitions = self.lock_partitions;
        c
    }

    pub(crate) fn advertise_host_port(&self) -> (String, u16) {
        match self.advertise_addr.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().unwrap_or(8091)),
            None => (self.advertise_addr.clone(), 8091),
        }
    }
}
