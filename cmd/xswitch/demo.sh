#!/usr/bin/env bash
# make demo: two hosts (network namespaces) joined by a veth "wire", an
# xswitch on each with bridge br1 and a Geneve tunnel (key 5000) to the
# other, a ping across the tunnel, and `xswitch ctl show` / `fdb` of host 1.
# Everything is removed on every exit path.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${XSWITCH_BIN:-$PWD/bin/xswitch}
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: needs root (network namespaces, XDP programs, TAP devices); run: sudo make demo" >&2
  exit 1
fi
[ -x "$BIN" ] || { echo "demo: $BIN missing; run: make build" >&2; exit 1; }

ID=$$
H1=xsdemo-$ID-h1
H2=xsdemo-$ID-h2
TMP=$(mktemp -d /tmp/xsdemo-$ID.XXXXXX)
PIDS=()

cleanup() {
  set +e
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  ip netns del "$H1" 2>/dev/null
  ip netns del "$H2" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== two hosts: $H1 (198.18.0.1) and $H2 (198.18.0.2), joined by a veth wire"
ip netns add "$H1"
ip netns add "$H2"
ip -n "$H1" link set lo up
ip -n "$H2" link set lo up
ip -n "$H1" link add eth0 type veth peer name eth0 netns "$H2"
ip -n "$H1" addr add 198.18.0.1/24 dev eth0
ip -n "$H2" addr add 198.18.0.2/24 dev eth0
ip -n "$H1" link set eth0 up
ip -n "$H2" link set eth0 up

for i in 1 2; do
  other=$((3 - i))
  cat > "$TMP/h$i.yaml" <<YAML
underlay:
  interface: eth0
cpus: [$(( $(nproc) > 1 ? 1 : 0 ))]
bridges:
  - name: br1
    address: 198.19.0.$i/24
    tunnels:
      - remote_ip: 198.18.0.$other
        key: 5000
YAML
done

start() { # ns config log
  ip netns exec "$1" "$BIN" run --config "$2" >"$3" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do
    if ip netns exec "$1" "$BIN" ctl show >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "${PIDS[-1]}" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "demo: xswitch in $1 did not start:" >&2
  cat "$3" >&2
  exit 1
}
echo "== xswitch on each host: bridge br1 (198.19.0.1/24, 198.19.0.2/24), Geneve key 5000"
start "$H1" "$TMP/h1.yaml" "$TMP/h1.log"
start "$H2" "$TMP/h2.yaml" "$TMP/h2.log"

echo "== ping -c 5 198.19.0.2 from $H1's br1"
rc=0
ip netns exec "$H1" ping -c 5 -i 0.2 -W 2 198.19.0.2 || rc=$?

echo
echo "== xswitch ctl show ($H1)"
ip netns exec "$H1" "$BIN" ctl show
echo
echo "== xswitch ctl fdb ($H1)"
ip netns exec "$H1" "$BIN" ctl fdb
if [ $rc -ne 0 ]; then
  echo
  echo "demo: ping failed; xswitch logs:" >&2
  cat "$TMP/h1.log" "$TMP/h2.log" >&2
fi
exit $rc
