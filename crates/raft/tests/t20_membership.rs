//! Paper tests for membership changes (Raft §6: joint consensus), learners and
//! leader transfer (Raft thesis §3.10, SOFAJRaft TimeoutNow).

mod harness;

use std::collections::BTreeSet;

use harness::*;
use rhea_raft::{
    AdminError, Bootstrap, Entry, EntryPayload, Event, Membership, MessageBody, NodeId,
    ProposeError, Role,
};

/// Every membership entry in `id`'s log, in order: (index, membership).
fn membership_entries(net: &Network, id: NodeId) -> Vec<(u64, Membership)> {
    let n = net.node(id);
    (n.first_index()..=n.last_index())
        .filter_map(|i| match n.entry_at(i) {
            Some(Entry {
                payload: EntryPayload::Membership(m),
                index,
                ..
            }) => Some((*index, m.clone())),
            _ => None,
        })
        .collect()
}

fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
    ids.iter().copied().collect()
}

/// MembershipChangeDone events of `id` after its first `mark` events.
fn done_events(net: &Network, id: NodeId, mark: usize) -> Vec<Membership> {
    net.peer(id).events[mark..]
        .iter()
        .filter_map(|e| match e {
            Event::MembershipChangeDone { membership } => Some(membership.clone()),
            _ => None,
        })
        .collect()
}

fn join(net: &mut Network, id: NodeId) {
    net.add(config(id), Bootstrap::Join);
}

#[test]
fn add_voter_goes_through_joint_consensus() {
    let mut net = Network::new(&[1, 2, 3]);
    let l = net.elect_any();
    join(&mut net, 4);
    let ev = net.peer(l).events.len();
    net.node_mut(l).add_voter(4).expect("add voter");
    net.process(l);
    net.tick_all(5);

    let entries = membership_entries(&net, l);
    // Bootstrap, then C_old,new, then C_new.
    assert_eq!(entries.len(), 3, "{entries:?}");
    let (ji, joint) = &entries[1];
    let (si, stable) = &entries[2];
    assert!(ji < si);
    assert_eq!(joint.voters, set(&[1, 2, 3, 4]));
    assert_eq!(joint.old_voters, Some(set(&[1, 2, 3])));
    assert!(joint.is_joint());
    assert_eq!(stable.voters, set(&[1, 2, 3, 4]));
    assert!(!stable.is_joint());
    assert_eq!(done_events(&net, l, ev), vec![stable.clone()]);
    for id in 1..=4 {
        assert_eq!(net.node(id).membership(), stable, "node {id}");
        assert!(net.node(id).commit_index() >= *si, "node {id}");
        assert!(!net.node(id).membership_change_pending() || id != l);
    }
    assert_eq!(net.role(4), Role::Follower);
    // The new voter counts: with two old voters gone, 1 + 4 are not enough of 4
    // voters, but three of four are.
    let others: Vec<NodeId> = [1, 2, 3].into_iter().filter(|id| *id != l).collect();
    net.isolate(others[0]);
    let idx = net.propose(l, "three of four");
    net.tick_all(2);
    assert!(net.node(l).commit_index() >= idx);
    net.isolate(others[1]);
    let idx = net.propose(l, "two of four");
    net.tick_all(2);
    assert!(net.node(l).commit_index() < idx);
}

fn is_joint_append(m: &rhea_raft::Message) -> bool {
    match &m.body {
        MessageBody::AppendEntries { entries, .. } => entries
            .iter()
            .any(|e| matches!(&e.payload, EntryPayload::Membership(m) if m.is_joint())),
        _ => false,
    }
}

