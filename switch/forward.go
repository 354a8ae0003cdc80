package vswitch

import (
	"net/netip"
	"sync/atomic"

	"xswitch/flowtable"
	"xswitch/geneve"
	"xswitch/offload"
	"xswitch/xsk"
)

// portKind says what a port is.
type portKind uint8

const (
	kindUnderlay portKind = iota // the physical NIC: Geneve in and out
	kindLocal                    // AF_XDP on a local interface (veth to a VM)
	kindInternal                 // the bridge's TAP device
)

func (k portKind) String() string {
	return [...]string{"underlay", "local", "internal"}[k]
}

// tunnelBit marks a flowtable.Dest that is a tunnel id; otherwise the Dest is
// a port id.
const tunnelBit = flowtable.Dest(1 << 31)

// port is one port of the switch as one fabric generation sees it: it is
// never changed once the generation is published (fabric.go).
type port struct {
	id   int
	name string
	kind portKind
	br   *bridge // nil for the underlay
	dest flowtable.Dest
	// fd is the internal port's TAP file descriptor (non-blocking), -1 else.
	fd int
	// tx are the AF_XDP ports' transmit queues, one per socket.
	tx []*txQueue
	// maxFrame is the longest frame the internal port's reader cuts the
	// host's large frames into (the TAP's MTU plus the Ethernet header).
	maxFrame int
	// txCsum: the AF_XDP port's device computes checksums requested in TX
	// metadata (txcsum.go).
	txCsum bool
	// absent: no sockets (interface gone, or a removed port's slot); a
	// core gives it no transmit list, so frames to it are counted drops.
	absent bool
	// capture is the running `xswitch ctl capture` of the port; nil (one
	// predictable branch per batch or frame) when there is none.
	capture atomic.Pointer[captureTap]
}

// tunnel is one remote endpoint of a bridge.
type tunnel struct {
	id     int
	br     *bridge
	remote netip.Addr
	local  netip.Addr
	dest   flowtable.Dest
	// enc is the encapsulator towards the current next hop; nil while the
	// next hop is unresolved. Swapped by the next-hop resolver.
	enc atomic.Pointer[geneve.Encapsulator]
	// hdrLen is the outer header length; maxInner the largest inner frame
	// (Ethernet header included) that fits the underlay MTU.
	hdrLen   int
	maxInner int
	cfg      *TunnelConfig
	nh       atomic.Pointer[NextHopStatus] // for ctl show
	// capture: the running capture of tunnel:REMOTE (inner frames), or nil.
	capture atomic.Pointer[captureTap]
}

// bridge is one L2 domain (one VNI).
type bridge struct {
	name     string
	vni      uint32
	table    *flowtable.Table
	locals   []*port // local AF_XDP ports
	internal *port   // nil without internal port
	tunnels  []*tunnel
	cfg      *BridgeConfig
	claims   *evpnClaims // EVPN bridges: MACs local frames claimed (evpn.go)
	uuLocal  bool        // unknown unicast is not flooded to tunnels (evpn.flood_unknown_unicast: false)
}

// findRemote returns the tunnel of remote a, or nil. Bridges have few
// tunnels: a linear scan of comparable netip.Addr values.
func (b *bridge) findRemote(a netip.Addr) *tunnel {
	for _, t := range b.tunnels {
		if t.remote == a {
			return t
		}
	}
	return nil
}

// fabric is the switch's topology as the packet path sees it: one
// generation, read-only once published; a change publishes a new one
// (fabric.go).
type fabric struct {
	gen      uint64
	ports    []*port   // by id; ids of removed ports hold tombstones
	tunnels  []*tunnel // by id; likewise
	xdp      []int     // ids of the AF_XDP ports with sockets, for flush
	bridges  []*bridge
	byVNI    map[uint32]*bridge
	underlay *port
	taps     []*port // internal ports
	known    *geneve.KnownOptions
	clock    *flowtable.Clock
}

