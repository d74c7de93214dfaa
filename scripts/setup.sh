#!/usr/bin/env bash
# Installs every system package Bulkhead's build, tests, demo and benchmarks need (Debian, root).
set -euo pipefail
need=(iproute2)
missing=()
for p in "${need[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
