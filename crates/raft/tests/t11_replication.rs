//! Paper tests for log replication (Raft §5.3): the consistency check, repair
//! of conflicting followers (Figure 7), fast backtracking and pipelining.

mod harness;

use harness::*;
use rhea_raft::{
    EntryPayload, Index, Membership, Message, MessageBody, NodeId, PRIORITY_NOT_ELECTED,
    ProgressState, Role, Term,
};

fn append(
    from: NodeId,
    term: Term,
    prev: (Index, Term),
    entries: &[(Index, Term)],
    commit: Index,
) -> Message {
    Message {
        group: GROUP,
        from,
        to: 1,
        term,
        body: MessageBody::AppendEntries {
            prev_log_index: prev.0,
            prev_log_term: prev.1,
            entries: entries.iter().map(|(i, t)| ent(*i, *t)).collect(),
            leader_commit: commit,
            send_tick: 1,
        },
    }
}

/// (success, index, reject hint) of an AppendEntriesResponse.
type Answer = (bool, Index, Option<(Index, Term)>);

/// The last AppendEntriesResponse node 1 sent since `mark`.
fn append_answer(net: &Network, mark: usize) -> Option<Answer> {
    net.sent_since(mark)
        .iter()
        .rev()
        .find_map(|m| match m.body {
            MessageBody::AppendEntriesResponse {
                success,
                index,
                reject_hint,
                ..
            } if m.from == 1 => Some((success, index, reject_hint)),
            _ => None,
        })
}

#[test]
fn leader_replicates_entries_to_followers() {
    let mut net = Network::new(&[1, 2, 3]);
    let l = net.elect_any();
    let mut idx = Vec::new();
    for i in 0..5 {
        idx.push(net.propose(l, format!("v{i}")));
    }
    // Entries get consecutive indexes of the leader's term.
    assert_eq!(idx, (idx[0]..idx[0] + 5).collect::<Vec<_>>());
    net.deliver_all();
    // Followers learn the final commit index with the next heartbeat.
    net.tick_all(1);
    let term = net.node(l).term();
    for id in [1, 2, 3] {
        let p = net.peer(id);
        for (k, i) in idx.iter().enumerate() {
            let e = p.disk.entry(*i).expect("entry on disk");
            assert_eq!(e.term, term);
            assert_eq!(e.payload, EntryPayload::Normal(format!("v{k}").into()));
        }
        assert_eq!(p.node.commit_index(), idx[4], "node {id}");
        let data: Vec<_> = p.applied_data();
        assert_eq!(
            data,
            (0..5)
                .map(|i| bytes::Bytes::from(format!("v{i}")))
                .collect::<Vec<_>>()
        );
    }
    net.check_log_matching();
}

#[test]
fn follower_consistency_check() {
    // Follower 1: entries 2..4 of term 2, commit 1.
    let m = Membership::new([1, 2, 3]);
    let fresh = || {
        Network::restored(
            vec![(1, restore_state(log_with_terms(&m, &[2, 2, 2]), 2, 1))],
            |_| {},
        )
    };
    // prev beyond the log: refused, hint = our last + 1 with term 0.
    let mut net = fresh();
    net.node_mut(1).step(append(2, 2, (6, 2), &[(7, 2)], 1));
    net.process(1);
    assert_eq!(append_answer(&net, 0), Some((false, 6, Some((5, 0)))));
    assert_eq!(net.node(1).last_index(), 4);

    // prev term mismatch: refused, hint = first index of our conflicting term.
    let mut net = fresh();
    net.node_mut(1).step(append(2, 3, (3, 3), &[(4, 3)], 1));
    net.process(1);
    assert_eq!(append_answer(&net, 0), Some((false, 3, Some((2, 2)))));
    assert_eq!(net.log_terms(1), vec![(1, 1), (2, 2), (3, 2), (4, 2)]);

    // Matching prev, conflicting entry: the suffix from the conflict is replaced.
    let mut net = fresh();
    net.node_mut(1).step(append(2, 3, (2, 2), &[(3, 3)], 1));
    net.process(1);
    assert_eq!(append_answer(&net, 0), Some((true, 3, None)));
    assert_eq!(net.log_terms(1), vec![(1, 1), (2, 2), (3, 3)]);
    assert_eq!(net.peer(1).disk.index_terms(), vec![(1, 1), (2, 2), (3, 3)]);

    // A matching (stale, shorter) append must not truncate later entries.
    let mut net = fresh();
    net.node_mut(1).step(append(2, 2, (1, 1), &[(2, 2)], 1));
    net.process(1);
    assert_eq!(append_answer(&net, 0), Some((true, 2, None)));
    assert_eq!(net.node(1).last_index(), 4);

    // The follower commits up to min(leader commit, last new entry).
    let mut net = fresh();
    net.node_mut(1).step(append(2, 2, (2, 2), &[(3, 2)], 4));
    net.process(1);
    assert_eq!(net.node(1).commit_index(), 3);
    assert_eq!(net.peer(1).applied_index, 3);
}

