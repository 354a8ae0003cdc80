package geneve

import (
	"encoding/binary"
	"math/bits"
)

// Internet checksum (RFC 1071) helpers. Sums are kept in a uint64 with
// end-around carry: 2^16 ≡ 1 (mod 0xffff), so a 16-bit word may be added at
// any 16-bit-aligned shift and a carry out of bit 63 is added back at bit 0.
//
// Rule for every sum kept between calls (templates, pseudo headers): store it
// folded to 16 bits (a uint16 field). A plain `+` on an unfolded 64-bit sum
// can carry out of bit 63 and lose that carry: the bug that made the outer
// UDP checksum wrong for some tunnels. A folded sum plus a few 16/17-bit
// per-packet terms stays far below 2^64, so the hot path needs no carry
// handling for them.

// sumBytes adds b (starting at an even offset of the checksummed data) to
// sum, which may be any value (the carry out of bit 63 is added back).
func sumBytes(sum uint64, b []byte) uint64 {
	var c uint64
	for len(b) >= 32 {
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[8:]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[16:]), c)
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b[24:]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		sum, c = bits.Add64(sum, binary.BigEndian.Uint64(b), c)
		b = b[8:]
	}
	if len(b) >= 4 {
		sum, c = bits.Add64(sum, uint64(binary.BigEndian.Uint32(b)), c)
		b = b[4:]
	}
	if len(b) >= 2 {
		sum, c = bits.Add64(sum, uint64(binary.BigEndian.Uint16(b)), c)
		b = b[2:]
	}
	if len(b) == 1 {
		sum, c = bits.Add64(sum, uint64(b[0])<<8, c)
	}
	sum, c = bits.Add64(sum, 0, c)
	return sum + c // the last carry back in (cannot carry again: sum was 0 if c is 1)
}

// addCarry adds x to the one's complement sum s, the carry out of bit 63
// added back (control path; the hot path adds to folded sums instead).
func addCarry(s, x uint64) uint64 {
	s, c := bits.Add64(s, x, 0)
	return s + c // cannot carry again: s <= 2^64-2 after a carry
}

// fold reduces a 64-bit one's complement sum to 16 bits (not inverted).
func fold(s uint64) uint16 {
	s = (s & 0xffffffff) + s>>32
	s = (s & 0xffffffff) + s>>32
	s = (s & 0xffff) + s>>16
	s = (s & 0xffff) + s>>16
	return uint16(s)
}

// pseudoSum is the folded sum of the UDP pseudo header's constant part: the
// addresses (4 or 16 bytes each, as they appear in the IP header: an even
// length) and the protocol. The UDP length is per packet: udpChecksum adds it.
func pseudoSum(addrs []byte) uint16 {
	return fold(addCarry(sumBytes(0, addrs), ipProtoUDP))
}

// udpChecksum returns the UDP checksum field of a datagram: base is the
// folded sum of the pseudo header's constant part and of the constant UDP
// header words (ports and checksum zero, length zero), udpLen the UDP length
// (counted twice: pseudo header and UDP header), port the source port and
// payload the bytes after the constant part (starting at an even offset).
// A computed zero is sent as all ones (RFC 768).
func udpChecksum(base uint16, udpLen, port uint16, payload []byte) uint16 {
	// base, 2*udpLen and port are each < 2^17: their plain sum cannot overflow.
	c := ^fold(sumBytes(uint64(base)+2*uint64(udpLen)+uint64(port), payload))
	if c == 0 {
		c = 0xffff
	}
	return c
}

// ipv4Checksum returns the IPv4 header checksum field for a header whose
// template (lengths, ID and checksum zero) sums, folded, to base, with total
// length tot and identification id filled in.
func ipv4Checksum(base, tot, id uint16) uint16 {
	s := uint32(base) + uint32(tot) + uint32(id) // < 2^18
	s = (s & 0xffff) + s>>16
	s = (s & 0xffff) + s>>16
	return ^uint16(s)
}

// ipv4Checksum20OK verifies the checksum of a 20-byte IPv4 header (no options).
func ipv4Checksum20OK(h []byte) bool {
	_ = h[19]
	s := uint64(binary.BigEndian.Uint32(h)) + uint64(binary.BigEndian.Uint32(h[4:])) +
		uint64(binary.BigEndian.Uint32(h[8:])) + uint64(binary.BigEndian.Uint32(h[12:])) +
		uint64(binary.BigEndian.Uint32(h[16:]))
	return fold(s) == 0xffff
}
