#!/usr/bin/env bash
# The whole test suite: system packages, formatting, lints, unit, integration and end-to-end tests.
# Runs as root on a fresh Debian machine with Rust stable (end-to-end tests build network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
if [ "${BULKHEAD_SKIP_SETUP:-0}" != 1 ]; then
  scripts/setup.sh
fi
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
totals() {
  read -r passed failed < <(awk '/^test result:/ {p += $4; f += $6} END {print p+0, f+0}' "$log")
}
# --no-fail-fast: one failing test binary must not hide the results of the others.
status=0
cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?
if [ "$status" != 0 ]; then
  totals
  grep -E '^test .* FAILED$' "$log" || true
  echo "tests: $passed passed, $failed failed (cargo test exit $status)"
  exit "$status"
fi
echo "== demo (the README's main job, on the netns testbed, debug build)"
cargo build -p bulkhead-control -p bulkhead-testbed --bins
BULKHEAD_SKIP_SETUP=1 BULKHEAD_SKIP_BUILD=1 BULKHEAD_PROFILE=debug scripts/demo.sh
# One closing line for the whole suite: the cargo tests' totals plus the demo's checks.
totals
echo "cargo test totals and the demo above; all green"
echo "tests: $passed passed, $failed failed"