/// Raft Figure 7: the leader of term 8 and followers (a)-(f). Entry 1 is the
/// bootstrap membership (term 1), as it is in every group.
const LEADER: [Term; 9] = [1, 1, 4, 4, 5, 5, 6, 6, 6];

fn figure7(follower: &[Term]) -> Network {
    let m = Membership::new([1, 2, 3]);
    let states = vec![
        (1, restore_state(log_with_terms(&m, &LEADER), 7, 1)),
        (2, restore_state(log_with_terms(&m, follower), 7, 1)),
        (3, restore_state(log_with_terms(&m, &LEADER), 7, 1)),
    ];
    // Only node 1 campaigns; node 3 (same log) votes for it.
    Network::restored(states, |c| {
        if c.id != 1 {
            c.election_priority = PRIORITY_NOT_ELECTED;
        }
    })
}

#[test]
fn figure7_conflicting_followers_are_repaired() {
    let cases: [(&str, &[Term]); 6] = [
        ("a", &[1, 1, 4, 4, 5, 5, 6, 6]),
        ("b", &[1, 1, 4]),
        ("c", &[1, 1, 4, 4, 5, 5, 6, 6, 6, 6]),
        ("d", &[1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7]),
        ("e", &[1, 1, 4, 4, 4, 4]),
        ("f", &[1, 1, 2, 2, 2, 3, 3, 3, 3, 3]),
    ];
    for (name, follower) in cases {
        let mut net = figure7(follower);
        net.tick_until(20 * ET, |net| net.leader() == Some(1))
            .unwrap_or_else(|| panic!("({name}): node 1 not elected"));
        assert_eq!(net.node(1).term(), 8, "({name})");
        let mark = net.sent.len();
        net.tick_all(3);
        let expect: Vec<(Index, Term)> = (1..=11)
            .map(|i| {
                let t = match i {
                    1 => 1,
                    11 => 8,
                    i => LEADER[i as usize - 2],
                };
                (i, t)
            })
            .collect();
        assert_eq!(net.log_terms(1), expect, "({name}) leader");
        assert_eq!(net.log_terms(2), expect, "({name}) follower log");
        assert_eq!(
            net.peer(2).disk.index_terms(),
            expect,
            "({name}) follower disk"
        );
        assert_eq!(net.node(2).commit_index(), 11, "({name})");
        // Fast backtracking: at most one rejection per conflicting term.
        let rejects = net.count_sent(0, |m| m.from == 2 && is_append_reject(m));
        assert!(rejects <= 3, "({name}): {rejects} rejections");
        assert!(net.count_sent(mark, |m| m.from == 2 && is_append_reject(m)) == 0);
        // The repaired follower applied exactly the leader's entries.
        let applied: Vec<(Index, Term)> = net
            .peer(2)
            .applied
            .iter()
            .map(|e| (e.index, e.term))
            .collect();
        assert_eq!(applied, expect, "({name}) applied");
    }
}

/// A leader with `leader_terms` and a follower with `follower_terms` (entries 2..).
fn backtrack(leader_terms: &[Term], follower_terms: &[Term], hs_term: Term) -> Network {
    let m = Membership::new([1, 2, 3]);
    let states = vec![
        (
            1,
            restore_state(log_with_terms(&m, leader_terms), hs_term, 1),
        ),
        (
            2,
            restore_state(log_with_terms(&m, follower_terms), hs_term, 1),
        ),
        (
            3,
            restore_state(log_with_terms(&m, leader_terms), hs_term, 1),
        ),
    ];
    let mut net = Network::restored(states, |c| {
        if c.id != 1 {
            c.election_priority = PRIORITY_NOT_ELECTED;
        }
    });
    net.tick_until(20 * ET, |net| net.leader() == Some(1))
        .expect("node 1 elected");
    net.tick_all(3);
    net
}

