//! The router: sends each region request to the node that can serve it and
//! retries, with a bound, what is retryable. It is both the node's forwarding
//! layer (with a local [`KvStore`]: served here when this node can, forwarded
//! to the region leader otherwise) and the Rust client (without: the leader
//! is found through `RHEA.REGIONS` from the seed addresses).
//!
//! ## Internal protocol (RESP, on the client port)
//!
//! ```text
//! RHEA.R <region> <conf_ver> <version> <consistency> <command>
//!     command: KvCommand::encode() (a read is KvCommand::Read); conf_ver =
//!     version = 0 skips the epoch check. Served on the receiving node only,
//!     never forwarded again. Reply: a bulk string, KvAnswer::encode().
//! RHEA.REGIONS
//!     Reply: one array per region: id, start key, end key, conf_ver, version,
//!     leader id, leader client address ("" if unknown).
//! ```
//! Errors are RESP errors whose first word says what to do:
//! `NOTLEADER <region> <leader> <addr|->`, `EPOCH <region> <conf_ver> <version>`,
//! `KEYNOTINREGION <region>`, `TRYAGAIN <text>` (retryable) and `ERR <text>`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rhea_raft::{NodeId, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::command::{KvAnswer, KvCommand, ReadOp};
use crate::error::KvError;
use crate::region::{RegionEpoch, RegionId, RegionRange};
use crate::resp::{RespLimits, Value, encode_command, parse_value};
use crate::store::{KvStore, ReadConsistency};

/// Retry and connection limits of a router.
#[derive(Clone, Debug)]
pub struct RouterOptions {
    /// Most attempts for one region request. Default 40.
    pub max_attempts: u32,
    /// Time budget of one region request, retries included. Default 10,000.
    pub request_timeout_ms: u64,
    /// First backoff between attempts (doubles up to `backoff_max_ms`). Default 10.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// Time allowed to connect to a node. Default 1,000.
    pub connect_timeout_ms: u64,
    /// Idle connections kept per node. Default 256.
    pub max_idle_connections_per_node: usize,
    /// Limits on replies read from nodes.
    pub resp_limits: RespLimits,
}

impl Default for RouterOptions {
    fn default() -> Self {
        RouterOptions {
            max_attempts: 40,
            request_timeout_ms: 10_000,
            backoff_initial_ms: 10,
            backoff_max_ms: 500,
            connect_timeout_ms: 1_000,
            max_idle_connections_per_node: 256,
            resp_limits: RespLimits::default(),
        }
    }
}

/// One region as a router sees it.
#[derive(Clone, Debug)]
pub struct RouteEntry {
    pub range: RegionRange,
    pub epoch: RegionEpoch,
    pub leader: NodeId,
    pub leader_addr: Option<String>,
}

/// A connection speaking RESP to one node, one request at a time.
pub struct Conn {
    addr: String,
    stream: TcpStream,
    buf: Vec<u8>,
    limits: RespLimits,
}

impl Conn {
    pub async fn connect(
        addr: &str,
        timeout: Duration,
        limits: RespLimits,
    ) -> Result<Conn, KvError> {
        let err = |reason: String| KvError::Connection {
            addr: addr.to_string(),
            reason,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| err("connect timed out".into()))?
            .map_err(|e| err(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            addr: addr.to_string(),
            stream,
            buf: Vec::with_capacity(4096),
            limits,
        })
    }

