//! Paper tests for leader election (Raft §5.2, §5.4.1, §9.6 pre-vote, check-quorum)
//! and SOFAJRaft's priority election.

mod harness;

use harness::*;
use rhea_raft::{
    HardState, Membership, Message, MessageBody, NodeId, PRIORITY_NOT_ELECTED, Role, SplitMix64,
    Term,
};

/// A vote request as a candidate `from` in `term` would send it to node 1.
fn request_vote(from: NodeId, term: Term, last_log_index: u64, last_log_term: Term) -> Message {
    Message {
        group: GROUP,
        from,
        to: 1,
        term,
        body: MessageBody::RequestVote {
            last_log_index,
            last_log_term,
            leader_transfer: false,
        },
    }
}

/// The last RequestVoteResponse node 1 sent to `to` since `mark`: (term, granted).
fn vote_answer(net: &Network, mark: usize, to: NodeId) -> Option<(Term, bool)> {
    net.sent_since(mark)
        .iter()
        .rev()
        .find_map(|m| match m.body {
            MessageBody::RequestVoteResponse { granted } if m.from == 1 && m.to == to => {
                Some((m.term, granted))
            }
            _ => None,
        })
}

fn pre_vote_answer(net: &Network, mark: usize, to: NodeId) -> Option<bool> {
    net.sent_since(mark)
        .iter()
        .rev()
        .find_map(|m| match m.body {
            MessageBody::PreVoteResponse { granted } if m.from == 1 && m.to == to => Some(granted),
            _ => None,
        })
}

/// Node 1 alone (its peers 2 and 3 are not in the network), restored with a log
/// whose entries 2.. have `terms`, at hard-state `term`, and ticked out of the
/// startup lease so that it may vote.
fn lone_voter(terms: &[Term], term: Term) -> Network {
    let m = Membership::new([1, 2, 3]);
    let mut net = Network::restored(
        vec![(1, restore_state(log_with_terms(&m, terms), term, 1))],
        |_| {},
    );
    net.tick_all(ET);
    net
}

#[test]
fn follower_times_out_and_becomes_leader_with_a_majority() {
    let mut net = Network::new(&[1, 2, 3]);
    // Randomized timeouts are drawn from [ET, 2ET): nobody campaigns before ET ticks.
    net.tick_all(ET - 1);
    assert_eq!(net.count_sent(0, |m| is_pre_vote(m) || is_vote(m)), 0);
    assert!(net.leader().is_none());

    let leader = net.elect_any();
    let n = net.node(leader);
    // Pre-vote does not change terms; the real election moves 1 -> 2.
    assert_eq!(n.term(), 2);
    assert_eq!(n.voted_for(), leader);
    // Every vote request carries the new term.
    assert!(
        net.sent
            .iter()
            .filter(|m| is_vote(m))
            .all(|m| m.term == 2 && m.from == leader)
    );
    // The new leader appended a blank entry of its term, and it committed.
    assert_eq!(n.last_index(), 2);
    assert_eq!(n.term_at(2), Some(2));
    net.tick_all(2);
    for id in [1, 2, 3] {
        let p = net.node(id);
        assert_eq!(p.term(), 2, "node {id}");
        assert_eq!(p.leader(), leader, "node {id}");
        assert_eq!(p.commit_index(), 2, "node {id}");
        if id != leader {
            assert_eq!(p.role(), Role::Follower);
        }
    }
}

#[test]
fn candidate_without_a_majority_never_becomes_leader() {
    let mut net = Network::new(&[1, 2, 3]);
    net.isolate(2);
    net.isolate(3);
    net.tick_node(1, 20 * ET);
    assert_ne!(net.role(1), Role::Leader);
    // Pre-vote failed every time, so the term never moved.
    assert_eq!(net.node(1).term(), 1);
    assert!(net.count_sent(0, is_pre_vote) > 0);
    assert_eq!(net.count_sent(0, is_vote), 0);
}

