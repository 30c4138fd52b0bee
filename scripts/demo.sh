#!/usr/bin/env bash
# The main job until `rhea server` exists: build Rhea and run the deterministic
# simulator's demo (20 seeds of a 5-node cluster under faults, a line per seed).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust 1.95 or newer (https://rustup.rs) and retry" >&2
  exit 1
fi
cargo run --release -p rhea-sim -- --seeds 0..20 --each "$@"
