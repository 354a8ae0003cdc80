package main_test

// Interoperability of xswitch with Open vSwitch 3.1 and Wireshark (docs/interop.md):
// host h1 runs Open vSwitch (userspace datapath, AF_XDP port on its underlay
// veth, bridge br1 with an internal address and a Geneve port to h2), host h2
// runs xswitch, and the e2e wire namespace's Linux bridge joins the two. What
// crosses the wire is captured with tcpdump and decoded with tshark.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"xswitch/geneve"
	"xswitch/internal/capture"
	"xswitch/internal/e2e"
	"xswitch/internal/ovspeer"
	"xswitch/internal/testnet"
	"xswitch/internal/wait"
	vswitch "xswitch/switch"
)

var (
	interopOVSIn = netip.MustParsePrefix("198.19.0.1/24") // OVS br1 on h1
	interopXsIn  = netip.MustParsePrefix("198.19.0.2/24") // xswitch br1 on h2
	// Inner IPv6 (only where a test asks for it, addInner6): a /64 of the
	// IPv6 benchmark range 2001:2::/48 (RFC 5180) next to the underlay's
	// 2001:2::/64.
	interopOVSIn6 = netip.MustParsePrefix("2001:2:0:1::1/64")
	interopXsIn6  = netip.MustParsePrefix("2001:2:0:1::2/64")
	// The option the tests exchange: class 0x0102, type 0x80 (critical), 4 bytes.
	interopOpt = geneve.Option{Class: 0x0102, Type: 0x80, Data: []byte{0x0a, 0x0b, 0x0c, 0x0d}}
)

// interop is one OVS (h1) + xswitch (h2) topology.
type interop struct {
	t          *testing.T
	wire, wbr  string // wire namespace and its bridge
	h1, h2     *e2e.Host
	ovs        *ovspeer.OVS
	xs         *e2e.Xswitch
	v6         bool // underlay family of the tunnel
	inner6     bool // br1 on both ends also has an IPv6 address (addInner6)
	key        uint32
	ovsMAC     string // h1's br1 (OVS internal port)
	h1UnderMAC string // h1's br0 (OVS's tunnel endpoint), as sent on the wire
	h2UnderMAC string // h2's eth0
}

func newInterop(t *testing.T, v6 bool) *interop {
	t.Helper()
	testnet.RequireRoot(t)
	wire, hosts := e2e.Topology(t, 2)
	e := &interop{t: t, wire: wire, h1: hosts[0], h2: hosts[1], v6: v6}
	e.wbr = wireBridge(t, wire)
	// OVS's poll-mode thread on CPU 0, xswitch's pollers on CPU 1.
	e.ovs = ovspeer.Start(t, e.h1.NS, ovspeer.Config{OtherConfig: map[string]string{"pmd-cpu-mask": "0x1"}})
	e.ovs.AddUnderlay("br0", e.h1.Underlay, netip.PrefixFrom(e.h1.IP4, 24), netip.PrefixFrom(e.h1.IP6, 64))
	e.ovs.AddBridge("br1", interopOVSIn)
	e.ovsMAC = ifMAC(t, e.h1.NS, "br1")
	e.h1UnderMAC = ifMAC(t, e.h1.NS, "br0")
	e.h2UnderMAC = ifMAC(t, e.h2.NS, e.h2.Underlay)
	return e
}

