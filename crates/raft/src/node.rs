//! [`RaftNode`]: the consensus state machine of one node in one group.
//!
//! Every input (`step`, `tick`, `propose`, `read_index`, admin calls) only
//! changes memory and queues output; `ready()` hands the output to the driver.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};

use crate::config::{Config, ReadMode};
use crate::error::{AdminError, ConfigError, ProposeError, ReadError};
use crate::membership::{Membership, MembershipAt, PRIORITY_DISABLED, PRIORITY_NOT_ELECTED};
use crate::message::{Message, MessageBody, ReadIndexFailure};
use crate::progress::{Progress, ProgressState};
use crate::raft_log::RaftLog;
use crate::read_only::{LeaderBatch, ReadOnly, ReadOrigin, ReadRequestId};
use crate::ready::{Event, Ready};
use crate::rng::SplitMix64;
use crate::types::{
    Entry, EntryPayload, HardState, Index, NO_NODE, NodeId, Role, Snapshot, SnapshotMeta,
    SoftState, Term, Tick,
};

/// How a node starts.
#[derive(Clone, Debug)]
pub enum Bootstrap {
    /// A member of a brand-new group. Every initial member must be given the same
    /// membership: it becomes log entry 1 (term 1) on each of them.
    NewGroup { membership: Membership },
    /// A node that will be added to an existing group: empty log, no membership,
    /// never campaigns until the leader replicates a configuration naming it.
    Join,
    /// Restart from durable state.
    Restore(RestoreState),
}

/// The durable state a driver reloads after a restart.
#[derive(Clone, Debug, Default)]
pub struct RestoreState {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    /// Entries after the snapshot (or from index 1), contiguous.
    pub entries: Vec<Entry>,
    /// The state machine's applied index as persisted with its data
    /// (the snapshot's last index when the state machine is rebuilt from it).
    pub applied: Index,
}

/// Counters of inputs the core refused or ignored. Never a panic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub dropped_wrong_group: u64,
    pub dropped_misaddressed: u64,
    pub dropped_stale_term: u64,
    pub dropped_unexpected: u64,
    pub votes_refused_in_lease: u64,
    pub lease_reads: u64,
    pub read_index_rounds: u64,
    pub snapshots_sent: u64,
    pub snapshots_installed: u64,
    pub elections_skipped_for_priority: u64,
}

#[derive(Clone, Debug)]
struct Transfer {
    target: NodeId,
    started: Tick,
    timeout_now_sent: bool,
}

#[derive(Clone, Debug)]
struct CatchUp {
    target: Membership,
    started: Tick,
}

#[derive(Debug)]
struct IncomingSnapshot {
    meta: SnapshotMeta,
    total_bytes: u64,
    buf: BytesMut,
}

/// One node of one raft group. See the crate docs for the driving protocol.
pub struct RaftNode {
    cfg: Config,
    term: Term,
    voted_for: NodeId,
    leader: NodeId,
    role: Role,
    log: RaftLog,
    /// Configurations in log order; the last is in force. The first is the one
    /// at or below the log base (snapshot or bootstrap) and is never truncated.
    memberships: Vec<MembershipAt>,
    /// Set by `force_reset_membership`: the membership in force is not in the
    /// log; the next leader writes it there.
    membership_forced: bool,
    rng: SplitMix64,
    now: Tick,
    election_elapsed: Tick,
    randomized_election_timeout: Tick,
    heartbeat_elapsed: Tick,
    /// Tick at which this node last heard from a leader of its term (or started).
    last_leader_contact: Tick,
    votes: BTreeMap<NodeId, bool>,
    target_priority: i32,
    priority_timeouts: u32,
    // Leader state.
    progress: BTreeMap<NodeId, Progress>,
    leader_since: Tick,
    /// Lease reads need acknowledgements of messages sent after this tick.
    lease_floor: Tick,
    transfer: Option<Transfer>,
    catch_up: Option<CatchUp>,
    /// Index of the stable configuration entry whose commit ends a change.
    change_final_index: Option<Index>,
    commit_broadcast_pending: bool,
    snapshot_budget_bytes: u64,
    // Reads.
    reads: ReadOnly,
    // Snapshots.
    snapshot: Option<Snapshot>,
    incoming_snapshot: Option<IncomingSnapshot>,
    snapshot_to_install: Option<Snapshot>,
    compacted_to: Option<Index>,
    // Output.
    msgs: Vec<Message>,
    persisted_msgs: Vec<Message>,
    events: Vec<Event>,
    prev_soft: Option<SoftState>,
    prev_hard: HardState,
    /// (index, term) of every entry handed out by the outstanding ready.
    outstanding: Option<Vec<(Index, Term)>>,
    outstanding_snapshot: Option<Index>,
    counters: Counters,
}

