package offload

import (
	"encoding/binary"

	"xswitch/csum"
)

// L4Csum says where a TCP/UDP checksum is computed: over frame[Start:End],
// stored at frame[Start+Offset:]. Start and Offset map to the virtio-net
// header's csum_start and csum_offset.
type L4Csum struct {
	Start, Offset, End int
}

// IsPartial reports whether frame is a TCP or UDP packet whose checksum field
// holds only the folded pseudo-header sum: what Linux leaves there for
// CHECKSUM_PARTIAL (~csum_tcpudp_magic(saddr, daddr, len, proto, 0), i.e.
// the pseudo-header sum folded to 16 bits and not complemented; the same for
// IPv6 with csum_ipv6_magic). The test reads the headers only, never the
// payload. A complete checksum that happens to equal that value is safe to
// pass to CompleteL4: it is recomputed to the same value.
func IsPartial(frame []byte) (L4Csum, bool) {
	f, r := ParseFrame(frame)
	if r != DropNone {
		return L4Csum{}, false
	}
	return f.Csum(), f.isPartial(frame)
}

func (f *Frame) isPartial(b []byte) bool {
	field := binary.BigEndian.Uint16(b[f.L4+f.CsumOffset():])
	return field == csum.Fold(f.pseudoSum(b, f.L4Len()))
}

// CompleteL4 finishes a partial checksum in place, as the kernel's
// skb_checksum_help does: the field's current value (the pseudo-header sum)
// is part of the sum. c must lie inside frame, as IsPartial returns it; a c
// outside frame is ignored.
func CompleteL4(frame []byte, c L4Csum) {
	if c.Start < 0 || c.Offset < 0 || c.End > len(frame) || c.Start+c.Offset+2 > c.End {
		return
	}
	binary.BigEndian.PutUint16(frame[c.Start+c.Offset:], csum.Finish(csum.Sum(0, frame[c.Start:c.End])))
}

// Complete finishes the checksum of frame if it is partial and reports
// whether it did.
func Complete(frame []byte) bool {
	c, ok := IsPartial(frame)
	if ok {
		CompleteL4(frame, c)
	}
	return ok
}

// csumState is what a frame's L4 checksum field holds.
type csumState uint8

const (
	csumBad     csumState = iota // neither a valid checksum nor a partial one
	csumValid                    // verifies against the pseudo-header and data
	csumPartial                  // holds the pseudo-header sum (CHECKSUM_PARTIAL)
)

// checkCsum classifies f's checksum; it sums the whole L4 segment once.
func (f *Frame) checkCsum(b []byte) csumState {
	if f.isPartial(b) {
		return csumPartial
	}
	if f.Proto == protoUDP && !f.IPv6 && binary.BigEndian.Uint16(b[f.L4+udpCsumOffset:]) == 0 {
		return csumBad // "no checksum": not verified, so not claimed valid
	}
	s := csum.Sum(f.pseudoSum(b, f.L4Len()), b[f.L4:f.End])
	if csum.Fold(s) == 0xffff {
		return csumValid
	}
	return csumBad
}
