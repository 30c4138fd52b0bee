//! Input validation: no message makes the core panic; invalid ones are counted.

mod harness;

use bytes::Bytes;
use harness::*;
use rhea_raft::{
    Entry, EntryPayload, Index, Membership, Message, MessageBody, NodeId, ReadIndexFailure,
    SnapshotMeta, SplitMix64, Term,
};

fn msg(from: NodeId, to: NodeId, term: Term, body: MessageBody) -> Message {
    Message {
        group: GROUP,
        from,
        to,
        term,
        body,
    }
}

fn heartbeat(commit: Index) -> MessageBody {
    MessageBody::Heartbeat {
        leader_commit: commit,
        read_seq: 0,
        send_tick: 1,
    }
}

#[test]
fn wrong_group_misaddressed_and_stale_messages_are_counted_and_dropped() {
    let mut net = Network::new(&[1, 2, 3]);
    let l = net.elect_any();
    net.tick_all(1);
    let f = if l == 1 { 2 } else { 1 };
    let term = net.node(f).term();
    let log = net.log_terms(f);
    let before = net.node(f).counters().clone();

    // Another group.
    let mut m = msg(l, f, term, heartbeat(0));
    m.group = GROUP + 1;
    net.node_mut(f).step(m);
    // from == 0, from == self, to == someone else.
    net.node_mut(f).step(msg(0, f, term, heartbeat(0)));
    net.node_mut(f).step(msg(f, f, term, heartbeat(0)));
    net.node_mut(f).step(msg(l, 99, term, heartbeat(0)));
    // Stale terms.
    net.node_mut(f).step(msg(l, f, term - 1, heartbeat(0)));
    net.node_mut(f).step(msg(
        l,
        f,
        term - 1,
        MessageBody::RequestVote {
            last_log_index: 99,
            last_log_term: 99,
            leader_transfer: true,
        },
    ));
    let mark = net.sent.len();
    net.process(f);

    let c = net.node(f).counters();
    assert_eq!(c.dropped_wrong_group, before.dropped_wrong_group + 1);
    assert_eq!(c.dropped_misaddressed, before.dropped_misaddressed + 3);
    assert_eq!(c.dropped_stale_term, before.dropped_stale_term + 2);
    assert_eq!(net.node(f).term(), term);
    assert_eq!(net.log_terms(f), log);
    // No vote for the stale candidate; the stale "leader" is told the newer term.
    assert_eq!(
        net.count_sent(mark, |m| matches!(
            m.body,
            MessageBody::RequestVoteResponse { .. }
        )),
        0
    );
    assert!(net.sent_since(mark).iter().any(|m| m.to == l
        && m.term == term
        && matches!(
            m.body,
            MessageBody::AppendEntriesResponse { success: false, .. }
        )));
    // The group is unaffected.
    let idx = net.propose(l, "still fine");
    net.tick_all(2);
    assert_eq!(net.node(f).commit_index(), idx);
}

