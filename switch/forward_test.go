package vswitch

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"xswitch/flowtable"
	"xswitch/geneve"
	"xswitch/offload"
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
	held     []uint64 // frames taken off the free stack by the test
	tapBuf   [70000]byte
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
	f.taps = []*port{r.internal}
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
	r.held = r.held[:0]
	for i := r.nframes - 1; i >= 512; i-- {
		r.c.free = append(r.c.free, uint64(i*testFrameSize))
	}
	r.next = 0
}

// rxOff is where the kernel puts a received frame in its UMEM chunk:
// XDP_PACKET_HEADROOM plus the UMEM headroom, which the dataplane leaves at
// xsk's default 0 (dataplane.go: NewUmem without Headroom; xsk/umem.go).
// Frames read from a TAP start at copyOff instead (tapPoller.run).
const rxOff = unix.XDP_PACKET_HEADROOM

// frame puts b into the next input frame (frames 0..511) at rxOff, where
// AF_XDP puts a received frame, and returns its descriptor.
func (r *rig) frame(b []byte) desc { return r.frameAt(b, rxOff) }

// frameAt is frame at offset off of the chunk.
func (r *rig) frameAt(b []byte, off uint64) desc {
	base := r.next * testFrameSize
	r.next++
	copy(r.area[base+off:base+testFrameSize], b)
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

// tapRead writes the frames queued for the internal port (flushTAPs) and
// returns what reached it, without the virtio-net headers.
func (r *rig) tapRead() [][]byte {
	_, fs := r.tapReadHdrs()
	return fs
}

// tapReadHdrs is tapRead with each frame's virtio-net header.
func (r *rig) tapReadHdrs() (hdrs []offload.VnetHdr, frames [][]byte) {
	r.c.flushTAPs()
	for {
		b := make([]byte, 70000)
		n, err := unix.Read(r.tapPeer, b)
		if err != nil {
			return hdrs, frames
		}
		h, err := offload.DecodeVnetHdr(b[:n])
		if err != nil {
			r.t.Fatalf("frame written to the internal port without its virtio-net header: %v", err)
		}
		hdrs = append(hdrs, h)
		frames = append(frames, b[offload.VnetHdrLen:n])
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

// tapRead0 drains the TAP peer without allocating (the buffer is the rig's:
// a local array passed to read escapes under -race).
func (r *rig) tapRead0() {
	r.c.flushTAPs()
	for {
		if _, err := unix.Read(r.tapPeer, r.tapBuf[:]); err != nil {
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

// Frame accounting: no leak, no double use.

// checkFrames asserts that no frame was lost or used twice: every frame the
// rig handed out as input (0..r.next-1) and every frame of the free range
// (512..) is on the free stack, held by the test, or under exactly one
// queued descriptor; and every descriptor lies inside one chunk (the kernel
// rejects one that crosses, and its frame never completes).
func (r *rig) checkFrames(t *testing.T) {
	t.Helper()
	const mask = ^uint64(testFrameSize - 1)
	where := map[uint64]string{}
	put := func(base uint64, what string) {
		if prev, dup := where[base]; dup {
			t.Errorf("frame %d is both %s and %s", base/testFrameSize, prev, what)
		}
		where[base] = what
	}
	for _, a := range r.c.free {
		put(a&mask, "free")
	}
	for _, a := range r.held {
		put(a&mask, "held by the test")
	}
	for id, q := range r.c.pend {
		for _, d := range q {
			base := d.Addr & mask
			if d.Len == 0 || (d.Addr+uint64(d.Len)-1)&mask != base {
				t.Errorf("port %d: descriptor %#x+%d crosses the end of its %d-byte frame", id, d.Addr, d.Len, testFrameSize)
			}
			put(base, fmt.Sprintf("queued on port %d", id))
		}
	}
	for i := uint64(0); i < uint64(r.nframes); i++ {
		if i >= r.next && i < 512 {
			continue // input frames not handed out
		}
		if _, ok := where[i*testFrameSize]; !ok {
			t.Errorf("frame %d leaked: neither free nor queued", i)
		}
	}
}

// hold takes n frames off the free stack (the test keeps them).
func (r *rig) hold(n int) {
	for ; n > 0 && len(r.c.free) > 0; n-- {
		r.held = append(r.held, r.c.free[len(r.c.free)-1])
		r.c.free = r.c.free[:len(r.c.free)-1]
	}
}

// fillQueue queues free frames on port p until its transmit list is full.
func (r *rig) fillQueue(p *port) {
	q := r.c.pend[p.id]
	for len(q) < cap(q) {
		a := r.c.free[len(r.c.free)-1]
		r.c.free = r.c.free[:len(r.c.free)-1]
		q = append(q, desc{Addr: a + rxOff, Len: 60})
	}
	r.c.pend[p.id] = q
}

// fillTAP writes to the internal port's socket until its queue is full, so
// that the switch's next write fails (EAGAIN).
func (r *rig) fillTAP(t *testing.T) {
	t.Helper()
	b := make([]byte, 60)
	for i := 0; ; i++ {
		if _, err := unix.Write(r.internal.fd, b); err != nil {
			if err != unix.EAGAIN {
				t.Fatalf("filling the TAP socket: %v", err)
			}
			return
		}
		if i > 1<<20 {
			t.Fatal("TAP socket never filled")
		}
	}
}

var (
	local6  = netip.MustParseAddr("2001:2::1")
	remote6 = netip.MustParseAddr("2001:2::2")
	macV6   = []byte{2, 0, 0, 0, 6, 1} // behind remote6
	macC    = []byte{2, 0, 0, 0, 1, 3} // on vm3
)

// addV6Bridge adds bridge br3 (VNI 9) with local port vm3 and one tunnel over
// an IPv6 underlay to remote6 that sends optLen bytes of options, sized for
// an underlay MTU of mtu, and rebuilds the core (its counters are sized by
// the fabric). macV6 is learned behind the tunnel.
func (r *rig) addV6Bridge(optLen, mtu int) (*port, *tunnel) {
	f := r.f
	br := &bridge{name: "br3", vni: 9, table: flowtable.New(flowtable.Config{}), cfg: &BridgeConfig{}}
	f.bridges = append(f.bridges, br)
	f.byVNI[9] = br
	p := &port{id: len(f.ports), name: "vm3", kind: kindLocal, br: br, fd: -1}
	p.dest = flowtable.Dest(p.id)
	f.ports = append(f.ports, p)
	br.locals = []*port{p}
	var opts []geneve.Option
	for left := optLen; left > 0; {
		data := min(left-4, geneve.MaxOptionDataLen)
		opts = append(opts, geneve.Option{Class: 0x0103, Type: uint8(len(opts)), Data: make([]byte, data)})
		left -= 4 + data
	}
	tn := &tunnel{id: len(f.tunnels), br: br, remote: remote6, local: local6, cfg: &TunnelConfig{GenOptions: opts}}
	tn.dest = tunnelBit | flowtable.Dest(tn.id)
	ec := geneve.DefaultEncapConfig()
	ec.SrcMAC, ec.DstMAC, ec.Src, ec.Dst, ec.VNI, ec.Options = underMAC, nhMAC, local6, remote6, 9, opts
	enc, err := geneve.NewEncapsulator(ec)
	if err != nil {
		r.t.Fatal(err)
	}
	tn.enc.Store(enc)
	tn.hdrLen = enc.HeaderLen()
	tn.maxInner = mtu + 14 - tn.hdrLen
	f.tunnels = append(f.tunnels, tn)
	br.tunnels = []*tunnel{tn}
	br.table.Learn(flowtable.MACFrom(macV6), tn.dest, 1)
	r.c = newCore(f, r.area, testFrameSize, r.nframes)
	r.reset()
	return p, tn
}

// TestEncapMovesFrameWhenHeadroomShort: an IPv6 tunnel with more than 186
// bytes of options needs more than the 256 bytes in front of a received
// frame; the frame is moved back to copyOff and encapsulated there, from a
// local port (rxOff) and from the internal port (copyOff: no move needed).
func TestEncapMovesFrameWhenHeadroomShort(t *testing.T) {
	for _, optLen := range []int{184, 188, geneve.MaxOptionsLen} {
		r := newRig(t)
		vm3, tn := r.addV6Bridge(optLen, 1500)
		if need := tn.hdrLen; (need > rxOff) != (optLen > 186) {
			t.Fatalf("options %d: header %d bytes, rx headroom %d: test premise wrong", optLen, need, rxOff)
		}
		for _, off := range []uint64{rxOff, copyOff} {
			r.reset()
			in := eth(macV6, macC, 1000)
			r.c.forward(vm3, []desc{r.frameAt(in, off)})
			r.checkFrames(t)
			q := r.c.pend[r.f.underlay.id]
			if len(q) != 1 {
				t.Fatalf("options %d offset %d: underlay got %d frames, want 1 (drops %v)", optLen, off, len(q), r.c.tctr[tn.id].drops)
			}
			var dec geneve.Decoded
			b := r.bytes(q[0])
			if drop := geneve.Decap(b, &dec); drop != geneve.DropNone {
				t.Fatalf("options %d offset %d: output does not decode: %v", optLen, off, drop)
			}
			if dec.Dst != remote6 || dec.VNI != 9 || dec.OptLen != optLen || string(b[dec.InnerOff:dec.InnerOff+dec.InnerLen]) != string(in) {
				t.Errorf("options %d offset %d: decoded %+v, inner equal %v", optLen, off, dec, string(b[dec.InnerOff:dec.InnerOff+dec.InnerLen]) == string(in))
			}
			if tn.hdrLen > int(off) && q[0].Addr%testFrameSize != copyOff-uint64(tn.hdrLen) {
				t.Errorf("options %d offset %d: packet starts at %d in its frame, want %d (moved to copyOff)", optLen, off, q[0].Addr%testFrameSize, copyOff-tn.hdrLen)
			}
		}
	}
}

// TestFloodCopyOfLongFrame: flood copies are placed at copyOff; a received
// frame longer than the room after copyOff must still be copied whole (and
// stay inside its frame), not truncated and sent past the chunk's end.
func TestFloodCopyOfLongFrame(t *testing.T) {
	r := newRig(t)
	n := testFrameSize - rxOff - 8 // the longest a 2048-byte chunk receives, about
	r.t1.maxInner, r.t2.maxInner = 9000, 9000
	in := eth(bcast, macA, n-14)
	r.c.forward(r.a, []desc{r.frame(in)})
	r.checkFrames(t)
	q := r.c.pend[r.b.id]
	if len(q) != 1 || string(r.bytes(q[0])) != string(in) {
		t.Fatalf("vm2 did not get the whole %d-byte frame (%d frames)", n, len(q))
	}
	// The tunnels cannot carry it in a 2048-byte chunk: counted, not sent garbled.
	for _, d := range r.c.pend[0] {
		var dec geneve.Decoded
		b := r.bytes(d)
		if geneve.Decap(b, &dec) != geneve.DropNone || string(b[dec.InnerOff:dec.InnerOff+dec.InnerLen]) != string(in) {
			t.Errorf("tunnel output garbled")
		}
	}
	if got := len(r.c.pend[0]) + int(r.c.tctr[r.t1.id].drops[dropTooBig]+r.c.tctr[r.t2.id].drops[dropTooBig]); got != 2 {
		t.Errorf("tunnels: %d sent + too_big drops, want 2", got)
	}
}

// TestForwardDropBranches covers each drop branch of forward.go not reached
// by TestDrops: the counter of the right port or tunnel goes up by one, the
// frame goes back to the free stack (or, where the frame still reaches other
// destinations, only the dropped copy is missing), and no frame leaks.
func TestForwardDropBranches(t *testing.T) {
	type where struct {
		port   func(r *rig) *port
		tun    func(r *rig) *tunnel
		reason dropReason
	}
	onPort := func(p func(r *rig) *port, reason dropReason) where { return where{port: p, reason: reason} }
	portA := func(r *rig) *port { return r.a }
	portB := func(r *rig) *port { return r.b }
	under := func(r *rig) *port { return r.f.underlay }
	cases := []struct {
		name  string
		setup func(t *testing.T, r *rig) // before the frame is forwarded
		in    func(r *rig) (*port, desc)
		want  []where
		sent  int // descriptors queued in all (destinations the frame still reaches)
		taps  int // frames written to the internal port
	}{
		{
			name: "descriptor-past-frame-end",
			in: func(r *rig) (*port, desc) {
				d := r.frame(eth(macB, macA, 60))
				d.Len = testFrameSize - rxOff + 1
				return r.a, d
			},
			want: []where{onPort(portA, dropRunt)},
		},
		{
			name:  "same-port",
			setup: func(t *testing.T, r *rig) { r.f.bridges[0].table.Learn(flowtable.MACFrom(macB), r.a.dest, 1) },
			in:    func(r *rig) (*port, desc) { return r.a, r.frame(eth(macB, macA, 60)) },
			want:  []where{onPort(portA, dropSamePort)},
		},
		{
			name: "tx-full-local",
			setup: func(t *testing.T, r *rig) {
				r.f.bridges[0].table.Learn(flowtable.MACFrom(macB), r.b.dest, 1)
				r.fillQueue(r.b)
			},
			in:   func(r *rig) (*port, desc) { return r.a, r.frame(eth(macB, macA, 60)) },
			want: []where{onPort(portB, dropTxFull)},
			sent: 2 * maxBurst, // the queue filled by the setup (room for jumbo pieces)
		},
		{
			name: "tx-full-underlay",
			setup: func(t *testing.T, r *rig) {
				r.f.bridges[0].table.Learn(flowtable.MACFrom(macR), r.t1.dest, 1)
				r.fillQueue(r.f.underlay)
			},
			in:   func(r *rig) (*port, desc) { return r.a, r.frame(eth(macR, macA, 60)) },
			want: []where{onPort(under, dropTxFull)},
			sent: 2 * maxBurst * 2, // the queue filled by the setup: two bursts per tunnel of br1
		},
		{
			name: "no-neighbour",
			setup: func(t *testing.T, r *rig) {
				r.f.bridges[0].table.Learn(flowtable.MACFrom(macR), r.t1.dest, 1)
				enc := r.t1.enc.Swap(nil)
				t.Cleanup(func() { r.t1.enc.Store(enc) })
			},
			in:   func(r *rig) (*port, desc) { return r.a, r.frame(eth(macR, macA, 60)) },
			want: []where{{tun: func(r *rig) *tunnel { return r.t1 }, reason: dropNoNeighbour}},
		},
		{
			// Flood to vm2, t1, t2 with no free frame: both copies fail
			// (counted on their destination), the original reaches t2.
			name:  "no-frame-for-flood-copies",
			setup: func(t *testing.T, r *rig) { r.hold(len(r.c.free)) },
			in:    func(r *rig) (*port, desc) { return r.a, r.frame(eth(bcast, macA, 60)) },
			want:  []where{onPort(portB, dropNoFrame), onPort(under, dropNoFrame)},
			sent:  1,
			taps:  1,
		},
		{
			// Flood with the internal port's queue full: its write fails,
			// the other destinations still get the frame.
			name:  "tap-write",
			setup: func(t *testing.T, r *rig) { r.fillTAP(t) },
			in:    func(r *rig) (*port, desc) { return r.a, r.frame(eth(bcast, macA, 60)) },
			want:  []where{onPort(func(r *rig) *port { return r.internal }, dropTAPWrite)},
			sent:  3,
			taps:  -1, // the queue holds the filler frames only
		},
		{
			// Headroom short (IPv6, 252 bytes of options) and the frame too
			// long to move back to copyOff in a 2048-byte chunk.
			name: "too-big-to-move",
			setup: func(t *testing.T, r *rig) {
				r.addV6Bridge(geneve.MaxOptionsLen, 9000)
			},
			in: func(r *rig) (*port, desc) {
				return r.f.ports[len(r.f.ports)-1], r.frame(eth(macV6, macC, testFrameSize-copyOff+1-14))
			},
			want: []where{{tun: func(r *rig) *tunnel { return r.f.tunnels[len(r.f.tunnels)-1] }, reason: dropTooBig}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t)
			if c.setup != nil {
				c.setup(t, r)
			}
			count := func(w where) uint64 {
				if w.tun != nil {
					return r.c.tctr[w.tun(r).id].drops[w.reason]
				}
				return r.drops(w.port(r), w.reason)
			}
			before := make([]uint64, len(c.want))
			for i, w := range c.want {
				before[i] = count(w)
			}
			free := len(r.c.free)
			in, d := c.in(r)
			r.c.forward(in, []desc{d})
			for i, w := range c.want {
				if got := count(w) - before[i]; got != 1 {
					t.Errorf("drop %s counted %d times, want 1", w.reason, got)
				}
			}
			sent := 0
			for _, q := range r.c.pend {
				sent += len(q)
			}
			if sent != c.sent {
				t.Errorf("%d descriptors queued, want %d", sent, c.sent)
			}
			if c.taps >= 0 {
				if got := len(r.tapRead()); got != c.taps {
					t.Errorf("internal port got %d frames, want %d", got, c.taps)
				}
			}
			if c.sent == 0 && len(r.c.free) != free+1 {
				t.Errorf("free frames %d -> %d: the dropped frame was not returned", free, len(r.c.free))
			}
			r.checkFrames(t)
		})
	}
}

// TestForwardFrameReturned covers the paths that end a frame without a drop
// counter: a flood with no destination (the only tunnel of br2, split
// horizon) and a unicast to the internal port (written, then freed).
func TestForwardFrameReturned(t *testing.T) {
	r := newRig(t)
	free := len(r.c.free)
	r.c.forward(r.f.underlay, []desc{r.frame(geneveFrom(t, remote1, 7, eth(bcast, macR, 60), nil, false))})
	if len(r.c.free) != free+1 {
		t.Errorf("flood without destination: free frames %d -> %d", free, len(r.c.free))
	}
	for _, p := range r.f.ports {
		for reason := dropReason(0); reason < numDropReasons; reason++ {
			if n := r.drops(p, reason); n != 0 {
				t.Errorf("flood without destination counted %s on %s", reason, p.name)
			}
		}
	}
	r.checkFrames(t)

	// The internal port's MAC is learned from a frame it sends (TAP frames
	// start at copyOff); unicast to it is written to the TAP and freed.
	r.reset()
	macI := []byte{2, 0, 0, 0, 9, 9}
	r.c.forward(r.internal, []desc{r.frameAt(eth(macA, macI, 60), copyOff)})
	r.tapRead()
	r.reset()
	free = len(r.c.free)
	in := eth(macI, macA, 70)
	r.c.forward(r.a, []desc{r.frame(in)})
	if tap := r.tapRead(); len(tap) != 1 || string(tap[0]) != string(in) {
		t.Errorf("internal port got %d frames, want the unicast", len(tap))
	}
	if len(r.c.free) != free+1 {
		t.Errorf("unicast to the internal port: free frames %d -> %d", free, len(r.c.free))
	}
	r.checkFrames(t)
}

// TestReleaseBeyondCapacity: a drop when the free stack is at its capacity
// keeps the frame (the stack grows) rather than losing it.
func TestReleaseBeyondCapacity(t *testing.T) {
	r := newRig(t)
	r.c = newCore(r.f, r.area, testFrameSize, r.nframes-512) // reset fills exactly this many
	r.reset()
	if len(r.c.free) != cap(r.c.free) {
		t.Fatalf("premise: free %d of capacity %d", len(r.c.free), cap(r.c.free))
	}
	r.c.forward(r.a, []desc{r.frame([]byte{1, 2, 3})})
	if r.drops(r.a, dropRunt) != 1 || len(r.c.free) != r.nframes-512+1 {
		t.Errorf("runt drops %d, free %d", r.drops(r.a, dropRunt), len(r.c.free))
	}
	r.checkFrames(t)
}

// TestCountersReadWhileForwarding: the control path reads a poller's
// counters while it forwards (encapsulation, decapsulation, flooding with a
// TAP write, drops). Under -race (make race) a plain write to any counter
// the readers load is reported.
func TestCountersReadWhileForwarding(t *testing.T) {
	r := newRig(t)
	frames := [][]byte{
		eth(bcast, macA, 60),
		geneveFrom(t, remote1, 5000, eth(macA, macR, 100), nil, false),
		eth(macR, macA, 100),
		eth(macA, macA, 60), // same port: a drop
		geneveFrom(t, netip.MustParseAddr("198.18.0.99"), 5000, eth(macA, macR, 100), nil, false),
	}
	ins := []*port{r.a, r.f.underlay, r.a, r.a, r.f.underlay}
	done := make(chan struct{})
	var reads int
	go func() {
		defer close(done)
		for i := 0; i < 2000; i++ {
			cs := r.c.counters()
			var ps portSum
			var os offSum
			for j := range cs.ctr {
				cs.ctr[j].addTo(&ps)
				cs.off[j].addTo(&os)
			}
			for j := range cs.tctr {
				cs.tctr[j].addTo(&ps)
			}
			reads++
		}
	}()
	descs := make([]desc, 1)
	sent := 0
	for running := true; running; sent++ {
		select {
		case <-done:
			running = false
		default:
		}
		r.reset()
		for i, f := range frames {
			descs[0] = r.frame(f)
			r.c.forward(ins[i], descs)
		}
		r.tapRead0()
	}
	if rx := atomic.LoadUint64(&r.c.ctr[r.a.id].rxPackets); rx != uint64(3*sent) {
		t.Errorf("vm1 received %d frames by its counter, want %d", rx, 3*sent)
	}
	t.Logf("%d counter reads during %d rounds of forwarding", reads, sent)
}
