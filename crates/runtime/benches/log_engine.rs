//! Throughput of the log engine on real files: batches of 1, 16 and 256
//! entries of 128 bytes, spread over 1 or 64 groups, with fsync per batch on
//! and off. A batch of E entries over G groups takes the next E groups in
//! round-robin order, one entry each, wrapping (so 256 entries over 64 groups
//! is 4 entries per group, and 1 entry over 64 groups touches one group).
//!
//! ```text
//! cargo bench -p rhea-runtime --bench log_engine [-- --secs 2 --dir /path/on/the/disk/to/test]
//! ```
//!
//! Each configuration writes to a fresh directory (under the system temp dir
//! unless `--dir` is given) that is removed afterwards. Figures are payload
//! bytes (MB = 10^6 bytes); fsyncs/s counts the engine's file fsyncs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rhea_raft::{Entry, EntryPayload};
use rhea_runtime::{LogEngine, LogEngineOptions, StdDisk, WriteBatch};

const ENTRY_BYTES: usize = 128;

struct Args {
    secs: f64,
    dir: PathBuf,
}

fn parse_args() -> Args {
    let mut args = Args {
        secs: 1.0,
        dir: std::env::temp_dir(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--secs" => {
                if let Some(v) = it.next().and_then(|v| v.parse().ok()) {
                    args.secs = v;
                }
            }
            "--dir" => {
                if let Some(v) = it.next() {
                    args.dir = PathBuf::from(v);
                }
            }
            // `cargo bench` passes --bench; ignore it and anything unknown.
            _ => {}
        }
    }
    args
}

struct Outcome {
    entries: u64,
    batches: u64,
    fsyncs: u64,
    elapsed: Duration,
}

fn run(
    base: &std::path::Path,
    groups: u64,
    per_batch: u64,
    sync: bool,
    secs: f64,
) -> Result<Outcome, Box<dyn std::error::Error>> {
    let dir = base.join(format!(
        "rhea-log-bench-{}-{groups}-{per_batch}-{sync}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let (mut engine, _) = LogEngine::open(StdDisk, &dir, LogEngineOptions::default())?;
    let payload = Bytes::from(vec![0x5a; ENTRY_BYTES]);
    let mut next_index = vec![1u64; groups as usize];
    let mut cursor = 0u64;
    let mut per_group: Vec<Vec<Entry>> = vec![Vec::new(); groups as usize];
    let mut out = Outcome {
        entries: 0,
        batches: 0,
        fsyncs: 0,
        elapsed: Duration::ZERO,
    };
    let limit = Duration::from_secs_f64(secs);
    let start = Instant::now();
    while start.elapsed() < limit {
        for _ in 0..per_batch {
            let g = (cursor % groups) as usize;
            cursor += 1;
            per_group[g].push(Entry {
                term: 1,
                index: next_index[g],
                payload: EntryPayload::Normal(payload.clone()),
            });
            next_index[g] += 1;
        }
        let mut batch = WriteBatch::new();
        for (g, entries) in per_group.iter_mut().enumerate() {
            if !entries.is_empty() {
                batch.append(g as u64 + 1, std::mem::take(entries));
            }
        }
        engine.write(&batch, sync)?;
        out.entries += per_batch;
        out.batches += 1;
    }
    out.elapsed = start.elapsed();
    out.fsyncs = engine.fsync_count();
    drop(engine);
    std::fs::remove_dir_all(&dir)?;
    Ok(out)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args();
    println!(
        "log engine: {ENTRY_BYTES}-byte entries, {:.1} s per configuration, dir {}",
        args.secs,
        args.dir.display()
    );
    println!(
        "{:>6} {:>7} {:>5} {:>12} {:>9} {:>11} {:>10}",
        "groups", "batch", "sync", "entries/s", "MB/s", "batches/s", "fsyncs/s"
    );
    for groups in [1u64, 64] {
        for per_batch in [1u64, 16, 256] {
            for sync in [true, false] {
                let o = run(&args.dir, groups, per_batch, sync, args.secs)?;
                let s = o.elapsed.as_secs_f64();
                println!(
                    "{:>6} {:>7} {:>5} {:>12.0} {:>9.1} {:>11.0} {:>10.0}",
                    groups,
                    per_batch,
                    if sync { "on" } else { "off" },
                    o.entries as f64 / s,
                    (o.entries * ENTRY_BYTES as u64) as f64 / s / 1e6,
                    o.batches as f64 / s,
                    o.fsyncs as f64 / s,
                );
            }
        }
    }
    Ok(())
}
