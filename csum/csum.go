// Package csum is the Internet checksum (RFC 1071) arithmetic shared by the
// Geneve codec and the offload code: one implementation, tested against a
// plain byte-at-a-time reference.
//
// Sums are kept in a uint64 with end-around carry: 2^16 ≡ 1 (mod 0xffff), so
// a 16-bit word may be added at any 16-bit-aligned shift and a carry out of
// bit 63 is added back at bit 0.
//
// Rule for every sum kept between calls (templates, pseudo headers): store it
// folded to 16 bits. A plain `+` on an unfolded 64-bit sum can carry out of
// bit 63 and lose that carry; a folded sum plus a few 16/17-bit per-packet
// terms stays far below 2^64, so hot paths need no carry handling for them.
package csum

import (
	"encoding/binary"
	"math/bits"
)

// Sum adds b (starting at an even offset of the checksummed data) to s,
// which may be any value (the carry out of bit 63 is added back).
func Sum(s uint64, b []byte) uint64 {
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
	return s + c // the last carry back in (cannot carry again: s was 0 if c is 1)
}

// AddCarry adds x to the one's complement sum s, the carry out of bit 63
// added back.
func AddCarry(s, x uint64) uint64 {
	s, c := bits.Add64(s, x, 0)
	return s + c // cannot carry again: s <= 2^64-2 after a carry
}

// Fold reduces a sum to 16 bits, not complemented. A non-zero sum never
// folds to 0 (it folds to 0xffff), like the kernel's csum_fold.
func Fold(s uint64) uint16 {
	s = (s & 0xffffffff) + s>>32
	s = (s & 0xffffffff) + s>>32
	s = (s & 0xffff) + s>>16
	s = (s & 0xffff) + s>>16
	return uint16(s)
}

// Finish turns a sum into the value stored in a TCP/UDP checksum field: its
// complement, with 0 stored as 0xffff (the same in one's complement), as
// Linux does (CSUM_MANGLED_0), because a zero UDP checksum means "none".
func Finish(s uint64) uint16 {
	v := ^Fold(s)
	if v == 0 {
		return 0xffff
	}
	return v
}