#[test]
fn joint_configuration_needs_both_majorities() {
    // {1,2,3} -> {1,4,5}: while joint, a majority of each half is needed.
    let mut net = Network::new(&[1, 2, 3]);
    let l = net.campaign(1);
    assert_eq!(l, 1);
    join(&mut net, 4);
    join(&mut net, 5);
    // 4 and 5 catch up, but the joint entry never reaches them.
    net.set_filter(|m| !((m.to == 4 || m.to == 5) && is_joint_append(m)));
    let ev = net.peer(1).events.len();
    net.node_mut(1)
        .change_membership(set(&[1, 4, 5]), BTreeSet::new())
        .expect("change");
    net.process(1);
    net.tick_all(3);
    // The joint entry is in the log of 1, 2, 3 (all of C_old) but not committed:
    // C_new = {1,4,5} has only 1.
    let entries = membership_entries(&net, 1);
    let (ji, joint) = entries.last().expect("joint entry").clone();
    assert!(joint.is_joint());
    assert_eq!(joint.old_voters, Some(set(&[1, 2, 3])));
    for id in [2, 3] {
        assert!(net.node(id).last_index() >= ji);
        assert!(net.node(id).membership().is_joint());
    }
    for id in [4, 5] {
        assert!(net.node(id).last_index() < ji);
    }
    assert!(net.node(1).commit_index() < ji);
    assert!(net.node(1).membership_change_pending());
    // One member of C_new makes both majorities.
    net.set_filter(|m| !(m.to == 5 && is_joint_append(m)));
    net.tick_all(3);
    assert!(net.node(1).commit_index() > ji);
    let stable = net.node(1).membership().clone();
    assert_eq!(stable.voters, set(&[1, 4, 5]));
    assert!(!stable.is_joint());
    assert_eq!(done_events(&net, 1, ev), vec![stable]);
}

#[test]
fn removed_leader_steps_down_after_c_new_commits() {
    let mut net = Network::new(&[1, 2, 3]);
    let l = net.elect_any();
    let term = net.node(l).term();
    let ev = net.peer(l).events.len();
    net.node_mut(l).remove_voter(l).expect("remove leader");
    net.process(l);
    // While the change is in flight it keeps leading (it is in C_old).
    assert!(net.node(l).is_leader());
    net.deliver_all();
    net.tick_all(2);
    let entries = membership_entries(&net, l);
    let (si, stable) = entries.last().expect("C_new").clone();
    let remaining: Vec<NodeId> = [1, 2, 3].into_iter().filter(|id| *id != l).collect();
    assert_eq!(stable.voters, set(&remaining));
    assert!(!stable.is_joint());
    assert!(entries[entries.len() - 2].1.is_joint());
    // It stepped down only once C_new committed, and said so.
    assert!(!net.node(l).is_leader());
    assert!(net.node(l).commit_index() >= si);
    assert_eq!(done_events(&net, l, ev), vec![stable.clone()]);
    assert_eq!(net.node(l).term(), term);
    // The others elect a leader among themselves; the old one never campaigns.
    let mark = net.sent.len();
    let new = net
        .tick_until(40 * ET, |net| net.leader().is_some_and(|x| x != l))
        .map(|_| net.leader().expect("leader"));
    let new = new.expect("remaining voters elect a leader");
    assert!(remaining.contains(&new));
    net.tick_all(20 * ET);
    assert!(!net.node(l).is_leader());
    assert_eq!(
        net.count_sent(mark, |m| m.from == l && (is_pre_vote(m) || is_vote(m))),
        0
    );
    let idx = net.propose(new, "after removal");
    net.tick_all(2);
    for id in &remaining {
        assert!(net.node(*id).commit_index() >= idx);
    }
}

#[test]
fn learner_is_added_replicated_to_and_promoted() {
    let mut net = Network::new(&[1, 2, 3]);
    let l = net.elect_any();
    net.propose(l, "before");
    net.tick_all(1);
    join(&mut net, 4);
    let ev = net.peer(l).events.len();
    net.node_mut(l).add_learner(4).expect("add learner");
    net.process(l);
    net.tick_all(3);
    // Voters unchanged: one stable entry, no joint configuration.
    let entries = membership_entries(&net, l);
    let (_, m) = entries.last().expect("entry").clone();
    assert!(!m.is_joint());
    assert_eq!(m.voters, set(&[1, 2, 3]));
    assert_eq!(m.learners, set(&[4]));
    assert!(entries.iter().all(|(_, m)| !m.is_joint()));
    assert_eq!(done_events(&net, l, ev), vec![m.clone()]);
    assert_eq!(net.role(4), Role::Learner);
    // It replicates and applies everything.
    let idx = net.propose(l, "for the learner");
    net.tick_all(2);
    assert_eq!(net.peer(4).applied_index, idx);
    assert_eq!(
        net.peer(4).applied_data(),
        vec![
            bytes::Bytes::from("before"),
            bytes::Bytes::from("for the learner")
        ]
    );
    // A learner never campaigns, even when the voters are gone.
    let mark = net.sent.len();
    net.isolate(l);
    net.tick_all(5 * ET);
    assert_eq!(
        net.count_sent(mark, |m| m.from == 4 && (is_pre_vote(m) || is_vote(m))),
        0
    );
    assert!(!net.node(4).is_leader());
    net.heal();
    let l = net.elect_any();

    // Promotion goes through a joint configuration.
    net.node_mut(l).promote_learner(4).expect("promote");
    net.process(l);
    net.tick_all(3);
    let entries = membership_entries(&net, l);
    let (_, joint) = &entries[entries.len() - 2];
    let (_, stable) = &entries[entries.len() - 1];
    assert_eq!(joint.old_voters, Some(set(&[1, 2, 3])));
    assert_eq!(joint.voters, set(&[1, 2, 3, 4]));
    assert_eq!(stable.voters, set(&[1, 2, 3, 4]));
    assert!(stable.learners.is_empty());
    assert_eq!(net.role(4), Role::Follower);
    assert_eq!(net.node(4).membership(), stable);
}

