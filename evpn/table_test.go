package evpn

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"go.uber.org/zap/zaptest"
)

const localVTEP = "198.18.7.1"

var (
	hostA = remoteHost{vtep: netip.MustParseAddr("198.18.7.2"), asn: 65000, rr: netip.MustParseAddr("198.18.7.100")}
	hostB = remoteHost{vtep: netip.MustParseAddr("198.18.7.3"), asn: 65000, rr: netip.MustParseAddr("198.18.7.100")}
	// hostLow has a lower address than the local VTEP: it wins ties.
	hostLow = remoteHost{vtep: netip.MustParseAddr("198.18.6.9"), asn: 65000, rr: netip.MustParseAddr("198.18.7.101")}
)

func testConfig(t testing.TB) *Config {
	c := &Config{ASN: 65000, LocalIP: localVTEP,
		Neighbors: []NeighborConfig{{Address: "198.18.7.100"}},
		VNIs:      []VNIConfig{{VNI: 5000}, {VNI: 6000}}}
	if errs := c.Validate("evpn", netip.Addr{}); len(errs) > 0 {
		t.Fatalf("config: %v", errs)
	}
	return c
}

func newTestTable(t *testing.T) (*table, *fakeDP, *fakeOut) {
	dp, out := newFakeDP(), newFakeOut()
	tb := newTable(testConfig(t), dp, out, zaptest.NewLogger(t))
	t.Cleanup(func() {
		if len(dp.errs) > 0 {
			t.Errorf("data plane order violated: %v", dp.errs)
		}
	})
	return tb, dp, out
}

func feed(tb *table, paths ...*apiutil.Path) { tb.bestPaths(paths) }

func wantCalls(t *testing.T, dp *fakeDP, want ...string) {
	t.Helper()
	got := dp.take()
	if !slices.Equal(got, want) {
		t.Fatalf("data plane calls:\n got %q\nwant %q", got, want)
	}
}

func TestType3AddDuplicateWithdraw(t *testing.T) {
	tb, dp, _ := newTestTable(t)
	p := hostA.type3(5000)
	feed(tb, p)
	wantCalls(t, dp, "AddTunnel 5000 198.18.7.2", "AddFloodVTEP 5000 198.18.7.2")
	// The same route again (the second reflector's copy became best).
	q := hostA.type3(5000)
	q.PeerAddress = netip.MustParseAddr("198.18.7.101")
	feed(tb, q)
	wantCalls(t, dp)
	if tb.c.Duplicates != 1 {
		t.Fatalf("duplicates = %d, want 1", tb.c.Duplicates)
	}
	feed(tb, withdrawn(p))
	wantCalls(t, dp, "RemoveFloodVTEP 5000 198.18.7.2", "RemoveTunnel 5000 198.18.7.2")
	feed(tb, withdrawn(p))
	wantCalls(t, dp)
	if tb.c.WithdrawUnknown != 1 || tb.c.Withdraws != 1 {
		t.Fatalf("withdraws %d, unknown %d; want 1, 1", tb.c.Withdraws, tb.c.WithdrawUnknown)
	}
	if !dp.empty() {
		t.Fatal("data plane not empty after every route was withdrawn")
	}
}

func TestType2AddWithdraw(t *testing.T) {
	tb, dp, _ := newTestTable(t)
	feed(tb, hostA.type3(5000))
	dp.take()
	m := hostA.type2(5000, "02:00:00:00:0a:01", "", 0)
	mip := hostA.type2(5000, "02:00:00:00:0a:01", "198.19.0.2", 0)
	feed(tb, m, mip)
	wantCalls(t, dp, "SetRemoteMAC 5000 02:00:00:00:0a:01 198.18.7.2 0")
	feed(tb, withdrawn(m))
	wantCalls(t, dp) // the MAC/IP route still names it
	feed(tb, withdrawn(mip))
	wantCalls(t, dp, "RemoveRemoteMAC 5000 02:00:00:00:0a:01")
	// A type-2 route without a type-3 one still gets its tunnel.
	n := hostB.type2(6000, "02:00:00:00:0b:01", "", 0)
	feed(tb, n)
	wantCalls(t, dp, "AddTunnel 6000 198.18.7.3", "SetRemoteMAC 6000 02:00:00:00:0b:01 198.18.7.3 0")
	feed(tb, withdrawn(n))
	wantCalls(t, dp, "RemoveRemoteMAC 6000 02:00:00:00:0b:01", "RemoveTunnel 6000 198.18.7.3")
}

