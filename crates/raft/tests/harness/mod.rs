//! A small in-memory cluster for the paper tests.
//!
//! Every node is a [`RaftNode`] with an in-memory "disk" (hard state, entries,
//! snapshot). The network executes each node's [`Ready`] exactly in the order
//! its documentation gives: install the snapshot, append entries and persist
//! the hard state, send `messages`, then (the write being durable) send
//! `persisted_messages`, apply `committed_entries`, collect `reads`, purge
//! `compacted_to`, collect events, and finally `advance()`.
//!
//! The harness checks two global invariants on every batch and panics when one
//! breaks: **election safety** (at most one leader per term, Figure 3) and
//! **state machine safety** (no two nodes ever apply different entries at the
//! same index). It also checks that only entries present on the node's own disk
//! are applied and that every read is served at or below the applied index.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use rhea_raft::{
    Bootstrap, Config, Entry, EntryPayload, Event, GroupId, HardState, Index, Membership, Message,
    MessageBody, NodeId, RaftNode, ReadState, Ready, RestoreState, Role, Snapshot, SoftState,
    SplitMix64, Term,
};

pub const GROUP: GroupId = 7;
/// The default election timeout of `Config::new`, in ticks.
pub const ET: u64 = 10;

/// A default config for `id` with a seed distinct per node (and per `salt`).
pub fn config(id: NodeId) -> Config {
    config_salted(id, 0)
}

pub fn config_salted(id: NodeId, salt: u64) -> Config {
    let mut cfg = Config::new(id, GROUP);
    cfg.seed = 0x5EED_0000_0000_0000 ^ id.wrapping_mul(7919) ^ salt.wrapping_mul(0x9E37_79B9);
    cfg
}

/// A normal entry whose payload names its index and term (`"i@t"`).
pub fn ent(index: Index, term: Term) -> Entry {
    Entry {
        term,
        index,
        payload: EntryPayload::Normal(Bytes::from(format!("{index}@{term}"))),
    }
}

/// The bootstrap entry of a new group: index 1, term 1, the initial membership.
pub fn bootstrap_entry(m: &Membership) -> Entry {
    Entry {
        term: 1,
        index: 1,
        payload: EntryPayload::Membership(m.clone()),
    }
}

/// A log whose entry 1 is the bootstrap membership and whose entries `2..` have
/// the given terms (`terms[0]` is the term of entry 2).
pub fn log_with_terms(m: &Membership, terms: &[Term]) -> Vec<Entry> {
    let mut log = vec![bootstrap_entry(m)];
    for (i, t) in terms.iter().enumerate() {
        log.push(ent(i as Index + 2, *t));
    }
    log
}

/// A restore state with `entries`, hard state `term` (no vote) and `commit`.
pub fn restore_state(entries: Vec<Entry>, term: Term, commit: Index) -> RestoreState {
    RestoreState {
        hard_state: HardState {
            term,
            voted_for: 0,
            commit,
        },
        snapshot: None,
        entries,
        applied: 0,
    }
}

pub fn is_append(m: &Message) -> bool {
    matches!(m.body, MessageBody::AppendEntries { .. })
}
pub fn is_heartbeat(m: &Message) -> bool {
    matches!(m.body, MessageBody::Heartbeat { .. })
}
pub fn is_snapshot_chunk(m: &Message) -> bool {
    matches!(m.body, MessageBody::InstallSnapshot { .. })
}
pub fn is_append_reject(m: &Message) -> bool {
    matches!(
        m.body,
        MessageBody::AppendEntriesResponse { success: false, .. }
    )
}
pub fn is_append_response(m: &Message) -> bool {
    matches!(m.body, MessageBody::AppendEntriesResponse { .. })
}
pub fn is_vote(m: &Message) -> bool {
    matches!(m.body, MessageBody::RequestVote { .. })
}
pub fn is_pre_vote(m: &Message) -> bool {
    matches!(m.body, MessageBody::PreVote { .. })
}
/// The indexes carried by an AppendEntries (empty for anything else).
pub fn append_indexes(m: &Message) -> Vec<Index> {
    match &m.body {
        MessageBody::AppendEntries { entries, .. } => entries.iter().map(|e| e.index).collect(),
        _ => Vec::new(),
    }
}

/// What a node has made durable.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    /// Entries after the snapshot (or from index 1), contiguous.
    pub entries: Vec<Entry>,
}

