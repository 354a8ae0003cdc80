package vswitch

import (
	"net/netip"
	"sync/atomic"

	"xswitch/flowtable"
	"xswitch/geneve"
	"xswitch/xsk"
)

// Fabric generations (RCU style). The packet path reads a *fabric that is
// never changed once published. A change — a reload, a local port's
// interface going or coming back, later EVPN routes — builds a whole new
// generation from the configuration and the switch's live resources
// (portRes, tunnel, tableRes: sockets, TAPs, encapsulators and MAC tables
// carried over from one generation to the next), publishes it with one
// atomic store (Switch.fab), and waits until every poller has passed a
// batch boundary (each loads the fabric once per batch and records the
// generation it uses) before closing what the old generation still
// referenced. Port and tunnel ids — the flowtable.Dest values — stay the
// same from one generation to the next, so learned entries keep their
// meaning; the id of a removed port or tunnel is reused only after its
// MAC entries are flushed, and until then its slot holds a tombstone (no
// sockets, no encapsulator: frames to it are counted drops).

// portRes is a port's live resources, kept across generations.
type portRes struct {
	id     int
	name   string
	kind   portKind
	bridge string     // bridge name (local and internal ports)
	xp     *xsk.Port  // AF_XDP ports; nil while the interface is absent
	tx     []*txQueue // xp's transmit queues
	tap    *tapDev    // internal ports
	link   string     // linkUp, linkDown or linkAbsent (linkwatch.go)
	ifidx  int        // ifindex xp is bound to
	moved  bool       // scheduled to leave its bridge (reload)
	txCsum bool       // its device finishes checksums asked for in TX metadata (txcsum.go)
	mtu    int        // AF_XDP ports: the MTU planned at open (jumbo.go)
}

// Link states of a port (ctl show).
const (
	linkUp     = "up"
	linkDown   = "down"
	linkAbsent = "absent"
)

// tunKey identifies a tunnel: anything that changes its encapsulation
// makes it another tunnel.
type tunKey struct {
	bridge string
	remote netip.Addr
	vni    uint32
	opts   string // the options' wire bytes
}

func tunKeyOf(b *BridgeConfig, t *TunnelConfig) tunKey {
	var ob []byte
	for _, o := range t.GenOptions {
		ob, _ = geneve.AppendOption(ob, o)
	}
	return tunKey{bridge: b.Name, remote: t.Remote, vni: b.VNI, opts: string(ob)}
}

// tableRes is a bridge's MAC table and the static entries installed in it.
type tableRes struct {
	t       *flowtable.Table
	cfg     flowtable.Config
	statics map[flowtable.MAC]flowtable.Dest
}

// idPool hands out port or tunnel ids: freed ids first (lowest first), so
// that the counter arrays stay as short as the switch is large.
type idPool struct {
	next int
	free []int
}

func (p *idPool) get() int {
	if n := len(p.free); n > 0 {
		best := 0
		for i, id := range p.free {
			if id < p.free[best] {
				best = i
			}
		}
		id := p.free[best]
		p.free = append(p.free[:best], p.free[best+1:]...)
		return id
	}
	p.next++
	return p.next - 1
}

func (p *idPool) put(id int) { p.free = append(p.free, id) }

// space is the length of a generation's id-indexed slices: a power of two
// at least n (and 16), so that growing — which takes an extra generation,
// see Switch.growTo — is rare.
func space(n int) int {
	s := 16
	for s < n {
		s *= 2
	}
	return s
}

// portTomb and tunTomb are the tombstones of free id slots: a port without
// sockets and a tunnel without an encapsulator.
func portTomb(id int) *port {
	return &port{id: id, kind: kindLocal, dest: flowtable.Dest(id), fd: -1, absent: true}
}

func (p *port) isTomb() bool { return p.name == "" }

func tunTomb(id int) *tunnel {
	return &tunnel{id: id, dest: tunnelBit | flowtable.Dest(id)}
}

func (t *tunnel) isTomb() bool { return t.br == nil }

