#!/usr/bin/env bash
# Bulkhead demo: the firewall on real traffic, start to finish, in about two minutes after the build.
#
#   scripts/demo.sh            (as root, on Debian, with Rust stable)
#
# What it does, in order:
#   1. installs the system packages it needs (scripts/setup.sh) and builds in release;
#   2. checks the shipped demo policy (config/demo/policy) against the demo's expectations, offline
#      (`bulkhead policy test` with cases generated from the testbed's real addresses);
#   3. brings up the network-namespace testbed (`testbed up --tag <unique>`: corp, dev and CI hosts
#      inside; prod web, prod db and the artifact repository outside; the firewall namespace between);
#   4. starts `bulkhead run` in the firewall namespace with the demo policy, a control socket, a
#      Prometheus endpoint on the namespace's loopback and a flow log;
#   5. drives real traffic with the kernel's own TCP/UDP/ICMP stacks from several zones (allowed,
#      denied, and one flow in the monitored dev segment that passes as would_deny) and checks each
#      verdict twice: on the wire (did the connection work?) and at the firewall (its counters moved
#      the right way, and denied / would-deny flows are in the flow log with the deciding rule);
#   6. prints the live counters (`bulkhead stats`, `bulkhead top --once`), latency percentiles and
#      the Prometheus KPIs;
#   7. quarantines a host that has an established TCP stream: the stream is cut, other hosts keep
#      working, time to contain is printed;
#   8. stops the firewall (SIGTERM: no XDP program may be left) and tears the testbed down. Teardown
#      runs from a trap: also on failure, on Ctrl-C and when the overall time limit fires.
#
# Exit status: 0 only if every expected verdict was seen (PASS/FAIL table at the end), 1 otherwise,
# 2 when the demo could not run at all (not root, build failure, ...).
#
# Environment:
#   BULKHEAD_SKIP_SETUP=1   do not run scripts/setup.sh (packages already installed)
#   BULKHEAD_SKIP_BUILD=1   do not build; use the binaries already built under $CARGO_TARGET_DIR
#                           (default ./target): profile BULKHEAD_PROFILE (release or debug), by
#                           default whichever bulkhead binary is newer
#   BULKHEAD_BIN, TESTBED_BIN   explicit binaries (override the above)
#   BULKHEAD_DEMO_TAG       testbed tag (default: random, e.g. demo1a2b3c); namespaces bh-<tag>-*
#   BULKHEAD_DEMO_XDP_MODE  native (default of `bulkhead run`) or generic
#   BULKHEAD_DEMO_TIMEOUT   overall limit in seconds after the build (default 240)
#   BULKHEAD_DEMO_KEEP=1    keep the work directory (logs, flow log, stats snapshots) afterwards
set -Eeuo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

POLICY="$ROOT/config/demo/policy"
METRICS_ADDR="127.0.0.1:9464" # inside the firewall namespace: its own loopback, reachable by nobody else
LIMIT="${BULKHEAD_DEMO_TIMEOUT:-240}"

if [ -t 1 ]; then
  B=$'\e[1m' G=$'\e[32m' R=$'\e[31m' Y=$'\e[33m' N=$'\e[0m'
else
  B='' G='' R='' Y='' N=''
fi
say() { printf '%s\n' "$*"; }
step() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }
warn() { printf '%sdemo: %s%s\n' "$Y" "$*" "$N" >&2; }
fatal() {
  printf '%sdemo: %s%s\n' "$R" "$*" "$N" >&2
  exit 2
}
now_ns() { date +%s%N; }
ms_since() { echo $((($(now_ns) - $1) / 1000000)); }

if [ "$(id -u)" != 0 ]; then
  fatal "must run as root (it creates network namespaces and attaches XDP programs)"
fi

# ---------------------------------------------------------------------------------------------
# 1. packages and build
# ---------------------------------------------------------------------------------------------
if [ "${BULKHEAD_SKIP_SETUP:-0}" != 1 ]; then
  step "installing system packages (scripts/setup.sh)"
  scripts/setup.sh
fi
for tool in ip socat ping jq timeout setsid ethtool; do
  command -v "$tool" >/dev/null || fatal "$tool is missing (run scripts/setup.sh, or install it)"
done

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ -z "${BULKHEAD_BIN:-}" ] || [ -z "${TESTBED_BIN:-}" ]; then
  if [ "${BULKHEAD_SKIP_BUILD:-0}" != 1 ]; then
    step "building Bulkhead (release)"
    command -v cargo >/dev/null || fatal "cargo is missing (install Rust stable: https://rustup.rs)"
    t0=$(now_ns)
    cargo build --release -p bulkhead-control -p bulkhead-testbed --bins || fatal "build failed"
    say "built in $(($(ms_since "$t0") / 1000)) s"
    profile=release
  elif [ -n "${BULKHEAD_PROFILE:-}" ]; then
    profile=$BULKHEAD_PROFILE
  elif [ "$TARGET_DIR/debug/bulkhead" -nt "$TARGET_DIR/release/bulkhead" ]; then
    profile=debug # the newest build wins, so a test suite that built debug never runs a stale release
  else
    profile=release
  fi
  [ -n "${BULKHEAD_BIN:-}" ] || BULKHEAD_BIN="$TARGET_DIR/$profile/bulkhead"
  [ -n "${TESTBED_BIN:-}" ] || TESTBED_BIN="$TARGET_DIR/$profile/testbed"
