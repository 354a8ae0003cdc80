// Package frames builds the test frames of the benchmark generator once,
// before a run: Ethernet/IPv4/UDP frames of one size for N flows (varying
// source MAC, source IP and UDP ports), optionally already encapsulated in
// Geneve so that a switch's decapsulation path can be driven. Every frame
// carries valid IPv4 header and UDP checksums (inner and, when configured on
// the Encapsulator, outer).
package frames

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"xswitch/geneve"
)

// Frame size limits: Size is the length of the (inner) Ethernet frame as
// handed to the interface, without FCS.
const (
	MinSize = 60 // Ethernet minimum without FCS; "64-byte" frames in the bench are 64 bytes long here
	MaxSize = 1518
	hdrLen  = 14 + 20 + 8
)

// Spec describes the frames of one generator run.
type Spec struct {
	Size  int // inner frame length in bytes, MinSize..MaxSize (the encapsulated frame is longer by Encap.HeaderLen())
	Flows int // number of distinct flows (>= 1)

	SrcMAC, DstMAC   [6]byte    // flow i: SrcMAC with i added to its last two bytes; DstMAC fixed (a learned destination)
	SrcIP, DstIP     netip.Addr // IPv4; flow i: SrcIP + i, DstIP fixed
	SrcPort, DstPort uint16     // flow i: SrcPort + i, DstPort + i%16

	// Encap, when set, wraps every frame in Geneve with this tunnel's outer
	// headers (the decapsulation path: the frames arrive at a switch's
	// underlay address).
	Encap *geneve.Encapsulator
}

// Flow returns flow i's varying fields.
func (s *Spec) Flow(i int) (srcMAC [6]byte, srcIP netip.Addr, srcPort, dstPort uint16) {
	srcMAC = s.SrcMAC
	v := binary.BigEndian.Uint16(srcMAC[4:]) + uint16(i)
	binary.BigEndian.PutUint16(srcMAC[4:], v)
	a := s.SrcIP.As4()
	binary.BigEndian.PutUint32(a[:], binary.BigEndian.Uint32(a[:])+uint32(i))
	return srcMAC, netip.AddrFrom4(a), s.SrcPort + uint16(i), s.DstPort + uint16(i%16)
}

// Validate reports a Spec the builder cannot honour, naming the field.
func (s *Spec) Validate() error {
	if s.Size < MinSize || s.Size > MaxSize {
		return fmt.Errorf("frames: Size %d out of range %d..%d", s.Size, MinSize, MaxSize)
	}
	if s.Flows < 1 || s.Flows > 65535 {
		return fmt.Errorf("frames: Flows %d out of range 1..65535", s.Flows)
	}
	if !s.SrcIP.Is4() || !s.DstIP.Is4() {
		return fmt.Errorf("frames: SrcIP %v and DstIP %v must be IPv4", s.SrcIP, s.DstIP)
	}
	return nil
}

// Len is the length of every built frame (inner size plus the Geneve outer
// headers when encapsulated).
func (s *Spec) Len() int {
	if s.Encap != nil {
		return s.Size + s.Encap.HeaderLen()
	}
	return s.Size
}

// Build returns one frame per flow (control path: allocates).
func Build(s Spec) ([][]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	head := 0
	if s.Encap != nil {
		head = s.Encap.HeaderLen()
	}
	out := make([][]byte, s.Flows)
	for i := range out {
		buf := make([]byte, head+s.Size)
		inner := buf[head:]
		srcMAC, srcIP, sport, dport := s.Flow(i)
		writeUDP4(inner, s.DstMAC, srcMAC, srcIP, s.DstIP, sport, dport, uint16(i))
		if s.Encap != nil {
			if start := s.Encap.Encap(buf, head, s.Size); start != 0 {
				return nil, fmt.Errorf("frames: encap started at %d, want 0", start)
			}
		}
		out[i] = buf
	}
	return out, nil
}

// writeUDP4 fills b (the whole frame) with Ethernet, IPv4 and UDP headers and
// a payload pattern, with valid checksums.
func writeUDP4(b []byte, dst, src [6]byte, sip, dip netip.Addr, sport, dport, id uint16) {
	copy(b[0:6], dst[:])
	copy(b[6:12], src[:])
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:34]
	ipLen := len(b) - 14
	ip[0] = 0x45
	ip[1] = 0
	binary.BigEndian.PutUint16(ip[2:], uint16(ipLen))
	binary.BigEndian.PutUint16(ip[4:], id)
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
	ip[8] = 64
	ip[9] = 17
	s4, d4 := sip.As4(), dip.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], 0)
	binary.BigEndian.PutUint16(ip[10:], ^Fold(Sum(0, ip)))
	udp := b[34:]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	binary.BigEndian.PutUint16(udp[6:], 0)
	for i := 8; i < len(udp); i++ {
		udp[i] = byte(i)
	}
	binary.BigEndian.PutUint16(udp[6:], UDP4Checksum(ip, udp))
}

// Sum adds b to a one's complement sum (RFC 1071), b starting at an even
// offset of the checksummed data, and returns the sum folded to 16 bits. The
// fold keeps a returned sum plus a few 16-bit terms far below 2^32: an
// unfolded sum plus a plain add can overflow and lose the carry.
func Sum(sum uint32, b []byte) uint32 {
	s := uint64(sum) // + 0xffff per word: no overflow below 2^47 bytes
	for len(b) >= 2 {
		s += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint64(b[0]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint32(s)
}

// Fold reduces a one's complement sum to 16 bits (not inverted).
func Fold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// UDP4Checksum computes the UDP checksum of udp (header with its checksum
// field included as is, plus payload) under the IPv4 header ip. With the
// checksum field zeroed it gives the value to store; over a datagram with
// its checksum stored it gives 0 when the checksum is valid (a stored zero,
// "no checksum", is the caller's case to handle).
func UDP4Checksum(ip, udp []byte) uint16 {
	s := Sum(0, ip[12:20]) + 17 + uint32(len(udp))
	s = Sum(s, udp)
	c := ^Fold(s)
	if c == 0 && binary.BigEndian.Uint16(udp[6:]) == 0 {
		c = 0xffff // RFC 768: a computed zero is sent as all ones
	}
	return c
}
