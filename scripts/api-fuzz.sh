#!/usr/bin/env bash
# Fuzzes the public API with schemathesis (PyPI, pinned by tools/requirements-api-fuzz.txt,
# installed into the git-ignored tools/venv when missing or when the pin changes): every
# operation of openapi/openapi.json against a whole `awx dev` platform (debug build) with a real
# admin key, checking that no answer is a server error (5xx), that every answer matches the
# schema the document gives it, and that every status code is one the document declares.
# It exits non-zero on any failure; the platform stops with the script, whatever happens.
#
#   scripts/api-fuzz.sh            (`make api-fuzz`; also part of `make test`)
#
# The platform runs on ports chosen free (port 0), with its own database (awx_api_fuzz_<pid>,
# dropped at the end), Redis prefix and state directory (a temporary one), and rate limits
# raised so that they never refuse. Safety: the agent endpoints that fetch a URL (`/x402/check`,
# `/x402/pay`, `/x402/sessions/{id}/pay`) would make the gateway connect wherever a generated
# URL points, and `awx dev` allows private targets; a hook replaces every such URL before it is
# sent with one of a fixed set on this machine's loopback (the demo API, the gateway) or with
# an invalid one, so no request leaves the machine. The same hook keeps the run's own admin key
# out of the key operations (revoking or rotating it would end the run), and, so that the run
# reaches past "not found", puts ids the platform answered with (the demo agent's to begin
# with) in place of about half the generated ones.
#
# Schemathesis runs its four phases (the document's examples, coverage of boundary and invalid
# values, random fuzzing, stateful sequences) in both positive and negative modes, with at most
# API_FUZZ_MAX_EXAMPLES cases per operation and phase: 150 takes about 90 s here (2 cores),
# about 2 minutes for the whole script with the venv already installed.
#
# Environment: API_FUZZ_MAX_EXAMPLES (150), API_FUZZ_WORKERS (2), API_FUZZ_SEED (a fixed seed
# makes a run reproducible; random by default, printed by schemathesis), API_FUZZ_KEEP (1 keeps
# the state directory: logs and the JUnit and NDJSON reports; a failed run always keeps it),
# API_FUZZ_TIMEOUT_SECONDS (600: a run still going then is stopped and fails).
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXAMPLES="${API_FUZZ_MAX_EXAMPLES:-150}"
TIMEOUT_SECONDS="${API_FUZZ_TIMEOUT_SECONDS:-600}"
WORKERS="${API_FUZZ_WORKERS:-2}"
DB_NAME="awx_api_fuzz_$$"
PG_ADMIN="postgres://postgres:postgres@127.0.0.1:5432/postgres"
PREFIX="api-fuzz-$$"
REQUIREMENTS=tools/requirements-api-fuzz.txt
# shellcheck source=scripts/venv.sh
source scripts/venv.sh

log() { printf 'api-fuzz: %s\n' "$*" >&2; }
die() { printf 'api-fuzz: error: %s\n' "$*" >&2; exit 1; }

[[ "$MAX_EXAMPLES" =~ ^[1-9][0-9]*$ ]] || die "API_FUZZ_MAX_EXAMPLES must be a positive integer"
[[ "$TIMEOUT_SECONDS" =~ ^[1-9][0-9]*$ ]] || die "API_FUZZ_TIMEOUT_SECONDS must be a positive integer"

# ---------------------------------------------------------------- schemathesis in tools/venv
venv_install "$REQUIREMENTS" schemathesis

# ---------------------------------------------------------------- the platform
cargo build --quiet -p awx-cli
STATE="$(mktemp -d /tmp/awx-api-fuzz.XXXXXX)"
DEV=""
stop() {
  local status=$?
  if [ -n "$DEV" ]; then
    kill -INT "$DEV" 2>/dev/null || true
    # The platform stops on Ctrl-C within seconds; past 30 s it is killed.
    for _ in $(seq 1 300); do kill -0 "$DEV" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$DEV" 2>/dev/null || true
    wait "$DEV" 2>/dev/null || true
  fi
  if [ "$status" -ne 0 ] && [ -f "$STATE/services.log" ]; then
    log "the services' log (last 40 lines of $STATE/services.log):"
    tail -n 40 "$STATE/services.log" >&2 || true
  fi
  redis-cli -h 127.0.0.1 --scan --pattern "$PREFIX*" 2>/dev/null | xargs -r redis-cli -h 127.0.0.1 del >/dev/null 2>&1 || true
  psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" >/dev/null 2>&1 || true
  if [ "${API_FUZZ_KEEP:-0}" = 1 ] || [ "$status" -ne 0 ]; then
    log "state kept in $STATE"
  else
    rm -rf "$STATE"
  fi
  exit "$status"
}
trap stop EXIT
trap 'exit 130' INT TERM

