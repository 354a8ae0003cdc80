package main_test

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"xswitch/geneve"
	"xswitch/internal/capture"
	"xswitch/internal/e2e"
	"xswitch/internal/testnet"
	"xswitch/internal/wait"
	vswitch "xswitch/switch"
	"xswitch/xsk"
)

// bridgeSpec is one bridge of a test configuration.
type bridgeSpec struct {
	name    string
	key     uint32
	addrs   []string // internal port addresses
	mac     string
	ports   []string
	remotes []netip.Addr
}

// xsConfig writes the YAML of one host.
func xsConfig(underlay string, brs ...bridgeSpec) string {
	var b strings.Builder
	if underlay != "" {
		fmt.Fprintf(&b, "underlay:\n  interface: %s\n", underlay)
	}
	b.WriteString("cpus: [1]\nlog_level: debug\nbridges:\n")
	for _, br := range brs {
		fmt.Fprintf(&b, "  - name: %s\n", br.name)
		if len(br.addrs) > 0 {
			fmt.Fprintf(&b, "    addresses: [%s]\n", strings.Join(br.addrs, ", "))
		}
		if br.mac != "" {
			fmt.Fprintf(&b, "    mac: %q\n", br.mac)
		}
		if len(br.ports) > 0 {
			fmt.Fprintf(&b, "    ports: [%s]\n", strings.Join(br.ports, ", "))
		}
		if len(br.remotes) > 0 {
			b.WriteString("    tunnels:\n")
			for _, r := range br.remotes {
				fmt.Fprintf(&b, "      - remote_ip: %s\n", r)
				if br.key != 0 {
					fmt.Fprintf(&b, "        key: %d\n", br.key)
				}
			}
		}
	}
	return b.String()
}

// others returns the underlay addresses of every host but h.
func others(hosts []*e2e.Host, h *e2e.Host, v6 bool) []netip.Addr {
	var out []netip.Addr
	for _, o := range hosts {
		if o == h {
			continue
		}
		if v6 {
			out = append(out, o.IP6)
		} else {
			out = append(out, o.IP4)
		}
	}
	return out
}

// inner4 and inner6 are host i's (1-based) bridge addresses.
func inner4(i int) string { return fmt.Sprintf("198.19.0.%d", i) }
func inner6(i int) string { return fmt.Sprintf("2001:2:0:19::%d", i) }

// meshSwitches starts an xswitch on every host with bridge br1 (key) and a
// tunnel to every other host.
func meshSwitches(t *testing.T, hosts []*e2e.Host, key uint32, v6underlay bool) []*e2e.Xswitch {
	t.Helper()
	var xs []*e2e.Xswitch
	for i, h := range hosts {
		br := bridgeSpec{name: "br1", key: key, addrs: []string{inner4(i+1) + "/24", inner6(i+1) + "/64"}, remotes: others(hosts, h, v6underlay)}
		xs = append(xs, e2e.StartXswitch(t, h.NS, xsConfig(h.Underlay, br)))
	}
	return xs
}

func ping(t *testing.T, ns, dst string, count int, args ...string) {
	t.Helper()
	a := append([]string{"-c", fmt.Sprint(count), "-i", "0.2", "-W", "2"}, args...)
	out, err := testnet.Try(ns, "ping", append(a, dst)...)
	if err != nil || !strings.Contains(out, " 0% packet loss") {
		t.Errorf("ping %s from %s: %v\n%s", dst, ns, err, out)
	}
}

// pingFails asserts that no reply comes.
func pingFails(t *testing.T, ns, dst string, args ...string) {
	t.Helper()
	a := append([]string{"-c", "2", "-i", "0.2", "-W", "1"}, args...)
	if out, err := testnet.Try(ns, "ping", append(a, dst)...); err == nil {
		t.Errorf("ping %s from %s succeeded, want no reply:\n%s", dst, ns, out)
	}
}

