//! `rhea-sim`: run the deterministic simulator over a range of seeds.
//!
//! ```text
//! cargo run --release -p rhea-sim -- --seeds 0..2000 [--steps 20000] [--verbose]
//! ```
//!
//! Prints one line per failing seed with the command that replays it, and ends
//! with `seeds: N passed, M failed`; exits non-zero when any seed failed.

use std::ops::Range;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use rhea_sim::{SimOptions, SimStats, run_seed};

#[derive(Parser, Debug)]
#[command(
    name = "rhea-sim",
    about = "Deterministic simulation of rhea-raft under faults"
)]
struct Args {
    /// Seed range START..END (END exclusive), or a single seed.
    #[arg(long, default_value = "0..100", value_parser = parse_range)]
    seeds: Range<u64>,
    /// Events processed in the chaos phase of each run.
    #[arg(long, default_value_t = 200_000)]
    steps: u64,
    /// Print a trace of the run (use with a single seed).
    #[arg(long)]
    verbose: bool,
    /// Print a line per seed, also for passing ones.
    #[arg(long)]
    each: bool,
}

fn parse_range(s: &str) -> Result<Range<u64>, String> {
    let parse = |v: &str| {
        v.trim()
            .parse::<u64>()
            .map_err(|e| format!("bad seed {v:?}: {e}"))
    };
    match s.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (parse(a)?, parse(b)?);
            if a >= b {
                return Err(format!("empty seed range {s}"));
            }
            Ok(a..b)
        }
        None => {
            let a = parse(s)?;
            Ok(a..a.saturating_add(1))
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    // A panic inside a run is reported as that seed's failure; keep stderr quiet.
    std::panic::set_hook(Box::new(|_| {}));
    let started = Instant::now();
    let (mut passed, mut failed) = (0u64, 0u64);
    let mut total = SimStats::default();
    for seed in args.seeds.clone() {
        let t = Instant::now();
        let report = run_seed(SimOptions {
            seed,
            steps: args.steps,
            verbose: args.verbose,
            storage: None,
        });
        let s = &report.stats;
        total.add(s);
        match &report.result {
            Ok(()) => {
                passed += 1;
                if args.each {
                    println!(
                        "seed {seed}: ok in {:.2}s ({} events, {} sim ticks, {} ops ok, {} unknown, {} crashes, {} leader changes, {} membership changes, {} snapshots installed)",
                        t.elapsed().as_secs_f64(),
                        s.events,
                        s.sim_time_ticks,
                        s.ops_ok,
                        s.ops_unknown,
                        s.crashes,
                        s.leader_changes,
                        s.membership_changes_done,
                        s.snapshots_installed
                    );
                }
            }
            Err(e) => {
                failed += 1;
                println!("seed {seed}: FAILED: {e}");
                println!(
                    "  replay: cargo run --release -p rhea-sim -- --seeds {seed}..{} --steps {} --verbose",
                    seed + 1,
                    args.steps
                );
            }
        }
    }
    eprintln!(
        "elapsed: {:.1}s; totals: {} events, {} sim ticks, {} ops ok ({} lease reads, {} lease attempts answered without a heartbeat round, {} follower reads, {} reads through the log), {} ops with unknown outcome, {} messages sent ({} dropped), {} crashes, {} leader changes, {} transfers started, {} membership changes, {} snapshots taken, {} installed",
        started.elapsed().as_secs_f64(),
        total.events,
        total.sim_time_ticks,
        total.ops_ok,
        total.lease_reads,
        total.lease_fast_path,
        total.follower_reads,
        total.log_reads,
        total.ops_unknown,
        total.messages_sent,
        total.messages_dropped,
        total.crashes,
        total.leader_changes,
        total.transfers_started,
        total.membership_changes_done,
        total.snapshots_taken,
        total.snapshots_installed
    );
    println!("seeds: {passed} passed, {failed} failed");
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