cat >"$STATE/gateway.toml" <<'TOML'
[rate_limits]
actions = {}
[rate_limits.default.per_key]
per_second = 1000000
burst = 1000000
[rate_limits.default.global]
per_second = 1000000
burst = 1000000
TOML

RUST_LOG=warn NO_COLOR=1 AWX_GATEWAY_CONFIG="$STATE/gateway.toml" target/debug/awx dev \
  --chain-port 0 --state-file "$STATE/devchain.json" \
  --database-url "postgres://postgres:postgres@127.0.0.1:5432/$DB_NAME" \
  --gateway-addr 127.0.0.1:0 --demo-addr 127.0.0.1:0 \
  --ledger-ops-addr 127.0.0.1:0 --settlement-ops-addr 127.0.0.1:0 --policy-ops-addr 127.0.0.1:0 \
  --bus-prefix "$PREFIX" </dev/null >"$STATE/dev.log" 2>&1 &
DEV=$!
for _ in $(seq 1 1200); do
  grep -q "Press Ctrl-C" "$STATE/dev.log" 2>/dev/null && break
  kill -0 "$DEV" 2>/dev/null || { cat "$STATE/dev.log" >&2; die "awx dev stopped before it was up"; }
  sleep 0.1
done
grep -q "Press Ctrl-C" "$STATE/dev.log" || { cat "$STATE/dev.log" >&2; die "awx dev was not up within 120 s"; }
GATEWAY="$(awk '$1 == "gateway" {print $2; exit}' "$STATE/dev.log")"
DEMO="$(awk '$1 == "demo" && $2 == "API" {print $3; exit}' "$STATE/dev.log")"
DEMO="${DEMO%/v1/weather}"
[[ "$GATEWAY" =~ ^http://127\.0\.0\.1:[0-9]+$ ]] || die "no gateway URL in $STATE/dev.log"
[[ "$DEMO" =~ ^http://127\.0\.0\.1:[0-9]+$ ]] || die "no demo API URL in $STATE/dev.log"
ADMIN_KEY="$(cat "$STATE/dev-admin-key")"
AGENT_ID="$(awk '$1 == "agent" && $2 ~ /^agt_/ {print $2; exit}' "$STATE/dev.log")"
[[ "$AGENT_ID" =~ ^agt_[0-9a-f]{32}$ ]] || die "no demo agent in $STATE/dev.log"
log "platform up: gateway $GATEWAY, demo API $DEMO, state $STATE"

# ---------------------------------------------------------------- the hook (see the header)
mkdir -p "$STATE/hooks"
cat >"$STATE/hooks/awx_api_fuzz_hooks.py" <<'PY'
"""schemathesis hooks of scripts/api-fuzz.sh.

- Safety: no generated URL reaches the gateway's outbound client unless it is one of a fixed set
  on loopback, and the run's admin key is never revoked or rotated.
- Depth: random ids name nothing, so every id the platform answers with (agents, sessions,
  payments, withdrawals, keys; the demo agent to begin with) goes into a pool, and about half of
  the generated ids in paths and bodies are replaced by one of the right kind from it.
- Tool: CPython 3.11 can raise `SystemError: AST constructor recursion depth mismatch` from
  `ast.parse` deep in a recursion. Hypothesis parses source only to describe a lambda (a repr),
  so such a description becomes "<unknown>" instead of crashing the run; no generated value or
  check changes.
"""
import os
import re
import zlib

import hypothesis.internal.lambda_sources as _lambda_sources
import schemathesis

_describe_lambda = _lambda_sources._lambda_description


def _lambda_description_or_unknown(f):
    try:
        return _describe_lambda(f)
    except SystemError:
        return "lambda: <unknown>"


_lambda_sources._lambda_description = _lambda_description_or_unknown

GATEWAY = os.environ["AWX_FUZZ_GATEWAY"]
DEMO = os.environ["AWX_FUZZ_DEMO"]
ADMIN_KEY_ID = os.environ["AWX_FUZZ_ADMIN_KEY_ID"].lower()
# Payable (demo), unknown path (no challenge), not x402, and refused before any connection.
SAFE_URLS = [
    f"{DEMO}/v1/weather",
    f"{DEMO}/v1/report",
    f"{DEMO}/nowhere",
    f"{GATEWAY}/health/live",
    "not a url",
    "ftp://127.0.0.1/",
    "http://user:secret@127.0.0.1/",
    "",
]
URL_FIELDS = ("url", "target_url")
ID = re.compile(r"^([a-z]{3})_[0-9a-f]{32}$")
ID_FIELDS = {"agent_id": "agt", "session_id": "ses", "ledger_id": "ldg", "withdrawal_id": "ldg", "key_id": "key"}
POOL_MAX = 64
POOL = {"agt": [os.environ["AWX_FUZZ_AGENT_ID"]]}


def pick(value, choices):
    return choices[zlib.crc32(str(value).encode("utf-8", "surrogatepass")) % len(choices)]


def known_id(field, value):
    """Half the time (by the generated value), an id of the right kind the platform answered with."""
    pool = POOL.get(ID_FIELDS[field])
    if not pool or zlib.crc32(("pool" + str(value)).encode("utf-8", "surrogatepass")) % 2:
        return value
    return pick(value, pool)


def collect(value):
    if isinstance(value, dict):
        for item in value.values():
            collect(item)
    elif isinstance(value, list):
        for item in value:
            collect(item)
    elif isinstance(value, str):
        match = ID.match(value)
        if match and ADMIN_KEY_ID not in value:
            pool = POOL.setdefault(match.group(1), [])
            if value not in pool:
                pool.append(value)
                del pool[:-POOL_MAX]


@schemathesis.hook
def before_call(ctx, case, kwargs):
    params = case.path_parameters
    if isinstance(params, dict):
        for field in ID_FIELDS:
            if field in params:
                params[field] = known_id(field, params[field])
    if isinstance(case.body, dict):
        for field in ("agent_id", "session_id"):
            if isinstance(case.body.get(field), str):
                case.body[field] = known_id(field, case.body[field])
        for field in URL_FIELDS:
            if isinstance(case.body.get(field), str):
                case.body[field] = pick(case.body[field], SAFE_URLS)
    if isinstance(params, dict):
        key_id = params.get("key_id")
        if isinstance(key_id, str) and ADMIN_KEY_ID in key_id.lower():
            params["key_id"] = "key_" + "0" * 32


@schemathesis.hook
def after_call(ctx, case, response):
    if 200 <= response.status_code < 300:
        try:
            collect(response.json())
        except Exception:
            pass
PY
ADMIN_KEY_ID="${ADMIN_KEY#awx_}"
ADMIN_KEY_ID="${ADMIN_KEY_ID%%_*}"

# ---------------------------------------------------------------- schemathesis
log "schemathesis over every operation of openapi/openapi.json ($MAX_EXAMPLES examples each, $WORKERS workers)"
seed_args=()
[ -n "${API_FUZZ_SEED:-}" ] && seed_args=(--seed "$API_FUZZ_SEED")
started=$SECONDS
ROOT="$PWD"
set +e
# From the state directory: schemathesis keeps its cache of failures (`st replay`) in ./.schemathesis.
cd "$STATE"
PYTHONPATH="$STATE/hooks" SCHEMATHESIS_HOOKS=awx_api_fuzz_hooks \
  AWX_FUZZ_GATEWAY="$GATEWAY" AWX_FUZZ_DEMO="$DEMO" AWX_FUZZ_ADMIN_KEY_ID="$ADMIN_KEY_ID" AWX_FUZZ_AGENT_ID="$AGENT_ID" \
  timeout "$TIMEOUT_SECONDS" "$ROOT/$VENV/bin/schemathesis" run "$ROOT/openapi/openapi.json" \
  --url "$GATEWAY" \
  --header "X-API-Key: $ADMIN_KEY" \
  --checks not_a_server_error,response_schema_conformance,status_code_conformance \
  --max-examples "$MAX_EXAMPLES" \
  --workers "$WORKERS" \
  --generation-with-security-parameters false \
  --generation-database none \
  --request-timeout 30 \
  --suppress-health-check all \
  --no-color \
  --report junit,ndjson --report-dir "$STATE/report" \
  "${seed_args[@]}"
status=$?
set -e
cd "$ROOT"
[ "$status" -eq 124 ] && log "schemathesis did not finish within $TIMEOUT_SECONDS s"
log "schemathesis finished in $((SECONDS - started)) s with exit code $status"
exit "$status"
