package vswitch

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"xswitch/evpn"
	"xswitch/flowtable"
)

// The switch as the EVPN speaker's data plane (docs/fabric.md).
//
// The speaker's calls only record what it wants (evpnWant) and wake the
// applier, which after a short batching window makes the fabric match in
// one generation: new tunnels get ids, one generation with them is
// published (the resolver learns them), the remote MACs become static
// entries on their tunnels, and tunnels nobody wants any more are retired
// like the tunnels of a reload. A burst of hundreds of routes is one
// generation, not hundreds.
//
// Sources. A tunnel the EVPN routes ask for, to a remote that is also a
// configured tunnel of the bridge (same remote, no options), is that
// configured tunnel: one tunnel per remote and bridge, so a frame is
// flooded once and a received frame has one source; it is shown as
// "static" and stays when the routes go. Otherwise it is an "evpn"
// tunnel, created and removed at run time. Remote MACs are static entries
// ("evpn" in ctl fdb): learning from tunnel traffic cannot move them; a
// configured static_macs entry for the same MAC wins over them.
//
// Flooding. A bridge floods to all its tunnels. An EVPN tunnel exists
// while its VTEP has a type-3 route or an installed MAC (the speaker's
// reference count), so the flood list is the type-3 list except for a
// remote that announced MACs without a type-3 route (not seen from
// RFC 8365 speakers): such a remote gets floods too.
//
// MAC moving here. A frame from a local port whose source MAC is an EVPN
// entry on a tunnel is refused by learning like any static claim (that
// frame is dropped), but its MAC and port are noted (evpnClaims,
// lock-free, on the refusal path only); the control loop (every 250 ms)
// then replaces the entry by one learned on that port and reports it at
// once (LocalMACLearned): the speaker announces it with the next sequence
// number.

// evpnDelay is the batching window of the applier: the routes of a burst
// (a peer's whole table after a session comes up) arrive within it.
const evpnDelay = 5 * time.Millisecond

type evpnState struct {
	s   *Switch
	sp  *evpn.Speaker
	log *zap.Logger

	mu   sync.Mutex
	want map[uint32]*evpnWant // by VNI
	kick chan struct{}

	// Under Switch.applyMu: what the fabric has (buildFabric and
	// applyStatics read it), and the tunnels EVPN created.
	// Changed under both, read under either.
	applied map[string]*evpnApplied // by bridge name
	owned   map[tunKey]*tunnel
	claimsB map[string]*evpnClaims // by bridge name; kept across generations

	// The diff loop's view of the local MACs announced, by VNI.
	local map[uint32]map[flowtable.MAC]bool

	gens uint64 // generations published by the applier (tests)
}

type evpnWant struct {
	tunnels map[netip.Addr]bool
	flood   map[netip.Addr]bool
	macs    map[flowtable.MAC]evpnMAC
	claimed map[flowtable.MAC]uint32 // MACs seen moving here: the sequence number then
}

type evpnMAC struct {
	vtep netip.Addr
	seq  uint32
}

type evpnApplied struct {
	tunnels []netip.Addr // sorted
	macs    map[flowtable.MAC]netip.Addr
}

// evpnClaims notes MACs that local frames claim while they are EVPN
// entries on a tunnel, with the port the frame came in on: a fixed set of
// slots written by pollers with one atomic store each (MAC in the low 48
// bits, port id + 1 in the next 15, 0 for an id that does not fit), drained
// by the control loop. A lost note (two MACs in one slot) is noted again by
// the MAC's next frame.
type evpnClaims struct{ slots [64]atomic.Uint64 }

const claimPortBits = 15

func (c *evpnClaims) note(m flowtable.MAC, port flowtable.Dest) {
	p := uint64(0)
	if uint64(port) < 1<<claimPortBits-1 {
		p = uint64(port) + 1
	}
	c.slots[uint64(m)*0x9e3779b97f4a7c15>>58].Store(uint64(m) | p<<48 | 1<<63)
}

