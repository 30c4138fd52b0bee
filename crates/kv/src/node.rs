//! `KvNode`: one Rhea KV process's moving parts, started together: the
//! storage, the peer transport, the multi-raft driver hosting every region,
//! the node-local [`KvStore`], and two housekeeping loops:
//!
//! * **directory**: each node records its raft and client addresses in every
//!   region's node directory (a replicated `RegisterNode` command, through the
//!   region leader), and tells the transport every peer's raft address found
//!   there, so that a node added later is reachable and any node can forward
//!   to any leader's client address;
//! * **snapshots**: a region whose log grew by `snapshot_every_entries` since
//!   its last snapshot is snapshotted, which bounds the log.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rhea_raft::{Config, Membership, NodeId, Role};
use rhea_runtime::{
    Driver, DriverError, DriverHandle, DriverOptions, GroupSpec, StateMachine, StdDisk, Transport,
    TransportOptions,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::command::KvCommand;
use crate::error::KvError;
use crate::region::RegionRange;
use crate::router::{Router, RouterOptions};
use crate::storage::{Storage, StorageOptions};
use crate::store::{KvOptions, KvStore};

/// Everything a node needs to start.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: NodeId,
    /// Holds `log/`, `snapshots/` and `kv.redb`.
    pub data_dir: PathBuf,
    /// The raft listener (peers connect here).
    pub raft_addr: SocketAddr,
    /// The client address other nodes and clients should use for this node
    /// (recorded in the node directory).
    pub client_addr: String,
    /// Raft addresses of the initial voters (this node included unless it
    /// joins). Used to bootstrap regions that have no state yet.
    pub initial_cluster: BTreeMap<NodeId, SocketAddr>,
    /// Start every region without a membership and wait to be added (`rhea
    /// admin add-peer`), instead of bootstrapping with `initial_cluster`.
    pub join: bool,
    pub regions: Vec<RegionRange>,
    pub cluster_id: u64,
    /// Raft timing: election timeout and heartbeat, in ms (multiples of the tick).
    pub election_timeout_ms: u64,
    pub heartbeat_interval_ms: u64,
    /// Snapshot a region once its log grew by this many entries (0: never).
    pub snapshot_every_entries: u64,
    /// Snapshot bytes a leader sends per second, over all followers of a
    /// region (0: unlimited). Default 64 MiB/s.
    pub snapshot_throttle_bytes_per_sec: u64,
    pub driver: DriverOptions,
    pub transport: TransportOptions,
    pub storage: StorageOptions,
    pub kv: KvOptions,
    pub router: RouterOptions,
}

