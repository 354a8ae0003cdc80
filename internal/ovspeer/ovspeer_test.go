package ovspeer_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"xswitch/internal/capture"
	"xswitch/internal/ovspeer"
	"xswitch/internal/testnet"
)

// RegenEnv, when set to 1, makes TestOVSGeneve write its captures to
// geneve/testdata/ovs-*.pcap (see geneve/testdata/README.md).
const RegenEnv = "XSWITCH_REGEN_FIXTURES"

func TestParseFDB(t *testing.T) {
	es, err := ovspeer.ParseFDB(" port  VLAN  MAC                Age\n    1     0  B2:63:1c:1f:6e:8f    2\nLOCAL     0  2e:ee:79:0b:19:4d    ?\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []ovspeer.FDBEntry{{"1", 0, "b2:63:1c:1f:6e:8f", 2}, {"LOCAL", 0, "2e:ee:79:0b:19:4d", -1}}
	if fmt.Sprint(es) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", es, want)
	}
	if _, err := ovspeer.ParseFDB("x y z\n"); err == nil {
		t.Fatal("a malformed line parsed without error")
	}
}

// ovsHost is one Open vSwitch host of the two-host topology.
type ovsHost struct {
	ns       string
	ovs      *ovspeer.OVS
	u4, u6   netip.Addr // underlay (on br0)
	in4, in6 netip.Addr // overlay (on br1)
}