// copyOff is where a flood copy or a TAP read puts the inner frame in a
// fresh UMEM frame: room for the largest outer header in front.
const copyOff = (geneve.MaxHeaderLen + 63) &^ 63

// maxBurst is the most frames a poller takes per batch.
const maxBurst = 64

// core is one poller's forwarding state: the decision for each frame of a
// batch, encapsulation and decapsulation in place, and per-destination
// transmit lists. It does not touch sockets: the poller receives into it and
// flushes its lists, so the core can be tested on a plain byte slice.
// Nothing in it allocates, locks or calls through an interface per frame.
type core struct {
	f     *fabric
	area  []byte // the UMEM
	fsize uint64 // frame size (power of two)
	// free is a local stack of free frame addresses (chunk starts): frames
	// of dropped packets go here and flood copies come from here.
	free []uint64
	// pend[port id] are the descriptors to transmit on that port.
	pend [][]desc
	ctr  []portCtr
	tctr []tunCtr
	opt  optCounters
	// floodCopies / tapCopies count frames copied for flooding and to/from
	// internal ports (read with atomics by the control path).
	floodCopies, tapCopies uint64
	dec                    geneve.Decoded
	now                    uint32
	// partial says that the frame being forwarded has a checksum left
	// partial by its sender, at csum (offload.go).
	partial bool
	csum    offload.L4Csum
	inID    int      // port the frame being forwarded came from
	off     []offCtr // offload counters per port
	gro     *tapGRO  // nil without internal ports
	// pub are ctr, tctr and off for the control path (fabric.go).
	pub atomic.Pointer[ctrSet]
	// tr is set on the throw-away core of `xswitch ctl trace` only: then
	// learning is a prediction and nothing is written to a TAP (trace.go).
	tr *traceRec
	// mb says that the UMEM is multi-buffer: a frame may come as a chain
	// of descriptors. jumbo is the buffer such frames are forwarded from
	// (nil until the first one, multibuf.go).
	mb    bool
	jumbo []byte
}

func newCore(f *fabric, area []byte, frameSize int, freeCap int) *core {
	c := &core{area: area, fsize: uint64(frameSize), free: make([]uint64, 0, freeCap)}
	c.setFabric(f) // fabric.go: counters and transmit lists sized by f
	return c
}

func (c *core) drop(p *port, r dropReason) { atomic.AddUint64(&c.ctr[p.id].drops[r], 1) }

// release returns a frame to the local free stack (the poller moves
// surplus to its xsk.Cache after the batch).
// The stack never fills when the poller keeps it at most half full between
// batches; should it, append grows it rather than leak the frame.
func (c *core) release(base uint64) { c.free = append(c.free, base) }

// verdict is what decide made of one frame.
type verdict uint8

const (
	verdictDrop    verdict = iota // dropped, for the reason decide gives
	verdictUnicast                // to its one known destination
	verdictFlood                  // to every port and tunnel of the bridge but its source
)

// decision is decide's result as trace (trace.go) keeps it.
type decision struct {
	v      verdict
	reason dropReason
	br     *bridge
	srcTun *tunnel
	dst    flowtable.Dest
	off, n int
}

// forward switches a batch of frames received on port in. Each frame ends
// up queued in c.pend, written to an internal port, or dropped and counted
// (its frame returned to c.free).
func (c *core) forward(in *port, descs []desc) {
	if !c.mb {
		c.forwardFrames(in, descs)
		return
	}
	// Multi-buffer UMEM: runs of single frames, and chains (multibuf.go).
	for len(descs) > 0 {
		k := 0
		for k < len(descs) && descs[k].Options&xsk.OptContinued == 0 {
			k++
		}
		c.forwardFrames(in, descs[:k])
		if k == len(descs) {
			return
		}
		descs = descs[c.forwardChain(in, descs, k)+1:]
	}
}

