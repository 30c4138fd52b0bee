//! The connection to the transaction coordinator over Seata's wire protocol,
//! in the manner of Seata's `TmNettyRemotingClient` and
//! `RmNettyRemotingClient` sharing one channel per TC node.
//!
//! [`TcClient`] keeps **one connection to every TC address**: a TC node
//! forwards TM and RM requests to the partition leader that owns the
//! transaction, but phase-two calls to an RM come from whichever node leads
//! the transaction's partition, so the RM must be registered on every node.
//! Each connection sends `RegisterTMRequest` and, once resource managers are
//! registered, `RegisterRMRequest` with their comma-joined resource ids, on
//! connect and again on every reconnect (bounded exponential backoff).
//!
//! Requests (TM and RM) go to one registered node, round robin. A request
//! that could not be written is tried on the next node; one that was
//! written and then lost its connection has an unknown outcome and fails
//! with [`TxnError::Transport`], except the idempotent ones (`GlobalCommit`,
//! `GlobalRollback`, `GlobalStatus`, `GlobalLockQuery`), which are tried on
//! another node within the request timeout and a bounded number of
//! attempts. A request unanswered within `request_timeout_ms` fails with
//! [`TxnError::Timeout`].
//!
//! The TC's own requests (phase two) are dispatched to the registered
//! [`ResourceManager`]s (see `rpc/inbound.rs`).
//!
//! Nothing read from the network is trusted: a frame that does not decode
//! closes its connection (with a warning) and the client reconnects.

mod conn;
mod inbound;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rhea_txn::protocol::{
    BranchRegisterRequest, BranchReportRequest, BranchStatus, BranchType, FrameLimits,
    GlobalBeginRequest, GlobalEndRequest, GlobalEndResponse, GlobalStatus, Message,
    RegisterRmRequest, RegisterTmRequest, ResultCode, SEATA_MAX_FRAME_BYTES,
    TransactionExceptionCode,
};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, sleep, timeout, timeout_at};
use tracing::{debug, info, warn};

use crate::api::{BoxFuture, ResourceManager, TcApi, TxnError};
use conn::{CallError, Conn};

/// The client version sent in `RegisterTMRequest` / `RegisterRMRequest`.
/// A TC uses it to choose how to answer merged requests (this client sends
/// none) and which exception codes the client knows (1.5 added
/// `LockKeyConflictFailFast`).
pub const DEFAULT_CLIENT_VERSION: &str = "1.5.0";
/// Seata's default transaction service group.
pub const DEFAULT_TX_SERVICE_GROUP: &str = "default_tx_group";

/// How to reach and talk to the TC. Durations in milliseconds, sizes in
/// bytes or counts as named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcClientOptions {
    /// The TC nodes, `host:port` each. One connection is kept to each.
    pub addrs: Vec<String>,
    /// Seata's `applicationId`.
    pub application_id: String,
    /// Seata's `txServiceGroup`. Default [`DEFAULT_TX_SERVICE_GROUP`].
    pub transaction_service_group: String,
    /// Sent as the client version. Default [`DEFAULT_CLIENT_VERSION`].
    pub client_version: String,
    /// How long a request waits for its response, including waiting for a
    /// connection and for room in the queues. Default 30 000 (Seata's
    /// `rpcRequestTimeout`).
    pub request_timeout_ms: u64,
    /// TCP connect timeout per attempt; also how long
    /// [`TcClient::connect`] waits for the first registered node. Default
    /// 10 000.
    pub connect_timeout_ms: u64,
    /// A heartbeat is sent after this long without writing. Default 5 000
    /// (Seata's write-idle 5 s).
    pub heartbeat_interval_ms: u64,
    /// The connection is closed (and reopened) after this long without
    /// reading anything, heartbeat answers included. Default 15 000 (Seata's
    /// read-idle 15 s). Must exceed `heartbeat_interval_ms`.
    pub read_idle_timeout_ms: u64,
    /// First pause before reconnecting. Default 100.
    pub reconnect_backoff_min_ms: u64,
    /// Longest pause between reconnect attempts (the pause doubles from
    /// the minimum). Default 10 000.
    pub reconnect_backoff_max_ms: u64,
    /// Largest frame accepted from the TC, in bytes. Default 8 MiB (Seata's).
    pub max_frame_bytes: usize,
    /// Most requests in flight over all connections; a request waits for a
    /// slot (within its timeout). Default 10 000.
    pub max_in_flight_requests: usize,
    /// Frames queued for one connection's writer. Default 1 024.
    pub write_queue_frames: usize,
    /// Phase-two calls run at once on the resource managers. Default 32.
    pub branch_call_concurrency: usize,
    /// Phase-two calls accepted (running or waiting); beyond, the TC gets a
    /// retryable failure at once. Default 10 000.
    pub max_queued_branch_calls: usize,
}

