package vswitch

import (
	"net"
	"net/netip"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"xswitch/internal/testnet"
)

// TestNextHopChangeLogged: a resolved tunnel whose neighbour gets another
// MAC is re-resolved and the change is logged with the old and new MAC;
// passes that change nothing log nothing.
func TestNextHopChangeLogged(t *testing.T) {
	n := testnet.New(t)
	h1, h2 := n.NS("h1"), n.NS("h2")
	n.Veth(h1, "eth0", h2, "eth0", 0)
	n.Run(h1, "ip", "addr", "add", "198.18.0.1/24", "dev", "eth0")
	n.Run(h2, "ip", "addr", "add", "198.18.0.2/24", "dev", "eth0")
	br := &bridge{name: "br1", vni: 5000}
	tn := &tunnel{id: 0, br: br, remote: netip.MustParseAddr("198.18.0.2"), local: netip.MustParseAddr("198.18.0.1"), cfg: &TunnelConfig{}}
	br.tunnels = []*tunnel{tn}
	obs, logs := observer.New(zap.InfoLevel)
	var r *resolver
	err := testnet.Do(h1, func() error {
		l, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		r = newResolver(zap.New(obs), l.Index, "eth0", l.HardwareAddr, []netip.Addr{tn.local}, br.tunnels)
		return r.start()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	waitFor(t, "the remote resolved", func() bool { return tn.enc.Load() != nil })
	first := tn.nh.Load().MAC
	waitPasses(t, tn, 2)
	if got := logs.FilterMessage("tunnel next hop changed").Len(); got != 0 {
		t.Fatalf("%d change logs with no change: %v", got, logs.All())
	}
	n.Run(h1, "ip", "neigh", "replace", "198.18.0.2", "lladdr", "02:00:00:00:00:42", "dev", "eth0", "nud", "permanent")
	waitFor(t, "the new MAC taken", func() bool { return tn.nh.Load().MAC == "02:00:00:00:00:42" })
	changed := logs.FilterMessage("tunnel next hop changed").All()
	if len(changed) != 1 {
		t.Fatalf("%d change logs, want 1: %v", len(changed), logs.All())
	}
	f := changed[0].ContextMap()
	if f["mac"] != "02:00:00:00:00:42" || f["previous_mac"] != first || f["remote"] != "198.18.0.2" || f["bridge"] != "br1" {
		t.Errorf("change log %v, want mac 02:00:00:00:00:42, previous %s", f, first)
	}
}