#[test]
fn election_safety_over_many_seeds() {
    let mut elections = 0;
    for salt in 0..60u64 {
        let mut net = Network::with_config(&[1, 2, 3, 4, 5], |c| {
            c.seed = config_salted(c.id, salt).seed;
        });
        let mut rng = SplitMix64::new(salt ^ 0xABCD);
        net.loss = Some((SplitMix64::new(salt), 10));
        for round in 0..12 {
            // A random minority or majority is cut off for a while.
            net.isolated.clear();
            for id in 1..=5 {
                if rng.chance(1, 4) {
                    net.isolate(id);
                }
            }
            if round % 3 == 2 {
                net.isolated.clear();
            }
            for _ in 0..25 {
                net.tick_all(1);
                // At most one leader per term among the live nodes, right now.
                let mut terms = std::collections::BTreeMap::new();
                for l in net.leaders_now() {
                    let t = net.node(l).term();
                    assert!(
                        terms.insert(t, l).is_none(),
                        "salt {salt}: two leaders in term {t}"
                    );
                }
            }
            if let Some(l) = net.leader()
                && net.node(l).is_leader()
            {
                let _ = net.node_mut(l).propose(bytes::Bytes::from_static(b"x"));
            }
        }
        // The harness checked election safety (one leader per term over the whole
        // history) on every batch; make sure elections actually happened.
        assert!(
            !net.leaders.is_empty(),
            "salt {salt}: no leader ever elected"
        );
        elections += net.leaders.len();
        net.check_log_matching();
    }
    assert!(elections > 60, "only {elections} elections over all seeds");
}

#[test]
fn vote_refused_to_candidate_with_an_out_of_date_log() {
    // Voter's log: entries 2..3 of term 2 (last = (3, 2)).
    struct Case {
        last_index: u64,
        last_term: Term,
        granted: bool,
        why: &'static str,
    }
    let cases = [
        Case {
            last_index: 10,
            last_term: 1,
            granted: false,
            why: "lower last term, longer log",
        },
        Case {
            last_index: 2,
            last_term: 2,
            granted: false,
            why: "same last term, shorter log",
        },
        Case {
            last_index: 3,
            last_term: 2,
            granted: true,
            why: "identical log",
        },
        Case {
            last_index: 4,
            last_term: 2,
            granted: true,
            why: "same last term, longer log",
        },
        Case {
            last_index: 1,
            last_term: 3,
            granted: true,
            why: "higher last term, shorter log",
        },
    ];
    for (k, c) in cases.iter().enumerate() {
        // Real vote (a fresh voter each time: one vote per term).
        let mut net = lone_voter(&[2, 2], 2);
        let mark = net.sent.len();
        let term = 3 + k as Term;
        net.node_mut(1)
            .step(request_vote(2, term, c.last_index, c.last_term));
        net.process(1);
        assert_eq!(
            vote_answer(&net, mark, 2),
            Some((term, c.granted)),
            "vote: {}",
            c.why
        );
        assert_eq!(net.node(1).term(), term, "the voter adopts the higher term");
        // Pre-vote applies the same check and changes no term.
        let mut net = lone_voter(&[2, 2], 2);
        let mark = net.sent.len();
        net.node_mut(1).step(Message {
            group: GROUP,
            from: 3,
            to: 1,
            term: 3,
            body: MessageBody::PreVote {
                last_log_index: c.last_index,
                last_log_term: c.last_term,
            },
        });
        net.process(1);
        assert_eq!(
            pre_vote_answer(&net, mark, 3),
            Some(c.granted),
            "pre-vote: {}",
            c.why
        );
        assert_eq!(
            net.node(1).term(),
            2,
            "pre-vote must not change the voter's term"
        );
    }
}

