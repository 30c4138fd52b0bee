//! The in-memory view of the replicated log: every entry since the last
//! compaction, plus the bookkeeping of what has been handed to the driver for
//! persistence (`unstable_from`) and what the driver confirmed durable (`persisted`).
//!
//! Architecture invariant: `base_index <= persisted <= last_index` and
//! `commit <= last_index`; entries are contiguous from `base_index + 1`.

use std::collections::VecDeque;

use crate::types::{Entry, Index, Term};

#[derive(Debug)]
pub(crate) struct RaftLog {
    /// The index just before the first retained entry (compacted or snapshot).
    base_index: Index,
    base_term: Term,
    entries: VecDeque<Entry>,
    pub(crate) commit: Index,
    /// Last index handed out for application.
    pub(crate) applied: Index,
    /// Highest index the driver confirmed durable.
    pub(crate) persisted: Index,
    /// First index not yet handed out for persistence.
    pub(crate) unstable_from: Index,
}

impl RaftLog {
    pub(crate) fn new(base_index: Index, base_term: Term) -> Self {
        RaftLog {
            base_index,
            base_term,
            entries: VecDeque::new(),
            commit: base_index,
            applied: base_index,
            persisted: base_index,
            unstable_from: base_index + 1,
        }
    }

    /// Rebuild from durable state after a restart. `entries` must be contiguous
    /// from `base_index + 1`; anything else is refused.
    pub(crate) fn restore(
        base_index: Index,
        base_term: Term,
        entries: Vec<Entry>,
        commit: Index,
        applied: Index,
    ) -> Result<Self, String> {
        for (i, e) in entries.iter().enumerate() {
            if e.index != base_index + 1 + i as u64 {
                return Err(format!(
                    "log entries not contiguous: expected index {} found {}",
                    base_index + 1 + i as u64,
                    e.index
                ));
            }
        }
        let last = base_index + entries.len() as u64;
        let mut log = RaftLog::new(base_index, base_term);
        log.entries = entries.into();
        log.persisted = last;
        log.unstable_from = last + 1;
        log.commit = commit.clamp(base_index, last);
        log.applied = applied.clamp(base_index, log.commit);
        Ok(log)
    }

    pub(crate) fn base_index(&self) -> Index {
        self.base_index
    }

    pub(crate) fn first_index(&self) -> Index {
        self.base_index + 1
    }

    pub(crate) fn last_index(&self) -> Index {
        self.base_index + self.entries.len() as u64
    }

    pub(crate) fn last_term(&self) -> Term {
        self.entries.back().map_or(self.base_term, |e| e.term)
    }

    /// The term of the entry at `index`, if it is known (retained or the base).
    pub(crate) fn term(&self, index: Index) -> Option<Term> {
        if index == self.base_index {
            return Some(self.base_term);
        }
        if index < self.base_index || index > self.last_index() {
            return None;
        }
        Some(self.entries[(index - self.base_index - 1) as usize].term)
    }

    pub(crate) fn entry(&self, index: Index) -> Option<&Entry> {
        if index <= self.base_index || index > self.last_index() {
            return None;
        }
        self.entries.get((index - self.base_index - 1) as usize)
    }

    /// Raft §5.4.1: is a log ending at (`last_index`, `last_term`) at least as up
    /// to date as ours?
    pub(crate) fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// Entries `[lo, ..]` bounded by count and payload bytes (at least one entry
    /// when any exists, so that an oversize entry still moves).
    pub(crate) fn slice(&self, lo: Index, max_entries: usize, max_bytes: usize) -> Vec<Entry> {
        let mut out = Vec::new();
        if lo <= self.base_index {
            return out;
        }
        let mut bytes = 0usize;
        let mut i = lo;
        while i <= self.last_index() && out.len() < max_entries {
            let Some(e) = self.entry(i) else { break };
            let b = e.payload_bytes();
            if !out.is_empty() && bytes + b > max_bytes {
                break;
            }
            bytes += b;
            out.push(e.clone());
            i += 1;
        }
        out
    }

    /// All entries `[lo, hi]` (inclusive), clamped to what is retained.
    pub(crate) fn range(&self, lo: Index, hi: Index) -> Vec<Entry> {
        let lo = lo.max(self.first_index());
        let hi = hi.min(self.last_index());
        (lo..=hi).filter_map(|i| self.entry(i).cloned()).collect()
    }