    /// Send one command and read its reply. A failure before the request
    /// was completely written is `Connection` (it was not executed); a
    /// failure after is `Indeterminate` (it may have been).
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Value, KvError> {
        let mut out = Vec::with_capacity(64);
        encode_command(args, &mut out);
        self.stream
            .write_all(&out)
            .await
            .map_err(|e| KvError::Connection {
                addr: self.addr.clone(),
                reason: e.to_string(),
            })?;
        let lost = |reason: String| KvError::Indeterminate {
            addr: self.addr.clone(),
            reason,
        };
        loop {
            match parse_value(&self.buf, &self.limits) {
                Ok(Some((v, n))) => {
                    self.buf.drain(..n);
                    return Ok(v);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(KvError::Protocol(format!("reply from {}: {e}", self.addr)));
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| lost(e.to_string()))?;
            if n == 0 {
                return Err(lost("connection closed before the reply".into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// False when the peer has closed the connection (checked without
    /// blocking before a pooled connection is reused: a request written to a
    /// dead connection would end as `Indeterminate` for nothing).
    fn is_open(&self) -> bool {
        let mut probe = [0u8; 1];
        match self.stream.try_read(&mut probe) {
            Ok(0) => false,
            Ok(_) => false, // unsolicited bytes: the stream is out of step
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        }
    }
}

struct Inner {
    local: Option<KvStore>,
    seeds: Vec<String>,
    opts: RouterOptions,
    /// Sorted by start key; replaced as a whole (readers clone the `Arc`).
    routes: RwLock<Arc<Vec<RouteEntry>>>,
    /// Round-robin position over the seeds for reads any replica may serve.
    next_seed: std::sync::atomic::AtomicUsize,
    pools: Mutex<HashMap<String, Vec<Conn>>>,
}

/// Cheap to clone.
#[derive(Clone)]
pub struct Router(Arc<Inner>);

/// A request on one region.
#[derive(Clone, Debug)]
pub enum RegionRequest {
    Write(KvCommand),
    Read(ReadOp, ReadConsistency),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Parse a structured RESP error of the internal protocol into a `KvError`.
pub fn error_from_resp(msg: &str) -> KvError {
    let mut w = msg.split_whitespace();
    let kind = w.next().unwrap_or("");
    let mut num = || w.next().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    match kind {
        "NOTLEADER" => {
            let region = num();
            let leader = num();
            let addr = msg.split_whitespace().nth(3).filter(|a| *a != "-");
            KvError::NotLeader {
                region,
                leader,
                leader_addr: addr.map(str::to_string),
            }
        }
        "EPOCH" => {
            let region = num();
            let conf_ver = num();
            let version = num();
            KvError::EpochMismatch {
                region,
                current: RegionEpoch { conf_ver, version },
            }
        }
        "KEYNOTINREGION" => KvError::KeyNotInRegion { region: num() },
        "TRYAGAIN" => KvError::TryAgain {
            region: 0,
            reason: msg.trim_start_matches("TRYAGAIN").trim().to_string(),
        },
        "INVALID" => KvError::Invalid(msg.trim_start_matches("INVALID").trim().to_string()),
        "INDETERMINATE" => KvError::Indeterminate {
            addr: "a forwarding node".into(),
            reason: msg.trim_start_matches("INDETERMINATE").trim().to_string(),
        },
        "TIMEOUT" => {
            let region = num();
            let timeout_ms = num();
            KvError::Timeout { region, timeout_ms }
        }
        _ => KvError::Failed(msg.trim_start_matches("ERR").trim().to_string()),
    }
}

/// The RESP error a `KvError` is sent as (see the module docs).
pub fn error_to_resp(e: &KvError) -> String {
    match e {
        KvError::NotLeader {
            region,
            leader,
            leader_addr,
        } => format!(
            "NOTLEADER {region} {leader} {} (this node does not lead region {region})",
            leader_addr.as_deref().unwrap_or("-")
        ),
        KvError::EpochMismatch { region, current } => format!(
            "EPOCH {region} {} {} (stale region epoch)",
            current.conf_ver, current.version
        ),
        KvError::KeyNotInRegion { region } => format!("KEYNOTINREGION {region}"),
        e if e.is_retryable() => format!("TRYAGAIN {e}"),
        KvError::Unavailable { .. } => format!("CLUSTERDOWN {e}"),
        KvError::Invalid(m) => format!("INVALID {m}"),
        KvError::Timeout { region, timeout_ms } => format!("TIMEOUT {region} {timeout_ms}"),
        KvError::Indeterminate { .. } => format!("INDETERMINATE {e}"),
        e => format!("ERR {e}"),
    }
}

impl Router {
    /// `local`: this node's store (None for a pure client). `seeds`: client
    /// addresses to ask for the region layout when there is no local store.
    pub fn new(local: Option<KvStore>, seeds: Vec<String>, opts: RouterOptions) -> Router {
        let routes = local
            .as_ref()
            .map(|s| {
                s.layout()
                    .iter()
                    .map(|r| RouteEntry {
                        range: r.clone(),
                        epoch: RegionEpoch::default(),
                        leader: 0,
                        leader_addr: None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Router(Arc::new(Inner {
            local,
            seeds,
            opts,
            routes: RwLock::new(Arc::new(routes)),
            pools: Mutex::new(HashMap::new()),
            next_seed: std::sync::atomic::AtomicUsize::new(0),
        }))
    }

    pub fn local(&self) -> Option<&KvStore> {
        self.0.local.as_ref()
    }

    pub fn options(&self) -> &RouterOptions {
        &self.0.opts
    }

    /// The current route table, sorted by start key (fetched from a seed
    /// first if empty).
    pub async fn routes(&self) -> Result<Arc<Vec<RouteEntry>>, KvError> {
        if self.read_routes().is_empty() {
            self.refresh_routes().await?;
        }
        Ok(self.read_routes())
    }

    fn read_routes(&self) -> Arc<Vec<RouteEntry>> {
        self.0
            .routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn update_route(&self, region: RegionId, f: impl FnOnce(&mut RouteEntry)) {
        let mut routes = self.0.routes.write().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = Arc::make_mut(&mut routes)
            .iter_mut()
            .find(|e| e.range.id == region)
        {
            f(e);
        }
    }

    /// Ask the seeds (in turn) for the region layout and leaders.
    pub async fn refresh_routes(&self) -> Result<(), KvError> {
        if self.0.local.is_some() {
            return Ok(());
        }
        let mut last = KvError::Invalid("no seed addresses given".into());
        for seed in &self.0.seeds {
            match self.fetch_routes(seed).await {
                Ok(r) => {
                    *self.0.routes.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(r);
                    return Ok(());
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn fetch_routes(&self, addr: &str) -> Result<Vec<RouteEntry>, KvError> {
        let v = self.call_addr(addr, &[b"RHEA.REGIONS"]).await?;
        let bad = || KvError::Protocol(format!("RHEA.REGIONS reply from {addr}"));
        let Value::Array(items) = v else {
            return Err(match v {
                Value::Error(m) => error_from_resp(&m),
                _ => bad(),
            });
        };
        let mut out = Vec::new();
        for it in items {
            let Value::Array(f) = it else {
                return Err(bad());
            };
            let int = |v: Option<&Value>| match v {
                Some(Value::Integer(i)) => Ok(*i as u64),
                _ => Err(bad()),
            };
            let bulk = |v: Option<&Value>| match v {
                Some(Value::Bulk(b)) => Ok(b.clone()),
                _ => Err(bad()),
            };
            let leader_addr = bulk(f.get(6))?;
            out.push(RouteEntry {
                range: RegionRange {
                    id: int(f.first())?,
                    start_key: bulk(f.get(1))?,
                    end_key: bulk(f.get(2))?,
                },
                epoch: RegionEpoch {
                    conf_ver: int(f.get(3))?,
                    version: int(f.get(4))?,
                },
                leader: int(f.get(5))?,
                leader_addr: (!leader_addr.is_empty())
                    .then(|| String::from_utf8_lossy(&leader_addr).into_owned()),
            });
        }
        out.sort_by(|a, b| a.range.start_key.cmp(&b.range.start_key));
        if out.is_empty() {
            return Err(bad());
        }
        Ok(out)
    }

    /// Send one command to `addr` on a pooled connection.
    pub async fn call_addr(&self, addr: &str, args: &[&[u8]]) -> Result<Value, KvError> {
        let pooled = {
            let mut pools = lock(&self.0.pools);
            let pool = pools.get_mut(addr);
            let mut found = None;
            if let Some(p) = pool {
                while let Some(c) = p.pop() {
                    if c.is_open() {
                        found = Some(c);
                        break;
                    }
                }
            }
            found
        };
        let mut conn = match pooled {
            Some(c) => c,
            None => {
                Conn::connect(
                    addr,
                    Duration::from_millis(self.0.opts.connect_timeout_ms),
                    self.0.opts.resp_limits,
                )
                .await?
            }
        };
        let timeout = Duration::from_millis(self.0.opts.request_timeout_ms);
        let v = tokio::time::timeout(timeout, conn.call(args))
            .await
            .map_err(|_| KvError::Indeterminate {
                addr: addr.to_string(),
                reason: format!("no reply within {} ms", self.0.opts.request_timeout_ms),
            })??;
        let mut pools = lock(&self.0.pools);
        let pool = pools.entry(addr.to_string()).or_default();
        if pool.len() < self.0.opts.max_idle_connections_per_node {
            pool.push(conn);
        }
        Ok(v)
    }

    /// The region id of `key` in the current routes.
    pub async fn region_for(&self, key: &[u8]) -> Result<RegionId, KvError> {
        let routes = self.routes().await?;
        let i = routes.partition_point(|r| &r.range.start_key[..] <= key);
        i.checked_sub(1)
            .and_then(|i| routes.get(i))
            .filter(|r| r.range.contains(key))
            .map(|r| r.range.id)
            .ok_or_else(|| KvError::Invalid("no region covers the key".into()))
    }

    fn note_leader(&self, region: RegionId, leader: NodeId, addr: Option<String>) {
        self.update_route(region, |e| {
            e.leader = leader;
            if addr.is_some() || leader == 0 {
                e.leader_addr = addr;
            }
        });
    }

    fn note_epoch(&self, region: RegionId, epoch: RegionEpoch) {
        self.update_route(region, |e| e.epoch = epoch);
    }

    fn route(&self, region: RegionId) -> Option<RouteEntry> {
        self.read_routes()
            .iter()
            .find(|e| e.range.id == region)
            .cloned()
    }

    /// Execute a write on `region` (used by housekeeping).
    pub async fn write_region(
        &self,
        region: RegionId,
        cmd: KvCommand,
    ) -> Result<KvAnswer, KvError> {
        self.execute(region, RegionRequest::Write(cmd)).await
    }

    /// Execute a request on `region` wherever it can be served, retrying
    /// retryable errors with bounded exponential backoff.
    pub async fn execute(&self, region: RegionId, req: RegionRequest) -> Result<KvAnswer, KvError> {
        if self.0.local.is_none() && self.read_routes().is_empty() {
            self.refresh_routes().await?;
        }
        let started = Instant::now();
        let budget = Duration::from_millis(self.0.opts.request_timeout_ms);
        let mut backoff = self.0.opts.backoff_initial_ms.max(1);
        let mut attempts = 0u32;
        let mut last: KvError;
        // With a local store: try it first unless the route already names
        // another node as leader (reads any replica may serve are local).
        let any_replica = matches!(&req, RegionRequest::Read(_, c) if c.any_replica());
        // This node's own view of the region is fresher than the route
        // cache: serve locally when it leads, else go to the leader it knows.
        let mut try_local = match &self.0.local {
            None => false,
            Some(s) => match s.driver().role_hint(region) {
                _ if any_replica => true,
                Some((rhea_raft::Role::Leader, _, _)) | None => true,
                Some((_, leader, _)) if leader != 0 && leader != s.node_id() => {
                    let addr = s
                        .directory()
                        .get(&leader)
                        .map(|a| a.client_addr.clone())
                        .filter(|a| !a.is_empty());
                    if addr.is_some() {
                        self.note_leader(region, leader, addr);
                        false
                    } else {
                        true
                    }
                }
                Some(_) => true,
            },
        };
        loop {
            attempts += 1;
            let asked_local = try_local && self.0.local.is_some();
            let asked_leader = self.route(region).map_or(0, |r| r.leader);
            let result = self.attempt(region, &req, try_local).await;
            // A read that got no answer is retried like a connection error;
            // a write is not (it may have been applied).
            let result = match result {
                Err(KvError::Indeterminate { addr, reason })
                    if matches!(req, RegionRequest::Read(..)) =>
                {
                    Err(KvError::Connection { addr, reason })
                }
                r => r,
            };
            match result {
                Ok(a) => return Ok(a),
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => {
                    let mut sleep = true;
                    match &e {
                        KvError::NotLeader {
                            leader,
                            leader_addr,
                            ..
                        } => {
                            self.note_leader(region, *leader, leader_addr.clone());
                            let me = self.0.local.as_ref().map(|s| s.node_id());
                            // The local node is not the leader: go remote
                            // (unless it names itself, or nobody).
                            try_local = me.is_some_and(|id| *leader == id || *leader == 0);
                            // Another node named as leader is tried at once,
                            // unless it is the one that just refused.
                            let refused_by = if asked_local {
                                me.unwrap_or(0)
                            } else {
                                asked_leader
                            };
                            let reachable = leader_addr.is_some()
                                || self.route(region).is_some_and(|r| r.leader_addr.is_some());
                            sleep = !(*leader != 0 && *leader != refused_by && reachable);
                        }
                        KvError::EpochMismatch { current, .. } => {
                            self.note_epoch(region, *current);
                            sleep = false;
                        }
                        KvError::Connection { .. } => {
                            // The leader we knew may be down: ask again.
                            self.note_leader(region, 0, None);
                            try_local = true;
                            if self.0.local.is_none() {
                                let _ = self.refresh_routes().await;
                            }
                        }
                        KvError::KeyNotInRegion { .. } => {
                            let _ = self.refresh_routes().await;
                        }
                        _ => {
                            try_local = true;
                        }
                    }
                    last = e;
                    if attempts >= self.0.opts.max_attempts || started.elapsed() >= budget {
                        break;
                    }
                    if sleep {
                        tokio::time::sleep(Duration::from_millis(backoff)).await;
                        backoff = (backoff * 2).min(self.0.opts.backoff_max_ms.max(1));
                        if self.0.local.is_none() && attempts.is_multiple_of(4) {
                            let _ = self.refresh_routes().await;
                        }
                    }
                }
            }
        }
        Err(KvError::Unavailable {
            region,
            attempts,
            elapsed_ms: started.elapsed().as_millis() as u64,
            last: last.to_string(),
        })
    }

    async fn attempt(
        &self,
        region: RegionId,
        req: &RegionRequest,
        try_local: bool,
    ) -> Result<KvAnswer, KvError> {
        if let Some(local) = &self.0.local
            && try_local
        {
            return match req {
                RegionRequest::Write(cmd) => local.write(region, None, cmd.clone()).await,
                RegionRequest::Read(op, c) => local.read(region, None, op.clone(), *c).await,
            };
        }
        let route = self.route(region).ok_or(KvError::UnknownRegion(region))?;
        let any_replica = matches!(req, RegionRequest::Read(_, c) if c.any_replica());
        let spread = if any_replica && self.0.local.is_none() && !self.0.seeds.is_empty() {
            let i = self
                .0
                .next_seed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.0.seeds.get(i % self.0.seeds.len()).cloned()
        } else {
            None
        };
        let addr = match (spread, &route.leader_addr, &self.0.local) {
            (Some(a), _, _) => a,
            (None, leader_addr, local) => match (leader_addr, local) {
                (Some(a), _) => a.clone(),
                (None, Some(local)) => {
                    // Look the leader up in the directory.
                    match local.directory().get(&route.leader) {
                        Some(a) if !a.client_addr.is_empty() => a.client_addr.clone(),
                        _ => {
                            return Err(KvError::TryAgain {
                                region,
                                reason: format!(
                                    "no known client address for leader {}",
                                    route.leader
                                ),
                            });
                        }
                    }
                }
                // Leader address unknown (not registered yet): try the seeds
                // in turn; one of them may be the leader, which then serves.
                (None, None) => {
                    if self.0.seeds.is_empty() {
                        return Err(KvError::Invalid("no seed addresses".into()));
                    }
                    let i = self
                        .0
                        .next_seed
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    self.0.seeds[i % self.0.seeds.len()].clone()
                }
            },
        };
        // A forwarding node skips the epoch check (its layout is the
        // cluster's); a client sends the epoch it knows, except for reads any
        // replica may serve (replicas may lag in conf_ver, harmlessly).
        let epoch = if self.0.local.is_some() || any_replica {
            RegionEpoch::default()
        } else {
            route.epoch
        };
        let (consistency, cmd) = match req {
            RegionRequest::Write(cmd) => (ReadConsistency::Linearizable, cmd.clone()),
            RegionRequest::Read(op, c) => (*c, KvCommand::Read(op.clone())),
        };
        let region_s = region.to_string();
        let cv = epoch.conf_ver.to_string();
        let v = epoch.version.to_string();
        let payload = cmd.encode();
        let reply = self
            .call_addr(
                &addr,
                &[
                    b"RHEA.R",
                    region_s.as_bytes(),
                    cv.as_bytes(),
                    v.as_bytes(),
                    consistency.name().as_bytes(),
                    &payload,
                ],
            )
            .await?;
        match reply {
            Value::Bulk(b) => match KvAnswer::decode(&b) {
                Ok(KvAnswer::Failed(m)) => Err(KvError::Failed(m)),
                Ok(a) => Ok(a),
                Err(e) => Err(KvError::Protocol(format!("answer from {addr}: {e}"))),
            },
            Value::Error(m) => Err(match error_from_resp(&m) {
                KvError::TryAgain { reason, .. } => KvError::TryAgain { region, reason },
                e => e,
            }),
            other => Err(KvError::Protocol(format!(
                "unexpected RHEA.R reply from {addr}: {other:?}"
            ))),
        }
    }

    /// Execute a command on a raft group that is not a KV region (the
    /// transaction coordinator's partitions) at the group's leader: locally
    /// when this node leads it, else forwarded with `RHEA.EXEC` to the
    /// leader's client address. What certainly did not execute (not leader,
    /// no leader yet, could not connect) is retried with bounded backoff
    /// (`max_attempts`, `request_timeout_ms`); a request sent without an
    /// answer is `Indeterminate` and never retried.
    pub async fn execute_group(&self, group: RegionId, payload: &Bytes) -> Result<Bytes, KvError> {
        let Some(local) = &self.0.local else {
            return Err(KvError::Invalid(
                "executing on a group needs a node's router".into(),
            ));
        };
        let started = Instant::now();
        let budget = Duration::from_millis(self.0.opts.request_timeout_ms);
        let mut backoff = self.0.opts.backoff_initial_ms.max(1);
        let mut attempts = 0u32;
        let mut hinted: Option<String> = None;
        loop {
            attempts += 1;
            let r = match local.driver().role_hint(group) {
                None => return Err(KvError::UnknownRegion(group)),
                Some((Role::Leader, _, _)) => local.execute_group(group, payload.clone()).await,
                Some((_, leader, _)) => {
                    let addr = hinted.take().or_else(|| {
                        local
                            .directory()
                            .get(&leader)
                            .map(|a| a.client_addr.clone())
                            .filter(|a| !a.is_empty())
                    });
                    match addr {
                        Some(addr) if leader != 0 => {
                            self.forward_group(&addr, group, payload).await
                        }
                        _ => Err(KvError::TryAgain {
                            region: group,
                            reason: "no known leader".into(),
                        }),
                    }
                }
            };
            let e = match r {
                Ok(answer) => return Ok(answer),
                Err(e) if e.is_retryable() => e,
                Err(e) => return Err(e),
            };
            let mut sleep = true;
            if let KvError::NotLeader {
                leader,
                leader_addr: Some(addr),
                ..
            } = &e
                && *leader != 0
                && *leader != local.node_id()
            {
                hinted = Some(addr.clone());
                sleep = attempts.is_multiple_of(2);
            }
            if attempts >= self.0.opts.max_attempts || started.elapsed() >= budget {
                return Err(KvError::Unavailable {
                    region: group,
                    attempts,
                    elapsed_ms: started.elapsed().as_millis() as u64,
                    last: e.to_string(),
                });
            }
            if sleep {
                tokio::time::sleep(Duration::from_millis(backoff)).await;
                backoff = (backoff * 2).min(self.0.opts.backoff_max_ms.max(1));
            }
        }
    }

    async fn forward_group(
        &self,
        addr: &str,
        group: RegionId,
        payload: &Bytes,
    ) -> Result<Bytes, KvError> {
        let g = group.to_string();
        match self
            .call_addr(addr, &[b"RHEA.EXEC", g.as_bytes(), payload])
            .await?
        {
            Value::Bulk(b) => Ok(b),
            Value::Error(m) => Err(match error_from_resp(&m) {
                KvError::TryAgain { reason, .. } => KvError::TryAgain {
                    region: group,
                    reason,
                },
                e => e,
            }),
            other => Err(KvError::Protocol(format!(
                "unexpected RHEA.EXEC reply from {addr}: {other:?}"
            ))),
        }
    }

    /// Serve an `RHEA.EXEC` request on the local store (never forwarded).
    pub async fn serve_group(&self, args: &[Bytes]) -> Value {
        let Some(local) = &self.0.local else {
            return Value::error("ERR not a server");
        };
        let group = args
            .get(1)
            .and_then(|g| std::str::from_utf8(g).ok())
            .and_then(|g| g.parse::<RegionId>().ok());
        let (Some(group), Some(payload), 3) = (group, args.get(2), args.len()) else {
            return Value::error("ERR malformed RHEA.EXEC request");
        };
        match local.execute_group(group, payload.clone()).await {
            Ok(answer) => Value::Bulk(answer),
            Err(e) => Value::Error(error_to_resp(&e)),
        }
    }

    /// Serve an `RHEA.R` request on the local store (never forwarded).
    pub async fn serve_internal(&self, args: &[Bytes]) -> Value {
        let Some(local) = &self.0.local else {
            return Value::error("ERR not a server");
        };
        let parse = || -> Option<(RegionId, RegionEpoch, ReadConsistency, KvCommand)> {
            let n =
                |i: usize| -> Option<u64> { std::str::from_utf8(args.get(i)?).ok()?.parse().ok() };
            let region = n(1)?;
            let epoch = RegionEpoch {
                conf_ver: n(2)?,
                version: n(3)?,
            };
            let c = ReadConsistency::parse(std::str::from_utf8(args.get(4)?).ok()?)?;
            let cmd = KvCommand::decode(args.get(5)?).ok()?;
            Some((region, epoch, c, cmd))
        };
        let Some((region, epoch, c, cmd)) = parse().filter(|_| args.len() == 6) else {
            return Value::error("ERR malformed RHEA.R request");
        };
        let epoch = (epoch != RegionEpoch::default()).then_some(epoch);
        let r = match cmd {
            KvCommand::Read(op) => local.read(region, epoch, op, c).await,
            cmd => local.write(region, epoch, cmd).await,
        };
        match r {
            Ok(a) => Value::Bulk(a.encode()),
            Err(e) => Value::Error(error_to_resp(&e)),
        }
    }
}
