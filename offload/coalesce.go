package offload

import (
	"bytes"
	"encoding/binary"
	"errors"

	"xswitch/csum"
)

// MaxFlows is how many TCP flows a Coalescer merges at once in one burst;
// frames of further flows pass through unmerged.
const MaxFlows = 64

// MaxFrameLen is the longest frame a merge can produce: Ethernet with two
// VLAN tags, an IPv6 header and the largest IPv6 payload.
const MaxFrameLen = 14 + 4*maxVLANTags + ipv6HeaderLen + maxIPv6Payload

// CoalesceOut is one frame to write to the TAP, in burst order of its first
// frame.
type CoalesceOut struct {
	Frame []byte  // burst[Index] (passed through) or a merged frame in a Coalescer buffer
	Hdr   VnetHdr // the virtio-net header to write in front of Frame
	Index int     // burst index of the (first) frame it holds
	Count int     // burst frames it holds: 1 = passed through
}

// CoalesceStats counts what a Coalescer did, summed over bursts.
type CoalesceStats struct {
	Merged   uint64 // large frames built
	Absorbed uint64 // burst frames merged into them (including their first frames)
	BadCsum  uint64 // TCP/UDP frames whose checksum was neither valid nor partial
	NoBuffer uint64 // merges refused because every buffer of the burst was taken
}

// ErrCoalesceBuffer: a merge buffer is shorter than headroom + MaxFrameLen.
var ErrCoalesceBuffer = errors.New("offload: coalescer buffer shorter than headroom+MaxFrameLen")

// Coalescer is GRO in software toward a TAP: within one burst it merges TCP
// segments of one flow into one large frame with a GSO virtio-net header, as
// Linux's tcp_gro_receive would, so that the kernel's TCP stack sees 64 KB
// frames. Merged: segments of the same flow (addresses, ports), the same
// Ethernet header, IPv4 TOS/TTL/DF (header without options and with a
// valid checksum; ID +1 per segment, or fixed with DF), or IPv6 traffic class/flow label/hop limit,
// the same TCP ACK number, header length and option bytes, adjacent
// sequence numbers, flags ACK or ACK|PSH (PSH ends the merge), payload equal
// to the first segment's (gso_size) except for a shorter last one, and a
// checksum that verifies or is partial (every merged segment is summed once;
// a bad one is never hidden behind NEEDS_CSUM). A merged frame gets
// NEEDS_CSUM with the pseudo-header sum in its TCP checksum field. Every
// other frame passes through with DATA_VALID when its TCP/UDP checksum
// verifies, NEEDS_CSUM when it is partial, and no flag otherwise (the kernel
// then checks it). A frame of a flow that cannot be merged ends that flow's
// merge, so the order within a flow is kept.
//
// One Coalescer serves one goroutine; it does not allocate after
// NewCoalescer and never writes to the burst's frames.
type Coalescer struct {
	bufs     [][]byte
	headroom int
	nextBuf  int
	burst    [][]byte
	out      []CoalesceOut
	runs     [MaxFlows]run
	nruns    int
	Stats    CoalesceStats
}

// run is a merge in progress: a flow's first mergeable frame and what has
// been appended to it.
type run struct {
	hash    uint32
	first   int    // burst index of the first frame
	out     int    // its CoalesceOut
	f       Frame  // headers of the first frame (same offsets in buf)
	buf     []byte // merged frame, from the first merge on
	end     int    // merged IP packet end in buf
	gso     int    // payload of the first segment
	nextSeq uint32
	id      uint16 // IPv4 ID of the first frame
	fixedID bool   // IPv4 IDs do not change (DF set)
	count   int
	psh     bool
}

// NewCoalescer returns a Coalescer that builds merged frames in bufs, at
// bufs[i][headroom:] (room for the virtio-net header or more in front).
// Each buffer must hold headroom+MaxFrameLen bytes; the number of buffers
// bounds the merged frames per burst.
func NewCoalescer(bufs [][]byte, headroom int) (*Coalescer, error) {
	for _, b := range bufs {
		if headroom < 0 || len(b) < headroom+MaxFrameLen {
			return nil, ErrCoalesceBuffer
		}
	}
	return &Coalescer{bufs: bufs, headroom: headroom}, nil
}