#[test]
fn fast_backtracking_for_a_follower_missing_1000_entries() {
    let net = backtrack(&[2; 1000], &[], 2);
    assert_eq!(net.node(2).last_index(), 1002);
    assert_eq!(net.node(2).commit_index(), 1002);
    // One entry per round trip would be ~1000 rejections.
    let rejects = net.count_sent(0, |m| m.from == 2 && is_append_reject(m));
    assert!(rejects <= 2, "{rejects} rejections");
    let appends = net.count_sent(0, |m| {
        m.to == 2 && is_append(m) && !append_indexes(m).is_empty()
    });
    assert!(appends <= 5, "{appends} appends");
}

#[test]
fn fast_backtracking_over_1000_conflicting_entries() {
    // The follower holds 1000 entries of a term the leader never had.
    let net = backtrack(&[3; 1000], &[2; 1000], 3);
    assert_eq!(net.log_terms(2), net.log_terms(1));
    let rejects = net.count_sent(0, |m| m.from == 2 && is_append_reject(m));
    assert!(rejects <= 2, "{rejects} rejections");
    // A longer conflicting log is cut back to the leader's.
    let net = backtrack(&[3; 10], &[2; 1000], 3);
    assert_eq!(net.node(2).last_index(), 12);
    assert_eq!(net.log_terms(2), net.log_terms(1));
    let rejects = net.count_sent(0, |m| m.from == 2 && is_append_reject(m));
    assert!(rejects <= 2, "{rejects} rejections");
}

#[test]
fn pipeline_keeps_several_appends_in_flight() {
    let mut net = Network::with_config(&[1, 2, 3], |c| {
        c.max_append_entries = 1;
        c.max_inflight_appends = 4;
    });
    let l = net.elect_any();
    net.tick_all(2);
    let f = if l == 1 { 2 } else { 1 };
    assert_eq!(
        net.node(l).peer_progress(f).map(|p| p.1),
        Some(ProgressState::Replicate)
    );
    let first = net.node(l).last_index() + 1;
    let mark = net.sent.len();
    for i in 0..10 {
        net.node_mut(l)
            .propose(format!("p{i}").into())
            .expect("propose");
    }
    // One ready fills the whole window: 4 appends of one entry each to each
    // follower, before any answer.
    net.held.insert(l);
    let rd = net.take_ready(l).expect("ready");
    let in_one_ready: Vec<Vec<Index>> = rd
        .messages
        .iter()
        .filter(|m| m.to == f && is_append(m))
        .map(append_indexes)
        .collect();
    assert_eq!(
        in_one_ready,
        (first..first + 4).map(|i| vec![i]).collect::<Vec<_>>()
    );
    net.execute_ready(l, rd);
    net.advance(l);
    net.held.clear();
    net.process(l);
    let in_flight: Vec<Vec<Index>> = net
        .sent_since(mark)
        .iter()
        .filter(|m| m.to == f && is_append(m))
        .map(append_indexes)
        .collect();
    assert_eq!(
        in_flight,
        (first..first + 4).map(|i| vec![i]).collect::<Vec<_>>()
    );
    assert_eq!(net.count_sent(mark, is_append_response), 0);
    net.deliver_all();
    net.tick_all(1);
    for id in [1, 2, 3] {
        assert_eq!(net.node(id).commit_index(), first + 9, "node {id}");
    }
    // Each entry was sent once per follower: no duplicate sends in pipeline mode.
    assert_eq!(
        net.count_sent(mark, |m| m.to == f
            && is_append(m)
            && !append_indexes(m).is_empty()),
        10
    );
}

#[test]
fn probing_follower_gets_one_append_at_a_time() {
    // A new leader does not know where the follower's log ends: it probes with
    // one append until the follower answers.
    let m = Membership::new([1, 2, 3]);
    let states = vec![
        (1, restore_state(log_with_terms(&m, &[2; 20]), 2, 1)),
        (2, restore_state(log_with_terms(&m, &[2; 5]), 2, 1)),
        (3, restore_state(log_with_terms(&m, &[2; 20]), 2, 1)),
    ];
    let mut net = Network::restored(states, |c| {
        c.max_append_entries = 2;
        if c.id != 1 {
            c.election_priority = PRIORITY_NOT_ELECTED;
        }
    });
    // Hold answers from node 2 to count what node 1 sends in the meantime.
    net.cut.insert((2, 1));
    net.tick_until(20 * ET, |net| net.leader() == Some(1))
        .expect("elected");
    let mark = net.sent.len();
    for _ in 0..5 {
        net.propose(1, "x");
    }
    net.deliver_all();
    let probes = net.count_sent(mark, |m| m.to == 2 && is_append(m));
    assert!(probes <= 1, "{probes} appends sent to a probing follower");
    assert_eq!(
        net.node(1).peer_progress(2).map(|p| p.1),
        Some(ProgressState::Probe)
    );
    net.heal();
    net.tick_all(5);
    assert_eq!(net.log_terms(2), net.log_terms(1));
}

