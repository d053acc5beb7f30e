#!/usr/bin/env bash
# Stops the local Postgres and Redis, so CI proves that `make test` starts them itself.
set -uo pipefail
PG_PORT="${AWX_PG_PORT:-5432}"
REDIS_PORT="${AWX_REDIS_PORT:-6379}"
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters -h 2>/dev/null | while read -r version cluster port status _; do
    if [ "$port" = "$PG_PORT" ] && [ "$status" = "online" ]; then
      pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" stop && echo "stopped Postgres $version/$cluster" >&2
    fi
  done
fi
if command -v redis-cli >/dev/null 2>&1 && [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; then
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1
  echo "stopped Redis on port $REDIS_PORT" >&2
fi
exit 0
