package evpn

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"xswitch/flowtable"
)

// fakeDP is a Dataplane that keeps the state the calls build and checks
// the speaker's order guarantees: a violation is recorded in errs.
type fakeDP struct {
	mu      sync.Mutex
	calls   []string
	tunnels map[string]bool // "vni vtep"
	flood   map[string]bool // "vni vtep"
	macs    map[string]string
	errs    []string
}

func newFakeDP() *fakeDP {
	return &fakeDP{tunnels: map[string]bool{}, flood: map[string]bool{}, macs: map[string]string{}}
}

func tk(vni uint32, a netip.Addr) string { return fmt.Sprintf("%d %v", vni, a) }

func (f *fakeDP) record(format string, a ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, a...))
}

func (f *fakeDP) AddTunnel(vni uint32, vtep netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("AddTunnel %d %v", vni, vtep)
	if f.tunnels[tk(vni, vtep)] {
		f.errs = append(f.errs, "AddTunnel twice: "+tk(vni, vtep))
	}
	f.tunnels[tk(vni, vtep)] = true
	return nil
}

func (f *fakeDP) RemoveTunnel(vni uint32, vtep netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("RemoveTunnel %d %v", vni, vtep)
	k := tk(vni, vtep)
	if !f.tunnels[k] {
		f.errs = append(f.errs, "RemoveTunnel of no tunnel: "+k)
	}
	if f.flood[k] {
		f.errs = append(f.errs, "RemoveTunnel while in the flood list: "+k)
	}
	for m, v := range f.macs {
		if v == k {
			f.errs = append(f.errs, "RemoveTunnel while MAC "+m+" is on it")
		}
	}
	delete(f.tunnels, k)
	return nil
}

func (f *fakeDP) AddFloodVTEP(vni uint32, vtep netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("AddFloodVTEP %d %v", vni, vtep)
	k := tk(vni, vtep)
	if !f.tunnels[k] || f.flood[k] {
		f.errs = append(f.errs, "AddFloodVTEP without tunnel or twice: "+k)
	}
	f.flood[k] = true
	return nil
}

func (f *fakeDP) RemoveFloodVTEP(vni uint32, vtep netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("RemoveFloodVTEP %d %v", vni, vtep)
	if !f.flood[tk(vni, vtep)] {
		f.errs = append(f.errs, "RemoveFloodVTEP of no entry: "+tk(vni, vtep))
	}
	delete(f.flood, tk(vni, vtep))
	return nil
}

func (f *fakeDP) SetRemoteMAC(vni uint32, mac flowtable.MAC, vtep netip.Addr, seq uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("SetRemoteMAC %d %v %v %d", vni, mac, vtep, seq)
	if !f.tunnels[tk(vni, vtep)] {
		f.errs = append(f.errs, "SetRemoteMAC without tunnel: "+tk(vni, vtep))
	}
	f.macs[fmt.Sprintf("%d %v", vni, mac)] = tk(vni, vtep)
	return nil
}

func (f *fakeDP) RemoveRemoteMAC(vni uint32, mac flowtable.MAC) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("RemoveRemoteMAC %d %v", vni, mac)
	k := fmt.Sprintf("%d %v", vni, mac)
	if _, ok := f.macs[k]; !ok {
		f.errs = append(f.errs, "RemoveRemoteMAC of no entry: "+k)
	}
	delete(f.macs, k)
	return nil
}

// take returns the calls since the last take.
func (f *fakeDP) take() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *fakeDP) empty() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.tunnels) == 0 && len(f.flood) == 0 && len(f.macs) == 0
}

// fakeOut records our own announcements: NLRI key -> MAC mobility seq.
type fakeOut struct {
	routes map[string]uint32
	log    []string
}

func newFakeOut() *fakeOut { return &fakeOut{routes: map[string]uint32{}} }

func (o *fakeOut) announce(p *apiutil.Path) error {
	k, _, err := pathKey(p)
	if err != nil {
		return err
	}
	seq := pathSeq(p)
	o.routes[k] = seq
	o.log = append(o.log, fmt.Sprintf("announce %s seq %d", k, seq))
	return nil
}

func (o *fakeOut) withdraw(p *apiutil.Path) error {
	k, _, err := pathKey(p)
	if err != nil {
		return err
	}
	if _, ok := o.routes[k]; !ok {
		return fmt.Errorf("withdraw of a route never announced: %s", k)
	}
	delete(o.routes, k)
	o.log = append(o.log, "withdraw "+k)
	return nil
}

func (o *fakeOut) keys() []string {
	var l []string
	for k, s := range o.routes {
		l = append(l, fmt.Sprintf("%s seq %d", k, s))
	}
	sort.Strings(l)
	return l
}

func pathSeq(p *apiutil.Path) uint32 {
	for _, a := range p.Attrs {
		if ec, ok := a.(*bgp.PathAttributeExtendedCommunities); ok {
			for _, c := range ec.Value {
				if mm, ok := c.(*bgp.MacMobilityExtended); ok {
					return mm.Sequence
				}
			}
		}
	}
	return 0
}

// remoteHost builds the routes another switch announces, as they arrive
// from a reflector.
type remoteHost struct {
	vtep netip.Addr
	asn  uint16
	rr   netip.Addr
}

func (h remoteHost) routes(vni uint32) *vniRoutes {
	rd, _ := bgp.NewRouteDistinguisherIPAddressAS(h.vtep, uint16(vni))
	rt := bgp.NewTwoOctetAsSpecificExtended(bgp.EC_SUBTYPE_ROUTE_TARGET, h.asn, vni, true)
	return &vniRoutes{vni: vni, rd: rd, export: []bgp.ExtendedCommunityInterface{rt}, local: h.vtep}
}

func (h remoteHost) received(p *apiutil.Path) *apiutil.Path {
	p.PeerAddress = h.rr
	p.PeerASN = uint32(h.asn)
	p.PeerID = h.rr
	return p
}

func (h remoteHost) type3(vni uint32) *apiutil.Path {
	p, err := h.routes(vni).multicast()
	if err != nil {
		panic(err)
	}
	return h.received(p)
}

func (h remoteHost) type2(vni uint32, mac string, ip string, seq uint32) *apiutil.Path {
	var a netip.Addr
	if ip != "" {
		a = netip.MustParseAddr(ip)
	}
	p, err := h.routes(vni).macIP(mustMAC(mac), a, seq)
	if err != nil {
		panic(err)
	}
	return h.received(p)
}

func withdrawn(p *apiutil.Path) *apiutil.Path {
	q := *p
	q.Withdrawal = true
	return &q
}

func mustMAC(s string) flowtable.MAC {
	var b [6]byte
	if _, err := fmt.Sscanf(strings.ReplaceAll(s, ":", ""), "%02x%02x%02x%02x%02x%02x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]); err != nil {
		panic(err)
	}
	return flowtable.MACFrom(b[:])
}
