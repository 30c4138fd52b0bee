//! Paper tests for commitment (Raft §5.3, §5.4.2 and Figure 8).

mod harness;

use std::collections::BTreeSet;

use harness::*;
use rhea_raft::{Index, Membership, MessageBody, NodeId, PRIORITY_NOT_ELECTED, Term};

#[test]
fn entry_commits_once_replicated_on_a_majority() {
    let mut net = Network::new(&[1, 2, 3, 4, 5]);
    let l = net.elect_any();
    let f: Vec<NodeId> = (1..=5).filter(|id| *id != l).collect();
    // Only one follower reachable: 2 of 5 hold the entry, it must not commit.
    for id in &f[1..] {
        net.isolate(*id);
    }
    let idx = net.propose(l, "x");
    net.tick_all(3);
    assert!(net.node(f[0]).last_index() >= idx);
    assert!(net.node(l).commit_index() < idx);
    assert!(net.peer(l).applied_index < idx);
    // A third replica makes a majority.
    net.isolated.remove(&f[1]);
    net.tick_all(3);
    assert!(net.node(l).commit_index() >= idx);
    assert_eq!(net.peer(l).applied_index, idx);
    for id in &f[..2] {
        assert_eq!(
            net.node(*id).commit_index(),
            idx,
            "node {id} learns the commit"
        );
        assert_eq!(net.peer(*id).applied_index, idx);
    }
    // The isolated ones hold nothing of it and applied nothing.
    for id in &f[2..] {
        assert!(net.node(*id).last_index() < idx);
        assert!(net.peer(*id).applied_index < idx);
    }
    net.heal();
    net.tick_all(3);
    for id in 1..=5 {
        assert_eq!(net.peer(id).applied_index, idx, "node {id}");
    }
}

#[test]
fn learners_do_not_count_toward_commit() {
    let mut m = Membership::new([1, 2, 3]);
    m.learners = [4, 5].into();
    let mut net = Network::with_membership(m, |_| {});
    let l = net.elect_any();
    assert!(l <= 3);
    for id in [1, 2, 3] {
        if id != l {
            net.isolate(id);
        }
    }
    let idx = net.propose(l, "x");
    net.tick_all(3);
    // Both learners hold it: 3 replicas, but only 1 of 3 voters.
    assert!(net.node(4).last_index() >= idx && net.node(5).last_index() >= idx);
    assert!(net.node(l).commit_index() < idx);
}

#[test]
fn leader_counts_its_own_entry_only_after_persisting_it() {
    let mut net = Network::new(&[1]);
    let l = net.elect_any();
    assert_eq!(l, 1);
    let base = net.node(1).commit_index();
    net.held.insert(1);
    let idx = net.node_mut(1).propose("x".into()).expect("propose");
    let rd = net.take_ready(1).expect("ready with the entry");
    assert_eq!(
        rd.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![idx]
    );
    assert!(rd.must_sync);
    assert!(rd.committed_entries.is_empty());
    // Not advanced: no second ready and no commit, however long we wait.
    assert!(net.take_ready(1).is_none());
    for _ in 0..3 {
        net.node_mut(1).tick();
    }
    assert_eq!(net.node(1).commit_index(), base);
    assert!(net.take_ready(1).is_none());
    // Persisted: now it commits, and the next ready applies it.
    net.execute_ready(1, rd);
    net.advance(1);
    assert_eq!(net.node(1).commit_index(), idx);
    net.held.clear();
    net.process(1);
    assert_eq!(net.peer(1).applied_index, idx);
}

#[test]
fn leader_applies_only_what_it_persisted_even_when_followers_committed_it() {
    let mut net = Network::new(&[1, 2, 3]);
    let l = net.elect_any();
    net.tick_all(1);
    net.held.insert(l);
    let idx = net.node_mut(l).propose("x".into()).expect("propose");
    let rd = net.take_ready(l).expect("ready");
    // The appends may leave before the leader's own write (step 3 of Ready).
    for m in rd.messages.iter().cloned() {
        net.queue.push_back(m);
    }
    net.deliver_all();
    // The followers' acknowledgements alone form a majority: committed...
    assert_eq!(net.node(l).commit_index(), idx);
    // ...but the leader cannot apply an entry it has not persisted yet.
    assert!(net.peer(l).applied_index < idx);
    let mut rd = rd;
    rd.messages.clear();
    net.execute_ready(l, rd);
    net.advance(l);
    net.held.clear();
    net.process(l);
    assert_eq!(net.peer(l).applied_index, idx);
}