// twoOVS builds the seed scenario with Open vSwitch on both ends: hosts h1
// and h2, each with an "eth0" veth into a wire namespace whose Linux bridge
// br0 joins them; on each host br0 (AF_XDP port on eth0, underlay address)
// and br1 (overlay address). It returns the wire namespace and the hosts.
func twoOVS(t *testing.T) (string, [2]*ovsHost) {
	n := testnet.New(t)
	wire := n.NS("wire")
	n.Run(wire, "ip", "link", "add", "br0", "type", "bridge")
	// No MLD snooping: the hosts' IPv6 neighbour discovery must be flooded.
	n.Run(wire, "ip", "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
	n.Run(wire, "ip", "link", "set", "br0", "up")
	var hs [2]*ovsHost
	for i := range hs {
		h := &ovsHost{
			ns:  n.NS(fmt.Sprintf("h%d", i+1)),
			u4:  netip.MustParseAddr(fmt.Sprintf("198.18.0.%d", i+1)),
			u6:  netip.MustParseAddr(fmt.Sprintf("2001:2::%d", i+1)),
			in4: netip.MustParseAddr(fmt.Sprintf("198.19.0.%d", i+1)),
			in6: netip.MustParseAddr(fmt.Sprintf("2001:2:0:19::%d", i+1)),
		}
		w := fmt.Sprintf("w%d", i+1)
		n.Veth(h.ns, "eth0", wire, w, 1)
		n.Run(wire, "ip", "link", "set", w, "master", "br0")
		h.ovs = ovspeer.Start(t, h.ns, ovspeer.Config{})
		h.ovs.AddUnderlay("br0", "eth0", netip.PrefixFrom(h.u4, 24), netip.PrefixFrom(h.u6, 64))
		h.ovs.AddBridge("br1", netip.PrefixFrom(h.in4, 24), netip.PrefixFrom(h.in6, 64))
		hs[i] = h
	}
	return wire, hs
}

// ping pings dst from ns; it returns ping's output and whether every reply came.
func ping(ns string, dst netip.Addr, count int) (string, bool) {
	out, err := testnet.Try(ns, "ping", "-c", fmt.Sprint(count), "-i", "0.2", "-W", "2", dst.String())
	return out, err == nil && strings.Contains(out, " 0% packet loss")
}

// TestOVSGeneve runs Open vSwitch on both hosts and checks, with tshark on a
// capture of the wire, what it sends: VNI 0 without a key, 5000 with one,
// a Geneve option set by a flow, and an IPv6 underlay. With
// XSWITCH_REGEN_FIXTURES=1 the captures become geneve/testdata/ovs-*.pcap.
func TestOVSGeneve(t *testing.T) {
	wire, hs := twoOVS(t)
	regen := os.Getenv(RegenEnv) == "1"

	cases := []struct {
		name    string
		v6      bool     // IPv6 underlay
		opts    []string // geneve1 interface options
		option  bool     // set option class 0x0102 type 0x80 = 0x0a0b0c0d by flow
		wantVNI uint32
	}{
		{name: "ipv4-vni0"},
		{name: "ipv4-vni5000", opts: []string{"key=5000"}, wantVNI: 5000},
		{name: "ipv4-option", opts: []string{"key=5000"}, option: true, wantVNI: 5000},
		{name: "ipv6-vni5000", v6: true, opts: []string{"key=5000"}, wantVNI: 5000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for i, h := range hs {
				peer := hs[1-i]
				remote := peer.u4
				if c.v6 {
					remote = peer.u6
				}
				h.ovs.MustVsctl("--if-exists", "del-port", "br1", "geneve1")
				h.ovs.AddGeneve("br1", "geneve1", remote, c.opts...)
				if err := h.ovs.WaitPort("geneve1", 10*time.Second); err != nil {
					t.Fatal(err)
				}
				h.ovs.MustOfctl("del-flows", "br1")
				if c.option {
					h.ovs.MustOfctl("del-tlv-map", "br1")
					h.ovs.MustOfctl("add-tlv-map", "br1", "{class=0x0102,type=0x80,len=4}->tun_metadata0")
					h.ovs.MustOfctl("add-flow", "br1", "priority=10,in_port=LOCAL,actions=set_field:0x0a0b0c0d->tun_metadata0,output:geneve1")
					h.ovs.MustOfctl("add-flow", "br1", "priority=10,in_port=geneve1,actions=output:LOCAL")
				} else {
					h.ovs.MustOfctl("add-flow", "br1", "priority=0,actions=NORMAL")
				}
			}
			// Warm up (underlay and overlay neighbours), then capture a few pings.
			if out, ok := ping(hs[0].ns, hs[1].in4, 3); !ok {
				t.Logf("warm-up ping:\n%s", out)
			}
			cp := capture.Start(t, wire, "br0", "udp", "port", "6081")
			out, ok := ping(hs[0].ns, hs[1].in4, 3)
			if !ok {
				t.Errorf("ping %v from h1 over OVS Geneve lost packets:\n%s", hs[1].in4, out)
			}
			pcap, err := cp.Stop()
			if err != nil {
				t.Fatal(err)
			}
			frames, err := capture.DecodeGeneve(pcap)
			if err != nil {
				t.Fatal(err)
			}
			var echo int
			for _, f := range frames {
				t.Logf("frame %d: %v -> %v sport %d ipcsum %v udpcsum %#04x (%v) vni %d proto %#04x options %x inner %s %v -> %v",
					f.Number, f.OuterSrc, f.OuterDst, f.SrcPort, f.IPChecksum, f.UDPChecksum, f.UDPChecksumStatus, f.VNI, f.Proto, f.Options, f.InnerL4, f.InnerSrc, f.InnerDst)
				if f.VNI != c.wantVNI || f.Proto != 0x6558 || f.DstPort != 6081 {
					t.Errorf("frame %d: VNI %d proto %#x dport %d, want VNI %d proto 0x6558 dport 6081", f.Number, f.VNI, f.Proto, f.DstPort, c.wantVNI)
				}
				if f.IsIPv6() != c.v6 {
					t.Errorf("frame %d: outer %v, want IPv6 %v", f.Number, f.OuterSrc, c.v6)
				}
				if !c.v6 && f.IPChecksum != capture.ChecksumGood {
					t.Errorf("frame %d: outer IPv4 checksum %v", f.Number, f.IPChecksum)
				}
				if c.option {
					if len(f.Options) != 1 || f.Options[0].Class != 0x0102 || f.Options[0].Type != 0x80 ||
						!bytes.Equal(f.Options[0].Data, []byte{0x0a, 0x0b, 0x0c, 0x0d}) || !f.Critical {
						t.Errorf("frame %d: options %+v critical %v, want class 0x0102 type 0x80 data 0a0b0c0d, C bit set", f.Number, f.Options, f.Critical)
					}
				} else if len(f.Options) != 0 {
					t.Errorf("frame %d: unexpected options %+v", f.Number, f.Options)
				}
				if f.InnerL4 == "icmp" {
					echo++
				}
			}
			if echo < 6 {
				all, _ := capture.Tshark(pcap)
				t.Logf("tcpdump: %s\nall frames:\n%s", cp.Stderr(), all)
				t.Errorf("%d ICMP echo frames in Geneve on the wire, want >= 6 (3 requests + 3 replies)", echo)
			}
			if regen && !t.Failed() {
				dst := filepath.Join("..", "..", "geneve", "testdata", "ovs-"+c.name+".pcap")
				if err := cp.Save(dst); err != nil {
					t.Fatal(err)
				}
				t.Logf("wrote %s (%d Geneve frames)", dst, len(frames))
			}
		})
	}
	t.Run("fdb", func(t *testing.T) {
		// With the last case's NORMAL flows, both bridges learned the other
		// host's br1 MAC on the tunnel port.
		if out, ok := ping(hs[0].ns, hs[1].in4, 2); !ok {
			t.Fatalf("ping:\n%s", out)
		}
		for i, h := range hs {
			mac, err := testnet.Try(hs[1-i].ns, "cat", "/sys/class/net/br1/address")
			if err != nil {
				t.Fatal(err)
			}
			peerMAC := strings.TrimSpace(mac)
			tun, err := h.ovs.OFPort("geneve1")
			if err != nil {
				t.Fatal(err)
			}
			fdb, err := h.ovs.FDB("br1")
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, e := range fdb {
				found = found || (e.MAC == peerMAC && e.Port == tun)
			}
			if !found {
				t.Errorf("h%d: peer MAC %s not learned on geneve1 (ofport %s): %+v", i+1, peerMAC, tun, fdb)
			}
		}
	})
}