#[test]
fn malformed_appends_and_answers_are_counted_not_applied() {
    let mut net = Network::new(&[1, 2, 3]);
    let l = net.elect_any();
    net.tick_all(1);
    let f = if l == 1 { 2 } else { 1 };
    let term = net.node(f).term();
    let last = net.node(f).last_index();
    let log = net.log_terms(f);
    let last_term = net.node(f).last_term();
    let e = |index, term| Entry {
        index,
        term,
        payload: EntryPayload::Blank,
    };
    let before = net.node(f).counters().dropped_unexpected;
    // A gap in the entries.
    net.node_mut(f).step(msg(
        l,
        f,
        term,
        MessageBody::AppendEntries {
            prev_log_index: last,
            prev_log_term: last_term,
            entries: vec![e(last + 1, term), e(last + 3, term)],
            leader_commit: 0,
            send_tick: 1,
        },
    ));
    // An entry from a term above the leader's.
    net.node_mut(f).step(msg(
        l,
        f,
        term,
        MessageBody::AppendEntries {
            prev_log_index: last,
            prev_log_term: last_term,
            entries: vec![e(last + 1, term + 1)],
            leader_commit: 0,
            send_tick: 1,
        },
    ));
    // Terms going backwards.
    net.node_mut(f).step(msg(
        l,
        f,
        term,
        MessageBody::AppendEntries {
            prev_log_index: last,
            prev_log_term: last_term,
            entries: vec![e(last + 1, term), e(last + 2, term - 1)],
            leader_commit: 0,
            send_tick: 1,
        },
    ));
    // An answer to a read batch never sent.
    net.node_mut(f).step(msg(
        l,
        f,
        term,
        MessageBody::ReadIndexResponse {
            batch_id: 77,
            result: Err(ReadIndexFailure::Busy),
        },
    ));
    // TimeoutNow from someone who is not the leader.
    let other = 6 - l - f;
    net.node_mut(f)
        .step(msg(other, f, term, MessageBody::TimeoutNow));
    net.process(f);
    assert_eq!(net.node(f).counters().dropped_unexpected, before + 5);
    assert_eq!(net.log_terms(f), log);
    assert!(!net.node(f).is_leader());

    // On the leader: an answer claiming an index it never sent, and one from a stranger.
    let before = net.node(l).counters().dropped_unexpected;
    let leader_last = net.node(l).last_index();
    let commit = net.node(l).commit_index();
    net.node_mut(l).step(msg(
        f,
        l,
        term,
        MessageBody::AppendEntriesResponse {
            success: true,
            index: leader_last + 100,
            reject_hint: None,
            send_tick: 1,
        },
    ));
    net.node_mut(l).step(msg(
        9,
        l,
        term,
        MessageBody::AppendEntriesResponse {
            success: true,
            index: leader_last,
            reject_hint: None,
            send_tick: 1,
        },
    ));
    // A second "leader" of the same term.
    net.node_mut(l).step(msg(f, l, term, heartbeat(0)));
    net.process(l);
    assert_eq!(net.node(l).counters().dropped_unexpected, before + 3);
    assert!(net.node(l).is_leader());
    assert_eq!(net.node(l).commit_index(), commit);
}

#[test]
fn oversized_snapshot_is_refused() {
    let mut net = Network::with_config(&[1, 2, 3], |c| c.max_snapshot_bytes = 100);
    let l = net.elect_any();
    net.tick_all(1);
    let f = if l == 1 { 2 } else { 1 };
    let term = net.node(f).term();
    let before = net.node(f).counters().dropped_unexpected;
    net.node_mut(f).step(msg(
        l,
        f,
        term,
        MessageBody::InstallSnapshot {
            meta: SnapshotMeta {
                last_index: 50,
                last_term: term,
                membership: Membership::new([1, 2, 3]),
            },
            offset: 0,
            total_bytes: 1_000_000,
            data: Bytes::from_static(b"xx"),
            send_tick: 1,
        },
    ));
    net.process(f);
    assert_eq!(net.node(f).counters().dropped_unexpected, before + 1);
    assert!(net.peer(f).installed_snapshots.is_empty());
    assert!(net.node(f).last_index() < 50);
}

