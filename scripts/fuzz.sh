#!/usr/bin/env bash
# Runs the libFuzzer targets of fuzz/ with cargo fuzz on the nightly toolchain.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# SECONDS_PER_TARGET defaults to 60 (`make fuzz`; `make fuzz-ci` passes 15). Every target runs
# by default. cargo-fuzz is installed, when missing, into the git-ignored tools/cargo with the
# project's own toolchain; the fuzz build needs the nightly toolchain and fails loudly without it.
#
# Each target reads its committed seeds from fuzz/corpus/<target>/ and writes what it learns to
# the git-ignored fuzz/work/<target>/ (so a run never changes the committed corpus). A crash
# stops the script with exit 1; the input is in fuzz/artifacts/<target>/ and libFuzzer's log in
# fuzz/work/<target>.log. Reproduce with
#   tools/cargo/bin/cargo-fuzz +nightly run -s none -a <target> fuzz/artifacts/<target>/<file>
# (or `PATH=$PWD/tools/cargo/bin:$PATH cargo +nightly fuzz run ...`).
#
# Environment: FUZZ_SANITIZER (none; `address` for AddressSanitizer: the project's code has no
# `unsafe`, so panics and assertions are the oracle, and ASan halves the speed), FUZZ_JOBS (how
# many targets run at a time; the number of cores).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
SECONDS_PER_TARGET="${1:-60}"
shift || true
SANITIZER="${FUZZ_SANITIZER:-none}"
JOBS="${FUZZ_JOBS:-$(nproc)}"
ROOT="$PWD"
TOOLS="$ROOT/tools/cargo"

log() { printf 'fuzz: %s\n' "$*" >&2; }
die() { printf 'fuzz: error: %s\n' "$*" >&2; exit 1; }

[[ "$SECONDS_PER_TARGET" =~ ^[1-9][0-9]*$ ]] || die "seconds per target must be a positive integer, not '$SECONDS_PER_TARGET'"

# ---------------------------------------------------------------- the nightly toolchain
command -v rustup >/dev/null 2>&1 || die "rustup is not installed: cargo fuzz needs rustup's nightly toolchain"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  die "the nightly Rust toolchain is missing (rustup toolchain list shows no nightly). cargo fuzz
  builds with nightly-only flags; install it with 'rustup toolchain install nightly' where the
  network allows. The fuzz step does not skip: 'make test' fails here until nightly is there."
fi

# ---------------------------------------------------------------- cargo-fuzz into tools/cargo
installed_version() { "$TOOLS/bin/cargo-fuzz" --version 2>/dev/null | awk '{print $2}'; }
if [ ! -x "$TOOLS/bin/cargo-fuzz" ] || [ "$(installed_version)" != "$CARGO_FUZZ_VERSION" ]; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION into tools/cargo (about 30 s)"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$TOOLS" --quiet \
    || die "could not install cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
fi
export PATH="$TOOLS/bin:$PATH"

# ---------------------------------------------------------------- targets
mapfile -t ALL_TARGETS < <(cargo +nightly fuzz list --fuzz-dir fuzz)
[ ${#ALL_TARGETS[@]} -gt 0 ] || die "cargo fuzz list found no targets in fuzz/"
if [ $# -gt 0 ]; then TARGETS=("$@"); else TARGETS=("${ALL_TARGETS[@]}"); fi

FLAGS=(--sanitizer "$SANITIZER" --debug-assertions)
log "building ${#ALL_TARGETS[@]} targets (release, debug assertions, sanitizer $SANITIZER)"
build_start=$SECONDS
cargo +nightly fuzz build --fuzz-dir fuzz "${FLAGS[@]}" || die "the fuzz build failed"
log "built in $((SECONDS - build_start)) s"

run_target() {
  local target="$1" work="fuzz/work/$1" seeds="fuzz/corpus/$1"
  mkdir -p "$work" "$seeds"
  if (cargo +nightly fuzz run --fuzz-dir fuzz "${FLAGS[@]}" "$target" "$work" "$seeds" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
        -print_final_stats=1) >"$work.log" 2>&1; then
    local runs
    runs="$(grep -Eo 'Done [0-9]+ runs in [0-9]+ second' "$work.log" | tail -n 1 || true)"
    log "$target: ok (${runs:-finished}; corpus $(find "$work" -type f | wc -l) inputs)"
  else
    log "$target: FAILED. libFuzzer's log ($work.log) ends with:"
    tail -n 40 "$work.log" >&2
    log "$target: the input is in fuzz/artifacts/$target/; reproduce with:"
    log "  PATH=\$PWD/tools/cargo/bin:\$PATH cargo +nightly fuzz run -s $SANITIZER -a $target fuzz/artifacts/$target/<file>"
    return 1
  fi
}

log "running ${#TARGETS[@]} targets for $SECONDS_PER_TARGET s each, $JOBS at a time"
failed=0
pids=()
for target in "${TARGETS[@]}"; do
  run_target "$target" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$JOBS" ]; then
    wait "${pids[0]}" || failed=1
    pids=("${pids[@]:1}")
  fi
done
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
[ "$failed" -eq 0 ] || die "a fuzz target found a failure (see above)"
log "all targets passed"
