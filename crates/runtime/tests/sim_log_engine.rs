//! The deterministic simulator (`rhea-sim`) with every node's storage being
//! the real [`LogEngine`] on a [`SimDisk`]: crashes lose unsynced bytes (a
//! torn tail at any byte, unsynced directory operations), the engine must
//! recover, and the simulator's invariants and linearizability checker must
//! still hold. Snapshot images are kept the way the driver keeps them:
//! durable and atomic before the engine records the install.
//!
//! Recovery is the driver's own [`recover_log`]. This test found that a
//! crash between the durable snapshot image and its unsynced install record
//! left the log with a gap after restart (seed 224 before the fix).
//!
//! Seeds: `RHEA_SIM_ENGINE_SEEDS` (default 240), steps per seed
//! `RHEA_SIM_ENGINE_STEPS` (default 40000).

use std::sync::Arc;

use rhea_raft::{Entry, HardState, Index, Snapshot, SplitMix64};
use rhea_runtime::{LogEngine, LogEngineOptions, SimDisk, WriteBatch, recover_log};
use rhea_sim::{NodeStorage, Recovered, SimOptions, StorageFactory, run_seed};

const GROUP: u64 = 1;
const DIR: &str = "/node/log";

struct EngineStorage {
    disk: SimDisk,
    opts: LogEngineOptions,
    engine: Option<LogEngine>,
    /// The newest snapshot image (a file written atomically and durably).
    image: Option<Snapshot>,
    torn_tails: u64,
}

impl EngineStorage {
    fn new(segment_max_bytes: u64) -> Self {
        EngineStorage {
            disk: SimDisk::new(),
            opts: LogEngineOptions {
                segment_max_bytes,
                ..LogEngineOptions::default()
            },
            engine: None,
            image: None,
            torn_tails: 0,
        }
    }

    fn engine(&mut self) -> Result<&mut LogEngine, String> {
        if self.engine.is_none() {
            let (e, report) = LogEngine::open(self.disk.clone(), DIR, self.opts.clone())
                .map_err(|e| format!("open: {e}"))?;
            self.torn_tails += u64::from(report.truncated_records > 0);
            self.engine = Some(e);
        }
        self.engine
            .as_mut()
            .ok_or_else(|| "engine missing".to_string())
    }
}

impl NodeStorage for EngineStorage {
    fn write(
        &mut self,
        snapshot: Option<&Snapshot>,
        entries: &[Entry],
        hard_state: Option<HardState>,
    ) -> Result<(), String> {
        let mut batch = WriteBatch::new();
        if let Some(s) = snapshot {
            // As the driver does: the image is durable before the log refers to it.
            self.image = Some(s.clone());
            batch.install_snapshot(GROUP, s.meta.clone());
        }
        if !entries.is_empty() {
            batch.append(GROUP, entries.to_vec());
        }
        if let Some(hs) = hard_state {
            batch.set_hard_state(GROUP, hs);
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.engine()?
            .write(&batch, false)
            .map_err(|e| format!("write: {e}"))
    }

    fn sync(&mut self) -> Result<(), String> {
        self.engine()?.sync().map_err(|e| format!("sync: {e}"))
    }

    fn purge(&mut self, to: Index) -> Result<(), String> {
        let mut batch = WriteBatch::new();
        batch.purge(GROUP, to);
        let e = self.engine()?;
        e.write(&batch, false)
            .map_err(|e| format!("purge record: {e}"))?;
        e.purge().map(|_| ()).map_err(|e| format!("purge: {e}"))
    }

    fn save_snapshot(&mut self, snapshot: Snapshot) -> Result<(), String> {
        self.image = Some(snapshot);
        Ok(())
    }

    fn crash(&mut self, rng: &mut SplitMix64) {
        self.engine = None;
        self.disk.crash(rng.next_u64());
    }

    fn recover(&mut self) -> Result<Recovered, String> {
        self.engine = None;
        let image = self.image.clone();
        let e = self.engine()?;
        // The driver's own recovery code, reconciliation included.
        let (hard_state, entries) = recover_log(e, GROUP, image.as_ref().map(|s| &s.meta))
            .map_err(|e| format!("recovery: {e}"))?;
        Ok(Recovered {
            hard_state,
            snapshot: image,
            entries,
        })
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
fn simulator_over_the_real_log_engine() {
    let seeds = env("RHEA_SIM_ENGINE_SEEDS", 240);
    let steps = env("RHEA_SIM_ENGINE_STEPS", 40_000);
    let mut failed = Vec::new();
    let mut crashes = 0;
    for seed in 0..seeds {
        // Small segments so rotation and purge happen within a run.
        let segment = [2_048u64, 16_384, 1 << 20][(seed % 3) as usize];
        let factory = StorageFactory(Arc::new(move |_node| {
            Box::new(EngineStorage::new(segment)) as Box<dyn NodeStorage>
        }));
        let report = run_seed(SimOptions {
            seed,
            steps,
            verbose: false,
            storage: Some(factory),
        });
        crashes += report.stats.crashes;
        if let Err(e) = report.result {
            failed.push(format!("seed {seed}: {e}"));
        }
    }
    assert!(
        crashes > 0,
        "the runs crashed no node: the test proves nothing"
    );
    assert!(
        failed.is_empty(),
        "{} seeds failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}
