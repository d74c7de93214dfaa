#!/usr/bin/env bash
# Installs every system package Bulkhead's build, tests, demo and benchmarks need (Debian, as root).
# Idempotent: packages already installed are skipped, and apt is touched only when something is missing.
#
# Why each package is here:
#   build of xsk-rs/libxdp-sys (libxdp and libbpf are compiled from source by the crate's build script):
#     clang llvm m4 libelf-dev zlib1g-dev libpcap-dev pkg-config make gcc-multilib (the last provides
#     /usr/include/asm, which clang -target bpf needs when libxdp compiles its BPF objects)
#   testbed and end-to-end tests: iproute2 (ip netns/link/addr), iputils-ping, netcat-openbsd, socat,
#     iperf3, ethtool, bpftool (inspecting attached XDP programs when debugging), jq (the demo reads
#     `bulkhead stats --json` and the JSON-lines flow log)
#   benchmarks: tcpreplay, netsniff-ng (trafgen), nftables (kernel forwarding baseline),
#     dpdk + dpdk-dev (dpdk-testpmd with net_af_xdp, dpdk-test-acl)
#   metrics checks in the demo: prometheus (promtool and the server)
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: must run as root (it installs Debian packages)" >&2
  exit 1
fi

need=(
  # build
  clang llvm m4 libelf-dev zlib1g-dev libpcap-dev pkg-config make gcc gcc-multilib
  # testbed / e2e
  iproute2 iputils-ping netcat-openbsd socat iperf3 ethtool bpftool jq
  # benchmarks
  tcpreplay netsniff-ng nftables dpdk dpdk-dev
  # metrics
  prometheus
)

missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  # policy-rc.d keeps package postinst scripts (prometheus, iperf3) from starting daemons.
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  status=0
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" || status=$?
  if [ "$created_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ "$status" != 0 ]; then
    echo "setup.sh: apt-get install failed ($status)" >&2
    exit "$status"
  fi
else
  echo "setup.sh: all system packages present"
fi

# bpffs is where libbpf/libxdp look for pinned objects; mount it if the host did not.
if ! mount | grep -q ' type bpf '; then
  mkdir -p /sys/fs/bpf
  mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
fi