impl Disk {
    pub fn base_index(&self) -> Index {
        self.snapshot.as_ref().map_or(0, |s| s.meta.last_index)
    }
    pub fn last_index(&self) -> Index {
        self.entries.last().map_or(self.base_index(), |e| e.index)
    }
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        let base = self.base_index();
        if index <= base {
            return None;
        }
        self.entries.get((index - base - 1) as usize)
    }
    pub fn term(&self, index: Index) -> Option<Term> {
        if index == 0 {
            return Some(0);
        }
        if let Some(s) = &self.snapshot
            && s.meta.last_index == index
        {
            return Some(s.meta.last_term);
        }
        self.entry(index).map(|e| e.term)
    }
    /// `(index, term)` of every stored entry.
    pub fn index_terms(&self) -> Vec<(Index, Term)> {
        self.entries.iter().map(|e| (e.index, e.term)).collect()
    }
}

/// One node: the core, its config, its disk and what the driver observed.
pub struct Peer {
    pub node: RaftNode,
    pub cfg: Config,
    pub disk: Disk,
    /// Every application, in order (re-applications after a restart included).
    pub applied: Vec<Entry>,
    /// The state machine's applied index.
    pub applied_index: Index,
    /// Snapshots handed to the driver in `Ready::snapshot` (installed).
    pub installed_snapshots: Vec<Snapshot>,
    pub reads: Vec<ReadState>,
    pub events: Vec<Event>,
    pub soft_states: Vec<SoftState>,
    /// Number of readies executed.
    pub readies: usize,
    pub up: bool,
}

impl Peer {
    fn new(cfg: Config, bootstrap: Bootstrap) -> Peer {
        let (disk, applied_index) = match &bootstrap {
            Bootstrap::Restore(rs) => {
                let disk = Disk {
                    hard_state: rs.hard_state,
                    snapshot: rs.snapshot.clone(),
                    entries: rs.entries.clone(),
                };
                let base = disk.base_index();
                (disk, rs.applied.max(base))
            }
            _ => (Disk::default(), 0),
        };
        let node = RaftNode::new(cfg.clone(), bootstrap).expect("valid config and bootstrap");
        Peer {
            node,
            cfg,
            disk,
            applied: Vec::new(),
            applied_index,
            installed_snapshots: Vec::new(),
            reads: Vec::new(),
            events: Vec::new(),
            soft_states: Vec::new(),
            readies: 0,
            up: true,
        }
    }

