package vswitch

import (
	"testing"

	"xswitch/flowtable"
)

// TestAbsentPortDrops: in a generation where a local port has no sockets,
// frames to it are port_absent drops (their frames returned), flooding
// skips it with the same count, and the rest of the bridge still works.
func TestAbsentPortDrops(t *testing.T) {
	r := newRig(t)
	br := r.f.bridges[0]
	br.table.Learn(flowtable.MACFrom(macB), r.b.dest, 1)
	g := *r.f
	g.gen++
	g.ports = append([]*port(nil), r.f.ports...)
	// The next generation's structs: a in a bridge whose b is absent.
	nb := *br
	a, gone := clonePort(r.a), clonePort(r.b)
	a.br, gone.br, gone.absent = &nb, &nb, true
	g.ports[a.id], g.ports[gone.id] = a, gone
	nb.locals = []*port{a, gone}
	g.bridges = []*bridge{&nb, r.f.bridges[1]}
	r.c.setFabric(&g)
	r.reset()
	free := len(r.c.free)
	r.c.forward(a, []desc{r.frame(eth(macB, macA, 60))})
	if d := r.c.ctr[r.b.id].drops[dropPortAbsent]; d != 1 {
		t.Errorf("port_absent drops %d, want 1", d)
	}
	if len(r.c.free) != free+1 {
		t.Errorf("free frames %d -> %d: the dropped frame was not returned", free, len(r.c.free))
	}
	r.c.forward(a, []desc{r.frame(eth(bcast, macA, 60))})
	if d := r.c.ctr[r.b.id].drops[dropPortAbsent]; d != 2 {
		t.Errorf("port_absent drops %d after a flood, want 2", d)
	}
	if n := len(r.c.pend[0]); n != 2 {
		t.Errorf("the flood reached %d tunnels, want 2", n)
	}
	r.tapRead0()
}

// TestStaticMACReason: a frame claiming a configured static MAC is a
// static_mac drop; one claiming the internal port's own MAC stays own_mac.
func TestStaticMACReason(t *testing.T) {
	r := newOwnMACRig(t)
	cfgMAC := []byte{2, 0, 0, 0, 0xaa, 1}
	if err := r.f.bridges[0].table.AddStatic(flowtable.MACFrom(cfgMAC), r.a.dest); err != nil {
		t.Fatal(err)
	}
	r.c.forward(r.b, []desc{r.frame(eth(bcast, cfgMAC, 60))})
	r.c.forward(r.b, []desc{r.frame(eth(bcast, macI, 60))})
	if s, o := r.c.ctr[r.b.id].drops[dropStaticMAC], r.c.ctr[r.b.id].drops[dropOwnMAC]; s != 1 || o != 1 {
		t.Errorf("static_mac %d own_mac %d, want 1 and 1", s, o)
	}
	if d, _ := r.f.bridges[0].table.Lookup(flowtable.MACFrom(cfgMAC)); d != r.a.dest {
		t.Errorf("static MAC moved to %v", d)
	}
}

// TestSetFabricGrows: a generation with more ids grows a core's counters
// (keeping their values) and gives new ports transmit lists.
func TestSetFabricGrows(t *testing.T) {
	r := newRig(t)
	r.c.ctr[r.a.id].rxPackets = 7
	g := r.f.grown(64, 32)
	r.c.setFabric(g)
	if len(r.c.ctr) != 64 || len(r.c.tctr) != 32 || len(r.c.pend) != 64 {
		t.Fatalf("lengths %d %d %d", len(r.c.ctr), len(r.c.tctr), len(r.c.pend))
	}
	if r.c.ctr[r.a.id].rxPackets != 7 || r.c.counters().ctr[r.a.id].rxPackets != 7 {
		t.Errorf("counter lost in the growth")
	}
	if cap(r.c.pend[40]) != 0 {
		t.Errorf("a tombstone got a transmit list")
	}
	if a := testing.AllocsPerRun(10, func() { r.c.setFabric(g) }); a != 0 {
		t.Errorf("setFabric of the same generation allocates %.0f times", a)
	}
}

// clonePort is p's next-generation struct (a port holds an atomic, which
// must not be copied whole).
func clonePort(p *port) *port {
	return &port{id: p.id, name: p.name, kind: p.kind, br: p.br, dest: p.dest, fd: p.fd, tx: p.tx,
		maxFrame: p.maxFrame, txCsum: p.txCsum, absent: p.absent}
}
