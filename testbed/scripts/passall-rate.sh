#!/usr/bin/env bash
# Pass-all forwarding rate through the AF_XDP bump on the veth testbed, next to plain kernel
# bridging in the same firewall namespace. Root only; uses its own namespaces (tag "prate"), all
# removed on exit. Bounded: each measurement runs DURATION seconds (default 5).
#
#   testbed/scripts/passall-rate.sh [PATH/TO/xdp-passall] [PATH/TO/testbed]
#
# Prints, per forwarder: ping RTT (min/avg/max), TCP throughput (iperf3, MTU 1500) and UDP 64-byte
# datagrams received per second (iperf3 -u -l 18 -b 0: 18 bytes payload = 64-byte frames).
# These are functional rates on a shared 2-core VM with the senders on the same cores, not a
# benchmark of the dataplane alone: compare the rows against each other.
set -euo pipefail
cd "$(dirname "$0")/../.."
PASSALL=${1:-${CARGO_TARGET_DIR:-target}/release/xdp-passall}
TESTBED=${2:-${CARGO_TARGET_DIR:-target}/debug/testbed}
DURATION=${DURATION:-5}
TAG=prate
FW=bh-$TAG-fw C=bh-$TAG-corp1 W=bh-$TAG-web1
pa_pid=

cleanup() {
  if [ -n "$pa_pid" ]; then kill -TERM "$pa_pid" 2>/dev/null || true; wait "$pa_pid" 2>/dev/null || true; fi
  "$TESTBED" down --tag $TAG >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$TESTBED" up --tag $TAG >/dev/null

measure() {
  local name=$1
  local rtt tcp udp
  rtt=$(ip netns exec $C ping -c 20 -i 0.05 -q -W 1 198.19.1.10 | awk -F'[ /]' '/rtt/ {print $7"/"$8"/"$9" ms"}')
  ip netns exec $W timeout $((DURATION + 10)) iperf3 -s -1 -B 198.19.1.10 -p 5301 >/dev/null 2>&1 &
  local srv=$!
  sleep 0.5
  tcp=$(ip netns exec $C timeout $((DURATION + 10)) iperf3 -c 198.19.1.10 -p 5301 -t "$DURATION" -f m 2>/dev/null | awk '/receiver/ {print $7" "$8}')
  wait "$srv" || true
  ip netns exec $W timeout $((DURATION + 10)) iperf3 -s -1 -B 198.19.1.10 -p 5302 >/dev/null 2>&1 &
  srv=$!
  sleep 0.5
  udp=$(ip netns exec $C timeout $((DURATION + 10)) iperf3 -c 198.19.1.10 -p 5302 -u -l 18 -b 0 -t "$DURATION" 2>/dev/null \
        | awk -v d="$DURATION" '/receiver/ {split($(NF-2), a, "/"); printf "%d pps (lost %s)", (a[2]-a[1])/d, $(NF-1)}')
  wait "$srv" || true
  printf '%-22s rtt %-24s tcp %-14s udp64 %s\n' "$name" "${rtt:-n/a}" "${tcp:-n/a}" "${udp:-n/a}"
}

# 1. Kernel bridge between inside and outside (the no-firewall baseline).
ip -n $FW link add br0 type bridge stp_state 0
ip -n $FW link set inside master br0
ip -n $FW link set outside master br0
ip -n $FW link set br0 up
measure "kernel-bridge"
ip -n $FW link del br0

# 2. and 3. AF_XDP pass-all, native then generic XDP.
for mode in native generic; do
  ip netns exec $FW "$PASSALL" --inside inside --outside outside --mode $mode >/tmp/passall-rate.$$.out 2>&1 &
  pa_pid=$!
  for _ in $(seq 50); do grep -q ready /tmp/passall-rate.$$.out && break; sleep 0.1; done
  measure "xdp-passall-$mode"
  kill -TERM $pa_pid; wait $pa_pid || true; pa_pid=
  grep -E '^(stats|kernel)' /tmp/passall-rate.$$.out | sed 's/^/    /'
done
rm -f /tmp/passall-rate.$$.out