impl RaftNode {
    pub fn new(cfg: Config, bootstrap: Bootstrap) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let mut memberships = vec![MembershipAt {
            index: 0,
            membership: Membership::default(),
        }];
        let mut term = 0;
        let mut voted_for = NO_NODE;
        let mut snapshot = None;
        let fresh = matches!(bootstrap, Bootstrap::NewGroup { .. });
        let log = match bootstrap {
            Bootstrap::NewGroup { membership } => {
                if !membership.is_voter(cfg.id) && !membership.learners.contains(&cfg.id) {
                    return Err(ConfigError(format!(
                        "node {} is not in the initial membership",
                        cfg.id
                    )));
                }
                let mut log = RaftLog::new(0, 0);
                log.append(Entry {
                    term: 1,
                    index: 1,
                    payload: EntryPayload::Membership(membership.clone()),
                });
                memberships.push(MembershipAt {
                    index: 1,
                    membership,
                });
                term = 1;
                log
            }
            Bootstrap::Join => RaftLog::new(0, 0),
            Bootstrap::Restore(state) => {
                let (base_index, base_term) = match &state.snapshot {
                    Some(s) => {
                        memberships[0] = MembershipAt {
                            index: s.meta.last_index,
                            membership: s.meta.membership.clone(),
                        };
                        (s.meta.last_index, s.meta.last_term)
                    }
                    None => (0, 0),
                };
                for e in &state.entries {
                    if let EntryPayload::Membership(m) = &e.payload {
                        memberships.push(MembershipAt {
                            index: e.index,
                            membership: m.clone(),
                        });
                    }
                }
                term = state.hard_state.term;
                voted_for = state.hard_state.voted_for;
                snapshot = state.snapshot;
                let applied = state.applied.max(base_index);
                RaftLog::restore(
                    base_index,
                    base_term,
                    state.entries,
                    state.hard_state.commit.max(applied),
                    applied,
                )
                .map_err(ConfigError)?
            }
        };
        let mut node = RaftNode {
            rng: SplitMix64::new(cfg.seed),
            term,
            voted_for,
            leader: NO_NODE,
            role: Role::Follower,
            log,
            memberships,
            membership_forced: false,
            now: 1,
            election_elapsed: 0,
            randomized_election_timeout: cfg.election_timeout_ticks,
            heartbeat_elapsed: 0,
            last_leader_contact: 1,
            votes: BTreeMap::new(),
            target_priority: PRIORITY_DISABLED,
            priority_timeouts: 0,
            progress: BTreeMap::new(),
            leader_since: 0,
            lease_floor: 0,
            transfer: None,
            catch_up: None,
            change_final_index: None,
            commit_broadcast_pending: false,
            snapshot_budget_bytes: 0,
            reads: ReadOnly::default(),
            snapshot,
            incoming_snapshot: None,
            snapshot_to_install: None,
            compacted_to: None,
            msgs: Vec::new(),
            persisted_msgs: Vec::new(),
            events: Vec::new(),
            prev_soft: None,
            prev_hard: HardState {
                term,
                voted_for,
                commit: 0,
            },
            outstanding: None,
            outstanding_snapshot: None,
            counters: Counters::default(),
            cfg,
        };
        node.prev_hard.commit = node.log.commit;
        if fresh {
            // The bootstrap entry and term go out in the first ready.
            node.prev_hard = HardState::default();
        }
        node.reads.next_batch_id = node.rng.next_u64();
        node.role = node.follower_role();
        node.target_priority = node.membership().max_priority();
        node.reset_election_timeout();
        Ok(node)
    }

    // ----- Introspection -------------------------------------------------------

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }
    pub fn group(&self) -> u64 {
        self.cfg.group
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn voted_for(&self) -> NodeId {
        self.voted_for
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn leader(&self) -> NodeId {
        self.leader
    }
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }
    pub fn commit_index(&self) -> Index {
        self.log.commit
    }
    pub fn applied_index(&self) -> Index {
        self.log.applied
    }
    pub fn persisted_index(&self) -> Index {
        self.log.persisted
    }
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }
    pub fn last_term(&self) -> Term {
        self.log.last_term()
    }
    pub fn first_index(&self) -> Index {
        self.log.first_index()
    }
    pub fn term_at(&self, index: Index) -> Option<Term> {
        self.log.term(index)
    }
    pub fn entry_at(&self, index: Index) -> Option<&Entry> {
        self.log.entry(index)
    }
    /// The membership in force (the latest in the log, committed or not).
    pub fn membership(&self) -> &Membership {
        &self.memberships[self.memberships.len() - 1].membership
    }
    pub fn snapshot_meta(&self) -> Option<&SnapshotMeta> {
        self.snapshot.as_ref().map(|s| &s.meta)
    }
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    pub fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.role,
            term: self.term,
            leader: self.leader,
        }
    }
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            voted_for: self.voted_for,
            commit: self.log.commit,
        }
    }
    /// The local logical clock (ticks since start).
    pub fn now(&self) -> Tick {
        self.now
    }
    /// True while a membership change is catching up, joint, or uncommitted.
    pub fn membership_change_pending(&self) -> bool {
        self.catch_up.is_some()
            || self.membership().is_joint()
            || self.memberships[self.memberships.len() - 1].index > self.log.commit
    }
    pub fn transferring_leadership(&self) -> bool {
        self.transfer.is_some()
    }
    /// The leader's view of a peer's replication: (match index, state).
    pub fn peer_progress(&self, id: NodeId) -> Option<(Index, ProgressState)> {
        self.progress.get(&id).map(|p| (p.match_index, p.state))
    }
    /// True when a lease read would be served without a heartbeat round now.
    pub fn lease_valid(&self) -> bool {
        if self.role != Role::Leader || self.transfer.is_some() {
            return false;
        }
        let start = self.lease_start();
        start > self.lease_floor
            && start >= self.leader_since
            && self.now < start + self.cfg.lease_ticks()
    }

    // ----- Inputs -----------------------------------------------------------

    /// Advance logical time by one tick.
    pub fn tick(&mut self) {
        self.now += 1;
        if self.cfg.snapshot_throttle_bytes_per_tick > 0 {
            self.snapshot_budget_bytes = self
                .cfg
                .snapshot_throttle_bytes_per_tick
                .max(self.cfg.snapshot_chunk_bytes as u64)
                .min(self.snapshot_budget_bytes + self.cfg.snapshot_throttle_bytes_per_tick);
        }
        self.expire_follower_reads();
        match self.role {
            Role::Leader => self.tick_leader(),
            _ => self.tick_election(),
        }
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.election_elapsed < self.randomized_election_timeout {
            return;
        }
        self.election_elapsed = 0;
        self.reset_election_timeout();
        if !self.can_campaign() {
            return;
        }
        if self.incoming_snapshot.is_some() {
            // SOFAJRaft skips pre-vote while a snapshot is being installed.
            return;
        }
        if !self.allow_launch_election() {
            self.counters.elections_skipped_for_priority += 1;
            return;
        }
        self.pre_vote();
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        if self.heartbeat_elapsed >= self.cfg.heartbeat_interval_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
        let et = self.cfg.election_timeout_ticks;
        // Check quorum: step down when no quorum acknowledged anything sent in
        // the last election timeout.
        let active_since = self.lease_start().max(self.leader_since);
        if self.now > active_since + et {
            self.become_follower(self.term, NO_NODE);
            return;
        }
        if let Some(t) = &self.transfer
            && self.now >= t.started + et
        {
            let target = t.target;
            self.transfer = None;
            self.events.push(Event::LeaderTransferAborted { target });
        }
        if let Some(c) = &self.catch_up
            && self.now >= c.started + self.cfg.catchup_timeout_ticks
        {
            let lagging: Vec<NodeId> = c
                .target
                .voters
                .iter()
                .copied()
                .filter(|id| !self.membership().is_voter(*id))
                .collect();
            self.catch_up = None;
            self.remove_stray_progress();
            self.events.push(Event::MembershipChangeAborted {
                reason: format!("new voters {lagging:?} did not catch up in time"),
            });
        }
        // Read rounds older than an election timeout fail.
        while self
            .reads
            .batches
            .front()
            .is_some_and(|b| self.now >= b.started + et)
        {
            if let Some(b) = self.reads.batches.pop_front() {
                self.fail_origins(b.origins, ReadIndexFailure::Timeout);
            }
        }
        // Stalled pipelines (lost appends, lost snapshot chunks) fall back to probing.
        let stall = (et / 2).max(2);
        let now = self.now;
        let ids: Vec<NodeId> = self.progress.keys().copied().collect();
        for id in ids {
            let Some(pr) = self.progress.get_mut(&id) else {
                continue;
            };
            match pr.state {
                ProgressState::Replicate
                    if !pr.inflights.is_empty() && now >= pr.inflight_since + stall =>
                {
                    pr.become_probe();
                }
                ProgressState::Probe if pr.probe_sent && now >= pr.last_response_tick + stall => {
                    pr.probe_sent = false;
                }
                ProgressState::Snapshot => {
                    if let Some(s) = &mut pr.snapshot
                        && s.in_flight
                        && now >= s.last_send_tick + stall
                    {
                        s.in_flight = false;
                    }
                }
                _ => {}
            }
        }
    }

    /// Propose application data. Returns the index the entry will have if it commits.
    pub fn propose(&mut self, data: Bytes) -> Result<Index, ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if self.transfer.is_some() {
            return Err(ProposeError::Transferring);
        }
        if data.len() > self.cfg.max_entry_bytes {
            return Err(ProposeError::TooLarge {
                bytes: data.len(),
                max_entry_bytes: self.cfg.max_entry_bytes,
            });
        }
        let uncommitted = (self.log.last_index() - self.log.commit) as usize;
        if uncommitted >= self.cfg.max_uncommitted_entries {
            return Err(ProposeError::Backpressure { uncommitted });
        }
        Ok(self.append_entry(EntryPayload::Normal(data)))
    }

    /// Ask for a read index. The answer comes back in a later `Ready::reads`
    /// under `request_id`.
    pub fn read_index(&mut self, request_id: ReadRequestId) -> Result<(), ReadError> {
        self.read_index_with(request_id, self.cfg.read_mode)
    }

    /// Like [`RaftNode::read_index`] with an explicit mode for this request.
    pub fn read_index_with(
        &mut self,
        request_id: ReadRequestId,
        mode: ReadMode,
    ) -> Result<(), ReadError> {
        let pending = self.reads.pending();
        if pending >= self.cfg.max_pending_reads {
            return Err(ReadError::Backpressure { pending });
        }
        match self.role {
            Role::Leader => {
                if let Err(f) = self.leader_read_precheck() {
                    return Err(ReadError::from_failure(f, self.leader));
                }
                if self.single_voter() {
                    self.reads.confirm(request_id, self.log.commit);
                } else if mode == ReadMode::LeaseBased && self.lease_valid() {
                    self.counters.lease_reads += 1;
                    self.reads.confirm(request_id, self.log.commit);
                } else {
                    self.reads.unassigned.push(ReadOrigin::Local(request_id));
                }
                Ok(())
            }
            _ => {
                if self.leader == NO_NODE {
                    return Err(ReadError::NotLeader {
                        leader_hint: NO_NODE,
                    });
                }
                self.reads.follower_unsent.push(request_id);
                Ok(())
            }
        }
    }

    fn leader_read_precheck(&self) -> Result<(), ReadIndexFailure> {
        if self.transfer.is_some() {
            return Err(ReadIndexFailure::Busy);
        }
        if self.log.term(self.log.commit) != Some(self.term) {
            return Err(ReadIndexFailure::RetryLater);
        }
        Ok(())
    }

    /// The application finished a snapshot of its state at `index` (which must be
    /// applied) and has stored `data` durably. The log is compacted up to
    /// `index - snapshot_log_index_margin`.
    pub fn snapshot_done(&mut self, index: Index, data: Bytes) -> Result<(), AdminError> {
        if index > self.log.applied {
            return Err(AdminError::Invalid(format!(
                "snapshot index {index} is beyond the applied index {}",
                self.log.applied
            )));
        }
        if self
            .snapshot
            .as_ref()
            .is_some_and(|s| s.meta.last_index >= index)
        {
            return Err(AdminError::Invalid(format!(
                "snapshot at {index} is not newer than the current one"
            )));
        }
        let Some(term) = self.log.term(index) else {
            return Err(AdminError::Invalid(format!(
                "index {index} is not in the log"
            )));
        };
        let membership = self.membership_at(index);
        self.snapshot = Some(Snapshot {
            meta: SnapshotMeta {
                last_index: index,
                last_term: term,
                membership,
            },
            data,
        });
        let to = index.saturating_sub(self.cfg.snapshot_log_index_margin);
        self.compact(to);
        Ok(())
    }

    fn compact(&mut self, to: Index) {
        if self.log.compact(to) {
            let base = self.log.base_index();
            // Keep the newest membership at or below the base as the first element.
            let keep_from = self
                .memberships
                .iter()
                .rposition(|m| m.index <= base)
                .unwrap_or(0);
            self.memberships.drain(..keep_from);
            self.compacted_to = Some(base);
        }
    }

    fn membership_at(&self, index: Index) -> Membership {
        self.memberships
            .iter()
            .rev()
            .find(|m| m.index <= index)
            .map(|m| m.membership.clone())
            .unwrap_or_default()
    }

    /// Change the voters (and learners) to `voters` / `learners` through joint
    /// consensus: catch up new voters, then C_old,new, then C_new.
    pub fn change_membership(
        &mut self,
        voters: BTreeSet<NodeId>,
        learners: BTreeSet<NodeId>,
    ) -> Result<(), AdminError> {
        self.admin_precheck()?;
        if voters.is_empty() {
            return Err(AdminError::Invalid(
                "the new configuration has no voters".into(),
            ));
        }
        if voters.contains(&NO_NODE) || learners.contains(&NO_NODE) {
            return Err(AdminError::Invalid("node id 0 is reserved".into()));
        }
        let current = self.membership().clone();
        let mut target = Membership {
            voters,
            old_voters: None,
            learners: learners.into_iter().collect(),
            priorities: current.priorities.clone(),
        };
        target.learners.retain(|id| !target.voters.contains(id));
        if target.voters == current.voters && target.learners == current.learners {
            return Err(AdminError::Invalid("the configuration is unchanged".into()));
        }
        let now = self.now;
        let next = self.log.last_index() + 1;
        for id in target.all_members() {
            if id != self.cfg.id {
                self.progress
                    .entry(id)
                    .or_insert_with(|| Progress::new(next, now));
            }
        }
        self.catch_up = Some(CatchUp {
            target,
            started: now,
        });
        self.maybe_finish_catch_up();
        Ok(())
    }

    /// SOFAJRaft `addPeer`.
    pub fn add_voter(&mut self, id: NodeId) -> Result<(), AdminError> {
        let m = self.membership().clone();
        let mut voters = m.voters.clone();
        voters.insert(id);
        self.change_membership(voters, m.learners)
    }

    /// SOFAJRaft `removePeer`.
    pub fn remove_voter(&mut self, id: NodeId) -> Result<(), AdminError> {
        let m = self.membership().clone();
        let mut voters = m.voters.clone();
        voters.remove(&id);
        self.change_membership(voters, m.learners)
    }

    /// SOFAJRaft `addLearners`.
    pub fn add_learner(&mut self, id: NodeId) -> Result<(), AdminError> {
        let m = self.membership().clone();
        if m.voters.contains(&id) {
            return Err(AdminError::Invalid(format!("{id} is a voter")));
        }
        let mut learners = m.learners.clone();
        learners.insert(id);
        self.change_membership(m.voters, learners)
    }

    /// SOFAJRaft `removeLearners`.
    pub fn remove_learner(&mut self, id: NodeId) -> Result<(), AdminError> {
        let m = self.membership().clone();
        let mut learners = m.learners.clone();
        learners.remove(&id);
        self.change_membership(m.voters, learners)
    }

    /// Make a learner a voter (through joint consensus).
    pub fn promote_learner(&mut self, id: NodeId) -> Result<(), AdminError> {
        let m = self.membership().clone();
        if !m.learners.contains(&id) {
            return Err(AdminError::Invalid(format!("{id} is not a learner")));
        }
        let mut voters = m.voters.clone();
        voters.insert(id);
        let mut learners = m.learners.clone();
        learners.remove(&id);
        self.change_membership(voters, learners)
    }

    fn admin_precheck(&self) -> Result<(), AdminError> {
        if self.role != Role::Leader {
            return Err(AdminError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if self.transfer.is_some() {
            return Err(AdminError::Transferring);
        }
        if self.membership_change_pending() {
            return Err(AdminError::ChangeInProgress);
        }
        if self.log.term(self.log.commit) != Some(self.term) {
            return Err(AdminError::RetryLater);
        }
        Ok(())
    }

    /// SOFAJRaft `transferLeadershipTo`. `target == 0` picks the voter with the
    /// longest log (`ANY_PEER`).
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), AdminError> {
        if self.role != Role::Leader {
            return Err(AdminError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if self.transfer.is_some() {
            return Err(AdminError::Transferring);
        }
        if self.membership_change_pending() {
            return Err(AdminError::ChangeInProgress);
        }
        let target = if target == NO_NODE {
            let best = self
                .membership()
                .voters
                .iter()
                .filter(|id| **id != self.cfg.id)
                .filter_map(|id| self.progress.get(id).map(|p| (p.match_index, *id)))
                .max();
            match best {
                Some((_, id)) => id,
                None => return Err(AdminError::Invalid("no other voter to transfer to".into())),
            }
        } else {
            target
        };
        if target == self.cfg.id {
            return Ok(());
        }
        if !self.membership().voters.contains(&target) {
            return Err(AdminError::Invalid(format!("{target} is not a voter")));
        }
        // From here on no lease read may rely on acknowledgements sent before:
        // the target may win an election that ignores leases.
        self.lease_floor = self.now;
        self.transfer = Some(Transfer {
            target,
            started: self.now,
            timeout_now_sent: false,
        });
        self.fail_unassigned_reads(ReadIndexFailure::Busy);
        self.maybe_send_timeout_now();
        Ok(())
    }

    /// Unsafe manual recovery after losing a majority (SOFAJRaft `resetPeers`):
    /// force the voters to `voters` without consensus. The node steps down into a
    /// new term; whoever is elected writes the forced configuration to the log.
    pub fn force_reset_membership(&mut self, voters: BTreeSet<NodeId>) -> Result<(), AdminError> {
        if voters.is_empty() || voters.contains(&NO_NODE) {
            return Err(AdminError::Invalid(
                "voters must be non-empty and not contain 0".into(),
            ));
        }
        let mut m = self.membership().clone();
        m.voters = voters;
        m.old_voters = None;
        m.learners.retain(|id| !m.voters.contains(id));
        self.memberships.push(MembershipAt {
            index: self.log.last_index(),
            membership: m,
        });
        self.membership_forced = true;
        self.catch_up = None;
        let term = self.term + 1;
        self.become_follower(term, NO_NODE);
        Ok(())
    }

    // ----- Messages -----------------------------------------------------------

    /// Handle one message from a peer. Invalid or stale input is counted and dropped.
    pub fn step(&mut self, m: Message) {
        if m.group != self.cfg.group {
            self.counters.dropped_wrong_group += 1;
            return;
        }
        if m.to != self.cfg.id || m.from == NO_NODE || m.from == self.cfg.id {
            self.counters.dropped_misaddressed += 1;
            return;
        }
        match &m.body {
            MessageBody::PreVote {
                last_log_index,
                last_log_term,
            } => {
                self.handle_pre_vote(m.from, m.term, *last_log_index, *last_log_term);
                return;
            }
            MessageBody::PreVoteResponse { granted: true } => {
                self.handle_pre_vote_response(m.from, m.term, true);
                return;
            }
            _ => {}
        }
        if m.term > self.term {
            if let MessageBody::RequestVote {
                leader_transfer, ..
            } = &m.body
                && !*leader_transfer
                && self.in_leader_lease()
            {
                // A leader we heard from recently is alive: ignore the vote so that
                // its lease stays sound (etcd's check-quorum rule).
                self.counters.votes_refused_in_lease += 1;
                return;
            }
            let leader = match m.body {
                MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. } => m.from,
                _ => NO_NODE,
            };
            self.become_follower(m.term, leader);
        } else if m.term < self.term {
            self.counters.dropped_stale_term += 1;
            match m.body {
                // Tell a stale leader (or pre-candidate) about the newer term so it
                // steps down instead of staying stuck.
                MessageBody::AppendEntries { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. } => {
                    self.send(
                        m.from,
                        MessageBody::AppendEntriesResponse {
                            success: false,
                            index: 0,
                            reject_hint: None,
                            send_tick: 0,
                        },
                        false,
                    );
                }
                // A node with a stale term (e.g. one removed from the group) asking
                // for a read index would otherwise wait for an answer that never
                // comes: refuse it, which also tells it the newer term.
                MessageBody::ReadIndexRequest { batch_id } => {
                    self.send(
                        m.from,
                        MessageBody::ReadIndexResponse {
                            batch_id,
                            result: Err(ReadIndexFailure::NotLeader),
                        },
                        false,
                    );
                }
                MessageBody::PreVoteResponse { granted: false } => {}
                _ => {}
            }
            return;
        }
        // Now m.term == self.term.
        if self.role == Role::Leader
            && matches!(
                m.body,
                MessageBody::AppendEntries { .. }
                    | MessageBody::Heartbeat { .. }
                    | MessageBody::InstallSnapshot { .. }
            )
        {
            // Two leaders in one term would break election safety: refuse loudly.
            self.counters.dropped_unexpected += 1;
            return;
        }
        match m.body {
            MessageBody::PreVote { .. } => {}
            MessageBody::PreVoteResponse { granted } => {
                self.handle_pre_vote_response(m.from, m.term, granted)
            }
            MessageBody::RequestVote {
                last_log_index,
                last_log_term,
                ..
            } => self.handle_request_vote(m.from, last_log_index, last_log_term),
            MessageBody::RequestVoteResponse { granted } => {
                self.handle_vote_response(m.from, granted)
            }
            MessageBody::AppendEntries {
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                send_tick,
            } => self.handle_append(
                m.from,
                prev_log_index,
                prev_log_term,
                entries,
                leader_commit,
                send_tick,
            ),
            MessageBody::AppendEntriesResponse {
                success,
                index,
                reject_hint,
                send_tick,
            } => self.handle_append_response(m.from, success, index, reject_hint, send_tick),
            MessageBody::Heartbeat {
                leader_commit,
                read_seq,
                send_tick,
            } => self.handle_heartbeat(m.from, leader_commit, read_seq, send_tick),
            MessageBody::HeartbeatResponse {
                read_seq,
                send_tick,
                last_index,
            } => self.handle_heartbeat_response(m.from, read_seq, send_tick, last_index),
            MessageBody::InstallSnapshot {
                meta,
                offset,
                total_bytes,
                data,
                send_tick,
            } => self.handle_install_snapshot(m.from, meta, offset, total_bytes, data, send_tick),
            MessageBody::InstallSnapshotResponse {
                last_index,
                last_term,
                next_offset,
                rejected,
                send_tick,
            } => self.handle_snapshot_response(
                m.from,
                last_index,
                last_term,
                next_offset,
                rejected,
                send_tick,
            ),
            MessageBody::TimeoutNow => self.handle_timeout_now(m.from),
            MessageBody::ReadIndexRequest { batch_id } => {
                self.handle_read_index_request(m.from, batch_id)
            }
            MessageBody::ReadIndexResponse { batch_id, result } => {
                self.handle_read_index_response(m.from, batch_id, result)
            }
        }
    }

    fn in_leader_lease(&self) -> bool {
        match self.role {
            Role::Leader => {
                self.now
                    <= self.lease_start().max(self.leader_since) + self.cfg.election_timeout_ticks
            }
            _ => self.now < self.last_leader_contact + self.cfg.election_timeout_ticks,
        }
    }

    fn handle_pre_vote(&mut self, from: NodeId, term: Term, last_index: Index, last_term: Term) {
        // A candidate we do not list may be a voter of a configuration we have not
        // received yet (we lag behind); when its log is strictly ahead of ours, our
        // stale view must not veto it: the election may need our vote.
        let ahead = (last_term, last_index) > (self.log.last_term(), self.log.last_index());
        let granted = (self.membership().is_voter(from) || ahead)
            && term > self.term
            && !self.in_leader_lease()
            && self.log.is_up_to_date(last_index, last_term);
        if !granted && self.in_leader_lease() && term > self.term {
            self.counters.votes_refused_in_lease += 1;
        }
        let reply_term = if granted { term } else { self.term };
        self.msgs.push(Message {
            group: self.cfg.group,
            from: self.cfg.id,
            to: from,
            term: reply_term,
            body: MessageBody::PreVoteResponse { granted },
        });
    }

    fn handle_pre_vote_response(&mut self, from: NodeId, term: Term, granted: bool) {
        // A grant names the term we would campaign in; a refusal carries the
        // voter's own term, at most that one.
        let for_this_round = if granted {
            term == self.term + 1
        } else {
            term <= self.term + 1
        };
        if self.role != Role::PreCandidate || !for_this_round {
            if !granted && term > self.term {
                self.become_follower(term, NO_NODE);
            }
            return;
        }
        self.votes.insert(from, granted);
        self.tally(true);
    }

    fn handle_vote_response(&mut self, from: NodeId, granted: bool) {
        if self.role != Role::Candidate {
            return;
        }
        self.votes.insert(from, granted);
        self.tally(false);
    }

    fn tally(&mut self, pre: bool) {
        let m = self.membership().clone();
        let votes = &self.votes;
        if m.has_quorum(|id| votes.get(&id) == Some(&true)) {
            if pre {
                self.campaign(false);
            } else {
                self.become_leader();
            }
        } else if m.quorum_impossible(|id| votes.get(&id) == Some(&false)) {
            self.become_follower(self.term, NO_NODE);
        }
    }

    fn handle_request_vote(&mut self, from: NodeId, last_index: Index, last_term: Term) {
        let can_vote =
            (self.voted_for == NO_NODE && self.leader == NO_NODE) || self.voted_for == from;
        let granted = can_vote && self.log.is_up_to_date(last_index, last_term);
        if granted {
            self.voted_for = from;
            self.election_elapsed = 0;
        }
        self.send(from, MessageBody::RequestVoteResponse { granted }, true);
    }

    fn handle_append(
        &mut self,
        from: NodeId,
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry>,
        leader_commit: Index,
        send_tick: Tick,
    ) {
        self.heard_from_leader(from);
        if prev_index < self.log.commit {
            // Everything up to our commit already matches the leader.
            self.send(
                from,
                MessageBody::AppendEntriesResponse {
                    success: true,
                    index: self.log.commit,
                    reject_hint: None,
                    send_tick,
                },
                true,
            );
            return;
        }
        if self.log.term(prev_index) == Some(prev_term) {
            // Validate before touching the log: contiguous indexes, terms that never
            // go backwards and never exceed the leader's.
            let mut last_term = prev_term;
            for (expect, e) in (prev_index + 1..).zip(entries.iter()) {
                if e.index != expect || e.term < last_term || e.term > self.term {
                    self.counters.dropped_unexpected += 1;
                    return;
                }
                last_term = e.term;
            }
            let last_new = prev_index + entries.len() as u64;
            let conflict = entries
                .iter()
                .find(|e| self.log.term(e.index).is_some_and(|t| t != e.term))
                .map(|e| e.index);
            if let Some(at) = conflict {
                if at <= self.log.commit {
                    // Only a broken leader asks to rewrite committed entries.
                    self.counters.dropped_unexpected += 1;
                    return;
                }
                self.log.truncate_from(at);
                self.memberships_truncate(at);
            }
            let old_last = self.log.last_index();
            let added: Vec<MembershipAt> = entries
                .iter()
                .filter(|e| e.index > old_last)
                .filter_map(|e| match &e.payload {
                    EntryPayload::Membership(m) => Some(MembershipAt {
                        index: e.index,
                        membership: m.clone(),
                    }),
                    _ => None,
                })
                .collect();
            self.log.append_matching(entries);
            if !added.is_empty() {
                self.memberships.extend(added);
                self.on_membership_changed();
            }
            let commit = leader_commit.min(last_new);
            if commit > self.log.commit {
                self.log.commit = commit;
            }
            self.send(
                from,
                MessageBody::AppendEntriesResponse {
                    success: true,
                    index: last_new,
                    reject_hint: None,
                    send_tick,
                },
                true,
            );
        } else {
            let hint = self.log.conflict_hint(prev_index);
            self.send(
                from,
                MessageBody::AppendEntriesResponse {
                    success: false,
                    index: prev_index,
                    reject_hint: Some(hint),
                    send_tick,
                },
                true,
            );
        }
    }

    fn memberships_truncate(&mut self, from: Index) {
        let before = self.memberships.len();
        while self.memberships.len() > 1
            && self.memberships[self.memberships.len() - 1].index >= from
        {
            self.memberships.pop();
        }
        if self.memberships.len() != before {
            self.membership_forced = false;
            self.on_membership_changed();
        }
    }

    fn heard_from_leader(&mut self, from: NodeId) {
        self.election_elapsed = 0;
        self.last_leader_contact = self.now;
        self.leader = from;
        self.priority_timeouts = 0;
        self.target_priority = self.membership().max_priority();
        if self.role == Role::PreCandidate || self.role == Role::Candidate {
            self.role = self.follower_role();
            self.votes.clear();
        }
    }

    fn handle_heartbeat(
        &mut self,
        from: NodeId,
        leader_commit: Index,
        read_seq: u64,
        send_tick: Tick,
    ) {
        self.heard_from_leader(from);
        let commit = leader_commit.min(self.log.last_index());
        if commit > self.log.commit {
            self.log.commit = commit;
        }
        self.send(
            from,
            MessageBody::HeartbeatResponse {
                read_seq,
                send_tick,
                last_index: self.log.last_index(),
            },
            true,
        );
    }

    fn handle_install_snapshot(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        total_bytes: u64,
        data: Bytes,
        send_tick: Tick,
    ) {
        self.heard_from_leader(from);
        let (li, lt) = (meta.last_index, meta.last_term);
        let reply = |node: &mut RaftNode, next_offset: u64, rejected: bool| {
            node.send(
                from,
                MessageBody::InstallSnapshotResponse {
                    last_index: li,
                    last_term: lt,
                    next_offset,
                    rejected,
                    send_tick,
                },
                true,
            );
        };
        if total_bytes > self.cfg.max_snapshot_bytes {
            self.counters.dropped_unexpected += 1;
            return;
        }
        if li <= self.log.commit {
            // Already have it: the leader resumes appends after it.
            self.incoming_snapshot = None;
            reply(self, total_bytes, true);
            return;
        }
        let same = self.incoming_snapshot.as_ref().is_some_and(|s| {
            s.meta.last_index == li && s.meta.last_term == lt && s.total_bytes == total_bytes
        });
        if !same {
            if offset != 0 {
                reply(self, 0, false);
                return;
            }
            self.incoming_snapshot = Some(IncomingSnapshot {
                meta: meta.clone(),
                total_bytes,
                buf: BytesMut::new(),
            });
        }
        let Some(inc) = self.incoming_snapshot.as_mut() else {
            return;
        };
        let have = inc.buf.len() as u64;
        if offset == have && have + data.len() as u64 <= total_bytes {
            inc.buf.extend_from_slice(&data);
        }
        let have = inc.buf.len() as u64;
        if have < total_bytes {
            reply(self, have, false);
            return;
        }
        // Complete: install.
        let Some(inc) = self.incoming_snapshot.take() else {
            return;
        };
        let snap = Snapshot {
            meta: inc.meta,
            data: inc.buf.freeze(),
        };
        self.install_snapshot(snap);
        reply(self, total_bytes, false);
    }

    fn install_snapshot(&mut self, snap: Snapshot) {
        let meta = &snap.meta;
        self.counters.snapshots_installed += 1;
        self.log.reset_to_snapshot(meta.last_index, meta.last_term);
        self.memberships = vec![MembershipAt {
            index: meta.last_index,
            membership: meta.membership.clone(),
        }];
        self.membership_forced = false;
        self.on_membership_changed();
        // Reads waiting on an index now covered by the snapshot are ready too.
        self.outstanding_snapshot = None;
        self.snapshot_to_install = Some(snap.clone());
        self.snapshot = Some(snap);
        self.compacted_to = None;
    }

    fn handle_timeout_now(&mut self, from: NodeId) {
        if from != self.leader || !self.can_campaign() {
            self.counters.dropped_unexpected += 1;
            return;
        }
        self.campaign(true);
    }

    fn handle_read_index_request(&mut self, from: NodeId, batch_id: u64) {
        let reply = |node: &mut RaftNode, result: Result<Index, ReadIndexFailure>| {
            node.send(
                from,
                MessageBody::ReadIndexResponse { batch_id, result },
                false,
            );
        };
        if self.role != Role::Leader || !self.membership().contains(from) {
            reply(self, Err(ReadIndexFailure::NotLeader));
            return;
        }
        if let Err(f) = self.leader_read_precheck() {
            reply(self, Err(f));
            return;
        }
        if self.reads.pending() >= self.cfg.max_pending_reads {
            reply(self, Err(ReadIndexFailure::RetryLater));
            return;
        }
        self.reads
            .unassigned
            .push(ReadOrigin::Remote { from, batch_id });
    }

    fn handle_read_index_response(
        &mut self,
        from: NodeId,
        batch_id: u64,
        result: Result<Index, ReadIndexFailure>,
    ) {
        // Only the node the batch was sent to may answer it.
        if self
            .reads
            .follower_batches
            .get(&batch_id)
            .is_none_or(|(_, asked, _)| *asked != from)
        {
            self.counters.dropped_unexpected += 1;
            return;
        }
        let Some((_, _, ids)) = self.reads.follower_batches.remove(&batch_id) else {
            return;
        };
        for id in ids {
            match result {
                Ok(index) => self.reads.confirm(id, index),
                Err(f) => self.reads.fail(id, ReadError::from_failure(f, self.leader)),
            }
        }
    }

    fn expire_follower_reads(&mut self) {
        let et = self.cfg.election_timeout_ticks;
        let now = self.now;
        let expired: Vec<u64> = self
            .reads
            .follower_batches
            .iter()
            .filter(|(_, (started, _, _))| now >= started + et)
            .map(|(id, _)| *id)
            .collect();
        for b in expired {
            if let Some((_, _, ids)) = self.reads.follower_batches.remove(&b) {
                for id in ids {
                    self.reads.fail(id, ReadError::Timeout);
                }
            }
        }
    }

    // ----- Leader: responses ---------------------------------------------------

    fn note_response(&mut self, from: NodeId, send_tick: Tick) -> bool {
        let now = self.now;
        let Some(pr) = self.progress.get_mut(&from) else {
            self.counters.dropped_unexpected += 1;
            return false;
        };
        pr.last_response_tick = now;
        // send_tick is our own clock: a value from the future is corrupt input.
        if send_tick <= now && send_tick >= self.leader_since {
            pr.acked_send_tick = pr.acked_send_tick.max(send_tick);
        }
        true
    }

    fn handle_append_response(
        &mut self,
        from: NodeId,
        success: bool,
        index: Index,
        reject_hint: Option<(Index, Term)>,
        send_tick: Tick,
    ) {
        if self.role != Role::Leader || !self.note_response(from, send_tick) {
            return;
        }
        let last = self.log.last_index();
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        if success {
            if index > last {
                self.counters.dropped_unexpected += 1;
                return;
            }
            let updated = pr.maybe_update(index);
            if updated {
                pr.inflight_since = self.now;
            }
            if pr.state == ProgressState::Probe {
                pr.become_replicate();
            }
            if updated {
                self.maybe_commit();
                self.maybe_finish_catch_up();
                self.maybe_send_timeout_now();
            }
        } else {
            // `index` is the prev_log_index that was refused.
            let rejected = index;
            if rejected <= pr.match_index
                || pr.state == ProgressState::Snapshot
                || (pr.state == ProgressState::Probe && rejected + 1 != pr.next_index)
            {
                return; // stale: answers an older request
            }
            let next = match reject_hint {
                Some((hint_index, 0)) => hint_index,
                Some((hint_index, hint_term)) => match self.log.last_index_of_term(hint_term) {
                    Some(j) if j + 1 >= hint_index => j + 1,
                    _ => hint_index,
                },
                None => rejected,
            };
            pr.become_probe();
            pr.next_index = next.min(rejected).max(pr.match_index + 1);
        }
    }

    fn handle_heartbeat_response(
        &mut self,
        from: NodeId,
        read_seq: u64,
        send_tick: Tick,
        last_index: Index,
    ) {
        if self.role != Role::Leader || !self.note_response(from, send_tick) {
            return;
        }
        let leader_last = self.log.last_index();
        if let Some(pr) = self.progress.get_mut(&from) {
            pr.read_seq_acked = pr.read_seq_acked.max(read_seq);
            // A probe may have been lost: probe again while the follower is
            // shorter or not yet known to match our log. (The length alone is not
            // enough: a follower as long as us but conflicting was never re-probed.)
            if pr.state == ProgressState::Probe
                && (last_index < leader_last || pr.match_index < leader_last)
            {
                pr.probe_sent = false;
                // Resume from the follower's end: a progress created with
                // next = last + 1 (a catching-up new member) has nothing "new" to
                // send on an idle group and would otherwise never be probed.
                if last_index < pr.next_index {
                    pr.next_index = (last_index + 1).max(pr.match_index + 1);
                }
            }
        }
        self.release_read_batches();
    }

    fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        last_index: Index,
        last_term: Term,
        next_offset: u64,
        rejected: bool,
        send_tick: Tick,
    ) {
        if self.role != Role::Leader || !self.note_response(from, send_tick) {
            return;
        }
        let total = self.snapshot.as_ref().map_or(0, |s| s.data.len() as u64);
        let Some(pr) = self.progress.get_mut(&from) else {
            return;
        };
        let Some(s) = pr.snapshot.as_mut() else {
            return;
        };
        if s.last_index != last_index || s.last_term != last_term {
            return;
        }
        s.in_flight = false;
        if rejected || next_offset >= total {
            // Done (or the follower already had it): resume appends after it.
            pr.become_probe();
            if !rejected {
                self.counters.snapshots_sent += 1;
                self.maybe_commit();
            }
        } else {
            s.acked_offset = next_offset;
        }
    }

    // ----- Leader: replication ----------------------------------------------------

    fn append_entry(&mut self, payload: EntryPayload) -> Index {
        let index = self.log.last_index() + 1;
        if let EntryPayload::Membership(m) = &payload {
            self.memberships.push(MembershipAt {
                index,
                membership: m.clone(),
            });
        }
        let is_conf = matches!(payload, EntryPayload::Membership(_));
        self.log.append(Entry {
            term: self.term,
            index,
            payload,
        });
        if is_conf {
            self.on_membership_changed();
        }
        index
    }

    fn maybe_commit(&mut self) {
        let m = &self.memberships[self.memberships.len() - 1].membership;
        let me = self.cfg.id;
        let persisted = self.log.persisted;
        let progress = &self.progress;
        let candidate = m.quorum_min(|id| {
            if id == me {
                persisted
            } else {
                progress.get(&id).map_or(0, |p| p.match_index)
            }
        });
        // Raft §5.4.2: only entries of the current term commit by counting.
        if candidate > self.log.commit && self.log.term(candidate) == Some(self.term) {
            self.log.commit = candidate;
            self.commit_broadcast_pending = true;
            self.on_commit_advanced();
        }
    }

    fn on_commit_advanced(&mut self) {
        let commit = self.log.commit;
        let last_index = self.memberships[self.memberships.len() - 1].index;
        let change_open = self.membership().is_joint() || self.change_final_index.is_some();
        if last_index <= commit && last_index > 0 && change_open {
            let last = self.membership().clone();
            if last.is_joint() {
                // C_old,new committed: move on to C_new.
                let mut stable = last.clone();
                stable.old_voters = None;
                let idx = self.append_entry(EntryPayload::Membership(stable));
                self.change_final_index = Some(idx);
            } else if self.change_final_index.is_some_and(|i| i <= commit) {
                self.change_final_index = None;
                self.events.push(Event::MembershipChangeDone {
                    membership: last.clone(),
                });
                self.remove_stray_progress();
                if !last.is_voter(self.cfg.id) {
                    // A removed leader steps down once C_new is committed.
                    self.become_follower(self.term, NO_NODE);
                }
            }
        }
    }

    fn maybe_finish_catch_up(&mut self) {
        let Some(c) = &self.catch_up else { return };
        let last = self.log.last_index();
        let margin = self.cfg.catchup_margin_entries;
        let current = self.membership().clone();
        let caught_up = c
            .target
            .voters
            .iter()
            .filter(|id| **id != self.cfg.id && !current.voters.contains(id))
            // `match_index == 0` means the new voter never acknowledged anything
            // (unreachable, or not started): it has not caught up, whatever the margin.
            .all(|id| {
                self.progress
                    .get(id)
                    .is_some_and(|p| p.match_index > 0 && p.match_index + margin >= last)
            });
        if !caught_up {
            return;
        }
        let Some(c) = self.catch_up.take() else {
            return;
        };
        if c.target.voters == current.voters {
            // Only learners change: no quorum changes, one stable entry suffices.
            let idx = self.append_entry(EntryPayload::Membership(c.target));
            self.change_final_index = Some(idx);
        } else {
            let mut joint = c.target;
            joint.old_voters = Some(current.voters.clone());
            self.append_entry(EntryPayload::Membership(joint));
        }
    }

    fn maybe_send_timeout_now(&mut self) {
        let last = self.log.last_index();
        let Some(t) = &mut self.transfer else { return };
        if t.timeout_now_sent {
            return;
        }
        if self
            .progress
            .get(&t.target)
            .is_some_and(|p| p.match_index == last)
        {
            t.timeout_now_sent = true;
            let target = t.target;
            self.send(target, MessageBody::TimeoutNow, false);
        }
    }

    /// Members and catch-up candidates get progress; everyone else loses it.
    fn remove_stray_progress(&mut self) {
        let mut keep = self.membership().all_members();
        if let Some(c) = &self.catch_up {
            keep.extend(c.target.all_members());
        }
        self.progress.retain(|id, _| keep.contains(id));
    }

    fn on_membership_changed(&mut self) {
        let m = self.membership().clone();
        self.target_priority = m.max_priority();
        if self.role == Role::Leader {
            let next = self.log.last_index() + 1;
            let now = self.now;
            for id in m.all_members() {
                if id != self.cfg.id {
                    self.progress
                        .entry(id)
                        .or_insert_with(|| Progress::new(next, now));
                }
            }
        } else if self.role == Role::Follower || self.role == Role::Learner {
            self.role = self.follower_role();
        }
    }

    fn send_append(&mut self, to: NodeId, allow_empty: bool) {
        let max_inflight = self.cfg.max_inflight_appends;
        let Some(pr) = self.progress.get(&to) else {
            return;
        };
        if pr.state == ProgressState::Snapshot {
            self.send_snapshot_chunk(to);
            return;
        }
        if !pr.can_send(max_inflight) {
            return;
        }
        let has_new = pr.next_index <= self.log.last_index();
        if !has_new && !allow_empty {
            return;
        }
        // An empty append only carries the commit index: anchor it at the match
        // index so that it cannot be refused while earlier appends are in flight.
        let prev = if has_new {
            pr.next_index - 1
        } else {
            pr.match_index
        };
        let Some(prev_term) = self.log.term(prev) else {
            // Needed entries were compacted: catch up by snapshot.
            if let Some(s) = &self.snapshot {
                let (li, lt) = (s.meta.last_index, s.meta.last_term);
                if let Some(pr) = self.progress.get_mut(&to) {
                    pr.become_snapshot(li, lt);
                }
                self.send_snapshot_chunk(to);
            }
            return;
        };
        let entries = if has_new {
            self.log.slice(
                pr.next_index,
                self.cfg.max_append_entries,
                self.cfg.max_append_bytes,
            )
        } else {
            Vec::new()
        };
        let last = prev + entries.len() as u64;
        let non_empty = !entries.is_empty();
        let body = MessageBody::AppendEntries {
            prev_log_index: prev,
            prev_log_term: prev_term,
            entries,
            leader_commit: self.log.commit,
            send_tick: self.now,
        };
        let now = self.now;
        if let Some(pr) = self.progress.get_mut(&to) {
            if pr.inflights.is_empty() {
                pr.inflight_since = now;
            }
            pr.sent_append(last, non_empty);
        }
        self.send(to, body, false);
    }

    fn send_snapshot_chunk(&mut self, to: NodeId) {
        let Some(snap) = &self.snapshot else { return };
        let Some(pr) = self.progress.get_mut(&to) else {
            return;
        };
        let Some(s) = pr.snapshot.as_mut() else {
            return;
        };
        if s.in_flight {
            return;
        }
        if s.last_index != snap.meta.last_index {
            // A newer snapshot replaced the one being sent: start over with it.
            s.last_index = snap.meta.last_index;
            s.last_term = snap.meta.last_term;
            s.acked_offset = 0;
        }
        let total = snap.data.len() as u64;
        let offset = s.acked_offset.min(total);
        let end = (offset + self.cfg.snapshot_chunk_bytes as u64).min(total);
        let len = end - offset;
        if self.cfg.snapshot_throttle_bytes_per_tick > 0 {
            if self.snapshot_budget_bytes < len {
                return;
            }
            self.snapshot_budget_bytes -= len;
        }
        s.in_flight = true;
        s.last_send_tick = self.now;
        let data = snap.data.slice(offset as usize..end as usize);
        let body = MessageBody::InstallSnapshot {
            meta: snap.meta.clone(),
            offset,
            total_bytes: total,
            data,
            send_tick: self.now,
        };
        self.send(to, body, false);
    }

    fn broadcast_heartbeat(&mut self) {
        self.reads.seq += 1;
        self.counters.read_index_rounds += 1;
        let seq = self.reads.seq;
        let ids: Vec<NodeId> = self.progress.keys().copied().collect();
        for id in ids {
            let Some(pr) = self.progress.get(&id) else {
                continue;
            };
            let commit = self.log.commit.min(pr.match_index);
            self.send(
                id,
                MessageBody::Heartbeat {
                    leader_commit: commit,
                    read_seq: seq,
                    send_tick: self.now,
                },
                false,
            );
        }
    }

    fn release_read_batches(&mut self) {
        let me = self.cfg.id;
        while let Some(b) = self.reads.batches.front() {
            let seq = b.seq;
            let progress = &self.progress;
            let m = &self.memberships[self.memberships.len() - 1].membership;
            let ok = m.has_quorum(|id| {
                id == me || progress.get(&id).is_some_and(|p| p.read_seq_acked >= seq)
            });
            if !ok {
                break;
            }
            let Some(b) = self.reads.batches.pop_front() else {
                break;
            };
            for o in b.origins {
                match o {
                    ReadOrigin::Local(id) => self.reads.confirm(id, b.index),
                    ReadOrigin::Remote { from, batch_id } => {
                        self.send(
                            from,
                            MessageBody::ReadIndexResponse {
                                batch_id,
                                result: Ok(b.index),
                            },
                            false,
                        );
                    }
                }
            }
        }
    }

    fn fail_origins(&mut self, origins: Vec<ReadOrigin>, f: ReadIndexFailure) {
        for o in origins {
            match o {
                ReadOrigin::Local(id) => {
                    self.reads.fail(id, ReadError::from_failure(f, self.leader))
                }
                ReadOrigin::Remote { from, batch_id } => {
                    self.send(
                        from,
                        MessageBody::ReadIndexResponse {
                            batch_id,
                            result: Err(f),
                        },
                        false,
                    );
                }
            }
        }
    }

    fn fail_unassigned_reads(&mut self, f: ReadIndexFailure) {
        let origins = std::mem::take(&mut self.reads.unassigned);
        self.fail_origins(origins, f);
    }

    /// The latest tick such that a quorum acknowledged messages sent at or after it.
    fn lease_start(&self) -> Tick {
        let me = self.cfg.id;
        let now = self.now;
        self.membership().quorum_min(|id| {
            if id == me {
                now
            } else {
                self.progress.get(&id).map_or(0, |p| p.acked_send_tick)
            }
        })
    }

    // ----- Elections ---------------------------------------------------------------

    fn can_campaign(&self) -> bool {
        self.membership().is_voter(self.cfg.id) && self.own_priority() != PRIORITY_NOT_ELECTED
    }

    fn own_priority(&self) -> i32 {
        match self.membership().priorities.get(&self.cfg.id) {
            Some(p) => *p,
            None => self.cfg.election_priority,
        }
    }

    /// Priority election (SOFAJRaft 1.3): a node below the target priority sits out
    /// an election timeout; when it keeps timing out, it lowers the target by
    /// `max(decay_priority_gap, target / 5)` (never below 1).
    fn allow_launch_election(&mut self) -> bool {
        let mine = self.own_priority();
        if mine == PRIORITY_DISABLED || self.target_priority <= PRIORITY_DISABLED {
            return true;
        }
        if mine >= self.target_priority {
            self.priority_timeouts = 0;
            return true;
        }
        self.priority_timeouts += 1;
        if self.priority_timeouts >= 2 {
            let gap = self.cfg.decay_priority_gap.max(self.target_priority / 5);
            self.target_priority = (self.target_priority - gap).max(1);
            self.priority_timeouts = 0;
        }
        mine >= self.target_priority
    }

    fn pre_vote(&mut self) {
        self.role = Role::PreCandidate;
        self.leader = NO_NODE;
        self.votes.clear();
        self.votes.insert(self.cfg.id, true);
        let term = self.term + 1;
        let (li, lt) = (self.log.last_index(), self.log.last_term());
        let voters: Vec<NodeId> = self.voters_except_me();
        for to in voters {
            self.msgs.push(Message {
                group: self.cfg.group,
                from: self.cfg.id,
                to,
                term,
                body: MessageBody::PreVote {
                    last_log_index: li,
                    last_log_term: lt,
                },
            });
        }
        self.tally(true);
    }

    fn campaign(&mut self, leader_transfer: bool) {
        self.term += 1;
        self.voted_for = self.cfg.id;
        self.leader = NO_NODE;
        self.role = Role::Candidate;
        self.election_elapsed = 0;
        self.reset_election_timeout();
        self.votes.clear();
        self.votes.insert(self.cfg.id, true);
        let (li, lt) = (self.log.last_index(), self.log.last_term());
        for to in self.voters_except_me() {
            self.send(
                to,
                MessageBody::RequestVote {
                    last_log_index: li,
                    last_log_term: lt,
                    leader_transfer,
                },
                true,
            );
        }
        self.tally(false);
    }

    fn voters_except_me(&self) -> Vec<NodeId> {
        let m = self.membership();
        let mut v: BTreeSet<NodeId> = m.voters.clone();
        if let Some(o) = &m.old_voters {
            v.extend(o.iter().copied());
        }
        v.remove(&self.cfg.id);
        v.into_iter().collect()
    }

    fn single_voter(&self) -> bool {
        let m = self.membership();
        m.voters.len() == 1
            && m.voters.contains(&self.cfg.id)
            && m.old_voters
                .as_ref()
                .is_none_or(|o| o.len() == 1 && o.contains(&self.cfg.id))
    }

    fn become_follower(&mut self, term: Term, leader: NodeId) {
        let was_leader = self.role == Role::Leader;
        if term > self.term {
            self.term = term;
            self.voted_for = NO_NODE;
        }
        self.leader = leader;
        self.role = self.follower_role();
        self.votes.clear();
        self.election_elapsed = 0;
        self.reset_election_timeout();
        if leader != NO_NODE {
            self.last_leader_contact = self.now;
        }
        if was_leader {
            self.progress.clear();
            self.transfer = None;
            if self.catch_up.take().is_some() {
                self.events.push(Event::MembershipChangeAborted {
                    reason: "leadership lost before the joint configuration was proposed".into(),
                });
            }
            self.change_final_index = None;
            self.fail_unassigned_reads(ReadIndexFailure::NotLeader);
            let batches: Vec<LeaderBatch> = self.reads.batches.drain(..).collect();
            for b in batches {
                self.fail_origins(b.origins, ReadIndexFailure::NotLeader);
            }
        }
    }

    fn follower_role(&self) -> Role {
        if self.membership().is_learner(self.cfg.id) {
            Role::Learner
        } else {
            Role::Follower
        }
    }

    fn become_leader(&mut self) {
        self.role = Role::Leader;
        self.leader = self.cfg.id;
        self.votes.clear();
        self.leader_since = self.now;
        self.lease_floor = 0;
        self.heartbeat_elapsed = 0;
        self.transfer = None;
        self.catch_up = None;
        self.progress.clear();
        let next = self.log.last_index() + 1;
        let now = self.now;
        for id in self.membership().all_members() {
            if id != self.cfg.id {
                self.progress.insert(id, Progress::new(next, now));
            }
        }
        // Follower reads queued while we were a follower would wait for a leader
        // that is now us: serve them through our own rounds.
        let queued = std::mem::take(&mut self.reads.follower_unsent);
        for id in queued {
            self.reads.fail(id, ReadError::RetryLater);
        }
        if self.membership_forced {
            self.membership_forced = false;
            let m = self.membership().clone();
            self.memberships.pop();
            let idx = self.append_entry(EntryPayload::Membership(m));
            self.change_final_index = Some(idx);
        } else {
            self.append_entry(EntryPayload::Blank);
        }
        // A stable configuration left uncommitted by the previous leader finishes
        // with ours; a joint one is completed in `on_commit_advanced`.
        let last = &self.memberships[self.memberships.len() - 1];
        // (Index 1 is the bootstrap configuration, not a change.)
        if last.index > 1 && last.index > self.log.commit && !last.membership.is_joint() {
            self.change_final_index = Some(last.index);
        }
    }

    fn reset_election_timeout(&mut self) {
        let et = self.cfg.election_timeout_ticks;
        self.randomized_election_timeout = self.rng.range(et, 2 * et);
    }

    fn send(&mut self, to: NodeId, body: MessageBody, after_persist: bool) {
        let m = Message {
            group: self.cfg.group,
            from: self.cfg.id,
            to,
            term: self.term,
            body,
        };
        if after_persist {
            self.persisted_msgs.push(m);
        } else {
            self.msgs.push(m);
        }
    }

    // ----- Ready ---------------------------------------------------------------------

    /// Collect everything the driver must do now, or `None` when there is nothing
    /// (or a previous ready has not been advanced yet).
    pub fn ready(&mut self) -> Option<Ready> {
        if self.outstanding.is_some() {
            return None;
        }
        self.flush_reads();
        if self.role == Role::Leader {
            let ids: Vec<NodeId> = self.progress.keys().copied().collect();
            let broadcast = std::mem::take(&mut self.commit_broadcast_pending);
            for id in ids {
                // Pipeline: keep sending while the window allows and entries remain.
                for _ in 0..self.cfg.max_inflight_appends {
                    let before = self
                        .progress
                        .get(&id)
                        .map(|p| (p.next_index, p.inflights.len(), p.probe_sent));
                    self.send_append(id, broadcast);
                    let after = self
                        .progress
                        .get(&id)
                        .map(|p| (p.next_index, p.inflights.len(), p.probe_sent));
                    let replicate = self
                        .progress
                        .get(&id)
                        .is_some_and(|p| p.state == ProgressState::Replicate);
                    if before == after || !replicate {
                        break;
                    }
                }
            }
        }
        let mut rd = Ready::default();
        let soft = self.soft_state();
        if self.prev_soft != Some(soft) {
            self.prev_soft = Some(soft);
            rd.soft_state = Some(soft);
        }
        rd.snapshot = self.snapshot_to_install.take();
        if let Some(s) = &rd.snapshot {
            self.outstanding_snapshot = Some(s.meta.last_index);
        }
        rd.entries = self.log.take_unstable();
        let hs = self.hard_state();
        if hs != self.prev_hard {
            if hs.term != self.prev_hard.term || hs.voted_for != self.prev_hard.voted_for {
                rd.must_sync = true;
            }
            rd.hard_state = Some(hs);
            self.prev_hard = hs;
        }
        if !rd.entries.is_empty() || rd.snapshot.is_some() {
            rd.must_sync = true;
        }
        rd.messages = std::mem::take(&mut self.msgs);
        rd.persisted_messages = std::mem::take(&mut self.persisted_msgs);
        // Apply what is committed and already durable here.
        let apply_to = self.log.commit.min(self.log.persisted);
        if apply_to > self.log.applied {
            rd.committed_entries = self.log.range(self.log.applied + 1, apply_to);
            self.log.applied = apply_to;
        }
        self.reads.release_applied(self.log.applied);
        rd.reads = std::mem::take(&mut self.reads.done);
        rd.compacted_to = self.compacted_to.take();
        rd.events = std::mem::take(&mut self.events);
        if rd.is_empty() {
            return None;
        }
        self.outstanding = Some(rd.entries.iter().map(|e| (e.index, e.term)).collect());
        Some(rd)
    }

    /// The driver has executed the last ready (persisted and synced what it had to).
    pub fn advance(&mut self) {
        let Some(written) = self.outstanding.take() else {
            return;
        };
        if let Some(idx) = self.outstanding_snapshot.take() {
            self.log.persisted = self.log.persisted.max(idx);
        }
        for (index, term) in written {
            // Entries truncated meanwhile are re-sent in a later ready.
            if index == self.log.persisted + 1 && self.log.term(index) == Some(term) {
                self.log.persisted = index;
            } else if index > self.log.persisted + 1 {
                break;
            }
        }
        if self.role == Role::Leader {
            self.maybe_commit();
        }
    }

    fn flush_reads(&mut self) {
        if self.role == Role::Leader {
            if self.reads.unassigned.is_empty() {
                return;
            }
            self.broadcast_heartbeat();
            let origins = std::mem::take(&mut self.reads.unassigned);
            self.reads.batches.push_back(LeaderBatch {
                seq: self.reads.seq,
                index: self.log.commit,
                started: self.now,
                origins,
            });
            // A quorum may already be satisfied (e.g. only learners besides us).
            self.release_read_batches();
        } else if !self.reads.follower_unsent.is_empty() {
            if self.leader == NO_NODE {
                let ids = std::mem::take(&mut self.reads.follower_unsent);
                for id in ids {
                    self.reads.fail(
                        id,
                        ReadError::NotLeader {
                            leader_hint: NO_NODE,
                        },
                    );
                }
                return;
            }
            self.reads.next_batch_id = self.reads.next_batch_id.wrapping_add(1);
            let batch_id = self.reads.next_batch_id;
            let ids = std::mem::take(&mut self.reads.follower_unsent);
            let leader = self.leader;
            self.reads
                .follower_batches
                .insert(batch_id, (self.now, leader, ids));
            self.send(leader, MessageBody::ReadIndexRequest { batch_id }, false);
        }
    }
}
