// Package csumref is the plain reference the checksum code is tested
// against: the RFC 1071 sum taken one byte at a time, sharing no code or
// trick with the fast implementations (package csum and its callers).
package csumref

// Sum is the 16-bit one's complement sum (RFC 1071 §1) of the
// concatenation of parts, one byte at a time: even bytes of the
// concatenation are high halves of 16-bit words, odd bytes low halves, an odd
// last byte is padded with zero. The carry is folded back after every add.
// The result is not inverted; it is 0 only when every byte is 0.
func Sum(parts ...[]byte) uint16 {
	var s uint32
	i := 0
	for _, p := range parts {
		for _, x := range p {
			if i%2 == 0 {
				s += uint32(x) << 8
			} else {
				s += uint32(x)
			}
			if s > 0xffff {
				s = s - 0x10000 + 1
			}
			i++
		}
	}
	return uint16(s)
}