func stats(t *testing.T, x *e2e.Xswitch) vswitch.Stats {
	t.Helper()
	var s vswitch.Stats
	if err := x.CtlJSON(&s, "stats"); err != nil {
		t.Fatal(err)
	}
	return s
}

func tunnelStats(s vswitch.Stats, bridge string, remote netip.Addr) vswitch.TunnelStats {
	for _, ts := range s.Tunnels {
		if ts.Bridge == bridge && ts.Remote == remote.String() {
			return ts
		}
	}
	return vswitch.TunnelStats{}
}

func portStats(s vswitch.Stats, name string) vswitch.PortStats {
	for _, p := range s.Ports {
		if p.Name == name {
			return p
		}
	}
	return vswitch.PortStats{}
}

func fdb(t *testing.T, x *e2e.Xswitch) []vswitch.FDBEntry {
	t.Helper()
	var es []vswitch.FDBEntry
	if err := x.CtlJSON(&es, "fdb"); err != nil {
		t.Fatal(err)
	}
	return es
}

func fdbPort(t *testing.T, x *e2e.Xswitch, bridge, mac string) string {
	t.Helper()
	for _, e := range fdb(t, x) {
		if e.Bridge == bridge && strings.EqualFold(e.MAC, mac) {
			return e.Port
		}
	}
	return ""
}

func linkMAC(t *testing.T, ns, dev string) string {
	t.Helper()
	out, err := testnet.Try(ns, "cat", "/sys/class/net/"+dev+"/address")
	if err != nil {
		// sysfs shows the namespace it was mounted in: ask ip instead.
		out, err = testnet.Try(ns, "sh", "-c", "ip -o link show "+dev+" | sed 's/.*link\\/ether \\([^ ]*\\).*/\\1/'")
		if err != nil {
			t.Fatal(err)
		}
	}
	return strings.TrimSpace(out)
}

// TestPingTwoHosts: ping across the tunnel over IPv4 and IPv6 inner
// traffic, keys 0 and 5000, IPv4 and IPv6 underlay; ARP/ND is flooded, then
// each side has learned the other's MAC on its tunnel.
func TestPingTwoHosts(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := e2e.Topology(t, 2)
	for _, c := range []struct {
		name string
		key  uint32
		v6   bool
	}{{"key0", 0, false}, {"key5000", 5000, false}, {"ipv6-underlay-key5000", 5000, true}} {
		t.Run(c.name, func(t *testing.T) {
			xs := meshSwitches(t, hosts, c.key, c.v6)
			ping(t, hosts[0].NS, inner4(2), 5)
			ping(t, hosts[1].NS, inner4(1), 3)
			ping(t, hosts[0].NS, inner6(2), 5)
			remote := hosts[1].IP4
			if c.v6 {
				remote = hosts[1].IP6
			}
			if p := fdbPort(t, xs[0], "br1", linkMAC(t, hosts[1].NS, "br1")); p != "tunnel:"+remote.String() {
				t.Errorf("h1 learned h2's br1 MAC on %q, want tunnel:%v", p, remote)
			}
			s := stats(t, xs[0])
			ts := tunnelStats(s, "br1", remote)
			if ts.TxPackets < 13 || ts.RxPackets < 13 || ts.VNI != c.key {
				t.Errorf("tunnel counters %+v, want >= 13 packets each way with VNI %d", ts, c.key)
			}
			show, _ := xs[0].Ctl("show")
			t.Logf("h1 ctl show:\n%s", show)
			for _, x := range xs {
				if err := x.Stop(); err != nil {
					t.Fatal(err)
				}
			}
			for _, h := range hosts {
				checkClean(t, h)
			}
		})
	}
}