#[test]
fn leader_transfer_to_a_caught_up_follower() {
    let mut net = Network::new(&[1, 2, 3]);
    let l = net.elect_any();
    let term = net.node(l).term();
    for i in 0..3 {
        net.propose(l, format!("e{i}"));
    }
    net.tick_all(2);
    let target = if l == 1 { 2 } else { 1 };
    let mark = net.sent.len();
    net.node_mut(l).transfer_leader(target).expect("transfer");
    net.process(l);
    net.deliver_all();
    assert_eq!(net.leader(), Some(target));
    assert_eq!(net.node(target).term(), term + 1);
    assert_eq!(net.role(l), Role::Follower);
    assert_eq!(net.node(l).leader(), target);
    // Through TimeoutNow and a vote that may ignore the leader lease.
    assert_eq!(
        net.count_sent(mark, |m| m.from == l
            && m.to == target
            && m.body == MessageBody::TimeoutNow),
        1
    );
    assert!(net.sent_since(mark).iter().any(|m| matches!(
        m.body,
        MessageBody::RequestVote {
            leader_transfer: true,
            ..
        }
    )));
    // No pre-vote round was needed.
    assert_eq!(net.count_sent(mark, is_pre_vote), 0);
    let idx = net.propose(target, "new leader");
    net.tick_all(2);
    for id in [1, 2, 3] {
        assert!(net.node(id).commit_index() >= idx);
    }
}

#[test]
fn leader_transfer_waits_for_the_target_to_catch_up_and_aborts_on_timeout() {
    let mut net = Network::new(&[1, 2, 3]);
    let l = net.elect_any();
    let term = net.node(l).term();
    let target = if l == 1 { 2 } else { 1 };
    net.isolate(target);
    let idx = net.propose(l, "target lacks this");
    net.tick_all(2);
    assert!(net.node(target).last_index() < idx);
    let mark = net.sent.len();
    net.node_mut(l).transfer_leader(target).expect("transfer");
    net.process(l);
    // While transferring, the leader refuses proposals.
    assert_eq!(
        net.node_mut(l).propose("x".into()),
        Err(ProposeError::Transferring)
    );
    net.tick_all(ET + 1);
    // The target never caught up: no TimeoutNow, and the transfer gave up.
    assert_eq!(
        net.count_sent(mark, |m| m.body == MessageBody::TimeoutNow),
        0
    );
    assert!(
        net.peer(l)
            .events
            .contains(&rhea_raft::Event::LeaderTransferAborted { target })
    );
    assert!(net.node(l).is_leader());
    assert_eq!(net.node(l).term(), term);
    assert!(!net.node(l).transferring_leadership());
    net.propose(l, "accepted again");
}