// wireBridge finds the Linux bridge of the wire namespace.
func wireBridge(t *testing.T, wire string) string {
	t.Helper()
	out, err := testnet.Try(wire, "ip", "-j", "link", "show", "type", "bridge")
	if err != nil {
		t.Fatal(err)
	}
	var links []struct {
		Name string `json:"ifname"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("wire namespace %s: want exactly one bridge, got %s (%v)", wire, out, err)
	}
	return links[0].Name
}

func ifMAC(t *testing.T, ns, dev string) string {
	t.Helper()
	out, err := testnet.Try(ns, "cat", "/sys/class/net/"+dev+"/address")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// addInner6 gives OVS's br1 interopOVSIn6 now and xswitch's br1
// interopXsIn6 from the next configure on (both without DAD, so that they
// are usable at once).
func (e *interop) addInner6() {
	e.t.Helper()
	// Some tests switch IPv6 off on their hosts on purpose; these hosts
	// must have it (h2's TAP takes the default when xswitch creates it).
	for _, c := range []struct{ ns, sysctl string }{
		{e.h1.NS, "net.ipv6.conf.br1.disable_ipv6"},
		{e.h2.NS, "net.ipv6.conf.default.disable_ipv6"},
	} {
		if out, err := testnet.Try(c.ns, "sysctl", "-n", c.sysctl); err != nil || strings.TrimSpace(out) != "0" {
			e.t.Fatalf("%s: %s is %q (%v): inner IPv6 needs IPv6 enabled", c.ns, c.sysctl, strings.TrimSpace(out), err)
		}
	}
	if _, err := testnet.Try(e.h1.NS, "ip", "addr", "add", interopOVSIn6.String(), "dev", "br1", "nodad"); err != nil {
		e.t.Fatal(err)
	}
	e.inner6 = true
}

func (e *interop) remoteOf(h *e2e.Host) netip.Addr {
	if e.v6 {
		return h.IP6
	}
	return h.IP4
}

// ovsOptionFlows makes OVS send interopOpt on every frame from br1's
// internal port and accept it on receive (tun_metadata0 mapped to it).
const (
	ovsPlain  = iota // flow NORMAL, no options
	ovsOption        // TLV map + set_field on send
)

// configure (re)creates the tunnel on both ends: OVS's geneve1 with key, and
// a fresh xswitch whose tunnel sends xsOptions and which understands
// xsKnown (YAML flow lists, "" for none).
func (e *interop) configure(key uint32, ovsMode int, xsOptions, xsKnown string) {
	t := e.t
	t.Helper()
	e.key = key
	opts := []string{}
	if key != 0 {
		opts = append(opts, "key="+strconv.FormatUint(uint64(key), 10))
	}
	e.ovs.MustVsctl("--if-exists", "del-port", "br1", "geneve1")
	e.ovs.AddGeneve("br1", "geneve1", e.remoteOf(e.h2), opts...)
	if err := e.ovs.WaitPort("geneve1", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	e.ovs.MustOfctl("del-flows", "br1")
	// OVS accepts the option xswitch may send (a critical option needs a
	// map). The map stays from one configuration to the next: OVS refuses
	// to delete it (NXTTMFC_INVALID_TLV_DEL) until the deleted flows that
	// used it are freed, after an RCU grace period.
	if m, err := e.ovs.Ofctl("dump-tlv-map", "br1"); err != nil {
		t.Fatalf("ovs-ofctl dump-tlv-map: %v\n%s", err, m)
	} else if !strings.Contains(m, "0x102") || !strings.Contains(m, "tun_metadata0") {
		e.ovs.MustOfctl("add-tlv-map", "br1", "{class=0x0102,type=0x80,len=4}->tun_metadata0")
	}
	switch ovsMode {
	case ovsPlain:
		e.ovs.MustOfctl("add-flow", "br1", "priority=0,actions=NORMAL")
	case ovsOption:
		e.ovs.MustOfctl("add-flow", "br1", "priority=10,in_port=LOCAL,actions=set_field:0x0a0b0c0d->tun_metadata0,NORMAL")
		e.ovs.MustOfctl("add-flow", "br1", "priority=0,actions=NORMAL")
	}

	if e.xs != nil {
		if err := e.xs.Stop(); err != nil {
			t.Fatalf("stop xswitch: %v", err)
		}
	}
	var y strings.Builder
	if xsKnown != "" {
		fmt.Fprintf(&y, "known_options: %s\n", xsKnown)
	}
	fmt.Fprintf(&y, "underlay:\n  interface: %s\ncpus: [1]\nbridges:\n  - name: br1\n    address: %s\n", e.h2.Underlay, interopXsIn)
	if e.inner6 {
		fmt.Fprintf(&y, "    addresses: [%s]\n", interopXsIn6)
	}
	fmt.Fprintf(&y, "    tunnels:\n      - remote_ip: %s\n        key: %d\n", e.remoteOf(e.h1), key)
	if xsOptions != "" {
		fmt.Fprintf(&y, "        options: %s\n", xsOptions)
	}
	e.xs = e2e.StartXswitch(t, e.h2.NS, y.String())
	// Both ends forget the other's overlay neighbour: every test starts
	// with ARP across the tunnel.
	e.flushNeigh()
}

func (e *interop) flushNeigh() {
	for _, ns := range []string{e.h1.NS, e.h2.NS} {
		_, _ = testnet.Try(ns, "ip", "-4", "neigh", "flush", "dev", "br1")
		_, _ = testnet.Try(ns, "ip", "-6", "neigh", "flush", "dev", "br1")
	}
}

// ping pings dst from ns and fails t unless every reply came.
func interopPing(t *testing.T, ns string, dst netip.Addr, count int, args ...string) {
	t.Helper()
	a := append([]string{"-c", strconv.Itoa(count), "-i", "0.2", "-W", "2"}, args...)
	out, err := testnet.Try(ns, "ping", append(a, dst.String())...)
	if err != nil || !strings.Contains(out, " 0% packet loss") {
		t.Errorf("ping %v from %s: %v\n%s", dst, ns, err, out)
	}
}

// warmUp pings until the path works (OVS resolves its underlay neighbour
// on the first frames); it does not fail the test.
func (e *interop) warmUp() {
	for i := 0; i < 10; i++ {
		if _, err := testnet.Try(e.h1.NS, "ping", "-c", "1", "-W", "1", interopXsIn.Addr().String()); err == nil {
			return
		}
	}
}

// udpFlowPayload starts the payload of every datagram udpFlows sends.
const udpFlowPayload = "xswitch interop "

// udpFlows sends count datagrams from each of the source ports ports, from
// h2's br1 address to h1's br1 address port 9 (nobody listens: h1 answers
// with ICMP port unreachable, which is fine). dst is IPv4 or IPv6.
func udpFlows(t *testing.T, ns string, dst netip.Addr, ports []int, count int) {
	t.Helper()
	network := "udp4"
	if dst.Is6() {
		network = "udp6"
	}
	err := testnet.Do(ns, func() error {
		for _, p := range ports {
			// Unconnected: the ICMP port unreachable that the discard port
			// answers must not fail the next write (ECONNREFUSED).
			c, err := net.ListenUDP(network, &net.UDPAddr{Port: p})
			if err != nil {
				return fmt.Errorf("udp flow from port %d: %w", p, err)
			}
			to := &net.UDPAddr{IP: dst.AsSlice(), Port: 9}
			for i := 0; i < count; i++ {
				if _, err := c.WriteToUDP([]byte(udpFlowPayload+strconv.Itoa(p)), to); err != nil {
					c.Close()
					return fmt.Errorf("udp flow from port %d: %w", p, err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			c.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitFlows waits until the wire capture c holds the n datagrams udpFlows
// sent, encapsulated by xswitch: they went into h2's br1 and may still be
// on their way when udpFlows returns. (h1's ICMP port unreachable quotes
// the payload too, but comes from h1's MAC.)
func (e *interop) waitFlows(c *capture.Capture, n int) {
	e.t.Helper()
	from := mustMAC(e.t, e.h2UnderMAC)
	fromXswitch := func(f []byte) bool {
		return len(f) > 12 && bytes.Equal(f[6:12], from) && bytes.Contains(f, []byte(udpFlowPayload))
	}
	if got, err := c.WaitFrames(n, 10*time.Second, fromXswitch); err != nil {
		e.t.Fatalf("inner UDP flows on the wire: %d of %d datagrams encapsulated by xswitch: %v", got, n, err)
	}
}

// innerFromPort matches an Ethernet/IPv4/UDP frame from source port sport.
func innerFromPort(sport uint16) func([]byte) bool {
	return func(f []byte) bool {
		return len(f) >= 36 && binary.BigEndian.Uint16(f[12:]) == 0x0800 && f[14] == 0x45 && f[23] == 17 &&
			binary.BigEndian.Uint16(f[34:]) == sport
	}
}

// decodeWire stops c and returns its Geneve frames, split into those sent by
// xswitch (h2) and those sent by OVS (h1).
func (e *interop) decodeWire(c *capture.Capture) (xs, ovs []capture.Frame) {
	t := e.t
	t.Helper()
	pcap, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("XSWITCH_INTEROP_DIR"); dir != "" {
		// Keep the capture for docs/interop.md.
		dst := filepath.Join(dir, strings.NewReplacer("/", "_").Replace(t.Name())+".pcap")
		if err := c.Save(dst); err != nil {
			t.Fatal(err)
		}
		t.Logf("wire capture saved as %s", dst)
	}
	frames, err := capture.DecodeGeneve(pcap)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		switch f.OuterSrc {
		case e.remoteOf(e.h2):
			xs = append(xs, f)
		case e.remoteOf(e.h1):
			ovs = append(ovs, f)
		default:
			t.Errorf("Geneve frame %d from unexpected %v", f.Number, f.OuterSrc)
		}
	}
	return xs, ovs
}

// checkHeaders asserts what every frame sent by xswitch must be.
func (e *interop) checkHeaders(t *testing.T, frames []capture.Frame, wantOpts []geneve.Option) {
	t.Helper()
	if len(frames) == 0 {
		t.Fatal("no Geneve frame from xswitch on the wire")
	}
	for _, f := range frames {
		if f.OuterDst != e.remoteOf(e.h1) || f.DstPort != geneve.Port || f.VNI != e.key || f.Proto != geneve.ProtoTEB {
			t.Errorf("xswitch frame %d: to %v port %d VNI %d proto %#04x, want to %v port 6081 VNI %d proto 0x6558",
				f.Number, f.OuterDst, f.DstPort, f.VNI, f.Proto, e.remoteOf(e.h1), e.key)
		}
		if f.OuterDstMAC != e.h1UnderMAC {
			t.Errorf("xswitch frame %d: outer destination MAC %s, want h1's br0 %s", f.Number, f.OuterDstMAC, e.h1UnderMAC)
		}
		if !e.v6 && f.IPChecksum != capture.ChecksumGood {
			t.Errorf("xswitch frame %d: outer IPv4 header checksum %v", f.Number, f.IPChecksum)
		}
		if f.UDPChecksum != 0 && f.UDPChecksumStatus != capture.ChecksumGood {
			t.Errorf("xswitch frame %d: UDP checksum %#04x is %v (want zero or good)", f.Number, f.UDPChecksum, f.UDPChecksumStatus)
		}
		if f.OAM {
			t.Errorf("xswitch frame %d: O bit set on a data frame", f.Number)
		}
		crit := false
		if len(f.Options) != len(wantOpts) {
			t.Errorf("xswitch frame %d: options %+v, want %+v", f.Number, f.Options, wantOpts)
		} else {
			for i, o := range wantOpts {
				g := f.Options[i]
				crit = crit || o.Critical()
				if g.Class != o.Class || g.Type != o.Type || !bytes.Equal(g.Data, o.Data) {
					t.Errorf("xswitch frame %d: option %d is %+v, want %+v", f.Number, i, g, o)
				}
			}
		}
		if f.Critical != crit {
			t.Errorf("xswitch frame %d: C bit %v, want %v", f.Number, f.Critical, crit)
		}
	}
}

// TestInteropOVS: ping both ways with VNI 0 and 5000 over an IPv4 underlay,
// ARP flooding and learning in both switches, and the tshark decode of what
// xswitch sends; then the same over an IPv6 underlay. Each key then does the
// same with inner IPv6 (subtest inner-ipv6): neighbour discovery across the
// tunnel instead of ARP.
func TestInteropOVS(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4-underlay"
		keys := []uint32{0, 5000}
		if v6 {
			name, keys = "ipv6-underlay", []uint32{5000}
		}
		t.Run(name, func(t *testing.T) {
			e := newInterop(t, v6)
			e.addInner6()
			for _, key := range keys {
				t.Run(fmt.Sprintf("key%d", key), func(t *testing.T) {
					e.t = t
					e.configure(key, ovsPlain, "", "")
					e.warmUp()
					e.flushNeigh()
					c := capture.Start(t, e.wire, e.wbr, "udp", "port", "6081")
					// ARP from the OVS side, then from the xswitch side.
					interopPing(t, e.h1.NS, interopXsIn.Addr(), 3)
					e.flushNeigh()
					interopPing(t, e.h2.NS, interopOVSIn.Addr(), 3)
					// Inner flows that differ only in their ports.
					ports := []int{40001, 40002, 40003, 40004, 40005, 40006, 40007, 40008}
					udpFlows(t, e.h2.NS, interopOVSIn.Addr(), ports, 3)
					e.waitFlows(c, len(ports)*3)
					xs, ovs := e.decodeWire(c)
					e.checkHeaders(t, xs, nil)
					for _, f := range ovs {
						if f.VNI != key || f.Proto != geneve.ProtoTEB {
							t.Errorf("OVS frame %d: VNI %d proto %#04x", f.Number, f.VNI, f.Proto)
						}
					}
					checkARPFlood(t, "OVS", ovs)
					checkARPFlood(t, "xswitch", xs)
					checkSrcPorts(t, xs, ports)
					e.checkFDBs(t)
					logFrames(t, "xswitch", xs)
					logFrames(t, "OVS", ovs)
					t.Run("inner-ipv6", func(t *testing.T) {
						e.t = t
						e.innerIPv6(t)
					})
				})
			}
		})
	}
}

// innerIPv6: over the tunnel as configured, ping -6 h1→h2 and h2→h1 after
// flushing the neighbours (so that each starts with a multicast neighbour
// solicitation that the switches flood into the tunnel), then 8 inner UDP
// flows over IPv6 from h2; the wire must show Geneve with the key and
// protocol 0x6558 carrying IPv6 (inner EtherType 0x86dd) from both sides.
func (e *interop) innerIPv6(t *testing.T) {
	t.Helper()
	e.flushNeigh()
	c := capture.Start(t, e.wire, e.wbr, "udp", "port", "6081")
	interopPing(t, e.h1.NS, interopXsIn6.Addr(), 3, "-6")
	e.flushNeigh()
	interopPing(t, e.h2.NS, interopOVSIn6.Addr(), 3, "-6")
	ports := []int{40011, 40012, 40013, 40014, 40015, 40016, 40017, 40018}
	udpFlows(t, e.h2.NS, interopOVSIn6.Addr(), ports, 3)
	e.waitFlows(c, len(ports)*3)
	xs, ovs := e.decodeWire(c)
	e.checkHeaders(t, xs, nil)
	for _, f := range ovs {
		if f.VNI != e.key || f.Proto != geneve.ProtoTEB {
			t.Errorf("OVS frame %d: VNI %d proto %#04x, want VNI %d proto 0x6558", f.Number, f.VNI, f.Proto, e.key)
		}
	}
	checkInner6(t, "OVS", ovs, interopOVSIn6.Addr(), interopXsIn6.Addr())
	checkInner6(t, "xswitch", xs, interopXsIn6.Addr(), interopOVSIn6.Addr())
	checkSrcPorts(t, xs, ports)
	logFrames(t, "xswitch", xs)
	logFrames(t, "OVS", ovs)
}

// checkInner6: the Geneve frames one side sent carry inner IPv6: a neighbour
// solicitation for dst to its solicited-node multicast group (ff02::1:ffXX:XXXX,
// MAC 33:33:ff:XX:XX:XX: flooded into the tunnel), and at least 6 unicast
// ICMPv6 frames src → dst (3 echo requests, 3 replies).
func checkInner6(t *testing.T, who string, frames []capture.Frame, src, dst netip.Addr) {
	t.Helper()
	d := dst.As16()
	group := netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 11: 0x01, 12: 0xff, 13: d[13], 14: d[14], 15: d[15]})
	groupMAC := fmt.Sprintf("33:33:ff:%02x:%02x:%02x", d[13], d[14], d[15])
	ns, icmp6, v6 := 0, 0, 0
	for _, f := range frames {
		if f.InnerEtherType != 0x86dd {
			continue
		}
		v6++
		if f.InnerL4 != "icmpv6" {
			continue
		}
		switch {
		case f.InnerDst == group && f.InnerDstMAC == groupMAC:
			ns++
		case f.InnerSrc == src && f.InnerDst == dst:
			icmp6++
		}
	}
	if ns == 0 {
		t.Errorf("no neighbour solicitation for %v (to %v, %s) in the %d Geneve frames %s sent: multicast flooding to the tunnel failed",
			dst, group, groupMAC, len(frames), who)
	}
	if icmp6 < 6 {
		t.Errorf("%d unicast ICMPv6 frames %v -> %v in the Geneve frames %s sent, want >= 6 (echo requests and replies)", icmp6, src, dst, who)
	}
	t.Logf("%s sent %d Geneve frames, %d with inner IPv6 (eth.type 0x86dd): %d neighbour solicitations to %v, %d unicast ICMPv6 %v -> %v",
		who, len(frames), v6, ns, group, icmp6, src, dst)
}

// checkARPFlood: a broadcast ARP request crossed the tunnel from this side.
func checkARPFlood(t *testing.T, who string, frames []capture.Frame) {
	t.Helper()
	for _, f := range frames {
		if f.InnerL4 == "arp" && f.InnerDstMAC == "ff:ff:ff:ff:ff:ff" {
			return
		}
	}
	t.Errorf("no broadcast ARP request in the %d Geneve frames %s sent: flooding to the tunnel failed", len(frames), who)
}

// checkSrcPorts: the outer UDP source port is the same for all frames of one
// inner flow and differs between inner flows.
func checkSrcPorts(t *testing.T, frames []capture.Frame, ports []int) {
	t.Helper()
	byFlow := map[uint16]map[uint16]bool{}
	for _, f := range frames {
		if f.InnerL4 != "udp" || f.InnerDstPort != 9 {
			continue
		}
		if byFlow[f.InnerSrcPort] == nil {
			byFlow[f.InnerSrcPort] = map[uint16]bool{}
		}
		byFlow[f.InnerSrcPort][f.SrcPort] = true
	}
	distinct := map[uint16]bool{}
	for _, p := range ports {
		outer := byFlow[uint16(p)]
		if len(outer) != 1 {
			t.Errorf("inner UDP flow from port %d: outer source ports %v, want exactly one", p, keys(outer))
		}
		for s := range outer {
			distinct[s] = true
		}
	}
	// 8 flows hashed onto 16384 ports: a collision or two is possible, more is not.
	if len(distinct) < len(ports)-2 {
		t.Errorf("%d inner flows used only %d distinct outer source ports %v: the source port does not follow the inner flow",
			len(ports), len(distinct), keys(distinct))
	}
	t.Logf("outer UDP source port per inner flow: %v", byFlow)
}

func keys(m map[uint16]bool) []uint16 {
	var k []uint16
	for p := range m {
		k = append(k, p)
	}
	sort.Slice(k, func(i, j int) bool { return k[i] < k[j] })
	return k
}

func logFrames(t *testing.T, who string, frames []capture.Frame) {
	t.Helper()
	var b strings.Builder
	for i, f := range frames {
		if i == 6 {
			fmt.Fprintf(&b, "  ... %d more\n", len(frames)-i)
			break
		}
		fmt.Fprintf(&b, "  %v:%d -> %v:%d vni %d proto %#04x C %v O %v options %x ipcsum %v udpcsum %#04x(%v) inner %#04x %s %s->%s %v->%v\n",
			f.OuterSrc, f.SrcPort, f.OuterDst, f.DstPort, f.VNI, f.Proto, f.Critical, f.OAM, f.Options,
			f.IPChecksum, f.UDPChecksum, f.UDPChecksumStatus, f.InnerEtherType, f.InnerL4, f.InnerSrcMAC, f.InnerDstMAC, f.InnerSrc, f.InnerDst)
	}
	t.Logf("%d Geneve frames from %s:\n%s", len(frames), who, b.String())
}

// checkFDBs: OVS learned xswitch's br1 MAC on geneve1, and xswitch learned
// OVS's br1 MAC on the tunnel to h1.
func (e *interop) checkFDBs(t *testing.T) {
	t.Helper()
	xsMAC := ifMAC(t, e.h2.NS, "br1")
	tun, err := e.ovs.OFPort("geneve1")
	if err != nil {
		t.Fatal(err)
	}
	fdb, err := e.ovs.FDB("br1")
	if err != nil {
		t.Fatal(err)
	}
	ok := false
	for _, en := range fdb {
		ok = ok || (en.MAC == xsMAC && en.Port == tun)
	}
	if !ok {
		t.Errorf("OVS fdb/show br1 lacks xswitch's br1 MAC %s on geneve1 (ofport %s): %+v", xsMAC, tun, fdb)
	}
	entry, raw := xsFDBEntry(t, e.xs, e.ovsMAC)
	if entry == nil {
		t.Errorf("xswitch ctl fdb --json lacks OVS's br1 MAC %s:\n%s", e.ovsMAC, raw)
	} else if entry.Remote != e.remoteOf(e.h1).String() || entry.VNI != e.key {
		t.Errorf("xswitch learned OVS's br1 MAC %s as %+v, want on the tunnel to %v with VNI %d", e.ovsMAC, *entry, e.remoteOf(e.h1), e.key)
	}
}

// TestInteropOptions: Geneve options between xswitch and OVS (IPv4 underlay,
// key 5000), and frames OVS cannot produce, crafted and sent from h1.
func TestInteropOptions(t *testing.T) {
	e := newInterop(t, false)

	t.Run("xswitch-sends-option", func(t *testing.T) {
		e.t = t
		e.configure(5000, ovsPlain, `[{class: 0x0102, type: 0x80, data: "0x0a0b0c0d"}]`, "")
		e.warmUp()
		c := capture.Start(t, e.wire, e.wbr, "udp", "port", "6081")
		interopPing(t, e.h2.NS, interopOVSIn.Addr(), 3)
		interopPing(t, e.h1.NS, interopXsIn.Addr(), 3)
		xs, _ := e.decodeWire(c)
		e.checkHeaders(t, xs, []geneve.Option{interopOpt})
		logFrames(t, "xswitch", xs)
	})

	t.Run("ovs-sends-option", func(t *testing.T) {
		e.t = t
		e.configure(5000, ovsOption, "", `[{class: 0x0102, type: 0x80}]`)
		e.warmUp()
		before := xsOptionCount(t, e.xs, 0x0102, 0x80)
		c := capture.Start(t, e.wire, e.wbr, "udp", "port", "6081")
		interopPing(t, e.h1.NS, interopXsIn.Addr(), 5)
		_, ovs := e.decodeWire(c)
		sent := 0
		for _, f := range ovs {
			if len(f.Options) == 1 && f.Options[0].Class == 0x0102 && f.Options[0].Type == 0x80 && bytes.Equal(f.Options[0].Data, interopOpt.Data) {
				sent++
			}
		}
		if sent < 5 {
			t.Fatalf("OVS sent %d frames with the option, want >= 5 (tlv map/flow not applied?)", sent)
		}
		logFrames(t, "OVS", ovs)
		after := xsOptionCount(t, e.xs, 0x0102, 0x80)
		if after-before < uint64(sent) {
			t.Errorf("xswitch counted %d received options class 0x0102 type 0x80, want >= %d (frames OVS sent with it)", after-before, sent)
		}
	})

	// Frames OVS cannot produce: built with the geneve package and sent on
	// h1's underlay veth with an AF_PACKET socket, from h1's tunnel address.
	t.Run("crafted", func(t *testing.T) {
		e.t = t
		e.configure(5000, ovsPlain, "", "")
		e.warmUp()
		xsBr1MAC := ifMAC(t, e.h2.NS, "br1")
		cases := []struct {
			name      string
			opts      []geneve.Option
			oam       bool
			forwarded bool
			drop      string // counter expected to grow
			optClass  uint16
			optType   uint8
		}{
			{name: "noncritical-unknown", opts: []geneve.Option{{Class: 0xff01, Type: 0x12, Data: []byte{1, 2, 3, 4}}}, forwarded: true, optClass: 0xff01, optType: 0x12},
			{name: "critical-unknown", opts: []geneve.Option{{Class: 0xff01, Type: 0x92, Data: []byte{1, 2, 3, 4}}}, drop: geneve.DropCriticalOption.String()},
			{name: "oam", oam: true, drop: geneve.DropOAM.String()},
		}
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				// e's helpers report to (and name captures after) this case.
				prev := e.t
				e.t = t
				defer func() { e.t = prev }()
				const n = 5
				marker := uint16(50001 + i)
				frames := e.craft(t, c.opts, c.oam, xsBr1MAC, marker, n)
				stats0 := xsStats(t, e.xs)
				var opt0 uint64
				if c.optClass != 0 {
					opt0 = xsOptionCount(t, e.xs, c.optClass, c.optType)
				}
				br1 := capture.Start(t, e.h2.NS, "br1", "udp", "dst", "port", "9")
				wire := capture.Start(t, e.wire, e.wbr, "udp", "port", "6081")
				if err := sendRaw(e.h1.NS, e.h1.Underlay, frames); err != nil {
					t.Fatal(err)
				}
				// Every frame crosses the wire as built...
				asBuilt := func(f []byte) bool { return bytes.Equal(f, frames[0]) }
				if _, err := wire.WaitFrames(n, 10*time.Second, asBuilt); err != nil {
					t.Fatalf("crafted frames on the wire: %v", err)
				}
				// ...and xswitch handles each: it counts the option or the
				// drop, and delivers the frame to br1 or not.
				var stats1 vswitch.Stats
				handled := wait.Until(10*time.Second, func() bool {
					stats1 = xsStats(t, e.xs)
					return (c.drop == "" || dropCount(stats1, c.drop)-dropCount(stats0, c.drop) >= n) &&
						(c.optClass == 0 || optionCount(stats1, c.optClass, c.optType)-opt0 >= n)
				})
				if !handled {
					t.Errorf("xswitch did not count the %d crafted frames in 10s\nstats: %s", n, statsText(stats1))
				}
				if c.forwarded {
					if _, err := br1.WaitFrames(n, 10*time.Second, innerFromPort(marker)); err != nil {
						t.Errorf("crafted frames delivered to xswitch's br1: %v", err)
					}
				}
				// tshark's view of what was on the wire.
				_, fromH1 := e.decodeWire(wire)
				seen := 0
				for _, f := range fromH1 {
					if f.InnerL4 == "udp" && f.InnerSrcPort == marker && f.OAM == c.oam && len(f.Options) == len(c.opts) {
						seen++
					}
				}
				if seen != n {
					t.Fatalf("%d of the %d crafted frames seen on the wire as built", seen, n)
				}
				delivered := countInner(t, br1, marker)
				if c.forwarded && delivered != n {
					t.Errorf("%d of %d frames reached xswitch's br1, want all (a non-critical unknown option is ignored)", delivered, n)
				}
				if !c.forwarded && delivered != 0 {
					t.Errorf("%d of %d frames reached xswitch's br1, want none", delivered, n)
				}
				if c.drop != "" {
					if d := dropCount(stats1, c.drop) - dropCount(stats0, c.drop); d != n {
						t.Errorf("xswitch drop counter %q grew by %d, want %d\nstats: %s", c.drop, d, n, statsText(stats1))
					}
				}
				if c.optClass != 0 {
					if d := optionCount(stats1, c.optClass, c.optType) - opt0; d != n {
						t.Errorf("xswitch counted %d options class %#04x type %#02x, want %d", d, c.optClass, c.optType, n)
					}
				}
			})
		}
	})
}

// craft builds n Geneve frames from h1's tunnel endpoint to xswitch on h2,
// VNI e.key, carrying an inner UDP datagram 198.19.0.99:marker ->
// 198.19.0.2:9 addressed to dstMAC (xswitch's br1).
func (e *interop) craft(t *testing.T, opts []geneve.Option, oam bool, dstMAC string, marker uint16, n int) [][]byte {
	t.Helper()
	ec := geneve.DefaultEncapConfig()
	copy(ec.SrcMAC[:], mustMAC(t, e.h1UnderMAC))
	copy(ec.DstMAC[:], mustMAC(t, e.h2UnderMAC))
	ec.Src, ec.Dst = e.remoteOf(e.h1), e.remoteOf(e.h2)
	ec.VNI, ec.Options, ec.OAM = e.key, opts, oam
	enc, err := geneve.NewEncapsulator(ec)
	if err != nil {
		t.Fatal(err)
	}
	inner := innerUDP(mustMAC(t, "02:00:00:00:99:01"), mustMAC(t, dstMAC),
		netip.MustParseAddr("198.19.0.99"), interopXsIn.Addr(), marker, 9, []byte("crafted by interop_test"))
	var frames [][]byte
	for i := 0; i < n; i++ {
		buf := make([]byte, enc.HeaderLen()+len(inner))
		copy(buf[enc.HeaderLen():], inner)
		frames = append(frames, buf[enc.Encap(buf, enc.HeaderLen(), len(inner)):])
	}
	return frames
}

func mustMAC(t *testing.T, s string) []byte {
	t.Helper()
	m, err := net.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// innerUDP builds Ethernet/IPv4/UDP with valid IPv4 and UDP checksums.
func innerUDP(src, dst []byte, sip, dip netip.Addr, sport, dport uint16, payload []byte) []byte {
	f := make([]byte, 14+20+8+len(payload))
	copy(f[0:], dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	s4, d4 := sip.As4(), dip.As4()
	copy(ip[12:], s4[:])
	copy(ip[16:], d4[:])
	binary.BigEndian.PutUint16(ip[10:], ^csum(0, ip))
	u := f[34:]
	binary.BigEndian.PutUint16(u[0:], sport)
	binary.BigEndian.PutUint16(u[2:], dport)
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	copy(u[8:], payload)
	pseudo := uint32(csum(0, ip[12:20])) + 17 + uint32(len(u))
	c := ^csum(pseudo, u)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return f
}

func csum(s uint32, b []byte) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// sendRaw writes frames onto ifname in ns through an AF_PACKET socket.
func sendRaw(ns, ifname string, frames [][]byte) error {
	return testnet.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return fmt.Errorf("raw send: %w", err)
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return fmt.Errorf("raw send: AF_PACKET socket: %w", err)
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: 0x0008} // htons(ETH_P_IP)
		for i, f := range frames {
			if err := unix.Sendto(fd, f, 0, sa); err != nil {
				return fmt.Errorf("raw send: frame %d on %s: %w", i, ifname, err)
			}
		}
		return nil
	})
}

// countInner stops c and counts the inner UDP datagrams from port marker.
func countInner(t *testing.T, c *capture.Capture, marker uint16) int {
	t.Helper()
	pcap, err := c.Stop()
	if err != nil {
		t.Fatal(err)
	}
	out, err := capture.Tshark(pcap, "-Y", fmt.Sprintf("udp.srcport == %d", marker), "-T", "fields", "-e", "frame.number")
	if err != nil {
		t.Fatal(err)
	}
	return len(strings.Fields(out))
}

// ---- reading xswitch's control output (ctl fdb/stats --json) ----

func xsStats(t *testing.T, x *e2e.Xswitch) vswitch.Stats {
	t.Helper()
	var v vswitch.Stats
	if err := x.CtlJSON(&v, "stats", "--json"); err != nil {
		t.Fatalf("xswitch ctl stats --json: %v", err)
	}
	return v
}

func statsText(v any) string {
	b, _ := json.MarshalIndent(v, "", " ")
	return string(b)
}

// dropCount sums a drop reason (geneve.Drop's String, e.g. "critical_option")
// over every port and tunnel.
func dropCount(s vswitch.Stats, reason string) uint64 {
	var n uint64
	for _, p := range s.Ports {
		n += p.Drops[reason]
	}
	for _, tu := range s.Tunnels {
		n += tu.Drops[reason]
	}
	return n
}

// xsOptionCount returns how many received options of (class, type) xswitch
// counted.
func xsOptionCount(t *testing.T, x *e2e.Xswitch, class uint16, typ uint8) uint64 {
	t.Helper()
	return optionCount(xsStats(t, x), class, typ)
}

func optionCount(s vswitch.Stats, class uint16, typ uint8) uint64 {
	var n uint64
	for _, o := range s.Options {
		c, err1 := strconv.ParseUint(o.Class, 0, 16)
		ty, err2 := strconv.ParseUint(o.Type, 0, 8)
		if err1 == nil && err2 == nil && c == uint64(class) && ty == uint64(typ) {
			n += o.Count
		}
	}
	return n
}

// xsFDBEntry returns xswitch's br1 FDB entry for mac (nil if none) and the
// whole table for messages.
func xsFDBEntry(t *testing.T, x *e2e.Xswitch, mac string) (*vswitch.FDBEntry, string) {
	t.Helper()
	var fdb []vswitch.FDBEntry
	if err := x.CtlJSON(&fdb, "fdb", "--json"); err != nil {
		t.Fatalf("xswitch ctl fdb --json: %v", err)
	}
	for i := range fdb {
		if fdb[i].Bridge == "br1" && strings.EqualFold(fdb[i].MAC, mac) {
			return &fdb[i], statsText(fdb)
		}
	}
	return nil, statsText(fdb)
}
