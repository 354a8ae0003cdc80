package evpn

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"go.uber.org/zap"

	"xswitch/flowtable"
)

// announcer sends and withdraws our own routes (GoBGP, or a fake in tests).
type announcer interface {
	announce(p *apiutil.Path) error
	withdraw(p *apiutil.Path) error
}

// table turns received best paths and local MAC events into Dataplane
// calls and announcements. It is not safe for concurrent use: the Speaker
// serialises every call.
type table struct {
	local netip.Addr
	dp    Dataplane
	out   announcer
	log   *zap.Logger
	vnis  map[uint32]*vniState
	keys  map[string]keyRef // received route key -> where it went
	c     Counters
}

type keyRef struct {
	vni  uint32
	kind uint8
	mac  flowtable.MAC
}

type vniState struct {
	routes  vniRoutes
	imports map[uint64]bool
	type3   map[string]netip.Addr // received type-3 key -> VTEP
	flood   map[netip.Addr]int    // VTEP -> type-3 routes naming it
	tunnels map[netip.Addr]int    // VTEP -> flood membership + installed MACs
	macs    map[flowtable.MAC]*macState
}

type macState struct {
	remote    map[string]remoteMAC // received type-2 key -> route
	installed remoteMAC            // vtep invalid: nothing installed
	local     *localMAC
}

type remoteMAC struct {
	vtep netip.Addr
	seq  uint32
	ip   netip.Addr
}

type localMAC struct {
	seq uint32
	ips []netip.Addr // MAC/IP routes besides the MAC-only one
}

// Counters count received routes by fate and the speaker's own actions.
type Counters struct {
	Updates         uint64            `json:"updates"`          // best paths received (adds and replacements)
	Withdraws       uint64            `json:"withdraws"`        // best paths withdrawn
	Duplicates      uint64            `json:"duplicates"`       // an update equal to what was known
	WithdrawUnknown uint64            `json:"withdraw_unknown"` // a withdraw of nothing known
	Ignored         map[string]uint64 `json:"ignored"`          // by reason: unknown_vni, malformed, ...
	MACMovesIn      uint64            `json:"mac_moves_in"`     // a local MAC took over a remote one (seq+1 announced)
	MACMovesOut     uint64            `json:"mac_moves_out"`    // a local MAC lost to a newer remote route
	DataplaneErrors uint64            `json:"dataplane_errors"`
	AnnounceErrors  uint64            `json:"announce_errors"`
	LocalUnknownVNI uint64            `json:"local_unknown_vni"` // LocalMACLearned for a VNI not configured
}

func newTable(c *Config, dp Dataplane, out announcer, log *zap.Logger) *table {
	t := &table{local: c.localIP, dp: dp, out: out, log: log,
		vnis: map[uint32]*vniState{}, keys: map[string]keyRef{}}
	t.c.Ignored = map[string]uint64{}
	for i := range c.VNIs {
		v := &c.VNIs[i]
		vs := &vniState{
			routes:  vniRoutes{vni: uint32(v.VNI), rd: v.rd, export: v.exportRTs, local: c.localIP},
			imports: map[uint64]bool{},
			type3:   map[string]netip.Addr{}, flood: map[netip.Addr]int{},
			tunnels: map[netip.Addr]int{}, macs: map[flowtable.MAC]*macState{},
		}
		for _, rt := range v.importRTs {
			if k, err := bgp.ExtCommRouteTargetKey(rt); err == nil {
				vs.imports[k] = true
			}
		}
		t.vnis[uint32(v.VNI)] = vs
	}
	return t
}

// announceMulticast announces every VNI's type-3 route.
func (t *table) announceMulticast() error {
	for _, vs := range t.vnis {
		p, err := vs.routes.multicast()
		if err == nil {
			err = t.out.announce(p)
		}
		if err != nil {
			return fmt.Errorf("announce VNI %d: %w", vs.routes.vni, err)
		}
	}
	return nil
}

// bestPaths handles one batch of best-path changes. A path that cannot be
// used is counted and logged, never fatal; a panic in decoding a bad path
// is caught and counted as malformed.
func (t *table) bestPaths(paths []*apiutil.Path) {
	for _, p := range paths {
		t.bestPath(p)
	}
}