// Coalesce merges burst into out and returns how many entries it filled.
// out needs one entry per burst frame; frames beyond len(out) are ignored.
// Merged frames stay valid until the next call.
func (c *Coalescer) Coalesce(burst [][]byte, out []CoalesceOut) int {
	c.burst, c.out, c.nextBuf, c.nruns = burst, out, 0, 0
	n := 0
	for i := range burst {
		if n == len(out) {
			break
		}
		n = c.add(i, n)
	}
	for c.nruns > 0 {
		c.closeRun(c.nruns - 1)
	}
	c.burst, c.out = nil, nil
	return n
}

// add handles burst[i], whose entry (if it starts one) is out[n].
func (c *Coalescer) add(i, n int) int {
	b := c.burst[i]
	c.out[n] = CoalesceOut{Frame: b, Index: i, Count: 1}
	f, r := ParseFrame(b)
	if r != DropNone {
		return n + 1
	}
	st := f.checkCsum(b)
	c.out[n].Hdr = passHdr(&f, st)
	if st == csumBad {
		c.Stats.BadCsum++
	}
	if f.Proto != protoTCP {
		return n + 1
	}
	hash := flowHash(b, &f)
	ok := st != csumBad && mergeable(b, &f)
	if ri := c.find(b, &f, hash); ri >= 0 {
		if ok {
			if merged, closeAfter := c.tryAppend(&c.runs[ri], b, &f); merged {
				if closeAfter {
					c.closeRun(ri)
				}
				return n
			}
		}
		c.closeRun(ri)
	}
	if ok && b[f.L4+13]&tcpFlagPSH == 0 && c.nruns < MaxFlows {
		c.openRun(i, n, b, &f, hash)
	}
	return n + 1
}

// passHdr is the header of a frame passed through unmerged.
func passHdr(f *Frame, st csumState) VnetHdr {
	switch st {
	case csumValid:
		return VnetHdr{Flags: FlagDataValid}
	case csumPartial:
		return VnetHdr{Flags: FlagNeedsCsum, CsumStart: uint16(f.L4), CsumOffset: uint16(f.CsumOffset())}
	}
	return VnetHdr{}
}

// mergeable: a TCP segment with payload, flags ACK or ACK|PSH, and (IPv4)
// no IP options and a header checksum that verifies (a merged frame gets a
// new one, which must not hide a corrupted header).
func mergeable(b []byte, f *Frame) bool {
	flags := b[f.L4+13]
	if flags&^tcpFlagPSH != tcpFlagACK || f.End == f.Payload {
		return false
	}
	return f.IPv6 || (f.L4-f.L3 == ipv4MinHdrLen && csum.Fold(csum.Sum(0, b[f.L3:f.L4])) == 0xffff)
}

// flowHash mixes addresses and ports; find confirms a match byte by byte.
func flowHash(b []byte, f *Frame) uint32 {
	h := binary.BigEndian.Uint32(b[f.L4:]) * 0x9e3779b1
	a := b[f.L3+12 : f.L3+20]
	if f.IPv6 {
		a = b[f.L3+8 : f.L3+40]
	}
	for len(a) >= 4 {
		h = (h ^ binary.BigEndian.Uint32(a)) * 0x85ebca6b
		a = a[4:]
	}
	return h ^ h>>15
}

// find returns the open run of b's flow, or -1.
func (c *Coalescer) find(b []byte, f *Frame, hash uint32) int {
	for ri := 0; ri < c.nruns; ri++ {
		r := &c.runs[ri]
		if r.hash == hash && sameFlow(c.burst[r.first], &r.f, b, f) {
			return ri
		}
	}
	return -1
}

func sameFlow(a []byte, fa *Frame, b []byte, fb *Frame) bool {
	if fa.IPv6 != fb.IPv6 || !bytes.Equal(a[fa.L4:fa.L4+4], b[fb.L4:fb.L4+4]) {
		return false
	}
	if fa.IPv6 {
		return bytes.Equal(a[fa.L3+8:fa.L3+40], b[fb.L3+8:fb.L3+40])
	}
	return bytes.Equal(a[fa.L3+12:fa.L3+20], b[fb.L3+12:fb.L3+20])
}

func (c *Coalescer) openRun(i, n int, b []byte, f *Frame, hash uint32) {
	c.runs[c.nruns] = run{
		hash: hash, first: i, out: n, f: *f, end: f.End, gso: f.End - f.Payload,
		nextSeq: binary.BigEndian.Uint32(b[f.L4+4:]) + uint32(f.End-f.Payload),
		id:      binary.BigEndian.Uint16(b[f.L3+4:]), count: 1,
	}
	c.nruns++
}

