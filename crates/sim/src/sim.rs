//! The deterministic cluster simulation: one thread, simulated time, every
//! random choice drawn from one seeded generator.
//!
//! A run has two phases. **Chaos**: clients issue operations while the nemesis
//! drops, delays, duplicates and reorders messages, partitions the network
//! (symmetric and asymmetric), crashes and restarts nodes (losing unsynced
//! writes), changes membership, promotes learners and transfers leadership;
//! nodes take snapshots and compact their logs; every node's clock drifts within
//! a bound. **Heal**: faults stop, every node restarts, and within a bound a
//! leader must be elected and every pending client operation must finish.
//!
//! After every event the invariants in [`crate::invariants`] are checked; at the
//! end the client history is checked for linearizability.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;

use rhea_raft::{
    Bootstrap, Config, Entry, EntryPayload, Event, Membership, Message, NO_NODE, NodeId,
    ProposeError, RaftNode, ReadError, ReadMode, Ready, RestoreState, Role, Snapshot, SplitMix64,
};

use crate::invariants::Invariants;
use crate::kv::{Command, KvStateMachine, Outcome, Request};
use crate::linearizability::{KvInput, KvOutput, Operation, check_kv_history};
use crate::storage::{ModelDisk, NodeStorage};

/// Simulated time units per tick (think microseconds: a tick is 1 ms here).
pub const TICK: u64 = 1_000;
const NODES: u64 = 5;
const INITIAL_VOTERS: u64 = 3;
const CLIENTS: u64 = 4;
const KEYS: u64 = 3;
const ELECTION_TIMEOUT_TICKS: u64 = 10;
/// Clock drift bound, per mille. The lease (90% of the election timeout) stays
/// shorter than any follower's election timeout while drift is below 5%.
const MAX_DRIFT_PER_MILLE: u64 = 20;
const ATTEMPT_TIMEOUT: u64 = 4 * ELECTION_TIMEOUT_TICKS * TICK;
const OP_DEADLINE: u64 = 20 * ELECTION_TIMEOUT_TICKS * TICK;
/// After faults heal, a leader must exist within this bound ...
const HEAL_LEADER_BOUND: u64 = 30 * ELECTION_TIMEOUT_TICKS * TICK;
/// ... and every pending operation must have finished within this one.
const HEAL_OPS_BOUND: u64 = 60 * ELECTION_TIMEOUT_TICKS * TICK;

#[derive(Clone, Debug)]
pub struct SimOptions {
    pub seed: u64,
    /// Events processed in the chaos phase.
    pub steps: u64,
    pub verbose: bool,
    /// The nodes' storage (None: the in-memory [`ModelDisk`]).
    pub storage: Option<StorageFactory>,
}

/// Makes each node's storage (called once per node, with its id).
#[derive(Clone)]
pub struct StorageFactory(pub Arc<dyn Fn(NodeId) -> Box<dyn NodeStorage> + Send + Sync>);

impl std::fmt::Debug for StorageFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StorageFactory")
    }
}

#[derive(Clone, Debug, Default)]
pub struct SimStats {
    pub events: u64,
    pub messages_sent: u64,
    pub messages_dropped: u64,
    pub crashes: u64,
    pub leader_changes: u64,
    pub membership_changes_done: u64,
    pub transfers_started: u64,
    pub snapshots_taken: u64,
    pub snapshots_installed: u64,
    pub ops_ok: u64,
    pub ops_unknown: u64,
    pub lease_reads: u64,
    /// Lease reads the leader answered without a heartbeat round.
    pub lease_fast_path: u64,
    pub follower_reads: u64,
    pub log_reads: u64,
    pub sim_time_ticks: u64,
}

#[derive(Debug)]
pub struct SimReport {
    pub seed: u64,
    pub result: Result<(), String>,
    pub stats: SimStats,
}

#[derive(Clone, Debug)]
enum Ev {
    Tick {
        node: NodeId,
        inc: u64,
    },
    Deliver(Message),
    SyncDone {
        node: NodeId,
        inc: u64,
    },
    Client {
        client: u64,
    },
    AttemptTimeout {
        client: u64,
        attempt: u64,
    },
    Nemesis,
    Restart {
        node: NodeId,
    },
    /// Crash a node if it is still the same incarnation (used to kill leaders
    /// right after their election, the Figure 8 pattern).
    Crash {
        node: NodeId,
        inc: u64,
    },
    HealPartition,
}

struct Scheduled {
    time: u64,
    seq: u64,
    ev: Ev,
}