impl NodeConfig {
    /// Defaults for node `node_id` (SOFAJRaft's timing: 1 s election timeout,
    /// 100 ms heartbeat and tick).
    pub fn new(
        node_id: NodeId,
        data_dir: PathBuf,
        raft_addr: SocketAddr,
        client_addr: String,
    ) -> Self {
        NodeConfig {
            node_id,
            data_dir,
            raft_addr,
            client_addr,
            initial_cluster: BTreeMap::from([(node_id, raft_addr)]),
            join: false,
            regions: crate::region::even_split(1).unwrap_or_default(),
            cluster_id: 0x5268_6561,
            election_timeout_ms: 1000,
            heartbeat_interval_ms: 100,
            snapshot_every_entries: 100_000,
            snapshot_throttle_bytes_per_sec: 64 * 1024 * 1024,
            driver: DriverOptions::default(),
            transport: TransportOptions::default(),
            storage: StorageOptions::default(),
            kv: KvOptions::default(),
            router: RouterOptions::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("invalid node configuration: {0}")]
    Config(String),
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Transport(#[from] rhea_runtime::TransportError),
}

/// A running node.
pub struct KvNode {
    store: KvStore,
    router: Router,
    transport: Arc<Transport>,
    storage: Arc<Storage>,
    driver_task: Option<JoinHandle<Result<(), DriverError>>>,
    stop_tx: watch::Sender<bool>,
    housekeeping: Vec<JoinHandle<()>>,
}

impl KvNode {
    /// Open storage, bind the raft listener, start the driver and the
    /// housekeeping loops. Must run inside a multi-threaded tokio runtime.
    pub async fn start(cfg: NodeConfig) -> Result<KvNode, NodeError> {
        KvNode::start_with_groups(cfg, Vec::new()).await
    }

    /// [`KvNode::start`], also hosting `extra_groups` (group id, state
    /// machine) on the same driver, with the regions' raft timing and
    /// initial membership, and snapshotting them like regions. Their ids must
    /// not be region ids. Commands reach them through
    /// [`KvStore::execute_group`] / [`Router::execute_group`]. (The
    /// transaction coordinator's partitions are hosted this way.)
    pub async fn start_with_groups(
        cfg: NodeConfig,
        extra_groups: Vec<(u64, Box<dyn StateMachine>)>,
    ) -> Result<KvNode, NodeError> {
        if let Some((g, _)) = extra_groups
            .iter()
            .find(|(g, _)| cfg.regions.iter().any(|r| r.id == *g))
        {
            return Err(NodeError::Config(format!("group {g} is also a region id")));
        }
        let tick = cfg.driver.tick_interval_ms.max(1);
        let et = cfg.election_timeout_ms / tick;
        let hb = (cfg.heartbeat_interval_ms / tick).max(1);
        if et < 2 || hb >= et {
            return Err(NodeError::Config(format!(
                "election_timeout_ms {} and heartbeat_interval_ms {} must be multiples of tick_interval_ms {tick} with heartbeat < election timeout",
                cfg.election_timeout_ms, cfg.heartbeat_interval_ms
            )));
        }
        if !cfg.join && !cfg.initial_cluster.contains_key(&cfg.node_id) {
            return Err(NodeError::Config(format!(
                "node {} is not in the initial cluster {:?}; pass --join to join an existing cluster",
                cfg.node_id,
                cfg.initial_cluster.keys().collect::<Vec<_>>()
            )));
        }
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| NodeError::DataDir {
            path: cfg.data_dir.display().to_string(),
            source: e,
        })?;
        let storage = Storage::open(&cfg.data_dir.join("kv.redb"), cfg.storage.clone())?;
        let mut topts = cfg.transport.clone();
        topts.cluster_id = cfg.cluster_id;
        let (transport, inbound) = Transport::bind(cfg.node_id, cfg.raft_addr, topts).await?;
        let transport = Arc::new(transport);
        // Peers: the initial cluster, then whatever the directory knows.
        for (id, addr) in &cfg.initial_cluster {
            if *id != cfg.node_id {
                transport.set_peer(*id, *addr)?;
            }
        }
        for (id, a) in storage.directory() {
            if id != cfg.node_id
                && let Ok(addr) = a.raft_addr.parse::<SocketAddr>()
            {
                transport.set_peer(id, addr)?;
            }
        }
        let voters: BTreeSet<NodeId> = cfg.initial_cluster.keys().copied().collect();
        let mut specs = Vec::new();
        let extra_ids: Vec<u64> = extra_groups.iter().map(|(g, _)| *g).collect();
        let mut machines: Vec<(u64, Box<dyn StateMachine>)> = Vec::new();
        for range in &cfg.regions {
            machines.push((range.id, Box::new(storage.state_machine(range.clone())?)));
        }
        machines.extend(extra_groups);
        for (group, state_machine) in machines {
            let mut c = Config::new(cfg.node_id, group);
            c.election_timeout_ticks = et;
            c.heartbeat_interval_ticks = hb;
            // The core counts the throttle per tick.
            c.snapshot_throttle_bytes_per_tick =
                cfg.snapshot_throttle_bytes_per_sec.saturating_mul(tick) / 1000;
            if cfg.snapshot_throttle_bytes_per_sec > 0 {
                c.snapshot_throttle_bytes_per_tick = c.snapshot_throttle_bytes_per_tick.max(1);
            }
            specs.push(GroupSpec {
                config: c,
                initial_membership: (!cfg.join).then(|| Membership::new(voters.iter().copied())),
                state_machine,
            });
        }
        let (driver, driver_task) = Driver::start(
            StdDisk,
            &cfg.data_dir,
            cfg.driver.clone(),
            transport.clone(),
            inbound,
            specs,
        )?;
        let store = KvStore::with_extra_groups(
            cfg.node_id,
            driver.clone(),
            storage.clone(),
            cfg.regions.clone(),
            extra_ids.clone(),
            cfg.kv.clone(),
        );
        let router = Router::new(Some(store.clone()), Vec::new(), cfg.router.clone());
        let (stop_tx, stop_rx) = watch::channel(false);
        let housekeeping = vec![
            tokio::spawn(directory_loop(
                cfg.clone(),
                store.clone(),
                router.clone(),
                transport.clone(),
                stop_rx.clone(),
            )),
            tokio::spawn(snapshot_loop(
                cfg.clone(),
                extra_ids,
                driver.clone(),
                stop_rx,
            )),
        ];
        info!(node = cfg.node_id, raft = %transport.local_addr(), regions = cfg.regions.len(), "node started");
        Ok(KvNode {
            store,
            router,
            transport,
            storage,
            driver_task: Some(driver_task),
            stop_tx,
            housekeeping,
        })
    }

    pub fn store(&self) -> &KvStore {
        &self.store
    }
    /// The router that serves requests on this node (local when this node
    /// leads, forwarded to the leader otherwise).
    pub fn router(&self) -> &Router {
        &self.router
    }
    pub fn driver(&self) -> &DriverHandle {
        self.store.driver()
    }
    pub fn raft_addr(&self) -> SocketAddr {
        self.transport.local_addr()
    }

    /// Stop cleanly: housekeeping, the driver (which syncs the log and shuts
    /// the transport down), then a durable commit of the applied state.
    pub async fn shutdown(mut self) -> Result<(), NodeError> {
        let _ = self.stop_tx.send(true);
        for h in self.housekeeping.drain(..) {
            let _ = h.await;
        }
        self.store.driver().shutdown().await;
        if let Some(t) = self.driver_task.take() {
            match t.await {
                Ok(Err(e)) => warn!(error = %e, "driver had stopped with an error"),
                Err(e) => warn!(error = %e, "driver task failed"),
                Ok(Ok(())) => {}
            }
        }
        self.storage.sync()?;
        Ok(())
    }

    /// Resolves when the driver stops by itself (a fatal storage error).
    pub async fn driver_stopped(&mut self) -> Result<(), DriverError> {
        match self.driver_task.as_mut() {
            Some(t) => match t.await {
                Ok(r) => {
                    self.driver_task = None;
                    r
                }
                Err(_) => {
                    self.driver_task = None;
                    Err(DriverError::Shutdown)
                }
            },
            None => std::future::pending().await,
        }
    }
}

async fn stopped_or(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let stopped = tokio::select! {
        _ = stop.wait_for(|s| *s) => true,
        _ = tokio::time::sleep(d) => false,
    };
    stopped || *stop.borrow()
}

/// Longest wait for one region's registration before the loop moves on.
const REGISTER_TIMEOUT_MS: u64 = 1_000;

async fn directory_loop(
    cfg: NodeConfig,
    store: KvStore,
    router: Router,
    transport: Arc<Transport>,
    mut stop: watch::Receiver<bool>,
) {
    let me = cfg.node_id;
    let raft_addr = cfg.raft_addr.to_string();
    let mut known: HashMap<NodeId, String> = HashMap::new();
    loop {
        if stopped_or(&mut stop, Duration::from_millis(300)).await {
            return;
        }
        // Peers found in the directory (nodes added after start).
        for (id, a) in store.directory() {
            if id == me || known.get(&id) == Some(&a.raft_addr) {
                continue;
            }
            if let Ok(addr) = a.raft_addr.parse::<SocketAddr>()
                && transport.set_peer(id, addr).is_ok()
            {
                known.insert(id, a.raft_addr.clone());
            }
        }
        // Register this node in every region whose directory lacks it: the
        // regions it leads first (a local proposal), then the others through
        // their leaders, each bounded so that one region without a known
        // leader does not hold up the rest.
        let mut order: Vec<&crate::region::RegionRange> = store.layout().iter().collect();
        order
            .sort_by_key(|r| !matches!(store.driver().role_hint(r.id), Some((Role::Leader, _, _))));
        for range in order {
            let Some(shared) = store.storage().region(range.id) else {
                continue;
            };
            if shared.applied() == 0 {
                continue;
            }
            let registered = store
                .storage()
                .region_directory(range.id)
                .get(&me)
                .is_some_and(|a| a.raft_addr == raft_addr && a.client_addr == cfg.client_addr);
            if registered {
                continue;
            }
            let cmd = KvCommand::RegisterNode {
                node: me,
                raft_addr: raft_addr.clone(),
                client_addr: cfg.client_addr.clone(),
            };
            let leader = store.status(range.id).await.map(|s| s.role == Role::Leader);
            let register = async {
                match leader {
                    Ok(true) => store.write(range.id, None, cmd).await,
                    _ => router.write_region(range.id, cmd).await,
                }
            };
            // Shutdown must not wait for a registration without a quorum.
            let r: Result<_, KvError> = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                r = tokio::time::timeout(Duration::from_millis(REGISTER_TIMEOUT_MS), register) => {
                    r.unwrap_or_else(|_| Err(KvError::TryAgain {
                        region: range.id,
                        reason: "registration timed out".into(),
                    }))
                }
            };
            if let Err(e) = r {
                tracing::debug!(region = range.id, error = %e, "node registration not done yet");
            }
        }
    }
}

async fn snapshot_loop(
    cfg: NodeConfig,
    extra_groups: Vec<u64>,
    driver: DriverHandle,
    mut stop: watch::Receiver<bool>,
) {
    let groups: Vec<u64> = cfg
        .regions
        .iter()
        .map(|r| r.id)
        .chain(extra_groups)
        .collect();
    if cfg.snapshot_every_entries == 0 {
        return;
    }
    let mut last: HashMap<u64, u64> = HashMap::new();
    loop {
        if stopped_or(&mut stop, Duration::from_secs(1)).await {
            return;
        }
        for &group in &groups {
            let Ok(st) = driver.status(group).await else {
                continue;
            };
            let base = *last.entry(group).or_insert(0);
            if st.applied >= base + cfg.snapshot_every_entries {
                match driver.snapshot(group).await {
                    Ok(i) => {
                        info!(group, index = i, "snapshot taken");
                        last.insert(group, i);
                    }
                    Err(e) => warn!(group, error = %e, "snapshot failed"),
                }
            }
        }
    }
}