#[test]
fn candidate_with_an_out_of_date_log_never_wins() {
    let m = Membership::new([1, 2, 3]);
    // (log of nodes 1 and 2, log of node 3, node 3 can win?)
    let cases: [(&[Term], &[Term], bool); 4] = [
        (&[2], &[], false),       // node 3 is shorter
        (&[2], &[1], false),      // same length, older last term
        (&[2, 2], &[2], false),   // same last term, shorter
        (&[2, 2], &[2, 2], true), // control: equally up to date
    ];
    for (others, mine, can_win) in cases {
        let states = vec![
            (1, restore_state(log_with_terms(&m, others), 2, 1)),
            (2, restore_state(log_with_terms(&m, others), 2, 1)),
            (3, restore_state(log_with_terms(&m, mine), 2, 1)),
        ];
        // Only node 3 may campaign.
        let mut net = Network::restored(states, |c| {
            if c.id != 3 {
                c.election_priority = PRIORITY_NOT_ELECTED;
            }
        });
        let won = net.tick_until(20 * ET, |net| net.leader() == Some(3));
        assert_eq!(won.is_some(), can_win, "others {others:?}, node 3 {mine:?}");
        if !can_win {
            // Refused at the pre-vote stage: nobody's term moved.
            for id in [1, 2, 3] {
                assert_eq!(net.node(id).term(), 2);
            }
            assert!(
                net.sent
                    .iter()
                    .any(|m| matches!(m.body, MessageBody::PreVoteResponse { granted: false }))
            );
        }
    }
}

#[test]
fn a_node_votes_at_most_once_per_term() {
    let mut net = lone_voter(&[2], 2);
    net.held.insert(1);
    net.node_mut(1).step(request_vote(2, 3, 2, 2));
    // The grant is persisted (and synced) before the answer may leave.
    let rd = net.take_ready(1).expect("ready after a vote");
    assert_eq!(
        rd.hard_state,
        Some(HardState {
            term: 3,
            voted_for: 2,
            commit: 1
        })
    );
    assert!(rd.must_sync);
    assert!(
        rd.messages
            .iter()
            .all(|m| !matches!(m.body, MessageBody::RequestVoteResponse { .. }))
    );
    assert!(
        rd.persisted_messages
            .iter()
            .any(|m| matches!(m.body, MessageBody::RequestVoteResponse { granted: true }))
    );
    net.execute_ready(1, rd);
    net.advance(1);
    net.held.clear();

    // Another candidate of the same term, with an even better log, is refused.
    let mark = net.sent.len();
    net.node_mut(1).step(request_vote(3, 3, 9, 2));
    net.process(1);
    assert_eq!(vote_answer(&net, mark, 3), Some((3, false)));
    // The same candidate asking again gets the same answer (idempotent).
    let mark = net.sent.len();
    net.node_mut(1).step(request_vote(2, 3, 2, 2));
    net.process(1);
    assert_eq!(vote_answer(&net, mark, 2), Some((3, true)));

    // The vote survives a restart.
    net.crash(1);
    net.restart(1);
    assert_eq!(net.node(1).voted_for(), 2);
    net.tick_all(ET);
    let mark = net.sent.len();
    net.node_mut(1).step(request_vote(3, 3, 9, 2));
    net.process(1);
    assert_eq!(vote_answer(&net, mark, 3), Some((3, false)));
}

#[test]
fn pre_vote_keeps_a_partitioned_node_from_bumping_terms() {
    let mut net = Network::new(&[1, 2, 3]);
    let leader = net.elect_any();
    let term = net.node(leader).term();
    let f = if leader == 3 { 2 } else { 3 };
    net.isolate(f);
    let mark = net.sent.len();
    net.tick_all(30 * ET);
    // It kept trying, but only pre-votes: its term never moved.
    assert!(net.count_sent(mark, |m| m.from == f && is_pre_vote(m)) >= 10);
    assert_eq!(net.count_sent(mark, |m| m.from == f && is_vote(m)), 0);
    assert_eq!(net.node(f).term(), term);
    assert_eq!(net.node(leader).term(), term);
    // The majority made progress meanwhile.
    let idx = net.propose(leader, "during partition");
    net.deliver_all();
    assert!(net.node(leader).commit_index() >= idx);

    // Healing does not disrupt the leader.
    net.heal();
    net.tick_all(3 * ET);
    assert_eq!(net.leader(), Some(leader));
    for id in [1, 2, 3] {
        assert_eq!(net.node(id).term(), term, "node {id}");
        assert_eq!(net.node(id).leader(), leader, "node {id}");
        assert!(net.node(id).commit_index() >= idx, "node {id}");
    }
}