// drain calls fn for each noted MAC; ok is false when the port is unknown.
func (c *evpnClaims) drain(fn func(m flowtable.MAC, port flowtable.Dest, ok bool)) {
	for i := range c.slots {
		if v := c.slots[i].Swap(0); v != 0 {
			p := (v >> 48) & (1<<claimPortBits - 1)
			fn(flowtable.MAC(v&(1<<48-1)), flowtable.Dest(p-1), p != 0)
		}
	}
}

func newEVPNState(s *Switch) *evpnState {
	e := &evpnState{s: s, log: s.log.Named("evpn-dp"), want: map[uint32]*evpnWant{}, kick: make(chan struct{}, 1),
		applied: map[string]*evpnApplied{}, owned: map[tunKey]*tunnel{}, local: map[uint32]map[flowtable.MAC]bool{},
		claimsB: map[string]*evpnClaims{}}
	for _, v := range s.cfg.EVPN.VNIs {
		e.want[uint32(v.VNI)] = &evpnWant{tunnels: map[netip.Addr]bool{}, flood: map[netip.Addr]bool{},
			macs: map[flowtable.MAC]evpnMAC{}, claimed: map[flowtable.MAC]uint32{}}
	}
	return e
}

// wantOf is the wanted state of vni, or an error for a VNI without bridge.
// Caller holds e.mu.
func (e *evpnState) wantOf(vni uint32) (*evpnWant, error) {
	w := e.want[vni]
	if w == nil {
		return nil, fmt.Errorf("VNI %d is not an EVPN bridge of this switch", vni)
	}
	return w, nil
}

func (e *evpnState) change(vni uint32, fn func(w *evpnWant)) error {
	e.mu.Lock()
	w, err := e.wantOf(vni)
	if err == nil {
		fn(w)
	}
	e.mu.Unlock()
	if err == nil {
		e.poke()
	}
	return err
}

// poke wakes the applier.
func (e *evpnState) poke() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// AddTunnel implements evpn.Dataplane.
func (e *evpnState) AddTunnel(vni uint32, vtep netip.Addr) error {
	return e.change(vni, func(w *evpnWant) { w.tunnels[vtep] = true })
}

// RemoveTunnel implements evpn.Dataplane.
func (e *evpnState) RemoveTunnel(vni uint32, vtep netip.Addr) error {
	return e.change(vni, func(w *evpnWant) { delete(w.tunnels, vtep) })
}

// AddFloodVTEP implements evpn.Dataplane. The flood list is the tunnel
// list (see the comment at the top); the membership is kept for status.
func (e *evpnState) AddFloodVTEP(vni uint32, vtep netip.Addr) error {
	return e.change(vni, func(w *evpnWant) { w.flood[vtep] = true })
}

// RemoveFloodVTEP implements evpn.Dataplane.
func (e *evpnState) RemoveFloodVTEP(vni uint32, vtep netip.Addr) error {
	return e.change(vni, func(w *evpnWant) { delete(w.flood, vtep) })
}

// SetRemoteMAC implements evpn.Dataplane. A newer route than the one a
// local claim saw ends the claim: the MAC moved on.
func (e *evpnState) SetRemoteMAC(vni uint32, mac flowtable.MAC, vtep netip.Addr, seq uint32) error {
	return e.change(vni, func(w *evpnWant) {
		if c, ok := w.claimed[mac]; ok && seq > c {
			delete(w.claimed, mac)
		}
		w.macs[mac] = evpnMAC{vtep: vtep, seq: seq}
	})
}

// RemoveRemoteMAC implements evpn.Dataplane.
func (e *evpnState) RemoveRemoteMAC(vni uint32, mac flowtable.MAC) error {
	return e.change(vni, func(w *evpnWant) {
		delete(w.macs, mac)
		delete(w.claimed, mac)
	})
}

