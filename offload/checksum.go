package offload

import (
	"encoding/binary"

	"xswitch/csum"
)

// Checksums of the headers this package writes, on package csum's arithmetic
// (which says why every sum kept between calls is stored folded).

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
	binary.BigEndian.PutUint16(h[10:], ^csum.Fold(csum.Sum(0, h)))
}