#[test]
fn leader_transfer_is_refused_while_a_membership_change_is_pending() {
    // Catch-up pending (new voter 4 does not exist yet, margin 0).
    let mut net = Network::with_config(&[1, 2, 3], |c| c.catchup_margin_entries = 0);
    let l = net.elect_any();
    let target = if l == 1 { 2 } else { 1 };
    net.node_mut(l).add_voter(4).expect("add voter");
    assert!(net.node(l).membership_change_pending());
    assert_eq!(
        net.node_mut(l).transfer_leader(target),
        Err(AdminError::ChangeInProgress)
    );
    // And a second change is refused too.
    assert_eq!(
        net.node_mut(l).add_voter(5),
        Err(AdminError::ChangeInProgress)
    );

    // Joint entry appended (node 4 caught up) but not committed (the old
    // voters' acknowledgements are lost).
    let mut net = Network::new(&[1, 2, 3]);
    let l = net.elect_any();
    let target = if l == 1 { 2 } else { 1 };
    join(&mut net, 4);
    net.set_filter(|m| !(is_append_response(m) && m.from != 4));
    net.node_mut(l).add_voter(4).expect("add voter");
    net.process(l);
    net.tick_all(2);
    assert!(net.node(l).membership().is_joint());
    assert!(net.node(l).membership_change_pending());
    assert_eq!(
        net.node_mut(l).transfer_leader(target),
        Err(AdminError::ChangeInProgress)
    );
    assert!(!net.node(l).transferring_leadership());

    // Conversely, a change is refused while a transfer is in progress.
    let mut net = Network::new(&[1, 2, 3]);
    let l = net.elect_any();
    let target = if l == 1 { 2 } else { 1 };
    net.isolate(target);
    net.propose(l, "x");
    net.node_mut(l).transfer_leader(target).expect("transfer");
    assert_eq!(net.node_mut(l).add_voter(4), Err(AdminError::Transferring));
}

#[test]
fn membership_change_aborts_when_the_new_voter_never_catches_up() {
    let mut net = Network::with_config(&[1, 2, 3], |c| c.catchup_margin_entries = 0);
    let l = net.elect_any();
    let before = net.node(l).membership().clone();
    // Node 4 does not exist: it can never catch up.
    net.node_mut(l).add_voter(4).expect("add voter");
    net.process(l);
    net.tick_all(2 * ET);
    assert!(
        net.peer(l)
            .events
            .iter()
            .any(|e| matches!(e, Event::MembershipChangeAborted { .. }))
    );
    assert_eq!(net.node(l).membership(), &before);
    assert!(!net.node(l).membership_change_pending());
    assert_eq!(membership_entries(&net, l).len(), 1);
    // A later change works.
    join(&mut net, 4);
    net.node_mut(l).add_voter(4).expect("add voter again");
    net.process(l);
    net.tick_all(5);
    assert_eq!(net.node(l).membership().voters, set(&[1, 2, 3, 4]));
}

#[test]
fn a_new_leader_finishes_a_joint_change_of_its_predecessor() {
    let mut net = Network::new(&[1, 2, 3]);
    let l = net.elect_any();
    join(&mut net, 4);
    // Node 4 first catches up as a learner, then is promoted.
    net.node_mut(l).add_learner(4).expect("add learner");
    net.process(l);
    net.tick_all(3);
    net.node_mut(l).promote_learner(4).expect("promote");
    net.process(l);
    let ji = net.node(l).last_index();
    assert!(net.node(l).membership().is_joint());
    // C_old,new reaches everyone and commits; C_new (next index) never leaves the leader.
    net.set_filter(move |m| !append_indexes(m).contains(&(ji + 1)));
    net.tick_all(2);
    assert!(net.node(l).commit_index() >= ji);
    assert_eq!(net.node(l).last_index(), ji + 1);
    for id in (1..=4).filter(|id| *id != l) {
        assert!(net.node(id).membership().is_joint(), "node {id}");
    }
    net.crash(l);
    net.heal();
    net.tick_until(60 * ET, |net| net.leader().is_some())
        .expect("a new leader");
    let new = net.leader().expect("leader");
    net.tick_all(3);
    let m = net.node(new).membership().clone();
    assert!(!m.is_joint(), "joint configuration left behind: {m:?}");
    assert_eq!(m.voters, set(&[1, 2, 3, 4]));
    assert_eq!(done_events(&net, new, 0).last(), Some(&m));
    net.restart(l);
    net.tick_all(3 * ET);
    assert_eq!(net.node(l).membership(), &m);
    net.check_log_matching();
}

#[test]
fn a_removed_server_does_not_disrupt_the_cluster() {
    // Raft §6: a server removed while partitioned never learns it; its
    // election attempts must not disturb the remaining configuration.
    let mut net = Network::new(&[1, 2, 3]);
    let l = net.campaign(1);
    assert_eq!(l, 1);
    net.isolate(3);
    net.node_mut(1).remove_voter(3).expect("remove");
    net.process(1);
    net.tick_all(3);
    assert_eq!(net.node(1).membership().voters, set(&[1, 2]));
    assert!(!net.node(1).membership_change_pending());
    assert!(
        net.node(3).membership().is_voter(3),
        "node 3 never heard of it"
    );
    let term = net.node(1).term();
    net.heal();
    let mark = net.sent.len();
    net.tick_all(30 * ET);
    assert!(net.count_sent(mark, |m| m.from == 3 && is_pre_vote(m)) > 0);
    assert_eq!(net.count_sent(mark, |m| m.from == 3 && is_vote(m)), 0);
    assert_eq!(net.leader(), Some(1));
    assert_eq!(net.node(1).term(), term);
    assert_eq!(net.node(2).term(), term);
}

