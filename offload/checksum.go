package offload

import (
	"encoding/binary"
	"math/bits"
)

// Internet checksum (RFC 1071) arithmetic. Sums are kept in a uint64 with
// end-around carry: 2^16 ≡ 1 (mod 0xffff), so 16-bit words may be added at
// any 16-bit-aligned shift and a carry out of bit 63 goes back in at bit 0.

// sumBytes adds b, which starts at an even offset of the summed data, to s.
func sumBytes(s uint64, b []byte) uint64 {
	var c uint64
	for len(b) >= 32 {
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b), c)
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b[8:]), c)
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b[16:]), c)
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b[24:]), c)
		b = b[32:]
	}
	for len(b) >= 8 {
		s, c = bits.Add64(s, binary.BigEndian.Uint64(b), c)
		b = b[8:]
	}
	if len(b) >= 4 {
		s, c = bits.Add64(s, uint64(binary.BigEndian.Uint32(b)), c)
		b = b[4:]
	}
	if len(b) >= 2 {
		s, c = bits.Add64(s, uint64(binary.BigEndian.Uint16(b)), c)
		b = b[2:]
	}
	if len(b) == 1 {
		s, c = bits.Add64(s, uint64(b[0])<<8, c)
	}
	s, c = bits.Add64(s, 0, c)
	return s + c // cannot carry again: s is 0 whenever c is 1
}

// fold reduces a sum to 16 bits, not complemented. A non-zero sum never folds
// to 0 (it folds to 0xffff), like the kernel's csum_fold.
func fold(s uint64) uint16 {
	s = (s & 0xffffffff) + s>>32
	s = (s & 0xffffffff) + s>>32
	s = (s & 0xffff) + s>>16
	s = (s & 0xffff) + s>>16
	return uint16(s)
}

// finish turns a sum into the value stored in a checksum field. A result of
// 0 is stored as 0xffff (the same in one's complement), as Linux does
// (CSUM_MANGLED_0), because a zero UDP checksum means "none".
func finish(s uint64) uint16 {
	v := ^fold(s)
	if v == 0 {
		return 0xffff
	}
	return v
}

// pseudoSum is the sum of the TCP/UDP pseudo-header of the IP header at
// b[l3:] for an L4 segment of l4len bytes.
func pseudoSum(b []byte, l3 int, v6 bool, proto uint8, l4len int) uint64 {
	s := uint64(proto) + uint64(l4len)
	if v6 {
		a := b[l3+8 : l3+40]
		return s + uint64(binary.BigEndian.Uint32(a)) + uint64(binary.BigEndian.Uint32(a[4:])) +
			uint64(binary.BigEndian.Uint32(a[8:])) + uint64(binary.BigEndian.Uint32(a[12:])) +
			uint64(binary.BigEndian.Uint32(a[16:])) + uint64(binary.BigEndian.Uint32(a[20:])) +
			uint64(binary.BigEndian.Uint32(a[24:])) + uint64(binary.BigEndian.Uint32(a[28:]))
	}
	a := b[l3+12 : l3+20]
	return s + uint64(binary.BigEndian.Uint32(a)) + uint64(binary.BigEndian.Uint32(a[4:]))
}

// setIPv4Checksum recomputes the header checksum of the IPv4 header h.
func setIPv4Checksum(h []byte) {
	h[10], h[11] = 0, 0
	binary.BigEndian.PutUint16(h[10:], ^fold(sumBytes(0, h)))
}
