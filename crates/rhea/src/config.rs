//! `rhea server` options: flags, `RHEA_*` environment variables and a TOML
//! file (`--config`), in that order of precedence, then defaults. What a node
//! must keep across restarts (its id, cluster name, regions, initial
//! cluster, addresses) is stored in `<data-dir>/rhea-node.toml` on first
//! start; a restart with the same `--data-dir` resumes from it, and an
//! `--initial-cluster` given again is ignored.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};

/// Every option of `rhea server`. All are optional here; see `Settings` for defaults.
#[derive(Args, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerArgs {
    /// TOML file with any of these options (kebab-case keys, e.g. `node-id = 1`).
    #[arg(long, env = "RHEA_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// This node's id (>= 1). Default 1.
    #[arg(long, env = "RHEA_NODE_ID")]
    pub node_id: Option<u64>,
    /// Directory of the node's log, snapshots and KV data. Default ./rhea-data.
    #[arg(long, env = "RHEA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Raft peer listener. Default 127.0.0.1:6390.
    #[arg(long, env = "RHEA_RAFT_ADDR")]
    pub raft_addr: Option<SocketAddr>,
    /// Redis-protocol client listener. Default 127.0.0.1:6380.
    #[arg(long, env = "RHEA_CLIENT_ADDR")]
    pub client_addr: Option<SocketAddr>,
    /// Initial voters' raft addresses: `1=HOST:PORT,2=HOST:PORT,...`. Default: this node alone.
    #[arg(long, env = "RHEA_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// Join an existing cluster instead of bootstrapping (then `rhea admin add-peer`).
    #[arg(long, env = "RHEA_JOIN", num_args = 0..=1, default_missing_value = "true")]
    pub join: Option<bool>,
    /// Number of regions (raft groups) splitting the key space evenly. Default 1.
    #[arg(long, env = "RHEA_REGIONS")]
    pub regions: Option<u32>,
    /// Prometheus metrics listener (GET /metrics). Default: off.
    #[arg(long, env = "RHEA_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Name shared by the nodes of one cluster (peers with another name are refused). Default "rhea".
    #[arg(long, env = "RHEA_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// Raft election timeout. Default 1000.
    #[arg(long, env = "RHEA_ELECTION_TIMEOUT_MS")]
    pub election_timeout_ms: Option<u64>,
    /// Raft heartbeat interval. Default 100.
    #[arg(long, env = "RHEA_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Timer tick of the raft driver. Default 100 (timeouts must be multiples of it).
    #[arg(long, env = "RHEA_TICK_INTERVAL_MS")]
    pub tick_interval_ms: Option<u64>,
    /// Snapshot a region after this many applied entries (0: never). Default 100000.
    #[arg(long, env = "RHEA_SNAPSHOT_EVERY_ENTRIES")]
    pub snapshot_every_entries: Option<u64>,
    /// Snapshot bytes a leader sends per second to catch followers up (0: unlimited). Default 67108864.
    #[arg(long, env = "RHEA_SNAPSHOT_THROTTLE_BYTES_PER_SEC")]
    pub snapshot_throttle_bytes_per_sec: Option<u64>,
    /// Most client connections. Default 10000.
    #[arg(long, env = "RHEA_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Longest key. Default 65536.
    #[arg(long, env = "RHEA_MAX_KEY_BYTES")]
    pub max_key_bytes: Option<usize>,
    /// Longest value. Default 4194304.
    #[arg(long, env = "RHEA_MAX_VALUE_BYTES")]
    pub max_value_bytes: Option<usize>,
    /// Largest request (one RESP command). Default 8388608.
    #[arg(long, env = "RHEA_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<usize>,
    /// Read consistency of new connections: linearizable, lease, follower or stale. Default linearizable.
    #[arg(long, env = "RHEA_DEFAULT_READ_MODE")]
    pub default_read_mode: Option<String>,
    /// UNSAFE: acknowledge writes before they are fsynced. A power loss can then lose
    /// acknowledged writes and break Raft's guarantees. For throwaway benchmarks only.
    #[arg(long, env = "RHEA_UNSAFE_NO_FSYNC", num_args = 0..=1, default_missing_value = "true")]
    pub unsafe_no_fsync: Option<bool>,
    /// Seata-protocol transaction coordinator listener, or `off`. Default 127.0.0.1:8091.
    #[arg(long, env = "RHEA_TC_ADDR")]
    pub tc_addr: Option<String>,
    /// `host:port` this node writes into XIDs. Default: the TC address.
    #[arg(long, env = "RHEA_TC_ADVERTISE_ADDR")]
    pub tc_advertise_addr: Option<String>,
    /// Raft groups holding global sessions (fixed at cluster creation). Default 4.
    #[arg(long, env = "RHEA_TC_SESSION_PARTITIONS")]
    pub tc_session_partitions: Option<u32>,
    /// Raft groups holding global row locks (fixed at cluster creation). Default 4.
    #[arg(long, env = "RHEA_TC_LOCK_PARTITIONS")]
    pub tc_lock_partitions: Option<u32>,
    /// Phase-two commit retries before a transaction ends as CommitRetryTimeout. Default 100.
    #[arg(long, env = "RHEA_TC_MAX_COMMIT_RETRIES")]
    pub tc_max_commit_retries: Option<u32>,
    /// Phase-two rollback retries before a transaction ends as RollbackRetryTimeout
    /// (its row locks are kept until `force-finish`). Default 100.
    #[arg(long, env = "RHEA_TC_MAX_ROLLBACK_RETRIES")]
    pub tc_max_rollback_retries: Option<u32>,
    /// Longest time phase two keeps retrying. Default 3600000.
    #[arg(long, env = "RHEA_TC_MAX_RETRY_DURATION_MS")]
    pub tc_max_retry_duration_ms: Option<u64>,
    /// First retry interval of phase two (doubles up to 60 s). Default 1000.
    #[arg(long, env = "RHEA_TC_RETRY_INTERVAL_MS")]
    pub tc_retry_interval_ms: Option<u64>,
    /// Time an RM has to answer a phase-two call. Default 10000.
    #[arg(long, env = "RHEA_TC_BRANCH_CALL_TIMEOUT_MS")]
    pub tc_branch_call_timeout_ms: Option<u64>,
    /// Log level: error, warn, info, debug, trace. Default info.
    #[arg(long, env = "RHEA_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// Fault injection for tests: fail every n-th read index on a leader so reads take the
    /// raft-log fallback path. Never use in production.
    #[arg(long, env = "RHEA_DEBUG_FAIL_READ_INDEX_EVERY", hide = true)]
    pub debug_fail_read_index_every: Option<u64>,
}

