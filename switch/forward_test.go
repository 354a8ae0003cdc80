package vswitch

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"xswitch/flowtable"
	"xswitch/geneve"
)

const testFrameSize = 2048

// rig is a fabric without sockets: one bridge (VNI 5000) with two local
// ports, an internal port whose "TAP" is a datagram socket pair, and two
// tunnels, plus a second bridge (VNI 7) with one tunnel to the first remote.
type rig struct {
	t        testing.TB
	f        *fabric
	c        *core
	area     []byte
	tapPeer  int
	a, b     *port // local ports of br1
	internal *port
	t1, t2   *tunnel
	other    *tunnel // VNI 7 tunnel to remote1
	nframes  int
	next     uint64
}

var (
	localIP  = netip.MustParseAddr("198.18.0.1")
	remote1  = netip.MustParseAddr("198.18.0.2")
	remote2  = netip.MustParseAddr("198.18.0.3")
	underMAC = [6]byte{2, 0, 0, 0, 0, 0xaa}
	nhMAC    = [6]byte{2, 0, 0, 0, 0, 0xbb}
	macA     = []byte{2, 0, 0, 0, 1, 1}
	macB     = []byte{2, 0, 0, 0, 1, 2}
	macR     = []byte{2, 0, 0, 0, 2, 1} // behind remote1
	bcast    = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

func newRig(t testing.TB) *rig {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	r := &rig{t: t, tapPeer: fds[1], nframes: 1024}
	f := &fabric{byVNI: map[uint32]*bridge{}, known: &geneve.KnownOptions{}, clock: flowtable.NewClock()}
	if err := f.known.Add(0x0102, 0x80); err != nil {
		t.Fatal(err)
	}
	f.underlay = &port{id: 0, name: "eth0", kind: kindUnderlay, fd: -1}
	f.ports = append(f.ports, f.underlay)
	br := &bridge{name: "br1", vni: 5000, table: flowtable.New(flowtable.Config{}), cfg: &BridgeConfig{}}
	br2 := &bridge{name: "br2", vni: 7, table: flowtable.New(flowtable.Config{}), cfg: &BridgeConfig{}}
	f.bridges = []*bridge{br, br2}
	f.byVNI[5000], f.byVNI[7] = br, br2
	addPort := func(name string, kind portKind, b *bridge, fd int) *port {
		p := &port{id: len(f.ports), name: name, kind: kind, br: b, fd: fd}
		p.dest = flowtable.Dest(p.id)
		f.ports = append(f.ports, p)
		return p
	}
	r.a = addPort("vm1", kindLocal, br, -1)
	r.b = addPort("vm2", kindLocal, br, -1)
	r.internal = addPort("br1", kindInternal, br, fds[0])
	br.locals = []*port{r.a, r.b}
	br.internal = r.internal
	addTun := func(b *bridge, remote netip.Addr, opts []geneve.Option) *tunnel {
		tn := &tunnel{id: len(f.tunnels), br: b, remote: remote, local: localIP, cfg: &TunnelConfig{GenOptions: opts}}
		tn.dest = tunnelBit | flowtable.Dest(tn.id)
		ec := geneve.DefaultEncapConfig()
		ec.SrcMAC, ec.DstMAC, ec.Src, ec.Dst, ec.VNI, ec.Options = underMAC, nhMAC, localIP, remote, b.vni, opts
		enc, err := geneve.NewEncapsulator(ec)
		if err != nil {
			t.Fatal(err)
		}
		tn.enc.Store(enc)
		tn.hdrLen = enc.HeaderLen()
		tn.maxInner = 1500 + 14 - tn.hdrLen
		f.tunnels = append(f.tunnels, tn)
		b.tunnels = append(b.tunnels, tn)
		return tn
	}
	r.t1 = addTun(br, remote1, nil)
	r.t2 = addTun(br, remote2, []geneve.Option{{Class: 0x0102, Type: 0x80, Data: []byte{10, 11, 12, 13}}})
	r.other = addTun(br2, remote1, nil)
	r.f = f
	r.area = make([]byte, r.nframes*testFrameSize)
	r.c = newCore(f, r.area, testFrameSize, r.nframes)
	r.reset()
	return r
}

// reset empties the transmit lists and gives the core frames 512.. as free.
func (r *rig) reset() {
	for i := range r.c.pend {
		r.c.pend[i] = r.c.pend[i][:0]
	}
	r.c.free = r.c.free[:0]
	for i := r.nframes - 1; i >= 512; i-- {
		r.c.free = append(r.c.free, uint64(i*testFrameSize))
	}
	r.next = 0
}

// frame puts b into the next input frame (frames 0..511) at an offset like
// AF_XDP's RX headroom and returns its descriptor.
func (r *rig) frame(b []byte) desc {
	base := r.next * testFrameSize
	r.next++
	const off = 512
	copy(r.area[base+off:], b)
	return desc{Addr: base + off, Len: uint32(len(b))}
}

func eth(dst, src []byte, payload int) []byte {
	f := make([]byte, 14+payload)
	copy(f, dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	for i := 14; i < len(f); i++ {
		f[i] = byte(i)
	}
	return f
}

// geneveFrom wraps inner as sent by remote to us with vni.
func geneveFrom(t testing.TB, remote netip.Addr, vni uint32, inner []byte, opts []geneve.Option, oam bool) []byte {
	ec := geneve.DefaultEncapConfig()
	ec.SrcMAC, ec.DstMAC, ec.Src, ec.Dst, ec.VNI, ec.Options, ec.OAM = nhMAC, underMAC, remote, localIP, vni, opts, oam
	enc, err := geneve.NewEncapsulator(ec)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, enc.HeaderLen()+len(inner))
	copy(buf[enc.HeaderLen():], inner)
	return buf[enc.Encap(buf, enc.HeaderLen(), len(inner)):]
}

func (r *rig) bytes(d desc) []byte { return r.area[d.Addr : d.Addr+uint64(d.Len)] }

// tapRead returns the frames written to the internal port.
func (r *rig) tapRead() [][]byte {
	var out [][]byte
	for {
		b := make([]byte, 4096)
		n, err := unix.Read(r.tapPeer, b)
		if err != nil {
			return out
		}
		out = append(out, b[:n])
	}
}

// decapOut decodes the underlay transmit list: remote and inner frame of each.
func (r *rig) decapOut() (remotes []netip.Addr, vnis []uint32, inners [][]byte) {
	for _, d := range r.c.pend[0] {
		b := r.bytes(d)
		var dec geneve.Decoded
		if drop := geneve.Decap(b, &dec); drop != geneve.DropNone {
			r.t.Fatalf("underlay output does not decode: %v", drop)
		}
		remotes = append(remotes, dec.Dst)
		vnis = append(vnis, dec.VNI)
		inners = append(inners, b[dec.InnerOff:dec.InnerOff+dec.InnerLen])
	}
	return
}

func (r *rig) drops(p *port, reason dropReason) uint64 { return r.c.ctr[p.id].drops[reason] }

func TestFloodFromLocalPort(t *testing.T) {
	r := newRig(t)
	in := eth(bcast, macA, 60)
	r.c.forward(r.a, []desc{r.frame(in)})
	if n := len(r.c.pend[r.b.id]); n != 1 {
		t.Fatalf("vm2 got %d frames, want 1", n)
	}
	if got := r.bytes(r.c.pend[r.b.id][0]); string(got) != string(in) {
		t.Errorf("vm2 frame differs")
	}
	if n := len(r.c.pend[r.a.id]); n != 0 {
		t.Errorf("flood went back to the source port (%d frames)", n)
	}
	tap := r.tapRead()
	if len(tap) != 1 || string(tap[0]) != string(in) {
		t.Errorf("internal port got %d frames, want the one flooded", len(tap))
	}
	remotes, vnis, inners := r.decapOut()
	if len(remotes) != 2 || remotes[0] != remote1 || remotes[1] != remote2 {
		t.Fatalf("tunnels got %v, want both remotes of br1 (head-end replication), not br2's", remotes)
	}
	for i := range inners {
		if vnis[i] != 5000 || string(inners[i]) != string(in) {
			t.Errorf("tunnel %d: vni %d, inner equal %v", i, vnis[i], string(inners[i]) == string(in))
		}
	}
	if r.c.floodCopies != 2 {
		t.Errorf("flood copies %d, want 2 (3 AF_XDP destinations: 2 copies + the original)", r.c.floodCopies)
	}
	if d, ok := r.f.bridges[0].table.Lookup(flowtable.MACFrom(macA)); !ok || d != r.a.dest {
		t.Errorf("source MAC not learned on vm1: %v %v", d, ok)
	}
	if _, ok := r.f.bridges[1].table.Lookup(flowtable.MACFrom(macA)); ok {
		t.Errorf("MAC learned in br1 visible in br2")
	}
}

func TestSplitHorizonAndLearnFromTunnel(t *testing.T) {
	r := newRig(t)
	in := eth(bcast, macR, 60)
	r.c.forward(r.f.underlay, []desc{r.frame(geneveFrom(t, remote1, 5000, in, nil, false))})
	if len(r.c.pend[0]) != 0 {
		t.Errorf("a frame from a tunnel was flooded to %d tunnels (split horizon)", len(r.c.pend[0]))
	}
	for _, p := range []*port{r.a, r.b} {
		if len(r.c.pend[p.id]) != 1 || string(r.bytes(r.c.pend[p.id][0])) != string(in) {
			t.Errorf("%s did not get the decapsulated frame", p.name)
		}
	}
	if len(r.tapRead()) != 1 {
		t.Errorf("internal port did not get the flooded frame")
	}
	if d, ok := r.f.bridges[0].table.Lookup(flowtable.MACFrom(macR)); !ok || d != r.t1.dest {
		t.Errorf("MAC from the tunnel not learned on the tunnel to remote1: %v %v", d, ok)
	}
	if r.c.tctr[r.t1.id].rxPackets != 1 {
		t.Errorf("tunnel rx counter %d", r.c.tctr[r.t1.id].rxPackets)
	}

	// Known unicast to macR from vm1 goes to the tunnel to remote1 only.
	r.reset()
	r.c.forward(r.a, []desc{r.frame(eth(macR, macA, 100))})
	remotes, _, _ := r.decapOut()
	if len(remotes) != 1 || remotes[0] != remote1 {
		t.Errorf("known unicast went to %v, want [%v]", remotes, remote1)
	}
	if len(r.c.pend[r.b.id]) != 0 || len(r.tapRead()) != 0 {
		t.Errorf("known unicast was flooded")
	}
	// Known unicast from the tunnel to vm1 goes to vm1 only; a unicast from
	// remote2's tunnel to remote1's MAC is not sent tunnel to tunnel.
	r.reset()
	r.c.forward(r.f.underlay, []desc{
		r.frame(geneveFrom(t, remote1, 5000, eth(macA, macR, 80), nil, false)),
		r.frame(geneveFrom(t, remote2, 5000, eth(macR, []byte{2, 0, 0, 0, 3, 1}, 80), nil, false)),
	})
	if len(r.c.pend[r.a.id]) != 1 || len(r.c.pend[r.b.id]) != 0 || len(r.c.pend[0]) != 0 {
		t.Errorf("unicast from tunnel: vm1 %d vm2 %d underlay %d, want 1 0 0", len(r.c.pend[r.a.id]), len(r.c.pend[r.b.id]), len(r.c.pend[0]))
	}
	if r.drops(r.f.underlay, dropSplitHorizon) != 1 {
		t.Errorf("split_horizon drops %d, want 1", r.drops(r.f.underlay, dropSplitHorizon))
	}
}

func TestMACMove(t *testing.T) {
	r := newRig(t)
	r.c.forward(r.a, []desc{r.frame(eth(bcast, macR, 60))}) // macR first seen on vm1
	r.reset()
	r.c.forward(r.f.underlay, []desc{r.frame(geneveFrom(t, remote2, 5000, eth(bcast, macR, 60), nil, false))})
	if d, _ := r.f.bridges[0].table.Lookup(flowtable.MACFrom(macR)); d != r.t2.dest {
		t.Fatalf("MAC did not move to the tunnel to remote2: %v", d)
	}
	r.reset()
	r.c.forward(r.b, []desc{r.frame(eth(macR, macB, 60))})
	remotes, _, _ := r.decapOut()
	if len(remotes) != 1 || remotes[0] != remote2 || len(r.c.pend[r.a.id]) != 0 {
		t.Errorf("after the move, unicast went to %v (vm1 %d), want [%v]", remotes, len(r.c.pend[r.a.id]), remote2)
	}
}

func TestDrops(t *testing.T) {
	r := newRig(t)
	u := r.f.underlay
	inner := eth(bcast, macR, 60)
	arp := eth(bcast, macR, 28)
	arp[12], arp[13] = 0x08, 0x06
	cases := []struct {
		name   string
		in     *port
		frame  []byte
		port   *port
		tun    *tunnel
		reason dropReason
	}{
		{"unknown-remote", u, geneveFrom(t, netip.MustParseAddr("198.18.0.99"), 5000, inner, nil, false), u, nil, dropUnknownRemote},
		{"remote-of-other-vni", u, geneveFrom(t, remote2, 7, inner, nil, false), u, nil, dropUnknownRemote},
		{"unknown-vni", u, geneveFrom(t, remote1, 4242, inner, nil, false), u, nil, dropUnknownVNI},
		{"oam", u, geneveFrom(t, remote1, 5000, inner, nil, true), u, nil, dropReason(geneve.DropOAM)},
		{"critical-unknown", u, geneveFrom(t, remote1, 5000, inner, []geneve.Option{{Class: 0xff01, Type: 0x92, Data: make([]byte, 4)}}, false), u, nil, dropReason(geneve.DropCriticalOption)},
		{"not-geneve", u, arp, u, nil, dropReason(geneve.DropNotIP)},
		{"runt", r.a, []byte{1, 2, 3}, r.a, nil, dropRunt},
		{"multicast-source", r.a, eth(bcast, bcast, 60), r.a, nil, dropBadSrcMAC},
		{"too-big", r.a, eth(macR, macA, 1500), nil, r.t1, dropTooBig},
	}
	// macR behind remote1, for the too-big unicast.
	r.f.bridges[0].table.Learn(flowtable.MACFrom(macR), r.t1.dest, 1)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r.reset()
			free := len(r.c.free)
			count := func() uint64 {
				if c.tun != nil {
					return r.c.tctr[c.tun.id].drops[c.reason]
				}
				return r.drops(c.port, c.reason)
			}
			before := count()
			r.c.forward(c.in, []desc{r.frame(c.frame)})
			got := count() - before
			if got != 1 {
				t.Errorf("drop %s counted %d times, want 1", c.reason, got)
			}
			for i, q := range r.c.pend {
				if len(q) != 0 {
					t.Errorf("port %d got a frame", i)
				}
			}
			if len(r.tapRead()) != 0 {
				t.Errorf("internal port got a frame")
			}
			if len(r.c.free) != free+1 {
				t.Errorf("free frames %d -> %d: the dropped frame was not returned", free, len(r.c.free))
			}
		})
	}
	// An unresolved next hop is a counted drop, not a stall.
	r.reset()
	enc := r.t1.enc.Swap(nil)
	r.c.forward(r.a, []desc{r.frame(eth(macR, macA, 60))})
	r.t1.enc.Store(enc)
	if r.c.tctr[r.t1.id].drops[dropNoNeighbour] != 1 {
		t.Errorf("no_neighbour drops %d", r.c.tctr[r.t1.id].drops[dropNoNeighbour])
	}
}