/// Raft Figure 8, state (c): S1 is leader of term 4 with log [1, 2(t2), 3(t4)];
/// index 2 (term 2) is on S1, S2, S3 and S4 — a majority — but index 3 (term 4)
/// only on S1. S5 holds [1, 2(t3)]. Entry 1 is the bootstrap membership.
///
/// Only S1 and S5 may campaign (S2..S4 have priority "never elected") so that
/// the elections are those of the figure.
fn figure8_state_c() -> Network {
    let m = Membership::new([1, 2, 3, 4, 5]);
    let states = vec![
        (1, restore_state(log_with_terms(&m, &[2]), 3, 1)),
        (2, restore_state(log_with_terms(&m, &[2]), 3, 1)),
        (3, restore_state(log_with_terms(&m, &[]), 3, 1)),
        (4, restore_state(log_with_terms(&m, &[]), 3, 1)),
        (5, restore_state(log_with_terms(&m, &[3]), 3, 1)),
    ];
    let mut net = Network::restored(states, |c| {
        if (2..=4).contains(&c.id) {
            c.election_priority = PRIORITY_NOT_ELECTED;
        }
        // One entry per append, so that index 2 can travel without index 3.
        c.max_append_entries = 1;
    });
    // S1 is elected in term 4 by S3 and S4 (S5 would refuse: its last term is higher).
    net.isolate(2);
    net.isolate(5);
    // S3 and S4 receive index 2 but never index 3: once a node has acknowledged
    // index 2, every append carrying index 3 to it is lost.
    let mut has_two: BTreeSet<NodeId> = BTreeSet::new();
    net.set_filter(move |m| {
        if let MessageBody::AppendEntriesResponse {
            success: true,
            index,
            ..
        } = m.body
            && index >= 2
        {
            has_two.insert(m.from);
        }
        !(has_two.contains(&m.to) && append_indexes(m).contains(&3))
    });
    net.tick_until(30 * ET, |net| net.leader() == Some(1))
        .expect("S1 elected in term 4");
    assert_eq!(net.node(1).term(), 4);
    net.tick_all(2 * ET);
    assert!(net.node(1).is_leader());
    for id in [1, 2, 3, 4] {
        assert_eq!(
            net.node(id).term_at(2),
            Some(2),
            "S{id} holds index 2 of term 2"
        );
    }
    for id in [2, 3, 4] {
        assert_eq!(net.node(id).last_index(), 2, "S{id} lacks index 3");
    }
    assert_eq!(net.node(1).peer_progress(3).map(|p| p.0), Some(2));
    assert_eq!(net.node(1).peer_progress(4).map(|p| p.0), Some(2));
    net
}

#[test]
fn figure8_leader_does_not_commit_a_previous_term_entry_by_counting_replicas() {
    let mut net = figure8_state_c();
    // Index 2 is on S1, S3, S4 (and S2) as far as S1 knows three of them: a
    // majority. It is of term 2, not S1's term 4: counting replicas must not
    // commit it (§5.4.2).
    assert_eq!(
        net.node(1).commit_index(),
        1,
        "S1 committed an entry of an earlier term by counting replicas"
    );
    for id in 1..=5 {
        assert!(net.peer(id).applied_index <= 1, "S{id} applied beyond 1");
    }

    // (d): S1 crashes; S5 is elected (by S2, S3, S4, whose last term 2 < 3) and
    // overwrites index 2 everywhere. Had S1 committed index 2, this would
    // destroy a committed entry (the harness checks that no two nodes apply
    // different entries at one index).
    net.crash(1);
    net.heal();
    net.tick_until(40 * ET, |net| net.leader() == Some(5))
        .expect("S5 elected");
    net.tick_all(3);
    let t5 = net.node(5).term();
    assert!(t5 >= 5);
    for id in 2..=5 {
        assert_eq!(
            net.node(id).term_at(2),
            Some(3),
            "S{id} index 2 overwritten by term 3"
        );
        assert_eq!(net.node(id).commit_index(), 3, "S{id}");
        assert_eq!(net.node(id).term_at(3), Some(t5));
    }
    // S1 comes back and is repaired too.
    net.restart(1);
    net.tick_all(3 * ET);
    assert_eq!(net.log_terms(1), net.log_terms(5));
    assert_eq!(net.peer(1).applied_index, 3);
    assert_eq!(net.applied_at.get(&2).map(|e| e.term), Some(3));
}

