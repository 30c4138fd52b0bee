//! The multi-raft node driver: one tokio task per process ("store") that owns
//! one [`LogEngine`], one [`Transport`] and every [`RaftNode`] group of the
//! process, and executes each group's [`Ready`] as `rhea_raft` documents it.
//!
//! ## One round
//!
//! The task waits for an input (a [`DriverHandle`] command, a peer message, a
//! timer tick), drains further inputs that are already queued (bounded by
//! `max_inputs_per_round`), then runs rounds until no group has a `Ready`:
//!
//! 1. collect `ready()` from every group that has work;
//! 2. send every group's `messages` (they may leave before the write);
//! 3. write snapshot images of installed snapshots to their files, then put
//!    every group's snapshot install, entries and hard state (plus purge points
//!    of earlier rounds) into **one** [`WriteBatch`] and call
//!    [`LogEngine::write`] **once**, synced if any group asked for it (and
//!    `sync_writes`): group commit across groups, one fsync per round;
//! 4. only after that write returned: send `persisted_messages`, restore
//!    installed snapshots into the state machine, apply `committed_entries`,
//!    answer proposals and reads, record `compacted_to`, and `advance()`.
//!
//! A storage error is fatal: the engine is poisoned, so the driver stops and
//! every waiter gets [`DriverError::Shutdown`].
//!
//! ## Time
//!
//! One [`tokio::time::interval`] of `tick_interval_ms` ticks every group. Its
//! missed-tick behaviour is [`MissedTickBehavior::Burst`]: after a pause (a
//! stalled runtime, a stopped process, a long fsync) every missed tick is
//! delivered. The core measures election timeouts and the leader lease in
//! ticks; followers measure their election timeout on their own clocks. If a
//! paused leader skipped the ticks it missed, its lease would stretch over the
//! pause in real time while the followers' timeouts did not, and it could
//! serve a lease read after another leader was elected. Catching up on every
//! tick makes the lease expire in real time.
//!
//! ## Snapshots and restart
//!
//! Snapshot images are files `snapshots/<group>/<index>.snap` under the
//! driver's directory (see `snap_store.rs`), written atomically (temp file,
//! fsync, rename, directory fsync) **before** the log engine records the
//! install or the purge that depends on them. On start, each group's newest
//! snapshot file is restored into its state machine and the group is rebuilt
//! with [`Bootstrap::Restore`] from it, the engine's hard state and the
//! engine's entries after the snapshot. A group with no stored state starts as
//! a new group (or joins, without an initial membership).
//!
//! The state machine is assumed in-memory: after restart it is rebuilt from
//! the snapshot and the log replayed from there. A durable state machine
//! reports its real `applied_index()` and replay starts after it.

mod error;
mod snap_store;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rhea_raft::{
    Bootstrap, Config, Entry, GroupId, Index, Membership, Message, NodeId, RaftNode, ReadMode,
    ReadRequestId, Ready, RestoreState, Role, Term,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

pub use error::{DriverError, StateMachineError};

use crate::disk::Disk;
use crate::log_engine::{LogEngine, LogEngineOptions, WriteBatch};
use crate::transport::Transport;
use snap_store::SnapStore;

/// The application state of one group. Called on the driver task: keep each
/// call short (a slow `apply` delays every group of the process).
pub trait StateMachine: Send + 'static {
    /// Apply committed entries, in order. Every kind of entry is passed
    /// (blank and membership entries too; most state machines skip them), and
    /// `applied_index()` must then be the last entry's index.
    ///
    /// `ctx` says which entries a local proposer waits for
    /// ([`ApplyContext::wants_response`]); the state machine may answer those
    /// with [`ApplyContext::respond`] (the bytes reach
    /// [`DriverHandle::execute`]). Entries nobody here waits for (every entry
    /// on a follower) need no answer, so read-only commands can be skipped.
    ///
    /// An error (the state machine's storage failed) stops the driver: the
    /// entries may be half applied, and the node must restart from what is
    /// durable.
    fn apply(
        &mut self,
        group: GroupId,
        entries: &[Entry],
        ctx: &mut ApplyContext,
    ) -> Result<(), StateMachineError>;
    /// An image of the whole state at `applied_index()`.
    fn snapshot(&self) -> Result<Bytes, StateMachineError>;
    /// Replace the whole state with an image made by `snapshot` (after which
    /// `applied_index()` is the snapshot's index). An image that does not
    /// decode is an error, which stops the driver.
    fn restore(&mut self, data: Bytes) -> Result<(), StateMachineError>;
    /// The index of the last applied entry.
    fn applied_index(&self) -> Index;
}