// snapshot copies the wanted state per bridge name.
func (e *evpnState) snapshot(c *Config) map[string]*evpnApplied {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]*evpnApplied{}
	for bi := range c.Bridges {
		bc := &c.Bridges[bi]
		w := e.want[bc.VNI]
		if w == nil || !c.EVPNBridge(bc) {
			continue
		}
		a := &evpnApplied{macs: map[flowtable.MAC]netip.Addr{}}
		for v := range w.tunnels {
			a.tunnels = append(a.tunnels, v)
		}
		slices.SortFunc(a.tunnels, func(x, y netip.Addr) int { return x.Compare(y) })
		for m, r := range w.macs {
			if _, claimed := w.claimed[m]; !claimed && w.tunnels[r.vtep] {
				a.macs[m] = r.vtep
			}
		}
		out[bc.Name] = a
	}
	return out
}

// evpnTunnelConfig is the tunnel configuration of an EVPN tunnel: no
// options, the bridge's VNI.
func evpnTunnelConfig(bc *BridgeConfig, vtep netip.Addr) *TunnelConfig {
	return &TunnelConfig{RemoteIP: vtep.String(), Key: int64(bc.VNI), Remote: vtep}
}

// apply makes the fabric match the wanted state in one generation (none
// when nothing changed).
func (e *evpnState) apply() {
	s := e.s
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if s.closed.Load() {
		return
	}
	next := e.snapshot(s.cfg)
	if e.same(next) {
		return
	}
	var added []int
	wanted := map[tunKey]bool{}
	for bi := range s.cfg.Bridges {
		bc := &s.cfg.Bridges[bi]
		a := next[bc.Name]
		if a == nil {
			continue
		}
		for _, v := range a.tunnels {
			tc := evpnTunnelConfig(bc, v)
			if !hasFamily(s.underlayLocal, v) {
				e.log.Warn("EVPN tunnel of a family the underlay has no address of: not created", zap.String("bridge", bc.Name), zap.Stringer("vtep", v))
				continue
			}
			k := tunKeyOf(bc, tc)
			wanted[k] = true
			if s.tuns[k] == nil {
				t := s.addTunnel(bc, tc)
				e.mu.Lock()
				e.owned[k] = t
				e.mu.Unlock()
				added = append(added, t.id)
			}
		}
	}
	e.mu.Lock()
	e.applied = next
	e.mu.Unlock()
	s.ensureSpace()
	s.mu.Lock()
	for _, id := range added {
		s.dp.zeroTunnel(id)
	}
	s.mu.Unlock()
	f := s.buildFabric(s.cfg)
	s.fab.Store(f)
	_ = s.updateResolver(f)
	if err := s.applyStatics(s.cfg, f); err != nil {
		e.log.Warn("EVPN MAC entries", zap.Error(err))
	}
	s.dp.waitGen(f.gen)
	e.gens++
	for k, t := range e.owned {
		if wanted[k] {
			continue
		}
		e.mu.Lock()
		delete(e.owned, k)
		e.mu.Unlock()
		delete(s.tuns, k)
		if tr := s.tables[k.bridge]; tr != nil {
			tr.flush(t.dest)
		}
		s.tunIDs.put(t.id)
	}
}

// same reports whether next is what the fabric has.
func (e *evpnState) same(next map[string]*evpnApplied) bool {
	if len(next) != len(e.applied) {
		return false
	}
	for name, a := range next {
		o := e.applied[name]
		if o == nil || !slices.Equal(a.tunnels, o.tunnels) || len(a.macs) != len(o.macs) {
			return false
		}
		for m, v := range a.macs {
			if o.macs[m] != v {
				return false
			}
		}
	}
	return true
}

// tunnelsFor are the EVPN tunnels of bridge bc in the current generation
// that are not configured ones. Caller holds applyMu (buildFabric).
func (e *evpnState) tunnelsFor(bc *BridgeConfig) []*tunnel {
	a := e.applied[bc.Name]
	if a == nil {
		return nil
	}
	var out []*tunnel
	for _, v := range a.tunnels {
		if t := e.owned[tunKeyOf(bc, evpnTunnelConfig(bc, v))]; t != nil {
			out = append(out, t)
		}
	}
	return out
}