fi
[ -n "${BULKHEAD_BIN:-}" ] && [ -x "$BULKHEAD_BIN" ] || fatal "no bulkhead binary (build it, or set BULKHEAD_BIN)"
[ -n "${TESTBED_BIN:-}" ] && [ -x "$TESTBED_BIN" ] || fatal "no testbed binary (build it, or set TESTBED_BIN)"
BH="$BULKHEAD_BIN"
"$BH" run --help >/dev/null 2>&1 || fatal "$BH has no 'run' verb yet (bulkhead run is needed for the demo)"

# ---------------------------------------------------------------------------------------------
# state, cleanup trap, overall time limit
# ---------------------------------------------------------------------------------------------
TAG="${BULKHEAD_DEMO_TAG:-demo$(printf '%04x%02x' $(($$ & 0xffff)) $((RANDOM & 0xff)))}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/bulkhead-demo.XXXXXX")"
SOCK="$WORK/control.sock"
FLOWLOG="$WORK/flows.jsonl"
FW_NS="bh-$TAG-fw"
TESTBED_UP=0
FW_PID=""
BG_PIDS=()   # process-group leaders started with setsid (servers, streams): killed as groups
WATCHDOG=""
RESULTS=()   # "PASS|FAIL|SKIP<TAB>check<TAB>expected<TAB>observed<TAB>firewall"
FAILED=0

stop_firewall() {
  # SIGTERM (clean stop: detach both XDP programs), then SIGKILL after 10 s. Returns the exit code.
  [ -n "$FW_PID" ] || return 0
  local pid=$FW_PID rc=0 i
  FW_PID=""
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    warn "bulkhead (pid $pid) did not stop within 10 s of SIGTERM: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || rc=$?
  return "$rc"
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [ -n "$WATCHDOG" ]; then
    kill -TERM -- "-$WATCHDOG" 2>/dev/null
    wait "$WATCHDOG" 2>/dev/null
  fi
  for pg in "${BG_PIDS[@]}"; do kill -TERM -- "-$pg" 2>/dev/null; done
  stop_firewall
  sleep 0.2
  for pg in "${BG_PIDS[@]}"; do
    kill -KILL -- "-$pg" 2>/dev/null
    wait "$pg" 2>/dev/null
  done
  if [ "$TESTBED_UP" = 1 ]; then
    # Everything still running in bh-<tag>-* was started by this script: --kill is safe here.
    "$TESTBED_BIN" down --tag "$TAG" --kill >/dev/null 2>"$WORK/testbed-down.err" ||
      warn "testbed down failed: $(cat "$WORK/testbed-down.err")"
    if ip netns list | grep -q "^bh-$TAG-"; then
      warn "namespaces left behind: $(ip netns list | grep "^bh-$TAG-" | tr '\n' ' ')"
    else
      say "testbed $TAG removed"
    fi
  fi
  if [ "$rc" != 0 ] && [ -s "$WORK/bulkhead.log" ]; then
    say "--- last lines of the firewall's log ($WORK/bulkhead.log) ---"
    tail -n 25 "$WORK/bulkhead.log"
  fi
  if [ "${BULKHEAD_DEMO_KEEP:-0}" = 1 ] || [ "$rc" != 0 ]; then
    say "work directory kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'warn "interrupted"; exit 130' INT
trap 'warn "terminated (time limit or signal)"; exit 143' TERM

# The overall limit: the watchdog SIGTERMs this script, whose trap tears everything down.
# Its own session, so cleanup can end it (and its sleep) as one process group.
setsid bash -c 'sleep "$1"; echo "demo: time limit of $1 s reached" >&2; kill -TERM "$2"' _ "$LIMIT" $$ </dev/null &
WATCHDOG=$!

# Starts "$@" in a new session (its PID is its process group), output to $WORK/<name>.log.
bg() {
  local name=$1
  shift
  setsid "$@" >"$WORK/$name.log" 2>&1 </dev/null &
  BG_PIDS+=($!)
  LAST_BG=$!
}
kill_group() {
  kill -TERM -- "-$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

record() { # result check expected observed firewall
  RESULTS+=("$1"$'\t'"$2"$'\t'"$3"$'\t'"$4"$'\t'"$5")
  local colour=$G
  case $1 in
    SKIP) colour=$Y ;;
    FAIL)
      colour=$R
      FAILED=$((FAILED + 1))
      ;;
  esac
  printf '  %s%-4s%s %s: %s | firewall: %s\n' "$colour" "$1" "$N" "$2" "$4" "$5"
}