    /// Leader append: entries must continue the log exactly.
    pub(crate) fn append(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.last_index() + 1);
        self.entries.push_back(entry);
    }

    /// Remove every entry with index `>= from`. Returns true when anything went.
    pub(crate) fn truncate_from(&mut self, from: Index) -> bool {
        assert!(
            from > self.commit,
            "raft: attempt to truncate committed entry {from} (commit {})",
            self.commit
        );
        if from > self.last_index() {
            return false;
        }
        let keep = (from - self.base_index - 1) as usize;
        self.entries.truncate(keep);
        self.persisted = self.persisted.min(from - 1);
        self.unstable_from = self.unstable_from.min(from);
        true
    }

    /// Follower append (Raft §5.3). The caller has checked that the entry at
    /// `entries[0].index - 1` matches. Conflicting suffixes are truncated;
    /// entries already present are skipped. Returns the index of the last entry
    /// of the request, which now matches the leader.
    pub(crate) fn append_matching(&mut self, entries: Vec<Entry>) -> Index {
        let mut last = 0;
        for e in entries {
            last = e.index;
            if e.index <= self.base_index {
                continue;
            }
            match self.term(e.index) {
                Some(t) if t == e.term => continue,
                Some(_) => {
                    self.truncate_from(e.index);
                    self.entries.push_back(e);
                }
                None => {
                    if e.index != self.last_index() + 1 {
                        // A gap: the caller's prev check makes this unreachable.
                        debug_assert!(false, "raft: gap in follower append");
                        return self.last_index();
                    }
                    self.entries.push_back(e);
                }
            }
        }
        last
    }

    /// Fast-backtracking hint for a rejected append at `prev_index`: the first
    /// index of our term at `prev_index` (clamped to the base), or our last index
    /// + 1 with term 0 when our log is shorter.
    pub(crate) fn conflict_hint(&self, prev_index: Index) -> (Index, Term) {
        if prev_index > self.last_index() {
            return (self.last_index() + 1, 0);
        }
        let Some(t) = self.term(prev_index) else {
            return (self.base_index + 1, 0);
        };
        let mut i = prev_index;
        while i > self.base_index + 1 && self.term(i - 1) == Some(t) {
            i -= 1;
        }
        (i, t)
    }

    /// Leader side of fast backtracking: the last index of `term` in our log, if any.
    pub(crate) fn last_index_of_term(&self, term: Term) -> Option<Index> {
        let mut i = self.last_index();
        while i > self.base_index {
            let t = self.term(i)?;
            if t == term {
                return Some(i);
            }
            if t < term {
                return None;
            }
            i -= 1;
        }
        None
    }

    /// Drop entries `<= to` (after a snapshot). Never drops unapplied entries.
    pub(crate) fn compact(&mut self, to: Index) -> bool {
        let to = to.min(self.applied).min(self.persisted);
        if to <= self.base_index {
            return false;
        }
        let Some(term) = self.term(to) else {
            return false;
        };
        let n = (to - self.base_index) as usize;
        self.entries.drain(..n);
        self.base_index = to;
        self.base_term = term;
        true
    }

    /// Replace the whole log by a snapshot ending at (`index`, `term`).
    pub(crate) fn reset_to_snapshot(&mut self, index: Index, term: Term) {
        self.entries.clear();
        self.base_index = index;
        self.base_term = term;
        self.commit = index;
        self.applied = index;
        self.persisted = index;
        self.unstable_from = index + 1;
    }

    /// Entries not yet handed out for persistence; marks them handed out.
    pub(crate) fn take_unstable(&mut self) -> Vec<Entry> {
        let out = self.range(self.unstable_from, self.last_index());
        self.unstable_from = self.last_index() + 1;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryPayload;

    fn e(index: Index, term: Term) -> Entry {
        Entry {
            index,
            term,
            payload: EntryPayload::Blank,
        }
    }

    #[test]
    fn append_truncates_conflicts_only() {
        let mut log = RaftLog::new(0, 0);
        for (i, t) in [(1, 1), (2, 1), (3, 2)] {
            log.append(e(i, t));
        }
        // Same entries: nothing changes.
        assert_eq!(log.append_matching(vec![e(2, 1), e(3, 2)]), 3);
        assert_eq!(log.last_index(), 3);
        // Conflict at 3.
        assert_eq!(log.append_matching(vec![e(3, 3), e(4, 3)]), 4);
        assert_eq!(log.term(3), Some(3));
        assert_eq!(log.last_index(), 4);
    }

    #[test]
    fn conflict_hint_skips_a_whole_term() {
        let mut log = RaftLog::new(0, 0);
        for (i, t) in [(1, 1), (2, 2), (3, 2), (4, 2)] {
            log.append(e(i, t));
        }
        assert_eq!(log.conflict_hint(4), (2, 2));
        assert_eq!(log.conflict_hint(9), (5, 0));
        assert_eq!(log.last_index_of_term(2), Some(4));
        assert_eq!(log.last_index_of_term(3), None);
    }

    #[test]
    fn compact_keeps_unapplied_entries() {
        let mut log = RaftLog::new(0, 0);
        for i in 1..=5 {
            log.append(e(i, 1));
        }
        log.persisted = 5;
        log.commit = 4;
        log.applied = 3;
        assert!(log.compact(5));
        assert_eq!(log.base_index(), 3);
        assert_eq!(log.term(3), Some(1));
        assert_eq!(log.term(2), None);
    }

    #[test]
    fn restore_refuses_gaps() {
        assert!(RaftLog::restore(0, 0, vec![e(1, 1), e(3, 1)], 0, 0).is_err());
        let log = RaftLog::restore(2, 1, vec![e(3, 1)], 9, 9).expect("contiguous");
        assert_eq!(log.commit, 3);
        assert_eq!(log.applied, 3);
    }
}