// forwardFrames is forward for frames of one descriptor each.
func (c *core) forwardFrames(in *port, descs []desc) {
	mask := ^(c.fsize - 1)
	capIn := in.capture.Load() // nil unless `xswitch ctl capture` runs on in
	// Counters are atomic adds (the control path reads them while the
	// poller runs): the port's receive counters once per batch.
	var rxPkts, rxBytes uint64
	for i := range descs {
		d := descs[i]
		base := d.Addr & mask
		off := int(d.Addr - base)
		n := int(d.Len)
		frame := c.area[base : base+c.fsize]
		if off+n > len(frame) {
			c.drop(in, dropRunt)
			c.release(base)
			continue
		}
		rxPkts++
		rxBytes += uint64(n)
		if capIn != nil {
			c.capture(capIn, frame[off:off+n], false)
		}
		// Separate results, not a struct: a struct result is copied through
		// the stack, and its wide loads of narrow stores stall (measured).
		v, why, br, srcTun, dst, ioff, ilen := c.decide(in, frame, off, n)
		if c.tr != nil {
			c.tr.dc = decision{v: v, reason: why, br: br, srcTun: srcTun, dst: dst, off: ioff, n: ilen}
		}
		switch v {
		case verdictUnicast:
			if dst&tunnelBit != 0 {
				c.toTunnel(c.f.tunnels[dst&^tunnelBit], frame, base, ioff, ilen)
			} else {
				c.toPort(c.f.ports[dst], frame, base, ioff, ilen)
			}
		case verdictFlood:
			// Unknown unicast of a bridge that keeps it local (EVPN
			// flood_unknown_unicast: false) goes to no tunnel.
			c.flood(br, in, srcTun != nil || (br.uuLocal && frame[ioff]&1 == 0), frame, base, ioff, ilen)
		default:
			c.dropVerdict(in, srcTun, why)
			c.release(base)
		}
	}
	ic := &c.ctr[in.id]
	atomic.AddUint64(&ic.rxPackets, rxPkts)
	atomic.AddUint64(&ic.rxBytes, rxBytes)
}

// dropVerdict counts a frame decide dropped: a spoof from a tunnel on the
// tunnel, anything else on the port it came in on.
func (c *core) dropVerdict(in *port, srcTun *tunnel, why dropReason) {
	if (why == dropOwnMAC || why == dropStaticMAC) && srcTun != nil {
		atomic.AddUint64(&c.tctr[srcTun.id].drops[why], 1)
	} else {
		c.drop(in, why)
	}
}