#[test]
fn figure8_previous_term_entry_commits_with_a_current_term_entry() {
    let mut net = figure8_state_c();
    assert_eq!(net.node(1).commit_index(), 1);
    // (e): index 3 (term 4) reaches a majority: it commits, and index 2 with it.
    net.filter = None;
    net.tick_all(3);
    assert_eq!(net.node(1).commit_index(), 3);
    for id in [3, 4] {
        assert_eq!(net.node(id).term_at(3), Some(4));
        assert_eq!(net.node(id).commit_index(), 3, "S{id}");
    }
    let applied: Vec<(Index, Term)> = net
        .peer(1)
        .applied
        .iter()
        .map(|e| (e.index, e.term))
        .collect();
    assert_eq!(applied, vec![(1, 1), (2, 2), (3, 4)]);

    // Now S5 can never be elected: S3 and S4 hold a newer last term.
    net.crash(1);
    net.heal();
    net.tick_all(30 * ET);
    assert_eq!(net.leader(), None);
    // S1 returns, leads again and overwrites S5's stale index 2.
    net.restart(1);
    net.tick_until(40 * ET, |net| net.leader() == Some(1))
        .expect("S1 elected again");
    net.tick_all(3);
    for id in 2..=5 {
        assert_eq!(net.log_terms(id), net.log_terms(1), "S{id}");
        assert_eq!(net.node(id).term_at(2), Some(2));
    }
    assert_eq!(net.applied_at.get(&2).map(|e| e.term), Some(2));
}

#[test]
fn followers_learn_the_commit_index_from_the_leader() {
    let mut net = Network::new(&[1, 2, 3]);
    let l = net.elect_any();
    let idx = net.propose(l, "x");
    net.deliver_all();
    net.tick_all(1);
    for id in [1, 2, 3] {
        assert_eq!(net.node(id).commit_index(), idx, "node {id}");
        assert_eq!(net.peer(id).applied_index, idx, "node {id}");
        assert_eq!(net.peer(id).applied_data(), vec![bytes::Bytes::from("x")]);
    }
}

#[test]
fn heartbeat_never_commits_beyond_what_the_follower_matches() {
    // Follower 2 has a stale uncommitted suffix; a heartbeat carrying the leader's
    // commit must not make it commit entries that do not match the leader.
    let m = Membership::new([1, 2, 3]);
    let states = vec![
        (1, restore_state(log_with_terms(&m, &[2, 3, 3]), 3, 1)),
        (2, restore_state(log_with_terms(&m, &[2, 2, 2, 2]), 3, 1)),
        (3, restore_state(log_with_terms(&m, &[2, 3, 3]), 3, 1)),
    ];
    let mut net = Network::restored(states, |c| {
        if c.id != 1 {
            c.election_priority = PRIORITY_NOT_ELECTED;
        }
    });
    // Node 2 hears only heartbeats (no appends) from the leader.
    net.set_filter(|m| !(m.to == 2 && is_append(m)));
    net.tick_until(30 * ET, |net| net.leader() == Some(1))
        .expect("elected");
    net.tick_all(5);
    assert_eq!(net.node(1).commit_index(), 5);
    assert!(
        net.node(2).commit_index() <= 2,
        "node 2 committed {}",
        net.node(2).commit_index()
    );
    assert!(net.peer(2).applied_index <= 2);
    // Healed, it is repaired: the lost probes are retried (this used to stall
    // forever, see t11 `lost_probe_to_an_equally_long_conflicting_follower_is_retried`).
    net.heal();
    net.tick_all(3);
    assert_eq!(net.log_terms(2), net.log_terms(1));
    assert_eq!(net.node(2).commit_index(), 5);
}