#[test]
fn a_truncated_configuration_entry_is_rolled_back() {
    // Node 2 holds an uncommitted configuration entry (index 3, term 2) from a
    // deposed leader; the leader of term 3 never had it. A configuration takes
    // effect when appended (§6), so truncating it must restore the previous one.
    let m = Membership::new([1, 2, 3]);
    let mut stale = log_with_terms(&m, &[2]);
    stale.push(Entry {
        index: 3,
        term: 2,
        payload: EntryPayload::Membership(Membership::new([1, 2, 3, 4])),
    });
    let states = vec![
        (1, restore_state(log_with_terms(&m, &[2, 3]), 3, 2)),
        (2, restore_state(stale, 3, 2)),
        (3, restore_state(log_with_terms(&m, &[2, 3]), 3, 2)),
    ];
    let mut net = Network::restored(states, |c| {
        if c.id != 1 {
            c.election_priority = rhea_raft::PRIORITY_NOT_ELECTED;
        }
    });
    assert_eq!(net.node(2).membership().voters, set(&[1, 2, 3, 4]));
    net.tick_until(30 * ET, |net| net.leader() == Some(1))
        .expect("elected");
    net.tick_all(3);
    assert_eq!(net.log_terms(2), net.log_terms(1));
    assert_eq!(net.node(2).membership(), &m);
    assert!(!net.node(2).membership_change_pending());
}

/// Regression (bug found by `membership_changes_under_random_faults`, salt
/// 4510): a voter refused every pre-vote from a candidate missing from *its own*
/// configuration, even when that configuration was stale. Here node 2 lagged
/// behind two changes (it only holds {1,2,5}); nodes 3 and 4 hold
/// C_old,new = {2,4}/{2,3,4}, whose {2,4} half needs node 2's vote. Node 2
/// refused both (neither is in {1,2,5}) and the group could never elect a
/// leader again, although all three were up and connected. (The real vote has
/// no such check, as in Raft.) Fixed in node.rs (`handle_pre_vote`): a
/// candidate whose log is strictly more up to date than ours may be a voter of
/// a configuration we have not received, so our stale view does not veto it.
#[test]
fn a_lagging_voter_with_a_stale_configuration_does_not_block_elections() {
    let old = Membership::new([1, 2, 5]);
    let mid = Membership::new([2, 3, 4]);
    let joint_mid = Membership {
        old_voters: Some(set(&[1, 2, 5])),
        ..mid.clone()
    };
    let joint_new = Membership {
        old_voters: Some(set(&[2, 3, 4])),
        ..Membership::new([2, 4])
    };
    let conf = |index, m: &Membership| Entry {
        index,
        term: 2,
        payload: EntryPayload::Membership(m.clone()),
    };
    let ahead = vec![
        bootstrap_entry(&old),
        conf(2, &joint_mid),
        conf(3, &mid),
        conf(4, &joint_new),
    ];
    let states = vec![
        (2, restore_state(vec![bootstrap_entry(&old)], 1, 1)),
        (3, restore_state(ahead.clone(), 2, 3)),
        (4, restore_state(ahead, 2, 3)),
    ];
    let mut net = Network::restored(states, |_| {});
    assert!(!net.node(2).membership().is_voter(3) && !net.node(2).membership().is_voter(4));
    net.tick_until(60 * ET, |net| !net.leaders.is_empty())
        .expect("nodes 3 and 4 need node 2's vote, and must get it");
    let (_, first) = net.leaders.first_key_value().expect("a leader");
    assert!(*first == 3 || *first == 4, "first leader {first}");
    // The change completes ({2,4}; node 3 leaves, stepping down if it led) and
    // node 2 catches up.
    let m = Membership::new([2, 4]);
    net.tick_until(60 * ET, |net| {
        net.leader().is_some_and(|l| {
            net.node(l).membership() == &m && !net.node(l).membership_change_pending()
        })
    })
    .expect("change completed");
    net.tick_all(3);
    let l = net.leader().expect("leader");
    assert!(l == 2 || l == 4);
    for id in [2, 4] {
        assert_eq!(net.node(id).membership(), &m, "node {id}");
        assert_eq!(net.log_terms(id), net.log_terms(l), "node {id}");
    }
}

