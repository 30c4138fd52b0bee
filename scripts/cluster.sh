#!/usr/bin/env bash
# A 3-node Rhea cluster on this machine, for trying things out.
#   bash scripts/cluster.sh start [REGIONS]   build, start nodes 1..3 (client ports 6381-6383)
#   bash scripts/cluster.sh kill N            kill -9 node N
#   bash scripts/cluster.sh restart N         start node N again from its data directory
#   bash scripts/cluster.sh stop              SIGTERM every node
#   bash scripts/cluster.sh status            rhea admin leaders
# Data and logs: ./rhea-cluster/nN/ (remove the directory to start afresh).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=rhea-cluster
BIN=./target/release/rhea
CLUSTER="1=127.0.0.1:6391,2=127.0.0.1:6392,3=127.0.0.1:6393"

start_node() {
  local n=$1 regions=${2:-1}
  mkdir -p "$DIR/n$n"
  "$BIN" server --node-id "$n" --data-dir "$DIR/n$n" \
    --raft-addr "127.0.0.1:639$n" --client-addr "127.0.0.1:638$n" \
    --metrics-addr "127.0.0.1:940$n" --tc-addr "127.0.0.1:809$n" \
    --initial-cluster "$CLUSTER" --regions "$regions" >>"$DIR/n$n/server.log" 2>&1 &
  echo $! >"$DIR/n$n/pid"
  echo "node $n: client 127.0.0.1:638$n, raft 127.0.0.1:639$n, tc 127.0.0.1:809$n, metrics http://127.0.0.1:940$n/metrics, log $DIR/n$n/server.log"
}

restart_node() {
  local n=$1
  # Everything else (id, addresses, cluster, regions) is stored in the data directory.
  "$BIN" server --data-dir "$DIR/n$n" --metrics-addr "127.0.0.1:940$n" >>"$DIR/n$n/server.log" 2>&1 &
  echo $! >"$DIR/n$n/pid"
  echo "node $n restarted from $DIR/n$n"
}

stop_node() {
  local n=$1 sig=${2:-TERM}
  if [[ -f "$DIR/n$n/pid" ]]; then
    kill "-$sig" "$(cat "$DIR/n$n/pid")" 2>/dev/null || true
    rm -f "$DIR/n$n/pid"
  fi
}

case "${1:-}" in
  start)
    cargo build --release --locked -p rhea
    for n in 1 2 3; do start_node "$n" "${2:-1}"; done
    sleep 2
    "$BIN" admin --addr 127.0.0.1:6381 leaders
    ;;
  kill) stop_node "$2" KILL; echo "node $2 killed" ;;
  restart) restart_node "$2" ;;
  stop) for n in 1 2 3; do stop_node "$n"; done; echo "stopped" ;;
  status)
    for n in 1 2 3; do
      if "$BIN" admin --addr "127.0.0.1:638$n" leaders 2>/dev/null; then exit 0; fi
    done
    echo "no node answers" >&2; exit 1 ;;
  *) sed -n '2,9p' "$0"; exit 1 ;;
esac