#[test]
fn a_vote_request_is_ignored_while_the_voter_hears_from_a_leader() {
    let mut net = Network::new(&[1, 2, 3]);
    let leader = net.elect_any();
    let term = net.node(leader).term();
    let f = if leader == 3 { 2 } else { 3 };
    let other = 6 - leader - f;
    let last = net.node(f).last_index();
    let last_term = net.node(f).last_term();
    // A disruptive candidate with a good log and a higher term.
    let before = net.node(f).counters().votes_refused_in_lease;
    let mark = net.sent.len();
    net.deliver(Message {
        group: GROUP,
        from: other,
        to: f,
        term: term + 5,
        body: MessageBody::RequestVote {
            last_log_index: last,
            last_log_term: last_term,
            leader_transfer: false,
        },
    });
    assert_eq!(
        net.node(f).term(),
        term,
        "in lease: the higher term is ignored"
    );
    assert_eq!(net.node(f).counters().votes_refused_in_lease, before + 1);
    assert_eq!(
        net.count_sent(mark, |m| matches!(
            m.body,
            MessageBody::RequestVoteResponse { .. }
        )),
        0
    );
    net.tick_all(3);
    assert_eq!(net.leader(), Some(leader));
}

#[test]
fn check_quorum_isolated_leader_steps_down() {
    let mut net = Network::new(&[1, 2, 3]);
    let leader = net.elect_any();
    let term = net.node(leader).term();

    // With one follower gone, a quorum is still alive: it stays leader.
    let f = if leader == 3 { 2 } else { 3 };
    net.isolate(f);
    net.tick_all(10 * ET);
    assert_eq!(net.leader(), Some(leader));
    assert_eq!(net.node(leader).term(), term);
    net.heal();
    net.tick_all(2);

    // Alone, it steps down within about two election timeouts, not at once.
    net.isolate(leader);
    let mut stepped = None;
    for t in 1..=2 * ET {
        net.tick_node(leader, 1);
        if !net.node(leader).is_leader() {
            stepped = Some(t);
            break;
        }
    }
    let t = stepped.expect("isolated leader never stepped down");
    assert!(t > ET / 2, "stepped down after only {t} ticks");
    assert_eq!(net.role(leader), Role::Follower);
    // Stepping down does not bump its term.
    assert_eq!(net.node(leader).term(), term);

    // The others elect a new leader in a higher term, and the old one follows it on heal.
    net.tick_until(30 * ET, |net| {
        net.leaders_now()
            .iter()
            .any(|l| *l != leader && net.node(*l).term() > term)
    })
    .expect("majority elected a new leader");
    net.heal();
    net.tick_all(3);
    let new = net.leader().expect("leader");
    assert_ne!(new, leader);
    assert_eq!(net.node(leader).leader(), new);
}

fn prioritized(priorities: [(NodeId, i32); 3]) -> Membership {
    let mut m = Membership::new([1, 2, 3]);
    m.priorities = priorities.into_iter().collect();
    m
}

#[test]
fn priority_election_prefers_the_highest_priority() {
    for salt in 0..10u64 {
        let mut net = Network::with_membership(prioritized([(1, 100), (2, 10), (3, 10)]), |c| {
            c.seed = config_salted(c.id, salt).seed;
        });
        assert_eq!(net.elect_any(), 1, "salt {salt}");
        // Lower-priority nodes sat their timeouts out instead of campaigning.
        assert_eq!(
            net.sent
                .iter()
                .filter(|m| is_pre_vote(m) && m.from != 1)
                .count(),
            0,
            "salt {salt}"
        );
    }
}

#[test]
fn lower_priority_node_wins_after_the_target_priority_decays() {
    let mut net = Network::with_membership(prioritized([(1, 100), (2, 10), (3, 10)]), |_| {});
    assert_eq!(net.elect_any(), 1);
    net.tick_all(5);
    net.crash(1);
    let took = net
        .tick_until(100 * ET, |net| net.leader().is_some())
        .expect("a lower-priority node is eventually elected");
    let l = net.leader().expect("leader");
    assert!(l == 2 || l == 3);
    // It had to wait for the target priority (100) to decay below 10: several
    // election timeouts, not one.
    assert!(took > 4 * ET, "elected after only {took} ticks");
    assert!(net.node(l).counters().elections_skipped_for_priority > 0);
    // Meanwhile the group works.
    let idx = net.propose(l, "after failover");
    net.deliver_all();
    let other = 5 - l;
    assert!(net.node(other).commit_index() >= idx);
}

