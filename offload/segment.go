package offload

import (
	"encoding/binary"

	"xswitch/csum"
)

// CsumMode chooses who finishes the TCP/UDP checksum of a segment.
type CsumMode uint8

const (
	// CsumFull computes every segment's checksum in software.
	CsumFull CsumMode = iota
	// CsumPartial leaves the pseudo-header sum in the field (CHECKSUM_PARTIAL)
	// for a NIC to finish; Segmenter.Csum says where.
	CsumPartial
)

type segKind uint8

const (
	segCopy  segKind = iota // one frame, copied whole (checksum finished if NEEDS_CSUM)
	segSplit                // TCP or UDP payload split into mss-sized segments
)

// Segmenter is TSO/USO in software: it cuts one large frame read from a TAP
// (with its virtio-net header) into frames of at most maxLen bytes, each
// written straight into a buffer the caller gives, e.g. a UMEM frame at an
// offset that leaves room for the outer headers. Per segment, as Linux's
// tcp_gso_segment and __udp_gso_segment do: the Ethernet and IP headers are
// copied; IPv4 total length, ID (+1 per segment) and header checksum, IPv6
// payload length are rewritten; TCP sequence numbers advance, FIN and PSH
// stay on the last segment only and CWR on the first only; a UDP segment is
// a complete datagram with its own length. hdr_len is not trusted: the
// headers are parsed. The zero value is ready; one Segmenter serves one
// goroutine, one frame at a time, and never writes to the input frame.
//
//	n, r := s.Start(hdr, frame, maxLen, offload.CsumFull)
//	for i := 0; i < n; i++ { m, r := s.Next(buf[i][off:]) ... }
type Segmenter struct {
	frame []byte
	h     VnetHdr
	f     Frame
	kind  segKind
	mode  CsumMode
	mss   int
	nseg  int
	next  int
	seq   uint32
	id    uint16
	csum  L4Csum
	csOK  bool
}

// Start validates hdr against frame and prepares the segments. maxLen is the
// largest frame the caller can send (tunnel MTU minus encapsulation, counted
// from the Ethernet header); 0 means gso_size alone decides. The segment
// payload size is min(gso_size, maxLen - headers). A TCP frame without GSO
// that is longer than maxLen is split the same way; any other frame without
// GSO is passed as one segment, even when longer than maxLen (the caller
// decides what to do with it). Start returns the number of segments.
func (s *Segmenter) Start(hdr VnetHdr, frame []byte, maxLen int, mode CsumMode) (int, DropReason) {
	*s = Segmenter{frame: frame, h: hdr, mode: mode}
	f, r := hdr.Validate(frame)
	if r != DropNone {
		return 0, r
	}
	mss := int(hdr.GSOSize)
	if !hdr.IsGSO() {
		if maxLen <= 0 || len(frame) <= maxLen || !s.splittable(&f) {
			s.kind, s.nseg = segCopy, 1
			return 1, DropNone
		}
		mss = maxLen // clamped below
	}
	if maxLen > 0 && maxLen-f.Payload < mss {
		mss = maxLen - f.Payload
		if mss <= 0 {
			return 0, DropMTUTooSmall
		}
	}
	s.f, s.kind, s.mss = f, segSplit, mss
	s.nseg = max(1, (f.End-f.Payload+mss-1)/mss)
	s.id = binary.BigEndian.Uint16(frame[f.L3+4:])
	if f.Proto == protoTCP {
		s.seq = binary.BigEndian.Uint32(frame[f.L4+4:])
	}
	return s.nseg, DropNone
}

// splittable reports whether a frame without GSO can be cut: a TCP segment
// without SYN, RST or URG whose checksum, if NEEDS_CSUM, is the TCP one (f
// receives its headers).
func (s *Segmenter) splittable(f *Frame) bool {
	pf, r := ParseFrame(s.frame)
	if r != DropNone || pf.Proto != protoTCP || s.frame[pf.L4+13]&(tcpFlagSYN|tcpFlagRST|tcpFlagURG) != 0 {
		return false
	}
	if s.h.Flags&FlagNeedsCsum != 0 && (int(s.h.CsumStart) != pf.L4 || int(s.h.CsumOffset) != tcpCsumOffset) {
		return false
	}
	*f = pf
	return true
}

// Len is the length of segment i (0 for i out of range).
func (s *Segmenter) Len(i int) int {
	if i < 0 || i >= s.nseg {
		return 0
	}
	if s.kind == segCopy {
		return len(s.frame)
	}
	return s.f.Payload + min(s.mss, s.f.End-s.f.Payload-i*s.mss)
}

// Next writes the next segment into dst and returns its length. If dst is
// too short it writes nothing, returns DropBufferTooSmall and stays on the
// same segment. After the last segment it returns 0.
func (s *Segmenter) Next(dst []byte) (int, DropReason) {
	i := s.next
	n := s.Len(i)
	if n == 0 {
		return 0, DropNone
	}
	if len(dst) < n {
		return 0, DropBufferTooSmall
	}
	dst = dst[:n]
	s.next++
	if s.kind == segCopy {
		copy(dst, s.frame)
		s.copyCsum(dst)
		return n, DropNone
	}
	off := s.f.Payload + i*s.mss
	copy(dst, s.frame[:s.f.Payload])
	copy(dst[s.f.Payload:], s.frame[off:off+n-s.f.Payload])
	s.fixIP(dst, i)
	s.fixL4(dst, i)
	return n, DropNone
}

// Csum says where the checksum of the segment last written by Next must be
// finished; ok is false when nothing is left to finish (CsumFull, or a
// copied frame without NEEDS_CSUM).
func (s *Segmenter) Csum() (c L4Csum, ok bool) { return s.csum, s.csOK }

func (s *Segmenter) copyCsum(dst []byte) {
	if s.h.Flags&FlagNeedsCsum == 0 {
		return
	}
	c := s.h.Csum(dst)
	if s.mode == CsumPartial {
		s.csum, s.csOK = c, true
		return
	}
	CompleteL4(dst, c)
}

func (s *Segmenter) fixIP(dst []byte, i int) {
	f := &s.f
	if f.IPv6 {
		binary.BigEndian.PutUint16(dst[f.L3+4:], uint16(len(dst)-f.L4))
		return
	}
	binary.BigEndian.PutUint16(dst[f.L3+2:], uint16(len(dst)-f.L3))
	binary.BigEndian.PutUint16(dst[f.L3+4:], s.id+uint16(i))
	setIPv4Checksum(dst[f.L3:f.L4])
}

func (s *Segmenter) fixL4(dst []byte, i int) {
	f := &s.f
	l4 := dst[f.L4:]
	if f.Proto == protoTCP {
		binary.BigEndian.PutUint32(l4[4:], s.seq+uint32(i*s.mss))
		if i != s.nseg-1 {
			l4[13] &^= tcpFlagFIN | tcpFlagPSH
		}
		if i != 0 {
			l4[13] &^= tcpFlagCWR
		}
	} else {
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	}
	co := f.CsumOffset()
	pseudo := f.pseudoSum(dst, len(l4))
	if s.mode == CsumPartial {
		binary.BigEndian.PutUint16(l4[co:], csum.Fold(pseudo))
		s.csum, s.csOK = L4Csum{Start: f.L4, Offset: co, End: len(dst)}, true
		return
	}
	l4[co], l4[co+1] = 0, 0
	binary.BigEndian.PutUint16(l4[co:], csum.Finish(csum.Sum(pseudo, l4)))
}