impl SimStats {
    pub fn add(&mut self, o: &SimStats) {
        self.events += o.events;
        self.messages_sent += o.messages_sent;
        self.messages_dropped += o.messages_dropped;
        self.crashes += o.crashes;
        self.leader_changes += o.leader_changes;
        self.membership_changes_done += o.membership_changes_done;
        self.transfers_started += o.transfers_started;
        self.snapshots_taken += o.snapshots_taken;
        self.snapshots_installed += o.snapshots_installed;
        self.ops_ok += o.ops_ok;
        self.ops_unknown += o.ops_unknown;
        self.lease_reads += o.lease_reads;
        self.lease_fast_path += o.lease_fast_path;
        self.follower_reads += o.follower_reads;
        self.log_reads += o.log_reads;
        self.sim_time_ticks += o.sim_time_ticks;
    }
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.time, self.seq).cmp(&(other.time, other.seq))
    }
}

struct SimNode {
    inc: u64,
    alive: bool,
    raft: Option<RaftNode>,
    sm: KvStateMachine,
    disk: Box<dyn NodeStorage>,
    pending: Option<Ready>,
    tick_period: u64,
    /// (client, seq) of proposals made here that a client waits on.
    waiters: BTreeSet<(u64, u64)>,
    /// read request id -> (client, seq, key)
    reads: BTreeMap<u64, (u64, u64, u64)>,
    next_read_id: u64,
    last_snapshot_index: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadPath {
    Log,
    LeaderReadIndex,
    FollowerRead,
    Lease,
}

#[derive(Clone, Debug)]
struct ActiveOp {
    seq: u64,
    command: Command,
    path: ReadPath,
    invoke: u64,
    deadline: u64,
    attempt: u64,
}

struct Client {
    id: u64,
    seq: u64,
    op: Option<ActiveOp>,
    leader_guess: NodeId,
    next_value: u64,
    seen: BTreeMap<u64, u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Chaos,
    Heal,
}

/// Knobs drawn per seed so that different seeds stress different things.
struct Knobs {
    drop_per_mille: u64,
    dup_per_mille: u64,
    spike_per_mille: u64,
    snapshot_every: u64,
    snapshot_margin: u64,
    chunk_bytes: usize,
    throttle: u64,
    nemesis_every_ticks: u64,
    max_append_entries: usize,
    max_inflight_appends: usize,
    /// Election priorities for the initial voters (SOFAJRaft electionPriority).
    priorities: bool,
    /// Per mille of elections after which the new leader is crashed within
    /// two ticks: leaders that die having replicated only part of their log.
    kill_new_leader_per_mille: u64,
}

pub struct Sim {
    opts: SimOptions,
    rng: SplitMix64,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    nodes: Vec<SimNode>,
    blocked: BTreeSet<(NodeId, NodeId)>,
    knobs: Knobs,
    clients: Vec<Client>,
    history: Vec<Operation<KvInput, KvOutput>>,
    inv: Invariants,
    phase: Phase,
    stats: SimStats,
    last_leader: NodeId,
}

fn kv_input(c: Command) -> KvInput {
    match c {
        Command::Put { key, value } => KvInput::Put { key, value },
        Command::Get { key } => KvInput::Get { key },
        Command::Cas { key, expected, new } => KvInput::Cas { key, expected, new },
    }
}

fn kv_output(o: Outcome) -> KvOutput {
    match o {
        Outcome::Put => KvOutput::Put,
        Outcome::Get(v) => KvOutput::Get(v),
        Outcome::Cas(b) => KvOutput::Cas(b),
    }
}

impl Sim {
    pub fn new(opts: SimOptions) -> Sim {
        let mut rng = SplitMix64::new(opts.seed ^ 0x5248_4541_5349_4D00);
        let knobs = Knobs {
            drop_per_mille: [0, 10, 50, 100][rng.range(0, 4) as usize],
            dup_per_mille: [0, 10, 50][rng.range(0, 3) as usize],
            spike_per_mille: [0, 20, 100][rng.range(0, 3) as usize],
            snapshot_every: rng.range(10, 120),
            snapshot_margin: rng.range(0, 20),
            chunk_bytes: [64, 256, 4096][rng.range(0, 3) as usize],
            throttle: [0, 0, 512][rng.range(0, 3) as usize],
            nemesis_every_ticks: rng.range(3, 40),
            max_append_entries: [1, 2, 16][rng.range(0, 3) as usize],
            max_inflight_appends: [1, 4, 64][rng.range(0, 3) as usize],
            priorities: rng.chance(1, 3),
            kill_new_leader_per_mille: [0, 100, 300][rng.range(0, 3) as usize],
        };
        let mut sim = Sim {
            opts,
            rng,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes: Vec::new(),
            blocked: BTreeSet::new(),
            knobs,
            clients: Vec::new(),
            history: Vec::new(),
            inv: Invariants::default(),
            phase: Phase::Chaos,
            stats: SimStats::default(),
            last_leader: NO_NODE,
        };
        for id in 1..=NODES {
            let disk: Box<dyn NodeStorage> = match &sim.opts.storage {
                Some(f) => (f.0)(id),
                None => Box::new(ModelDisk::default()),
            };
            sim.nodes.push(SimNode {
                inc: 0,
                alive: false,
                raft: None,
                sm: KvStateMachine::default(),
                disk,
                pending: None,
                tick_period: TICK,
                waiters: BTreeSet::new(),
                reads: BTreeMap::new(),
                next_read_id: 0,
                last_snapshot_index: 0,
            });
        }
        for id in 1..=NODES {
            sim.start_node(id, true);
        }
        for c in 0..CLIENTS {
            sim.clients.push(Client {
                id: c + 1,
                seq: 0,
                op: None,
                leader_guess: NO_NODE,
                next_value: 0,
                seen: BTreeMap::new(),
            });
            let at = sim.rng.range(0, 20 * TICK);
            sim.schedule(at, Ev::Client { client: c + 1 });
        }
        let at = sim.knobs.nemesis_every_ticks * TICK;
        sim.schedule(at, Ev::Nemesis);
        sim
    }

