package vswitch

import (
	"testing"

	"xswitch/flowtable"
)

// macI is the internal port's MAC in these tests; switch.New installs the
// real one the same way (AddStatic on the internal port's Dest).
var macI = []byte{2, 0, 0, 0, 0, 0x1e}

func newOwnMACRig(t *testing.T) *rig {
	r := newRig(t)
	if err := r.f.bridges[0].table.AddStatic(flowtable.MACFrom(macI), r.internal.dest); err != nil {
		t.Fatal(err)
	}
	return r
}

// checkOwnMACDropped: the frame was dropped (nothing queued, nothing to the
// internal port, its UMEM frame returned) and the internal port's MAC is
// still on the internal port.
func (r *rig) checkOwnMACDropped(t *testing.T, free int) {
	t.Helper()
	for i, q := range r.c.pend {
		if len(q) != 0 {
			t.Errorf("port %d got %d frames", i, len(q))
		}
	}
	if n := len(r.tapRead()); n != 0 {
		t.Errorf("internal port got %d frames", n)
	}
	if len(r.c.free) != free+1 {
		t.Errorf("free frames %d -> %d: the dropped frame was not returned", free, len(r.c.free))
	}
	if d, ok := r.f.bridges[0].table.Lookup(flowtable.MACFrom(macI)); !ok || d != r.internal.dest {
		t.Errorf("internal port's MAC on %v %v, want the internal port %v", d, ok, r.internal.dest)
	}
}

// TestOwnMACFromTunnel: a Geneve frame from a configured remote whose inner
// source is the internal port's MAC is dropped and counted as own_mac on
// that tunnel; the MAC stays on the internal port, so traffic to the host
// keeps going to it.
func TestOwnMACFromTunnel(t *testing.T) {
	r := newOwnMACRig(t)
	for _, dst := range [][]byte{bcast, macA, macI} {
		r.reset()
		free := len(r.c.free)
		r.c.forward(r.f.underlay, []desc{r.frame(geneveFrom(t, remote1, 5000, eth(dst, macI, 60), nil, false))})
		r.checkOwnMACDropped(t, free)
	}
	if n := r.c.tctr[r.t1.id].drops[dropOwnMAC]; n != 3 {
		t.Errorf("own_mac drops on the tunnel to remote1: %d, want 3", n)
	}
	if n := r.drops(r.f.underlay, dropOwnMAC); n != 0 {
		t.Errorf("own_mac counted on the underlay port too (%d): once, on the tunnel", n)
	}
	// Unicast to the host from a local port still reaches the internal port.
	r.reset()
	r.c.forward(r.b, []desc{r.frame(eth(macI, macB, 60))})
	if got := r.tapRead(); len(got) != 1 {
		t.Errorf("unicast to the internal port's MAC: %d frames on the internal port, want 1", len(got))
	}
	if s := r.f.bridges[0].table.Stats(); s.StaticConflicts != 3 || s.Moves != 0 {
		t.Errorf("table stats %+v", s)
	}
}

// TestOwnMACFromLocalPort: the same claim from a local port is counted on
// that port; the internal port itself sending with its MAC forwards as usual.
func TestOwnMACFromLocalPort(t *testing.T) {
	r := newOwnMACRig(t)
	free := len(r.c.free)
	r.c.forward(r.a, []desc{r.frame(eth(bcast, macI, 60))})
	r.checkOwnMACDropped(t, free)
	if n := r.drops(r.a, dropOwnMAC); n != 1 {
		t.Errorf("own_mac drops on vm1: %d, want 1", n)
	}
	// From the internal port with its own MAC: known unicast to vm1 goes there.
	r.reset()
	r.f.bridges[0].table.Learn(flowtable.MACFrom(macA), r.a.dest, 1)
	r.c.forward(r.internal, []desc{r.frame(eth(macA, macI, 60))})
	if n := len(r.c.pend[r.a.id]); n != 1 {
		t.Errorf("frame from the internal port to vm1: %d queued on vm1, want 1", n)
	}
	for _, p := range r.f.ports {
		if n := r.drops(p, dropOwnMAC); p != r.a && n != 0 {
			t.Errorf("own_mac drops on %s: %d", p.name, n)
		}
	}
}

// TestFlapDampedStillForwards: a MAC flapping between two local ports moves
// FlapMoves times, then stays; frames whose move was refused are forwarded
// all the same (damping limits the table, not the traffic) and counted in
// the bridge's FDB stats.
func TestFlapDampedStillForwards(t *testing.T) {
	r := newRig(t)
	m := []byte{2, 0, 0, 0, 7, 7}
	for n := 0; n < 2*flowtable.DefaultFlapMoves; n++ {
		r.reset()
		in := r.a
		if n%2 == 1 {
			in = r.b
		}
		r.c.forward(in, []desc{r.frame(eth(bcast, m, 60))})
		if got := len(r.tapRead()); got != 1 {
			t.Fatalf("frame %d from %s: %d frames flooded to the internal port, want 1", n, in.name, got)
		}
	}
	// Frame 0 adds the MAC on vm1, frames 1..5 move it (ending on vm2),
	// frames 6 and 8 (vm1) are refused moves; 7 and 9 (vm2) are where it is.
	s := fdbStats(r.f.bridges[0].table.Stats())
	if s.Moves != flowtable.DefaultFlapMoves || s.MovesDamped != 2 {
		t.Errorf("FDB stats %+v: want %d moves and 2 damped", s, flowtable.DefaultFlapMoves)
	}
	if d, _ := r.f.bridges[0].table.Lookup(flowtable.MACFrom(m)); d != r.b.dest {
		t.Errorf("held MAC on %v, want vm2 %v", d, r.b.dest)
	}
	for _, p := range r.f.ports {
		for reason, n := range r.c.ctr[p.id].drops {
			if n != 0 {
				t.Errorf("%s: %d %s drops", p.name, n, dropReason(reason))
			}
		}
	}
}

// TestOwnMACDropAllocs: the own_mac drop does not allocate.
func TestOwnMACDropAllocs(t *testing.T) {
	r := newOwnMACRig(t)
	frames := [][]byte{geneveFrom(t, remote1, 5000, eth(bcast, macI, 60), nil, false), eth(bcast, macI, 60)}
	ins := []*port{r.f.underlay, r.a}
	descs := make([]desc, 1)
	allocs := testing.AllocsPerRun(200, func() {
		r.reset()
		for i, f := range frames {
			descs[0] = r.frame(f)
			r.c.forward(ins[i], descs)
		}
	})
	if allocs != 0 {
		t.Errorf("own_mac drops allocate %.1f times per batch", allocs)
	}
	if r.c.tctr[r.t1.id].drops[dropOwnMAC] == 0 || r.drops(r.a, dropOwnMAC) == 0 {
		t.Error("the frames were not own_mac drops")
	}
}