impl Default for TcClientOptions {
    fn default() -> Self {
        TcClientOptions {
            addrs: Vec::new(),
            application_id: "rhea".into(),
            transaction_service_group: DEFAULT_TX_SERVICE_GROUP.into(),
            client_version: DEFAULT_CLIENT_VERSION.into(),
            request_timeout_ms: 30_000,
            connect_timeout_ms: 10_000,
            heartbeat_interval_ms: 5_000,
            read_idle_timeout_ms: 15_000,
            reconnect_backoff_min_ms: 100,
            reconnect_backoff_max_ms: 10_000,
            max_frame_bytes: SEATA_MAX_FRAME_BYTES,
            max_in_flight_requests: 10_000,
            write_queue_frames: 1_024,
            branch_call_concurrency: 32,
            max_queued_branch_calls: 10_000,
        }
    }
}

impl TcClientOptions {
    /// Defaults with these TC addresses and application id.
    pub fn new(addrs: Vec<String>, application_id: impl Into<String>) -> Self {
        TcClientOptions {
            addrs,
            application_id: application_id.into(),
            ..TcClientOptions::default()
        }
    }

    fn validate(&self) -> Result<(), ConnectError> {
        let bad = |what: &str| Err(ConnectError::InvalidOptions(what.to_owned()));
        if self.addrs.is_empty() {
            return bad("no TC address");
        }
        if self.application_id.is_empty() {
            return bad("empty application_id");
        }
        if self.request_timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return bad("timeouts must be positive");
        }
        if self.heartbeat_interval_ms == 0
            || self.read_idle_timeout_ms <= self.heartbeat_interval_ms
        {
            return bad("read_idle_timeout_ms must exceed heartbeat_interval_ms (> 0)");
        }
        if self.max_in_flight_requests == 0
            || self.write_queue_frames == 0
            || self.branch_call_concurrency == 0
            || self.max_queued_branch_calls == 0
        {
            return bad("limits must be positive");
        }
        if self.max_frame_bytes < rhea_txn::protocol::HEADER_BYTES {
            return bad("max_frame_bytes below the 16-byte frame header");
        }
        Ok(())
    }
}

/// Why [`TcClient::connect`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid TC client options: {0}")]
    InvalidOptions(String),
    /// No TC node accepted a connection and registration in time.
    #[error("no TC node registered this client within {timeout_ms} ms ({addrs})")]
    Unreachable { addrs: String, timeout_ms: u64 },
}

/// State shared by the client handle and its tasks.
pub(crate) struct Inner {
    pub(crate) opts: TcClientOptions,
    pub(crate) limits: FrameLimits,
    next_id: AtomicU32,
    /// The registered connection of each node, by index in `opts.addrs`.
    slots: Vec<Mutex<Option<Arc<Conn>>>>,
    /// Bumped whenever a slot changes, to wake requests waiting for a node.
    slot_events: watch::Sender<u64>,
    round_robin: AtomicUsize,
    in_flight: Semaphore,
    resources: RwLock<HashMap<String, Arc<dyn ResourceManager>>>,
    pub(crate) branch_queue: Arc<Semaphore>,
    pub(crate) branch_exec: Semaphore,
    /// Set by [`TcClient::close`]: requests fail at once.
    closed: AtomicBool,
}