#[test]
fn lagging_follower_catches_up_after_partition() {
    let mut net = Network::new(&[1, 2, 3]);
    let l = net.elect_any();
    let f = if l == 3 { 2 } else { 3 };
    net.isolate(f);
    for i in 0..50 {
        net.propose(l, format!("e{i}"));
        if i % 10 == 0 {
            net.tick_all(1);
        }
    }
    net.deliver_all();
    let commit = net.node(l).commit_index();
    assert!(net.node(f).last_index() < commit);
    net.heal();
    net.tick_all(2 * ET);
    assert_eq!(net.log_terms(f), net.log_terms(l));
    assert_eq!(net.peer(f).applied_index, commit);
    assert_eq!(net.peer(f).applied_data().len(), 50);
}

#[test]
fn stale_leader_steps_down_on_a_higher_term_answer() {
    let mut net = Network::new(&[1, 2, 3]);
    let old = net.elect_any();
    let term = net.node(old).term();
    let others: Vec<NodeId> = [1, 2, 3].into_iter().filter(|id| *id != old).collect();
    net.isolate(old);
    // Only the others' clocks run: the old leader keeps believing it leads.
    let mut new = None;
    for _ in 0..30 * ET {
        for id in &others {
            net.tick_one(*id);
        }
        net.deliver_all();
        new = net.leaders_now().into_iter().find(|l| *l != old);
        if new.is_some() {
            break;
        }
    }
    let new = new.expect("the majority elected a new leader");
    let new_term = net.node(new).term();
    assert!(new_term > term);
    assert!(net.node(old).is_leader());
    // Heal, but keep the new leader from talking to the old one: the old leader
    // learns the new term only from the answers to its own heartbeats.
    net.heal();
    net.cut.insert((new, old));
    let before = net.count_sent(0, |m| {
        m.to == old && m.term == new_term && is_append_response(m)
    });
    net.tick_node(old, 1);
    assert!(
        net.count_sent(0, |m| m.to == old
            && m.term == new_term
            && is_append_response(m))
            > before
    );
    assert_eq!(net.role(old), Role::Follower);
    assert_eq!(net.node(old).term(), new_term);
    assert!(net.node(new).is_leader());
    assert_eq!(net.node(new).term(), new_term);
}

/// Regression (bug found by these tests): a leader in Probe state re-sent a lost
/// probe only when a heartbeat answer showed the follower's log *shorter* than
/// its own (`last_index < leader_last` in `handle_heartbeat_response`). A
/// follower whose log was as long or longer but conflicting (Figure 7 (c), (d),
/// (f), or a node restarting with a stale tail) kept answering heartbeats, so
/// the probe was never retried and the follower was never repaired. Fixed in
/// node.rs by also re-probing while `match_index < leader_last`.
#[test]
fn lost_probe_to_an_equally_long_conflicting_follower_is_retried() {
    let cases: [(&str, &[Term]); 3] = [
        ("c", &[1, 1, 4, 4, 5, 5, 6, 6, 6, 6]),
        ("d", &[1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7]),
        ("f", &[1, 1, 2, 2, 2, 3, 3, 3, 3, 3]),
    ];
    for (name, follower) in cases {
        let mut net = figure7(follower);
        // The first appends to node 2 are lost; heartbeats get through.
        let mut lost = 0;
        net.set_filter(move |m| {
            if m.to == 2 && is_append(m) && lost < 2 {
                lost += 1;
                return false;
            }
            true
        });
        net.tick_until(20 * ET, |net| net.leader() == Some(1))
            .unwrap_or_else(|| panic!("({name}): node 1 not elected"));
        net.tick_all(3 * ET);
        assert_eq!(
            net.log_terms(2),
            net.log_terms(1),
            "({name}) never repaired"
        );
        assert_eq!(net.node(2).commit_index(), 11, "({name})");
    }
}
