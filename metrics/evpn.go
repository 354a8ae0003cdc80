package metrics

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"xswitch/evpn"
)

// EVPNSource is a Source with a BGP EVPN speaker (the switch's evpn:
// section); ok is false when it has none.
type EVPNSource interface {
	EVPNStatus(ctx context.Context) (st evpn.Status, ok bool)
}

// bgpStates are the session states xswitch_bgp_session_state reports, one
// series each (1 for the current one), so that a dashboard can count the
// established sessions with a plain sum.
var bgpStates = []string{"idle", "connect", "active", "opensent", "openconfirm", "established"}

var (
	bgpSession       = newDesc("bgp_session_state", "1 for the BGP session's current state (one series per state), 0 for the others.", "neighbor", "state")
	bgpSessionFlaps  = newDesc("bgp_session_flaps_total", "Times the BGP session left the established state.", "neighbor")
	bgpRoutesRecv    = newDesc("bgp_routes_received", "EVPN routes received from the neighbour now.", "neighbor")
	bgpRoutesAcc     = newDesc("bgp_routes_accepted", "EVPN routes of the neighbour accepted by the import policy now.", "neighbor")
	bgpRoutesAdv     = newDesc("bgp_routes_advertised", "EVPN routes advertised to the neighbour now.", "neighbor")
	evpnFloodVTEPs   = newDesc("evpn_flood_vteps", "Remote VTEPs in the VNI's flood list (type-3 routes).", "vni")
	evpnRemoteMACs   = newDesc("evpn_remote_macs", "Remote MACs of the VNI installed from type-2 routes.", "vni")
	evpnLocalMACs    = newDesc("evpn_local_macs", "Local MACs of the VNI announced in type-2 routes.", "vni")
	evpnIgnored      = newDesc("evpn_routes_ignored_total", "Received EVPN routes not used, by reason (unknown_vni, malformed, ...).", "reason")
	evpnMACMoves     = newDesc("evpn_mac_moves_total", "MAC mobility: direction in (a local MAC took over a remote one) or out.", "direction")
	evpnDPErrors     = newDesc("evpn_dataplane_errors_total", "Data plane changes the EVPN speaker asked for that failed.")
	evpnRouteUpdates = newDesc("evpn_route_updates_total", "Best-path updates (adds and replacements) the speaker received.")
)

// collectEVPN sends the BGP and EVPN metrics when the source has a speaker.
func collectEVPN(ch chan<- prometheus.Metric, src Source) {
	es, ok := src.(EVPNSource)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, ok := es.EVPNStatus(ctx)
	if !ok {
		return
	}
	for _, n := range st.Neighbors {
		for _, s := range bgpStates {
			v := 0.0
			if s == n.State {
				v = 1
			}
			ch <- gauge(bgpSession, v, n.Address, s)
		}
		ch <- counter(bgpSessionFlaps, uint64(n.Flaps), n.Address)
		ch <- gauge(bgpRoutesRecv, float64(n.Received), n.Address)
		ch <- gauge(bgpRoutesAcc, float64(n.Accepted), n.Address)
		ch <- gauge(bgpRoutesAdv, float64(n.Advertised), n.Address)
	}
	for _, v := range st.VNIs {
		l := strconv.FormatUint(uint64(v.VNI), 10)
		ch <- gauge(evpnFloodVTEPs, float64(len(v.FloodVTEPs)), l)
		ch <- gauge(evpnRemoteMACs, float64(v.RemoteMACs), l)
		ch <- gauge(evpnLocalMACs, float64(v.LocalMACs), l)
	}
	for r, n := range st.Counters.Ignored {
		ch <- counter(evpnIgnored, n, r)
	}
	ch <- counter(evpnMACMoves, st.Counters.MACMovesIn, "in")
	ch <- counter(evpnMACMoves, st.Counters.MACMovesOut, "out")
	ch <- counter(evpnDPErrors, st.Counters.DataplaneErrors)
	ch <- counter(evpnRouteUpdates, st.Counters.Updates)
}
