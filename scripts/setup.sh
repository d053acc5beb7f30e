#!/usr/bin/env bash
# Installs and starts what awx needs on a Debian machine, and only what is missing; safe to run
# again. curl and jq (the walkthrough `make run` prints uses them) come from apt, as do
# Postgres 15+ and Redis 7+, which are started on loopback without systemd;
# anvil, solc and the official x402 SDKs come from the npm registry into tools/node_modules
# (git-ignored), pinned by tools/package-lock.json.
#
# Environment: AWX_PG_PORT (5432), AWX_REDIS_PORT (6379).
set -euo pipefail
cd "$(dirname "$0")/.."

PG_PORT="${AWX_PG_PORT:-5432}"
REDIS_PORT="${AWX_REDIS_PORT:-6379}"
PG_MAJOR_MIN=15
PG_CONNECTIONS_MIN=400
REDIS_MAJOR_MIN=7

log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else die "need root (or sudo) for: $*"; fi
}

apt_updated=""
apt_install() {
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -z "$apt_updated" ]; then
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  log "apt-get install ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# ---------------------------------------------------------------- curl and jq (the walkthrough of `make run`)
missing_tools=()
for tool in curl jq; do
  command -v "$tool" >/dev/null 2>&1 || missing_tools+=("$tool")
done
[ ${#missing_tools[@]} -eq 0 ] || apt_install "${missing_tools[@]}"

# ---------------------------------------------------------------- Python venv (tools/venv of scripts/api-fuzz.sh)
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  apt_install python3 python3-venv
fi

# ---------------------------------------------------------------- Node.js (for anvil, solc, SDKs)
if ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm
fi

# ---------------------------------------------------------------- Postgres
pg_up() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null; }
if ! command -v pg_isready >/dev/null 2>&1 || ! pg_up; then
  if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    apt_install postgresql postgresql-client
  fi
  version="$(ls /usr/lib/postgresql | sort -V | tail -n 1)"
  [ "${version%%.*}" -ge "$PG_MAJOR_MIN" ] || die "Postgres $version is older than $PG_MAJOR_MIN"
  if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$version main"; then
    log "creating Postgres $version cluster 'main' on port $PG_PORT"
    as_root pg_createcluster --port "$PG_PORT" "$version" main >/dev/null
  fi
  if ! pg_up; then
    log "starting Postgres $version on 127.0.0.1:$PG_PORT"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start
  fi
  for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
  pg_up || die "Postgres did not come up on 127.0.0.1:$PG_PORT"
fi
# TCP logins use password authentication on a stock Debian cluster: give the postgres role the
# development password the test and run URLs use (postgres://postgres:postgres@127.0.0.1).
if ! PGPASSWORD=postgres psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; then
  log "setting the development password of the postgres role"
  as_root su postgres -c "psql -p $PG_PORT -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
fi
pg_version="$(PGPASSWORD=postgres psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atqc 'show server_version_num')"
[ "$pg_version" -ge $((PG_MAJOR_MIN * 10000)) ] || die "Postgres on port $PG_PORT is version $pg_version, need $PG_MAJOR_MIN+"
# The test suite runs several whole platforms at once (each service with its pools), which needs
# more than Postgres's default 100 connections: raise the limit once (ALTER SYSTEM) and restart.
pg_sql() { PGPASSWORD=postgres psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -Atqc "$1"; }
if [ "$(pg_sql 'show max_connections')" -lt "$PG_CONNECTIONS_MIN" ]; then
  cluster="$(pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port {print $1" "$2; exit}')"
  [ -n "$cluster" ] || die "Postgres on port $PG_PORT allows $(pg_sql 'show max_connections') connections, the tests need $PG_CONNECTIONS_MIN, and it is not a cluster pg_ctlcluster can restart: raise max_connections by hand"
  log "raising Postgres max_connections to $PG_CONNECTIONS_MIN (restarts Postgres $cluster)"
  pg_sql "ALTER SYSTEM SET max_connections = $PG_CONNECTIONS_MIN" >/dev/null
  # shellcheck disable=SC2086 # the version and the cluster's name are two arguments
  as_root pg_ctlcluster --skip-systemctl-redirect $cluster restart
  for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
  pg_up || die "Postgres did not come back on 127.0.0.1:$PG_PORT after the restart"
fi

# ---------------------------------------------------------------- Redis
redis_up() { command -v redis-cli >/dev/null 2>&1 && [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }
if ! redis_up; then
  command -v redis-server >/dev/null 2>&1 || apt_install redis-server
  log "starting Redis on 127.0.0.1:$REDIS_PORT"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/awx.log
  for _ in $(seq 1 60); do redis_up && break; sleep 0.25; done
  redis_up || die "Redis did not come up on 127.0.0.1:$REDIS_PORT"
fi
redis_version="$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" info server | tr -d '\r' | awk -F: '/^redis_version:/{print $2}')"
[ "${redis_version%%.*}" -ge "$REDIS_MAJOR_MIN" ] || die "Redis on port $REDIS_PORT is $redis_version, need $REDIS_MAJOR_MIN+"

# ---------------------------------------------------------------- npm tools
lock_sum="$(sha256sum tools/package-lock.json | cut -d' ' -f1)"
stamp=tools/node_modules/.awx-installed
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ] || [ ! -x tools/node_modules/.bin/anvil ]; then
  log "installing tools from the npm registry (npm ci in tools/)"
  npm ci --prefix tools --no-audit --no-fund --loglevel=error >/dev/null
  echo "$lock_sum" > "$stamp"
fi
anvil_version="$(tools/node_modules/.bin/anvil --version | head -n 1)"

log "ready: $(jq --version), Postgres $pg_version on 127.0.0.1:$PG_PORT, Redis $redis_version on 127.0.0.1:$REDIS_PORT, $anvil_version, solc $(node -e 'console.log(require("./tools/node_modules/solc/package.json").version)')"
