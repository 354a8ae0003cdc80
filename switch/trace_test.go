package vswitch

import (
	"bytes"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"xswitch/flowtable"
	"xswitch/geneve"
)

func (r *rig) traceEnv() traceEnv {
	return traceEnv{frameSize: testFrameSize, rxOff: rxOff, underlayMAC: underMAC, locals: []netip.Addr{localIP}}
}

// trace runs a trace on the rig's fabric and checks that it had no side
// effect: the MAC tables' contents and counters, the rig core's counters
// and the internal port are as before.
func (r *rig) trace(t *testing.T, inPort string, frame []byte) *TraceResult {
	t.Helper()
	type snap struct {
		entries []flowtable.Entry
		stats   flowtable.Stats
	}
	var before []snap
	for _, b := range r.f.bridges {
		before = append(before, snap{b.table.Entries(r.f.clock.Now()), b.table.Stats()})
	}
	ctr := slices.Clone(r.c.ctr)
	res, err := traceFrame(r.f, TraceRequest{Bridge: "br1", InPort: inPort, Frame: frame}, r.traceEnv())
	if err != nil {
		t.Fatalf("trace %s: %v", inPort, err)
	}
	for i, b := range r.f.bridges {
		if !equalEntriesV(b.table.Entries(r.f.clock.Now()), before[i].entries) || b.table.Stats() != before[i].stats {
			t.Errorf("trace changed the MAC table of %s: %+v -> %+v", b.name, before[i].stats, b.table.Stats())
		}
	}
	if !slices.Equal(ctr, r.c.ctr) {
		t.Errorf("trace changed a poller's counters")
	}
	if _, err := unix.Read(r.tapPeer, r.tapBuf[:]); err == nil {
		t.Errorf("trace wrote a frame to the internal port")
	}
	return res
}

func equalEntriesV(a, b []flowtable.Entry) bool { return slices.Equal(a, b) }

func (res *TraceResult) step(name string) string {
	for _, s := range res.Steps {
		if s.Step == name {
			return s.Detail
		}
	}
	return ""
}

func (res *TraceResult) outputNames() []string {
	var out []string
	for _, o := range res.Outputs {
		out = append(out, o.Port)
	}
	slices.Sort(out)
	return out
}

func wantContains(t *testing.T, what, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Errorf("%s: %q lacks %q", what, got, want)
	}
}

// TestTraceFloodFromLocal: a broadcast from vm1 floods to vm2, the internal
// port and both tunnels, each tunnel output with the outer headers its
// Encapsulator writes; learning is reported, not done.
func TestTraceFloodFromLocal(t *testing.T) {
	r := newRig(t)
	frame := eth(bcast, macA, 60)
	res := r.trace(t, "vm1", frame)
	if res.Verdict != "flood" || res.Drop != "" {
		t.Fatalf("verdict %q %q, want flood", res.Verdict, res.Drop)
	}
	wantContains(t, "learn", res.step("learn"), "would learn 02:00:00:00:01:01 on vm1 (new)")
	wantContains(t, "lookup", res.step("lookup"), "broadcast: flood")
	wantContains(t, "flood", res.step("flood"), "to br1, vm2, tunnel:198.18.0.2, tunnel:198.18.0.3; not back to vm1")
	if got, want := res.outputNames(), []string{"br1", "tunnel:198.18.0.2", "tunnel:198.18.0.3", "vm2"}; !slices.Equal(got, want) {
		t.Fatalf("outputs %v, want %v", got, want)
	}
	for _, o := range res.Outputs {
		if o.Kind != "tunnel" {
			if o.Len != len(frame) || o.Geneve != nil || o.Drop != "" {
				t.Errorf("output %+v", o)
			}
			continue
		}
		g := o.Geneve
		if g == nil {
			t.Fatalf("tunnel output %s without Geneve headers", o.Port)
		}
		if g.Src != "198.18.0.1" || "tunnel:"+g.Dst != o.Port || g.VNI != 5000 || g.DstPort != 6081 || g.Proto != "0x6558" ||
			g.SrcMAC != "02:00:00:00:00:aa" || g.DstMAC != "02:00:00:00:00:bb" || g.TTL != 64 || g.SrcPort == 0 {
			t.Errorf("Geneve headers %+v", g)
		}
		wantOpts, wantHdr := []string{}, geneve.IPv4Overhead
		if o.Port == "tunnel:198.18.0.3" {
			wantOpts, wantHdr = []string{"0x0102/0x80:0a0b0c0d"}, geneve.IPv4Overhead+8
		}
		if !slices.Equal(g.Options, wantOpts) || g.HeaderLen != wantHdr || o.Len != wantHdr+len(frame) {
			t.Errorf("%s: options %v header %d len %d, want %v %d %d", o.Port, g.Options, g.HeaderLen, o.Len, wantOpts, wantHdr, wantHdr+len(frame))
		}
	}
	if n := r.f.bridges[0].table.Len(); n != 0 {
		t.Errorf("the trace learned: %d entries", n)
	}
}