func (t *table) bestPath(p *apiutil.Path) {
	defer func() {
		if r := recover(); r != nil {
			t.ignore(reasonMalformed, fmt.Errorf("panic while reading a path: %v", r))
		}
	}()
	if p == nil || !p.PeerAddress.IsValid() {
		return // our own route (GoBGP reports local paths too)
	}
	if p.Withdrawal {
		key, _, err := pathKey(p)
		if err != nil {
			t.ignore(reasonMalformed, err)
			return
		}
		t.withdraw(key)
		return
	}
	r, why, err := parsePath(p)
	if err == nil && r.vtep == t.local {
		why, err = reasonOwn, fmt.Errorf("route %s names our own endpoint %v", r.key, r.vtep)
	}
	var vs *vniState
	if err == nil {
		if vs = t.vnis[r.vni]; vs == nil {
			why, err = reasonUnknownVNI, fmt.Errorf("route %s for VNI %d, which is not configured", r.key, r.vni)
		} else if !vs.importsAny(r.rts) {
			why, err = reasonRTMismatch, fmt.Errorf("route %s for VNI %d carries none of its import route targets", r.key, r.vni)
		}
	}
	if err != nil {
		// A route we used under this key and can no longer use is gone.
		if _, ok := t.keys[r.key]; ok && r.key != "" {
			t.withdraw(r.key)
		}
		t.ignore(why, err)
		return
	}
	t.update(vs, r)
}

func (vs *vniState) importsAny(rts []uint64) bool {
	for _, k := range rts {
		if vs.imports[k] {
			return true
		}
	}
	return false
}

func (t *table) ignore(why string, err error) {
	t.c.Ignored[why]++
	t.log.Debug("EVPN route not used", zap.String("reason", why), zap.Error(err))
}

func (t *table) update(vs *vniState, r route) {
	t.c.Updates++
	if old, ok := t.keys[r.key]; ok && (old.vni != r.vni || old.kind != r.kind || old.mac != r.mac) {
		t.withdraw(r.key) // same NLRI, now for another VNI: a new route
		t.c.Withdraws--
	}
	t.keys[r.key] = keyRef{vni: r.vni, kind: r.kind, mac: r.mac}
	switch r.kind {
	case typeMulticast:
		old, ok := vs.type3[r.key]
		if ok && old == r.vtep {
			t.c.Duplicates++
			return
		}
		vs.type3[r.key] = r.vtep
		t.floodRef(vs, r.vtep, +1)
		if ok {
			t.floodRef(vs, old, -1)
		}
	case typeMACIP:
		ms := vs.mac(r.mac)
		rm := remoteMAC{vtep: r.vtep, seq: r.seq, ip: r.ip}
		if old, ok := ms.remote[r.key]; ok && old == rm {
			t.c.Duplicates++
			return
		}
		ms.remote[r.key] = rm
		t.resolve(vs, r.mac)
	}
}

func (t *table) withdraw(key string) {
	ref, ok := t.keys[key]
	if !ok {
		t.c.WithdrawUnknown++
		return
	}
	t.c.Withdraws++
	delete(t.keys, key)
	vs := t.vnis[ref.vni]
	switch ref.kind {
	case typeMulticast:
		vtep := vs.type3[key]
		delete(vs.type3, key)
		t.floodRef(vs, vtep, -1)
	case typeMACIP:
		ms := vs.mac(ref.mac)
		delete(ms.remote, key)
		t.resolve(vs, ref.mac)
	}
}

func (vs *vniState) mac(m flowtable.MAC) *macState {
	ms := vs.macs[m]
	if ms == nil {
		ms = &macState{remote: map[string]remoteMAC{}}
		vs.macs[m] = ms
	}
	return ms
}