/// Regression (bug found by these tests): `maybe_finish_catch_up` treated a new
/// voter with `match_index == 0` (never heard from) as caught up whenever the
/// leader's last index was within `catchup_margin_entries` (1000 by default),
/// so an unreachable or not-yet-started node was made a voter at once. With a
/// later change this deadlocked a group for good: e.g. voters {1,3,5} with 5
/// never started, then removing 3 gives C_old,new = {1,5}/{1,3,5}, and once the
/// leader is lost no one can be elected without 5, which (empty, knowing no
/// configuration) refuses every pre-vote. Found by
/// `membership_changes_under_random_faults`. Fixed in node.rs: a voter that
/// never acknowledged anything has not caught up.
#[test]
fn a_voter_that_never_answered_is_not_added() {
    let mut net = Network::new(&[1, 2, 3]);
    let l = net.elect_any();
    let before = net.node(l).membership().clone();
    let ev = net.peer(l).events.len();
    // Node 4 does not exist; the log is far shorter than the default margin.
    assert!(net.node(l).last_index() < 1000);
    net.node_mut(l).add_voter(4).expect("add voter");
    net.process(l);
    assert!(
        !net.node(l).membership().is_joint(),
        "joint proposed for a silent voter"
    );
    net.tick_all(2 * ET);
    assert_eq!(net.node(l).membership(), &before);
    assert_eq!(membership_entries(&net, l).len(), 1);
    assert!(
        net.peer(l).events[ev..]
            .iter()
            .any(|e| matches!(e, Event::MembershipChangeAborted { .. }))
    );
}

/// Regression (bug found by these tests): a member being caught up gets a
/// progress with `next = last + 1`, so on an idle group the leader had nothing
/// "new" to send it and never probed it; the heartbeat answers reported the
/// follower's short log (`last_index`) but the leader only re-armed the probe
/// without moving `next` back. The change was aborted after
/// `catchup_timeout_ticks` although the new node was up. Fixed in node.rs
/// (`handle_heartbeat_response`): a probing leader resumes from the follower's
/// reported last index.
#[test]
fn new_voter_catches_up_on_an_idle_group_with_a_long_log() {
    let mut net = Network::new(&[1, 2, 3]);
    let l = net.elect_any();
    // More entries than the default catch-up margin (1000).
    for i in 0..1100 {
        net.node_mut(l)
            .propose(format!("e{i}").into())
            .expect("propose");
    }
    net.process(l);
    net.tick_all(3);
    let last = net.node(l).last_index();
    assert!(last > 1100);
    // The group is idle from here on.
    join(&mut net, 4);
    let ev = net.peer(l).events.len();
    net.node_mut(l).add_voter(4).expect("add voter");
    net.process(l);
    assert!(net.node(l).membership_change_pending());
    net.tick_all(ET);
    assert!(
        !net.peer(l).events[ev..]
            .iter()
            .any(|e| matches!(e, Event::MembershipChangeAborted { .. })),
        "{:?}",
        &net.peer(l).events[ev..]
    );
    assert_eq!(net.node(l).membership().voters, set(&[1, 2, 3, 4]));
    assert!(!net.node(l).membership().is_joint());
    assert!(net.node(4).last_index() > last);
    assert_eq!(net.peer(4).applied_index, net.node(l).commit_index());
}