// TestTraceUnicast: known destinations, a MAC move reported and not done,
// a same-port drop, a tunnel without next hop.
func TestTraceUnicast(t *testing.T) {
	r := newRig(t)
	tb := r.f.bridges[0].table
	tb.Learn(flowtable.MACFrom(macR), r.t1.dest, 1)
	tb.Learn(flowtable.MACFrom(macA), r.a.dest, 1)
	tb.Learn(flowtable.MACFrom(macB), r.b.dest, 1)

	res := r.trace(t, "vm1", eth(macR, macA, 100))
	if res.Verdict != "unicast" || !slices.Equal(res.outputNames(), []string{"tunnel:198.18.0.2"}) {
		t.Fatalf("to a MAC behind a tunnel: %q %v", res.Verdict, res.outputNames())
	}
	wantContains(t, "lookup", res.step("lookup"), "02:00:00:00:02:01 is on tunnel:198.18.0.2")
	wantContains(t, "learn", res.step("learn"), "already on vm1")

	res = r.trace(t, "vm2", eth(macB, macA, 100))
	if res.Verdict != "drop" || res.Drop != "same_port" {
		t.Fatalf("vm2 to a MAC on vm2: %q %q", res.Verdict, res.Drop)
	}
	wantContains(t, "learn", res.step("learn"), "would move 02:00:00:00:01:01 from vm1 to vm2")
	if d, _ := tb.Lookup(flowtable.MACFrom(macA)); d != r.a.dest {
		t.Errorf("the trace moved the MAC to %d", d)
	}

	r.t1.enc.Store(nil)
	res = r.trace(t, "vm1", eth(macR, macA, 100))
	if res.Verdict != "unicast" || len(res.Outputs) != 1 || res.Outputs[0].Drop != "no_neighbour" {
		t.Fatalf("to an unresolved tunnel: %q %+v", res.Verdict, res.Outputs)
	}
}

// TestTraceFromTunnel: a frame from tunnel:REMOTE is encapsulated as the
// remote would send it and decapsulated by the real path; its flood skips
// the tunnels (split horizon), and a known MAC behind another tunnel is a
// split-horizon drop.
func TestTraceFromTunnel(t *testing.T) {
	r := newRig(t)
	res := r.trace(t, "tunnel:198.18.0.2", eth(bcast, macR, 60))
	if res.Verdict != "flood" || !slices.Equal(res.outputNames(), []string{"br1", "vm1", "vm2"}) {
		t.Fatalf("flood from a tunnel: %q %v", res.Verdict, res.outputNames())
	}
	wantContains(t, "decap", res.step("decap"), "Geneve 198.18.0.2 -> 198.18.0.1, vni 5000")
	wantContains(t, "tunnel", res.step("tunnel"), "from tunnel:198.18.0.2 of bridge br1")
	wantContains(t, "learn", res.step("learn"), "would learn 02:00:00:00:02:01 on tunnel:198.18.0.2")
	wantContains(t, "flood", res.step("flood"), "not to tunnel:198.18.0.3 (split horizon")

	r.f.bridges[0].table.Learn(flowtable.MACFrom(macB), r.t2.dest, 1)
	res = r.trace(t, "tunnel:198.18.0.2", eth(macB, macR, 60))
	if res.Drop != "split_horizon" || len(res.Outputs) != 0 {
		t.Fatalf("tunnel to tunnel: %q %+v", res.Drop, res.Outputs)
	}
}

// TestTraceUnderlay: a whole Geneve frame given on the underlay runs
// through Decap; one from an unknown remote or VNI is dropped with the
// reason; a frame claiming the internal port's MAC is refused (own_mac).
func TestTraceUnderlay(t *testing.T) {
	r := newOwnMACRig(t)
	inner := eth(macA, macR, 80)
	res := r.trace(t, "eth0", geneveFrom(t, remote1, 5000, inner, nil, false))
	if res.Verdict != "flood" {
		t.Fatalf("Geneve frame on the underlay: %q %q", res.Verdict, res.Drop)
	}
	res = r.trace(t, "eth0", geneveFrom(t, netip.MustParseAddr("198.18.0.99"), 5000, inner, nil, false))
	if res.Drop != "unknown_remote" {
		t.Errorf("from an unknown remote: %q", res.Drop)
	}
	wantContains(t, "tunnel", res.step("tunnel"), "bridge br1 has no tunnel to 198.18.0.99")
	res = r.trace(t, "eth0", geneveFrom(t, remote1, 99, inner, nil, false))
	if res.Drop != "unknown_vni" {
		t.Errorf("unknown VNI: %q", res.Drop)
	}
	res = r.trace(t, "eth0", inner)
	if res.Drop != "bad_ip_header" { // eth() says IPv4; its payload is no IPv4 header
		t.Errorf("a plain frame on the underlay: %q", res.Drop)
	}
	wantContains(t, "decap", res.step("decap"), "not a Geneve frame xswitch accepts")
	res = r.trace(t, "tunnel:198.18.0.2", eth(bcast, macI, 60))
	if res.Drop != "own_mac" {
		t.Fatalf("the internal port's MAC from a tunnel: %q", res.Drop)
	}
	wantContains(t, "learn", res.step("learn"), "would be refused: 02:00:00:00:00:1e is static on br1 (own_mac)")
	wantContains(t, "drop", res.step("drop"), "counted on tunnel:198.18.0.2")
}