# ---------------------------------------------------------------------------------------------
# 3. testbed
# ---------------------------------------------------------------------------------------------
step "bringing up the testbed (tag $TAG)"
"$TESTBED_BIN" up --tag "$TAG" >"$WORK/testbed.txt" || fatal "testbed up failed"
TESTBED_UP=1
declare -A IP NS ZONE SIDE
while read -r kind name rest; do
  [ "$kind" = host ] || continue
  for kv in $rest; do
    case $kv in
      ip=*) IP[$name]=${kv#ip=} ;;
      ns=*) NS[$name]=${kv#ns=} ;;
      zone=*) ZONE[$name]=${kv#zone=} ;;
      side=*) SIDE[$name]=${kv#side=} ;;
    esac
  done
done <"$WORK/testbed.txt"
for h in corp1 corp2 dev1 ci1 web1 db1 repo1; do
  [ -n "${IP[$h]:-}" ] || fatal "the testbed has no host $h (testbed output: $(cat "$WORK/testbed.txt"))"
done
printf '  %-6s %-8s %-10s %s\n' host side zone address
for h in corp1 corp2 dev1 ci1 web1 db1 repo1; do
  printf '  %-6s %-8s %-10s %s\n' "$h" "${SIDE[$h]}" "${ZONE[$h]}" "${IP[$h]}"
done
say "  firewall namespace $FW_NS: inside <-> outside"

# ---------------------------------------------------------------------------------------------
# The scenario: one line per flow.
#   name | client | server | proto | port | expect | reason (deny) | note
# expect: allow, deny, would_deny, local (same side of the bump: the firewall never sees it)
# ---------------------------------------------------------------------------------------------
CASES=(
  "corp -> prod web, HTTP-like TCP, 64 KiB each way|corp1|web1|tcp|80|allow||"
  "corp -> prod web, UDP request/response|corp1|web1|udp|5001|allow||"
  "corp -> prod web, ping|corp1|web1|icmp|8|allow||"
  "CI build -> artifact repo, TCP 443|ci1|repo1|tcp|443|allow||"
  "dev -> artifact repo, TCP 443|dev1|repo1|tcp|443|allow||"
  "dev -> prod db, TCP 5432 (dev never reaches prod)|dev1|db1|tcp|5432|deny|rule_deny|"
  "dev -> prod web, ping|dev1|web1|icmp|8|deny|rule_deny|"
  "CI build -> prod web, TCP 80|ci1|web1|tcp|80|deny|default_deny|"
  "corp -> prod db, TCP 5432|corp1|db1|tcp|5432|deny|default_deny|"
  "prod web -> corp, TCP 22 (outside opens inside)|web1|corp1|tcp|22|deny|default_deny|"
  "dev -> artifact repo, TCP 80 (monitored dev segment)|dev1|repo1|tcp|80|would_deny|default_deny|"
  "prod web -> prod db, TCP 5432 (same side)|web1|db1|tcp|5432|local||"
)
# The quarantine scene: corp2 streams to prod web, then corp2 is quarantined.
Q_HOST=corp2
Q_SERVER=web1
Q_PORT=8080

# ---------------------------------------------------------------------------------------------
# 2. the policy, offline: does config/demo say what this demo expects, for these addresses?
# ---------------------------------------------------------------------------------------------
step "checking the demo policy offline (bulkhead policy check / test)"
"$BH" policy check "$POLICY" | sed 's/^/  /' || true
{
  echo "# generated by scripts/demo.sh from the testbed's addresses"
  echo "cases:"
  for c in "${CASES[@]}"; do
    IFS='|' read -r name cli srv proto port expect _reason _note <<<"$c"
    [ "$expect" = local ] && expect=allow
    if [ "$proto" = icmp ]; then
      printf '  - {name: "%s", from: %s, to: %s, protocol: icmp, type: 8, code: 0, expect: %s}\n' \
        "$name" "${IP[$cli]}" "${IP[$srv]}" "$expect"
    else
      printf '  - {name: "%s", from: %s, to: %s, protocol: %s, port: %s, expect: %s}\n' \
        "$name" "${IP[$cli]}" "${IP[$srv]}" "$proto" "$port" "$expect"
    fi
  done
  printf '  - {name: "quarantine scene: %s streams to %s", from: %s, to: %s, protocol: tcp, port: %s, expect: allow}\n' \
    "$Q_HOST" "$Q_SERVER" "${IP[$Q_HOST]}" "${IP[$Q_SERVER]}" "$Q_PORT"
} >"$WORK/demo-cases.yaml"
if "$BH" policy test "$POLICY" --cases "$WORK/demo-cases.yaml" >"$WORK/policy-test.txt" 2>&1; then
  record PASS "policy agrees with the demo's expectations" "all cases" "$(tail -n 1 "$WORK/policy-test.txt")" "offline"
else
  sed 's/^/  /' "$WORK/policy-test.txt"
  record FAIL "policy agrees with the demo's expectations" "all cases" \
    "bulkhead policy test failed (config/demo identities vs testbed addresses?)" "offline"
fi

# ---------------------------------------------------------------------------------------------
# servers (echo services) in the outside and inside hosts
# ---------------------------------------------------------------------------------------------
step "starting echo services"
start_server() { # host proto port
  local h=$1 proto=$2 port=$3 listen
  case $proto in
    tcp) listen="TCP-LISTEN:$port,reuseaddr,fork" ;;
    udp) listen="UDP-RECVFROM:$port,fork" ;;
  esac
  # Bounded: every server dies after the overall limit even if this script is SIGKILLed.
  bg "srv-$h-$proto-$port" timeout --foreground "$LIMIT" ip netns exec "${NS[$h]}" socat -T 15 "$listen" PIPE
}
wait_listening() { # host proto port
  local flag=-ltn i
  [ "$2" = udp ] && flag=-lun
  for ((i = 0; i < 50; i++)); do
    ip netns exec "${NS[$1]}" ss -H "$flag" "sport = :$3" 2>/dev/null | grep -q . && return 0
    sleep 0.1
  done
  fatal "echo service $1 $2/$3 did not start"
}
declare -A STARTED
for c in "${CASES[@]}"; do
  IFS='|' read -r _name _cli srv proto port _rest <<<"$c"
  [ "$proto" = icmp ] && continue
  [ -n "${STARTED[$srv-$proto-$port]:-}" ] && continue
  start_server "$srv" "$proto" "$port"
  STARTED[$srv-$proto-$port]=1