/// What [`StateMachine::apply`] is told about waiting proposers, and where it
/// puts its answers.
#[derive(Debug, Default)]
pub struct ApplyContext {
    /// Indexes of this batch that a local proposer waits for, ascending.
    waiting: Vec<Index>,
    responses: Vec<(Index, Bytes)>,
}

impl ApplyContext {
    /// True when a proposer on this node waits for the entry at `index` (it
    /// was proposed here, in the term it was committed in).
    pub fn wants_response(&self, index: Index) -> bool {
        self.waiting.binary_search(&index).is_ok()
    }

    /// Answer the proposer of the entry at `index` (ignored if none waits).
    pub fn respond(&mut self, index: Index, data: Bytes) {
        if self.wants_response(index) {
            self.responses.push((index, data));
        }
    }
}

/// Tuning of a driver.
#[derive(Clone, Debug)]
pub struct DriverOptions {
    /// Period of the timer that ticks every group. Default 100 ms.
    pub tick_interval_ms: u64,
    /// Fsync a round's write when a group's `Ready` asks for it. Turning it
    /// off acknowledges entries and votes before they are durable: a power
    /// loss may then break Raft's guarantees. Tests and benchmarks only.
    /// Default true.
    pub sync_writes: bool,
    /// Capacity of the command channel of [`DriverHandle`]s. Default 4096.
    pub command_queue: usize,
    /// Inputs (commands plus peer messages) taken per round before the
    /// groups' readies are executed. Default 1024.
    pub max_inputs_per_round: usize,
    /// Options of the log engine the driver opens.
    pub log_engine: LogEngineOptions,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            tick_interval_ms: 100,
            sync_writes: true,
            command_queue: 4096,
            max_inputs_per_round: 1024,
            log_engine: LogEngineOptions::default(),
        }
    }
}

/// One group to host: its raft config (`config.group` names it), the initial
/// membership for a brand-new group (`None`: join an existing group), and its
/// state machine.
pub struct GroupSpec {
    pub config: Config,
    pub initial_membership: Option<Membership>,
    pub state_machine: Box<dyn StateMachine>,
}

/// What [`DriverHandle::status`] reports about one group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus {
    pub role: Role,
    pub term: Term,
    pub leader: NodeId,
    pub commit: Index,
    pub applied: Index,
    pub last_index: Index,
    /// The membership this node currently uses (possibly joint).
    pub membership: Membership,
    /// A membership change is in progress (proposed, not yet finished).
    pub membership_change_pending: bool,
}

/// Counters of the driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Rounds that wrote a batch to the log engine.
    pub writes: u64,
    /// Of those, the ones written with fsync.
    pub synced_writes: u64,
    /// File fsyncs the log engine performed (all causes).
    pub engine_fsyncs: u64,
    /// Groups whose state went into the last written batch.
    pub last_write_groups: u64,
    /// Ticks delivered to the groups (each tick ticks every group).
    pub ticks: u64,
    /// Peer messages for a group this node does not host (dropped).
    pub dropped_unknown_group: u64,
    /// Messages the transport refused to queue (dropped; raft retransmits).
    pub dropped_sends: u64,
}

enum Command {
    Propose {
        group: GroupId,
        data: Bytes,
        tx: ProposeTx,
    },
    ReadIndex {
        group: GroupId,
        mode: ReadMode,
        tx: oneshot::Sender<Result<Index, DriverError>>,
    },
    Status {
        group: GroupId,
        tx: oneshot::Sender<Result<GroupStatus, DriverError>>,
    },
    TransferLeader {
        group: GroupId,
        target: NodeId,
        tx: oneshot::Sender<Result<(), DriverError>>,
    },
    ChangeMembership {
        group: GroupId,
        voters: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
        tx: oneshot::Sender<Result<(), DriverError>>,
    },
    Snapshot {
        group: GroupId,
        tx: oneshot::Sender<Result<Index, DriverError>>,
    },
    Stats {
        tx: oneshot::Sender<DriverStats>,
    },
    Shutdown {
        tx: oneshot::Sender<()>,
    },
}

