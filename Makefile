# awx: the two commands that matter are `make run` and `make test`. `make help` lists the rest.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

export PATH := $(CURDIR)/tools/node_modules/.bin:$(PATH)
export CARGO_TERM_COLOR ?= never

CARGO ?= cargo

.PHONY: help setup run build test test-rust conformance lint fmt fuzz fuzz-ci api-fuzz openapi contracts contracts-check vectors bench-gateway bench-ledger bench-facilitator bench-pay profile-pay bench-settlement bench-watcher clean validate-deploy run-services migrate

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: ## Install and start what is missing: curl, jq, Postgres, Redis (apt), anvil, solc, x402 SDKs (npm)
	@scripts/setup.sh

run: setup ## Run the platform locally: dependencies, development chain with the token, the services (options: ARGS="--gateway-addr 127.0.0.1:9080")
	@echo "make run: building and starting awx dev (the first build takes a few minutes)" >&2
	@$(CARGO) run --quiet -p awx-cli --bin awx -- dev $(ARGS)

SERVICE_PACKAGES := -p awx-cli -p awx-gateway -p awx-policy-service -p awx-ledger-service -p awx-signer-service -p awx-settlement-service

run-services: setup ## Run the platform as separate processes, as deployed: two replicas of each service, two gateways (8080, 8088), logs in .awx/processes/logs
	@echo "make run-services: building the service binaries (the first build takes a few minutes)" >&2
	@$(CARGO) build --quiet $(SERVICE_PACKAGES) --bins
	@$(CARGO) run --quiet -p awx-cli --bin awx -- dev --processes $(ARGS)

migrate: ## Create the database if missing and apply the migrations (AWX_DATABASE_URL, default the local awx database)
	@$(CARGO) run --quiet -p awx-cli --bin awx -- migrate

build: ## Build everything (debug)
	$(CARGO) build --workspace --all-targets

test: setup lint validate-deploy test-rust fuzz-ci api-fuzz ## Everything CI checks: setup, lint, every test, a short fuzz run, the API fuzz run

TEST_THREADS ?= 4

test-rust: ## Run the Rust tests (unit, property, golden vectors, chain, contract artifacts): cargo nextest, TEST_THREADS (4) tests at a time across all test binaries, then the doc tests
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --no-fail-fast --test-threads $(TEST_THREADS); \
	else \
	  echo "cargo-nextest is not installed: running the tests with cargo test, one test binary at a time (slower)"; \
	  $(CARGO) test --workspace --no-fail-fast --lib --bins --tests -- --test-threads $(TEST_THREADS); \
	fi
	$(CARGO) test --workspace --doc

FUZZ_SECONDS ?= 60
FUZZ_CI_SECONDS ?= 15

fuzz: ## Run every fuzz target (fuzz/, cargo fuzz on nightly) for FUZZ_SECONDS each (60)
	scripts/fuzz.sh $(FUZZ_SECONDS)

fuzz-ci: ## The short fuzz run of `make test`: every target for FUZZ_CI_SECONDS (15)
	scripts/fuzz.sh $(FUZZ_CI_SECONDS)

api-fuzz: setup ## schemathesis over every operation of openapi/openapi.json against a running `awx dev` (debug build)
	scripts/api-fuzz.sh

validate-deploy: setup ## Validate deploy/: the Kubernetes overlays (kubernetes-validate, strict) and docker-compose.yml (the compose schema)
	scripts/validate-deploy.sh

conformance: setup ## Interop with the official x402 SDKs as real processes (also part of test-rust)
	$(CARGO) test -p awx-cli --test conformance

lint: ## cargo fmt --check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	$(CARGO) fmt --all

openapi: ## Regenerate openapi/openapi.json from the gateway's handlers, and the SDKs' types from it (tests fail when either drifts)
	$(CARGO) run --quiet -p awx-cli --bin awx -- openapi > openapi/openapi.json
	python3 sdk/python/tools/gen_types.py
	node sdk/typescript/tools/gen-types.mjs

contracts: ## Recompile contracts/src into contracts/out with the pinned solc
	node contracts/compile.js

contracts-check: ## Fail if contracts/out differs from a fresh compile
	node contracts/compile.js --check

vectors: ## Regenerate the golden vectors with viem and @x402/core
	node crates/x402/tests/data/generate_vectors.js

bench-gateway: ## Benchmark the gateway (release build, wrk); results go in docs/benchmarks.md by hand
	scripts/bench-gateway.sh

bench-ledger: ## Benchmark the ledger beside pgbench (release build)
	scripts/bench-ledger.sh

bench-facilitator: ## Benchmark the facilitator (verify, settle) through a release `awx dev`
	scripts/bench-facilitator.sh

bench-pay: ## Benchmark /x402/pay and paid requests through a release `awx dev`, beside pgbench
	scripts/bench-pay.sh

profile-pay: ## The pay benchmark profiled: Postgres statements and CPU per process and function per payment
	scripts/profile-pay.sh

bench-settlement: ## Benchmark net settlement: gas per payment three ways, the batch worker's items/s (release)
	scripts/bench-settlement.sh

bench-watcher: ## Benchmark the chain watcher: lag behind the head, deposit latency, 1,000 transfers a block (release)
	scripts/bench-watcher.sh

clean: ## Remove build output
	$(CARGO) clean