done
start_server "$Q_SERVER" tcp "$Q_PORT"
STARTED[$Q_SERVER-tcp-$Q_PORT]=1
for k in "${!STARTED[@]}"; do
  IFS=- read -r h proto port <<<"$k"
  wait_listening "$h" "$proto" "$port"
done
say "  $(printf '%s ' "${!STARTED[@]}")"

# ---------------------------------------------------------------------------------------------
# 4. the firewall
# ---------------------------------------------------------------------------------------------
step "starting Bulkhead in $FW_NS"
METRICS=1
ctl() { "$BH" "$@" --control "$SOCK"; }
start_firewall() {
  fw_args=(run --inside inside --outside outside --policy "$POLICY" --control "$SOCK" --flow-log "$FLOWLOG")
  [ "$METRICS" = 1 ] && fw_args+=(--metrics "$METRICS_ADDR")
  [ -n "${BULKHEAD_DEMO_XDP_MODE:-}" ] && fw_args+=(--xdp-mode "$BULKHEAD_DEMO_XDP_MODE")
  say "  ip netns exec $FW_NS bulkhead ${fw_args[*]}"
  # `ip netns exec` execs, so $! is bulkhead's own PID.
  NO_COLOR=1 ip netns exec "$FW_NS" "$BH" "${fw_args[@]}" >"$WORK/bulkhead.log" 2>&1 </dev/null &
  FW_PID=$!
  local i
  for ((i = 0; i < 300; i++)); do
    if ! kill -0 "$FW_PID" 2>/dev/null; then
      wait "$FW_PID" 2>/dev/null || true
      FW_PID=""
      return 1
    fi
    if [ -S "$SOCK" ] && ctl status >"$WORK/status.txt" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}
t0=$(now_ns)
if ! start_firewall; then
  if [ -z "$FW_PID" ] && grep -q 'no metrics endpoint' "$WORK/bulkhead.log"; then
    warn "this bulkhead build has no metrics endpoint: starting without --metrics"
    METRICS=0
    t0=$(now_ns)
    start_firewall || true
  fi
fi
if [ -z "$FW_PID" ] || ! [ -S "$SOCK" ]; then
  sed 's/^/  /' "$WORK/bulkhead.log" >&2
  fatal "bulkhead did not become ready within 30 s"
fi
say "  ready in $(ms_since "$t0") ms (pid $FW_PID)"
sed 's/^/  /' "$WORK/status.txt"