impl Inner {
    /// Seata's positive int request ids.
    pub(crate) fn next_request_id(&self) -> u32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
            if id != 0 {
                return id;
            }
        }
    }

    pub(crate) fn resource(&self, resource_id: &str) -> Option<Arc<dyn ResourceManager>> {
        self.resources
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(resource_id)
            .cloned()
    }

    fn resource_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .resources
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    fn slot(&self, idx: usize) -> Option<Arc<Conn>> {
        self.slots
            .get(idx)?
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_slot(&self, idx: usize, conn: Option<Arc<Conn>>) {
        if let Some(slot) = self.slots.get(idx) {
            *slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = conn;
            self.slot_events.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    fn live_conns(&self) -> Vec<Arc<Conn>> {
        (0..self.slots.len())
            .filter_map(|i| self.slot(i))
            .filter(|c| !c.is_closed())
            .collect()
    }

    /// The connection to `preferred` if it is open and not tried yet, else
    /// the next open connection in round-robin order, skipping `tried`.
    fn pick(&self, tried: &[usize], preferred: Option<&str>) -> Option<(usize, Arc<Conn>)> {
        let n = self.slots.len();
        if n == 0 {
            return None;
        }
        if let Some(addr) = preferred
            && let Some(found) = (0..n).filter(|idx| !tried.contains(idx)).find_map(|idx| {
                self.slot(idx)
                    .filter(|c| !c.is_closed() && c.addr == addr)
                    .map(|c| (idx, c))
            })
        {
            return Some(found);
        }
        let start = self.round_robin.fetch_add(1, Ordering::Relaxed) % n;
        (0..n)
            .map(|i| (start + i) % n)
            .filter(|idx| !tried.contains(idx))
            .find_map(|idx| self.slot(idx).filter(|c| !c.is_closed()).map(|c| (idx, c)))
    }

    fn register_rm_message(&self, resource_ids: String) -> Message {
        Message::RegisterRmRequest(RegisterRmRequest {
            version: self.opts.client_version.clone(),
            application_id: self.opts.application_id.clone(),
            transaction_service_group: self.opts.transaction_service_group.clone(),
            extra_data: String::new(),
            resource_ids,
        })
    }

    /// Sends `RegisterRMRequest` for `resource_ids` on `conn`; closes the
    /// connection if the TC does not accept it (the reconnect registers
    /// everything again).
    async fn register_rm_on(&self, conn: &Conn, resource_ids: String) -> bool {
        let deadline = Instant::now() + Duration::from_millis(self.opts.request_timeout_ms);
        let msg = self.register_rm_message(resource_ids.clone());
        match conn.call(self, msg, deadline).await {
            Ok(Message::RegisterRmResponse(r)) if r.identified => {
                debug!(addr = %conn.addr, %resource_ids, "resource managers registered");
                true
            }
            other => {
                warn!(addr = %conn.addr, %resource_ids, answer = ?other, "RegisterRM refused or failed: reconnecting");
                conn.close("RegisterRM failed");
                false
            }
        }
    }

    /// Sends `msg` to one registered node and answers its response.
    async fn request(&self, msg: Message, idempotent: bool) -> Result<Message, TxnError> {
        let timeout_ms = self.opts.request_timeout_ms;
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let _slot = match timeout_at(deadline, self.in_flight.acquire()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(TxnError::Transport("client closed".into())),
            Err(_) => return Err(TxnError::Timeout(timeout_ms)),
        };
        let max_attempts = 2 * self.slots.len().max(1);
        // A request about a transaction goes first to the TC node named in
        // its XID (`host:port:id`): the node that began it, which chose an id
        // whose session partition it leads, so it serves it without
        // forwarding (any node would serve it).
        let preferred = xid_of(&msg)
            .and_then(|x| x.rsplit_once(':'))
            .map(|(addr, _)| addr);
        let mut attempts = 0;
        let mut tried = Vec::new();
        let mut last_error = String::from("no connection to any TC node");
        loop {
            if self.closed.load(Ordering::Acquire) {
                return Err(TxnError::Transport("TC client closed".into()));
            }
            // Subscribe before looking, so that no slot change is missed.
            let mut events = self.slot_events.subscribe();
            let Some((idx, conn)) = self.pick(&tried, preferred) else {
                if tried.is_empty() {
                    // Nothing connected: wait for a node to (re)register.
                    if timeout_at(deadline, events.changed()).await.is_err() {
                        return Err(TxnError::Transport(format!(
                            "{last_error} within {timeout_ms} ms"
                        )));
                    }
                } else {
                    tried.clear();
                }
                continue;
            };
            attempts += 1;
            tried.push(idx);
            match conn.call(self, msg.clone(), deadline).await {
                Ok(response) => return Ok(response),
                Err(CallError::Timeout) => return Err(TxnError::Timeout(timeout_ms)),
                Err(CallError::NotSent(e)) => {
                    debug!(addr = %conn.addr, error = %e, "request not sent; trying another node");
                    last_error = e;
                }
                Err(CallError::Lost(e)) if idempotent => {
                    debug!(addr = %conn.addr, error = %e, "idempotent request lost; trying another node");
                    last_error = e;
                }
                Err(CallError::Lost(e)) => return Err(TxnError::Transport(e)),
            }
            if attempts >= max_attempts {
                return Err(TxnError::Transport(last_error));
            }
        }
    }
}

/// A client of one TC cluster: the TM's and RMs' requests, and the TC's
/// phase-two calls to the registered resource managers. Dropping it (or
/// [`close`](Self::close)) closes every connection.
pub struct TcClient {
    inner: Arc<Inner>,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for TcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcClient")
            .field("addrs", &self.inner.opts.addrs)
            .field("connected", &self.connected_addrs())
            .finish_non_exhaustive()
    }
}

impl TcClient {
    /// Starts one connection task per TC address and waits (up to
    /// `connect_timeout_ms`) until at least one node registered this
    /// client; the others connect in the background, and every node is
    /// reconnected whenever its connection drops.
    pub async fn connect(opts: TcClientOptions) -> Result<TcClient, ConnectError> {
        opts.validate()?;
        let limits = FrameLimits {
            max_frame_bytes: opts.max_frame_bytes,
            ..FrameLimits::default()
        };
        let (slot_events, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            limits,
            next_id: AtomicU32::new(0),
            slots: opts.addrs.iter().map(|_| Mutex::new(None)).collect(),
            slot_events,
            round_robin: AtomicUsize::new(0),
            in_flight: Semaphore::new(opts.max_in_flight_requests),
            resources: RwLock::new(HashMap::new()),
            branch_queue: Arc::new(Semaphore::new(opts.max_queued_branch_calls)),
            branch_exec: Semaphore::new(opts.branch_call_concurrency),
            closed: AtomicBool::new(false),
            opts,
        });
        let (shutdown, _) = watch::channel(false);
        let mut events = inner.slot_events.subscribe();
        for idx in 0..inner.opts.addrs.len() {
            tokio::spawn(run_node(inner.clone(), idx, shutdown.subscribe()));
        }
        let client = TcClient { inner, shutdown };
        let wait = Duration::from_millis(client.inner.opts.connect_timeout_ms);
        let first = timeout(
            wait,
            events.wait_for(|_| !client.inner.live_conns().is_empty()),
        )
        .await;
        if !matches!(first, Ok(Ok(_))) {
            client.close();
            return Err(ConnectError::Unreachable {
                addrs: client.inner.opts.addrs.join(","),
                timeout_ms: client.inner.opts.connect_timeout_ms,
            });
        }
        Ok(client)
    }

    /// Registers a resource manager: phase-two calls for its resource id
    /// are dispatched to it, and `RegisterRMRequest` is sent on every live
    /// connection now (and on every connection made later). A connection
    /// whose TC refuses the registration is closed and reconnected. A
    /// resource manager registered before under the same id is replaced.
    pub async fn register_resource(&self, rm: Arc<dyn ResourceManager>) {
        let resource_id = rm.resource_id().to_owned();
        let replaced = self
            .inner
            .resources
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(resource_id.clone(), rm)
            .is_some();
        if replaced {
            warn!(%resource_id, "resource manager replaced");
        }
        info!(%resource_id, "registering resource manager");
        for conn in self.inner.live_conns() {
            self.inner.register_rm_on(&conn, resource_id.clone()).await;
        }
    }

    /// The addresses of the nodes with a registered, open connection.
    pub fn connected_addrs(&self) -> Vec<String> {
        self.inner
            .live_conns()
            .iter()
            .map(|c| c.addr.clone())
            .collect()
    }

    /// Waits until at least `nodes` nodes have a registered, open
    /// connection; false if that did not happen within `timeout_ms`.
    pub async fn wait_connected(&self, nodes: usize, timeout_ms: u64) -> bool {
        let mut events = self.inner.slot_events.subscribe();
        let wait = events.wait_for(|_| self.inner.live_conns().len() >= nodes);
        matches!(
            timeout(Duration::from_millis(timeout_ms), wait).await,
            Ok(Ok(_))
        )
    }

    /// Closes every connection and stops reconnecting. Requests in flight
    /// fail with [`TxnError::Transport`].
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        self.shutdown.send_replace(true);
        for conn in self.inner.live_conns() {
            conn.close("client closed");
        }
    }

    /// The options in use.
    pub fn options(&self) -> &TcClientOptions {
        &self.inner.opts
    }
}