type ProposeTx = oneshot::Sender<Result<(Index, Bytes), DriverError>>;

/// A group's role, leader and term as of the driver's last round, readable
/// without a round trip to the driver (a hint for routing: authoritative
/// answers come from the core, e.g. a read index refused as not leader).
#[derive(Debug, Default)]
struct GroupView {
    role: AtomicU8,
    leader: AtomicU64,
    term: AtomicU64,
}

fn role_code(r: Role) -> u8 {
    match r {
        Role::Follower => 0,
        Role::PreCandidate => 1,
        Role::Candidate => 2,
        Role::Leader => 3,
        Role::Learner => 4,
    }
}

fn role_of(code: u8) -> Role {
    match code {
        1 => Role::PreCandidate,
        2 => Role::Candidate,
        3 => Role::Leader,
        4 => Role::Learner,
        _ => Role::Follower,
    }
}

impl GroupView {
    fn publish(&self, role: Role, leader: NodeId, term: Term) {
        self.term.store(term, Ordering::Release);
        self.leader.store(leader, Ordering::Release);
        self.role.store(role_code(role), Ordering::Release);
    }
}

/// A cloneable handle to a running driver. Every call goes through a bounded
/// command channel; calls after the driver stopped fail with
/// [`DriverError::Shutdown`].
#[derive(Clone, Debug)]
pub struct DriverHandle {
    tx: mpsc::Sender<Command>,
    views: Arc<BTreeMap<GroupId, Arc<GroupView>>>,
}

impl DriverHandle {
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, DriverError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| DriverError::Shutdown)?;
        rx.await.map_err(|_| DriverError::Shutdown)
    }

    /// Propose `data` to `group` (this node must lead it). Resolves with the
    /// entry's index once the entry is committed and applied locally.
    pub async fn propose(&self, group: GroupId, data: Bytes) -> Result<Index, DriverError> {
        self.execute(group, data).await.map(|(index, _)| index)
    }

    /// Like [`DriverHandle::propose`], and also returns what the state machine
    /// answered for the entry ([`ApplyContext::respond`]; empty if nothing).
    pub async fn execute(
        &self,
        group: GroupId,
        data: Bytes,
    ) -> Result<(Index, Bytes), DriverError> {
        self.call(|tx| Command::Propose { group, data, tx }).await?
    }

    /// A linearizable read point: resolves with an index once the local state
    /// machine has applied at least that far, so a local read is then safe.
    /// Works on followers and learners too (they ask the leader).
    pub async fn read_index(&self, group: GroupId) -> Result<Index, DriverError> {
        self.read_index_with(group, ReadMode::Safe).await
    }

    /// [`DriverHandle::read_index`] with an explicit mode: `LeaseBased`
    /// answers at once on a leader whose lease is valid (falling back to a
    /// quorum round when it is not).
    pub async fn read_index_with(
        &self,
        group: GroupId,
        mode: ReadMode,
    ) -> Result<Index, DriverError> {
        self.call(|tx| Command::ReadIndex { group, mode, tx })
            .await?
    }

    /// The group's role, leader and term as of the driver's last round,
    /// without a round trip (None: the group is not hosted). A hint: it may
    /// be a round behind.
    pub fn role_hint(&self, group: GroupId) -> Option<(Role, NodeId, Term)> {
        self.views.get(&group).map(|v| {
            (
                role_of(v.role.load(Ordering::Acquire)),
                v.leader.load(Ordering::Acquire),
                v.term.load(Ordering::Acquire),
            )
        })
    }

    pub async fn status(&self, group: GroupId) -> Result<GroupStatus, DriverError> {
        self.call(|tx| Command::Status { group, tx }).await?
    }

    /// Start a leader transfer to `target` (0: the most up-to-date voter).
    /// Resolves when the core accepted it, not when it completed.
    pub async fn transfer_leader(&self, group: GroupId, target: NodeId) -> Result<(), DriverError> {
        self.call(|tx| Command::TransferLeader { group, target, tx })
            .await?
    }

    /// Start a joint-consensus membership change. Resolves when the core
    /// accepted it, not when it completed.
    pub async fn change_membership(
        &self,
        group: GroupId,
        voters: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
    ) -> Result<(), DriverError> {
        self.call(|tx| Command::ChangeMembership {
            group,
            voters,
            learners,
            tx,
        })
        .await?
    }

    /// Snapshot the group's state machine at its applied index, store the
    /// image durably and let the core compact its log. Returns the index.
    pub async fn snapshot(&self, group: GroupId) -> Result<Index, DriverError> {
        self.call(|tx| Command::Snapshot { group, tx }).await?
    }

    pub async fn stats(&self) -> Result<DriverStats, DriverError> {
        self.call(|tx| Command::Stats { tx }).await
    }

    /// Stop the driver: the round in progress finishes, pending waiters get
    /// [`DriverError::Shutdown`], the log is synced and the transport shut
    /// down. Resolves once the driver has stopped (at once if it already had).
    pub async fn shutdown(&self) {
        let _ = self.call(|tx| Command::Shutdown { tx }).await;
    }
}

