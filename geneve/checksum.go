package geneve

import (
	"encoding/binary"
	"math/bits"
)

// Internet checksum (RFC 1071) helpers. Sums are kept in a uint64 with
// end-around carry: 2^16 ≡ 1 (mod 0xffff), so a 16-bit word may be added at
// any 16-bit-aligned shift and a carry out of bit 63 is added back at bit 0.

// sumBytes adds b (starting at an even offset of the checksummed data) to sum.
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

// fold reduces a 64-bit one's complement sum to 16 bits (not inverted).
func fold(s uint64) uint16 {
	s = (s & 0xffffffff) + s>>32
	s = (s & 0xffffffff) + s>>32
	s = (s & 0xffff) + s>>16
	s = (s & 0xffff) + s>>16
	return uint16(s)
}

// ipv4Checksum20OK verifies the checksum of a 20-byte IPv4 header (no options).
func ipv4Checksum20OK(h []byte) bool {
	_ = h[19]
	s := uint64(binary.BigEndian.Uint32(h)) + uint64(binary.BigEndian.Uint32(h[4:])) +
		uint64(binary.BigEndian.Uint32(h[8:])) + uint64(binary.BigEndian.Uint32(h[12:])) +
		uint64(binary.BigEndian.Uint32(h[16:]))
	return fold(s) == 0xffff
}