// TestTraceErrors: what cannot be traced says why and what would do.
func TestTraceErrors(t *testing.T) {
	r := newRig(t)
	f := eth(bcast, macA, 60)
	for _, tc := range []struct {
		req  TraceRequest
		want string
	}{
		{TraceRequest{Bridge: "nope", InPort: "vm1", Frame: f}, "no bridge \"nope\"; the bridges are: br1, br2"},
		{TraceRequest{Bridge: "br1", InPort: "vm9", Frame: f}, "in_port is one of: vm1, vm2, br1, eth0, tunnel:198.18.0.2, tunnel:198.18.0.3"},
		{TraceRequest{Bridge: "br2", InPort: "vm1", Frame: f}, "port vm1 is not a port of bridge br2"},
		{TraceRequest{Bridge: "br1", InPort: "tunnel:198.18.0.9", Frame: f}, "bridge br1 has no tunnel to 198.18.0.9"},
		{TraceRequest{Bridge: "br1", InPort: "tunnel:x", Frame: f}, "is not an IP address"},
		{TraceRequest{Bridge: "br1", InPort: "vm1", Frame: f[:10]}, "shorter than an Ethernet header"},
		{TraceRequest{Bridge: "br1", InPort: "vm1", Frame: make([]byte, testFrameSize)}, "does not fit a UMEM frame"},
	} {
		_, err := traceFrame(r.f, tc.req, r.traceEnv())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.req.InPort, err, tc.want)
		}
	}
}

// TestTraceAgreesWithForward: for frames in random order (learning
// between them by the real forward), the trace of each frame predicts what
// forward then does with it: verdict, drop reason and output ports.
func TestTraceAgreesWithForward(t *testing.T) {
	r := newOwnMACRig(t)
	macs := [][]byte{macA, macB, macR, macI, bcast}
	ins := []string{"vm1", "vm2", "br1", "tunnel:198.18.0.2", "tunnel:198.18.0.3"}
	seed := uint64(7)
	next := func(n int) int { seed = seed*6364136223846793005 + 1442695040888963407; return int(seed>>33) % n }
	for i := 0; i < 400; i++ {
		src, dst := macs[next(4)], macs[next(5)]
		if bytes.Equal(src, dst) {
			continue
		}
		inName := ins[next(len(ins))]
		frame := eth(dst, src, 60)
		res := r.trace(t, inName, frame)
		// The same frame through the rig's core, for real.
		r.reset()
		in, b := r.a, frame
		switch inName {
		case "vm2":
			in = r.b
		case "br1":
			in = r.internal
		case "tunnel:198.18.0.2":
			in, b = r.f.underlay, geneveFrom(t, remote1, 5000, frame, nil, false)
		case "tunnel:198.18.0.3":
			in, b = r.f.underlay, geneveFrom(t, remote2, 5000, frame, r.t2.cfg.GenOptions, false)
		}
		var before [numDropReasons]uint64
		before = r.c.ctr[in.id].drops
		tunBefore := make([][numDropReasons]uint64, len(r.c.tctr))
		for j := range r.c.tctr {
			tunBefore[j] = r.c.tctr[j].drops
		}
		r.c.forward(in, []desc{r.frame(b)})
		var got []string
		for id, q := range r.c.pend {
			for _, d := range q {
				if id == 0 {
					var dec geneve.Decoded
					geneve.Decap(r.bytes(d), &dec)
					got = append(got, "tunnel:"+dec.Dst.String())
				} else {
					got = append(got, r.f.ports[id].name)
				}
			}
		}
		if n := len(r.tapRead()); n > 0 && !slices.Contains(got, "br1") {
			got = append(got, "br1")
		}
		slices.Sort(got)
		drop := ""
		for k := range before {
			if r.c.ctr[in.id].drops[k] != before[k] {
				drop = dropReason(k).String()
			}
		}
		for j := range r.c.tctr {
			for k := range tunBefore[j] {
				if r.c.tctr[j].drops[k] != tunBefore[j][k] {
					drop = dropReason(k).String()
				}
			}
		}
		if drop != res.Drop || !slices.Equal(got, res.outputNames()) {
			t.Fatalf("frame %d %s %v: trace said %s %q %v; forward did drop %q to %v", i, inName, res.Frame, res.Verdict, res.Drop, res.outputNames(), drop, got)
		}
	}
}