func TestMoveBetweenRemotesFollowsSequence(t *testing.T) {
	tb, dp, _ := newTestTable(t)
	const mac = "02:00:00:00:0c:01"
	a0 := hostA.type2(5000, mac, "", 0)
	feed(tb, a0)
	wantCalls(t, dp, "AddTunnel 5000 198.18.7.2", "SetRemoteMAC 5000 02:00:00:00:0c:01 198.18.7.2 0")
	// The MAC moved to B, which announces seq 1 before A withdraws.
	b1 := hostB.type2(5000, mac, "", 1)
	feed(tb, b1)
	wantCalls(t, dp, "AddTunnel 5000 198.18.7.3", "SetRemoteMAC 5000 02:00:00:00:0c:01 198.18.7.3 1", "RemoveTunnel 5000 198.18.7.2")
	feed(tb, withdrawn(a0))
	wantCalls(t, dp)
	// An old route arriving late (seq 0 from A again) does not win.
	feed(tb, a0)
	wantCalls(t, dp)
	// Back to A with seq 2.
	a2 := hostA.type2(5000, mac, "", 2)
	feed(tb, a2)
	wantCalls(t, dp, "AddTunnel 5000 198.18.7.2", "SetRemoteMAC 5000 02:00:00:00:0c:01 198.18.7.2 2", "RemoveTunnel 5000 198.18.7.3")
	feed(tb, withdrawn(b1), withdrawn(a2))
	wantCalls(t, dp, "RemoveRemoteMAC 5000 02:00:00:00:0c:01", "RemoveTunnel 5000 198.18.7.2")
}

func TestEqualSequenceLowestVTEPWins(t *testing.T) {
	tb, dp, _ := newTestTable(t)
	const mac = "02:00:00:00:0d:01"
	feed(tb, hostB.type2(5000, mac, "", 3))
	dp.take()
	feed(tb, hostA.type2(5000, mac, "", 3)) // 198.18.7.2 < 198.18.7.3
	wantCalls(t, dp, "AddTunnel 5000 198.18.7.2", "SetRemoteMAC 5000 02:00:00:00:0d:01 198.18.7.2 3", "RemoveTunnel 5000 198.18.7.3")
}

func TestLocalMACAnnouncedWithdrawn(t *testing.T) {
	tb, dp, out := newTestTable(t)
	m := mustMAC("02:00:00:00:01:01")
	tb.localLearned(5000, m, netip.Addr{})
	tb.localLearned(5000, m, netip.MustParseAddr("198.19.0.1"))
	tb.localLearned(5000, m, netip.MustParseAddr("198.19.0.1")) // again: nothing new
	want := []string{
		"[type:macadv][rd:198.18.7.1:5000][etag:0][mac:02:00:00:00:01:01] seq 0",
		"[type:macadv][rd:198.18.7.1:5000][etag:0][mac:02:00:00:00:01:01][ip:198.19.0.1] seq 0",
	}
	if got := out.keys(); !slices.Equal(got, want) {
		t.Fatalf("announced %q, want %q", got, want)
	}
	wantCalls(t, dp)
	tb.localGone(5000, m)
	if len(out.routes) != 0 {
		t.Fatalf("still announced after LocalMACGone: %v", out.keys())
	}
	tb.localLearned(7000, m, netip.Addr{}) // VNI not configured
	if tb.c.LocalUnknownVNI != 1 || len(out.routes) != 0 {
		t.Fatalf("unknown VNI: counter %d, routes %v", tb.c.LocalUnknownVNI, out.keys())
	}
}