# ---------------------------------------------------------------------------------------------
# counters and flow log helpers
# ---------------------------------------------------------------------------------------------
# The firewall's totals as JSON (bulkhead stats --json), saved to a file.
snap() { ctl stats --json >"$1" 2>"$1.err" || echo '{}' >"$1"; }
# One total counter from a snapshot: pass, would_deny, or a drop reason (default_deny, rule_deny,
# quarantined, ...). Missing counters read as 0.
counter() { # file name
  jq -r --arg k "$2" '
    (.data // .) as $d | ($d.total // $d) as $t
    | [($t[$k]?), ($t.verdicts[$k]?), ($t.drops[$k]?), ($t.counters[$k]?), ($t.counters.drops[$k]?)]
    | map(select(type == "number")) | (first // 0)' "$1" 2>/dev/null || echo 0
}
delta() { echo $(($(counter "$2" "$3") - $(counter "$1" "$3"))); }
policy_drops() { # file: drops that a policy decided
  echo $(($(counter "$1" default_deny) + $(counter "$1" rule_deny) + $(counter "$1" quarantined)))
}
settle() { sleep 0.3; } # workers publish counters once per batch; let the last batch land

# Waits (up to 3 s) for a flow-log record of this flow with this verdict; prints "reason rule".
flowlog_find() { # src dst proto dport(verdict) ...
  local src=$1 dst=$2 proto=$3 dport=$4 verdict=$5 i line
  for ((i = 0; i < 30; i++)); do
    if [ -s "$FLOWLOG" ]; then
      line=$(jq -r --arg s "$src" --arg d "$dst" --arg p "$proto" --arg dp "$dport" --arg v "$verdict" '
        select(.source.ip == $s and .destination.ip == $d and .network.transport == $p
               and ($dp == "" or ((.destination.port // "") | tostring) == $dp)
               and .bulkhead.verdict == $v)
        | "\(.bulkhead.reason) \(.rule.name // "-")"' "$FLOWLOG" 2>/dev/null | head -n 1)
      if [ -n "$line" ]; then
        echo "$line"
        return 0
      fi
    fi
    sleep 0.1
  done
  return 1
}
rule_of() { # "reason rule" -> ", rule NAME" (nothing when no rule decided: default deny, quarantine)
  [ "${1#* }" = - ] || printf ', rule %s' "${1#* }"
}
flowlog_any() { # src dst: any record at all for this pair
  [ -s "$FLOWLOG" ] && jq -e --arg s "$1" --arg d "$2" \
    'select(.source.ip == $s and .destination.ip == $d)' "$FLOWLOG" >/dev/null 2>&1
}

# ---------------------------------------------------------------------------------------------
# traffic primitives (every one bounded in count and time)
# ---------------------------------------------------------------------------------------------
PAYLOAD="$WORK/payload"
head -c 65536 /dev/urandom >"$PAYLOAD"
# Each primitive sets OBS (what happened, for the table) and NONE=1 when nothing at all got
# through, and returns 0 when the exchange fully worked.
# TCP: send the payload, read the echo. Success = the echo is byte-identical.
tcp_try() { # client server port
  local out="$WORK/echo.$1.$2.$3" t0 rc=0
  NONE=0
  t0=$(now_ns)
  timeout --foreground 12 ip netns exec "${NS[$1]}" \
    socat -T 4 -t 2 - "TCP:${IP[$2]}:$3,connect-timeout=2" <"$PAYLOAD" >"$out" 2>"$out.err" || rc=$?
  local got
  got=$(stat -c %s "$out")
  if [ "$rc" = 0 ] && cmp -s "$PAYLOAD" "$out"; then
    OBS="connected; 64 KiB sent, 64 KiB echoed intact in $(ms_since "$t0") ms"
    return 0
  fi
  if [ "$got" = 0 ]; then
    NONE=1
    OBS="no connection (connect timed out after $(ms_since "$t0") ms)"
  else
    OBS="broken exchange: $got of 65536 bytes echoed (socat rc $rc)"
  fi
  return 1
}
# UDP: three request/response exchanges. Success = all three answered.
udp_try() { # client server port
  local ok=0 n reply
  for n in 1 2 3; do
    reply=$(printf 'bulkhead-demo-%s-%s' "$n" "$RANDOM" | tee "$WORK/udp.req" |
      timeout --foreground 5 ip netns exec "${NS[$1]}" socat -T 1 -t 1 - "UDP:${IP[$2]}:$3" 2>/dev/null || true)
    [ "$reply" = "$(cat "$WORK/udp.req")" ] && ok=$((ok + 1))
  done
  OBS="$ok/3 datagrams answered"
  NONE=0
  [ "$ok" = 0 ] && NONE=1
  [ "$ok" = 3 ]
}
# ICMP echo: three pings. Success = all three answered.
icmp_try() { # client server
  local out rx
  out=$(timeout --foreground 10 ip netns exec "${NS[$1]}" ping -n -c 3 -i 0.2 -W 1 "${IP[$2]}" 2>&1 || true)
  rx=$(sed -n 's/.* \([0-9]\+\) received.*/\1/p' <<<"$out")
  rx=${rx:-0}
  OBS="$rx/3 echo replies"
  NONE=0
  [ "$rx" = 0 ] && NONE=1
  [ "$rx" = 3 ]
}
try_flow() { # client server proto port
  case $3 in
    tcp) tcp_try "$1" "$2" "$4" ;;
    udp) udp_try "$1" "$2" "$4" ;;
    icmp) icmp_try "$1" "$2" ;;
  esac
}

# ---------------------------------------------------------------------------------------------
# 5. traffic from several zones, every verdict checked on the wire and at the firewall
# ---------------------------------------------------------------------------------------------
step "driving traffic through the firewall"

for c in "${CASES[@]}"; do
  IFS='|' read -r name cli srv proto port expect reason _note <<<"$c"
  label="$name [${IP[$cli]} -> ${IP[$srv]} $proto${port:+/$port}]"
  [ "$proto" = icmp ] && label="$name [${IP[$cli]} -> ${IP[$srv]} icmp echo]"
  before="$WORK/stats.before"
  after="$WORK/stats.after"
  snap "$before"
  connected=0
  try_flow "$cli" "$srv" "$proto" "$port" && connected=1
  settle
  snap "$after"
  dpass=$(delta "$before" "$after" pass)
  dwould=$(delta "$before" "$after" would_deny)
  ddrops=$(($(policy_drops "$after") - $(policy_drops "$before")))
  fl_port=$port
  [ "$proto" = icmp ] && fl_port=""
  case $expect in
    allow)
      wire=FAIL fw=FAIL
      [ "$connected" = 1 ] && wire=PASS
      fwobs="pass +$dpass, policy drops +$ddrops, would_deny +$dwould"
      [ "$dpass" -ge 2 ] && [ "$ddrops" = 0 ] && [ "$dwould" = 0 ] && fw=PASS
      exp="allowed: works"
      ;;
    deny)
      wire=FAIL fw=FAIL
      [ "$connected" = 0 ] && [ "$NONE" = 1 ] && wire=PASS
      dreason=$(delta "$before" "$after" "$reason")
      fwobs="$reason +$dreason"
      if found=$(flowlog_find "${IP[$cli]}" "${IP[$srv]}" "$proto" "$fl_port" denied); then
        fwobs="$fwobs; flow log: denied, reason ${found% *}$(rule_of "$found")"
        [ "$dreason" -ge 1 ] && [ "${found% *}" = "$reason" ] && fw=PASS
      else
        fwobs="$fwobs; no denied record in the flow log"
      fi
      exp="denied ($reason): fails"
      ;;
    would_deny)
      wire=FAIL fw=FAIL
      [ "$connected" = 1 ] && wire=PASS
      fwobs="would_deny +$dwould, policy drops +$ddrops"
      if found=$(flowlog_find "${IP[$cli]}" "${IP[$srv]}" "$proto" "$fl_port" would_deny); then
        fwobs="$fwobs; flow log: would_deny, reason ${found% *}$(rule_of "$found")"
        [ "$dwould" -ge 1 ] && [ "$ddrops" = 0 ] && fw=PASS
      else
        fwobs="$fwobs; no would_deny record in the flow log"
      fi
      exp="would_deny: works, logged"
      ;;
    local)
      # Both hosts are on the outside switch: the frames never reach the firewall.
      wire=FAIL fw=FAIL
      [ "$connected" = 1 ] && wire=PASS
      if flowlog_any "${IP[$cli]}" "${IP[$srv]}"; then
        fwobs="unexpected flow-log record for this pair"
      else
        fwobs="not on the firewall's path (same side): no record, as expected"
        fw=PASS
      fi
      exp="allowed: works (not via the bump)"
      ;;
  esac
  result=FAIL
  [ "$wire" = PASS ] && [ "$fw" = PASS ] && result=PASS
  record "$result" "$label" "$exp" "$OBS" "$fwobs"