// TestThreeHostsFloodThenLearn: three hosts, full mesh. The first exchange
// floods (ARP to both tunnels); afterwards unicast goes to one tunnel only.
// Two VNIs on the same hosts stay isolated.
func TestThreeHostsFloodThenLearn(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := e2e.Topology(t, 3)
	var xs []*e2e.Xswitch
	for i, h := range hosts {
		// No IPv6 on the internal ports: their kernel multicast (MLD, router
		// solicitations) is flooded by design and would blur the count of
		// unicast frames per tunnel below.
		if out, err := testnet.Try(h.NS, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		br1 := bridgeSpec{name: "br1", key: 5000, addrs: []string{inner4(i+1) + "/24"}, remotes: others(hosts, h, false)}
		br2 := bridgeSpec{name: "br2", key: 6000, addrs: []string{fmt.Sprintf("198.19.1.%d/24", i+1)}, remotes: others(hosts, h, false)}
		xs = append(xs, e2e.StartXswitch(t, h.NS, xsConfig(h.Underlay, br1, br2)))
	}
	h1, h2, h3 := hosts[0], hosts[1], hosts[2]
	s0 := stats(t, xs[0])
	ping(t, h1.NS, inner4(2), 3)
	s1 := stats(t, xs[0])
	to3 := tunnelStats(s1, "br1", h3.IP4).TxPackets - tunnelStats(s0, "br1", h3.IP4).TxPackets
	if to3 == 0 {
		t.Errorf("the first exchange (ARP) was not flooded to h3's tunnel")
	}
	// Learned: unicast now goes to h2's tunnel only.
	ping(t, h1.NS, inner4(2), 10)
	s2 := stats(t, xs[0])
	d2 := tunnelStats(s2, "br1", h2.IP4).TxPackets - tunnelStats(s1, "br1", h2.IP4).TxPackets
	d3 := tunnelStats(s2, "br1", h3.IP4).TxPackets - tunnelStats(s1, "br1", h3.IP4).TxPackets
	if d2 < 10 || d3 != 0 {
		t.Errorf("after learning, 10 pings sent %d frames to h2's tunnel and %d to h3's, want >= 10 and 0", d2, d3)
	}
	// Every pair works, on both VNIs.
	for i, h := range hosts {
		for j := range hosts {
			if i != j {
				ping(t, h.NS, inner4(j+1), 2)
				ping(t, h.NS, fmt.Sprintf("198.19.1.%d", j+1), 2)
			}
		}
	}
	// Isolation: frames of VNI 5000 never reach br2 of another host. A
	// ping of a marked size on br1 is captured on h2's br1 and br2.
	c1 := capture.Start(t, h2.NS, "br1", "icmp")
	c2 := capture.Start(t, h2.NS, "br2", "icmp")
	ping(t, h1.NS, inner4(2), 3, "-s", "1111")
	ping(t, h3.NS, inner4(2), 3, "-s", "1111")
	n1, n2 := countICMP(t, c1, 1111), countICMP(t, c2, 1111)
	if n1 < 12 || n2 != 0 {
		t.Errorf("marked pings on VNI 5000: %d frames on h2's br1, %d on br2; want >= 12 and 0", n1, n2)
	}
}

func countICMP(t *testing.T, c *capture.Capture, size int) int {
	t.Helper()
	pcap, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	// Ethernet + IPv4 + ICMP headers + payload.
	out, err := capture.Tshark(pcap, "-Y", fmt.Sprintf("icmp && frame.len == %d", 14+20+8+size), "-T", "fields", "-e", "frame.number")
	if err != nil {
		t.Fatal(err)
	}
	return len(strings.Fields(out))
}

// TestLocalPorts: AF_XDP local ports (veth into "vm" namespaces) talk to
// each other on one host, to the internal port, and across the tunnel.
func TestLocalPorts(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := e2e.Topology(t, 2)
	h1, h2 := hosts[0], hosts[1]
	net := testnet.New(t)
	vm1, vm2 := net.NS("vm1"), net.NS("vm2")
	for i, vm := range []string{vm1, vm2} {
		port := fmt.Sprintf("vm%d", i+1)
		net.Veth(h1.NS, port, vm, "eth0", 0)
		net.Run(vm, "ip", "addr", "add", fmt.Sprintf("198.19.0.%d/24", 11+i), "dev", "eth0")
		// AF_XDP ports carry frames as they are: no checksum offload.
		net.Run(vm, "ethtool", "-K", "eth0", "tx", "off")
	}
	x1 := e2e.StartXswitch(t, h1.NS, xsConfig(h1.Underlay, bridgeSpec{name: "br1", addrs: []string{inner4(1) + "/24"}, ports: []string{"vm1", "vm2"}, remotes: []netip.Addr{h2.IP4}}))
	e2e.StartXswitch(t, h2.NS, xsConfig(h2.Underlay, bridgeSpec{name: "br1", addrs: []string{inner4(2) + "/24"}, remotes: []netip.Addr{h1.IP4}}))
	ping(t, vm1, "198.19.0.12", 5) // local port to local port
	ping(t, vm2, inner4(1), 3)     // to the internal port
	ping(t, vm1, inner4(2), 3)     // across the tunnel
	ping(t, h2.NS, "198.19.0.12", 3)
	s := stats(t, x1)
	if p := portStats(s, "vm2"); p.RxPackets < 5 || p.TxPackets < 5 {
		t.Errorf("vm2 counters %+v", p)
	}
	if p := fdbPort(t, x1, "br1", linkMAC(t, vm1, "eth0")); p != "vm1" {
		t.Errorf("vm1's MAC learned on %q, want vm1", p)
	}
	show, _ := x1.Ctl("show")
	if !strings.Contains(show, "port vm1 (local") {
		t.Errorf("ctl show lacks local port vm1:\n%s", show)
	}
	t.Logf("h1 ctl show:\n%s", show)
}

// TestMACMove: a MAC first behind h2 moves to h3; h1 relearns it on h3's
// tunnel as soon as it sends, and unicast follows.
func TestMACMove(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := e2e.Topology(t, 3)
	h1, h2, h3 := hosts[0], hosts[1], hosts[2]
	const mac, moved = "02:00:00:00:00:50", "198.19.0.50"
	var xs []*e2e.Xswitch
	for i, h := range hosts {
		br := bridgeSpec{name: "br1", key: 5000, addrs: []string{inner4(i+1) + "/24"}, remotes: others(hosts, h, false)}
		xs = append(xs, e2e.StartXswitch(t, h.NS, xsConfig(h.Underlay, br)))
	}
	// The "VM" is h2's br1 with MAC mac and address moved.
	testnet.Try(h2.NS, "ip", "link", "set", "br1", "address", mac)
	testnet.Try(h2.NS, "ip", "addr", "add", moved+"/24", "dev", "br1")
	ping(t, h1.NS, moved, 3)
	if p := fdbPort(t, xs[0], "br1", mac); p != "tunnel:"+h2.IP4.String() {
		t.Fatalf("before the move h1 has %s on %q, want h2's tunnel", mac, p)
	}
	// Move: h2 lets go, h3 takes MAC and address and speaks first.
	testnet.Try(h2.NS, "ip", "addr", "del", moved+"/24", "dev", "br1")
	testnet.Try(h2.NS, "ip", "link", "set", "br1", "address", "02:00:00:00:00:52")
	testnet.Try(h3.NS, "ip", "link", "set", "br1", "address", mac)
	testnet.Try(h3.NS, "ip", "addr", "add", moved+"/24", "dev", "br1")
	ping(t, h3.NS, inner4(1), 2, "-I", moved)
	if p := fdbPort(t, xs[0], "br1", mac); p != "tunnel:"+h3.IP4.String() {
		t.Errorf("after the move h1 has %s on %q, want h3's tunnel", mac, p)
	}
	s0 := stats(t, xs[0])
	ping(t, h1.NS, moved, 5)
	s1 := stats(t, xs[0])
	if d := tunnelStats(s1, "br1", h3.IP4).TxPackets - tunnelStats(s0, "br1", h3.IP4).TxPackets; d < 5 {
		t.Errorf("after the move, %d frames went to h3's tunnel, want >= 5", d)
	}
	var st vswitch.Status
	if err := xs[0].CtlJSON(&st, "show"); err != nil {
		t.Fatal(err)
	}
	if st.Bridges[0].FDB.Moves == 0 {
		t.Errorf("h1 counted no MAC move: %+v", st.Bridges[0].FDB)
	}
}

// TestTooBig: a frame that does not fit the underlay MTU after
// encapsulation is dropped and counted (br1's MTU raised by hand past what
// xswitch set).
func TestTooBig(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := e2e.Topology(t, 2)
	xs := meshSwitches(t, hosts, 5000, false)
	h1 := hosts[0]
	out, _ := testnet.Try(h1.NS, "ip", "-o", "link", "show", "br1")
	if !strings.Contains(out, "mtu 1450") {
		t.Errorf("br1's MTU is not the underlay's 1500 minus 50: %s", out)
	}
	ping(t, h1.NS, inner4(2), 2, "-s", "1422", "-M", "do") // 1450 bytes: fits
	testnet.Try(h1.NS, "ip", "link", "set", "br1", "mtu", "1500")
	before := tunnelStats(stats(t, xs[0]), "br1", hosts[1].IP4).Drops["too_big"]
	pingFails(t, h1.NS, inner4(2), "-s", "1472", "-M", "do")
	after := tunnelStats(stats(t, xs[0]), "br1", hosts[1].IP4).Drops["too_big"]
	if after-before < 2 {
		t.Errorf("too_big drops grew by %d, want >= 2", after-before)
	}
}

// TestUnknownRemote: Geneve for a configured VNI from an address that is
// not a remote of it is dropped and counted, and not delivered.
func TestUnknownRemote(t *testing.T) {
	testnet.RequireRoot(t)
	_, hosts := e2e.Topology(t, 3)
	h1, h2, h3 := hosts[0], hosts[1], hosts[2]
	// h1 and h2 are tunnel peers; h3 is not configured on h1.
	x1 := e2e.StartXswitch(t, h1.NS, xsConfig(h1.Underlay, bridgeSpec{name: "br1", key: 5000, addrs: []string{inner4(1) + "/24"}, remotes: []netip.Addr{h2.IP4}}))
	e2e.StartXswitch(t, h2.NS, xsConfig(h2.Underlay, bridgeSpec{name: "br1", key: 5000, addrs: []string{inner4(2) + "/24"}, remotes: []netip.Addr{h1.IP4}}))
	ping(t, h1.NS, inner4(2), 2)
	br1 := capture.Start(t, h1.NS, "br1", "udp", "port", "9")
	const n = 5
	before := portStats(stats(t, x1), h1.Underlay).Drops["unknown_remote"]
	// h3's kernel sends Geneve (VNI 5000, broadcast inner UDP) to h1.
	err := testnet.Do(h3.NS, func() error {
		c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: h1.IP4.AsSlice(), Port: geneve.Port})
		if err != nil {
			return err
		}
		defer c.Close()
		pkt := genevePayload(5000)
		for i := 0; i < n; i++ {
			if _, err := c.Write(pkt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Every datagram has been handled once the counter reaches n; then it
	// must be exactly n, and none can still be on its way to br1.
	var after uint64
	wait.Until(10*time.Second, func() bool {
		after = portStats(stats(t, x1), h1.Underlay).Drops["unknown_remote"]
		return after-before >= n
	})
	if after-before != n {
		t.Errorf("unknown_remote drops grew by %d, want %d", after-before, n)
	}
	if got := countUDP9(t, br1); got != 0 {
		t.Errorf("%d frames from the unknown remote reached br1", got)
	}
}

// genevePayload is a Geneve header (VNI vni) + a broadcast Ethernet/IPv4/UDP
// frame to port 9.
func genevePayload(vni uint32) []byte {
	inner := make([]byte, 14+20+8+16)
	copy(inner, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0x99, 1})
	binary.BigEndian.PutUint16(inner[12:], 0x0800)
	ip := inner[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], 20+8+16)
	copy(ip[12:], []byte{198, 19, 0, 99})
	copy(ip[16:], []byte{198, 19, 0, 255})
	var s uint32
	for i := 0; i < 20; i += 2 {
		s += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(s))
	u := inner[34:]
	binary.BigEndian.PutUint16(u[0:], 4444)
	binary.BigEndian.PutUint16(u[2:], 9)
	binary.BigEndian.PutUint16(u[4:], 8+16)
	h := make([]byte, 8, 8+len(inner))
	binary.BigEndian.PutUint16(h[2:], geneve.ProtoTEB)
	binary.BigEndian.PutUint32(h[4:], vni<<8)
	return append(h, inner...)
}

func countUDP9(t *testing.T, c *capture.Capture) int {
	t.Helper()
	pcap, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	out, err := capture.Tshark(pcap, "-Y", "udp.dstport == 9", "-T", "fields", "-e", "frame.number")
	if err != nil {
		t.Fatal(err)
	}
	return len(strings.Fields(out))
}

// TestDemo runs `make demo`'s script with the test binary: the ping crosses
// the tunnel with 0% loss and nothing is left behind.
func TestDemo(t *testing.T) {
	testnet.RequireRoot(t)
	cmd := exec.Command("./demo.sh")
	cmd.Env = append(os.Environ(), "XSWITCH_BIN="+e2e.Binary(t))
	out, err := cmd.CombinedOutput()
	t.Logf("demo.sh:\n%s", out)
	if err != nil {
		t.Fatalf("demo.sh: %v", err)
	}
	for _, want := range []string{"5 packets transmitted, 5 received, 0% packet loss", "bridge br1 (vni 5000", "tunnel:198.18.0.2"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	ns, _ := exec.Command("ip", "netns", "list").CombinedOutput()
	if strings.Contains(string(ns), "xsdemo-") {
		t.Errorf("demo left namespaces behind:\n%s", ns)
	}
}

// twoVMs makes a switch namespace with local ports vm1 and vm2 (veths with
// queues queues; 0: the default) to VM namespaces at 198.19.0.11 and .12,
// and returns the switch's namespace and vm1's.
func twoVMs(t *testing.T, prefix string, queues int) (sw, vm1 string) {
	t.Helper()
	net := testnet.New(t)
	sw = net.NS(prefix + "sw")
	for i := range 2 {
		vm := net.NS(fmt.Sprintf("%svm%d", prefix, i+1))
		net.Veth(sw, fmt.Sprintf("vm%d", i+1), vm, "eth0", queues)
		net.Run(vm, "ip", "addr", "add", fmt.Sprintf("198.19.0.%d/24", 11+i), "dev", "eth0")
		// AF_XDP ports carry frames as they are: no checksum offload.
		net.Run(vm, "ethtool", "-K", "eth0", "tx", "off")
		if i == 0 {
			vm1 = vm
		}
	}
	return sw, vm1
}

// TestBusyPoll: with busy_poll the pollers spin: idle, they keep using CPU
// time (they never sleep in poll()); without it they sleep: idle, they go
// to sleep again and again (voluntary context switches, one per poll()
// timeout) and use almost no CPU. Either way frames flow between local
// ports and `ctl show` says which; with busy_poll the log warns that the
// pollers' CPUs must be kept free of the ports' NAPI work.
func TestBusyPoll(t *testing.T) {
	testnet.RequireRoot(t)
	sw, vm1 := twoVMs(t, "bp", 0)
	for _, busy := range []bool{true, false} {
		t.Run(fmt.Sprintf("busy_poll=%v", busy), func(t *testing.T) {
			x := e2e.StartXswitch(t, sw, xsConfig("", bridgeSpec{name: "br1", ports: []string{"vm1", "vm2"}})+fmt.Sprintf("busy_poll: %v\n", busy))
			ping(t, vm1, "198.19.0.12", 5)
			if p := portStats(stats(t, x), "vm2"); p.TxPackets < 5 || p.RxPackets < 5 {
				t.Errorf("vm2 counters %+v", p)
			}
			show, _ := x.Ctl("show")
			if !strings.Contains(show, fmt.Sprintf("busy_poll %v", busy)) {
				t.Errorf("ctl show does not report busy_poll %v:\n%s", busy, show)
			}
			if warned := strings.Contains(x.Log(), "busy_poll: pollers spin"); warned != busy {
				t.Errorf("busy_poll warning in the log: %v, want %v:\n%s", warned, busy, x.Log())
			}
			// The pollers are the daemon's SCHED_BATCH threads (the default
			// poller_policy; TestPollerPolicy checks that no other is).
			pollers := threadsOfPolicy(t, x.Pid(), unix.SCHED_BATCH)
			if len(pollers) != 2 {
				t.Fatalf("%d poller threads, want 2 (two one-queue ports)", len(pollers))
			}
			if busy {
				checkSpinning(t, x.Pid(), pollers)
			} else {
				checkSleeping(t, x.Pid(), pollers)
			}
			if err := x.Stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// spinCPU is the CPU time idle pollers must burn to count as spinning: a
// poller that sleeps in poll() uses microseconds per wake-up, tens of them
// per second.
const spinCPU = 500 * time.Millisecond

// checkSpinning: while nothing arrives, the pollers together use spinCPU of
// CPU time within a bounded wait (shared CPUs may give them less than one
// CPU second per second, but a sleeping poller would need hours).
func checkSpinning(t *testing.T, pid int, pollers []string) {
	t.Helper()
	u0, t0 := usage(t, pid, pollers), time.Now()
	var u threadUsage
	ok := wait.Until(20*time.Second, func() bool {
		u = usage(t, pid, pollers)
		return u.cpu-u0.cpu >= spinCPU
	})
	el := time.Since(t0)
	t.Logf("busy_poll: idle pollers used %v of CPU in %v (%.2f CPU s/s), %d voluntary context switches",
		u.cpu-u0.cpu, el.Round(time.Millisecond), (u.cpu-u0.cpu).Seconds()/el.Seconds(), u.voluntary-u0.voluntary)
	if !ok {
		t.Errorf("busy_poll: idle pollers used only %v of CPU in %v, want >= %v: they do not spin", u.cpu-u0.cpu, el, spinCPU)
	}
}

// checkSleeping: once every poller has gone to sleep 50 times (about a
// second of 20 ms poll() timeouts) the pollers together used less than a
// tenth of the time that passed.
func checkSleeping(t *testing.T, pid int, pollers []string) {
	t.Helper()
	before := map[string]threadUsage{}
	for _, tid := range pollers {
		before[tid] = usage(t, pid, []string{tid})
	}
	u0, t0 := usage(t, pid, pollers), time.Now()
	wait.For(t, 20*time.Second, "every idle poller to sleep 50 times", func() bool {
		for _, tid := range pollers {
			if usage(t, pid, []string{tid}).voluntary-before[tid].voluntary < 50 {
				return false
			}
		}
		return true
	})
	u, el := usage(t, pid, pollers), time.Since(t0)
	t.Logf("no busy_poll: idle pollers used %v of CPU in %v, %d voluntary context switches",
		u.cpu-u0.cpu, el.Round(time.Millisecond), u.voluntary-u0.voluntary)
	if u.cpu-u0.cpu > el/10 {
		t.Errorf("without busy_poll idle pollers used %v of CPU in %v: they do not sleep", u.cpu-u0.cpu, el)
	}
}

// threadUsage is the CPU time and voluntary context switches of threads.
type threadUsage struct {
	cpu       time.Duration
	voluntary uint64
}

// usage sums the usage of threads tids of pid.
func usage(t *testing.T, pid int, tids []string) threadUsage {
	t.Helper()
	var u threadUsage
	for _, tid := range tids {
		f := taskStat(t, pid, tid)
		// utime and stime (fields 14 and 15) in clock ticks, 100 per second
		// on Linux (USER_HZ).
		for _, s := range f[14-3 : 15-3+1] {
			ticks, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				t.Fatalf("thread %s: bad CPU time %q", tid, s)
			}
			u.cpu += time.Duration(ticks) * 10 * time.Millisecond
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, tid))
		if err != nil {
			t.Fatalf("poller thread %s: %v", tid, err)
		}
		_, rest, ok := strings.Cut(string(b), "\nvoluntary_ctxt_switches:")
		v, err := strconv.ParseUint(strings.TrimSpace(strings.SplitN(rest, "\n", 2)[0]), 10, 64)
		if !ok || err != nil {
			t.Fatalf("thread %s: no voluntary_ctxt_switches in its status", tid)
		}
		u.voluntary += v
	}
	return u
}

// TestPollerPolicy: by default (and with poller_policy: batch) every
// poller thread, and no other thread of the daemon, runs in SCHED_BATCH;
// with poller_policy: normal none does; frames flow; ctl show says so.
func TestPollerPolicy(t *testing.T) {
	testnet.RequireRoot(t)
	sw, vm1 := twoVMs(t, "pp", 2)
	for _, tc := range []struct {
		setting, policy string
		batchThreads    int
	}{
		{"", "batch", 4}, // two ports with two queues each: four pollers
		{"poller_policy: normal\n", "normal", 0},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			x := e2e.StartXswitch(t, sw, xsConfig("", bridgeSpec{name: "br1", ports: []string{"vm1", "vm2"}})+tc.setting)
			ping(t, vm1, "198.19.0.12", 3)
			show, _ := x.Ctl("show")
			if !strings.Contains(show, "poller_policy "+tc.policy) {
				t.Errorf("ctl show does not report poller_policy %s:\n%s", tc.policy, show)
			}
			// Copy-mode ports report their TX budget per sendto (xswitch
			// leaves the kernel's).
			if !strings.Contains(show, fmt.Sprintf("copy, 2 queues, tx budget %d", xsk.KernelTxBudget)) {
				t.Errorf("ctl show does not report the TX budget:\n%s", show)
			}
			// `ip netns exec` execs the daemon: same pid.
			if n := threadsWithPolicy(t, x.Pid(), unix.SCHED_BATCH); n != tc.batchThreads {
				t.Errorf("%d threads of xswitch in SCHED_BATCH, want %d", n, tc.batchThreads)
			}
			if err := x.Stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// threadsWithPolicy counts the threads of pid whose scheduling policy is
// policy.
func threadsWithPolicy(t *testing.T, pid, policy int) int {
	t.Helper()
	return len(threadsOfPolicy(t, pid, policy))
}

// threadsOfPolicy returns the ids of the threads of pid whose scheduling
// policy (field 41 of /proc/pid/task/tid/stat) is policy.
func threadsOfPolicy(t *testing.T, pid, policy int) []string {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	var tids []string
	for _, task := range tasks {
		f, ok := taskStatFields(t, pid, task.Name())
		if !ok {
			continue // the thread ended
		}
		if p, err := strconv.Atoi(f[41-3]); err == nil && p == policy {
			tids = append(tids, task.Name())
		}
	}
	return tids
}

// taskStat returns the fields of /proc/pid/task/tid/stat from field 3 on
// (f[i-3] is field i), failing t if the thread is gone.
func taskStat(t *testing.T, pid int, tid string) []string {
	t.Helper()
	f, ok := taskStatFields(t, pid, tid)
	if !ok {
		t.Fatalf("thread %s of %d is gone", tid, pid)
	}
	return f
}

func taskStatFields(t *testing.T, pid int, tid string) ([]string, bool) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, tid))
	if err != nil {
		return nil, false
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	if len(f) < 41-3+1 {
		t.Fatalf("short stat line for thread %s: %q", tid, b)
	}
	return f, true
}