func TestOptionsCounted(t *testing.T) {
	r := newRig(t)
	opts := []geneve.Option{{Class: 0x0102, Type: 0x80, Data: []byte{1, 2, 3, 4}}, {Class: 0xff01, Type: 0x12, Data: make([]byte, 8)}}
	for i := 0; i < 3; i++ {
		r.reset()
		r.c.forward(r.f.underlay, []desc{r.frame(geneveFrom(t, remote1, 5000, eth(bcast, macR, 60), opts, false))})
	}
	m := map[uint32]uint64{}
	r.c.opt.addTo(m)
	if m[1<<24|0x0102<<8|0x80] != 3 || m[1<<24|0xff01<<8|0x12] != 3 {
		t.Errorf("option counts %v", m)
	}
	// Tunnel 2 sends its configured option.
	r.reset()
	r.c.forward(r.a, []desc{r.frame(eth(bcast, macA, 60))})
	for _, d := range r.c.pend[0] {
		var dec geneve.Decoded
		b := r.bytes(d)
		if geneve.Decap(b, &dec) != geneve.DropNone {
			t.Fatal("bad encap")
		}
		want := 0
		if dec.Dst == remote2 {
			want = 8
		}
		if dec.OptLen != want {
			t.Errorf("to %v: options %d bytes, want %d", dec.Dst, dec.OptLen, want)
		}
	}
}