// floodRef counts the type-3 routes naming a VTEP; the first puts it into
// the flood list, the last takes it out.
func (t *table) floodRef(vs *vniState, vtep netip.Addr, d int) {
	n := vs.flood[vtep] + d
	switch {
	case d > 0 && n == 1:
		vs.flood[vtep] = n
		t.tunnelRef(vs, vtep, +1)
		t.call("AddFloodVTEP", vs.routes.vni, vtep, func() error { return t.dp.AddFloodVTEP(vs.routes.vni, vtep) })
	case d < 0 && n == 0:
		delete(vs.flood, vtep)
		t.call("RemoveFloodVTEP", vs.routes.vni, vtep, func() error { return t.dp.RemoveFloodVTEP(vs.routes.vni, vtep) })
		t.tunnelRef(vs, vtep, -1)
	default:
		vs.flood[vtep] = n
	}
}

// tunnelRef counts what uses a tunnel: its flood list membership and the
// remote MACs installed on it.
func (t *table) tunnelRef(vs *vniState, vtep netip.Addr, d int) {
	n := vs.tunnels[vtep] + d
	if n <= 0 {
		delete(vs.tunnels, vtep)
		t.call("RemoveTunnel", vs.routes.vni, vtep, func() error { return t.dp.RemoveTunnel(vs.routes.vni, vtep) })
		return
	}
	vs.tunnels[vtep] = n
	if n == 1 && d > 0 {
		t.call("AddTunnel", vs.routes.vni, vtep, func() error { return t.dp.AddTunnel(vs.routes.vni, vtep) })
	}
}

func (t *table) call(op string, vni uint32, what any, fn func() error) {
	if err := fn(); err != nil {
		t.c.DataplaneErrors++
		t.log.Warn("EVPN: the data plane refused a change", zap.String("op", op), zap.Uint32("vni", vni), zap.Any("target", what), zap.Error(err))
	}
}

// bestRemote is the remote route that wins for a MAC: the highest MAC
// mobility sequence number, then the lowest VTEP address (RFC 7432 §15.1).
func (ms *macState) bestRemote() (remoteMAC, bool) {
	var best remoteMAC
	for _, r := range ms.remote {
		if !best.vtep.IsValid() || r.seq > best.seq || r.seq == best.seq && r.vtep.Less(best.vtep) {
			best = r
		}
	}
	return best, best.vtep.IsValid()
}

// resolve decides who owns a MAC after a change: a local MAC stays ours
// unless a remote route has a higher sequence number (or the same and a
// lower VTEP address); then our routes are withdrawn and the remote one is
// installed.
func (t *table) resolve(vs *vniState, m flowtable.MAC) {
	ms := vs.mac(m)
	best, ok := ms.bestRemote()
	if ms.local != nil && ok && (best.seq > ms.local.seq || best.seq == ms.local.seq && best.vtep.Less(t.local)) {
		t.c.MACMovesOut++
		t.log.Info("EVPN: MAC moved to another host", zap.Uint32("vni", vs.routes.vni), zap.Stringer("mac", m),
			zap.Stringer("vtep", best.vtep), zap.Uint32("seq", best.seq), zap.Uint32("local_seq", ms.local.seq))
		t.withdrawLocal(vs, m, ms.local)
		ms.local = nil
	}
	var want remoteMAC
	if ms.local == nil && ok {
		want = best
	}
	old := ms.installed
	if want.vtep == old.vtep && want.seq == old.seq {
		t.forget(vs, m, ms)
		return
	}
	ms.installed = want
	if want.vtep.IsValid() {
		if want.vtep != old.vtep {
			t.tunnelRef(vs, want.vtep, +1)
		}
		t.call("SetRemoteMAC", vs.routes.vni, m, func() error { return t.dp.SetRemoteMAC(vs.routes.vni, m, want.vtep, want.seq) })
	} else {
		t.call("RemoveRemoteMAC", vs.routes.vni, m, func() error { return t.dp.RemoveRemoteMAC(vs.routes.vni, m) })
	}
	if old.vtep.IsValid() && old.vtep != want.vtep {
		t.tunnelRef(vs, old.vtep, -1)
	}
	t.forget(vs, m, ms)
}

func (t *table) forget(vs *vniState, m flowtable.MAC, ms *macState) {
	if len(ms.remote) == 0 && ms.local == nil && !ms.installed.vtep.IsValid() {
		delete(vs.macs, m)
	}
}

