package metrics

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"xswitch/evpn"
)

// fakeEVPN is the fake switch with a BGP EVPN speaker: one session up,
// one connecting.
type fakeEVPN struct{ fakeSource }

func (f *fakeEVPN) EVPNStatus(context.Context) (evpn.Status, bool) {
	return evpn.Status{
		Neighbors: []evpn.NeighborStatus{
			{Address: "198.18.0.201", State: "established", Received: 12, Accepted: 9, Advertised: 3, Flaps: 1},
			{Address: "198.18.0.202", State: "active"},
		},
		VNIs: []evpn.VNIStatus{{VNI: 5000, FloodVTEPs: []netip.Addr{netip.MustParseAddr("198.18.0.2")}, RemoteMACs: 3, LocalMACs: 1}},
		Counters: evpn.Counters{Updates: 18, MACMovesIn: 2, DataplaneErrors: 0,
			Ignored: map[string]uint64{"unknown_vni": 4}},
	}, true
}

// TestCollectorEVPN: the BGP and EVPN metrics of a switch with a speaker
// pass the lint and carry its status.
func TestCollectorEVPN(t *testing.T) {
	src := &fakeEVPN{}
	c := NewCollector(src, "v1", "r1")
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP xswitch_bgp_routes_accepted EVPN routes of the neighbour accepted by the import policy now.
# TYPE xswitch_bgp_routes_accepted gauge
xswitch_bgp_routes_accepted{neighbor="198.18.0.201"} 9
xswitch_bgp_routes_accepted{neighbor="198.18.0.202"} 0
# HELP xswitch_evpn_remote_macs Remote MACs of the VNI installed from type-2 routes.
# TYPE xswitch_evpn_remote_macs gauge
xswitch_evpn_remote_macs{vni="5000"} 3
# HELP xswitch_evpn_routes_ignored_total Received EVPN routes not used, by reason (unknown_vni, malformed, ...).
# TYPE xswitch_evpn_routes_ignored_total counter
xswitch_evpn_routes_ignored_total{reason="unknown_vni"} 4
# HELP xswitch_evpn_mac_moves_total MAC mobility: direction in (a local MAC took over a remote one) or out.
# TYPE xswitch_evpn_mac_moves_total counter
xswitch_evpn_mac_moves_total{direction="in"} 2
xswitch_evpn_mac_moves_total{direction="out"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "xswitch_bgp_routes_accepted", "xswitch_evpn_remote_macs",
		"xswitch_evpn_routes_ignored_total", "xswitch_evpn_mac_moves_total"); err != nil {
		t.Error(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "xswitch_bgp_session_state" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			states[l["neighbor"]+" "+l["state"]] = m.GetGauge().GetValue()
		}
	}
	if len(states) != 2*len(bgpStates) || states["198.18.0.201 established"] != 1 || states["198.18.0.202 active"] != 1 ||
		states["198.18.0.202 established"] != 0 {
		t.Errorf("session state series %v", states)
	}
	// Without a speaker: no BGP series.
	n, err := testutil.GatherAndCount(mustRegistry(t, &fakeSource{}), "xswitch_bgp_session_state")
	if err != nil || n != 0 {
		t.Errorf("a switch without evpn has %d session series (%v)", n, err)
	}
}

func mustRegistry(t *testing.T, src Source) *prometheus.Registry {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(NewCollector(src, "v1", "r1")); err != nil {
		t.Fatal(err)
	}
	return reg
}