    fn log(&self, msg: impl FnOnce() -> String) {
        if self.opts.verbose {
            eprintln!("[t={:>8}] {}", self.now, msg());
        }
    }

    fn schedule(&mut self, delay: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            time: self.now + delay,
            seq: self.seq,
            ev,
        }));
    }

    fn config(&mut self, id: NodeId, inc: u64) -> Config {
        let mut cfg = Config::new(id, 1);
        cfg.seed = self
            .opts
            .seed
            .wrapping_mul(31)
            .wrapping_add(id * 1_000 + inc);
        cfg.election_timeout_ticks = ELECTION_TIMEOUT_TICKS;
        cfg.heartbeat_interval_ticks = 1;
        cfg.max_inflight_appends = self.knobs.max_inflight_appends;
        cfg.max_append_entries = self.knobs.max_append_entries;
        cfg.snapshot_log_index_margin = self.knobs.snapshot_margin;
        cfg.snapshot_chunk_bytes = self.knobs.chunk_bytes;
        cfg.snapshot_throttle_bytes_per_tick = self.knobs.throttle;
        cfg.catchup_margin_entries = 20;
        cfg.catchup_timeout_ticks = 3 * ELECTION_TIMEOUT_TICKS;
        cfg
    }

    fn start_node(&mut self, id: NodeId, first: bool) {
        let idx = (id - 1) as usize;
        let inc = self.nodes[idx].inc + 1;
        let cfg = self.config(id, inc);
        let mut restored_snapshot = None;
        let bootstrap = if first {
            if id <= INITIAL_VOTERS {
                let mut membership = Membership::new(1..=INITIAL_VOTERS);
                if self.knobs.priorities {
                    // Node 1 should usually lead; 3 may lead only after decay.
                    membership.priorities = [(1, 100), (2, 40), (3, 10)].into();
                }
                Bootstrap::NewGroup { membership }
            } else {
                Bootstrap::Join
            }
        } else {
            let rec = match self.nodes[idx].disk.recover() {
                Ok(r) => r,
                Err(e) => panic!("node {id} cannot recover its storage: {e}"),
            };
            let base = rec.snapshot.as_ref().map_or(0, |s| s.meta.last_index);
            restored_snapshot = rec.snapshot.clone();
            Bootstrap::Restore(RestoreState {
                hard_state: rec.hard_state,
                snapshot: rec.snapshot,
                entries: rec.entries,
                applied: base,
            })
        };
        let drift = self.rng.range(0, 2 * MAX_DRIFT_PER_MILLE + 1);
        let node = &mut self.nodes[idx];
        node.sm = match restored_snapshot.as_ref() {
            Some(s) => KvStateMachine::decode(&s.data).unwrap_or_default(),
            None => KvStateMachine::default(),
        };
        node.last_snapshot_index = node.sm.applied;
        node.inc = inc;
        node.alive = true;
        node.pending = None;
        node.waiters.clear();
        node.reads.clear();
        node.tick_period = TICK * (1000 + drift - MAX_DRIFT_PER_MILLE) / 1000;
        node.raft = match RaftNode::new(cfg, bootstrap) {
            Ok(r) => Some(r),
            Err(e) => panic!("node {id} failed to start: {e}"),
        };
        self.inv.node_started(id);
        let period = self.nodes[idx].tick_period;
        let first_tick = self.rng.range(1, period);
        self.schedule(first_tick, Ev::Tick { node: id, inc });
    }

    fn crash(&mut self, id: NodeId) {
        let idx = (id - 1) as usize;
        if !self.nodes[idx].alive {
            return;
        }
        self.log(|| format!("crash node {id}"));
        self.stats.crashes += 1;
        let node = &mut self.nodes[idx];
        node.alive = false;
        node.raft = None;
        node.pending = None;
        node.disk.crash(&mut self.rng);
    }

    // ----- Running ---------------------------------------------------------------

    pub fn run(mut self) -> SimReport {
        let result = self.run_inner();
        self.stats.sim_time_ticks = self.now / TICK;
        SimReport {
            seed: self.opts.seed,
            result,
            stats: self.stats,
        }
    }

    fn run_inner(&mut self) -> Result<(), String> {
        let mut processed = 0u64;
        while processed < self.opts.steps {
            let Some(Reverse(s)) = self.queue.pop() else {
                break;
            };
            self.now = s.time;
            self.handle(s.ev)?;
            processed += 1;
        }
        self.stats.events = processed;
        self.heal()?;
        let report = check_kv_history(&self.history, 2_000_000);
        if !report.is_ok() {
            return Err(format!("history is not linearizable:\n{report}"));
        }
        Ok(())
    }

    fn heal(&mut self) -> Result<(), String> {
        self.phase = Phase::Heal;
        self.log(|| "heal: faults stop, all nodes restart".into());
        self.blocked.clear();
        self.knobs.drop_per_mille = 0;
        self.knobs.dup_per_mille = 0;
        self.knobs.spike_per_mille = 0;
        for id in 1..=NODES {
            if !self.nodes[(id - 1) as usize].alive {
                self.start_node(id, false);
            }
        }
        let start = self.now;
        let ops_deadline = start + HEAL_OPS_BOUND;
        for c in &mut self.clients {
            if let Some(op) = &mut c.op {
                op.deadline = ops_deadline;
            }
        }
        let mut leader_seen = false;
        loop {
            if !leader_seen && self.current_leader().is_some() {
                leader_seen = true;
            }
            if !leader_seen && self.now > start + HEAL_LEADER_BOUND {
                return Err(format!(
                    "liveness: no leader elected within {} ticks after faults healed",
                    HEAL_LEADER_BOUND / TICK
                ));
            }
            if leader_seen && self.clients.iter().all(|c| c.op.is_none()) {
                return Ok(());
            }
            if self.now > ops_deadline {
                let pending: Vec<String> = self
                    .clients
                    .iter()
                    .filter_map(|c| {
                        c.op.as_ref()
                            .map(|op| format!("client {} {:?}", c.id, op.command))
                    })
                    .collect();
                return Err(format!(
                    "liveness: operations still pending {} ticks after faults healed: {pending:?}",
                    HEAL_OPS_BOUND / TICK
                ));
            }
            let Some(Reverse(s)) = self.queue.pop() else {
                return Err("liveness: simulation ran out of events".into());
            };
            self.now = s.time;
            self.handle(s.ev)?;
        }
    }

    fn current_leader(&self) -> Option<NodeId> {
        let max_term = self
            .nodes
            .iter()
            .filter_map(|n| n.raft.as_ref())
            .map(|r| r.term())
            .max()?;
        self.nodes
            .iter()
            .filter_map(|n| n.raft.as_ref())
            .find(|r| r.is_leader() && r.term() == max_term)
            .map(|r| r.id())
    }

    fn handle(&mut self, ev: Ev) -> Result<(), String> {
        match ev {
            Ev::Tick { node, inc } => {
                let idx = (node - 1) as usize;
                if !self.nodes[idx].alive || self.nodes[idx].inc != inc {
                    return Ok(());
                }
                if let Some(r) = self.nodes[idx].raft.as_mut() {
                    r.tick();
                }
                let period = self.nodes[idx].tick_period;
                self.schedule(period, Ev::Tick { node, inc });
                self.drive(node)
            }
            Ev::Deliver(m) => {
                let to = m.to;
                if to == 0 || to > NODES {
                    return Ok(());
                }
                if self.blocked.contains(&(m.from, to)) {
                    self.stats.messages_dropped += 1;
                    return Ok(());
                }
                let idx = (to - 1) as usize;
                let Some(r) = self.nodes[idx].raft.as_mut() else {
                    return Ok(());
                };
                r.step(m);
                self.drive(to)
            }
            Ev::SyncDone { node, inc } => {
                let idx = (node - 1) as usize;
                if !self.nodes[idx].alive || self.nodes[idx].inc != inc {
                    return Ok(());
                }
                let Some(rd) = self.nodes[idx].pending.take() else {
                    return Ok(());
                };
                self.finish_ready(node, rd)?;
                self.drive(node)
            }
            Ev::Client { client } => self.client_step(client),
            Ev::AttemptTimeout { client, attempt } => {
                let c = &mut self.clients[(client - 1) as usize];
                if c.op.as_ref().is_some_and(|op| op.attempt == attempt) {
                    c.leader_guess = NO_NODE;
                    self.client_step(client)?;
                }
                Ok(())
            }
            Ev::Nemesis => {
                if self.phase == Phase::Chaos {
                    self.nemesis();
                    let every = self.knobs.nemesis_every_ticks;
                    let next = self.rng.range(every / 2 + 1, every * 2) * TICK;
                    self.schedule(next, Ev::Nemesis);
                }
                Ok(())
            }
            Ev::Restart { node } => {
                if self.phase == Phase::Chaos && !self.nodes[(node - 1) as usize].alive {
                    self.log(|| format!("restart node {node}"));
                    self.start_node(node, false);
                    self.drive(node)?;
                }
                Ok(())
            }
            Ev::Crash { node, inc } => {
                let n = &self.nodes[(node - 1) as usize];
                if self.phase == Phase::Chaos && n.alive && n.inc == inc {
                    self.crash(node);
                    let d = self.rng.range(2, 30) * TICK;
                    self.schedule(d, Ev::Restart { node });
                }
                Ok(())
            }
            Ev::HealPartition => {
                if !self.blocked.is_empty() {
                    self.log(|| "partition healed".into());
                }
                self.blocked.clear();
                Ok(())
            }
        }
    }

    // ----- Network ---------------------------------------------------------------

    fn send(&mut self, m: Message) {
        self.stats.messages_sent += 1;
        if self.blocked.contains(&(m.from, m.to))
            || self.rng.chance(self.knobs.drop_per_mille, 1000)
        {
            self.stats.messages_dropped += 1;
            return;
        }
        let copies = if self.rng.chance(self.knobs.dup_per_mille, 1000) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = self.rng.range(TICK / 10, TICK);
            if self.rng.chance(self.knobs.spike_per_mille, 1000) {
                delay += self.rng.range(TICK, 8 * TICK);
            }
            self.schedule(delay, Ev::Deliver(m.clone()));
        }
    }

    // ----- Driving a node through the Ready protocol ---------------------------------

    fn drive(&mut self, id: NodeId) -> Result<(), String> {
        let idx = (id - 1) as usize;
        for _ in 0..10_000 {
            let node = &mut self.nodes[idx];
            if !node.alive || node.pending.is_some() {
                return Ok(());
            }
            let Some(raft) = node.raft.as_mut() else {
                return Ok(());
            };
            let Some(mut rd) = raft.ready() else {
                return self.inv.after_event(id, self.nodes[idx].raft.as_ref());
            };
            self.inv
                .check_ready(id, self.nodes[idx].raft.as_ref(), &rd)?;
            if let Some(ss) = rd.soft_state
                && ss.role == Role::Leader
            {
                if self.last_leader != id {
                    self.stats.leader_changes += 1;
                    self.last_leader = id;
                }
                self.log(|| format!("node {id} is leader of term {}", ss.term));
                let down = self.nodes.iter().filter(|n| !n.alive).count();
                if self.phase == Phase::Chaos
                    && down < 2
                    && self.rng.chance(self.knobs.kill_new_leader_per_mille, 1000)
                {
                    let inc = self.nodes[idx].inc;
                    let after = self.rng.range(TICK / 10, 2 * TICK);
                    self.schedule(after, Ev::Crash { node: id, inc });
                }
            }
            // Stage A: write (unsynced) and send what may leave before the sync.
            let node = &mut self.nodes[idx];
            node.disk
                .write(rd.snapshot.as_ref(), &rd.entries, rd.hard_state)
                .map_err(|e| format!("node {id}: storage write failed: {e}"))?;
            rd.entries.clear();
            for m in std::mem::take(&mut rd.messages) {
                self.send(m);
            }
            if rd.must_sync {
                let inc = self.nodes[idx].inc;
                self.nodes[idx].pending = Some(rd);
                let latency = self.rng.range(TICK / 20, TICK / 2);
                self.schedule(latency, Ev::SyncDone { node: id, inc });
                return Ok(());
            }
            self.finish_ready(id, rd)?;
        }
        Err(format!(
            "node {id} produced 10000 readies in a row without quiescing"
        ))
    }

    /// Stage B: the writes are durable; send, apply, serve reads, advance.
    fn finish_ready(&mut self, id: NodeId, rd: Ready) -> Result<(), String> {
        let idx = (id - 1) as usize;
        self.nodes[idx]
            .disk
            .sync()
            .map_err(|e| format!("node {id}: storage sync failed: {e}"))?;
        if let Some(s) = &rd.snapshot {
            let Some(sm) = KvStateMachine::decode(&s.data) else {
                return Err(format!("node {id}: received snapshot does not decode"));
            };
            if sm.applied != s.meta.last_index {
                return Err(format!(
                    "node {id}: snapshot at {} holds state applied to {}",
                    s.meta.last_index, sm.applied
                ));
            }
            self.nodes[idx].sm = sm;
            self.nodes[idx].last_snapshot_index = s.meta.last_index;
            self.stats.snapshots_installed += 1;
        }
        for m in rd.persisted_messages {
            self.send(m);
        }
        for e in &rd.committed_entries {
            self.inv.applied(id, e)?;
            let node = &mut self.nodes[idx];
            if e.index != node.sm.applied + 1 {
                return Err(format!(
                    "node {id} applies entry {} after {}: gap in application",
                    e.index, node.sm.applied
                ));
            }
            node.sm.applied = e.index;
            if let EntryPayload::Normal(data) = &e.payload {
                let Some(req) = Request::decode(data) else {
                    return Err(format!("node {id}: entry {} does not decode", e.index));
                };
                let out = node.sm.apply(&req);
                let (index, term) = (e.index, e.term);
                if self.opts.verbose {
                    eprintln!(
                        "[t={:>8}] node {id} applies {req:?} at {index} (term {term}) -> {out:?}",
                        self.now
                    );
                }
                let node = &mut self.nodes[idx];
                if let Some(out) = out
                    && node.waiters.remove(&(req.client, req.seq))
                {
                    self.complete(req.client, req.seq, out);
                }
            }
        }
        for r in rd.reads {
            let Some((client, seq, key)) = self.nodes[idx].reads.remove(&r.request_id) else {
                continue;
            };
            match r.result {
                Ok(index) => {
                    let sm = &self.nodes[idx].sm;
                    if sm.applied < index {
                        return Err(format!(
                            "node {id} released a read at index {index} with applied index {}",
                            sm.applied
                        ));
                    }
                    let value = sm.get(key);
                    let applied = sm.applied;
                    self.log(|| {
                        format!(
                            "node {id} serves read of client {client} key {key} at read index {index} (applied {applied}): {value:?}"
                        )
                    });
                    self.complete(client, seq, Outcome::Get(value));
                }
                Err(e) => self.read_failed(client, seq, e),
            }
        }
        for ev in rd.events {
            if let Event::MembershipChangeDone { membership } = &ev {
                self.stats.membership_changes_done += 1;
                let m = membership.clone();
                self.log(|| format!("membership now {:?} learners {:?}", m.voters, m.learners));
            }
        }
        if let Some(to) = rd.compacted_to {
            self.nodes[idx]
                .disk
                .purge(to)
                .map_err(|e| format!("node {id}: storage purge failed: {e}"))?;
        }
        self.maybe_snapshot(id);
        if let Some(r) = self.nodes[idx].raft.as_mut() {
            r.advance();
        }
        Ok(())
    }

    fn maybe_snapshot(&mut self, id: NodeId) {
        let idx = (id - 1) as usize;
        let every = self.knobs.snapshot_every;
        let node = &mut self.nodes[idx];
        let applied = node.sm.applied;
        if applied < node.last_snapshot_index + every {
            return;
        }
        let Some(raft) = node.raft.as_mut() else {
            return;
        };
        let data = node.sm.encode();
        if raft.snapshot_done(applied, data.clone()).is_err() {
            return;
        }
        let Some(meta) = raft.snapshot_meta().cloned() else {
            return;
        };
        // The image is written and synced before the core is told (atomic here).
        if let Err(e) = node.disk.save_snapshot(Snapshot { meta, data }) {
            panic!("node {id}: snapshot could not be stored: {e}");
        }
        node.last_snapshot_index = applied;
        self.stats.snapshots_taken += 1;
    }

    // ----- Clients ---------------------------------------------------------------------

    fn client_step(&mut self, client: u64) -> Result<(), String> {
        let cidx = (client - 1) as usize;
        if self.clients[cidx].op.is_none() {
            if self.phase != Phase::Chaos {
                return Ok(());
            }
            self.new_op(client);
        }
        let Some(op) = self.clients[cidx].op.clone() else {
            return Ok(());
        };
        if self.now > op.deadline {
            self.give_up(client);
            return Ok(());
        }
        let attempt = op.attempt + 1;
        if let Some(o) = self.clients[cidx].op.as_mut() {
            o.attempt = attempt;
        }
        self.schedule(ATTEMPT_TIMEOUT, Ev::AttemptTimeout { client, attempt });
        let target = match op.path {
            ReadPath::FollowerRead => self.rng.range(1, NODES + 1),
            _ => {
                let g = self.clients[cidx].leader_guess;
                if g == NO_NODE {
                    self.rng.range(1, NODES + 1)
                } else {
                    g
                }
            }
        };
        let tidx = (target - 1) as usize;
        self.log(|| {
            format!(
                "client {client} attempt {attempt} {:?} via {:?} at node {target}",
                op.command, op.path
            )
        });
        let Some(raft) = self.nodes[tidx].raft.as_mut() else {
            // Connection refused: try another node soon.
            self.clients[cidx].leader_guess = NO_NODE;
            self.schedule(TICK, Ev::Client { client });
            return Ok(());
        };
        let is_read = matches!(op.command, Command::Get { .. }) && op.path != ReadPath::Log;
        if is_read {
            let Command::Get { key } = op.command else {
                return Ok(());
            };
            let node = &mut self.nodes[tidx];
            node.next_read_id += 1;
            let rid = node.next_read_id;
            let mode = if op.path == ReadPath::Lease {
                ReadMode::LeaseBased
            } else {
                ReadMode::Safe
            };
            let Some(raft) = node.raft.as_mut() else {
                return Ok(());
            };
            if mode == ReadMode::LeaseBased && raft.lease_valid() {
                self.stats.lease_fast_path += 1;
            }
            match raft.read_index_with(rid, mode) {
                Ok(()) => {
                    node.reads.insert(rid, (client, op.seq, key));
                }
                Err(e) => {
                    let hint = match e {
                        ReadError::NotLeader { leader_hint } => leader_hint,
                        _ => target,
                    };
                    self.clients[cidx].leader_guess = hint;
                    self.schedule(TICK / 2, Ev::Client { client });
                    return Ok(());
                }
            }
        } else {
            let req = Request {
                client,
                seq: op.seq,
                command: op.command,
            };
            match raft.propose(req.encode()) {
                Ok(_) => {
                    self.nodes[tidx].waiters.insert((client, op.seq));
                }
                Err(ProposeError::NotLeader { leader_hint }) => {
                    self.clients[cidx].leader_guess = leader_hint;
                    self.schedule(TICK / 2, Ev::Client { client });
                    return Ok(());
                }
                Err(_) => {
                    self.schedule(TICK, Ev::Client { client });
                    return Ok(());
                }
            }
        }
        self.drive(target)
    }

    fn new_op(&mut self, client: u64) {
        let cidx = (client - 1) as usize;
        let key = self.rng.range(0, KEYS);
        let roll = self.rng.range(0, 100);
        let c = &mut self.clients[cidx];
        c.seq += 1;
        c.next_value += 1;
        let value = client * 1_000_000 + c.next_value;
        let (command, path) = if roll < 35 {
            (Command::Put { key, value }, ReadPath::Log)
        } else if roll < 50 {
            let expected = c.seen.get(&key).copied().unwrap_or(0);
            (
                Command::Cas {
                    key,
                    expected,
                    new: value,
                },
                ReadPath::Log,
            )
        } else {
            let path = match roll {
                50..=69 => ReadPath::LeaderReadIndex,
                70..=84 => ReadPath::Lease,
                85..=94 => ReadPath::FollowerRead,
                _ => ReadPath::Log,
            };
            (Command::Get { key }, path)
        };
        match path {
            ReadPath::Lease => self.stats.lease_reads += 1,
            ReadPath::FollowerRead => self.stats.follower_reads += 1,
            ReadPath::Log if matches!(command, Command::Get { .. }) => self.stats.log_reads += 1,
            _ => {}
        }
        let seq = c.seq;
        c.op = Some(ActiveOp {
            seq,
            command,
            path,
            invoke: self.now,
            deadline: self.now + OP_DEADLINE,
            attempt: 0,
        });
    }

    fn complete(&mut self, client: u64, seq: u64, out: Outcome) {
        let cidx = (client - 1) as usize;
        let c = &mut self.clients[cidx];
        let Some(op) = c.op.as_ref() else { return };
        if op.seq != seq {
            return;
        }
        match (op.command, out) {
            (Command::Get { key }, Outcome::Get(Some(v))) => {
                c.seen.insert(key, v);
            }
            (Command::Put { key, value }, _) => {
                c.seen.insert(key, value);
            }
            (Command::Cas { key, new, .. }, Outcome::Cas(true)) => {
                c.seen.insert(key, new);
            }
            _ => {}
        }
        self.history.push(Operation {
            client_id: client,
            input: kv_input(op.command),
            call: op.invoke,
            output: Some(kv_output(out)),
            return_time: Some(self.now),
        });
        c.op = None;
        self.stats.ops_ok += 1;
        let think = self.rng.range(0, 2 * TICK);
        self.schedule(think, Ev::Client { client });
    }

    fn read_failed(&mut self, client: u64, seq: u64, err: ReadError) {
        let cidx = (client - 1) as usize;
        let c = &mut self.clients[cidx];
        if c.op.as_ref().is_none_or(|op| op.seq != seq) {
            return;
        }
        c.leader_guess = match err {
            ReadError::NotLeader { leader_hint } => leader_hint,
            // A node that cannot get its reads confirmed may be cut off from the
            // group: try elsewhere, as a real client rotates on timeouts.
            ReadError::Timeout => NO_NODE,
            _ => c.leader_guess,
        };
        self.schedule(TICK / 2, Ev::Client { client });
    }

    fn give_up(&mut self, client: u64) {
        let cidx = (client - 1) as usize;
        let c = &mut self.clients[cidx];
        let Some(op) = c.op.take() else { return };
        // A read that never returned says nothing; a write may or may not have happened.
        if !matches!(op.command, Command::Get { .. }) {
            self.history.push(Operation {
                client_id: client,
                input: kv_input(op.command),
                call: op.invoke,
                output: None,
                return_time: None,
            });
        }
        self.stats.ops_unknown += 1;
        self.schedule(TICK, Ev::Client { client });
    }

    // ----- Nemesis ---------------------------------------------------------------------

    fn nemesis(&mut self) {
        let roll = self.rng.range(0, 100);
        let leader = self.current_leader();
        match roll {
            0..=19 => {
                // Symmetric partition: a random non-empty proper subset vs the rest.
                let mask = self.rng.range(1, (1 << NODES) - 1);
                self.blocked.clear();
                for a in 1..=NODES {
                    for b in 1..=NODES {
                        let side = |n: u64| mask & (1 << (n - 1)) != 0;
                        if a != b && side(a) != side(b) {
                            self.blocked.insert((a, b));
                        }
                    }
                }
                self.log(|| format!("partition {mask:05b}"));
                let d = self.rng.range(5, 60) * TICK;
                self.schedule(d, Ev::HealPartition);
            }
            20..=29 => {
                // Asymmetric: some directed links fail (e.g. the leader can send
                // but not receive).
                self.blocked.clear();
                let victim = leader.unwrap_or_else(|| self.rng.range(1, NODES + 1));
                let inbound = self.rng.chance(1, 2);
                for other in 1..=NODES {
                    if other != victim && self.rng.chance(2, 3) {
                        if inbound {
                            self.blocked.insert((other, victim));
                        } else {
                            self.blocked.insert((victim, other));
                        }
                    }
                }
                self.log(|| format!("asymmetric partition around {victim} inbound={inbound}"));
                let d = self.rng.range(5, 60) * TICK;
                self.schedule(d, Ev::HealPartition);
            }
            30..=44 => {
                let down = self.nodes.iter().filter(|n| !n.alive).count();
                if down < 2 {
                    let victim = match leader {
                        Some(l) if self.rng.chance(1, 2) => l,
                        _ => self.rng.range(1, NODES + 1),
                    };
                    self.crash(victim);
                    let d = self.rng.range(2, 60) * TICK;
                    self.schedule(d, Ev::Restart { node: victim });
                }
            }
            45..=59 => self.change_membership(leader),
            60..=69 => {
                if let Some(l) = leader {
                    let target = self.rng.range(0, NODES + 1);
                    if let Some(r) = self.nodes[(l - 1) as usize].raft.as_mut()
                        && r.transfer_leader(target).is_ok()
                    {
                        self.stats.transfers_started += 1;
                        self.log(|| format!("transfer leadership {l} -> {target}"));
                    }
                    let _ = self.drive(l);
                }
            }
            70..=79 => {
                self.knobs.drop_per_mille = [0, 10, 50, 200][self.rng.range(0, 4) as usize];
                self.knobs.spike_per_mille = [0, 20, 100][self.rng.range(0, 3) as usize];
            }
            _ => {
                self.blocked.clear();
            }
        }
    }

    fn change_membership(&mut self, leader: Option<NodeId>) {
        let Some(l) = leader else { return };
        let Some(r) = self.nodes[(l - 1) as usize].raft.as_mut() else {
            return;
        };
        let m = r.membership().clone();
        let members = m.all_members();
        let outsiders: Vec<NodeId> = (1..=NODES).filter(|id| !members.contains(id)).collect();
        let learners: Vec<NodeId> = m.learners.iter().copied().collect();
        let voters: Vec<NodeId> = m.voters.iter().copied().collect();
        let choice = self.rng.range(0, 5);
        let pick = |rng: &mut SplitMix64, v: &[NodeId]| v[rng.range(0, v.len() as u64) as usize];
        let result = match choice {
            0 if !outsiders.is_empty() => {
                let id = pick(&mut self.rng, &outsiders);
                r.add_learner(id).map(|_| format!("add learner {id}"))
            }
            1 if !learners.is_empty() => {
                let id = pick(&mut self.rng, &learners);
                r.promote_learner(id)
                    .map(|_| format!("promote learner {id}"))
            }
            2 if !outsiders.is_empty() && voters.len() < 5 => {
                let id = pick(&mut self.rng, &outsiders);
                r.add_voter(id).map(|_| format!("add voter {id}"))
            }
            3 if voters.len() > 3 => {
                let id = pick(&mut self.rng, &voters);
                r.remove_voter(id).map(|_| format!("remove voter {id}"))
            }
            4 if !learners.is_empty() => {
                let id = pick(&mut self.rng, &learners);
                r.remove_learner(id).map(|_| format!("remove learner {id}"))
            }
            _ => return,
        };
        if let Ok(what) = result {
            self.log(|| format!("leader {l}: {what}"));
        }
        let _ = self.drive(l);
    }
}

/// Run one seed, turning a panic inside the core into a failure.
pub fn run_seed(opts: SimOptions) -> SimReport {
    let seed = opts.seed;
    // The storage factory is only called inside the run; a panic abandons it.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || Sim::new(opts).run())) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into());
            SimReport {
                seed,
                result: Err(format!("panic: {msg}")),
                stats: SimStats::default(),
            }
        }
    }
}

/// Entry payload digest for the invariant checker.
pub fn digest(e: &Entry) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |b: &[u8]| {
        for x in b {
            h ^= u64::from(*x);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    match &e.payload {
        EntryPayload::Blank => feed(b"blank"),
        EntryPayload::Normal(d) => {
            feed(b"normal");
            feed(d);
        }
        EntryPayload::Membership(m) => {
            feed(b"membership");
            feed(format!("{m:?}").as_bytes());
        }
    }
    h
}
