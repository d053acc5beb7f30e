#!/usr/bin/env bash
# Validates the deployment files where there is no cluster and no container engine (CI's case):
#
# - every overlay of deploy/kubernetes/ is rendered (scripts/kustomize_render.py: no kustomize
#   binary can be installed here, so a small renderer of exactly the kustomize features we use;
#   where `kubectl kustomize` works its output is compared) and each rendered object is validated
#   by kubernetes-validate against Kubernetes $KUBERNETES_VERSION, strictly (unknown fields
#   refused), then checked for what schemas miss (selectors, named ports, the signer's network
#   policies, no committed Secret);
# - docker-compose.yml is validated against the compose specification's JSON schema vendored in
#   deploy/schemas/ (see its README), then its mounts, secrets, networks and build targets.
#
# The example configurations of deploy/config are checked by their services' own loaders in
# `cargo test -p awx-cli --test deploy_configs` (part of `make test-rust`).
#
# kubernetes-validate, jsonschema and PyYAML (pinned by tools/requirements-deploy.txt) are
# installed into the git-ignored tools/venv, shared with scripts/api-fuzz.sh, when missing or when
# the pins change. Exits non-zero on any error.
#
#   scripts/validate-deploy.sh        (`make validate-deploy`; also part of `make test`)
set -euo pipefail
cd "$(dirname "$0")/.."

KUBERNETES_VERSION="${KUBERNETES_VERSION:-1.33.0}"
REQUIREMENTS=tools/requirements-deploy.txt
# shellcheck source=scripts/venv.sh
source scripts/venv.sh

log() { printf 'validate-deploy: %s\n' "$*" >&2; }
die() { printf 'validate-deploy: error: %s\n' "$*" >&2; exit 1; }

venv_install "$REQUIREMENTS" kubernetes-validate

exec "$VENV/bin/python" scripts/validate_deploy.py "$KUBERNETES_VERSION" "$@"
