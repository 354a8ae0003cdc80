package vswitch

import (
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"xswitch/offload"
)

// The switch's side of checksum and segmentation offload (the arithmetic is
// in package offload):
//
//   - A local port's veth peer with TX checksum offload hands frames whose
//     TCP/UDP checksum holds only the pseudo-header sum. forward notes such a
//     frame (offload.IsPartial reads the headers only) and finishes the
//     checksum before the frame leaves on a tunnel or another AF_XDP port;
//     toward the internal port the kernel finishes it (NEEDS_CSUM).
//   - The internal port is a TAP with IFF_VNET_HDR and TSO/USO: the host
//     stack hands up to 64 KB frames, which the TAP reader cuts into frames
//     that fit the bridge (offload.Segmenter), each straight into its own
//     UMEM frame; frames toward the TAP from one burst are merged per TCP
//     flow (offload.Coalescer) and written with one virtio-net header each.

// offCtr are one poller's offload counters of one port (atomic adds by the
// poller, atomic loads by the control path).
type offCtr struct {
	csumDone  uint64 // partial checksums finished in software, of frames received on the port
	csumDev   uint64 // checksums requested from the device (TX metadata), of frames sent on the port
	tsoFrames uint64 // large (GSO) frames read from the port (TAP)
	tsoSegs   uint64 // frames cut from them
	groFrames uint64 // merged frames written to the port (TAP)
	groSegs   uint64 // frames merged into them
	jumboRx   uint64 // multi-buffer frames received on the port (multibuf.go)
	jumboTx   uint64 // multi-buffer frames queued on the port
}

func (o *offCtr) addTo(s *offSum) {
	s.csumDone += atomic.LoadUint64(&o.csumDone)
	s.csumDev += atomic.LoadUint64(&o.csumDev)
	s.tsoFrames += atomic.LoadUint64(&o.tsoFrames)
	s.tsoSegs += atomic.LoadUint64(&o.tsoSegs)
	s.groFrames += atomic.LoadUint64(&o.groFrames)
	s.groSegs += atomic.LoadUint64(&o.groSegs)
	s.jumboRx += atomic.LoadUint64(&o.jumboRx)
	s.jumboTx += atomic.LoadUint64(&o.jumboTx)
}

// offSum is offCtr summed over pollers.
type offSum struct {
	csumDone, csumDev, tsoFrames, tsoSegs, groFrames, groSegs, jumboRx, jumboTx uint64
}

// tapGRO is a core's state for frames toward internal ports: the Coalescer,
// its merge buffers and the burst being gathered.
type tapGRO struct {
	co    *offload.Coalescer
	bufs  [][]byte
	burst [][]byte
	out   []offload.CoalesceOut
}

// groBuffers is how many merged frames a core can build per burst toward
// one TAP (each up to 64 KB); further flows of the burst pass unmerged.
const groBuffers = 4

func newTapGRO() *tapGRO {
	bufs := make([][]byte, groBuffers)
	for i := range bufs {
		bufs[i] = make([]byte, offload.VnetHdrLen+offload.MaxFrameLen)
	}
	co, err := offload.NewCoalescer(bufs, offload.VnetHdrLen)
	if err != nil {
		panic(err) // the buffers above are the size NewCoalescer asks for
	}
	return &tapGRO{co: co, bufs: bufs, burst: make([][]byte, 0, maxBurst), out: make([]offload.CoalesceOut, maxBurst)}
}

// notePartial records whether the frame just received on a local port has a
// checksum left partial by its sender.
func (c *core) notePartial(in *port, b []byte) {
	c.partial, c.inID = false, in.id
	if in.kind == kindLocal {
		c.csum, c.partial = offload.IsPartial(b)
	}
}

// finishCsum completes the current frame's partial checksum (once) before
// the frame, or a copy of it, leaves on an AF_XDP port or a tunnel.
func (c *core) finishCsum(b []byte) {
	if c.partial {
		offload.CompleteL4(b, c.csum)
		c.partial = false
		atomic.AddUint64(&c.off[c.inID].csumDone, 1)
	}
}