macro_rules! merge {
    ($a:ident, $b:ident, $($f:ident),*) => {$(
        if $a.$f.is_none() {
            $a.$f = $b.$f.take();
        }
    )*};
}

/// What is stored in `<data-dir>/rhea-node.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct NodeMeta {
    pub node_id: u64,
    pub cluster_name: String,
    pub regions: u32,
    pub initial_cluster: String,
    pub join: bool,
    pub raft_addr: SocketAddr,
    pub client_addr: SocketAddr,
    /// The TC listener (absent: off).
    #[serde(default)]
    pub tc_addr: Option<SocketAddr>,
    #[serde(default = "default_tc_partitions")]
    pub tc_session_partitions: u32,
    #[serde(default = "default_tc_partitions")]
    pub tc_lock_partitions: u32,
}

fn default_tc_partitions() -> u32 {
    4
}

fn parse_tc_addr(s: &str) -> anyhow::Result<Option<SocketAddr>> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .with_context(|| format!("--tc-addr {s:?} is not HOST:PORT (an IP address) or off"))
}

pub const META_FILE: &str = "rhea-node.toml";

/// The resolved settings of a server.
#[derive(Debug, Clone)]
pub struct Settings {
    pub meta: NodeMeta,
    pub data_dir: PathBuf,
    pub initial_cluster: BTreeMap<u64, SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    pub election_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub tick_interval_ms: u64,
    pub snapshot_every_entries: u64,
    pub snapshot_throttle_bytes_per_sec: u64,
    pub max_connections: usize,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub max_request_bytes: usize,
    pub default_read_mode: rhea_kv::ReadConsistency,
    pub sync_writes: bool,
    pub log_level: String,
    pub debug_fail_read_index_every: u64,
    pub tc_advertise_addr: Option<String>,
    pub tc_retry: rhea_txn::coordinator::RetryPolicy,
    pub tc_branch_call_timeout_ms: u64,
    /// True when the node resumed from an existing data directory.
    pub resumed: bool,
}

pub fn parse_cluster(s: &str) -> anyhow::Result<BTreeMap<u64, SocketAddr>> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .with_context(|| format!("initial cluster entry {part:?} is not ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("node id {id:?} in the initial cluster is not a number"))?;
        if id == 0 {
            bail!("node id 0 is reserved; ids start at 1");
        }
        let addr: SocketAddr = addr.trim().parse().with_context(|| {
            format!("address {addr:?} of node {id} is not HOST:PORT (an IP address)")
        })?;
        if out.insert(id, addr).is_some() {
            bail!("node {id} appears twice in the initial cluster");
        }
    }
    if out.is_empty() {
        bail!("the initial cluster is empty");
    }
    Ok(out)
}

