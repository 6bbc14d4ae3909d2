#!/usr/bin/env bash
# scripts/netns/netns_test.sh: lray's cluster across Linux network
# namespaces, as three machines would see it (`make netns-test`; CI runs it
# as root). Needs root, `ip netns`, veth and bridge links; skips with a
# visible message otherwise.
#
# Topology, all of it private to this run (names carry a tag from the pid):
#
#   ns <tag>-head 10.200.0.1 --veth--+
#   ns <tag>-a    10.200.0.2 --veth--+-- bridge br0, in its own ns <tag>-br
#   ns <tag>-b    10.200.0.3 --veth--+
#
# The bridge lives in a namespace of its own too, so no 10.200.0.0/24
# address or route ever exists in the machine's own namespace: every packet
# stays between the namespaces this script made.
#
# It starts a head in <tag>-head (`lray start --head --host 10.200.0.1`) and
# a node in each of the others (`lray start --address 10.200.0.1:P --host
# ...`), each with its own LRAY_TMPDIR, checks that the head lists all three
# alive, then at one moment SIGKILLs node a and takes node b's link down
# (inside b's namespace), and checks that
#   - a workload started before the failures (workload.lua: tasks, an actor
#     and a stored result spread over the nodes) carries on: tasks retried,
#     the actor restarted on the head, the result rebuilt from its lineage;
#   - the head reports a dead with cause "connection ... closed" and b dead
#     with cause "stopped answering", each within DEAD_LIMIT s (5 s + margin);
#   - node b, cut off, ends by itself once it notices the head is gone (it
#     can only notice by its own timeouts: nothing reaches it any more);
#   - then a node c joins from b's namespace and the head's process is
#     stopped (SIGSTOP, a hung head): c must end by itself, since the head
#     sends node_alive every second (NETNS_STRICT_HUNG=0 reports instead).
# Everything it made (processes, namespaces, bridge, files) is removed on
# every exit path.
#
# Environment: LRAY_BIN (default build/lray), LRAY_TMPDIR (parent of this
# run's files, default /tmp), DEAD_LIMIT (default 6.5 s), EXIT_LIMIT (how
# long b may take to end after the cut, default 15 s), NETNS_STRICT_EXIT=0
# reports a b that outlives EXIT_LIMIT as a known gap instead of a failure.
set -u

