package vswitch

import (
	"encoding/binary"
	"sync/atomic"
	"time"
)

// captureTap is one running capture (`xswitch ctl capture`): a ring per
// forwarding core, so that each poller writes its own ring (single
// producer) and the control connection reads them all (single consumer).
// Ports and tunnels point to it while the capture runs (port.capture,
// tunnel.capture).
type captureTap struct {
	rings []coreRing
	snap  int
	// stray counts frames seen by a core the capture has no ring for.
	stray atomic.Uint64
}

type coreRing struct {
	c *core
	r *captureRing
}

// capture copies frame b into the capture's ring of core c, marked
// outbound (sent by the switch) or inbound. A full ring loses the copy
// (counted); the switch's frame is never held back. No allocation.
func (c *core) capture(t *captureTap, b []byte, outbound bool) {
	if c.tr != nil {
		return // a trace's copy of a frame is no frame of the switch
	}
	for i := range t.rings {
		if t.rings[i].c == c {
			t.rings[i].r.put(b, outbound, t.snap)
			return
		}
	}
	t.stray.Add(1)
}

// captureRing is a single-producer single-consumer ring of variable-length
// records in one byte slice: a 16-byte header (captured length and flags,
// original length, time in ns) and the captured bytes, padded to 8. A record
// that does not fit before the end of the slice is preceded by a pad record
// up to the end. head and tail are byte counts since the start (the
// position is count % size); the producer writes the record, then head; the
// consumer reads it, then tail.
type captureRing struct {
	buf  []byte
	mask uint64
	_    [40]byte
	head atomic.Uint64 // written by the producer (poller)
	lost atomic.Uint64 // written by the producer: copies that did not fit
	_    [48]byte
	tail atomic.Uint64 // written by the consumer
}

const (
	capHdrLen     = 16
	capFlagPad    = 1 << 31
	capFlagOut    = 1 << 30
	capLenMask    = 1<<30 - 1
	captureRingSz = 1 << 20 // bytes per core and capture
)

func newCaptureRing(size int) *captureRing {
	return &captureRing{buf: make([]byte, size), mask: uint64(size - 1)}
}

// put appends b (at most snap bytes of it) or counts it lost.
func (r *captureRing) put(b []byte, outbound bool, snap int) {
	caplen := min(len(b), snap)
	need := uint64(capHdrLen+caplen+7) &^ 7
	h := r.head.Load()
	free := uint64(len(r.buf)) - (h - r.tail.Load())
	pos := h & r.mask
	if room := uint64(len(r.buf)) - pos; room < need {
		// Pad to the end of the slice and start over at its beginning.
		if room+need > free {
			r.lost.Store(r.lost.Load() + 1)
			return
		}
		binary.LittleEndian.PutUint32(r.buf[pos:], uint32(room)|capFlagPad)
		h += room
		pos = 0
	} else if need > free {
		r.lost.Store(r.lost.Load() + 1)
		return
	}
	w := uint32(caplen)
	if outbound {
		w |= capFlagOut
	}
	rec := r.buf[pos : pos+need]
	binary.LittleEndian.PutUint32(rec[0:], w)
	binary.LittleEndian.PutUint32(rec[4:], uint32(len(b)))
	binary.LittleEndian.PutUint64(rec[8:], uint64(time.Now().UnixNano()))
	copy(rec[capHdrLen:], b[:caplen])
	r.head.Store(h + need)
}

// CapturedFrame is one frame a capture saw. Data is valid only during the
// callback that receives it.
type CapturedFrame struct {
	Time     int64 // Unix time in ns
	Outbound bool  // sent by xswitch on the port (else received)
	OrigLen  int   // the frame's length; len(Data) may be shorter (snap length)
	Data     []byte
}

// peek appends the records written so far to dst and returns the tail
// that frees them (commit). The Data of each stays valid until then.
func (r *captureRing) peek(dst []CapturedFrame) ([]CapturedFrame, uint64) {
	t, h := r.tail.Load(), r.head.Load()
	for t < h {
		pos := t & r.mask
		w := binary.LittleEndian.Uint32(r.buf[pos:])
		if w&capFlagPad != 0 {
			t += uint64(w & capLenMask)
			continue
		}
		caplen := int(w & capLenMask)
		dst = append(dst, CapturedFrame{
			Outbound: w&capFlagOut != 0,
			OrigLen:  int(binary.LittleEndian.Uint32(r.buf[pos+4:])),
			Time:     int64(binary.LittleEndian.Uint64(r.buf[pos+8:])),
			Data:     r.buf[pos+capHdrLen : pos+capHdrLen+uint64(caplen)],
		})
		t += uint64(capHdrLen+caplen+7) &^ 7
	}
	return dst, t
}

// commit frees the room of the records peek returned.
func (r *captureRing) commit(tail uint64) { r.tail.Store(tail) }