// localLearned: a MAC appeared on a local port (or the internal port) of
// the VNI's bridge, with an IP address when one is known (ARP/ND).
func (t *table) localLearned(vni uint32, m flowtable.MAC, ip netip.Addr) {
	vs := t.vnis[vni]
	if vs == nil || m.IsMulticast() {
		t.c.LocalUnknownVNI++
		return
	}
	ms := vs.mac(m)
	if l := ms.local; l != nil {
		if ip.IsValid() && !containsAddr(l.ips, ip) {
			l.ips = append(l.ips, ip)
			t.announceMAC(vs, m, ip, l.seq)
		}
		return
	}
	l := &localMAC{}
	if best, ok := ms.bestRemote(); ok {
		// RFC 7432 §15: the MAC moved here; outbid every remote route.
		l.seq = best.seq + 1
		t.c.MACMovesIn++
		t.log.Info("EVPN: MAC moved here", zap.Uint32("vni", vni), zap.Stringer("mac", m),
			zap.Stringer("from", best.vtep), zap.Uint32("seq", l.seq))
	}
	if ip.IsValid() {
		l.ips = append(l.ips, ip)
	}
	ms.local = l
	t.announceMAC(vs, m, netip.Addr{}, l.seq)
	for _, a := range l.ips {
		t.announceMAC(vs, m, a, l.seq)
	}
	t.resolve(vs, m)
}

// localGone: the MAC aged out of, or moved away from, the local ports.
func (t *table) localGone(vni uint32, m flowtable.MAC) {
	vs := t.vnis[vni]
	if vs == nil {
		return
	}
	ms := vs.macs[m]
	if ms == nil || ms.local == nil {
		return
	}
	t.withdrawLocal(vs, m, ms.local)
	ms.local = nil
	t.resolve(vs, m)
}

func (t *table) announceMAC(vs *vniState, m flowtable.MAC, ip netip.Addr, seq uint32) {
	p, err := vs.routes.macIP(m, ip, seq)
	if err == nil {
		err = t.out.announce(p)
	}
	if err != nil {
		t.c.AnnounceErrors++
		t.log.Warn("EVPN: cannot announce a local MAC", zap.Uint32("vni", vs.routes.vni), zap.Stringer("mac", m), zap.Error(err))
	}
}

func (t *table) withdrawLocal(vs *vniState, m flowtable.MAC, l *localMAC) {
	for _, ip := range append([]netip.Addr{{}}, l.ips...) {
		p, err := vs.routes.macIP(m, ip, l.seq)
		if err == nil {
			err = t.out.withdraw(p)
		}
		if err != nil {
			t.c.AnnounceErrors++
			t.log.Warn("EVPN: cannot withdraw a local MAC", zap.Uint32("vni", vs.routes.vni), zap.Stringer("mac", m), zap.Error(err))
		}
	}
}

func containsAddr(l []netip.Addr, a netip.Addr) bool {
	for _, x := range l {
		if x == a {
			return true
		}
	}
	return false
}

// vniStatus reports one VNI (Status).
func (t *table) vniStatus(vs *vniState) VNIStatus {
	s := VNIStatus{VNI: vs.routes.vni, RD: fmt.Sprint(vs.routes.rd), AdvertisedType3: 1}
	for _, rt := range vs.routes.export {
		s.ExportRTs = append(s.ExportRTs, rt.String())
	}
	for vtep := range vs.flood {
		s.FloodVTEPs = append(s.FloodVTEPs, vtep)
	}
	sort.Slice(s.FloodVTEPs, func(i, j int) bool { return s.FloodVTEPs[i].Less(s.FloodVTEPs[j]) })
	s.ReceivedType3 = len(vs.type3)
	for _, ms := range vs.macs {
		s.ReceivedType2 += len(ms.remote)
		if ms.installed.vtep.IsValid() {
			s.RemoteMACs++
		}
		if ms.local != nil {
			s.LocalMACs++
			s.AdvertisedType2 += 1 + len(ms.local.ips)
		}
	}
	return s
}