fn read_meta(path: &Path) -> anyhow::Result<Option<NodeMeta>> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            Ok(Some(toml::from_str(&s).with_context(|| {
                format!("corrupt node file {}", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Write the node file atomically (temp file, fsync, rename).
pub fn write_meta(dir: &Path, meta: &NodeMeta) -> anyhow::Result<()> {
    use std::io::Write;
    let text = toml::to_string(meta).context("encoding the node file")?;
    let tmp = dir.join(format!("{META_FILE}.tmp"));
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(META_FILE))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

impl ServerArgs {
    /// Merge flags/env with the config file and the stored node file.
    pub fn resolve(mut self) -> anyhow::Result<Settings> {
        if let Some(path) = self.config.clone() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            let mut file: ServerArgs = toml::from_str(&text)
                .with_context(|| format!("invalid config file {}", path.display()))?;
            merge!(
                self,
                file,
                node_id,
                data_dir,
                raft_addr,
                client_addr,
                initial_cluster,
                join,
                regions,
                metrics_addr,
                cluster_name,
                election_timeout_ms,
                heartbeat_interval_ms,
                tick_interval_ms,
                snapshot_every_entries,
                snapshot_throttle_bytes_per_sec,
                max_connections,
                max_key_bytes,
                max_value_bytes,
                max_request_bytes,
                default_read_mode,
                unsafe_no_fsync,
                log_level,
                debug_fail_read_index_every,
                tc_addr,
                tc_advertise_addr,
                tc_session_partitions,
                tc_lock_partitions,
                tc_max_commit_retries,
                tc_max_rollback_retries,
                tc_max_retry_duration_ms,
                tc_retry_interval_ms,
                tc_branch_call_timeout_ms
            );
        }
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("rhea-data"));
        let stored = read_meta(&data_dir.join(META_FILE))?;
        let resumed = stored.is_some();
        let meta = match stored {
            Some(mut m) => {
                if let Some(id) = self.node_id
                    && id != m.node_id
                {
                    bail!(
                        "--node-id {id} does not match node {} stored in {}",
                        m.node_id,
                        data_dir.display()
                    );
                }
                if let Some(r) = self.regions
                    && r != m.regions
                {
                    bail!(
                        "--regions {r} does not match the {} regions stored in {} (region layouts cannot change yet)",
                        m.regions,
                        data_dir.display()
                    );
                }
                if let Some(n) = &self.cluster_name
                    && *n != m.cluster_name
                {
                    bail!(
                        "--cluster-name {n:?} does not match {:?} stored in {}",
                        m.cluster_name,
                        data_dir.display()
                    );
                }
                if let Some(a) = self.raft_addr {
                    m.raft_addr = a;
                }
                if let Some(a) = self.client_addr {
                    m.client_addr = a;
                }
                if let Some(a) = &self.tc_addr {
                    m.tc_addr = parse_tc_addr(a)?;
                }
                for (flag, given, stored) in [
                    (
                        "--tc-session-partitions",
                        self.tc_session_partitions,
                        m.tc_session_partitions,
                    ),
                    (
                        "--tc-lock-partitions",
                        self.tc_lock_partitions,
                        m.tc_lock_partitions,
                    ),
                ] {
                    if let Some(n) = given
                        && n != stored
                    {
                        bail!(
                            "{flag} {n} does not match the {stored} stored in {} (partition counts cannot change)",
                            data_dir.display()
                        );
                    }
                }
                m
            }
            None => {
                let node_id = self.node_id.unwrap_or(1);
                if node_id == 0 {
                    bail!("--node-id must be at least 1");
                }
                let raft_addr = self
                    .raft_addr
                    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 6390)));
                NodeMeta {
                    node_id,
                    cluster_name: self.cluster_name.clone().unwrap_or_else(|| "rhea".into()),
                    regions: self.regions.unwrap_or(1),
                    initial_cluster: self
                        .initial_cluster
                        .clone()
                        .unwrap_or_else(|| format!("{node_id}={raft_addr}")),
                    join: self.join.unwrap_or(false),
                    raft_addr,
                    client_addr: self
                        .client_addr
                        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 6380))),
                    tc_addr: match &self.tc_addr {
                        Some(a) => parse_tc_addr(a)?,
                        None => Some(SocketAddr::from(([127, 0, 0, 1], 8091))),
                    },
                    tc_session_partitions: self.tc_session_partitions.unwrap_or(4),
                    tc_lock_partitions: self.tc_lock_partitions.unwrap_or(4),
                }
            }
        };
        let initial_cluster = parse_cluster(&meta.initial_cluster)?;
        if !meta.join && !initial_cluster.contains_key(&meta.node_id) {
            bail!(
                "node {} is not in --initial-cluster {}; add it or pass --join",
                meta.node_id,
                meta.initial_cluster
            );
        }
        if let Some(own) = initial_cluster.get(&meta.node_id)
            && *own != meta.raft_addr
            && !resumed
        {
            bail!(
                "--raft-addr {} differs from node {}'s address {own} in --initial-cluster",
                meta.raft_addr,
                meta.node_id
            );
        }
        let default_read_mode = match &self.default_read_mode {
            None => rhea_kv::ReadConsistency::Linearizable,
            Some(s) => rhea_kv::ReadConsistency::parse(s).with_context(|| {
                format!("--default-read-mode {s:?}: use linearizable, lease, follower or stale")
            })?,
        };
        Ok(Settings {
            meta,
            data_dir,
            initial_cluster,
            metrics_addr: self.metrics_addr,
            election_timeout_ms: self.election_timeout_ms.unwrap_or(1000),
            heartbeat_interval_ms: self.heartbeat_interval_ms.unwrap_or(100),
            tick_interval_ms: self.tick_interval_ms.unwrap_or(100),
            snapshot_every_entries: self.snapshot_every_entries.unwrap_or(100_000),
            snapshot_throttle_bytes_per_sec: self
                .snapshot_throttle_bytes_per_sec
                .unwrap_or(64 * 1024 * 1024),
            max_connections: self.max_connections.unwrap_or(10_000),
            max_key_bytes: self.max_key_bytes.unwrap_or(64 * 1024),
            max_value_bytes: self.max_value_bytes.unwrap_or(4 * 1024 * 1024),
            max_request_bytes: self.max_request_bytes.unwrap_or(8 * 1024 * 1024),
            default_read_mode,
            sync_writes: !self.unsafe_no_fsync.unwrap_or(false),
            log_level: self.log_level.clone().unwrap_or_else(|| "info".into()),
            debug_fail_read_index_every: self.debug_fail_read_index_every.unwrap_or(0),
            tc_advertise_addr: self.tc_advertise_addr.clone(),
            tc_retry: {
                let d = rhea_txn::coordinator::RetryPolicy::default();
                rhea_txn::coordinator::RetryPolicy {
                    max_commit_retries: self.tc_max_commit_retries.unwrap_or(d.max_commit_retries),
                    max_rollback_retries: self
                        .tc_max_rollback_retries
                        .unwrap_or(d.max_rollback_retries),
                    max_retry_duration_ms: self
                        .tc_max_retry_duration_ms
                        .unwrap_or(d.max_retry_duration_ms),
                    retry_interval_ms: self.tc_retry_interval_ms.unwrap_or(d.retry_interval_ms),
                    max_retry_interval_ms: d.max_retry_interval_ms,
                }
            },
            tc_branch_call_timeout_ms: self.tc_branch_call_timeout_ms.unwrap_or(10_000),
            resumed,
        })
    }
}

