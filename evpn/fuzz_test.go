package evpn

import (
	"testing"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"go.uber.org/zap"
)

// FuzzReceivedPath decodes arbitrary bytes the way GoBGP decodes an UPDATE
// (an EVPN NLRI and path attributes) and hands the result to parsePath and
// to the table: nothing may panic (parsePath is called without the table's
// recover), and whatever is used must be consistent.
func FuzzReceivedPath(f *testing.F) {
	for _, p := range []*apiutil.Path{hostA.type3(5000), hostA.type2(5000, "02:00:00:00:01:02", "198.19.0.9", 3)} {
		n, _ := p.Nlri.Serialize()
		var attrs []byte
		for _, a := range p.Attrs {
			if b, err := a.Serialize(); err == nil {
				attrs = append(attrs, b...)
			}
		}
		f.Add(n, attrs, false)
	}
	f.Fuzz(func(t *testing.T, nlri, attrs []byte, withdraw bool) {
		n, err := bgp.NLRIFromSlice(bgp.RF_EVPN, nlri)
		if err != nil {
			return
		}
		p := &apiutil.Path{Family: bgp.RF_EVPN, Nlri: n, Withdrawal: withdraw, PeerAddress: hostA.rr, PeerASN: 65000}
		for len(attrs) > 0 {
			a, err := bgp.GetPathAttribute(attrs)
			if err != nil || a.DecodeFromBytes(attrs) != nil {
				break
			}
			p.Attrs = append(p.Attrs, a)
			l := a.Len()
			if l <= 0 || l > len(attrs) {
				break
			}
			attrs = attrs[l:]
		}
		r, why, err := parsePath(p)
		if err == nil && (why != "" || !r.vtep.IsValid() || r.vni > 0xffffff) {
			t.Fatalf("accepted a route with reason %q, vtep %v, vni %d", why, r.vtep, r.vni)
		}
		dp, out := newFakeDP(), newFakeOut()
		tb := newTable(testConfig(t), dp, out, zap.NewNop())
		tb.bestPaths([]*apiutil.Path{p, p, withdrawn(p)})
		if len(dp.errs) > 0 {
			t.Fatalf("order violated: %v", dp.errs)
		}
		if !dp.empty() {
			t.Fatalf("add, duplicate, withdraw left state: %v %v %v", dp.tunnels, dp.flood, dp.macs)
		}
	})
}
