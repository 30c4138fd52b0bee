#!/usr/bin/env bash
# The main job: build Rhea (release) and start a node. With no arguments it is
# a single-node store in ./rhea-data speaking the Redis protocol on
# 127.0.0.1:6380 (try: redis-cli -p 6380). Arguments go to `rhea server`.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust 1.95 or newer (https://rustup.rs) and retry" >&2
  exit 1
fi
cargo build --release --locked -p rhea
exec ./target/release/rhea server "$@"