LRAY=${LRAY_BIN:-build/lray}
case $LRAY in /*) ;; *) LRAY=$PWD/$LRAY ;; esac
HERE=$(cd "$(dirname "$0")" && pwd)
DEAD_LIMIT=${DEAD_LIMIT:-6.5}
EXIT_LIMIT=${EXIT_LIMIT:-15}
STRICT_EXIT=${NETNS_STRICT_EXIT:-1}
PORT=6380 # the head's port: free, since the namespace is new

skip() {
  echo "netns-test: SKIPPED: $*"
  exit 0
}

[ "$(id -u)" = 0 ] || skip "needs root (network namespaces); CI runs it as root"
command -v ip >/dev/null 2>&1 || skip "no 'ip' command (iproute2)"
[ -x "$LRAY" ] || { echo "netns-test: no lray binary at $LRAY (make first)"; exit 1; }

TAG=lrnt$(($$ % 100000))
NS_BR=$TAG-br NS_H=$TAG-head NS_A=$TAG-a NS_B=$TAG-b
ALL_NS="$NS_H $NS_A $NS_B $NS_BR"
BASE=$(mktemp -d "${LRAY_TMPDIR:-/tmp}/netns-test.XXXXXX") || exit 1
PASS=0 FAIL=0

now() { date +%s.%N; }
# Seconds from $1 to $2, 2 decimals.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

ok() { PASS=$((PASS + 1)); echo "ok   - $*"; }
not_ok() { FAIL=$((FAIL + 1)); echo "FAIL - $*"; }

# -- Cleanup: processes, namespaces, bridge, files -------------------------------

cleanup() {
  trap - EXIT INT TERM
  [ -n "${HEAD_PID:-}" ] && kill -CONT "$HEAD_PID" 2>/dev/null
  # Each lray we started stops by its own LRAY_TMPDIR (pidfiles, sessions,
  # shm); what is still alive in our namespaces after that is killed.
  for d in head a b c; do
    [ -d "$BASE/$d" ] && LRAY_TMPDIR=$BASE/$d "$LRAY" stop >/dev/null 2>&1
  done
  for ns in $ALL_NS; do
    if ip netns list 2>/dev/null | grep -qw "^$ns"; then
      pids=$(ip netns pids "$ns" 2>/dev/null)
      [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    fi
  done
  sleep 0.2
  for ns in $ALL_NS; do ip netns del "$ns" 2>/dev/null; done
  for d in head a b c; do
    [ -d "$BASE/$d" ] && LRAY_TMPDIR=$BASE/$d "$LRAY" stop >/dev/null 2>&1
  done
  rm -rf "$BASE"
  left=$(ip netns list 2>/dev/null | grep -c "^$TAG-")
  [ "$left" = 0 ] || echo "netns-test: WARNING: $left namespaces of $TAG left behind"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Can this machine make namespaces and veth pairs at all?
if ! ip netns add "$NS_BR" 2>/dev/null; then
  skip "'ip netns add' does not work here (no CAP_SYS_ADMIN or no netns support)"
fi
if ! ip -n "$NS_BR" link add br0 type bridge 2>/dev/null; then
  skip "cannot make a bridge link in a network namespace"
fi

# -- The network ------------------------------------------------------------------

set_up_ns() { # ns ip short
  local ns=$1 addr=$2 s=$3
  ip netns add "$ns" || return 1
  ip -n "$ns" link set lo up || return 1
  # Both ends are born inside their namespaces: nothing appears in ours.
  ip link add "$TAG$s" netns "$ns" type veth peer name "v$s" netns "$NS_BR" || return 1
  ip -n "$ns" link set "$TAG$s" name eth0 || return 1
  ip -n "$ns" addr add "$addr/24" dev eth0 || return 1
  ip -n "$ns" link set eth0 up || return 1
  ip -n "$NS_BR" link set "v$s" master br0 || return 1
  ip -n "$NS_BR" link set "v$s" up || return 1
}

ip -n "$NS_BR" link set br0 up && ip -n "$NS_BR" link set lo up &&
  set_up_ns "$NS_H" 10.200.0.1 h && set_up_ns "$NS_A" 10.200.0.2 a &&
  set_up_ns "$NS_B" 10.200.0.3 b
[ $? = 0 ] || { echo "netns-test: could not set up the network"; exit 1; }

for pair in "$NS_A 10.200.0.1" "$NS_B 10.200.0.1" "$NS_H 10.200.0.3"; do
  set -- $pair
  if ! ip netns exec "$1" ping -c 1 -W 2 "$2" >/dev/null 2>&1; then
    command -v ping >/dev/null 2>&1 && { echo "netns-test: $1 cannot reach $2"; exit 1; }
  fi
done

# -- The cluster --------------------------------------------------------------------

# lray_in ns dir args...: `lray args` in namespace ns with LRAY_TMPDIR=BASE/dir.
lray_in() {
  local ns=$1 d=$2
  shift 2
  ip netns exec "$ns" env LRAY_TMPDIR="$BASE/$d" "$LRAY" "$@"
}

# The head's node list as lines "address alive is_head cause".
node_lines() {
  lray_in "$NS_H" head list nodes --format json 2>/dev/null | "$LRAY" "$HERE/nodes.lua"
}
node_field() { # host field(2=alive, 4=cause)
  node_lines | awk -F'\t' -v h="$1" -v f="$2" 'index($1, h ":") == 1 { print $f }'
}

mkdir -p "$BASE/head" "$BASE/a" "$BASE/b" "$BASE/c"
out=$(lray_in "$NS_H" head start --head --host 10.200.0.1 --port $PORT --dashboard-port 0 \
  --num-cpus 1 --resources '{"W": 2}' 2>&1)
TOKEN=$(printf '%s\n' "$out" | sed -n 's/.*--token \([0-9a-f]*\).*/\1/p' | head -1)
ADDR=$(printf '%s\n' "$out" | sed -n 's/.*Address for other machines: \([^ ]*\).*/\1/p')
[ -n "$TOKEN" ] && [ "$ADDR" = "10.200.0.1:$PORT" ] ||
  { echo "netns-test: the head did not start:"; echo "$out"; exit 1; }
ok "head started in $NS_H at $ADDR"

for n in a b; do
  ns=$NS_A host=10.200.0.2
  [ $n = b ] && ns=$NS_B host=10.200.0.3
  o=$(lray_in "$ns" $n start --address "$ADDR" --host $host --token "$TOKEN" --num-cpus 1 \
    --resources '{"W": 1}' 2>&1)
  case $o in
    *"Joined the lray cluster"*) ok "node $n joined from $ns ($host)" ;;
    *) not_ok "node $n did not join: $o"; exit 1 ;;
  esac
done