// RFC 7432 §15: a MAC learned locally that a remote host announced is
// announced with the remote sequence number + 1; a newer remote route
// takes it back.
func TestLocalMoveInAndOut(t *testing.T) {
	tb, dp, out := newTestTable(t)
	const mac = "02:00:00:00:0e:01"
	m := mustMAC(mac)
	feed(tb, hostA.type2(5000, mac, "", 2))
	dp.take()
	tb.localLearned(5000, m, netip.Addr{})
	wantCalls(t, dp, "RemoveRemoteMAC 5000 02:00:00:00:0e:01", "RemoveTunnel 5000 198.18.7.2")
	if got := out.keys(); len(got) != 1 || !strings.HasSuffix(got[0], "seq 3") {
		t.Fatalf("announced %q, want one route with seq 3", got)
	}
	// A's older route again changes nothing.
	feed(tb, hostA.type2(5000, mac, "", 2))
	wantCalls(t, dp)
	// The MAC moved on to B with seq 4: ours is withdrawn, B's installed.
	feed(tb, hostB.type2(5000, mac, "", 4))
	wantCalls(t, dp, "AddTunnel 5000 198.18.7.3", "SetRemoteMAC 5000 02:00:00:00:0e:01 198.18.7.3 4")
	if len(out.routes) != 0 {
		t.Fatalf("still announced after losing the MAC: %v", out.keys())
	}
	if tb.c.MACMovesIn != 1 || tb.c.MACMovesOut != 1 {
		t.Fatalf("moves in %d out %d, want 1 1", tb.c.MACMovesIn, tb.c.MACMovesOut)
	}
	// The switch reports it gone (its entry is on the tunnel now): no-op.
	tb.localGone(5000, m)
	wantCalls(t, dp)
}

func TestLocalTieLowestVTEPWins(t *testing.T) {
	tb, dp, out := newTestTable(t)
	const mac = "02:00:00:00:0f:01"
	m := mustMAC(mac)
	tb.localLearned(5000, m, netip.Addr{})
	feed(tb, hostA.type2(5000, mac, "", 0)) // 198.18.7.2 > local 198.18.7.1: we keep it
	wantCalls(t, dp)
	if len(out.routes) != 1 {
		t.Fatal("local route withdrawn on a tie with a higher VTEP")
	}
	feed(tb, hostLow.type2(5000, mac, "", 0)) // 198.18.6.9 < local: it wins
	wantCalls(t, dp, "AddTunnel 5000 198.18.6.9", "SetRemoteMAC 5000 02:00:00:00:0f:01 198.18.6.9 0")
	if len(out.routes) != 0 {
		t.Fatal("local route kept on a tie with a lower VTEP")
	}
}

func TestIgnoredRoutesCounted(t *testing.T) {
	tb, dp, _ := newTestTable(t)
	// VNI not configured.
	feed(tb, hostA.type3(7000), hostA.type2(7000, "02:00:00:00:10:01", "", 0))
	// Route target of another AS.
	other := hostB
	other.asn = 65001
	feed(tb, other.type3(5000))
	// VXLAN instead of Geneve, and no encapsulation community at all.
	vx := hostA.type3(6000)
	setEncap(vx, bgp.TUNNEL_TYPE_VXLAN)
	none := hostA.type2(6000, "02:00:00:00:10:02", "", 0)
	setEncap(none, 0)
	feed(tb, vx, none)
	// Our own routes, reported by GoBGP with no peer, and reflected back.
	own, _ := tb.vnis[5000].routes.multicast()
	feed(tb, own)
	self := remoteHost{vtep: netip.MustParseAddr(localVTEP), asn: 65000, rr: hostA.rr}
	feed(tb, self.type3(5000))
	wantCalls(t, dp)
	want := map[string]uint64{reasonUnknownVNI: 2, reasonRTMismatch: 1, reasonNotGeneve: 2, reasonOwn: 1}
	for k, v := range want {
		if tb.c.Ignored[k] != v {
			t.Errorf("ignored[%s] = %d, want %d (all: %v)", k, tb.c.Ignored[k], v, tb.c.Ignored)
		}
	}
}

