#!/usr/bin/env bash
# Profiles the pay benchmark (docs/benchmarks.md, "Where a payment's CPU goes"): runs
# scripts/bench-pay.sh with each concurrent phase profiled into PROFILE_DIR (default
# target/profile-pay): the Postgres statements per payment (pg_stat_statements) and, with perf,
# the CPU of each process and the platform's heaviest functions. pg_stat_statements must be in
# shared_preload_libraries: this script puts it there for the run (a Postgres restart) and takes
# it out again afterwards (another restart). perf comes from Debian's linux-perf package.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE_DIR="${PROFILE_DIR:-target/profile-pay}"
PG_PORT=5432
pg_sql() { PGPASSWORD=postgres psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atqc "$1"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

scripts/setup.sh
command -v perf >/dev/null || as_root apt-get install -y -qq linux-perf >/dev/null || echo "profile-pay: no perf; statements only" >&2
cluster="$(pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port {print $1" "$2; exit}')"
[ -n "$cluster" ] || { echo "profile-pay: Postgres on port $PG_PORT is not a cluster pg_ctlcluster can restart" >&2; exit 1; }
restart() {
  # shellcheck disable=SC2086 # the version and the cluster's name are two arguments
  as_root pg_ctlcluster --skip-systemctl-redirect $cluster restart
  for _ in $(seq 1 60); do pg_sql 'select 1' >/dev/null 2>&1 && return; sleep 0.5; done
  echo "profile-pay: Postgres did not come back" >&2; exit 1
}
previous="$(pg_sql 'show shared_preload_libraries')"
if [[ "$previous" != *pg_stat_statements* ]]; then
  pg_sql "ALTER SYSTEM SET shared_preload_libraries = '${previous:+$previous,}pg_stat_statements'" >/dev/null
  restart
  if [ -z "$previous" ]; then
    trap 'pg_sql "ALTER SYSTEM RESET shared_preload_libraries" >/dev/null; restart' EXIT
  else
    trap 'pg_sql "ALTER SYSTEM SET shared_preload_libraries = '"'$previous'"'" >/dev/null; restart' EXIT
  fi
fi
mkdir -p "$PROFILE_DIR"
BENCH_PROFILE_DIR="$(cd "$PROFILE_DIR" && pwd)" scripts/bench-pay.sh
echo "profile-pay: profiles in $PROFILE_DIR"