#[test]
fn committed_entries_survive_a_full_cluster_restart() {
    let mut net = Network::new(&[1, 2, 3]);
    let l = net.elect_any();
    let mut last = 0;
    for i in 0..10 {
        last = net.propose(l, format!("d{i}"));
    }
    net.tick_all(2);
    assert_eq!(net.node(l).commit_index(), last);
    let applied_before = net.peer(l).applied_data();
    let term = net.node(l).term();
    for id in [1, 2, 3] {
        net.crash(id);
    }
    for id in [1, 2, 3] {
        net.restart(id);
    }
    let l2 = net.elect_any();
    net.tick_all(2);
    assert!(net.node(l2).term() > term);
    for id in [1, 2, 3] {
        // Re-applied after the restart (the harness checks the entries agree).
        assert!(net.peer(id).applied_index > last, "node {id}");
        let data = net.peer(id).applied_data();
        assert_eq!(&data[data.len() - 10..], &applied_before[..], "node {id}");
    }
}

#[test]
fn safety_and_convergence_under_random_faults() {
    // Random partitions, message loss, crashes and restarts, with a steady
    // stream of proposals. The harness checks election safety and state machine
    // safety on every batch; at the end, healed, everyone converges.
    // RHEA_SALTS=n runs more (or fewer) random schedules.
    let salts: u64 = std::env::var("RHEA_SALTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let (mut total_proposed, mut elections) = (0u64, 0u64);
    for salt in 0..salts {
        let mut net = Network::with_config(&[1, 2, 3, 4, 5], |c| {
            c.seed = config_salted(c.id, salt).seed;
            c.max_append_entries = 4;
        });
        let mut rng = rhea_raft::SplitMix64::new(salt.wrapping_mul(31) + 7);
        net.loss = Some((rhea_raft::SplitMix64::new(salt), 5));
        let mut proposed = 0;
        for step in 0..600u64 {
            if step % 40 == 0 {
                net.isolated.clear();
                for id in 1..=5 {
                    if rng.chance(1, 5) {
                        net.isolate(id);
                    }
                }
            }
            if rng.chance(1, 60) {
                let id = rng.range(1, 6);
                if net.peer(id).up {
                    net.crash(id);
                } else {
                    net.restart(id);
                }
            }
            if rng.chance(1, 25) {
                // Some node snapshots what it applied and compacts its log.
                let id = rng.range(1, 6);
                let p = net.peer(id);
                let base = p.node.snapshot_meta().map_or(0, |m| m.last_index);
                if p.up && p.applied_index > base {
                    let image = format!("image@{}", p.applied_index);
                    net.snapshot(id, image);
                }
            }
            if let Some(l) = net.leader()
                && rng.chance(1, 2)
                && net
                    .node_mut(l)
                    .propose(format!("s{salt}-{step}").into())
                    .is_ok()
            {
                proposed += 1;
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
        let l = net.elect_any();
        net.propose(l, "final");
        net.tick_all(3 * ET);
        let commit = net.node(l).commit_index();
        for id in 1..=5 {
            assert_eq!(net.node(id).commit_index(), commit, "salt {salt} node {id}");
            assert_eq!(net.peer(id).applied_index, commit, "salt {salt} node {id}");
            // Same log (over the part both still hold after compaction).
            let from = net.node(id).first_index().max(net.node(l).first_index());
            let tail = |x: NodeId| -> Vec<(Index, Term)> {
                net.log_terms(x)
                    .into_iter()
                    .filter(|(i, _)| *i >= from)
                    .collect()
            };
            assert_eq!(
                net.node(id).last_index(),
                net.node(l).last_index(),
                "salt {salt} node {id}"
            );
            assert_eq!(tail(id), tail(l), "salt {salt} node {id}");
        }
        net.check_log_matching();
        total_proposed += proposed;
        elections += net.leaders.len() as u64;
    }
    // Faults really happened: many elections, many proposals.
    assert!(elections > 2 * salts, "{elections} elections");
    assert!(total_proposed > 50 * salts, "{total_proposed} proposals");
}
