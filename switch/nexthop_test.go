package vswitch

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap/zaptest"

	"xswitch/internal/testnet"
	"xswitch/internal/wait"
)

// TestResolver: in a namespace, the next hop of a tunnel is resolved by the
// kernel through a managed neighbour entry, follows a route change to a
// gateway, an unreachable remote stays unresolved (nil encapsulator, no
// stall), and close removes only the entries the resolver added.
func TestResolver(t *testing.T) {
	n := testnet.New(t)
	h1, h2 := n.NS("h1"), n.NS("h2")
	n.Veth(h1, "eth0", h2, "eth0", 0)
	n.Run(h1, "ip", "addr", "add", "198.18.0.1/24", "dev", "eth0")
	n.Run(h2, "ip", "addr", "add", "198.18.0.2/24", "dev", "eth0")
	n.Run(h2, "ip", "addr", "add", "198.18.0.3/24", "dev", "eth0")
	peerMAC := strings.TrimSpace(n.Run(h2, "sh", "-c", "ip -o link show eth0 | sed 's/.*link\\/ether \\([^ ]*\\).*/\\1/'"))

	br := &bridge{name: "br1", vni: 5000}
	mk := func(id int, remote string) *tunnel {
		tn := &tunnel{id: id, br: br, remote: netip.MustParseAddr(remote), local: netip.MustParseAddr("198.18.0.1"), cfg: &TunnelConfig{}}
		br.tunnels = append(br.tunnels, tn)
		return tn
	}
	direct := mk(0, "198.18.0.2")
	routed := mk(1, "198.18.5.9")  // no route yet
	nobody := mk(2, "198.18.0.77") // on the link, never answers
	gaveUp := neighFailed(t, h1, nobody.remote)
	var r *resolver
	err := testnet.Do(h1, func() error {
		l, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		r = newResolver(zaptest.NewLogger(t), l.Index, "eth0", l.HardwareAddr, []netip.Addr{netip.MustParseAddr("198.18.0.1")}, br.tunnels)
		return r.start()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	waitFor(t, "direct remote resolved", func() bool { return direct.enc.Load() != nil })
	if nh := direct.nh.Load(); nh.MAC != peerMAC || nh.State != "resolved" || nh.Gateway != "" {
		t.Errorf("direct next hop %+v, want MAC %s", nh, peerMAC)
	}
	if nh := routed.nh.Load(); routed.enc.Load() != nil || nh.State != "no_route" {
		t.Errorf("remote without route: %+v", nh)
	}
	// A route appears: the subscription re-resolves through the gateway.
	n.Run(h1, "ip", "route", "add", "198.18.5.0/24", "via", "198.18.0.3")
	waitFor(t, "routed remote resolved via the gateway", func() bool { return routed.enc.Load() != nil })
	if nh := routed.nh.Load(); nh.Gateway != "198.18.0.3" || nh.MAC != peerMAC {
		t.Errorf("routed next hop %+v", nh)
	}
	// The silent remote: once the kernel has given up resolving it, and the
	// resolver has looked at every tunnel since (it did not stall), it is
	// still unresolved.
	select {
	case <-gaveUp:
	case <-time.After(20 * time.Second):
		t.Fatalf("the kernel's neighbour entry for %v never went FAILED in 20s", nobody.remote)
	}
	waitPasses(t, nobody, 2)
	if nobody.enc.Load() != nil || nobody.nh.Load().State != "unresolved" {
		t.Errorf("silent remote: %+v", nobody.nh.Load())
	}
	// A pre-existing permanent entry is used and left alone.
	n.Run(h1, "ip", "neigh", "replace", "198.18.0.99", "lladdr", "02:00:00:00:00:99", "dev", "eth0", "nud", "permanent")
	out := n.Run(h1, "ip", "neigh", "show", "dev", "eth0")
	if !strings.Contains(out, "managed") {
		t.Errorf("no managed neighbour entries while running:\n%s", out)
	}
	r.close()
	out = n.Run(h1, "ip", "neigh", "show", "dev", "eth0")
	if strings.Contains(out, "managed") || !strings.Contains(out, "198.18.0.99") {
		t.Errorf("after close:\n%s\nwant no managed entry, the permanent one kept", out)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	wait.For(t, 10*time.Second, what, ok)
}

// waitPasses waits until the resolver has stored tn's next hop n times more
// (it stores a fresh status on every pass): with n = 2, one whole pass
// started after the call.
func waitPasses(t *testing.T, tn *tunnel, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		prev := tn.nh.Load()
		waitFor(t, "a resolver pass", func() bool { return tn.nh.Load() != prev })
	}
}

// neighFailed subscribes to the neighbour changes of ns and returns a
// channel closed when the kernel reports addr's entry FAILED (it sent its
// probes and got no answer). The subscription ends with t.
func neighFailed(t *testing.T, ns string, addr netip.Addr) <-chan struct{} {
	t.Helper()
	updates := make(chan netlink.NeighUpdate, 64)
	done := make(chan struct{})
	err := testnet.Do(ns, func() error { return netlink.NeighSubscribe(updates, done) })
	if err != nil {
		t.Fatalf("subscribe to neighbour changes in %s: %v", ns, err)
	}
	t.Cleanup(func() { close(done) })
	failed := make(chan struct{})
	var once sync.Once
	go func() {
		// Read until the subscription closes the channel: the library
		// blocks on a full one.
		for u := range updates {
			if a, ok := netip.AddrFromSlice(u.IP); ok && a.Unmap() == addr && u.State&netlink.NUD_FAILED != 0 {
				once.Do(func() { close(failed) })
			}
		}
	}()
	return failed
}
