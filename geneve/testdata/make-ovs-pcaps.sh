#!/bin/bash
# Produces testdata/ovs-*.pcap: Geneve frames sent by Open vSwitch (userspace
# datapath, AF_XDP port) between two namespaces, captured with tcpdump in a
# third "wire" namespace. Run as root from anywhere: ./make-ovs-pcaps.sh [outdir]
# See README.md. Everything it creates is removed on exit, also on failure.
set -euo pipefail
OUT=$(cd "${1:-$(dirname "$0")}" && pwd)
P=gnvcap$$          # unique prefix for namespaces and run directories
W=$P-wire
TMP=$(mktemp -d /tmp/$P.XXXX)
PIDS=()

cleanup() {
	local rc=$?
	set +e
	if [ $rc != 0 ]; then
		for i in 1 2; do echo "== h$i vsd.log"; tail -25 "$TMP/h$i/vsd.log"; done
	fi
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for i in 1 2; do
		for f in vsd ovsdb; do
			[ -f "$TMP/h$i/$f.pid" ] && kill "$(cat "$TMP/h$i/$f.pid")" 2>/dev/null
		done
	done
	sleep 0.5
	for ns in $P-h1 $P-h2 $W; do ip netns del "$ns" 2>/dev/null; done
	rm -rf "$TMP"
}
trap cleanup EXIT

ip netns add $W
ip -n $W link add name wbr type bridge
ip -n $W link set wbr up
for i in 1 2; do
	NS=$P-h$i
	ip netns add $NS
	ip -n $NS link set lo up
	ip -n $NS link add p1 numrxqueues 1 numtxqueues 1 type veth peer name w$i netns $W numrxqueues 1 numtxqueues 1
	ip -n $W link set w$i master wbr
	ip -n $W link set w$i up
	ip -n $NS link set p1 up
done

ovs() { # ovs <i> <command...>: run an OVS tool against instance i
	local i=$1; shift
	local D=$TMP/h$i
	OVS_RUNDIR=$D OVS_LOGDIR=$D OVS_DBDIR=$D ip netns exec $P-h$i "$@"
}
vsctl() { local i=$1; shift; ovs "$i" ovs-vsctl --db=unix:$TMP/h$i/db.sock "$@"; }
ofctl() { local i=$1; shift; ovs "$i" ovs-ofctl "$@"; }
appctl() { local i=$1; shift; ovs "$i" ovs-appctl -t "$TMP/h$i/ovs-vswitchd.$(cat "$TMP/h$i/vsd.pid").ctl" "$@"; }

for i in 1 2; do
	D=$TMP/h$i
	mkdir -p "$D"
	ovs $i ovsdb-tool create "$D/conf.db" /usr/share/openvswitch/vswitch.ovsschema
	ovs $i ovsdb-server "$D/conf.db" --remote=punix:"$D/db.sock" --pidfile="$D/ovsdb.pid" --detach --log-file="$D/ovsdb.log"
	vsctl $i --no-wait init
	ovs $i ovs-vswitchd unix:"$D/db.sock" --pidfile="$D/vsd.pid" --detach --log-file="$D/vsd.log" --disable-system
	vsctl $i add-br br0 -- set bridge br0 datapath_type=netdev
	vsctl $i add-port br0 p1 -- set interface p1 type=afxdp options:xdp-mode=native
	ip -n $P-h$i addr add 198.18.0.$i/24 dev br0
	ip -n $P-h$i addr add 2001:2::$i/64 dev br0 nodad
	ip -n $P-h$i link set br0 up
	vsctl $i add-br br1 -- set bridge br1 datapath_type=netdev
	ip -n $P-h$i addr add 198.19.0.$i/24 dev br1
	ip -n $P-h$i link set br1 up
done

# setport PREFIX OPTIONS...: (re)create geneve1 on both ends, remote PREFIX<other host>.
setport() {
	local pfx=$1; shift
	for i in 1 2; do
		local r=$((3 - i))
		vsctl $i --if-exists del-port br1 geneve1
		vsctl $i add-port br1 geneve1 -- set interface geneve1 type=geneve options:remote_ip=$pfx$r "$@"
	done
	sleep 1
}

# capture NAME: ping across br1 and capture the Geneve frames on the wire.
capture() {
	local name=$1
	# Warm up: ARP for the underlay and the overlay, before the capture starts.
	ip netns exec $P-h1 ping -c 3 -i 0.2 -W 2 198.19.0.2 >/dev/null || true
	ip netns exec $W tcpdump -i w1 -s 0 -U -w "$TMP/$name.pcap" udp port 6081 2>"$TMP/tcpdump.log" &
	local tp=$!
	PIDS+=("$tp")
	sleep 1
	ip netns exec $P-h1 ping -c 5 -i 0.2 -W 2 198.19.0.2 || { echo "ping across the tunnel failed"; return 1; }
	sleep 0.5
	kill -INT $tp
	wait $tp || true
	cp "$TMP/$name.pcap" "$OUT/$name.pcap"
	tshark -r "$OUT/$name.pcap" -T fields -e ip.src -e ipv6.src -e udp.srcport -e udp.checksum -e geneve.vni \
		-e geneve.proto_type -e geneve.option.class -e geneve.option.type 2>/dev/null | head -4
}

setport 198.18.0.
capture ovs-geneve-vni0
setport 198.18.0. options:key=5000
capture ovs-geneve-key5000
setport 2001:2:: options:key=5000
capture ovs-geneve6-key5000
setport 2001:2:: options:key=5000 options:csum=true
capture ovs-geneve6-key5000-csum
setport 198.18.0. options:key=5000

# Geneve option from OVS: map class 0x0102 type 0x80 (critical), 4 bytes, to
# tun_metadata0 and set it on every frame sent from br1's LOCAL port; both ends
# know the option, so the receiver accepts it.
for i in 1 2; do
	ofctl $i add-tlv-map br1 "{class=0x0102,type=0x80,len=4}->tun_metadata0"
	ofctl $i del-flows br1
	ofctl $i add-flow br1 "priority=10,in_port=LOCAL,actions=set_field:0x0a0b0c0d->tun_metadata0,output:geneve1"
	ofctl $i add-flow br1 "priority=10,in_port=geneve1,actions=output:LOCAL"
done
capture ovs-geneve-key5000-option
echo "pcaps written to $OUT"