done

# ---------------------------------------------------------------------------------------------
# 7. quarantine: cut an established stream
# ---------------------------------------------------------------------------------------------
step "quarantine: $Q_HOST (${IP[$Q_HOST]}) has an established TCP stream to $Q_SERVER:$Q_PORT"
STREAM_OUT="$WORK/stream.out"
: >"$STREAM_OUT"
# One line every 50 ms, each stamped with its send time; at most 600 lines (30 s); echoed back.
bg stream timeout --foreground 40 bash -c '
  for i in $(seq 1 600); do echo "tick $i $(date +%s%N)"; sleep 0.05; done |
    ip netns exec "$1" socat -T 10 - "TCP:$2:$3,connect-timeout=2" >"$4"' \
  _ "${NS[$Q_HOST]}" "${IP[$Q_SERVER]}" "$Q_PORT" "$STREAM_OUT"
STREAM_PG=$LAST_BG
for ((i = 0; i < 50; i++)); do
  [ "$(wc -l <"$STREAM_OUT")" -ge 10 ] && break
  sleep 0.1
done
before_lines=$(wc -l <"$STREAM_OUT")
say "  stream up: $before_lines lines echoed so far; the firewall's view (bulkhead flows --from ${IP[$Q_HOST]}):"
ctl flows --from "${IP[$Q_HOST]}" --limit 5 2>&1 | sed 's/^/    /' || warn "bulkhead flows failed"
snap "$WORK/stats.q0"
T0=$(now_ns)
qrc=0
ctl quarantine add "${IP[$Q_HOST]}" >"$WORK/quarantine.txt" 2>&1 || qrc=$?
T1=$(now_ns)
sed 's/^/  reply: /' "$WORK/quarantine.txt"
say "  command returned after $(((T1 - T0) / 1000000)) ms"
sleep 1.5
mid_lines=$(wc -l <"$STREAM_OUT")
sleep 1
end_lines=$(wc -l <"$STREAM_OUT")
settle
snap "$WORK/stats.q1"
# The last tick that made the round trip, and how long before/after the command it was sent.
last_sent=$(tail -n 1 "$STREAM_OUT" | awk '{print $3}')
after_cmd=$(awk -v t="$T1" '$3 > t' "$STREAM_OUT" | wc -l)
dq=$(delta "$WORK/stats.q0" "$WORK/stats.q1" quarantined)
if [ -n "$last_sent" ]; then
  rel=$(((last_sent - T0) / 1000000))
  if [ "$rel" -lt 0 ]; then when="$((-rel)) ms before"; else when="$rel ms after"; fi
  obs="stream cut: the last tick echoed back was sent $when the command, none sent after it returned came back ($after_cmd); $mid_lines -> $end_lines lines in the last 1 s"
