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
cargo test --workspace
echo "== demo (the README's main job, on the netns testbed, debug build)"
cargo build -p bulkhead-control -p bulkhead-testbed --bins
BULKHEAD_SKIP_SETUP=1 BULKHEAD_SKIP_BUILD=1 BULKHEAD_PROFILE=debug scripts/demo.sh