// decide is the forwarding decision for the frame frame[off:off+n] received
// on port in: decapsulation and its checks (from the underlay), learning (a
// prediction of it when tracing) and the lookup. It returns the verdict, the
// drop reason (verdictDrop), the bridge, the tunnel the frame came from (nil
// from a local or internal port), the destination (known unicast) and where
// the (inner) Ethernet frame is. It writes nothing but counters, the MAC
// table (learning) and the core's per-frame state.
func (c *core) decide(in *port, frame []byte, off, n int) (v verdict, why dropReason, br *bridge, srcTun *tunnel, dst flowtable.Dest, ioff, ilen int) {
	br, ioff, ilen = in.br, off, n
	src := in.dest
	if in.kind == kindUnderlay {
		dec := &c.dec
		if r := geneve.Decap(frame[off:off+n], dec); r != geneve.DropNone {
			why = dropReason(r)
			return
		}
		if dec.OAM {
			why = dropReason(geneve.DropOAM)
			return
		}
		if dec.OptLen > 0 {
			opts := frame[off+dec.OptOff : off+dec.OptOff+dec.OptLen]
			if r := geneve.CheckOptions(opts, c.f.known); r != geneve.DropNone {
				why = dropReason(r)
				return
			}
			it := geneve.Options(opts).Iter()
			for {
				o, ok := it.Next()
				if !ok {
					break
				}
				c.opt.add(o.Class, o.Type)
			}
		}
		br = c.f.byVNI[dec.VNI]
		if br == nil {
			why = dropUnknownVNI
			return
		}
		srcTun = br.findRemote(dec.Src)
		if srcTun == nil {
			why = dropUnknownRemote
			return
		}
		ioff += dec.InnerOff
		ilen = dec.InnerLen
		tc := &c.tctr[srcTun.id]
		atomic.AddUint64(&tc.rxPackets, 1)
		atomic.AddUint64(&tc.rxBytes, uint64(ilen))
		if cp := srcTun.capture.Load(); cp != nil {
			c.capture(cp, frame[ioff:ioff+ilen], false)
		}
		src = srcTun.dest
	}
	if ilen < 14 {
		why = dropRunt
		return
	}
	srcMAC := flowtable.MACFrom(frame[ioff+6:])
	if srcMAC.IsMulticast() {
		why = dropBadSrcMAC
		return
	}
	var lr flowtable.LearnResult
	if c.tr == nil {
		lr = br.table.Learn(srcMAC, src, c.now)
	} else {
		lr = c.tr.predict(br.table, srcMAC, src, c.now) // trace: learning without writing
	}
	if lr == flowtable.LearnStatic {
		// The source claims a MAC configured on another port (the
		// internal port's own, or a static_macs entry): a spoof or a
		// loop, never forwarded.
		why = staticClaim(br, srcMAC, src, srcTun == nil)
		return
	}
	c.notePartial(in, frame[ioff:ioff+ilen])
	dstMAC := flowtable.MACFrom(frame[ioff:])
	if !dstMAC.IsMulticast() {
		var ok bool
		if dst, ok = br.table.Lookup(dstMAC); ok {
			switch {
			case dst == src:
				why = dropSamePort
			case dst&tunnelBit != 0 && srcTun != nil:
				why = dropSplitHorizon
			default:
				v = verdictUnicast
			}
			return
		}
	}
	v = verdictFlood
	return
}

// flood sends a frame to every port and tunnel of br except where it came
// from; a frame from a tunnel goes to no tunnel (split horizon). Internal
// ports get a write from the original frame (the kernel copies it); the
// other destinations but the last get copies, the last gets the original.
func (c *core) flood(br *bridge, in *port, fromTunnel bool, frame []byte, base uint64, off, n int) {
	if p := br.internal; p != nil && p != in {
		c.writeTAP(p, frame, off, n, c.tapHeader())
	}
	k := 0 // AF_XDP destinations
	for _, p := range br.locals {
		if p != in {
			k++
		}
	}
	if !fromTunnel {
		k += len(br.tunnels)
	}
	if k == 0 {
		c.release(base)
		return
	}
	c.finishCsum(frame[off : off+n]) // before the copies
	for _, p := range br.locals {
		if p == in {
			continue
		}
		k--
		if k == 0 {
			c.toPort(p, frame, base, off, n)
			return
		}
		if nb, nf, noff, ok := c.copyFrame(p, frame[off:off+n]); ok {
			c.toPort(p, nf, nb, noff, n)
		}
	}
	if fromTunnel {
		return
	}
	for _, t := range br.tunnels {
		k--
		if k == 0 {
			c.toTunnel(t, frame, base, off, n)
			return
		}
		if nb, nf, noff, ok := c.copyFrame(c.f.underlay, frame[off:off+n]); ok {
			c.toTunnel(t, nf, nb, noff, n)
		}
	}
}

// copyFrame copies b into a fresh frame at copyOff, or, when b is longer
// than the room after copyOff, so that it ends at the frame's end (toTunnel
// then finds the headroom short and counts too_big rather than encapsulating
// past the frame). It returns the frame, its base and b's offset in it (a
// drop on p when no frame is free).
func (c *core) copyFrame(p *port, b []byte) (uint64, []byte, int, bool) {
	if len(c.free) == 0 {
		c.drop(p, dropNoFrame)
		return 0, nil, 0, false
	}
	nb := c.free[len(c.free)-1] &^ (c.fsize - 1) // completions may carry an offset
	c.free = c.free[:len(c.free)-1]
	nf := c.area[nb : nb+c.fsize]
	off := min(copyOff, len(nf)-len(b)) // len(b) <= frame size: it came in one frame
	copy(nf[off:], b)
	atomic.AddUint64(&c.floodCopies, 1)
	return nb, nf, off, true
}