impl Drop for TcClient {
    fn drop(&mut self) {
        self.close();
    }
}

/// Keeps node `idx` connected and registered until shutdown.
async fn run_node(inner: Arc<Inner>, idx: usize, mut shutdown: watch::Receiver<bool>) {
    let Some(addr) = inner.opts.addrs.get(idx).cloned() else {
        return;
    };
    let min = inner.opts.reconnect_backoff_min_ms.max(1);
    let max = inner.opts.reconnect_backoff_max_ms.max(min);
    let mut backoff = min;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let connected = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            c = connect_node(&inner, &addr) => c,
        };
        match connected {
            Ok(conn) => {
                backoff = min;
                inner.set_slot(idx, Some(conn.clone()));
                info!(%addr, "registered with TC node");
                // Resources registered from now on are sent on this
                // connection by `register_resource`; send those registered
                // before (possibly twice: harmless).
                let ids = inner.resource_ids();
                if !ids.is_empty() {
                    inner.register_rm_on(&conn, ids.join(",")).await;
                }
                tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => {
                        conn.close("client closed");
                        inner.set_slot(idx, None);
                        return;
                    }
                    _ = conn.wait_closed() => {}
                }
                inner.set_slot(idx, None);
                warn!(%addr, "connection to TC node lost; reconnecting");
            }
            Err(e) => warn!(%addr, error = %e, backoff_ms = backoff, "cannot connect to TC node"),
        }
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = sleep(Duration::from_millis(backoff)) => {}
        }
        backoff = backoff.saturating_mul(2).min(max);
    }
}