    /// Normal payloads applied so far, in order.
    pub fn applied_data(&self) -> Vec<Bytes> {
        self.applied
            .iter()
            .filter_map(|e| match &e.payload {
                EntryPayload::Normal(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }

    /// The state the driver would reload after a crash: the disk, with the
    /// state machine rebuilt from the snapshot.
    pub fn restore_state(&self) -> RestoreState {
        RestoreState {
            hard_state: self.disk.hard_state,
            snapshot: self.disk.snapshot.clone(),
            entries: self.disk.entries.clone(),
            applied: self.disk.base_index(),
        }
    }
}

type Filter = Box<dyn FnMut(&Message) -> bool>;

/// An in-memory network of nodes keyed by id.
pub struct Network {
    pub peers: BTreeMap<NodeId, Peer>,
    /// Messages in flight, oldest first.
    pub queue: VecDeque<Message>,
    /// Nodes cut off from everyone (both directions).
    pub isolated: BTreeSet<NodeId>,
    /// Directed links that drop everything: (from, to).
    pub cut: BTreeSet<(NodeId, NodeId)>,
    /// Extra filter: a message is delivered only when it returns true.
    pub filter: Option<Filter>,
    /// Random loss: (rng, percent).
    pub loss: Option<(SplitMix64, u64)>,
    /// Nodes whose readies are not executed automatically (see `take_ready`).
    pub held: BTreeSet<NodeId>,
    /// Every message any node emitted, in order.
    pub sent: Vec<Message>,
    /// Every message delivered to a node, in order.
    pub delivered: Vec<Message>,
    /// Bound on delivery rounds in `deliver_all`, so that no test can hang.
    pub max_rounds: usize,
    /// Election safety: the leader seen in each term.
    pub leaders: BTreeMap<Term, NodeId>,
    /// State machine safety: the entry applied at each index, by anyone.
    pub applied_at: BTreeMap<Index, Entry>,
}

impl Network {
    fn empty() -> Network {
        Network {
            peers: BTreeMap::new(),
            queue: VecDeque::new(),
            isolated: BTreeSet::new(),
            cut: BTreeSet::new(),
            filter: None,
            loss: None,
            held: BTreeSet::new(),
            sent: Vec::new(),
            delivered: Vec::new(),
            max_rounds: 10_000,
            leaders: BTreeMap::new(),
            applied_at: BTreeMap::new(),
        }
    }

    /// A new group of `ids` with default configs.
    pub fn new(ids: &[NodeId]) -> Network {
        Network::with_config(ids, |_| {})
    }

    /// A new group of `ids`; `tweak` adjusts each node's config.
    pub fn with_config(ids: &[NodeId], tweak: impl FnMut(&mut Config)) -> Network {
        Network::with_membership(Membership::new(ids.iter().copied()), tweak)
    }

    /// A new group whose initial membership is `m`; every member (voter or
    /// learner) is started with `Bootstrap::NewGroup`.
    pub fn with_membership(m: Membership, mut tweak: impl FnMut(&mut Config)) -> Network {
        let mut net = Network::empty();
        for id in m.all_members() {
            let mut cfg = config(id);
            tweak(&mut cfg);
            net.add(
                cfg,
                Bootstrap::NewGroup {
                    membership: m.clone(),
                },
            );
        }
        net.process_all();
        net
    }

    /// Nodes restored from crafted durable state.
    pub fn restored(
        states: Vec<(NodeId, RestoreState)>,
        mut tweak: impl FnMut(&mut Config),
    ) -> Network {
        let mut net = Network::empty();
        for (id, rs) in states {
            let mut cfg = config(id);
            tweak(&mut cfg);
            net.add(cfg, Bootstrap::Restore(rs));
        }
        net.process_all();
        net
    }

    /// Add a node (e.g. `Bootstrap::Join`) to the network.
    pub fn add(&mut self, cfg: Config, bootstrap: Bootstrap) {
        let id = cfg.id;
        self.peers.insert(id, Peer::new(cfg, bootstrap));
        self.process(id);
    }

    pub fn peer(&self, id: NodeId) -> &Peer {
        self.peers.get(&id).expect("no such peer")
    }
    pub fn peer_mut(&mut self, id: NodeId) -> &mut Peer {
        self.peers.get_mut(&id).expect("no such peer")
    }
    pub fn node(&self, id: NodeId) -> &RaftNode {
        &self.peer(id).node
    }
    pub fn node_mut(&mut self, id: NodeId) -> &mut RaftNode {
        &mut self.peer_mut(id).node
    }
    pub fn ids(&self) -> Vec<NodeId> {
        self.peers.keys().copied().collect()
    }
    pub fn up_ids(&self) -> Vec<NodeId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.up)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The up node that is leader in the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.up && p.node.is_leader())
            .max_by_key(|(_, p)| p.node.term())
            .map(|(id, _)| *id)
    }

