package main_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"xswitch/internal/capture"
	"xswitch/internal/tcpxfer"
)

// jumboMTU is the underlay MTU of the jumbo tests: frames of 9014 bytes
// cross each switch as AF_XDP multi-buffer chains (5 UMEM frames of 2048).
const jumboMTU = 9000

// TestJumboUnderlay: two hosts on a 9000-byte underlay, VMs and internal
// ports at 8950 (the tunnel's inner MTU). Pings of full-size frames that
// may not be fragmented cross VM → VM and host → host, TCP with the VMs'
// default offloads and between the hosts moves verified data, the frames
// cross as multi-buffer (jumbo counters), and tshark marks every
// checksum of the jumbo frames on the wire good.
func TestJumboUnderlay(t *testing.T) {
	f := newTCPFabricMTU(t, false, jumboMTU)
	inner := jumboMTU - 50
	size := strconv.Itoa(inner - 28) // ICMP payload of a full IPv4 packet
	ping(t, f.vm[0], f.vmIP[1].String(), 3, "-M", "do", "-s", size)
	ping(t, f.hosts[0].NS, f.hostIP[1].String(), 3, "-M", "do", "-s", size)

	c := capture.Start(t, f.wire, "br0", "udp", "port", "6081")
	transfer(t, f.vm[1], f.vm[0], f.vmIP[1], 5221)
	transfer(t, f.hosts[1].NS, f.hosts[0].NS, f.hostIP[1], 5222)
	if _, err := tcpxfer.Run(f.vm[1], f.vm[0], f.vmIP6[1], 5223, 256<<10, 30*time.Second); err != nil {
		t.Fatalf("TCP over IPv6: %v", err)
	}
	if _, err := c.Stop(); err != nil && !strings.Contains(err.Error(), "overflowed") {
		t.Fatal(err)
	}

	for i, x := range f.x {
		if show, err := x.Ctl("show"); err != nil || !strings.Contains(show, "multi-buffer (XDP_USE_SG)") {
			t.Errorf("h%d: ctl show does not say the ports use multi-buffer (%v):\n%s", i+1, err, show)
		}
		s := stats(t, x)
		u := portStats(s, "eth0")
		vm := portStats(s, "vm1")
		t.Logf("h%d: underlay jumbo rx %d tx %d; vm1 jumbo rx %d tx %d, checksums completed %d",
			i+1, u.JumboRx, u.JumboTx, vm.JumboRx, vm.JumboTx, vm.ChecksumsCompleted)
		if u.JumboRx == 0 || u.JumboTx == 0 {
			t.Errorf("h%d: no multi-buffer frames counted on the underlay: %+v", i+1, u)
		}
	}
	out, err := capture.Tshark(c.Path, "-Y", "geneve && frame.len > 4000", "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
		"-o", "tcp.check_checksum:TRUE", "-T", "fields", "-E", "occurrence=a", "-E", "aggregator=,",
		"-e", "ip.checksum.status", "-e", "udp.checksum.status", "-e", "tcp.checksum.status", "-e", "frame.len")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 100 {
		t.Fatalf("only %d jumbo Geneve frames captured", len(lines))
	}
	bad, longest := 0, 0
	for _, l := range lines {
		fs := strings.Split(l, "\t")
		if n, _ := strconv.Atoi(fs[len(fs)-1]); n > longest {
			longest = n
		}
		if len(fs) < 4 || !allIn(fs[0], "1") || !allIn(fs[1], "1", "3") || (fs[2] != "" && !allIn(fs[2], "1")) {
			if bad < 5 {
				t.Errorf("jumbo frame with a checksum tshark does not call good (ip, udp, tcp status, frame len): %q", l)
			}
			bad++
		}
	}
	if longest != jumboMTU+14 {
		t.Errorf("longest Geneve frame on the wire %d bytes, want %d (full jumbo frames)", longest, jumboMTU+14)
	}
	t.Logf("%d jumbo Geneve frames on the wire (longest %d bytes), %d with a checksum that is not good", len(lines), longest, bad)
}