alive=$(node_lines | awk -F'\t' '$2 == "true"' | wc -l)
if [ "$alive" = 3 ]; then ok "the head lists 3 nodes alive"; else
  not_ok "the head lists $alive nodes alive, want 3:"; node_lines; exit 1
fi

pid_of() { cat "$BASE/$1"/node-*.pid 2>/dev/null | head -1; }
PID_A=$(pid_of a) PID_B=$(pid_of b)
[ -n "$PID_A" ] && [ -n "$PID_B" ] || { not_ok "no pid files for the nodes"; exit 1; }

# -- The workload -------------------------------------------------------------------
# A driver on the head (workload.lua) spreads tasks, an actor and a stored
# result over the three nodes, then, after the failures, checks that the
# tasks were retried, the actor restarted on the head and the result rebuilt.
workload_start() {
  ip netns exec "$NS_H" env LRAY_TMPDIR="$BASE/head" timeout 180 "$LRAY" \
    "$HERE/workload.lua" "$BASE" >"$BASE/workload.out" 2>&1 &
  WORKLOAD_PID=$!
  local i=0
  while [ ! -e "$BASE/ready" ] && [ $i -lt 600 ] && kill -0 $WORKLOAD_PID 2>/dev/null; do
    sleep 0.1
    i=$((i + 1))
  done
  if [ -e "$BASE/ready" ]; then
    ok "a workload runs on all three nodes ($(grep '^# actor' "$BASE/workload.out"))"
  else
    not_ok "the workload did not start:"
    cat "$BASE/workload.out"
  fi
}
workload_check() {
  touch "$BASE/failed"
  local i=0
  while kill -0 $WORKLOAD_PID 2>/dev/null && [ $i -lt 1200 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  local out
  out=$(cat "$BASE/workload.out")
  case $out in
    *"TASKS 12/12"*) ok "every task of the workload gave its right result (retried on the nodes left)" ;;
    *) not_ok "the workload's tasks: $(printf '%s\n' "$out" | grep -E '^(TASKS|# task)' | head -3)" ;;
  esac
  case $out in
    *"ACTOR true true"*) ok "the actor of a failed node answered again, restarted on the head" ;;
    *) not_ok "the workload's actor: $(printf '%s\n' "$out" | grep -E '^(ACTOR|# actor:)')" ;;
  esac
  case $out in
    *"OBJECT true 4194307"*) ok "a result stored on a failed node was rebuilt from its lineage" ;;
    *) not_ok "the workload's object: $(printf '%s\n' "$out" | grep '^OBJECT')" ;;
  esac
  [ "$FAIL" = 0 ] || { echo "# the workload's output:"; sed 's/^/#   /' "$BASE/workload.out"; }
}
workload_start

# -- Failures: a killed, b cut off, at one moment --------------------------------------

sleep 1.5 # let both send a few node_views
T0=$(now)
kill -9 "$PID_A"
ip -n "$NS_B" link set eth0 down
echo "#    t=0: SIGKILL node a (pid $PID_A), link of node b down (pid $PID_B)"

DEAD_A="" DEAD_B="" EXIT_B=""
deadline=$(awk -v t="$T0" -v l="$DEAD_LIMIT" 'BEGIN { printf "%.3f", t + l + 3 }')
while { [ -z "$DEAD_A" ] || [ -z "$DEAD_B" ]; } && le "$(now)" "$deadline"; do
  lines=$(node_lines)
  t=$(now)
  [ -z "$DEAD_A" ] && printf '%s\n' "$lines" | grep -q "^10.200.0.2:[0-9]*	false" &&
    DEAD_A=$(elapsed "$T0" "$t")
  [ -z "$DEAD_B" ] && printf '%s\n' "$lines" | grep -q "^10.200.0.3:[0-9]*	false" &&
    DEAD_B=$(elapsed "$T0" "$t")
  [ -z "$EXIT_B" ] && ! kill -0 "$PID_B" 2>/dev/null && EXIT_B=$(elapsed "$T0" "$(now)")
  sleep 0.1
done

cause_a=$(node_field 10.200.0.2 4)
cause_b=$(node_field 10.200.0.3 4)
if [ -n "$DEAD_A" ] && le "$DEAD_A" "$DEAD_LIMIT"; then
  ok "killed node a declared dead after ${DEAD_A} s (limit ${DEAD_LIMIT} s)"
else
  not_ok "killed node a not declared dead within ${DEAD_LIMIT} s (${DEAD_A:-never})"
fi
case $cause_a in
  *"connection to the head closed"*) ok "a's cause: $cause_a" ;;
  *) not_ok "a's cause is not a closed connection: $cause_a" ;;