    /// Every up node that currently believes it is leader.
    pub fn leaders_now(&self) -> Vec<NodeId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.up && p.node.is_leader())
            .map(|(id, _)| *id)
            .collect()
    }

    // ----- Driving readies ---------------------------------------------------

    fn record_leadership(&mut self, id: NodeId) {
        let Some(p) = self.peers.get(&id) else { return };
        if p.up && p.node.is_leader() {
            let term = p.node.term();
            match self.leaders.get(&term) {
                Some(other) if *other != id => {
                    panic!("election safety violated: {other} and {id} both lead term {term}")
                }
                _ => {
                    self.leaders.insert(term, id);
                }
            }
        }
    }

    /// Execute every ready of `id` until it has nothing more (unless held).
    pub fn process(&mut self, id: NodeId) {
        self.record_leadership(id);
        if self.held.contains(&id) || !self.peers.get(&id).is_some_and(|p| p.up) {
            return;
        }
        for _ in 0..1000 {
            let Some(rd) = self.node_mut(id).ready() else {
                return;
            };
            self.execute_ready(id, rd);
            self.node_mut(id).advance();
            self.record_leadership(id);
        }
        panic!("node {id} produced 1000 readies in a row");
    }

    pub fn process_all(&mut self) {
        for id in self.ids() {
            self.process(id);
        }
    }

    /// For held nodes: take the next ready without executing it.
    pub fn take_ready(&mut self, id: NodeId) -> Option<Ready> {
        self.node_mut(id).ready()
    }

    /// Execute a ready in the documented order (without calling `advance`).
    pub fn execute_ready(&mut self, id: NodeId, rd: Ready) {
        let mut out = Vec::new();
        let peer = self.peers.get_mut(&id).expect("no such peer");
        peer.readies += 1;
        if let Some(ss) = rd.soft_state {
            peer.soft_states.push(ss);
        }
        // 1. Snapshot: replaces the state machine and the whole log.
        if let Some(s) = rd.snapshot {
            peer.disk.entries.clear();
            peer.disk.snapshot = Some(s.clone());
            peer.applied_index = s.meta.last_index;
            peer.installed_snapshots.push(s);
        }
        // Committed entries must have been persisted by earlier batches (Ready
        // docs, step 5): check them against the disk before this batch's write.
        for e in &rd.committed_entries {
            assert_eq!(
                peer.disk.entry(e.index),
                Some(e),
                "node {id}: committed entry {} was not persisted by an earlier ready",
                e.index
            );
        }
        // 2. Entries (truncating any stored suffix they replace) and hard state.
        if let Some(first) = rd.entries.first() {
            let first = first.index;
            let base = peer.disk.base_index();
            assert!(
                first > base && first <= peer.disk.last_index() + 1,
                "node {id}: ready entries start at {first}, disk holds ({base}, {}]",
                peer.disk.last_index()
            );
            peer.disk.entries.truncate((first - base - 1) as usize);
            for (i, e) in rd.entries.iter().enumerate() {
                assert_eq!(
                    e.index,
                    first + i as Index,
                    "node {id}: ready entries not contiguous"
                );
            }
            peer.disk.entries.extend(rd.entries);
        }
        if let Some(hs) = rd.hard_state {
            assert!(
                hs.term >= peer.disk.hard_state.term,
                "node {id}: persisted term went backwards"
            );
            peer.disk.hard_state = hs;
        }
        // Architecture invariant: what reflects durable state leaves only after
        // the write (persisted_messages): vote grants, a candidate's own vote
        // requests (its term and self-vote), successful append acknowledgements.
        for m in &rd.messages {
            let reflects_state = matches!(
                m.body,
                MessageBody::RequestVoteResponse { granted: true }
                    | MessageBody::RequestVote { .. }
                    | MessageBody::AppendEntriesResponse { success: true, .. }
            );
            assert!(
                !reflects_state,
                "node {id}: {} sent before persisting the state it reflects",
                m.body.kind()
            );
        }
        // 3-4. Messages, then (the write being durable) persisted messages.
        out.extend(rd.messages);
        out.extend(rd.persisted_messages);
        // 5. Apply committed entries: in order, and only what our disk holds.
        for e in rd.committed_entries {
            assert_eq!(
                e.index,
                peer.applied_index + 1,
                "node {id}: entries applied out of order"
            );
            assert_eq!(
                peer.disk.entry(e.index),
                Some(&e),
                "node {id}: applied entry {} is not the one on its disk",
                e.index
            );
            peer.applied_index = e.index;
            match self.applied_at.get(&e.index) {
                Some(prev) => assert_eq!(
                    prev, &e,
                    "state machine safety violated at index {}: node {id} applies {:?}, earlier {:?}",
                    e.index, e, prev
                ),
                None => {
                    self.applied_at.insert(e.index, e.clone());
                }
            }
            peer.applied.push(e);
        }
        // 6. Reads, served at or below the applied index.
        for r in rd.reads {
            if let Ok(index) = r.result {
                assert!(
                    index <= peer.applied_index,
                    "node {id}: read {} released at {index} above applied {}",
                    r.request_id,
                    peer.applied_index
                );
            }
            peer.reads.push(r);
        }
        // 7. Compaction: only what a durable snapshot covers.
        if let Some(to) = rd.compacted_to {
            let base = peer.disk.base_index();
            assert!(
                to <= base,
                "node {id}: compacted_to {to} beyond the durable snapshot at {base}"
            );
        }
        peer.events.extend(rd.events);
        for m in out {
            self.sent.push(m.clone());
            self.queue.push_back(m);
        }
    }

    pub fn advance(&mut self, id: NodeId) {
        self.node_mut(id).advance();
        self.record_leadership(id);
    }

    // ----- Network -------------------------------------------------------------

    fn passes(&mut self, m: &Message) -> bool {
        if !self.peers.get(&m.to).is_some_and(|p| p.up) {
            return false;
        }
        if self.isolated.contains(&m.from) || self.isolated.contains(&m.to) {
            return false;
        }
        if self.cut.contains(&(m.from, m.to)) {
            return false;
        }
        if let Some(f) = &mut self.filter
            && !f(m)
        {
            return false;
        }
        if let Some((rng, pct)) = &mut self.loss
            && rng.chance(*pct, 100)
        {
            return false;
        }
        true
    }

    /// Deliver one message (if the network lets it through) and run the
    /// receiver's readies. Returns true when it was delivered.
    pub fn deliver(&mut self, m: Message) -> bool {
        if !self.passes(&m) {
            return false;
        }
        let to = m.to;
        self.delivered.push(m.clone());
        self.node_mut(to).step(m);
        self.process(to);
        true
    }

    /// Deliver queued messages (and those they cause) until none is left.
    /// Returns the number delivered. Panics after `max_rounds` rounds.
    pub fn deliver_all(&mut self) -> usize {
        self.process_all();
        let mut n = 0;
        let mut rounds = 0;
        while !self.queue.is_empty() {
            rounds += 1;
            assert!(
                rounds <= self.max_rounds,
                "network did not quiesce within {} rounds",
                self.max_rounds
            );
            let batch: Vec<Message> = self.queue.drain(..).collect();
            for m in batch {
                if self.deliver(m) {
                    n += 1;
                }
            }
            self.process_all();
        }
        n
    }

    /// Drop every queued message.
    pub fn drop_queue(&mut self) {
        self.queue.clear();
    }

    pub fn isolate(&mut self, id: NodeId) {
        self.isolated.insert(id);
    }
    pub fn heal(&mut self) {
        self.isolated.clear();
        self.cut.clear();
        self.filter = None;
        self.loss = None;
    }
    pub fn set_filter(&mut self, f: impl FnMut(&Message) -> bool + 'static) {
        self.filter = Some(Box::new(f));
    }
    /// Cut both directions between the two sets.
    pub fn partition(&mut self, a: &[NodeId], b: &[NodeId]) {
        for x in a {
            for y in b {
                self.cut.insert((*x, *y));
                self.cut.insert((*y, *x));
            }
        }
    }

    // ----- Time ----------------------------------------------------------------

    /// Tick one node once and run its readies (messages stay queued).
    pub fn tick_one(&mut self, id: NodeId) {
        if !self.peer(id).up {
            return;
        }
        self.node_mut(id).tick();
        self.process(id);
    }

    /// `n` times: tick every up node, then deliver until quiescent.
    pub fn tick_all(&mut self, n: u64) {
        for _ in 0..n {
            for id in self.up_ids() {
                self.tick_one(id);
            }
            self.deliver_all();
        }
    }

    /// `n` times: tick node `id` only, then deliver until quiescent.
    pub fn tick_node(&mut self, id: NodeId, n: u64) {
        for _ in 0..n {
            self.tick_one(id);
            self.deliver_all();
        }
    }

    /// Tick everyone until `cond` holds; returns the ticks taken, or None after `max`.
    pub fn tick_until(&mut self, max: u64, mut cond: impl FnMut(&Network) -> bool) -> Option<u64> {
        for t in 0..=max {
            if cond(self) {
                return Some(t);
            }
            if t < max {
                self.tick_all(1);
            }
        }
        None
    }

    /// Tick everyone until some node leads and every other connected up voter
    /// follows it; returns the leader.
    pub fn elect_any(&mut self) -> NodeId {
        let found = self.tick_until(1000, |net| {
            let Some(l) = net.leader() else { return false };
            let term = net.node(l).term();
            net.peers.iter().all(|(id, p)| {
                *id == l
                    || !p.up
                    || net.isolated.contains(id)
                    || !p.node.membership().is_voter(*id)
                    || (p.node.leader() == l && p.node.term() == term)
            })
        });
        assert!(found.is_some(), "no stable leader within 1000 ticks");
        let l = self.leader().expect("leader");
        // Let the blank entry of the new term commit everywhere.
        self.deliver_all();
        l
    }

    /// Make `id` the leader: elect anyone, then transfer leadership if needed.
    pub fn campaign(&mut self, id: NodeId) -> NodeId {
        let l = self.elect_any();
        if l == id {
            self.tick_all(1);
            return id;
        }
        self.tick_all(1);
        self.node_mut(l)
            .transfer_leader(id)
            .expect("transfer to the campaign target");
        self.process(l);
        let ok = self.tick_until(100, |net| net.leader() == Some(id));
        assert!(ok.is_some(), "node {id} did not become leader");
        self.tick_all(1);
        id
    }

    /// Propose on `id` (must be leader) and run its readies. Returns the index.
    pub fn propose(&mut self, id: NodeId, data: impl Into<Bytes>) -> Index {
        let idx = self.node_mut(id).propose(data.into()).expect("propose");
        self.process(id);
        idx
    }

    /// Take a snapshot on `id` at its applied index with `data`, store it on the
    /// node's disk, and let the core compact.
    pub fn snapshot(&mut self, id: NodeId, data: impl Into<Bytes>) -> Index {
        let data = data.into();
        let index = self.peer(id).applied_index;
        self.node_mut(id)
            .snapshot_done(index, data.clone())
            .expect("snapshot_done");
        let meta = self
            .node(id)
            .snapshot_meta()
            .expect("snapshot meta")
            .clone();
        let peer = self.peer_mut(id);
        let base = peer.disk.base_index();
        // Durable snapshot first, then the log prefix it covers may go.
        peer.disk.entries.retain(|e| e.index > meta.last_index);
        assert!(meta.last_index >= base);
        peer.disk.snapshot = Some(Snapshot { meta, data });
        self.process(id);
        index
    }

    // ----- Crashes ----------------------------------------------------------------

    /// Stop a node: it receives nothing and its unexecuted state is lost.
    pub fn crash(&mut self, id: NodeId) {
        self.peer_mut(id).up = false;
    }

    /// Restart a crashed (or running) node from its disk.
    pub fn restart(&mut self, id: NodeId) {
        let cfg = self.peer(id).cfg.clone();
        self.restart_with(id, cfg);
    }

    pub fn restart_with(&mut self, id: NodeId, cfg: Config) {
        let old = self.peers.remove(&id).expect("no such peer");
        let rs = old.restore_state();
        let mut peer = Peer::new(cfg, Bootstrap::Restore(rs));
        peer.applied = old.applied;
        peer.installed_snapshots = old.installed_snapshots;
        peer.reads = old.reads;
        peer.events = old.events;
        self.peers.insert(id, peer);
        self.process(id);
    }

    // ----- Inspection -------------------------------------------------------------

    /// Messages emitted since `mark` (an earlier `sent.len()`).
    pub fn sent_since(&self, mark: usize) -> &[Message] {
        &self.sent[mark..]
    }

    pub fn count_sent(&self, mark: usize, pred: impl Fn(&Message) -> bool) -> usize {
        self.sent[mark..].iter().filter(|m| pred(m)).count()
    }

    /// `(index, term)` of the node's in-memory log from its first index.
    pub fn log_terms(&self, id: NodeId) -> Vec<(Index, Term)> {
        let n = self.node(id);
        (n.first_index()..=n.last_index())
            .map(|i| (i, n.term_at(i).expect("term in range")))
            .collect()
    }

    /// Log Matching: if two up nodes hold an entry with the same index and term,
    /// their logs are identical up to it.
    pub fn check_log_matching(&self) {
        let ids = self.up_ids();
        for a in &ids {
            for b in &ids {
                if a >= b {
                    continue;
                }
                let (na, nb) = (self.node(*a), self.node(*b));
                let lo = na.first_index().max(nb.first_index());
                let hi = na.last_index().min(nb.last_index());
                let mut matched_from = None;
                for i in (lo..=hi).rev() {
                    if na.term_at(i) == nb.term_at(i) {
                        matched_from = Some(i);
                        break;
                    }
                }
                if let Some(top) = matched_from {
                    for i in lo..=top {
                        assert_eq!(
                            na.entry_at(i),
                            nb.entry_at(i),
                            "log matching violated between {a} and {b} at {i} (match at {top})"
                        );
                    }
                }
            }
        }
    }

    /// One line per node: role, term, leader, log and configuration (for failure messages).
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for (id, p) in &self.peers {
            let n = &p.node;
            out.push_str(&format!(
                "node {id} (up {}): {:?} term {} leader {} commit {} log [{}, {}] membership {:?} pending {}\n",
                p.up,
                n.role(),
                n.term(),
                n.leader(),
                n.commit_index(),
                n.first_index(),
                n.last_index(),
                n.membership(),
                n.membership_change_pending()
            ));
        }
        out
    }

    pub fn role(&self, id: NodeId) -> Role {
        self.node(id).role()
    }
}
