//! What the leader knows about each follower and learner (SOFAJRaft's
//! `Replicator`, raft-rs's `Progress`).
//!
//! States: **Probe** sends one AppendEntries at a time until a match is found;
//! **Replicate** pipelines up to `max_inflight_appends` messages optimistically;
//! **Snapshot** streams a snapshot in chunks because the entries the follower
//! needs were compacted.

use std::collections::VecDeque;

use crate::types::{Index, Term, Tick};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    Probe,
    Replicate,
    Snapshot,
}

/// An InstallSnapshot transfer in progress to one follower.
#[derive(Clone, Debug)]
pub(crate) struct SnapshotSend {
    pub last_index: Index,
    pub last_term: Term,
    /// Bytes the follower confirmed it holds.
    pub acked_offset: u64,
    /// A chunk is in flight; wait for its answer (stop-and-wait).
    pub in_flight: bool,
    pub last_send_tick: Tick,
}

#[derive(Clone, Debug)]
pub(crate) struct Progress {
    pub match_index: Index,
    pub next_index: Index,
    pub state: ProgressState,
    /// Probe state: an append is outstanding.
    pub probe_sent: bool,
    /// Replicate state: the last index of each append in flight, oldest first.
    pub inflights: VecDeque<Index>,
    /// Highest `send_tick` this peer echoed back in this term (0: none yet).
    pub acked_send_tick: Tick,
    /// Highest read index round this peer acknowledged.
    pub read_seq_acked: u64,
    /// Tick of the last message of any kind received from this peer.
    pub last_response_tick: Tick,
    /// Tick since which the oldest in-flight append has waited for an answer.
    pub inflight_since: Tick,
    pub snapshot: Option<SnapshotSend>,
}

impl Progress {
    pub(crate) fn new(next_index: Index, now: Tick) -> Self {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflights: VecDeque::new(),
            acked_send_tick: 0,
            read_seq_acked: 0,
            last_response_tick: now,
            inflight_since: now,
            snapshot: None,
        }
    }

    pub(crate) fn become_probe(&mut self) {
        // After a snapshot the follower holds at least the snapshot's last index.
        if let Some(s) = self.snapshot.take() {
            self.match_index = self.match_index.max(s.last_index);
        }
        self.state = ProgressState::Probe;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.inflights.clear();
    }

    pub(crate) fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.next_index = self.match_index + 1;
        self.probe_sent = false;
        self.inflights.clear();
        self.snapshot = None;
    }

    pub(crate) fn become_snapshot(&mut self, last_index: Index, last_term: Term) {
        self.state = ProgressState::Snapshot;
        self.inflights.clear();
        self.probe_sent = false;
        self.snapshot = Some(SnapshotSend {
            last_index,
            last_term,
            acked_offset: 0,
            in_flight: false,
            last_send_tick: 0,
        });
    }

    /// A success response up to `index`. Returns true when it told us something new.
    pub(crate) fn maybe_update(&mut self, index: Index) -> bool {
        let updated = index > self.match_index;
        if updated {
            self.match_index = index;
        }
        self.next_index = self.next_index.max(index + 1);
        // Free every in-flight append the follower has now covered.
        while self.inflights.front().is_some_and(|last| *last <= index) {
            self.inflights.pop_front();
        }
        updated
    }

    /// Is sending more appends allowed right now?
    pub(crate) fn can_send(&self, max_inflight: usize) -> bool {
        match self.state {
            ProgressState::Probe => !self.probe_sent,
            ProgressState::Replicate => self.inflights.len() < max_inflight,
            ProgressState::Snapshot => false,
        }
    }

    /// Record an append covering up to `last` just sent.
    pub(crate) fn sent_append(&mut self, last: Index, non_empty: bool) {
        match self.state {
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Replicate => {
                if non_empty {
                    self.next_index = last + 1;
                    self.inflights.push_back(last);
                }
            }
            ProgressState::Snapshot => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inflight_window_fills_and_frees() {
        let mut p = Progress::new(1, 0);
        p.become_replicate();
        for last in [2, 4, 6] {
            assert!(p.can_send(3));
            p.sent_append(last, true);
        }
        assert!(!p.can_send(3));
        assert!(p.maybe_update(4));
        assert_eq!(p.inflights.len(), 1);
        assert!(p.can_send(3));
        assert_eq!(p.next_index, 7);
    }

    #[test]
    fn probe_sends_one_at_a_time() {
        let mut p = Progress::new(5, 0);
        assert!(p.can_send(256));
        p.sent_append(9, true);
        assert!(!p.can_send(256));
        p.become_probe();
        assert!(p.can_send(256));
        assert_eq!(p.next_index, 1);
    }
}