// staticsFor adds the EVPN MAC entries of bridge b to want (configured
// ones are added after them and win). Caller holds applyMu.
func (e *evpnState) staticsFor(b *bridge, want map[flowtable.MAC]flowtable.Dest) {
	a := e.applied[b.name]
	if a == nil {
		return
	}
	for m, v := range a.macs {
		if t := b.findRemote(v); t != nil {
			want[m] = t.dest
		}
	}
}

// isOwned reports whether t was created for EVPN routes (else configured).
func (e *evpnState) isOwned(t *tunnel) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, o := range e.owned {
		if o == t {
			return true
		}
	}
	return false
}

// disown makes an EVPN tunnel a configured one (a reload added it).
// Caller holds applyMu.
func (e *evpnState) disown(t *tunnel) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, o := range e.owned {
		if o == t {
			delete(e.owned, k)
		}
	}
}

// adopt keeps a configured tunnel a reload removes when the EVPN routes
// still want it: it becomes an EVPN tunnel, put back into the fabric by
// the next application. Caller holds applyMu.
func (e *evpnState) adopt(k tunKey, t *tunnel) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.applied[k.bridge]
	if a == nil || k.opts != "" || !slices.Contains(a.tunnels, k.remote) {
		return false
	}
	e.owned[k] = t
	// Not in the fabric now: the next application differs and puts it back.
	a.tunnels = slices.DeleteFunc(slices.Clone(a.tunnels), func(v netip.Addr) bool { return v == k.remote })
	e.poke()
	return true
}

// claimsFor is the claim box of an EVPN bridge, nil for others. Caller
// holds applyMu.
func (e *evpnState) claimsFor(bc *BridgeConfig) *evpnClaims {
	if !e.s.cfg.EVPNBridge(bc) {
		return nil
	}
	c := e.claimsB[bc.Name]
	if c == nil {
		c = &evpnClaims{}
		e.claimsB[bc.Name] = c
	}
	return c
}

// tunnelSource is "evpn" for a tunnel the routes created, else "static".
func (s *Switch) tunnelSource(t *tunnel) string {
	if s.ev != nil && s.ev.isOwned(t) {
		return "evpn"
	}
	return "static"
}

// macSource says where a MAC table entry came from.
func (s *Switch) macSource(b *bridge, en flowtable.Entry) string {
	if !en.Static {
		return "learned"
	}
	if s.ev != nil && en.Dest&tunnelBit != 0 {
		s.ev.mu.Lock()
		defer s.ev.mu.Unlock()
		if a := s.ev.applied[b.name]; a != nil {
			if v, ok := a.macs[en.MAC]; ok && v == b.tunnelRemote(en.Dest) {
				return "evpn"
			}
		}
	}
	return "static"
}

// tunnelRemote is the remote of tunnel dest d in b, or the zero Addr.
func (b *bridge) tunnelRemote(d flowtable.Dest) netip.Addr {
	for _, t := range b.tunnels {
		if t.dest == d {
			return t.remote
		}
	}
	return netip.Addr{}
}

// start creates and starts the speaker, the applier and the local MAC
// loop. The speaker starts after the first generation: routes may come
// at once.
func (e *evpnState) start() error {
	sp, err := evpn.New(e.s.cfg.EVPN, e, e.s.log)
	if err != nil {
		return err
	}
	e.sp = sp
	e.s.wg.Add(2)
	go e.applier()
	go e.localLoop()
	if err := sp.Start(context.Background()); err != nil {
		return err
	}
	return nil
}

// stop closes the BGP sessions (the reflectors withdraw our routes at once).
func (e *evpnState) stopSpeaker() {
	if e.sp != nil {
		e.sp.Stop()
	}
}