/// A random message with plausible (and implausible) fields.
fn random_message(rng: &mut SplitMix64, to: NodeId, term: Term, last: Index) -> Message {
    let r = |rng: &mut SplitMix64, n: u64| rng.range(0, n.max(1));
    let term = match r(rng, 40) {
        0..=3 => term.saturating_sub(1),
        4..=7 => term + 1,
        8 => term + r(rng, 1000),
        _ => term,
    };
    let idx = |rng: &mut SplitMix64| match r(rng, 4) {
        0 => r(rng, 1_000_000),
        _ => r(rng, last + 4),
    };
    let entries = |rng: &mut SplitMix64, prev: Index| -> Vec<Entry> {
        let n = r(rng, 4);
        (0..n)
            .map(|k| Entry {
                index: if r(rng, 5) == 0 {
                    r(rng, last + 5)
                } else {
                    prev + 1 + k
                },
                term: r(rng, term + 2),
                payload: match r(rng, 3) {
                    0 => EntryPayload::Blank,
                    1 => EntryPayload::Normal(Bytes::from_static(b"fuzz")),
                    _ => EntryPayload::Membership(Membership::new([1, 2, 3, r(rng, 6)])),
                },
            })
            .collect()
    };
    let body = match r(rng, 13) {
        0 => MessageBody::PreVote {
            last_log_index: idx(rng),
            last_log_term: r(rng, term + 2),
        },
        1 => MessageBody::PreVoteResponse {
            granted: r(rng, 2) == 0,
        },
        2 => MessageBody::RequestVote {
            last_log_index: idx(rng),
            last_log_term: r(rng, term + 2),
            leader_transfer: r(rng, 2) == 0,
        },
        3 => MessageBody::RequestVoteResponse {
            granted: r(rng, 2) == 0,
        },
        4 => {
            let prev = idx(rng);
            MessageBody::AppendEntries {
                prev_log_index: prev,
                prev_log_term: r(rng, term + 2),
                entries: entries(rng, prev),
                leader_commit: idx(rng),
                send_tick: r(rng, 1000),
            }
        }
        5 => MessageBody::AppendEntriesResponse {
            success: r(rng, 2) == 0,
            index: idx(rng),
            reject_hint: if r(rng, 2) == 0 {
                None
            } else {
                Some((idx(rng), r(rng, term + 2)))
            },
            send_tick: r(rng, 1000),
        },
        6 => MessageBody::Heartbeat {
            leader_commit: idx(rng),
            read_seq: r(rng, 50),
            send_tick: r(rng, 1000),
        },
        7 => MessageBody::HeartbeatResponse {
            read_seq: r(rng, 50),
            send_tick: r(rng, 1000),
            last_index: idx(rng),
        },
        8 => {
            let total = r(rng, 64);
            MessageBody::InstallSnapshot {
                meta: SnapshotMeta {
                    last_index: idx(rng),
                    last_term: r(rng, term + 2),
                    membership: Membership::new([1, 2, 3]),
                },
                offset: r(rng, total + 2),
                total_bytes: total,
                data: Bytes::from(vec![7u8; r(rng, 20) as usize]),
                send_tick: r(rng, 1000),
            }
        }
        9 => MessageBody::InstallSnapshotResponse {
            last_index: idx(rng),
            last_term: r(rng, term + 2),
            next_offset: r(rng, 100),
            rejected: r(rng, 2) == 0,
            send_tick: r(rng, 1000),
        },
        10 => MessageBody::TimeoutNow,
        11 => MessageBody::ReadIndexRequest {
            batch_id: r(rng, 10),
        },
        _ => MessageBody::ReadIndexResponse {
            batch_id: r(rng, 10),
            result: if r(rng, 2) == 0 {
                Ok(idx(rng))
            } else {
                Err(ReadIndexFailure::NotLeader)
            },
        },
    };
    let from = if r(rng, 20) == 0 {
        r(rng, 5)
    } else {
        2 + r(rng, 2)
    };
    let mut m = msg(from, to, term, body);
    if r(rng, 20) == 0 {
        m.group = r(rng, 10);
    }
    if r(rng, 20) == 0 {
        m.to = r(rng, 5);
    }
    m
}

#[test]
fn random_messages_never_panic() {
    // Each node is alone (its peers are forged): nothing it does with forged input
    // can be compared across nodes, but the harness still checks its own
    // invariants (terms never go back, only persisted entries are applied, reads
    // are at or below the applied index).
    let (mut led, mut installed, mut applied) = (0, 0, 0);
    for seed in 0..100u64 {
        let m = Membership::new([1, 2, 3]);
        let mut net = Network::restored(
            vec![(1, restore_state(log_with_terms(&m, &[2, 2, 3]), 3, 2))],
            |c| {
                c.snapshot_chunk_bytes = 8;
                c.seed = seed;
            },
        );
        let mut rng = SplitMix64::new(seed);
        for step in 0..2000 {
            let (term, last) = (net.node(1).term(), net.node(1).last_index());
            let m = random_message(&mut rng, 1, term, last);
            net.node_mut(1).step(m);
            if step % 7 == 0 {
                net.node_mut(1).tick();
            }
            if step % 50 == 0 && net.node(1).is_leader() {
                let _ = net.node_mut(1).propose(Bytes::from_static(b"p"));
                let _ = net.node_mut(1).read_index(step);
            }
            net.process(1);
        }
        net.drop_queue();
        led += net.leaders.len();
        installed += net.peer(1).installed_snapshots.len();
        applied += net.peer(1).applied_index;
    }
    // The forged traffic reached the deep paths, not only the input checks.
    assert!(
        led > 0 && installed > 0 && applied > 100 * 4,
        "led {led}, snapshots {installed}, applied {applied}"
    );
}