/// Opens a connection and registers the TM on it.
async fn connect_node(inner: &Arc<Inner>, addr: &str) -> Result<Arc<Conn>, String> {
    let connect_timeout = Duration::from_millis(inner.opts.connect_timeout_ms);
    let stream = match timeout(connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => {
            return Err(format!(
                "connect timed out after {} ms",
                inner.opts.connect_timeout_ms
            ));
        }
    };
    if let Err(e) = stream.set_nodelay(true) {
        debug!(%addr, error = %e, "cannot set TCP_NODELAY");
    }
    let (rd, wr) = stream.into_split();
    let conn = conn::start(inner, addr.to_owned(), rd, wr);
    // Closes the connection if this future is dropped (shutdown) before the
    // registration finished, so that its reader and writer stop.
    let guard = CloseOnDrop(Some(conn.clone()));
    let register = Message::RegisterTmRequest(RegisterTmRequest {
        version: inner.opts.client_version.clone(),
        application_id: inner.opts.application_id.clone(),
        transaction_service_group: inner.opts.transaction_service_group.clone(),
        extra_data: String::new(),
    });
    let deadline = Instant::now() + Duration::from_millis(inner.opts.request_timeout_ms);
    let answer = conn.call(inner, register, deadline).await;
    guard.defuse();
    match answer {
        Ok(Message::RegisterTmResponse(r)) if r.identified => Ok(conn),
        Ok(Message::RegisterTmResponse(_)) => {
            conn.close("RegisterTM refused");
            Err("the TC refused RegisterTM".into())
        }
        Ok(other) => {
            conn.close("unexpected answer to RegisterTM");
            Err(format!("the TC answered {} to RegisterTM", other.name()))
        }
        Err(e) => {
            conn.close("RegisterTM failed");
            Err(format!("RegisterTM failed: {e:?}"))
        }
    }
}

