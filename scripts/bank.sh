#!/usr/bin/env bash
# The distributed-transaction demo: build, start a single-node Rhea server
# (TC on 127.0.0.1:8091, data in ./rhea-bank-data) unless one already
# listens there, run `rhea txn bank` against this machine's PostgreSQL and
# MariaDB, and stop the server it started. Extra arguments go to
# `rhea txn bank` (defaults: --accounts 100 --transfers 1000 --concurrency 8
# --abort-ratio 0.1). Exits non-zero if the bank's total does not hold.
set -euo pipefail
cd "$(dirname "$0")/.."
PG="${PG:-postgres://postgres@127.0.0.1:5432/test}"
MYSQL="${MYSQL:-mysql://root@127.0.0.1:3306/test}"
cargo build --release --locked -p rhea
BIN=./target/release/rhea
reachable() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
started=""
if ! reachable 8091; then
  mkdir -p rhea-bank-data
  "$BIN" server --data-dir rhea-bank-data --client-addr 127.0.0.1:6480 --raft-addr 127.0.0.1:6490 \
    --tc-addr 127.0.0.1:8091 >>rhea-bank-data/server.log 2>&1 &
  started=$!
  trap '[ -n "$started" ] && kill "$started" 2>/dev/null; wait "$started" 2>/dev/null || true' EXIT
  for _ in $(seq 1 100); do reachable 8091 && break; sleep 0.1; done
  echo "started rhea server (pid $started, TC 127.0.0.1:8091, log rhea-bank-data/server.log)"
fi
"$BIN" txn bank --tc 127.0.0.1:8091 --pg "$PG" --mysql "$MYSQL" --reset "$@"
