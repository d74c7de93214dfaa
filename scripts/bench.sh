#!/usr/bin/env bash
# The full benchmark set: installs the peers (via scripts/setup.sh: dpdk-dev for dpdk-test-acl and
# dpdk-testpmd, netsniff-ng for trafgen, nftables), builds Bulkhead and the harness in release
# mode, runs every scenario of issue 6 side by side with its peer, then the criterion
# micro-benchmarks, and writes everything under bench/results/:
#
#   results.md    the Markdown tables (also printed)
#   results.json  every figure, for tooling
#   latency.svg   the latency distributions (percentile spectrum)
#   micro.txt     criterion's output
#
# Usage: scripts/bench.sh [bulkhead-bench arguments...]   e.g. scripts/bench.sh engine classify
# Environment: BULKHEAD_SKIP_SETUP=1 skips the package install; BENCH_MICRO=0 skips criterion;
#              BENCH_OUT=DIR writes elsewhere than bench/results.
# The AF_XDP scenario needs root (it builds its own network namespaces, 198.18.0.0/15 only, and
# removes them on exit); without root it is skipped with a note.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
out=${BENCH_OUT:-bench/results}
target=${CARGO_TARGET_DIR:-target}

if [ "${BULKHEAD_SKIP_SETUP:-0}" != 1 ]; then
  if [ "$(id -u)" = 0 ]; then
    scripts/setup.sh
  else
    echo "bench.sh: not root: skipping package install (peers may be missing)" >&2
  fi
fi

echo "== building (release)"
cargo build --release -p bulkhead-bench
# The AF_XDP scenario drives the real `bulkhead run`; build it when the control plane builds.
bulkhead_args=()
if cargo build --release -p bulkhead-control --bin bulkhead; then
  bulkhead_args=(--bulkhead "$target/release/bulkhead")
else
  echo "bench.sh: bulkhead binary did not build: the AF_XDP scenario will skip Bulkhead" >&2
fi

mkdir -p "$out"
echo "== bulkhead-bench"
"$target/release/bulkhead-bench" --out "$out" "${bulkhead_args[@]}" "$@"

if [ "${BENCH_MICRO:-1}" != 0 ]; then
  echo "== criterion micro-benchmarks"
  cargo bench -p bulkhead-bench --bench micro 2>&1 | tee "$out/micro.txt"
fi
echo "results in $out/"