// tryAppend merges b into r when every rule allows it; closeAfter says that
// nothing may follow b (PSH or a short segment).
func (c *Coalescer) tryAppend(r *run, b []byte, f *Frame) (merged, closeAfter bool) {
	first := c.burst[r.first]
	pay := f.End - f.Payload
	if !sameHeaders(r, first, b, f) || binary.BigEndian.Uint32(b[f.L4+4:]) != r.nextSeq || pay > r.gso {
		return false, false
	}
	if r.end+pay-r.f.L3 > maxIPv4Total+ipv6HeaderLen*b2i(r.f.IPv6) {
		return false, false // the IP length field would overflow
	}
	if r.buf == nil {
		if c.nextBuf == len(c.bufs) {
			c.Stats.NoBuffer++
			return false, false
		}
		r.buf = c.bufs[c.nextBuf][c.headroom:]
		c.nextBuf++
		copy(r.buf, first[:r.f.End])
	}
	copy(r.buf[r.end:], b[f.Payload:f.End])
	r.end += pay
	r.nextSeq += uint32(pay)
	r.count++
	c.out[r.out].Count++
	r.psh = b[f.L4+13]&tcpFlagPSH != 0
	return true, r.psh || pay < r.gso
}

func b2i(v bool) int {
	if v {
		return 1
	}
	return 0
}

// sameHeaders applies the per-field rules of tcp_gro_receive and
// inet_gro_receive / ipv6_gro_receive to b against the run's first frame,
// and fixes the run's IPv4 ID mode on its second frame.
func sameHeaders(r *run, first []byte, b []byte, f *Frame) bool {
	fa := &r.f
	if fa.L3 != f.L3 || fa.Payload-fa.L4 != f.Payload-f.L4 || !bytes.Equal(first[:fa.L3], b[:f.L3]) {
		return false
	}
	// ACK number (8..12) and options (20..) must match; flags were checked.
	if !bytes.Equal(first[fa.L4+8:fa.L4+12], b[f.L4+8:f.L4+12]) ||
		!bytes.Equal(first[fa.L4+tcpMinHdrLen:fa.Payload], b[f.L4+tcpMinHdrLen:f.Payload]) {
		return false
	}
	ia, ib := first[fa.L3:fa.L4], b[f.L3:f.L4]
	if f.IPv6 {
		// version, traffic class, flow label; hop limit
		return bytes.Equal(ia[:4], ib[:4]) && ia[7] == ib[7]
	}
	if ia[1] != ib[1] || ia[8] != ib[8] || (ia[6]^ib[6])&(ipv4FlagDF>>8) != 0 {
		return false // TOS, TTL, DF
	}
	id := binary.BigEndian.Uint16(ib[4:])
	if r.count == 1 {
		r.fixedID = id == r.id && ia[6]&(ipv4FlagDF>>8) != 0
	}
	if r.fixedID {
		return id == r.id
	}
	return id == r.id+uint16(r.count)
}

// closeRun finishes run ri (lengths, IPv4 header checksum, partial TCP
// checksum, GSO header) when it merged anything, and forgets it.
func (c *Coalescer) closeRun(ri int) {
	r := &c.runs[ri]
	if r.count > 1 {
		c.finishMerged(r)
	}
	c.nruns--
	c.runs[ri] = c.runs[c.nruns]
}

func (c *Coalescer) finishMerged(r *run) {
	f := &r.f
	b := r.buf[:r.end]
	gso := uint8(GSOTCPv4)
	if f.IPv6 {
		gso = GSOTCPv6
		binary.BigEndian.PutUint16(b[f.L3+4:], uint16(r.end-f.L4))
	} else {
		binary.BigEndian.PutUint16(b[f.L3+2:], uint16(r.end-f.L3))
		setIPv4Checksum(b[f.L3:f.L4])
	}
	if r.psh {
		b[f.L4+13] |= tcpFlagPSH
	}
	binary.BigEndian.PutUint16(b[f.L4+tcpCsumOffset:], csum.Fold(f.pseudoSum(b, r.end-f.L4)))
	o := &c.out[r.out]
	o.Frame = b
	o.Hdr = VnetHdr{
		Flags: FlagNeedsCsum, GSOType: gso, HdrLen: uint16(f.Payload), GSOSize: uint16(r.gso),
		CsumStart: uint16(f.L4), CsumOffset: tcpCsumOffset,
	}
	c.Stats.Merged++
	c.Stats.Absorbed += uint64(r.count)
}