// buildFabric makes the next generation from c and the live resources.
// Caller holds applyMu.
func (s *Switch) buildFabric(c *Config) *fabric {
	old := s.fab.Load()
	f := &fabric{byVNI: map[uint32]*bridge{}, known: c.Known(), clock: s.clock}
	if old != nil {
		f.gen = old.gen + 1
	} else {
		f.gen = 1
	}
	f.ports = make([]*port, s.portSpace)
	for i := range f.ports {
		f.ports[i] = portTomb(i)
	}
	f.tunnels = make([]*tunnel, s.tunSpace)
	for i := range f.tunnels {
		f.tunnels[i] = tunTomb(i)
	}
	if pr := s.ports[s.underlayName]; s.underlayName != "" && pr != nil {
		u := &port{id: pr.id, name: pr.name, kind: kindUnderlay, dest: flowtable.Dest(pr.id), fd: -1, tx: pr.tx, absent: pr.xp == nil,
			txCsum: pr.txCsum}
		if u.absent {
			u.tx = nil
		}
		f.ports[u.id] = u
		f.underlay = u
	}
	for bi := range c.Bridges {
		bc := &c.Bridges[bi]
		b := &bridge{name: bc.Name, vni: bc.VNI, table: s.tables[bc.Name].t, cfg: bc}
		f.bridges = append(f.bridges, b)
		for _, pn := range bc.Ports {
			pr := s.ports[pn]
			if pr == nil || pr.moved {
				continue
			}
			p := &port{id: pr.id, name: pn, kind: kindLocal, br: b, dest: flowtable.Dest(pr.id), fd: -1, txCsum: pr.txCsum}
			if p.absent = pr.xp == nil || pr.link == linkAbsent; !p.absent {
				p.tx = pr.tx
			}
			f.ports[p.id] = p
			b.locals = append(b.locals, p)
		}
		for ti := range bc.Tunnels {
			t := s.tuns[tunKeyOf(bc, &bc.Tunnels[ti])]
			if t.br == nil {
				t.br = b // name and VNI: fixed for the tunnel's life
			}
			f.tunnels[t.id] = t
			b.tunnels = append(b.tunnels, t)
		}
		if s.ev != nil {
			b.tunnels = append(b.tunnels, s.ev.tunnelsFor(bc)...)
			for _, t := range b.tunnels {
				if t.br == nil {
					t.br = b
				}
				f.tunnels[t.id] = t
			}
			b.claims = s.ev.claimsFor(bc)
			b.uuLocal = b.claims != nil && !c.EVPN.FloodUnknown()
		}
		if len(b.tunnels) > 0 {
			f.byVNI[b.vni] = b
		}
		if pr := s.ports[bc.Name]; bc.HasInternal() && pr != nil && pr.tap != nil {
			p := &port{id: pr.id, name: bc.Name, kind: kindInternal, br: b, dest: flowtable.Dest(pr.id), fd: pr.tap.fd,
				maxFrame: pr.tap.mtu + geneve.EthLen}
			f.ports[p.id] = p
			f.taps = append(f.taps, p)
			b.internal = p
		}
	}
	for _, p := range f.ports {
		if len(p.tx) > 0 {
			f.xdp = append(f.xdp, p.id)
		}
	}
	carryCaptures(old, f)
	return f
}

// carryCaptures hands the captures running on old's ports (xswitch ctl
// capture) to the same ports of f, which replace them (Switch.applyMu held:
// a capture starts and stops under it too).
func carryCaptures(old, f *fabric) {
	if old == nil {
		return
	}
	for id, p := range f.ports {
		if id < len(old.ports) && p.name != "" && old.ports[id].name == p.name {
			if cp := old.ports[id].capture.Load(); cp != nil {
				p.capture.Store(cp)
			}
		}
	}
}

// grown is f with longer id-indexed slices (tombstones in the new slots):
// published before a generation that uses the new ids, so that no poller
// still on f can meet an id beyond its slices in a MAC table.
func (f *fabric) grown(nports, ntuns int) *fabric {
	g := *f
	g.gen = f.gen + 1
	g.ports = append([]*port(nil), f.ports...)
	for len(g.ports) < nports {
		g.ports = append(g.ports, portTomb(len(g.ports)))
	}
	g.tunnels = append([]*tunnel(nil), f.tunnels...)
	for len(g.tunnels) < ntuns {
		g.tunnels = append(g.tunnels, tunTomb(len(g.tunnels)))
	}
	return &g
}

// staticClaim is the drop reason of a frame whose source MAC is static on
// another Dest: own_mac when it is the internal port's MAC, static_mac for
// a configured entry. Only frames refused by Learn get here.
func staticClaim(br *bridge, m flowtable.MAC, src flowtable.Dest, local bool) dropReason {
	d, ok := br.table.Lookup(m)
	if ok && br.internal != nil && d == br.internal.dest {
		return dropOwnMAC
	}
	if ok && local && br.claims != nil && d&tunnelBit != 0 {
		br.claims.note(m, src) // perhaps an EVPN MAC moving here (evpn.go)
	}
	return dropStaticMAC
}

