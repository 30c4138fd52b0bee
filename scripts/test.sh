#!/usr/bin/env bash
# Everything CI checks, in order: formatting, lints, unit/integration tests,
# then the simulator over a fixed seed range (sized for ~10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
SIM_SEEDS="${SIM_SEEDS:-0..6000}"

# The AT-mode, bank and end-to-end transaction tests use this machine's
# PostgreSQL (127.0.0.1:5432, user postgres, trust, database test) and
# MariaDB (127.0.0.1:3306, root without password, database test). Start them
# if they are installed but stopped; create the databases if missing.
reachable() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for svc in "postgresql 5432" "mariadb 3306"; do
  set -- $svc
  if ! reachable "$2" && command -v service >/dev/null && [ -x "/etc/init.d/$1" ]; then
    echo "== starting $1"
    service "$1" start || true
    for _ in $(seq 1 30); do reachable "$2" && break; sleep 1; done
  fi
  reachable "$2" || { echo "error: $1 is not reachable on 127.0.0.1:$2 (the transaction tests need it)" >&2; exit 1; }
done
if command -v psql >/dev/null; then
  psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 ||
    psql -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE test"
fi
if command -v mariadb >/dev/null; then
  mariadb -h 127.0.0.1 -u root -e "CREATE DATABASE IF NOT EXISTS test"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
echo "== simulator: seeds $SIM_SEEDS"
cargo run --release --locked -p rhea-sim -- --seeds "$SIM_SEEDS"