func setEncap(p *apiutil.Path, tt bgp.TunnelType) {
	for i, a := range p.Attrs {
		if ec, ok := a.(*bgp.PathAttributeExtendedCommunities); ok {
			var keep []bgp.ExtendedCommunityInterface
			for _, c := range ec.Value {
				if _, enc := c.(*bgp.EncapExtended); !enc {
					keep = append(keep, c)
				}
			}
			if tt != 0 {
				keep = append(keep, bgp.NewEncapExtended(tt))
			}
			p.Attrs[i] = bgp.NewPathAttributeExtendedCommunities(keep)
		}
	}
}

func TestMalformedRoutesCounted(t *testing.T) {
	tb, dp, _ := newTestTable(t)
	noPMSI := hostA.type3(5000)
	noPMSI.Attrs = slices.DeleteFunc(slices.Clone(noPMSI.Attrs), func(a bgp.PathAttributeInterface) bool {
		_, ok := a.(*bgp.PathAttributePmsiTunnel)
		return ok
	})
	mcast := hostA.type2(5000, "01:00:5e:00:00:01", "", 0)
	noNexthop := hostA.type2(5000, "02:00:00:00:11:01", "", 0)
	noNexthop.Attrs = slices.DeleteFunc(slices.Clone(noNexthop.Attrs), func(a bgp.PathAttributeInterface) bool {
		_, ok := a.(*bgp.PathAttributeMpReachNLRI)
		return ok
	})
	nilNLRI := hostA.received(&apiutil.Path{Family: bgp.RF_EVPN})
	pfx, _ := bgp.NewIPAddrPrefix(netip.MustParsePrefix("198.18.0.0/24"))
	v4 := hostA.received(&apiutil.Path{Family: bgp.RF_IPv4_UC, Nlri: pfx})
	badData := hostA.received(&apiutil.Path{Family: bgp.RF_EVPN, Nlri: &bgp.EVPNNLRI{RouteType: 2, RouteTypeData: &bgp.EVPNMacIPAdvertisementRoute{MacAddressLength: 48}}})
	esRoute, _ := bgp.NewEVPNEthernetSegmentRoute(hostA.routes(5000).rd, bgp.EthernetSegmentIdentifier{Value: make([]byte, 9)}, hostA.vtep)
	es := hostA.received(&apiutil.Path{Family: bgp.RF_EVPN, Nlri: esRoute, Attrs: hostA.type3(5000).Attrs})
	feed(tb, noPMSI, mcast, noNexthop, nilNLRI, v4, badData, es, nil, withdrawn(nilNLRI))
	wantCalls(t, dp)
	if got := tb.c.Ignored[reasonMalformed]; got != 7 {
		t.Errorf("malformed = %d, want 7 (all: %v)", got, tb.c.Ignored)
	}
	if got := tb.c.Ignored[reasonUnsupported]; got != 1 {
		t.Errorf("unsupported = %d, want 1", got)
	}
}

// A known route key that turns unusable (here: another VNI) is withdrawn
// from the data plane.
func TestRouteChangesVNI(t *testing.T) {
	tb, dp, _ := newTestTable(t)
	feed(tb, hostA.type3(5000))
	dp.take()
	// The same NLRI (RD and originator), now with VNI 6000's label and RT.
	r := hostA.routes(6000)
	r.rd = hostA.routes(5000).rd
	p, _ := r.multicast()
	feed(tb, hostA.received(p))
	wantCalls(t, dp, "RemoveFloodVTEP 5000 198.18.7.2", "RemoveTunnel 5000 198.18.7.2",
		"AddTunnel 6000 198.18.7.2", "AddFloodVTEP 6000 198.18.7.2")
	// Then for VNI 7000, which is not configured.
	r = hostA.routes(7000)
	r.rd = hostA.routes(5000).rd
	p, _ = r.multicast()
	feed(tb, hostA.received(p))
	wantCalls(t, dp, "RemoveFloodVTEP 6000 198.18.7.2", "RemoveTunnel 6000 198.18.7.2")
}