/// A cluster id both sides of a raft connection must share, from the name.
pub fn cluster_id(name: &str) -> u64 {
    // FNV-1a: stable across versions and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster_parsing_rejects_bad_input() {
        let c = parse_cluster("1=127.0.0.1:7001, 2=127.0.0.1:7002").unwrap();
        assert_eq!(c.len(), 2);
        for bad in [
            "",
            "1",
            "x=127.0.0.1:1",
            "0=127.0.0.1:1",
            "1=nohost",
            "1=127.0.0.1:1,1=127.0.0.1:2",
        ] {
            assert!(parse_cluster(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stored_node_file_wins_over_flags_and_conflicts_are_refused() {
        let dir = std::env::temp_dir().join(format!("rhea-cfg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let first = ServerArgs {
            data_dir: Some(dir.clone()),
            node_id: Some(2),
            raft_addr: Some("127.0.0.1:7002".parse().unwrap()),
            initial_cluster: Some("1=127.0.0.1:7001,2=127.0.0.1:7002".into()),
            regions: Some(4),
            ..ServerArgs::default()
        }
        .resolve()
        .unwrap();
        assert!(!first.resumed);
        write_meta(&dir, &first.meta).unwrap();
        let again = ServerArgs {
            data_dir: Some(dir.clone()),
            initial_cluster: Some("9=127.0.0.1:9".into()),
            ..ServerArgs::default()
        }
        .resolve()
        .unwrap();
        assert!(again.resumed);
        assert_eq!(again.meta.node_id, 2);
        assert_eq!(again.meta.regions, 4);
        assert_eq!(again.initial_cluster.len(), 2);
        let conflict = ServerArgs {
            data_dir: Some(dir.clone()),
            node_id: Some(3),
            ..ServerArgs::default()
        }
        .resolve();
        assert!(conflict.is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
