//! A simulated node's durable storage, behind a trait so that the same runs
//! can drive the in-memory model here or the runtime's real log engine on a
//! simulated disk (`crates/runtime/tests/sim_log_engine.rs`; the runtime
//! depends on this crate for tests, never the other way round).
//!
//! The contract mirrors what the runtime driver does with a `Ready`:
//! `write` is issued before the fsync (nothing is durable yet), `sync` makes
//! every earlier write durable, `crash` loses any suffix of the unsynced
//! writes (possibly torn at any byte), `recover` reads back what survived.

use rhea_raft::{Entry, HardState, Index, Snapshot, SplitMix64};

/// What a restarted node finds on its disk.
#[derive(Clone, Debug, Default)]
pub struct Recovered {
    pub hard_state: HardState,
    pub snapshot: Option<Snapshot>,
    /// Entries after the snapshot, in order.
    pub entries: Vec<Entry>,
}

pub trait NodeStorage {
    /// Persist (without syncing) a received snapshot, then entries (truncating
    /// any stored entry at or after the first one), then the hard state.
    fn write(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<HardState>,
    ) -> Result<(), String>;
    /// Make every earlier write durable.
    fn sync(&mut self) -> Result<(), String>;
    /// Entries up to `to` are no longer needed (a snapshot covers them).
    fn purge(&mut self, to: Index) -> Result<(), String>;
    /// A snapshot this node took: stored atomically and durably at once.
    fn save_snapshot(&mut self, snapshot: Snapshot) -> Result<(), String>;
    /// Power loss: unsynced writes are lost, all or a suffix of them.
    fn crash(&mut self, rng: &mut SplitMix64);
    /// Read back what survived.
    fn recover(&mut self) -> Result<Recovered, String>;
}

#[derive(Clone, Debug)]
enum DiskOp {
    HardState(HardState),
    Snapshot(Snapshot),
    Entries(Vec<Entry>),
}

/// The in-memory model: synced state plus a queue of unsynced operations, of
/// which a crash keeps none or a random prefix.
#[derive(Default)]
pub struct ModelDisk {
    hs: HardState,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
    unsynced: Vec<DiskOp>,
}

impl ModelDisk {
    fn apply(&mut self, op: DiskOp) {
        match op {
            DiskOp::HardState(h) => self.hs = h,
            DiskOp::Snapshot(s) => {
                self.snapshot = Some(s);
                self.entries.clear();
            }
            DiskOp::Entries(es) => {
                let Some(first) = es.first().map(|e| e.index) else {
                    return;
                };
                self.entries.retain(|e| e.index < first);
                self.entries.extend(es);
            }
        }
    }
}

impl NodeStorage for ModelDisk {
    fn write(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<HardState>,
    ) -> Result<(), String> {
        if let Some(s) = snapshot {
            self.unsynced.push(DiskOp::Snapshot(s.clone()));
        }
        if !entries.is_empty() {
            self.unsynced.push(DiskOp::Entries(entries.to_vec()));
        }
        if let Some(hs) = hard_state {
            self.unsynced.push(DiskOp::HardState(hs));
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), String> {
        for op in std::mem::take(&mut self.unsynced) {
            self.apply(op);
        }
        Ok(())
    }

    fn purge(&mut self, to: Index) -> Result<(), String> {
        self.entries.retain(|e| e.index > to);
        Ok(())
    }

    fn save_snapshot(&mut self, snapshot: Snapshot) -> Result<(), String> {
        self.snapshot = Some(snapshot);
        Ok(())
    }

    fn crash(&mut self, rng: &mut SplitMix64) {
        let ops = std::mem::take(&mut self.unsynced);
        let keep = if rng.chance(1, 2) {
            0
        } else {
            rng.range(0, ops.len() as u64 + 1) as usize
        };
        for op in ops.into_iter().take(keep) {
            self.apply(op);
        }
    }

    fn recover(&mut self) -> Result<Recovered, String> {
        let base = self.snapshot.as_ref().map_or(0, |s| s.meta.last_index);
        Ok(Recovered {
            hard_state: self.hs,
            snapshot: self.snapshot.clone(),
            entries: self
                .entries
                .iter()
                .filter(|e| e.index > base)
                .cloned()
                .collect(),
        })
    }
}