// toPort queues a frame for transmission on p, or writes it to p's TAP.
func (c *core) toPort(p *port, frame []byte, base uint64, off, n int) {
	q := c.pend[p.id]
	if p.fd >= 0 {
		// Internal port: gathered for the coalescer (flushTAPs); with
		// the queue full, written at once.
		if len(q) == cap(q) {
			c.writeTAP(p, frame, off, n, c.tapHeader())
			c.release(base)
			return
		}
		c.pend[p.id] = append(q, desc{Addr: base + uint64(off), Len: uint32(n)})
		return
	}
	var opt uint32
	if c.partial && p.txCsum && off >= xsk.TxMetadataLen {
		opt = c.partialToDevice(p, frame, off, 0)
	} else {
		c.finishCsum(frame[off : off+n])
	}
	if len(q) == cap(q) {
		c.drop(p, fullReason(p))
		c.release(base)
		return
	}
	c.pend[p.id] = append(q, desc{Addr: base + uint64(off), Len: uint32(n), Options: opt})
}

// toTunnel encapsulates a frame in place for t and queues it on the underlay.
func (c *core) toTunnel(t *tunnel, frame []byte, base uint64, off, n int) {
	tc := &c.tctr[t.id]
	enc := t.enc.Load()
	if enc == nil {
		atomic.AddUint64(&tc.drops[dropNoNeighbour], 1)
		c.release(base)
		return
	}
	if n > t.maxInner {
		atomic.AddUint64(&tc.drops[dropTooBig], 1)
		c.release(base)
		return
	}
	u := c.f.underlay
	csStart, csOff, outer := enc.UDPChecksumAt()
	// The device computes one checksum per frame: the outer one where the
	// tunnel has it, else one the sender left partial.
	innerToDevice := u.txCsum && c.partial && !outer
	if !innerToDevice {
		c.finishCsum(frame[off : off+n])
	}
	h := enc.HeaderLen()
	if off < h+xsk.TxMetadataLen {
		// Not enough headroom (large options): move the frame back. The
		// packet keeps TX metadata room in front (the kernel checks it for
		// every descriptor of a UMEM with TX metadata).
		if copyOff+n > len(frame) {
			atomic.AddUint64(&tc.drops[dropTooBig], 1)
			c.release(base)
			return
		}
		copy(frame[copyOff:], frame[off:off+n])
		off = copyOff
	}
	var start int
	var opt uint32
	switch {
	case u.txCsum && outer:
		start = enc.EncapPartial(frame, off, n, geneve.InnerHash(frame[off:off+n]))
		opt = xsk.SetTxChecksum(frame, start, uint16(csStart), uint16(csOff))
		atomic.AddUint64(&c.off[u.id].csumDev, 1)
	case innerToDevice:
		start = enc.Encap(frame, off, n)
		opt = c.partialToDevice(u, frame, start, h)
	default:
		start = enc.Encap(frame, off, n)
	}
	q := c.pend[u.id]
	if len(q) == cap(q) {
		c.drop(u, dropTxFull)
		c.release(base)
		return
	}
	atomic.AddUint64(&tc.txPackets, 1)
	atomic.AddUint64(&tc.txBytes, uint64(n))
	if cp := t.capture.Load(); cp != nil {
		c.capture(cp, frame[start+h:start+h+n], true)
	}
	c.pend[u.id] = append(q, desc{Addr: base + uint64(start), Len: uint32(n + h), Options: opt})
}