// fullReason is the drop reason of a frame for a port whose transmit list
// is full: a port without sockets has none at all.
func fullReason(p *port) dropReason {
	if p.absent {
		return dropPortAbsent
	}
	return dropTxFull
}

// ctrSet are a core's id-indexed counters, published for the control path
// (the poller replaces the arrays when a generation has more ids).
type ctrSet struct {
	ctr  []portCtr
	tctr []tunCtr
	off  []offCtr
}

// setFabric moves the core to generation f at a batch boundary (every
// transmit list empty): counters and transmit lists grow to f's ids, a
// port without sockets gets no transmit list. It allocates only when f
// differs from the previous generation in these respects.
func (c *core) setFabric(f *fabric) {
	c.f = f
	grow := false
	if n := len(f.ports); n > len(c.ctr) {
		c.ctr = append(c.ctr, make([]portCtr, n-len(c.ctr))...)
		c.off = append(c.off, make([]offCtr, n-len(c.off))...)
		grow = true
	}
	if n := len(f.tunnels); n > len(c.tctr) {
		c.tctr = append(c.tctr, make([]tunCtr, n-len(c.tctr))...)
		grow = true
	}
	if grow || c.pub.Load() == nil {
		c.pub.Store(&ctrSet{ctr: c.ctr, tctr: c.tctr, off: c.off})
	}
	for len(c.pend) < len(f.ports) {
		c.pend = append(c.pend, nil)
	}
	maxTun := 1
	for _, b := range f.bridges {
		maxTun = max(maxTun, len(b.tunnels))
	}
	for _, p := range f.ports {
		// AF_XDP ports have room for a burst of multi-buffer frames
		// sent as more pieces than they came in (multibuf.go).
		n := 2 * maxBurst
		switch {
		case p.absent:
			n = 0
		case p.kind == kindUnderlay:
			n = 2 * maxBurst * maxTun
		case p.fd >= 0:
			n = maxBurst // internal port: the coalescer's burst
		}
		if cap(c.pend[p.id]) != n || c.pend[p.id] == nil {
			c.pend[p.id] = make([]desc, 0, n)
		}
	}
	if len(f.taps) > 0 && c.gro == nil {
		c.gro = newTapGRO()
	}
}

// counters returns the core's counters for the control path.
func (c *core) counters() *ctrSet { return c.pub.Load() }

// retiredCtrs are the counters of pollers that stopped (their port was
// removed or went absent): added to the live ones, so that the counters of
// the ports that stay never go back.
type retiredCtrs struct {
	ports       []portSum
	tuns        []portSum
	offs        []offSum
	opts        map[uint32]uint64
	optOverflow uint64
	flood, tap  uint64
}

// add folds a stopped core's counters in.
func (r *retiredCtrs) add(c *core) {
	cs := c.counters()
	for len(r.ports) < len(cs.ctr) {
		r.ports = append(r.ports, portSum{})
		r.offs = append(r.offs, offSum{})
	}
	for len(r.tuns) < len(cs.tctr) {
		r.tuns = append(r.tuns, portSum{})
	}
	for i := range cs.ctr {
		cs.ctr[i].addTo(&r.ports[i])
		cs.off[i].addTo(&r.offs[i])
	}
	for i := range cs.tctr {
		cs.tctr[i].addTo(&r.tuns[i])
	}
	if r.opts == nil {
		r.opts = map[uint32]uint64{}
	}
	r.optOverflow += c.opt.addTo(r.opts)
	r.flood += atomic.LoadUint64(&c.floodCopies)
	r.tap += atomic.LoadUint64(&c.tapCopies)
}

// zeroPort and zeroTunnel clear the counters of a reused id (no poller
// writes them: the id was free). Caller holds Switch.mu.
func (d *dataPlane) zeroPort(id int) {
	for _, c := range d.all {
		if cs := c.counters(); id < len(cs.ctr) {
			cs.ctr[id] = portCtr{}
			cs.off[id] = offCtr{}
		}
	}
	if id < len(d.retired.ports) {
		d.retired.ports[id] = portSum{}
		d.retired.offs[id] = offSum{}
	}
}

func (d *dataPlane) zeroTunnel(id int) {
	for _, c := range d.all {
		if cs := c.counters(); id < len(cs.tctr) {
			cs.tctr[id] = tunCtr{}
		}
	}
	if id < len(d.retired.tuns) {
		d.retired.tuns[id] = portSum{}
	}
}