#[test]
fn never_elected_priority_does_not_campaign() {
    let mut net = Network::with_membership(
        prioritized([(1, PRIORITY_NOT_ELECTED), (2, PRIORITY_NOT_ELECTED), (3, 5)]),
        |_| {},
    );
    assert_eq!(net.elect_any(), 3);
    net.crash(3);
    net.tick_all(50 * ET);
    assert!(net.leader().is_none());
    assert!(net.sent.iter().all(|m| !(is_pre_vote(m) && m.from != 3)));
}

#[test]
fn candidate_falls_back_to_follower_on_an_append_from_the_leader_of_its_term() {
    // Node 1 alone: its peers are played by the test.
    let mut net = lone_voter(&[], 2);
    net.tick_until(3 * ET, |net| net.role(1) == Role::PreCandidate)
        .expect("pre-candidate");
    assert_eq!(net.node(1).term(), 2, "pre-vote keeps the term");
    // A granted pre-vote (quorum: itself + node 2) starts the real election.
    net.node_mut(1).step(Message {
        group: GROUP,
        from: 2,
        to: 1,
        term: 3,
        body: MessageBody::PreVoteResponse { granted: true },
    });
    net.process(1);
    assert_eq!(net.role(1), Role::Candidate);
    assert_eq!(net.node(1).term(), 3);
    assert_eq!(net.node(1).voted_for(), 1);
    assert_eq!(
        net.peer(1).disk.hard_state.voted_for,
        1,
        "self-vote persisted"
    );
    // Node 3 won term 3 and sends its first append.
    net.node_mut(1).step(Message {
        group: GROUP,
        from: 3,
        to: 1,
        term: 3,
        body: MessageBody::AppendEntries {
            prev_log_index: 1,
            prev_log_term: 1,
            entries: vec![],
            leader_commit: 1,
            send_tick: 1,
        },
    });
    net.process(1);
    assert_eq!(net.role(1), Role::Follower);
    assert_eq!(net.node(1).leader(), 3);
    assert_eq!(net.node(1).term(), 3);
    // A message of a higher term turns anyone into a follower of that term.
    net.node_mut(1).step(Message {
        group: GROUP,
        from: 2,
        to: 1,
        term: 7,
        body: MessageBody::Heartbeat {
            leader_commit: 1,
            read_seq: 0,
            send_tick: 1,
        },
    });
    net.process(1);
    assert_eq!(
        (net.role(1), net.node(1).term(), net.node(1).leader()),
        (Role::Follower, 7, 2)
    );
    assert_eq!(net.peer(1).disk.hard_state.term, 7);
}

#[test]
fn a_node_cut_off_from_the_leader_only_cannot_depose_it() {
    // Asymmetric partition: F2 cannot reach the leader, but F1 hears both. F1
    // refuses F2's pre-votes while it hears from the leader, so the leader (and
    // its lease) stays valid, and no term changes.
    let mut net = Network::new(&[1, 2, 3]);
    let l = net.elect_any();
    let term = net.node(l).term();
    let f1 = if l == 1 { 2 } else { 1 };
    let f2 = 6 - l - f1;
    net.partition(&[l], &[f2]);
    let refused = net.node(f1).counters().votes_refused_in_lease;
    let mark = net.sent.len();
    for _ in 0..20 * ET {
        net.tick_all(1);
        assert_eq!(net.leaders_now(), vec![l]);
        assert!(net.node(l).lease_valid());
    }
    assert!(net.count_sent(mark, |m| m.from == f2 && is_pre_vote(m)) > 0);
    assert!(net.node(f1).counters().votes_refused_in_lease > refused);
    for id in [1, 2, 3] {
        assert_eq!(net.node(id).term(), term, "node {id}");
    }
}
