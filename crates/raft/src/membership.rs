//! Group membership and quorum arithmetic, including joint consensus.
//!
//! A [`Membership`] is *stable* (`old_voters` is `None`) or *joint*
//! (C_old,new: `voters` is C_new and `old_voters` is C_old). While joint, every
//! decision that needs a quorum (commit, election, read index, lease, check-quorum)
//! needs a majority of **both** voter sets.

use std::collections::{BTreeMap, BTreeSet};

use crate::types::{Index, NodeId};

/// SOFAJRaft's `ElectionPriority.Disabled`: the node takes part in elections without priority.
pub const PRIORITY_DISABLED: i32 = -1;
/// SOFAJRaft's `ElectionPriority.NotElected`: the node never becomes leader.
pub const PRIORITY_NOT_ELECTED: i32 = 0;

/// Who votes, who only learns, and with which election priority.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Membership {
    /// C_new (or the only configuration when stable).
    pub voters: BTreeSet<NodeId>,
    /// C_old while a joint configuration is in force.
    pub old_voters: Option<BTreeSet<NodeId>>,
    /// Non-voting members: replicated to, never counted.
    pub learners: BTreeSet<NodeId>,
    /// Election priority per node (absent = [`PRIORITY_DISABLED`]).
    pub priorities: BTreeMap<NodeId, i32>,
}

impl Membership {
    /// A stable configuration of `voters` with no learners and no priorities.
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Membership {
            voters: voters.into_iter().collect(),
            ..Membership::default()
        }
    }

    pub fn is_joint(&self) -> bool {
        self.old_voters.is_some()
    }

    /// True when `id` votes in either half of the configuration.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.old_voters.as_ref().is_some_and(|o| o.contains(&id))
    }

    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id) && !self.is_voter(id)
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.learners.contains(&id)
    }

    /// Every member: voters of both halves and learners.
    pub fn all_members(&self) -> BTreeSet<NodeId> {
        let mut all: BTreeSet<NodeId> = self.voters.clone();
        if let Some(old) = &self.old_voters {
            all.extend(old.iter().copied());
        }
        all.extend(self.learners.iter().copied());
        all
    }

    pub fn priority(&self, id: NodeId) -> i32 {
        self.priorities
            .get(&id)
            .copied()
            .unwrap_or(PRIORITY_DISABLED)
    }

    /// The highest priority among the voters of C_new (SOFAJRaft `getMaxPriorityOfNodes`).
    pub fn max_priority(&self) -> i32 {
        self.voters
            .iter()
            .map(|id| self.priority(*id))
            .max()
            .unwrap_or(PRIORITY_DISABLED)
    }

    /// True when every voter set of the configuration is satisfied by `granted`.
    pub fn has_quorum(&self, granted: impl Fn(NodeId) -> bool) -> bool {
        let majority = |set: &BTreeSet<NodeId>| {
            if set.is_empty() {
                return true;
            }
            let votes = set.iter().filter(|id| granted(**id)).count();
            votes > set.len() / 2
        };
        majority(&self.voters) && self.old_voters.as_ref().is_none_or(majority)
    }

    /// True when some voter set can no longer reach a majority because too many
    /// of its members answered "no" (`rejected`).
    pub fn quorum_impossible(&self, rejected: impl Fn(NodeId) -> bool) -> bool {
        let lost = |set: &BTreeSet<NodeId>| {
            let no = set.iter().filter(|id| rejected(**id)).count();
            !set.is_empty() && no >= set.len() / 2 + set.len() % 2
        };
        lost(&self.voters) || self.old_voters.as_ref().is_some_and(lost)
    }

    /// The largest value `v` such that a quorum of every voter set has a value `>= v`.
    /// With `value(id)` = match index this is the commit candidate; with
    /// `value(id)` = ack send tick it is the lease start.
    pub fn quorum_min(&self, value: impl Fn(NodeId) -> u64) -> u64 {
        let committed = |set: &BTreeSet<NodeId>| -> u64 {
            if set.is_empty() {
                return u64::MAX;
            }
            let mut values: Vec<u64> = set.iter().map(|id| value(*id)).collect();
            values.sort_unstable_by(|a, b| b.cmp(a));
            values[set.len() / 2]
        };
        let new = committed(&self.voters);
        match &self.old_voters {
            Some(old) => new.min(committed(old)),
            None => new,
        }
    }

    /// Rough encoded size, used only for batch accounting.
    pub fn approx_bytes(&self) -> usize {
        8 * (self.voters.len()
            + self.old_voters.as_ref().map_or(0, |o| o.len())
            + self.learners.len()
            + 2 * self.priorities.len())
            + 8
    }
}

/// A membership together with the log index of the entry that introduced it
/// (0 for the initial configuration given at bootstrap).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipAt {
    pub index: Index,
    pub membership: Membership,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joint_quorum_needs_both_majorities() {
        let m = Membership {
            voters: [4, 5, 6].into(),
            old_voters: Some([1, 2, 3].into()),
            ..Membership::default()
        };
        assert!(!m.has_quorum(|id| [1, 2, 3].contains(&id)));
        assert!(!m.has_quorum(|id| [4, 5, 6].contains(&id)));
        assert!(m.has_quorum(|id| [1, 2, 4, 5].contains(&id)));
    }

    #[test]
    fn quorum_min_is_the_majority_value() {
        let m = Membership::new([1, 2, 3]);
        assert_eq!(m.quorum_min(|id| [0, 10, 7, 3][id as usize]), 7);
        let joint = Membership {
            voters: [1, 2, 3].into(),
            old_voters: Some([3, 4, 5].into()),
            ..Membership::default()
        };
        assert_eq!(joint.quorum_min(|id| [0, 10, 9, 8, 1, 2][id as usize]), 2);
    }

    #[test]
    fn quorum_impossible_counts_rejections() {
        let m = Membership::new([1, 2, 3, 4]);
        assert!(!m.quorum_impossible(|id| id == 1));
        assert!(m.quorum_impossible(|id| id == 1 || id == 2));
    }
}