// tapHeader is the virtio-net header of a frame written to a TAP outside
// the coalescer (floods): NEEDS_CSUM where its checksum is still partial,
// nothing otherwise (the kernel verifies it).
func (c *core) tapHeader() offload.VnetHdr {
	if !c.partial {
		return offload.VnetHdr{}
	}
	return offload.VnetHdr{Flags: offload.FlagNeedsCsum, CsumStart: uint16(c.csum.Start), CsumOffset: uint16(c.csum.Offset)}
}

// writeTAP writes one frame with its virtio-net header to an internal port.
// The header goes into the 10 bytes in front of the frame: every frame has
// at least the AF_XDP headroom (or copyOff) there. Non-blocking: a full
// queue is a counted drop, never a stall.
func (c *core) writeTAP(p *port, frame []byte, off, n int, h offload.VnetHdr) {
	b := frame[off-offload.VnetHdrLen : off+n]
	_ = h.Encode(b)
	c.tapWrite(p, b, n)
}

func (c *core) tapWrite(p *port, b []byte, n int) {
	pc := &c.ctr[p.id]
	if c.tr != nil {
		c.tr.tapWrites = append(c.tr.tapWrites, p.id) // trace: no side effect
		return
	}
	if _, err := unix.Write(p.fd, b); err != nil {
		atomic.AddUint64(&pc.drops[dropTAPWrite], 1)
		return
	}
	if cp := p.capture.Load(); cp != nil {
		c.capture(cp, b[len(b)-n:], true)
	}
	atomic.AddUint64(&c.tapCopies, 1)
	atomic.AddUint64(&pc.txPackets, 1)
	atomic.AddUint64(&pc.txBytes, uint64(n))
}

// flushTAPs writes the frames queued for internal ports, merged per TCP
// flow, and frees them.
func (c *core) flushTAPs() {
	for _, p := range c.f.taps {
		q := c.pend[p.id]
		if len(q) == 0 {
			continue
		}
		c.flushTAP(p, q)
		c.pend[p.id] = q[:0]
	}
}

func (c *core) flushTAP(p *port, q []desc) {
	g := c.gro
	g.burst = g.burst[:0]
	for _, d := range q {
		g.burst = append(g.burst, c.area[d.Addr:d.Addr+uint64(d.Len)])
	}
	nout := g.co.Coalesce(g.burst, g.out)
	oc := &c.off[p.id]
	for _, o := range g.out[:nout] {
		if o.Count == 1 {
			d := q[o.Index]
			base := d.Addr &^ (c.fsize - 1)
			c.writeTAP(p, c.area[base:base+c.fsize], int(d.Addr-base), int(d.Len), o.Hdr)
			continue
		}
		b := g.withHeader(o.Frame)
		_ = o.Hdr.Encode(b)
		c.tapWrite(p, b, len(o.Frame))
		atomic.AddUint64(&oc.groFrames, 1)
		atomic.AddUint64(&oc.groSegs, uint64(o.Count))
	}
	for _, d := range q {
		c.release(d.Addr &^ (c.fsize - 1))
	}
}

// withHeader returns the merged frame f with the VnetHdrLen bytes in front
// of it in its Coalescer buffer.
func (g *tapGRO) withHeader(f []byte) []byte {
	for _, b := range g.bufs {
		if &b[offload.VnetHdrLen] == &f[0] {
			return b[:offload.VnetHdrLen+len(f)]
		}
	}
	panic("vswitch: merged frame outside the coalescer's buffers")
}

// readBurst reads frames from the internal port until a batch is full or
// the TAP has nothing more. A large frame (TSO/USO from the host stack) is
// cut into frames that fit the bridge, each written by the Segmenter
// straight into its own UMEM frame; when the batch fills up midway it is
// forwarded and the cutting goes on.
func (tp *tapPoller) readBurst() error {
	for len(tp.batch) < maxBurst {
		k, err := unix.Read(tp.port.fd, tp.buf)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				return nil
			}
			// EBADFD: the device was deleted under its open fd; poll()
			// would report it at once, forever.
			return fmt.Errorf("read: %w (was the device deleted?)", err)
		}
		tp.segment(tp.buf[:k])
	}
	return nil
}