struct CloseOnDrop(Option<Arc<Conn>>);

impl CloseOnDrop {
    fn defuse(mut self) {
        self.0 = None;
    }
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            conn.close("registration abandoned");
        }
    }
}

/// Maps a TC result to `Ok(())` or the client's error.
fn check(code: ResultCode, exception: TransactionExceptionCode, msg: &str) -> Result<(), TxnError> {
    match code {
        ResultCode::Success => Ok(()),
        ResultCode::Failed => Err(match exception {
            TransactionExceptionCode::LockKeyConflict
            | TransactionExceptionCode::LockKeyConflictFailFast => {
                TxnError::LockConflict(msg.to_owned())
            }
            code => TxnError::Tc {
                code,
                message: msg.to_owned(),
            },
        }),
    }
}

fn unexpected(request: &str, answer: &Message) -> TxnError {
    TxnError::Transport(format!("the TC answered {} to {request}", answer.name()))
}

/// The XID a request is about, if any.
fn xid_of(msg: &Message) -> Option<&str> {
    let xid = match msg {
        Message::BranchRegisterRequest(r) | Message::GlobalLockQueryRequest(r) => &r.xid,
        Message::BranchReportRequest(r) => &r.xid,
        Message::GlobalCommitRequest(r)
        | Message::GlobalRollbackRequest(r)
        | Message::GlobalStatusRequest(r) => &r.xid,
        Message::GlobalReportRequest(r) => &r.xid,
        _ => return None,
    };
    (!xid.is_empty()).then_some(xid.as_str())
}

fn end_request(xid: &str) -> GlobalEndRequest {
    GlobalEndRequest {
        xid: xid.to_owned(),
        extra_data: String::new(),
    }
}

impl TcClient {
    /// `GlobalCommit`, `GlobalRollback` or `GlobalStatus` (idempotent).
    async fn global_end(
        &self,
        request: Message,
        name: &'static str,
        answer: fn(Message) -> Result<GlobalEndResponse, Message>,
    ) -> Result<GlobalStatus, TxnError> {
        let r = answer(self.inner.request(request, true).await?)
            .map_err(|other| unexpected(name, &other))?;
        check(r.result_code, r.transaction_exception_code, &r.msg)?;
        Ok(r.global_status)
    }
}

