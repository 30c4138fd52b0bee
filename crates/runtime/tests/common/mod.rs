//! Shared by the log engine tests: a reference model of what the engine must
//! store, a random generator of valid batches, and helpers.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use rhea_raft::{
    Entry, EntryPayload, GroupId, HardState, Index, Membership, SnapshotMeta, SplitMix64,
};
use rhea_runtime::{LogEngine, WriteBatch};

/// Everything observable about one group through the engine's API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupView {
    pub first: Index,
    pub last: Index,
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    pub snapshot: Option<SnapshotMeta>,
}

pub type View = BTreeMap<GroupId, GroupView>;

/// Read every group's state back from the engine (entries from disk).
pub fn observe(engine: &LogEngine) -> View {
    let mut view = View::new();
    for g in engine.groups() {
        let first = engine
            .first_index(g)
            .expect("listed group has a first index");
        let last = engine.last_index(g).expect("listed group has a last index");
        let entries = engine
            .entries(g, first, last + 1)
            .unwrap_or_else(|e| panic!("group {g}: entries [{first}, {last}]: {e}"));
        view.insert(
            g,
            GroupView {
                first,
                last,
                entries,
                hard_state: engine.hard_state(g),
                snapshot: engine.snapshot_meta(g),
            },
        );
    }
    view
}

/// One operation of a batch, applied both to a [`WriteBatch`] and to the model.
#[derive(Clone, Debug)]
pub enum Op {
    Append(GroupId, Vec<Entry>),
    HardState(GroupId, HardState),
    Snapshot(GroupId, SnapshotMeta),
    Purge(GroupId, Index),
}

#[derive(Clone, Debug, Default)]
struct ModelGroup {
    purged: Index,
    last: Index,
    entries: BTreeMap<Index, Entry>,
    hard_state: Option<HardState>,
    snapshot: Option<SnapshotMeta>,
}

/// The specification, written as plainly as possible.
#[derive(Clone, Debug, Default)]
pub struct Model {
    groups: BTreeMap<GroupId, ModelGroup>,
}

impl Model {
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Append(g, entries) => {
                let Some(first) = entries.first() else { return };
                let m = self.groups.entry(*g).or_default();
                m.entries.retain(|i, _| *i < first.index);
                for e in entries {
                    m.entries.insert(e.index, e.clone());
                }
                m.last = entries.last().map_or(m.last, |e| e.index);
            }
            Op::HardState(g, hs) => self.groups.entry(*g).or_default().hard_state = Some(*hs),
            Op::Snapshot(g, meta) => {
                let m = self.groups.entry(*g).or_default();
                m.entries.clear();
                m.purged = meta.last_index;
                m.last = meta.last_index;
                m.snapshot = Some(meta.clone());
            }
            Op::Purge(g, to) => {
                let purged = self.groups.get(g).map_or(0, |m| m.purged);
                if *to <= purged {
                    return;
                }
                let m = self.groups.entry(*g).or_default();
                m.entries.retain(|i, _| i > to);
                m.purged = *to;
            }
        }
    }

    pub fn view(&self) -> View {
        self.groups
            .iter()
            .map(|(g, m)| {
                (
                    *g,
                    GroupView {
                        first: m.purged + 1,
                        last: m.last,
                        entries: m.entries.values().cloned().collect(),
                        hard_state: m.hard_state,
                        snapshot: m.snapshot.clone(),
                    },
                )
            })
            .collect()
    }

    fn bounds(&self, g: GroupId) -> (Index, Index) {
        self.groups.get(&g).map_or((0, 0), |m| (m.purged, m.last))
    }

    fn last_term(&self, g: GroupId) -> u64 {
        self.groups
            .get(&g)
            .and_then(|m| m.entries.values().next_back().map(|e| e.term))
            .unwrap_or(1)
    }
}

pub fn batch_of(ops: &[Op]) -> WriteBatch {
    let mut b = WriteBatch::new();
    for op in ops {
        match op {
            Op::Append(g, e) => b.append(*g, e.clone()),
            Op::HardState(g, hs) => b.set_hard_state(*g, *hs),
            Op::Snapshot(g, m) => b.install_snapshot(*g, m.clone()),
            Op::Purge(g, to) => b.purge(*g, *to),
        }
    }
    b
}

pub fn entry(term: u64, index: Index, data: &[u8]) -> Entry {
    Entry {
        term,
        index,
        payload: EntryPayload::Normal(Bytes::copy_from_slice(data)),
    }
}

pub fn entries(term: u64, range: std::ops::RangeInclusive<Index>, len: usize) -> Vec<Entry> {
    range
        .map(|i| entry(term, i, &vec![(i % 251) as u8; len]))
        .collect()
}

fn random_payload(rng: &mut SplitMix64) -> EntryPayload {
    match rng.range(0, 20) {
        0 => EntryPayload::Blank,
        1 => EntryPayload::Membership(Membership {
            voters: [1, 2, 3].into(),
            old_voters: rng.chance(1, 2).then(|| [1, 2, 4].into()),
            learners: [9].into(),
            priorities: [(1, 10), (2, -1)].into(),
        }),
        _ => {
            let len = rng.range(0, 60) as usize;
            EntryPayload::Normal(
                (0..len)
                    .map(|_| rng.next_u64() as u8)
                    .collect::<Vec<u8>>()
                    .into(),
            )
        }
    }
}

/// A random operation that is valid against `model` (and applies it to the model).
pub fn random_op(rng: &mut SplitMix64, model: &mut Model, groups: u64) -> Op {
    let g = rng.range(1, groups + 1);
    let (purged, last) = model.bounds(g);
    let op = match rng.range(0, 20) {
        0..=11 => {
            // Mostly appends at the end, sometimes a conflicting suffix rewrite.
            let first = if last > purged && rng.chance(1, 4) {
                rng.range(purged + 1, last + 1)
            } else {
                last + 1
            };
            let term = model.last_term(g) + u64::from(first <= last);
            let n = rng.range(1, 6);
            let entries = (0..n)
                .map(|k| Entry {
                    term,
                    index: first + k,
                    payload: random_payload(rng),
                })
                .collect();
            Op::Append(g, entries)
        }
        12..=15 => Op::HardState(
            g,
            HardState {
                term: rng.range(1, 100),
                voted_for: rng.range(0, 4),
                commit: rng.range(0, last + 1),
            },
        ),
        16..=17 if last > purged => Op::Purge(g, rng.range(purged + 1, last + 1)),
        16 | 17 => Op::HardState(g, HardState::default()),
        _ => Op::Snapshot(
            g,
            SnapshotMeta {
                last_index: rng.range(purged, last + 6),
                last_term: rng.range(1, 50),
                membership: Membership::new([1, 2, 3]),
            },
        ),
    };
    model.apply(&op);
    op
}

/// A unique, empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("rhea-{name}-{}-{nanos}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A compact one-line-per-group rendering of a view, for failure messages.
pub fn summary(view: &View) -> String {
    let mut out = String::new();
    for (g, v) in view {
        let idx: Vec<String> = v
            .entries
            .iter()
            .map(|e| format!("{}@{}", e.index, e.term))
            .collect();
        out.push_str(&format!(
            "  g{g}: [{}, {}] hs {:?} snap {:?} entries {}\n",
            v.first,
            v.last,
            v.hard_state.map(|h| (h.term, h.voted_for, h.commit)),
            v.snapshot.as_ref().map(|s| (s.last_index, s.last_term)),
            idx.join(" ")
        ));
    }
    out
}
