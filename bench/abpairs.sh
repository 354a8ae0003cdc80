#!/usr/bin/env bash
# bench/abpairs.sh N LABEL_A YAML_A LABEL_B YAML_B [UNDERLAY_YAML_A [UNDERLAY_YAML_B]]
# Two xswitch settings compared in interleaved alternated QUICK pairs: for
# each pair number both settings run in turn (A first in odd pairs, B first
# in even ones), each against Open vSwitch (xswitch first in odd pairs, OVS
# first in even ones), so that drift of the machine hits both settings
# alike. Then bench/pairsum per setting. YAML_* are top-level xswitch
# settings (BENCH_XSWITCH_YAML), UNDERLAY_YAML_* underlay ones
# (BENCH_XSWITCH_UNDERLAY_YAML). BENCH_LATENCY defaults to 0 here.
# Needs root, like make bench; a quiet machine.
set -euo pipefail
cd "$(dirname "$0")/.."
n=$1; la=$2; ya=$3; lb=$4; yb=$5; ua=${6:-}; ub=${7:-}
ts=$(date -u +%Y%m%dT%H%M%SZ)
da="bench/results/pairs-$ts-ab-$la"; db="bench/results/pairs-$ts-ab-$lb"
mkdir -p "$da" "$db"
printf '%s\n%s\n' "$ya" "$ua" >"$da/xswitch.yaml"; printf '%s\n%s\n' "$yb" "$ub" >"$db/xswitch.yaml"
export QUICK=1 BENCH_TCP=0 BENCH_PROFILE="${BENCH_PROFILE:-0}" BENCH_LATENCY="${BENCH_LATENCY:-0}"
for i in $(seq 1 "$n"); do
  if [ $((i % 2)) -eq 1 ]; then order=xswitch,ovs; sets="a b"; else order=ovs,xswitch; sets="b a"; fi
  for s in $sets; do
    if [ "$s" = a ]; then d=$da; y=$ya; u=$ua; else d=$db; y=$yb; u=$ub; fi
    echo "== pair $i setting $s: $order ($(date -u +%H:%M:%S) UTC)"
    BENCH_XSWITCH_UNDERLAY_YAML="$u" BENCH_XSWITCH_YAML="$y" BENCH_SYSTEMS=$order \
      BENCH_JSON="$PWD/$d/pair-$i.json" BENCH_CHART="$PWD/$d/pair-$i.svg" \
      bench/run.sh >"$d/pair-$i.log" 2>&1 || echo "pair $i setting $s: make bench failed (see $d/pair-$i.log)"
  done
done
for d in "$da" "$db"; do
  echo; echo "#### $d"; cat "$d/xswitch.yaml"
  go run ./bench/pairsum "$d"/pair-*.json | tee "$d/summary.txt"
done
