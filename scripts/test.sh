#!/usr/bin/env bash
# Everything CI checks, in order: formatting, lints, unit/integration tests,
# then the simulator over a fixed seed range (sized for ~10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
SIM_SEEDS="${SIM_SEEDS:-0..6000}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
echo "== simulator: seeds $SIM_SEEDS"
cargo run --release --locked -p rhea-sim -- --seeds "$SIM_SEEDS"