else
  obs="stream never carried data"
fi
fwobs="quarantined +$dq"
qlog=0
# The established flow is revalidated against the new generation and cut: a `revoked` record.
if found=$(flowlog_find "${IP[$Q_HOST]}" "${IP[$Q_SERVER]}" tcp "$Q_PORT" revoked); then
  fwobs="$fwobs; flow log: revoked, reason ${found% *}"
  [ "${found% *}" = quarantined ] && qlog=1
else
  fwobs="$fwobs; no revoked record in the flow log"
fi
if [ "$qrc" = 0 ] && [ "$before_lines" -ge 10 ] && [ "$mid_lines" = "$end_lines" ] && [ "$after_cmd" = 0 ] &&
  [ "$dq" -ge 1 ] && [ "$qlog" = 1 ]; then
  record PASS "quarantine cuts $Q_HOST's established stream to $Q_SERVER:$Q_PORT" "cut at once" "$obs" "$fwobs"
else
  record FAIL "quarantine cuts $Q_HOST's established stream to $Q_SERVER:$Q_PORT" "cut at once" "$obs" "$fwobs (command rc $qrc)"
fi
kill_group "$STREAM_PG"
# The firewall's own measure: command received -> first enforced drop of the workload's traffic.
ttc=$(jq -r '(.data // .) | .time_to_contain_ns // {} | select((.count // 0) > 0)
  | "\(.max / 1000000) ms (command received -> first enforced drop; \(.count) measured)"' \
  "$WORK/stats.q1" 2>/dev/null || true)
say "  ${B}time to contain${N}: ${ttc:-not reported by bulkhead stats}"
say "  on the wire: the last tick that made the round trip was sent ${when:-?} the command was issued"

# A new connection from the quarantined host fails; its neighbour in the same zone is unaffected.
snap "$WORK/stats.q2"
if tcp_try "$Q_HOST" "$Q_SERVER" 80; then c=1; else c=0; fi
settle
snap "$WORK/stats.q3"
dq=$(delta "$WORK/stats.q2" "$WORK/stats.q3" quarantined)
r=FAIL
fwobs="quarantined +$dq"
if found=$(flowlog_find "${IP[$Q_HOST]}" "${IP[$Q_SERVER]}" tcp 80 denied); then
  fwobs="$fwobs; flow log: denied, reason ${found% *}"
  [ "$c" = 0 ] && [ "$NONE" = 1 ] && [ "$dq" -ge 1 ] && [ "${found% *}" = quarantined ] && r=PASS
else
  fwobs="$fwobs; no denied record in the flow log"
fi
record "$r" "quarantined $Q_HOST opens a new connection to $Q_SERVER/80" "denied (quarantined): fails" "$OBS" "$fwobs"
snap "$WORK/stats.q4"
if tcp_try corp1 "$Q_SERVER" 80; then c=1; else c=0; fi
settle
snap "$WORK/stats.q5"
dpass=$(delta "$WORK/stats.q4" "$WORK/stats.q5" pass)
# Not quarantined drops: corp2's kernel keeps retransmitting the cut stream's data meanwhile.
ddrops=$(($(delta "$WORK/stats.q4" "$WORK/stats.q5" default_deny) + $(delta "$WORK/stats.q4" "$WORK/stats.q5" rule_deny)))
r=FAIL
[ "$c" = 1 ] && [ "$dpass" -ge 2 ] && [ "$ddrops" = 0 ] && r=PASS
record "$r" "corp1 (same zone, not quarantined) -> $Q_SERVER/80" "allowed: works" "$OBS" "pass +$dpass, default/rule denies +$ddrops"

# ---------------------------------------------------------------------------------------------
# 6. live counters, latency, metrics
# ---------------------------------------------------------------------------------------------
step "live counters: bulkhead stats"
ctl stats 2>&1 | sed 's/^/  /' || warn "bulkhead stats failed"
step "live view: bulkhead top --once"
ctl top --once 2>&1 | sed 's/^/  /' || warn "bulkhead top --once failed"
step "latency percentiles (per packet, through the engine)"
snap "$WORK/stats.final"
jq -r '(.data // .) as $d | ($d.latency_ns // {}) as $l
  | if ($l.count // 0) == 0 then "  (no latency samples)" else
    "  \($l.count) packets: p50 \($l.p50 / 1000) us, p90 \($l.p90 / 1000) us, p99 \($l.p99 / 1000) us, p99.9 \($l.p999 / 1000) us, max \($l.max / 1000) us" end' \
  "$WORK/stats.final" 2>/dev/null || warn "no latency figures in bulkhead stats --json"

step "Prometheus endpoint (http://$METRICS_ADDR/metrics in $FW_NS)"
if [ "$METRICS" != 1 ]; then
  record SKIP "metrics endpoint" "Prometheus text" "this bulkhead build has no --metrics" "-"
elif ip netns exec "$FW_NS" timeout --foreground 5 bash -c '
  exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || exit 1
  printf "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n" "$1" >&3
  cat <&3' _ "$METRICS_ADDR" >"$WORK/metrics.http" 2>/dev/null; then
  sed '1,/^\r\{0,1\}$/d' "$WORK/metrics.http" >"$WORK/metrics.txt"
  # The KPIs: verdicts, drops by reason, blocked lateral movement per zone pair, how flows were
  # decided (explicit allow / default deny / would-deny), time to contain, latency (non-zero ones).
  grep -E '^bulkhead_(verdicts_total|drops_total|denied_attempts_total|flow_decisions_total|time_to_contain_seconds_(sum|count)|packet_latency_seconds_(sum|count)|policy_generation|quarantine_entries)[{ ]' \
    "$WORK/metrics.txt" | awk '$NF != 0' | head -n 30 | sed 's/^/  /' || true
  say "  ($(grep -c '^bulkhead_' "$WORK/metrics.txt" || true) bulkhead_ samples)"
  if command -v promtool >/dev/null; then
    if promtool check metrics <"$WORK/metrics.txt" >"$WORK/promtool.txt" 2>&1; then
      record PASS "metrics endpoint is valid Prometheus text" "promtool clean" "promtool check metrics: ok" "-"
    else
      record FAIL "metrics endpoint is valid Prometheus text" "promtool clean" "$(head -n 3 "$WORK/promtool.txt" | tr '\n' ' ')" "-"
    fi
  fi
else
  record FAIL "metrics endpoint answers" "HTTP 200" "no answer on $METRICS_ADDR" "-"
fi

step "flow log ($FLOWLOG): denied and would-deny flows"
if [ -s "$FLOWLOG" ]; then
  jq -r 'select(.bulkhead.verdict != "allowed")
    | "  \(.["@timestamp"]) \(.bulkhead.verdict) \(.network.transport) \(.source.ip):\(.source.port // "-") -> \(.destination.ip):\(.destination.port // "-") reason=\(.bulkhead.reason) rule=\(.rule.name // "-") \(.bulkhead.identity.source)->\(.bulkhead.identity.destination) gen=\(.bulkhead.policy.generation)"' \
    "$FLOWLOG" 2>/dev/null | head -n 20
  say "  ($(wc -l <"$FLOWLOG") records)"
else
  warn "the flow log is empty"
fi

# ---------------------------------------------------------------------------------------------
# 8. clean stop
# ---------------------------------------------------------------------------------------------
step "stopping the firewall (SIGTERM)"
src=0
stop_firewall || src=$?
left=$(ip -n "$FW_NS" -d link show 2>/dev/null | grep -c 'prog/xdp' || true)
r=FAIL
[ "$src" = 0 ] && [ "$left" = 0 ] && r=PASS
record "$r" "clean stop on SIGTERM" "exit 0, no XDP program left" "exit $src, $left XDP programs attached" "-"

# ---------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------
step "results"
total=${#RESULTS[@]}
i=0
for row in "${RESULTS[@]}"; do
  i=$((i + 1))
  IFS=$'\t' read -r res check exp obs fw <<<"$row"
  colour=$G
  [ "$res" = SKIP ] && colour=$Y
  [ "$res" = FAIL ] && colour=$R
  printf '%s%-4s%s %2d. %s -- expected %s\n' "$colour" "$res" "$N" "$i" "$check" "$exp"
  printf '         seen: %s | firewall: %s\n' "$obs" "$fw"
done
skipped=$(printf '%s\n' "${RESULTS[@]}" | grep -c '^SKIP' || true)
if [ "$FAILED" = 0 ]; then
  printf '\n%s%sPASS%s: all %d checks saw their expected verdict' "$B" "$G" "$N" "$((total - skipped))"
  [ "$skipped" = 0 ] && printf '\n' || printf ' (%d skipped: feature missing in this build)\n' "$skipped"
  exit 0
fi
printf '\n%s%sFAIL%s: %d of %d checks did not see their expected verdict\n' "$B" "$R" "$N" "$FAILED" "$total"
exit 1