func (e *evpnState) applier() {
	defer e.s.wg.Done()
	for {
		select {
		case <-e.s.stop:
			return
		case <-e.kick:
		}
		select {
		case <-e.s.stop:
			return
		case <-time.After(evpnDelay):
		}
		e.apply()
	}
}

// localLoop reports the local MACs to the speaker (a diff once a second)
// and handles MACs moving here (every 250 ms).
func (e *evpnState) localLoop() {
	defer e.s.wg.Done()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	soon := 0 // ticks left to scan at every tick: a claimed MAC is learned with its next frame
	for n := 0; ; n++ {
		select {
		case <-e.s.stop:
			return
		case <-t.C:
		}
		if e.claims() {
			soon = 4
			e.scanLocal()
			continue
		}
		if soon > 0 || n%4 == 0 {
			soon = max(0, soon-1)
			e.scanLocal()
		}
	}
}

// claims removes the EVPN entries of MACs local frames claimed, so that
// the next frame is learned locally. It reports whether there were any.
func (e *evpnState) claims() bool {
	s := e.s
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	any := false
	for _, b := range s.cur().bridges {
		if b.claims == nil {
			continue
		}
		b.claims.drain(func(m flowtable.MAC, port flowtable.Dest, portOK bool) {
			a := e.applied[b.name]
			if a == nil {
				return
			}
			if _, ok := a.macs[m]; !ok {
				return // a configured static entry, or gone meanwhile
			}
			e.mu.Lock()
			if w := e.want[b.vni]; w != nil {
				w.claimed[m] = w.macs[m].seq
			}
			delete(a.macs, m)
			e.mu.Unlock()
			tr := s.tables[b.name]
			tr.t.RemoveStatic(m)
			delete(tr.statics, m)
			if portOK { // learned there now: the scan that follows reports it
				tr.t.Learn(m, port, s.clock.Now())
			}
			any = true
			e.log.Info("EVPN MAC seen on a local port: moving it here", zap.String("bridge", b.name), zap.Stringer("mac", m))
		})
	}
	return any
}

// scanLocal diffs the local entries of each EVPN bridge's MAC table (local
// and internal ports, learned or static) with what was reported.
func (e *evpnState) scanLocal() {
	s := e.s
	f := s.cur()
	now := s.clock.Now()
	type ev struct {
		vni  uint32
		mac  flowtable.MAC
		ips  []netip.Addr
		gone bool
	}
	var evs []ev
	for _, b := range f.bridges {
		if b.claims == nil { // not an EVPN bridge (buildFabric gives only those a box)
			continue
		}
		cur := map[flowtable.MAC]bool{}
		for _, en := range b.table.Entries(now) {
			if en.Dest&tunnelBit == 0 {
				cur[en.MAC] = true
			}
		}
		old := e.local[b.vni]
		for m := range cur {
			if !old[m] {
				x := ev{vni: b.vni, mac: m}
				if p := b.internal; p != nil {
					if d, ok := b.table.Lookup(m); ok && d == p.dest {
						for _, pfx := range b.cfg.Prefixes {
							x.ips = append(x.ips, pfx.Addr())
						}
					}
				}
				evs = append(evs, x)
			}
		}
		for m := range old {
			if !cur[m] {
				evs = append(evs, ev{vni: b.vni, mac: m, gone: true})
			}
		}
		e.local[b.vni] = cur
	}
	for _, x := range evs {
		switch {
		case x.gone:
			e.sp.LocalMACGone(x.vni, x.mac)
		case len(x.ips) == 0:
			e.sp.LocalMACLearned(x.vni, x.mac, netip.Addr{})
		default:
			for _, ip := range x.ips {
				e.sp.LocalMACLearned(x.vni, x.mac, ip)
			}
		}
	}
}

// EVPNStatus is the speaker's status for `ctl bgp`; ok is false without
// an evpn: section.
func (s *Switch) EVPNStatus(ctx context.Context) (st evpn.Status, ok bool) {
	if s.ev == nil || s.ev.sp == nil {
		return st, false
	}
	return s.ev.sp.Status(ctx), true
}
