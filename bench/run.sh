#!/usr/bin/env bash
# make bench: pinned-CPU throughput of xswitch, Open vSwitch 3.1 AF_XDP and
# the xsk l2fwd ceiling, in namespaces, in the same run; then TCP (iperf3)
# through xswitch and Open vSwitch.
#   QUICK=1                encap and decap at 64 bytes only (< 2 minutes)
#   BENCH_SYSTEMS=...      subset of: l2fwd,xswitch,ovs
#   BENCH_PATHS=...        subset of: encap,decap,local
#   BENCH_SIZES=...        e.g. 64,512,1500
#   BENCH_RUNS, BENCH_INTERVAL (e.g. 2s), BENCH_WARMUP, BENCH_FLOWS
#   BENCH_GEN_CPU (0), BENCH_SWITCH_CPU (1)
#   BENCH_XSWITCH_YAML     extra top-level xswitch settings, e.g. "poller_idle: sleep"
#   BENCH_L2FWD_ARGS       extra bench/l2fwd flags, e.g. "-idle sleep -sleep-max 50us"
#   BENCH_OVS_MAXSLEEP     Open vSwitch's pmd-maxsleep (µs, default 50)
#   BENCH_LATENCY=0        no round trips; BENCH_LATENCY_PROBES (200), BENCH_LATENCY_INTERVAL (10ms)
# Alternated xswitch/OVS pairs with a summary of the per-pair ratios: bench/pairs.sh N.
# TCP (iperf3 host → host and VM → VM through two hosts' switches, TestBenchTCP):
#   BENCH_TCP=1 (default)  packets, then TCP; 0: packets only; only: TCP only (make bench-tcp)
#   QUICK=1                one stream, one run of 3 s per case (1 s warm-up)
#   BENCH_TCP_SYSTEMS (ovs,xswitch), BENCH_TCP_CASES (host-host,vm-default,vm-txoff),
#   BENCH_TCP_STREAMS (1,4), BENCH_TCP_RUNS (3), BENCH_TCP_TIME (10s), BENCH_TCP_WARMUP (2s)
# Writes bench/results/<timestamp>.json (the TCP figures in its "tcp" section)
# and docs/bench-chart.svg and prints tables. See docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

if [ "$(id -u)" -ne 0 ]; then
  echo "make bench needs root (namespaces, XDP, AF_XDP, Open vSwitch)" >&2
  exit 1
fi
./.ci/deps
ncpu=$(nproc --all)
if [ "$ncpu" -lt 2 ]; then
  echo "make bench needs two CPUs (generator and switch on separate cores); this machine has $ncpu" >&2
  exit 1
fi

mkdir -p bin bench/results
echo "building..."
go build -o bin/ ./cmd/xswitch ./bench/pktgen ./bench/sink ./bench/l2fwd ./bench/swprof
go test -c -o bin/bench-harness ./bench/harness

export XSWITCH_BENCH=1
export BENCH_BIN_DIR="$root/bin"
export BENCH_OUT="${BENCH_OUT:-$root/bench/results}"
export BENCH_CHART="${BENCH_CHART:-$root/docs/bench-chart.svg}"
# The harness is not pinned: the switches it starts must see every CPU
# (xswitch checks its `cpus` against its affinity) before they are pinned to
# the switch CPU; the generator pins its own sending thread to the
# generator CPU.
export BENCH_TCP="${BENCH_TCP:-1}"
export BENCH_JSON="${BENCH_JSON:-$BENCH_OUT/$(date -u +%Y%m%dT%H%M%SZ).json}"
cd "$root/bench/harness"
status=0
if [ "$BENCH_TCP" != only ]; then
  "$root/bin/bench-harness" -test.run '^TestBench$' -test.v -test.timeout 30m || status=$?
fi
if [ "$BENCH_TCP" != 0 ]; then
  BENCH_TCP=1 "$root/bin/bench-harness" -test.run '^TestBenchTCP$' -test.v -test.timeout 40m || status=$?
fi
exit $status
