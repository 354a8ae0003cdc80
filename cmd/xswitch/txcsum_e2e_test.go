package main_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"xswitch/internal/capture"
	"xswitch/internal/e2e"
	"xswitch/internal/tcpxfer"
	"xswitch/internal/testnet"
	"xswitch/internal/wait"
	vswitch "xswitch/switch"
)

// TestTxChecksumMetadataIPv6 runs two hosts over an IPv6 underlay with
// tx_checksum_offload: on for the underlay and the local ports. veth has
// no xsk tx-checksum, so the switch binds in copy mode with
// XDP_UMEM_TX_SW_CSUM: the outer UDP checksums (and the VMs' partial
// inner ones toward local ports) are requested through AF_XDP TX metadata
// and computed by the kernel. Ping and TCP work, tshark on the wire calls
// every outer UDP and inner TCP checksum good, ctl show and the log say
// which path each port uses, and the underlay counts the requests.
func TestTxChecksumMetadataIPv6(t *testing.T) {
	testnet.RequireRoot(t)
	wire, hosts := e2e.Topology(t, 2)
	net := testnet.New(t)
	var xs []*e2e.Xswitch
	var vms []string
	var vmIP []netip.Addr
	for i, h := range hosts {
		vm := net.NS(fmt.Sprintf("tcvm%d", i+1))
		ip := netip.AddrFrom4([4]byte{198, 19, 0, byte(31 + i)})
		net.Veth(h.NS, "vm1", vm, "eth0", 0)
		net.Run(vm, "ip", "link", "set", "eth0", "mtu", "1430") // 1500 - 70 (Geneve over IPv6)
		net.Run(vm, "ip", "addr", "add", ip.String()+"/24", "dev", "eth0")
		br := bridgeSpec{name: "br1", key: 5000, addrs: []string{inner4(i+1) + "/24", inner6(i+1) + "/64"},
			ports: []string{"vm1"}, remotes: others(hosts, h, true)}
		cfg := xsConfig(h.Underlay, br)
		cfg = strings.Replace(cfg, "underlay:\n  interface: eth0\n", "underlay:\n  interface: eth0\n  tx_checksum_offload: on\nport_options:\n  tx_checksum_offload: on\n", 1)
		if !strings.Contains(cfg, "tx_checksum_offload") {
			t.Fatalf("config without the knob:\n%s", cfg)
		}
		xs = append(xs, e2e.StartXswitch(t, h.NS, cfg))
		vms, vmIP = append(vms, vm), append(vmIP, ip)
	}
	// IPv6 next hops take the kernel's neighbour discovery (about 2 s):
	// frames sent before would be dropped as no_neighbour.
	for _, x := range xs {
		wait.For(t, 20*time.Second, "the IPv6 tunnel next hop to resolve", func() bool {
			var st vswitch.Status
			if err := x.CtlJSON(&st, "show"); err != nil {
				return false
			}
			for _, b := range st.Bridges {
				for _, tn := range b.Tunnels {
					if tn.NextHop.State != "resolved" {
						return false
					}
				}
			}
			return len(st.Bridges) > 0
		})
	}
	ping(t, vms[0], vmIP[1].String(), 3)
	ping(t, hosts[0].NS, inner4(2), 3)
	ping(t, hosts[0].NS, inner6(2), 3)

	c := capture.Start(t, wire, "br0", "udp", "port", "6081")
	for i, pair := range [][2]string{{vms[1], vms[0]}, {hosts[1].NS, hosts[0].NS}} {
		dst := vmIP[1]
		if i == 1 {
			dst = netip.MustParseAddr(inner4(2))
		}
		r, err := tcpxfer.Run(pair[0], pair[1], dst, 5301+i, 256<<10, 30*time.Second)
		if err != nil {
			t.Fatalf("TCP to %s: %v", dst, err)
		}
		t.Logf("TCP %s -> %s: %d bytes verified", pair[1], dst, r.Bytes)
	}
	if _, err := c.Stop(); err != nil {
		if !strings.Contains(err.Error(), "overflowed") {
			t.Fatal(err)
		}
		t.Logf("capture incomplete (checking the frames it has): %v", err)
	}
	out, err := capture.Tshark(c.Path, "-Y", "geneve && tcp", "-o", "udp.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
		"-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,", "-e", "ipv6.src", "-e", "udp.checksum.status", "-e", "tcp.checksum.status")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 100 {
		t.Fatalf("only %d Geneve TCP frames captured, want most of two 256 KiB transfers", len(lines))
	}
	bad := 0
	for _, l := range lines {
		fs := strings.Split(l, "\t")
		// Outer UDP over IPv6: the checksum must be present and good (1),
		// never "not present" (3).
		if len(fs) != 3 || fs[0] == "" || !allIn(fs[1], "1") || !allIn(fs[2], "1") {
			if bad < 5 {
				t.Errorf("frame with a checksum tshark does not call good (ipv6 src, udp, tcp status): %q", l)
			}
			bad++
		}
	}
	t.Logf("%d Geneve-over-IPv6 TCP frames, %d with a checksum that is not good", len(lines), bad)

	// A longer transfer between the VMs (partial inner checksums).
	if r, err := tcpxfer.Run(vms[1], vms[0], vmIP[1], 5305, 8<<20, 60*time.Second); err != nil {
		t.Fatalf("TCP 8 MiB VM to VM: %v", err)
	} else {
		t.Logf("TCP VM to VM: %d bytes verified in %v", r.Bytes, r.Duration.Round(time.Millisecond))
	}

	var st vswitch.Status
	if err := xs[0].CtlJSON(&st, "show"); err != nil {
		t.Fatal(err)
	}
	const forced = "tx-checksum: AF_XDP TX metadata, computed by the kernel in copy mode (XDP_UMEM_TX_SW_CSUM; tx_checksum_offload: on; veth has no xsk tx-checksum)"
	if st.Underlay == nil || len(st.Underlay.Offloads) == 0 || st.Underlay.Offloads[0] != forced {
		t.Errorf("underlay offloads in ctl show: %+v", st.Underlay)
	}
	for _, b := range st.Bridges {
		for _, p := range b.Ports {
			if p.Name == "vm1" && (len(p.Offloads) == 0 || p.Offloads[0] != forced) {
				t.Errorf("vm1 offloads in ctl show: %q", p.Offloads)
			}
		}
	}
	if text, err := xs[0].Ctl("show"); err != nil || !strings.Contains(text, "XDP_UMEM_TX_SW_CSUM") {
		t.Errorf("ctl show text does not name the TX checksum path (%v):\n%s", err, text)
	}
	if !strings.Contains(xs[0].Log(), "XDP_UMEM_TX_SW_CSUM") {
		t.Error("the start-up log does not name the TX checksum path")
	}
	s := stats(t, xs[0])
	under := portStats(s, hosts[0].Underlay)
	if under.ChecksumsOffloaded == 0 || under.ChecksumsOffloaded < under.TxPackets/2 {
		t.Errorf("underlay: %d checksums requested from the device for %d frames sent", under.ChecksumsOffloaded, under.TxPackets)
	}
	t.Logf("h1 underlay: %d of %d frames sent with a checksum request; vm1 %d (software completions %d)",
		under.ChecksumsOffloaded, under.TxPackets, portStats(s, "vm1").ChecksumsOffloaded, portStats(s, "vm1").ChecksumsCompleted)
}
