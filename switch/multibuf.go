package vswitch

import (
	"sync/atomic"

	"xswitch/xsk"
)

// Jumbo frames with AF_XDP multi-buffer (jumbo.go decides where it is on).
// A frame longer than one UMEM frame arrives as a chain of descriptors,
// xsk.OptContinued on all but the last. The core copies the chain into its
// jumbo buffer, makes the same decision as for any frame (decide) on it,
// and writes it out as a new chain of UMEM frames (AF_XDP ports, tunnels)
// or straight from the buffer (internal ports). Two copies of 9 KB cost
// about 2 µs, paid by jumbo frames only: frames that fit one UMEM frame
// never take this path, and the pollers of a UMEM without multi-buffer
// never look for chains (core.mb).

// jumboOff is where a jumbo frame starts in the jumbo buffer: room in
// front for the largest outer header (and a virtio-net header).
const jumboOff = copyOff

// jumboLen is the jumbo buffer's size: the longest frame of MaxJumboMTU.
const jumboLen = jumboOff + MaxJumboMTU + frameOverhead

// chainOff is where each piece of an outgoing chain starts in its UMEM
// frame: with TX metadata the kernel wants that room in front of every
// descriptor.
const chainOff = xsk.TxMetadataLen

// jumboBuf returns the core's jumbo buffer, made on the first jumbo frame
// (one allocation per poller, never per frame).
func (c *core) jumboBuf() []byte {
	if c.jumbo == nil {
		c.jumbo = make([]byte, jumboLen)
	}
	return c.jumbo
}

// forwardChain forwards the multi-buffer frame that starts at descs[i] and
// returns the index of its last descriptor. Every frame of the chain goes
// back to c.free: the frame leaves as copies.
func (c *core) forwardChain(in *port, descs []desc, i int) int {
	j := i
	for j < len(descs)-1 && descs[j].Options&xsk.OptContinued != 0 {
		j++
	}
	buf := c.jumboBuf()
	// A chain cut short (xsk.Socket.Receive never returns one) or with a
	// descriptor past its frame is a runt; one longer than the buffer is
	// too big.
	n, bad, why := 0, descs[j].Options&xsk.OptContinued != 0, dropRunt
	for k := i; k <= j; k++ {
		d := descs[k]
		base := d.Addr &^ (c.fsize - 1)
		switch {
		case bad:
		case d.Addr-base+uint64(d.Len) > c.fsize:
			bad = true
		case jumboOff+n+int(d.Len) > len(buf):
			bad, why = true, dropTooBig
		default:
			n += copy(buf[jumboOff+n:], c.area[d.Addr:d.Addr+uint64(d.Len)])
		}
		c.release(base)
	}
	if bad {
		c.drop(in, why)
		return j
	}
	atomic.AddUint64(&c.off[in.id].jumboRx, 1)
	c.forwardJumbo(in, buf, jumboOff, n)
	return j
}

// forwardJumbo forwards the frame buf[off:off+n] (the jumbo buffer)
// received on port in.
func (c *core) forwardJumbo(in *port, buf []byte, off, n int) {
	ic := &c.ctr[in.id]
	atomic.AddUint64(&ic.rxPackets, 1)
	atomic.AddUint64(&ic.rxBytes, uint64(n))
	if cp := in.capture.Load(); cp != nil {
		c.capture(cp, buf[off:off+n], false)
	}
	v, why, br, srcTun, dst, ioff, ilen := c.decide(in, buf, off, n)
	if c.tr != nil {
		c.tr.dc = decision{v: v, reason: why, br: br, srcTun: srcTun, dst: dst, off: ioff, n: ilen}
	}
	switch v {
	case verdictUnicast:
		if dst&tunnelBit != 0 {
			c.jumboToTunnel(c.f.tunnels[dst&^tunnelBit], buf, ioff, ilen)
		} else {
			c.jumboToPort(c.f.ports[dst], buf, ioff, ilen)
		}
	case verdictFlood:
		c.jumboFlood(br, in, srcTun != nil || (br.uuLocal && buf[ioff]&1 == 0), buf, ioff, ilen)
	default:
		c.dropVerdict(in, srcTun, why)
	}
}

// jumboFlood is flood for a frame in the jumbo buffer: every destination
// gets its own copy.
func (c *core) jumboFlood(br *bridge, in *port, fromTunnel bool, buf []byte, off, n int) {
	if p := br.internal; p != nil && p != in {
		c.writeTAP(p, buf, off, n, c.tapHeader())
	}
	c.finishCsum(buf[off : off+n])
	for _, p := range br.locals {
		if p != in {
			c.queueChain(p, buf[off:off+n])
		}
	}
	if fromTunnel {
		return
	}
	for _, t := range br.tunnels {
		c.jumboToTunnel(t, buf, off, n)
	}
}

// jumboToPort writes a frame of the jumbo buffer to an internal port, or
// queues it as a chain on an AF_XDP port.
func (c *core) jumboToPort(p *port, buf []byte, off, n int) {
	if p.fd >= 0 {
		c.writeTAP(p, buf, off, n, c.tapHeader())
		return
	}
	c.finishCsum(buf[off : off+n])
	c.queueChain(p, buf[off:off+n])
}

// jumboToTunnel encapsulates a frame of the jumbo buffer for t (the outer
// headers go in front of it in the buffer) and queues it on the underlay.
func (c *core) jumboToTunnel(t *tunnel, buf []byte, off, n int) {
	tc := &c.tctr[t.id]
	enc := t.enc.Load()
	switch {
	case enc == nil:
		atomic.AddUint64(&tc.drops[dropNoNeighbour], 1)
		return
	case n > t.maxInner:
		atomic.AddUint64(&tc.drops[dropTooBig], 1)
		return
	}
	c.finishCsum(buf[off : off+n])
	start := enc.Encap(buf, off, n)
	if !c.queueChain(c.f.underlay, buf[start:off+n]) {
		return
	}
	atomic.AddUint64(&tc.txPackets, 1)
	atomic.AddUint64(&tc.txBytes, uint64(n))
	if cp := t.capture.Load(); cp != nil {
		c.capture(cp, buf[off:off+n], true)
	}
}

// queueChain copies b into as many free UMEM frames as it takes and queues
// them on AF_XDP port p as one multi-buffer frame; it reports whether it
// did (a frame that does not fit p's transmit list, or for which there are
// not enough free frames, is a counted drop).
func (c *core) queueChain(p *port, b []byte) bool {
	piece := int(c.fsize) - chainOff
	k := (len(b) + piece - 1) / piece
	q := c.pend[p.id]
	switch {
	case len(q)+k > cap(q):
		c.drop(p, fullReason(p))
		return false
	case len(c.free) < k:
		c.drop(p, dropNoFrame)
		return false
	}
	if cp := p.capture.Load(); cp != nil {
		c.capture(cp, b, true) // flush captures single frames only
	}
	for len(b) > 0 {
		nb := c.free[len(c.free)-1] &^ (c.fsize - 1)
		c.free = c.free[:len(c.free)-1]
		m := copy(c.area[nb+chainOff:nb+c.fsize], b)
		b = b[m:]
		var opt uint32
		if len(b) > 0 {
			opt = xsk.OptContinued
		}
		q = append(q, desc{Addr: nb + chainOff, Len: uint32(m), Options: opt})
	}
	c.pend[p.id] = q
	atomic.AddUint64(&c.floodCopies, 1)
	atomic.AddUint64(&c.off[p.id].jumboTx, 1)
	return true
}