struct Group {
    node: RaftNode,
    view: Arc<GroupView>,
    sm: Box<dyn StateMachine>,
    /// Proposals by index, with the term they were proposed in and when.
    proposals: BTreeMap<Index, (Term, Instant, ProposeTx)>,
    reads: HashMap<ReadRequestId, oneshot::Sender<Result<Index, DriverError>>>,
}

/// The driver task. Start it with [`Driver::start`].
pub struct Driver<D: Disk + Clone + 'static> {
    opts: DriverOptions,
    engine: LogEngine,
    snaps: SnapStore<D>,
    transport: Arc<Transport>,
    inbound: mpsc::Receiver<Message>,
    inbound_open: bool,
    cmd_rx: mpsc::Receiver<Command>,
    groups: BTreeMap<GroupId, Group>,
    next_read_id: ReadRequestId,
    pending_purges: Vec<(GroupId, Index)>,
    shutdown_waiters: Vec<oneshot::Sender<()>>,
    stopping: bool,
    stats: DriverStats,
}

impl<D: Disk + Clone + 'static> Driver<D> {
    /// Open the log engine in `dir/log` (snapshots in `dir/snapshots`) on
    /// `disk`, recover or create every group of `groups`, and spawn the driver
    /// task on the current tokio runtime. `transport` must already know its
    /// peers' addresses (`Transport::set_peer`); `inbound` is the receiver
    /// `Transport::bind` returned.
    ///
    /// The task performs the log engine's blocking file I/O itself: run it on
    /// a runtime (or worker) that may block for an fsync.
    pub fn start(
        disk: D,
        dir: impl Into<PathBuf>,
        opts: DriverOptions,
        transport: Arc<Transport>,
        inbound: mpsc::Receiver<Message>,
        groups: Vec<GroupSpec>,
    ) -> Result<(DriverHandle, JoinHandle<Result<(), DriverError>>), DriverError> {
        if opts.tick_interval_ms == 0 || opts.command_queue == 0 || opts.max_inputs_per_round == 0 {
            return Err(DriverError::InvalidOptions(
                "tick_interval_ms, command_queue and max_inputs_per_round must be at least 1"
                    .into(),
            ));
        }
        let dir = dir.into();
        let (mut engine, report) =
            LogEngine::open(disk.clone(), dir.join("log"), opts.log_engine.clone())?;
        if report.truncated_records > 0 {
            warn!(?report, "log engine cut a torn tail on open");
        }
        let snaps = SnapStore::new(disk, dir.join("snapshots"));
        let mut hosted = BTreeMap::new();
        for spec in groups {
            let gid = spec.config.group;
            if spec.config.id != transport.node_id() {
                return Err(DriverError::InvalidOptions(format!(
                    "group {gid}: config id {} is not the transport's node id {}",
                    spec.config.id,
                    transport.node_id()
                )));
            }
            if hosted.contains_key(&gid) {
                return Err(DriverError::InvalidOptions(format!(
                    "group {gid} given twice"
                )));
            }
            let group = recover_group(&mut engine, &snaps, spec)?;
            hosted.insert(gid, group);
        }
        let views: BTreeMap<GroupId, Arc<GroupView>> = hosted
            .iter()
            .map(|(g, grp)| (*g, grp.view.clone()))
            .collect();
        let (cmd_tx, cmd_rx) = mpsc::channel(opts.command_queue);
        let driver = Driver {
            opts,
            engine,
            snaps,
            transport,
            inbound,
            inbound_open: true,
            cmd_rx,
            groups: hosted,
            next_read_id: 0,
            pending_purges: Vec::new(),
            shutdown_waiters: Vec::new(),
            stopping: false,
            stats: DriverStats::default(),
        };
        let task = tokio::spawn(driver.run());
        Ok((
            DriverHandle {
                tx: cmd_tx,
                views: Arc::new(views),
            },
            task,
        ))
    }

    async fn run(mut self) -> Result<(), DriverError> {
        let mut interval = tokio::time::interval(Duration::from_millis(self.opts.tick_interval_ms));
        // See the module docs: missed ticks are all delivered so that leases
        // expire in real time after a pause.
        interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
        interval.tick().await; // the first tick completes at once
        let result = loop {
            tokio::select! {
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => self.stopping = true,
                },
                msg = self.inbound.recv(), if self.inbound_open => match msg {
                    Some(m) => self.route(m),
                    None => self.inbound_open = false,
                },
                _ = interval.tick() => self.tick_all(),
            }
            self.drain_inputs();
            if let Err(e) = self.run_rounds() {
                warn!(error = %e, "driver stopping after a fatal error");
                break Err(e);
            }
            if self.stopping {
                break Ok(());
            }
        };
        self.close().await;
        result
    }

    fn drain_inputs(&mut self) {
        let mut budget = self.opts.max_inputs_per_round;
        while budget > 0 && !self.stopping {
            let mut progressed = false;
            if let Ok(cmd) = self.cmd_rx.try_recv() {
                self.command(cmd);
                budget -= 1;
                progressed = true;
            }
            if budget > 0
                && self.inbound_open
                && let Ok(m) = self.inbound.try_recv()
            {
                self.route(m);
                budget -= 1;
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
    }

    fn tick_all(&mut self) {
        self.stats.ticks += 1;
        for g in self.groups.values_mut() {
            g.node.tick();
        }
    }

    fn route(&mut self, m: Message) {
        match self.groups.get_mut(&m.group) {
            Some(g) => g.node.step(m),
            None => self.stats.dropped_unknown_group += 1,
        }
    }

    fn send(&mut self, m: Message) {
        if self.transport.send(m).is_err() {
            self.stats.dropped_sends += 1;
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Propose { group, data, tx } => {
                let Some(g) = self.groups.get_mut(&group) else {
                    let _ = tx.send(Err(DriverError::UnknownGroup(group)));
                    return;
                };
                let term = g.node.term();
                metrics::counter!("rhea_raft_proposals_total").increment(1);
                match g.node.propose(data) {
                    Ok(index) => {
                        if let Some((_, _, old)) =
                            g.proposals.insert(index, (term, Instant::now(), tx))
                        {
                            let _ = old.send(Err(DriverError::Dropped { index }));
                        }
                    }
                    Err(e) => {
                        metrics::counter!("rhea_raft_proposals_refused_total").increment(1);
                        let _ = tx.send(Err(e.into()));
                    }
                }
            }
            Command::ReadIndex { group, mode, tx } => {
                let Some(g) = self.groups.get_mut(&group) else {
                    let _ = tx.send(Err(DriverError::UnknownGroup(group)));
                    return;
                };
                self.next_read_id += 1;
                let id = self.next_read_id;
                match g.node.read_index_with(id, mode) {
                    Ok(()) => {
                        g.reads.insert(id, tx);
                    }
                    Err(e) => {
                        count_read_outcome(&Err(e.clone()));
                        let _ = tx.send(Err(e.into()));
                    }
                }
            }
            Command::Status { group, tx } => {
                let r = self
                    .groups
                    .get(&group)
                    .map(|g| GroupStatus {
                        role: g.node.role(),
                        term: g.node.term(),
                        leader: g.node.leader(),
                        commit: g.node.commit_index(),
                        applied: g.node.applied_index(),
                        last_index: g.node.last_index(),
                        membership: g.node.membership().clone(),
                        membership_change_pending: g.node.membership_change_pending(),
                    })
                    .ok_or(DriverError::UnknownGroup(group));
                let _ = tx.send(r);
            }
            Command::TransferLeader { group, target, tx } => {
                let r = match self.groups.get_mut(&group) {
                    Some(g) => g.node.transfer_leader(target).map_err(DriverError::from),
                    None => Err(DriverError::UnknownGroup(group)),
                };
                let _ = tx.send(r);
            }
            Command::ChangeMembership {
                group,
                voters,
                learners,
                tx,
            } => {
                let r = match self.groups.get_mut(&group) {
                    Some(g) => g
                        .node
                        .change_membership(voters, learners)
                        .map_err(DriverError::from),
                    None => Err(DriverError::UnknownGroup(group)),
                };
                let _ = tx.send(r);
            }
            Command::Snapshot { group, tx } => {
                let r = self.take_snapshot(group);
                let _ = tx.send(r);
            }
            Command::Stats { tx } => {
                let mut s = self.stats;
                s.engine_fsyncs = self.engine.fsync_count();
                let _ = tx.send(s);
            }
            Command::Shutdown { tx } => {
                self.shutdown_waiters.push(tx);
                self.stopping = true;
            }
        }
    }

    fn take_snapshot(&mut self, group: GroupId) -> Result<Index, DriverError> {
        let g = self
            .groups
            .get_mut(&group)
            .ok_or(DriverError::UnknownGroup(group))?;
        let index = g.node.applied_index();
        if g.sm.applied_index() != index {
            return Err(DriverError::Admin(rhea_raft::AdminError::Invalid(format!(
                "state machine applied {} but the core applied {index}",
                g.sm.applied_index()
            ))));
        }
        let data =
            g.sm.snapshot()
                .map_err(|e| DriverError::StateMachine { group, source: e })?;
        // The core checks the request and fixes term and membership; the image
        // is then stored before any purge it allows can reach the log engine
        // (that happens in a later round).
        g.node.snapshot_done(index, data.clone())?;
        let meta = g
            .node
            .snapshot_meta()
            .cloned()
            .ok_or_else(|| DriverError::Recovery {
                group,
                reason: "core has no snapshot after snapshot_done".into(),
            })?;
        if let Err(e) = self.snaps.save(group, &meta, &data) {
            // The core already compacted; without the file a purge would lose
            // data on restart. Stop rather than go on.
            warn!(group, error = %e, "snapshot file write failed; stopping the driver");
            self.stopping = true;
            self.pending_purges.clear();
            return Err(e);
        }
        Ok(index)
    }

    /// Execute readies until no group has one (bounded, to keep ticking fair).
    fn run_rounds(&mut self) -> Result<(), DriverError> {
        for _ in 0..64 {
            if !self.round()? {
                break;
            }
        }
        Ok(())
    }

    /// One round: every group's ready, one write. False when nothing to do.
    fn round(&mut self) -> Result<bool, DriverError> {
        let mut readies: Vec<(GroupId, Ready)> = Vec::new();
        for (gid, g) in self.groups.iter_mut() {
            if let Some(rd) = g.node.ready() {
                readies.push((*gid, rd));
            }
        }
        if readies.is_empty() && self.pending_purges.is_empty() {
            return Ok(false);
        }
        // Step 3 of Ready: messages may leave before the write.
        for (_, rd) in readies.iter_mut() {
            for m in std::mem::take(&mut rd.messages) {
                self.send(m);
            }
        }
        // Snapshot images first, so the engine never records an install whose
        // image is not durable.
        for (gid, rd) in &readies {
            if let Some(s) = &rd.snapshot {
                self.snaps.save(*gid, &s.meta, &s.data)?;
            }
        }
        let mut batch = WriteBatch::new();
        let mut must_sync = false;
        let mut groups_written = 0;
        for (gid, rd) in readies.iter_mut() {
            let mut wrote = false;
            if let Some(s) = &rd.snapshot {
                batch.install_snapshot(*gid, s.meta.clone());
                wrote = true;
            }
            if !rd.entries.is_empty() {
                batch.append(*gid, rd.entries.clone());
                wrote = true;
            }
            if let Some(hs) = rd.hard_state {
                batch.set_hard_state(*gid, hs);
                wrote = true;
            }
            must_sync |= rd.must_sync;
            groups_written += u64::from(wrote);
        }
        let purged = !self.pending_purges.is_empty();
        for (gid, to) in self.pending_purges.drain(..) {
            batch.purge(gid, to);
        }
        if !batch.is_empty() {
            let sync = must_sync && self.opts.sync_writes;
            let started = Instant::now();
            self.engine.write(&batch, sync)?;
            let seconds = started.elapsed().as_secs_f64();
            if sync {
                metrics::histogram!("rhea_log_fsync_seconds").record(seconds);
            }
            metrics::histogram!("rhea_log_write_seconds").record(seconds);
            metrics::histogram!("rhea_log_write_groups").record(groups_written as f64);
            self.stats.writes += 1;
            self.stats.synced_writes += u64::from(sync);
            self.stats.last_write_groups = groups_written;
        }
        if purged {
            let report = self.engine.purge()?;
            if !report.removed.is_empty() {
                info!(removed = report.removed.len(), "log engine purged segments");
            }
        }
        // The write returned (durable if it had to be): the rest of the ready.
        for (gid, rd) in readies {
            for m in rd.persisted_messages {
                self.send(m);
            }
            let Some(g) = self.groups.get_mut(&gid) else {
                continue;
            };
            if let Some(ss) = rd.soft_state {
                g.view.publish(ss.role, ss.leader, ss.term);
                metrics::counter!("rhea_raft_soft_state_changes_total").increment(1);
                if ss.role == Role::Leader {
                    metrics::counter!("rhea_raft_leader_elected_total").increment(1);
                }
                info!(group = gid, role = ?ss.role, term = ss.term, leader = ss.leader, "raft role");
            }
            if let Some(s) = rd.snapshot {
                let last = s.meta.last_index;
                g.sm.restore(s.data)
                    .map_err(|e| DriverError::StateMachine {
                        group: gid,
                        source: e,
                    })?;
                let superseded: Vec<Index> = g.proposals.range(..=last).map(|(i, _)| *i).collect();
                for index in superseded {
                    if let Some((_, _, tx)) = g.proposals.remove(&index) {
                        let _ = tx.send(Err(DriverError::Superseded { index }));
                    }
                }
            }
            if !rd.committed_entries.is_empty() {
                let mut ctx = ApplyContext::default();
                for e in &rd.committed_entries {
                    if let Some((term, _, _)) = g.proposals.get(&e.index)
                        && *term == e.term
                    {
                        ctx.waiting.push(e.index);
                    }
                }
                g.sm.apply(gid, &rd.committed_entries, &mut ctx)
                    .map_err(|e| DriverError::StateMachine {
                        group: gid,
                        source: e,
                    })?;
                let mut responses: HashMap<Index, Bytes> = ctx.responses.into_iter().collect();
                for e in &rd.committed_entries {
                    let response = responses.remove(&e.index).unwrap_or_default();
                    if let Some((term, started, tx)) = g.proposals.remove(&e.index) {
                        let r = if term == e.term {
                            metrics::histogram!("rhea_raft_commit_seconds")
                                .record(started.elapsed().as_secs_f64());
                            Ok((e.index, response))
                        } else {
                            Err(DriverError::Dropped { index: e.index })
                        };
                        let _ = tx.send(r);
                    }
                }
            }
            for rs in rd.reads {
                count_read_outcome(&rs.result);
                if let Some(tx) = g.reads.remove(&rs.request_id) {
                    let _ = tx.send(rs.result.map_err(DriverError::from));
                }
            }
            if let Some(to) = rd.compacted_to {
                self.pending_purges.push((gid, to));
            }
            for ev in rd.events {
                info!(group = gid, event = ?ev, "raft event");
            }
            g.node.advance();
        }
        Ok(true)
    }

    async fn close(mut self) {
        // Waiters are answered by dropping their senders (Shutdown).
        self.groups.clear();
        if let Err(e) = self.engine.sync() {
            warn!(error = %e, "log sync on shutdown failed");
        }
        self.transport.shutdown().await;
        self.cmd_rx.close();
        for tx in self.shutdown_waiters.drain(..) {
            let _ = tx.send(());
        }
        // Answer shutdown requests that raced with the stop.
        while let Ok(cmd) = self.cmd_rx.try_recv() {
            if let Command::Shutdown { tx } = cmd {
                let _ = tx.send(());
            }
        }
    }
}

/// Read back a group's hard state and its entries after the newest snapshot
/// image (`image`: the meta of the newest durable snapshot file, if any),
/// reconciling the log with the image first.
///
/// The image is made durable before the log records the install, so a crash
/// between the two (or the loss of the unsynced install record) leaves an
/// image newer than the log knows of. The log is then told about it again,
/// durably, keeping its entries after the image: they are what this node had
/// persisted (and may have acknowledged) before the lost install, and Raft's
/// consistency check repairs any that conflict. Without this the next append
/// after the image's index would leave a gap in the log and stop the node.
pub fn recover_log(
    engine: &mut LogEngine,
    gid: GroupId,
    image: Option<&rhea_raft::SnapshotMeta>,
) -> Result<(rhea_raft::HardState, Vec<Entry>), DriverError> {
    let recovery = |reason: String| DriverError::Recovery { group: gid, reason };
    let base = image.map_or(0, |m| m.last_index);
    let recorded = engine.snapshot_meta(gid).map_or(0, |m| m.last_index);
    if recorded > base {
        return Err(recovery(format!(
            "the log records a snapshot at {recorded} but the newest snapshot file is at {base}"
        )));
    }
    let last = engine.last_index(gid).unwrap_or(0);
    let first = engine.first_index(gid).unwrap_or(1);
    let entries = if last > base {
        if first > base + 1 {
            return Err(recovery(format!(
                "the log starts at {first} but the snapshot ends at {base}"
            )));
        }
        engine.entries(gid, base + 1, last + 1)?
    } else {
        Vec::new()
    };
    if let Some(meta) = image
        && recorded < base
    {
        warn!(
            group = gid,
            image = base,
            recorded,
            "the log lost the install of the newest snapshot; recording it again"
        );
        let mut batch = WriteBatch::new();
        batch.install_snapshot(gid, meta.clone());
        if !entries.is_empty() {
            batch.append(gid, entries.clone());
        }
        engine.write(&batch, true)?;
    }
    Ok((engine.hard_state(gid).unwrap_or_default(), entries))
}

/// Build a group's raft node from what is stored (or bootstrap it).
fn recover_group<D: Disk>(
    engine: &mut LogEngine,
    snaps: &SnapStore<D>,
    spec: GroupSpec,
) -> Result<Group, DriverError> {
    let GroupSpec {
        config,
        initial_membership,
        mut state_machine,
    } = spec;
    let gid = config.group;
    let snapshot = snaps.load_latest(gid)?;
    let stored = engine.groups().contains(&gid);
    let bootstrap = if !stored && snapshot.is_none() {
        match initial_membership {
            Some(membership) => Bootstrap::NewGroup { membership },
            None => Bootstrap::Join,
        }
    } else {
        let (hard_state, entries) = recover_log(engine, gid, snapshot.as_ref().map(|s| &s.meta))?;
        // A durable state machine may already be at or past the snapshot:
        // then it keeps its state and the log is replayed after its index.
        if let Some(s) = &snapshot
            && state_machine.applied_index() < s.meta.last_index
        {
            state_machine
                .restore(s.data.clone())
                .map_err(|e| DriverError::StateMachine {
                    group: gid,
                    source: e,
                })?;
        }
        let applied = state_machine.applied_index();
        Bootstrap::Restore(RestoreState {
            hard_state,
            snapshot,
            entries,
            applied,
        })
    };
    // The core requires a seed that differs at every start (follower read
    // batch ids are drawn from it): mix in a per-start nonce.
    let mut config = config;
    config.seed ^= start_nonce();
    let node = RaftNode::new(config, bootstrap)?;
    let view = Arc::new(GroupView::default());
    view.publish(node.role(), node.leader(), node.term());
    Ok(Group {
        node,
        view,
        sm: state_machine,
        proposals: BTreeMap::new(),
        reads: HashMap::new(),
    })
}

/// Count a read index outcome in the metrics, by outcome.
fn count_read_outcome(r: &Result<Index, rhea_raft::ReadError>) {
    use rhea_raft::ReadError;
    let outcome = match r {
        Ok(_) => "ok",
        Err(ReadError::NotLeader { .. }) => "not_leader",
        Err(ReadError::RetryLater) => "retry_later",
        Err(ReadError::Busy) => "busy",
        Err(ReadError::Timeout) => "timeout",
        Err(ReadError::Backpressure { .. }) => "backpressure",
    };
    metrics::counter!("rhea_raft_read_index_total", "outcome" => outcome).increment(1);
}

/// A value that differs at every start of the process (and between groups
/// recovered in one start): wall-clock nanoseconds, the process id and a
/// counter, mixed. Not secret, only distinct.
fn start_nonce() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let raw = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    rhea_raft::SplitMix64::new(raw).next_u64()
}
