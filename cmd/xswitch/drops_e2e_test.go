package main_test

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"xswitch/internal/e2e"
	"xswitch/internal/testnet"
	vswitch "xswitch/switch"
)

// dropsConfig: bridge br1 with an internal port and local port vm1, rings
// of 64 entries, the poller on CPU 1.
const dropsConfig = `cpus: [1]
port_options:
  ring_size: 64
bridges:
  - name: br1
    address: 198.19.0.1/24
    ports: [vm1]
`

// TestKernelDropsInStats: storms the rings cannot take are visible in `ctl
// stats`, and every frame is accounted for there: received by xswitch or
// counted by the kernel.
//   - Into the AF_XDP port: a sender on the poller's CPU overflows the 64-
//     entry rings; the AF_XDP sockets count the frames they dropped, and
//     sent = redirected by the steering program = received by xswitch +
//     dropped by the sockets.
//   - Into the internal port: a sender on the host side of a TAP with a
//     short queue; the TAP counts what it could not queue to xswitch, and
//     sent = received by xswitch + TAP tx_dropped.
//
// The frames have the same source and destination MAC: after the first,
// xswitch drops them (same_port) instead of forwarding.
func TestKernelDropsInStats(t *testing.T) {
	testnet.RequireRoot(t)
	n := testnet.New(t)
	sw, vm := n.NS("dsw"), n.NS("dvm")
	for _, ns := range []string{sw, vm} {
		n.Run(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	}
	n.Veth(sw, "vm1", vm, "eth0", 1)
	x := e2e.StartXswitch(t, sw, dropsConfig)
	waitStats(t, x, "the steering program's counters on vm1", func(s vswitch.Stats) bool {
		k := portStats(s, "vm1").Kernel
		return k != nil && k.Steer != nil && k.XSK != nil && k.Device != nil
	})

	t.Run("af_xdp", func(t *testing.T) {
		const frames = 200000
		ok := storm(t, vm, "eth0", 1, frames, "02:00:00:00:00:aa")
		t.Logf("sent %d of %d (the rest refused by the veth: ENOBUFS)", ok, frames)
		var k *vswitch.KernelPortStats
		var rx uint64
		s := waitStats(t, x, "every sent frame accounted for on vm1", func(s vswitch.Stats) bool {
			p := portStats(s, "vm1")
			k, rx = p.Kernel, p.RxPackets
			return k != nil && k.Steer != nil && k.XSK != nil && k.Steer.Redirected >= uint64(ok) &&
				rx+k.XSK.RxDropped+k.XSK.RxRingFull >= k.Steer.Redirected
		})
		t.Logf("vm1: xswitch rx %d, kernel %+v %+v %+v", rx, *k.Device, *k.XSK, *k.Steer)
		drops := k.XSK.RxDropped + k.XSK.RxRingFull
		if drops == 0 {
			t.Errorf("no AF_XDP RX drop counted: the storm did not overflow the 64-entry rings")
		}
		if !k.XSK.RingStats {
			t.Errorf("ring statistics not reported on this kernel (Linux 5.9+ has them)")
		}
		// Exact: nothing else arrives on vm1 (no IPv6, no IP traffic).
		if k.Steer.Redirected != uint64(ok) || rx+drops != uint64(ok) || k.Steer.NoSocket != 0 {
			t.Errorf("sent %d, redirected %d (no socket %d), xswitch received %d + sockets dropped %d = %d: want all equal",
				ok, k.Steer.Redirected, k.Steer.NoSocket, rx, drops, rx+drops)
		}
		if d := portStats(s, "vm1").Drops["same_port"]; d+1 < rx {
			t.Errorf("same_port drops %d of %d received", d, rx)
		}
		checkStatsText(t, x, "vm1", "RX RING FULL", "NO SOCKET")
	})

	t.Run("tap", func(t *testing.T) {
		// A short TAP queue (the ring between the kernel and xswitch).
		n.Run(sw, "ip", "link", "set", "br1", "txqueuelen", "16")
		before := portStats(stats(t, x), "br1")
		if before.Kernel == nil || before.Kernel.Device == nil {
			t.Fatalf("no device counters for the internal port: %+v", before.Kernel)
		}
		const frames = 200000
		ok := storm(t, sw, "br1", 1, frames, "02:00:00:00:00:bb")
		var k *vswitch.KernelPortStats
		var rx uint64
		waitStats(t, x, "every frame accounted for on br1", func(s vswitch.Stats) bool {
			p := portStats(s, "br1")
			k, rx = p.Kernel, p.RxPackets-before.RxPackets
			return k != nil && k.Device != nil && rx+k.Device.TxDropped-before.Kernel.Device.TxDropped >= frames
		})
		dropped := k.Device.TxDropped - before.Kernel.Device.TxDropped
		t.Logf("br1: sent %d of %d accepted, xswitch rx %d, TAP tx_dropped %d", ok, frames, rx, dropped)
		if dropped == 0 {
			t.Errorf("TAP tx_dropped is 0: the storm did not overflow the TAP queue")
		}
		if rx+dropped != frames {
			t.Errorf("sent %d = xswitch received %d + TAP dropped %d = %d? want equal", frames, rx, dropped, rx+dropped)
		}
		checkStatsText(t, x, "br1", "DEV TX DROP")
	})
}

// waitStats polls `ctl stats` until ok holds (bounded) and returns the
// last answer.
func waitStats(t *testing.T, x *e2e.Xswitch, what string, ok func(vswitch.Stats) bool) vswitch.Stats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := stats(t, x)
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timeout waiting for %s; stats: %s", what, statsText(s))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkStatsText checks that the text of `ctl stats` has the kernel
// counters table with a row for port.
func checkStatsText(t *testing.T, x *e2e.Xswitch, port string, headers ...string) {
	t.Helper()
	out, err := x.Ctl("stats")
	if err != nil {
		t.Fatal(err)
	}
	_, table, found := strings.Cut(out, "kernel counters:")
	if !found {
		t.Fatalf("ctl stats has no kernel counters:\n%s", out)
	}
	for _, h := range headers {
		if !strings.Contains(table, h) {
			t.Errorf("ctl stats kernel counters lack %q:\n%s", h, out)
		}
	}
	hasRow := false
	for _, l := range strings.Split(table, "\n") {
		hasRow = hasRow || strings.HasPrefix(l, port+" ")
	}
	if !hasRow {
		t.Errorf("ctl stats kernel counters have no row for %s:\n%s", port, out)
	}
	t.Logf("ctl stats:\n%s", out)
}

// storm sends frames (source = destination = mac, EtherType 0x88b5) on
// ifname in ns from a thread pinned to cpu, as fast as sendto goes,
// bypassing the qdisc so that a frame the device drops is an error here
// and not a silent qdisc drop. It returns how many sendto accepted.
func storm(t *testing.T, ns, ifname string, cpu, frames int, mac string) int {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	f := make([]byte, 60)
	copy(f[0:6], hw)
	copy(f[6:12], hw)
	f[12], f[13] = 0x88, 0xb5
	ok := 0
	err = testnet.Do(ns, func() error {
		// The thread goes back to Go's pool afterwards: restore its
		// affinity, or every process forked from it later (ip, the
		// xswitch binary, demo.sh) inherits the pinning.
		var orig, set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &orig); err != nil {
			return fmt.Errorf("CPU affinity: %w", err)
		}
		defer unix.SchedSetaffinity(0, &orig)
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pin the sender to CPU %d: %w", cpu, err)
		}
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
			return fmt.Errorf("PACKET_QDISC_BYPASS: %w", err)
		}
		sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index}
		for i := 0; i < frames; i++ {
			switch err := unix.Sendto(fd, f, 0, sa); {
			case err == nil:
				ok++
			case errors.Is(err, unix.ENOBUFS):
			default:
				return fmt.Errorf("send frame %d on %s: %w", i, ifname, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ok
}