// Random streams of adds, duplicates, withdraws, moves and local events:
// the fake data plane never sees an order violation, the installed MAC is
// always the route that should win, and once every route is withdrawn and
// every local MAC gone, nothing is left.
func TestRandomStreams(t *testing.T) {
	hosts := []remoteHost{hostA, hostB, hostLow}
	macs := []string{"02:00:00:00:20:01", "02:00:00:00:20:02", "02:00:00:00:20:03"}
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 7))
		tb, dp, out := newTestTable(t)
		live := map[string]*apiutil.Path{}
		for range 60 {
			h := hosts[rng.IntN(len(hosts))]
			vni := []uint32{5000, 6000}[rng.IntN(2)]
			mac := macs[rng.IntN(len(macs))]
			switch rng.IntN(6) {
			case 0:
				p := h.type3(vni)
				live[p.Nlri.String()] = p
				feed(tb, p)
			case 1, 2:
				p := h.type2(vni, mac, "", uint32(rng.IntN(4)))
				live[p.Nlri.String()] = p
				feed(tb, p)
			case 3:
				for k, p := range live {
					feed(tb, withdrawn(p))
					delete(live, k)
					break
				}
			case 4:
				tb.localLearned(vni, mustMAC(mac), netip.Addr{})
			case 5:
				tb.localGone(vni, mustMAC(mac))
			}
			checkInstalled(t, tb, dp)
			if t.Failed() {
				t.Fatalf("seed %d", seed)
			}
		}
		for _, p := range live {
			feed(tb, withdrawn(p))
		}
		for _, vni := range []uint32{5000, 6000} {
			for _, mac := range macs {
				tb.localGone(vni, mustMAC(mac))
			}
		}
		if !dp.empty() || len(out.routes) != 0 || len(tb.keys) != 0 {
			t.Fatalf("seed %d: left over: dp %v %v %v, announced %v, keys %d", seed, dp.tunnels, dp.flood, dp.macs, out.keys(), len(tb.keys))
		}
		for vni, vs := range tb.vnis {
			if len(vs.macs) != 0 || len(vs.tunnels) != 0 || len(vs.flood) != 0 {
				t.Fatalf("seed %d: VNI %d state left: %d macs %d tunnels %d flood", seed, vni, len(vs.macs), len(vs.tunnels), len(vs.flood))
			}
		}
	}
}

// checkInstalled compares the fake data plane with a plain recomputation:
// a MAC is on the remote route with the highest sequence number (then the
// lowest VTEP) unless it is local and not outbid.
func checkInstalled(t *testing.T, tb *table, dp *fakeDP) {
	t.Helper()
	for vni, vs := range tb.vnis {
		for m, ms := range vs.macs {
			var best remoteMAC
			for _, r := range ms.remote {
				if !best.vtep.IsValid() || r.seq > best.seq || (r.seq == best.seq && r.vtep.Less(best.vtep)) {
					best = r
				}
			}
			key := tkMAC(vni, m.String())
			got, installed := dp.macs[key]
			switch {
			case ms.local != nil && best.vtep.IsValid() && (best.seq > ms.local.seq || best.seq == ms.local.seq && best.vtep.Less(tb.local)):
				t.Errorf("%s: local seq %d kept against remote %v seq %d", key, ms.local.seq, best.vtep, best.seq)
			case ms.local != nil && installed:
				t.Errorf("%s: local, but installed on %s", key, got)
			case ms.local == nil && best.vtep.IsValid() && got != tk(vni, best.vtep):
				t.Errorf("%s: installed on %q, want %v", key, got, best.vtep)
			case ms.local == nil && !best.vtep.IsValid() && installed:
				t.Errorf("%s: installed on %s with no route", key, got)
			}
		}
	}
}

func tkMAC(vni uint32, mac string) string { return fmt.Sprintf("%d %s", vni, mac) }