impl TcApi for TcClient {
    fn global_begin<'a>(
        &'a self,
        name: &'a str,
        timeout_ms: u32,
    ) -> BoxFuture<'a, Result<String, TxnError>> {
        Box::pin(async move {
            let request = Message::GlobalBeginRequest(GlobalBeginRequest {
                timeout: i32::try_from(timeout_ms).unwrap_or(i32::MAX),
                transaction_name: name.to_owned(),
            });
            match self.inner.request(request, false).await? {
                Message::GlobalBeginResponse(r) => {
                    check(r.result_code, r.transaction_exception_code, &r.msg)?;
                    if r.xid.is_empty() {
                        return Err(TxnError::Tc {
                            code: TransactionExceptionCode::BeginFailed,
                            message: "the TC answered no XID".into(),
                        });
                    }
                    Ok(r.xid)
                }
                other => Err(unexpected("GlobalBeginRequest", &other)),
            }
        })
    }

    fn global_commit<'a>(&'a self, xid: &'a str) -> BoxFuture<'a, Result<GlobalStatus, TxnError>> {
        Box::pin(self.global_end(
            Message::GlobalCommitRequest(end_request(xid)),
            "GlobalCommitRequest",
            |m| match m {
                Message::GlobalCommitResponse(r) => Ok(r),
                other => Err(other),
            },
        ))
    }

    fn global_rollback<'a>(
        &'a self,
        xid: &'a str,
    ) -> BoxFuture<'a, Result<GlobalStatus, TxnError>> {
        Box::pin(self.global_end(
            Message::GlobalRollbackRequest(end_request(xid)),
            "GlobalRollbackRequest",
            |m| match m {
                Message::GlobalRollbackResponse(r) => Ok(r),
                other => Err(other),
            },
        ))
    }

    fn global_status<'a>(&'a self, xid: &'a str) -> BoxFuture<'a, Result<GlobalStatus, TxnError>> {
        Box::pin(self.global_end(
            Message::GlobalStatusRequest(end_request(xid)),
            "GlobalStatusRequest",
            |m| match m {
                Message::GlobalStatusResponse(r) => Ok(r),
                other => Err(other),
            },
        ))
    }

    fn branch_register<'a>(
        &'a self,
        branch_type: BranchType,
        xid: &'a str,
        resource_id: &'a str,
        lock_key: &'a str,
        application_data: Option<&'a str>,
    ) -> BoxFuture<'a, Result<i64, TxnError>> {
        Box::pin(async move {
            let request = Message::BranchRegisterRequest(BranchRegisterRequest {
                xid: xid.to_owned(),
                branch_type,
                resource_id: resource_id.to_owned(),
                lock_key: lock_key.to_owned(),
                application_data: application_data.unwrap_or_default().to_owned(),
            });
            match self.inner.request(request, false).await? {
                Message::BranchRegisterResponse(r) => {
                    check(r.result_code, r.transaction_exception_code, &r.msg)?;
                    Ok(r.branch_id)
                }
                other => Err(unexpected("BranchRegisterRequest", &other)),
            }
        })
    }

    fn branch_report<'a>(
        &'a self,
        branch_type: BranchType,
        xid: &'a str,
        branch_id: i64,
        status: BranchStatus,
        application_data: Option<&'a str>,
    ) -> BoxFuture<'a, Result<(), TxnError>> {
        Box::pin(async move {
            // The resource id is not needed by the TC to find the branch
            // (Seata's own RMs send it; Rhea's TC ignores it).
            let request = Message::BranchReportRequest(BranchReportRequest {
                xid: xid.to_owned(),
                branch_id,
                status,
                resource_id: String::new(),
                application_data: application_data.unwrap_or_default().to_owned(),
                branch_type,
            });
            match self.inner.request(request, false).await? {
                Message::BranchReportResponse(r) => {
                    check(r.result_code, r.transaction_exception_code, &r.msg)
                }
                other => Err(unexpected("BranchReportRequest", &other)),
            }
        })
    }

    fn global_lock_query<'a>(
        &'a self,
        branch_type: BranchType,
        xid: Option<&'a str>,
        resource_id: &'a str,
        lock_key: &'a str,
    ) -> BoxFuture<'a, Result<bool, TxnError>> {
        Box::pin(async move {
            let request = Message::GlobalLockQueryRequest(BranchRegisterRequest {
                xid: xid.unwrap_or_default().to_owned(),
                branch_type,
                resource_id: resource_id.to_owned(),
                lock_key: lock_key.to_owned(),
                application_data: String::new(),
            });
            match self.inner.request(request, true).await? {
                Message::GlobalLockQueryResponse(r) => {
                    check(r.result_code, r.transaction_exception_code, &r.msg)?;
                    Ok(r.lockable)
                }
                other => Err(unexpected("GlobalLockQueryRequest", &other)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_conflicts_map_to_lock_conflict() {
        for code in [
            TransactionExceptionCode::LockKeyConflict,
            TransactionExceptionCode::LockKeyConflictFailFast,
        ] {
            assert!(matches!(
                check(ResultCode::Failed, code, "held"),
                Err(TxnError::LockConflict(m)) if m == "held"
            ));
        }
        assert!(matches!(
            check(
                ResultCode::Failed,
                TransactionExceptionCode::GlobalTransactionNotExist,
                "gone"
            ),
            Err(TxnError::Tc {
                code: TransactionExceptionCode::GlobalTransactionNotExist,
                ..
            })
        ));
        assert!(
            check(
                ResultCode::Success,
                TransactionExceptionCode::LockKeyConflict,
                ""
            )
            .is_ok()
        );
    }

    #[test]
    fn options_are_validated() {
        assert!(TcClientOptions::default().validate().is_err());
        let ok = TcClientOptions::new(vec!["127.0.0.1:8091".into()], "app");
        assert!(ok.validate().is_ok());
        let mut bad = ok.clone();
        bad.read_idle_timeout_ms = bad.heartbeat_interval_ms;
        assert!(bad.validate().is_err());
    }
}