// segment cuts one frame read from the TAP (virtio-net header first) into
// the batch. A header that does not fit its frame is a counted drop.
func (tp *tapPoller) segment(b []byte) {
	c := tp.core
	pc := &c.ctr[tp.port.id]
	h, err := offload.DecodeVnetHdr(b)
	if err != nil {
		atomic.AddUint64(&pc.drops[dropVnetHeader], 1)
		return
	}
	frame := b[offload.VnetHdrLen:]
	nseg, r := tp.seg.Start(h, frame, tp.port.maxFrame, offload.CsumFull)
	if r != offload.DropNone {
		atomic.AddUint64(&pc.drops[segmentDrop(r)], 1)
		return
	}
	if h.IsGSO() {
		oc := &c.off[tp.port.id]
		atomic.AddUint64(&oc.tsoFrames, 1)
		atomic.AddUint64(&oc.tsoSegs, uint64(nseg))
	}
	for i := 0; i < nseg; i++ {
		if tp.seg.Len(i) > int(c.fsize)-copyOff {
			if !tp.forwardJumboSegment() {
				return
			}
			continue
		}
		if len(tp.batch) == cap(tp.batch) {
			tp.forwardBatch()
		}
		if len(c.free) == 0 {
			topUp(c, tp.cache)
			if len(c.free) == 0 {
				atomic.AddUint64(&pc.drops[dropNoFrame], 1)
				return
			}
		}
		fb := c.free[len(c.free)-1] &^ (c.fsize - 1)
		m, r := tp.seg.Next(c.area[fb+copyOff : fb+c.fsize])
		if r != offload.DropNone {
			atomic.AddUint64(&pc.drops[segmentDrop(r)], 1)
			return
		}
		c.free = c.free[:len(c.free)-1]
		atomic.AddUint64(&c.tapCopies, 1)
		tp.batch = append(tp.batch, desc{Addr: fb + copyOff, Len: uint32(m)})
	}
}

// forwardJumboSegment forwards the next segment, longer than a UMEM frame,
// from the core's jumbo buffer (multibuf.go), after the frames read before
// it (order kept). It reports whether the segmenter went on.
func (tp *tapPoller) forwardJumboSegment() bool {
	c := tp.core
	if len(tp.batch) > 0 {
		tp.forwardBatch()
	}
	buf := c.jumboBuf()
	m, r := tp.seg.Next(buf[jumboOff:])
	if r != offload.DropNone {
		atomic.AddUint64(&c.ctr[tp.port.id].drops[segmentDrop(r)], 1)
		return false
	}
	atomic.AddUint64(&c.tapCopies, 1)
	atomic.AddUint64(&c.off[tp.port.id].jumboRx, 1)
	topUp(c, tp.cache)
	c.forwardJumbo(tp.port, buf, jumboOff, m)
	c.flushTAPs()
	flush(c, tp.cache, tp.txIdx, true)
	rebalance(c, tp.cache)
	return true
}

// segmentDrop maps the Segmenter's reasons to the switch's: a frame too
// long for a UMEM frame or the bridge is too_big, anything else a bad
// virtio-net header or frame.
func segmentDrop(r offload.DropReason) dropReason {
	switch r {
	case offload.DropBufferTooSmall, offload.DropMTUTooSmall:
		return dropTooBig
	}
	return dropVnetHeader
}

// fill copies the sums into a port's statistics.
func (o *offSum) fill(ps *PortStats) {
	ps.ChecksumsCompleted = o.csumDone
	ps.ChecksumsOffloaded = o.csumDev
	ps.TSOFrames, ps.TSOSegments = o.tsoFrames, o.tsoSegs
	ps.GROFrames, ps.GROSegments = o.groFrames, o.groSegs
	ps.JumboRx, ps.JumboTx = o.jumboRx, o.jumboTx
}