esac
if [ -n "$DEAD_B" ] && le "$DEAD_B" "$DEAD_LIMIT"; then
  ok "cut-off node b declared dead after ${DEAD_B} s (limit ${DEAD_LIMIT} s)"
else
  not_ok "cut-off node b not declared dead within ${DEAD_LIMIT} s (${DEAD_B:-never})"
fi
case $cause_b in
  *"stopped answering"*) ok "b's cause: $cause_b" ;;
  *) not_ok "b's cause is not silence: $cause_b" ;;
esac
alive=$(node_lines | awk -F'\t' '$2 == "true"' | wc -l)
if [ "$alive" = 1 ] && [ "$(node_field 10.200.0.1 2)" = true ]; then
  ok "the head carries on, alive, the only node alive"
else
  not_ok "after the failures, $alive nodes alive, want the head only"
fi

# -- Does the cut-off node notice that its head is gone? ----------------------------------

while [ -z "$EXIT_B" ] && le "$(now)" "$(awk -v t="$T0" -v l="$EXIT_LIMIT" \
  'BEGIN { printf "%.3f", t + l }')"; do
  kill -0 "$PID_B" 2>/dev/null || EXIT_B=$(elapsed "$T0" "$(now)")
  sleep 0.1
done
logb=$(cat "$BASE"/b/node-*/node.log 2>/dev/null | grep "lray node:" | tail -1) # if kept
if [ -n "$EXIT_B" ]; then
  ok "cut-off node b ended by itself ${EXIT_B} s after the cut${logb:+: $logb}"
elif [ "$STRICT_EXIT" = 0 ]; then
  echo "# KNOWN GAP: cut-off node b (pid $PID_B) still runs ${EXIT_LIMIT} s after the cut:" \
    "a node does not notice a silent head (see docs/scale.md)"
else
  not_ok "cut-off node b (pid $PID_B) still runs ${EXIT_LIMIT} s after the cut: it does not" \
    "notice that its head went silent"
fi

# (After b's exit is timed: the workload's checks take a while.)
workload_check

# Bring b's link back: the head must not take b back (dead is final).
ip -n "$NS_B" link set eth0 up
if [ -z "$EXIT_B" ]; then
  sleep 2
  if [ "$(node_field 10.200.0.3 2)" = false ]; then
    ok "b stays dead after its link came back"
  else
    not_ok "b is listed alive again after its link came back"
  fi
fi

# -- A hung head: its machine answers TCP, its process does not ---------------------------
# A node c joins from b's namespace, then the head's process is stopped
# (SIGSTOP): the kernel still acknowledges c's node_views, so only a node
# that expects to hear from its head within 5 s can tell: the head sends
# node_alive every second, and a node that hears nothing for 5 s ends.
EXIT_C=""
o=$(lray_in "$NS_B" c start --address "$ADDR" --host 10.200.0.3 --token "$TOKEN" --num-cpus 1 2>&1)
PID_C=$(pid_of c)
HEAD_PID=$(cat "$BASE/head/head.pid" 2>/dev/null)
if [ -n "$PID_C" ] && [ -n "$HEAD_PID" ]; then
  T1=$(now)
  kill -STOP "$HEAD_PID"
  while [ -z "$EXIT_C" ] && le "$(now)" "$(awk -v t="$T1" -v l="$EXIT_LIMIT" \
    'BEGIN { printf "%.3f", t + l }')"; do
    kill -0 "$PID_C" 2>/dev/null || EXIT_C=$(elapsed "$T1" "$(now)")
    sleep 0.1
  done
  kill -CONT "$HEAD_PID"
  if [ -n "$EXIT_C" ]; then
    ok "node c ended ${EXIT_C} s after its head hung"
  elif [ "${NETNS_STRICT_HUNG:-1}" = 1 ]; then
    not_ok "node c still runs ${EXIT_LIMIT} s after its head hung (SIGSTOP)"
  else
    echo "# KNOWN GAP: node c still runs ${EXIT_LIMIT} s after its head hung (SIGSTOP):" \
      "(NETNS_STRICT_HUNG=0)"
  fi
else
  not_ok "node c did not join for the hung-head check: $o"
fi

echo "# dead after: a (killed) ${DEAD_A:-never} s, b (cut off) ${DEAD_B:-never} s;" \
  "b exited after ${EXIT_B:-never (within ${EXIT_LIMIT} s)};" \
  "c after a hung head: ${EXIT_C:-never (within ${EXIT_LIMIT} s)}"
echo "netns: $PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