// TestForwardAllocs: the packet path does not allocate (flood with copies
// and TAP write, encapsulation, decapsulation, learning, options).
func TestForwardAllocs(t *testing.T) {
	r := newRig(t)
	frames := [][]byte{
		eth(bcast, macA, 60),
		geneveFrom(t, remote1, 5000, eth(macA, macR, 100), []geneve.Option{{Class: 0x0102, Type: 0x80, Data: []byte{1, 2, 3, 4}}}, false),
		eth(macR, macA, 1000),
		eth(macB, macA, 60),
		geneveFrom(t, netip.MustParseAddr("198.18.0.99"), 5000, eth(macA, macR, 100), nil, false),
	}
	ins := []*port{r.a, r.f.underlay, r.a, r.a, r.f.underlay}
	descs := make([]desc, 1)
	allocs := testing.AllocsPerRun(200, func() {
		r.reset()
		for i, f := range frames {
			descs[0] = r.frame(f)
			r.c.forward(ins[i], descs)
		}
		r.tapRead0()
	})
	if allocs != 0 {
		t.Errorf("forward allocates %.1f times per batch", allocs)
	}
}

// tapRead0 drains the TAP peer without allocating.
func (r *rig) tapRead0() {
	var b [4096]byte
	for {
		if _, err := unix.Read(r.tapPeer, b[:]); err != nil {
			return
		}
	}
}

func benchForward(b *testing.B, in func(r *rig) *port, frame func(r *rig) []byte) {
	r := newRig(b)
	r.f.bridges[0].table.Learn(flowtable.MACFrom(macR), r.t1.dest, 1)
	r.f.bridges[0].table.Learn(flowtable.MACFrom(macA), r.a.dest, 1)
	p := in(r)
	f := frame(r)
	descs := make([]desc, maxBurst)
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += maxBurst {
		r.reset()
		for j := range descs {
			descs[j] = r.frame(f)
		}
		r.c.forward(p, descs)
	}
}

// BenchmarkForwardEncap: local port → known MAC behind a tunnel (learn,
// lookup, encapsulation in place), per frame, batches of 64.
func BenchmarkForwardEncap(b *testing.B) {
	benchForward(b, func(r *rig) *port { return r.a }, func(r *rig) []byte { return eth(macR, macA, 50) })
}

// BenchmarkForwardDecap: tunnel → known MAC on a local port.
func BenchmarkForwardDecap(b *testing.B) {
	benchForward(b, func(r *rig) *port { return r.f.underlay }, func(r *rig) []byte {
		return geneveFrom(b, remote1, 5000, eth(macA, macR, 50), nil, false)
	})
}
