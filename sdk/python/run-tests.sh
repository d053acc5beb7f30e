#!/usr/bin/env bash
# Runs the Python SDK's tests (tests/) with pytest from the project's git-ignored tools/venv,
# installing the pinned requirements-test.txt into it when they changed. The tests that talk to
# the platform read it from AWX_SDK_* variables, which services/awx/tests/sdk_python.rs sets after
# starting the platform on anvil; run through `cargo test -p awx-cli --test sdk_python`.
set -euo pipefail
cd "$(dirname "$0")/../.."
log() { printf 'sdk-python: %s\n' "$*" >&2; }
die() { printf 'sdk-python: error: %s\n' "$*" >&2; exit 1; }
# shellcheck source=../../scripts/venv.sh
source scripts/venv.sh
venv_install sdk/python/requirements-test.txt pytest
cd sdk/python
PYTHONPATH="$PWD" PYTHONDONTWRITEBYTECODE=1 exec "../../$VENV/bin/pytest" -q -p no:cacheprovider tests "$@"
