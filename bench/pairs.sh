#!/usr/bin/env bash
# bench/pairs.sh [N]: N alternated QUICK pairs (default 6) of xswitch and
# Open vSwitch: odd pairs run xswitch then OVS, even pairs OVS then xswitch,
# each `make bench QUICK=1` run (packets only, no profiles) into its own
# JSON; then bench/pairsum prints, per path at 64 bytes, min / median / max
# of the per-pair ratios xswitch / OVS, how many fell below 1.0 (and 1.5),
# the rates, context switches per 1000 packets and round trips.
#   BENCH_XSWITCH_YAML   the xswitch settings under study, e.g.
#                        $'poller_idle: sleep\npoller_sleep_max: 100us'
#   PAIRS_LABEL          names the results directory (default: from the YAML)
#   PAIRS_L2FWD=1        run the l2fwd ceiling first in each run too
#                        (BENCH_L2FWD_ARGS: its idle pattern), for xswitch / l2fwd
#   BENCH_LATENCY=0      no round trips (saves ~10 s per system and path)
#   BENCH_XSWITCH_UNDERLAY_YAML  underlay settings under study, e.g. "tx_budget: 128"
# Other make bench knobs pass through (BENCH_OVS_MAXSLEEP, BENCH_RUNS, ...).
# Needs root, like make bench; on a shared machine: flock /tmp/xswitch-bench.lock bench/pairs.sh
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-6}
label=${PAIRS_LABEL:-$(printf '%s' "${BENCH_XSWITCH_YAML:-default}" | tr -c 'A-Za-z0-9_.-' '_' | cut -c1-60)}
dir="bench/results/pairs-$(date -u +%Y%m%dT%H%M%SZ)-$label"
mkdir -p "$dir"
printf '%s\n' "${BENCH_XSWITCH_YAML:-}" >"$dir/xswitch.yaml"
export QUICK=1 BENCH_TCP=0 BENCH_PROFILE="${BENCH_PROFILE:-0}"
for i in $(seq 1 "$n"); do
  if [ $((i % 2)) -eq 1 ]; then order=xswitch,ovs; else order=ovs,xswitch; fi
  if [ "${PAIRS_L2FWD:-0}" = 1 ]; then order="l2fwd,$order"; fi
  echo "== pair $i of $n: $order ($(date -u +%H:%M:%S) UTC)"
  BENCH_SYSTEMS=$order BENCH_JSON="$PWD/$dir/pair-$i.json" BENCH_CHART="$PWD/$dir/pair-$i.svg" \
    bench/run.sh >"$dir/pair-$i.log" 2>&1 || echo "pair $i: make bench failed (see $dir/pair-$i.log)"
done
echo
echo "settings: ${BENCH_XSWITCH_YAML:-(defaults)}; OVS pmd-maxsleep ${BENCH_OVS_MAXSLEEP:-50}; l2fwd ${BENCH_L2FWD_ARGS:-(defaults)}"
go run ./bench/pairsum "$dir"/pair-*.json | tee "$dir/summary.txt"
echo "results: $dir"
