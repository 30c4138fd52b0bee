//! Safety invariants checked after every simulation event (Raft paper, Figure 3):
//! election safety, log matching, leader completeness, state machine safety, and
//! monotonic term / commit / applied per node incarnation.

use std::collections::BTreeMap;

use rhea_raft::{Entry, Index, NodeId, RaftNode, Ready, Role, Term};

use crate::sim::digest;

#[derive(Clone, Copy, Debug, Default)]
struct Watch {
    term: Term,
    commit: Index,
    applied: Index,
}

#[derive(Default)]
pub struct Invariants {
    /// term -> the one leader of that term.
    leaders: BTreeMap<Term, NodeId>,
    /// index -> term of every entry known committed (by any node).
    committed: BTreeMap<Index, Term>,
    /// (index, term) -> (payload digest, term of the previous entry).
    entries: BTreeMap<(Index, Term), (u64, Option<Term>)>,
    /// index -> (term, digest) of every entry applied by any node.
    applied: BTreeMap<Index, (Term, u64)>,
    watch: BTreeMap<NodeId, Watch>,
}

impl Invariants {
    /// A node (re)started: its volatile watermarks begin again.
    pub fn node_started(&mut self, id: NodeId) {
        self.watch.insert(id, Watch::default());
    }

    /// Checks on a ready batch before the driver executes it.
    pub fn check_ready(
        &mut self,
        id: NodeId,
        raft: Option<&RaftNode>,
        rd: &Ready,
    ) -> Result<(), String> {
        let Some(raft) = raft else { return Ok(()) };
        self.after_event(id, Some(raft))?;
        let mut prev: Option<Term> = rd.entries.first().and_then(|e| raft.term_at(e.index - 1));
        for e in &rd.entries {
            let d = digest(e);
            match self.entries.get(&(e.index, e.term)) {
                Some((d0, p0)) => {
                    if *d0 != d {
                        return Err(format!(
                            "log matching violated: node {id} has a different entry at index {} term {}",
                            e.index, e.term
                        ));
                    }
                    if let (Some(p0), Some(p)) = (p0, prev)
                        && *p0 != p
                    {
                        return Err(format!(
                            "log matching violated: node {id} entry ({}, {}) follows term {p}, elsewhere term {p0}",
                            e.index, e.term
                        ));
                    }
                }
                None => {
                    self.entries.insert((e.index, e.term), (d, prev));
                }
            }
            prev = Some(e.term);
        }
        if let Some(ss) = rd.soft_state
            && ss.role == Role::Leader
        {
            if let Some(other) = self.leaders.get(&ss.term)
                && *other != id
            {
                return Err(format!(
                    "election safety violated: nodes {other} and {id} both lead term {}",
                    ss.term
                ));
            }
            self.leaders.insert(ss.term, id);
            // Leader completeness: every committed entry is in the new leader's log.
            let base = raft.first_index().saturating_sub(1);
            for (&i, &t) in self.committed.iter() {
                if i <= base {
                    continue;
                }
                match raft.term_at(i) {
                    Some(lt) if lt == t => {}
                    other => {
                        return Err(format!(
                            "leader completeness violated: leader {id} of term {} has {:?} at committed index {i} (term {t})",
                            ss.term, other
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Monotonicity and commit bookkeeping after a node handled an event.
    pub fn after_event(&mut self, id: NodeId, raft: Option<&RaftNode>) -> Result<(), String> {
        let Some(raft) = raft else { return Ok(()) };
        let w = self.watch.entry(id).or_default();
        let (term, commit, applied) = (raft.term(), raft.commit_index(), raft.applied_index());
        if term < w.term {
            return Err(format!(
                "node {id}: term went back from {} to {term}",
                w.term
            ));
        }
        if commit < w.commit {
            return Err(format!(
                "node {id}: commit index went back from {} to {commit}",
                w.commit
            ));
        }
        if applied < w.applied {
            return Err(format!(
                "node {id}: applied index went back from {} to {applied}",
                w.applied
            ));
        }
        let from = w.commit + 1;
        *w = Watch {
            term,
            commit,
            applied,
        };
        for i in from..=commit {
            let Some(t) = raft.term_at(i) else { continue };
            match self.committed.get(&i) {
                Some(t0) if *t0 != t => {
                    return Err(format!(
                        "state machine safety violated: node {id} committed index {i} with term {t}, another node with term {t0}"
                    ));
                }
                Some(_) => {}
                None => {
                    self.committed.insert(i, t);
                }
            }
        }
        Ok(())
    }

    /// State machine safety: every node applies the same entry at each index.
    pub fn applied(&mut self, id: NodeId, e: &Entry) -> Result<(), String> {
        let d = digest(e);
        match self.applied.get(&e.index) {
            Some((t, d0)) if *t != e.term || *d0 != d => Err(format!(
                "state machine safety violated: node {id} applied ({}, term {}) but another node applied term {t} there",
                e.index, e.term
            )),
            Some(_) => Ok(()),
            None => {
                self.applied.insert(e.index, (e.term, d));
                Ok(())
            }
        }
    }
}
