#!/usr/bin/env bash
# Transaction benchmarks of BENCHMARKS.md, on a fresh 3-node cluster in
# ./rhea-bench-txn (release build, fsync on):
#   bash scripts/bench-txn.sh empty [PARTITIONS...]   empty global transactions/s per partition count
#   bash scripts/bench-txn.sh bank                    bank transfers/s: AT (global) vs plain local transactions
# Environment: TRANSACTIONS (20000), CONCURRENCY (64), TRANSFERS (5000),
# BANK_CONCURRENCY (16), ACCOUNTS (1000).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p rhea >/dev/null
BIN=./target/release/rhea
DIR=rhea-bench-txn
TC=127.0.0.1:18191,127.0.0.1:18192,127.0.0.1:18193
CLUSTER=1=127.0.0.1:17491,2=127.0.0.1:17492,3=127.0.0.1:17493

start() {
  local parts=$1
  stop
  rm -rf "$DIR" && mkdir -p "$DIR"
  for n in 1 2 3; do
    "$BIN" server --node-id $n --data-dir "$DIR/n$n" --raft-addr 127.0.0.1:1749$n \
      --client-addr 127.0.0.1:1748$n --tc-addr 127.0.0.1:1819$n --initial-cluster "$CLUSTER" \
      --tc-session-partitions "$parts" --tc-lock-partitions "$parts" --log-level warn \
      >"$DIR/n$n.log" 2>&1 &
    echo $! >"$DIR/n$n.pid"
  done
  sleep 4
}

stop() {
  for f in "$DIR"/n*.pid; do
    [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
  done
  sleep 1
}
trap stop EXIT

case "${1:-empty}" in
  empty)
    shift || true
    for p in "${@:-1 2 4 8}"; do
      for parts in $p; do
        start "$parts"
        echo "== partitions: $parts session + $parts lock, 3 nodes"
        "$BIN" txn bench --tc "$TC" --transactions "${TRANSACTIONS:-20000}" \
          --concurrency "${CONCURRENCY:-64}" --quiet
      done
    done
    ;;
  bank)
    start 4
    common=(--tc "$TC" --accounts "${ACCOUNTS:-1000}" --transfers "${TRANSFERS:-5000}"
      --concurrency "${BANK_CONCURRENCY:-16}" --abort-ratio 0 --quiet --table rhea_bench_account)
    echo "== AT: one global transaction per transfer, a branch on each database"
    "$BIN" txn bank "${common[@]}" --reset
    echo "== plain: the same two updates as two local transactions, no coordinator"
    "$BIN" txn bank "${common[@]}" --mode plain
    ;;
  *)
    echo "usage: $0 empty [PARTITIONS...] | bank" >&2
    exit 2
    ;;
esac