#[test]
fn membership_changes_under_random_faults() {
    let salts: u64 = std::env::var("RHEA_SALTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    // Random voter additions and removals (always through joint consensus),
    // learners, snapshots and log compaction, partitions, loss, crashes and restarts. The harness checks
    // election safety and state machine safety throughout; healed, the final
    // configuration's members converge.
    let (mut changes, mut completed) = (0, 0);
    for salt in 0..salts {
        let mut net = Network::with_config(&[1, 2, 3], |c| {
            c.seed = config_salted(c.id, salt).seed;
        });
        for id in [4, 5] {
            let mut cfg = config_salted(id, salt);
            cfg.group = GROUP;
            net.add(cfg, Bootstrap::Join);
        }
        let mut rng = rhea_raft::SplitMix64::new(salt ^ 0x5151);
        net.loss = Some((rhea_raft::SplitMix64::new(salt + 1), 3));
        for step in 0..800u64 {
            if step % 50 == 0 {
                net.isolated.clear();
                if rng.chance(1, 2) {
                    net.isolate(rng.range(1, 6));
                }
            }
            if rng.chance(1, 80) {
                let id = rng.range(1, 6);
                if net.peer(id).up {
                    net.crash(id);
                } else {
                    net.restart(id);
                }
            }
            if rng.chance(1, 40) {
                // Some node snapshots what it applied and compacts its log.
                let id = rng.range(1, 6);
                let p = net.peer(id);
                let base = p.node.snapshot_meta().map_or(0, |m| m.last_index);
                if p.up && p.applied_index > base {
                    net.snapshot(id, format!("image@{}", p.applied_index));
                }
            }
            if let Some(l) = net.leader() {
                let _ = net.node_mut(l).propose(format!("{step}").into());
                if rng.chance(1, 30) {
                    let m = net.node(l).membership().clone();
                    let x = rng.range(1, 6);
                    let r = if m.voters.contains(&x) {
                        if m.voters.len() > 2 {
                            net.node_mut(l).remove_voter(x)
                        } else {
                            Ok(())
                        }
                    } else if m.learners.contains(&x) {
                        net.node_mut(l).promote_learner(x)
                    } else if rng.chance(1, 2) {
                        net.node_mut(l).add_learner(x)
                    } else {
                        net.node_mut(l).add_voter(x)
                    };
                    if r.is_ok() {
                        changes += 1;
                    }
                }
                net.process(l);
            }
            net.tick_all(1);
        }
        for id in 1..=5 {
            if !net.peer(id).up {
                net.restart(id);
            }
        }
        net.heal();
        let l = net
            .tick_until(100 * ET, |net| {
                net.leader()
                    .is_some_and(|l| !net.node(l).membership_change_pending())
            })
            .map(|_| net.leader().expect("leader"))
            .unwrap_or_else(|| {
                panic!(
                    "salt {salt}: no leader with a settled configuration\n{}",
                    net.dump()
                )
            });
        net.propose(l, "final");
        net.tick_all(3 * ET);
        let m = net.node(l).membership().clone();
        assert!(!m.is_joint(), "salt {salt}: {m:?}");
        let commit = net.node(l).commit_index();
        for id in m.all_members() {
            assert_eq!(net.node(id).membership(), &m, "salt {salt} node {id}");
            assert_eq!(net.node(id).commit_index(), commit, "salt {salt} node {id}");
            assert_eq!(net.peer(id).applied_index, commit, "salt {salt} node {id}");
        }
        net.check_log_matching();
        completed += (1..=5)
            .map(|id| done_events(&net, id, 0).len())
            .sum::<usize>();
    }
    // Changes were attempted and completed (beyond the bootstrap ones).
    assert!(changes > salts, "{changes} changes requested");
    assert!(
        completed > (salts as usize) * 3,
        "{completed} changes completed"
    );
}

#[test]
fn force_reset_membership_recovers_from_losing_a_majority() {
    // Unsafe manual recovery (SOFAJRaft resetPeers): two of three voters are
    // gone for good; the survivor is told it is alone, elects itself, writes the
    // forced configuration into the log and accepts writes again.
    let mut net = Network::new(&[1, 2, 3]);
    let l = net.elect_any();
    let idx = net.propose(l, &b"before"[..]);
    net.tick_all(2);
    let others: Vec<NodeId> = [1, 2, 3].into_iter().filter(|id| *id != l).collect();
    for id in &others {
        net.crash(*id);
    }
    // Without a quorum nothing new commits.
    net.tick_all(3 * ET);
    assert!(!net.node(l).is_leader() || net.node(l).commit_index() >= idx);
    net.node_mut(l)
        .force_reset_membership([l].into())
        .expect("reset accepted");
    net.tick_until(10 * ET, |net| net.node(l).is_leader())
        .expect("the survivor leads alone");
    assert_eq!(net.node(l).membership().voters, [l].into());
    let after = net.propose(l, &b"after"[..]);
    net.tick_all(2);
    assert!(net.node(l).commit_index() >= after);
    // The forced configuration is in the log, so it survives a restart.
    net.restart(l);
    assert_eq!(net.node(l).membership().voters, [l].into());
}
