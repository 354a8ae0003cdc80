package geneve

import (
	"encoding/binary"

	"xswitch/csum"
)

// Checksums of the headers this package writes, on package csum's arithmetic
// (which says why every sum kept between calls is stored folded).

// pseudoSum is the folded sum of the UDP pseudo header's constant part: the
// addresses (4 or 16 bytes each, as they appear in the IP header: an even
// length) and the protocol. The UDP length is per packet: udpChecksum adds it.
func pseudoSum(addrs []byte) uint16 {
	return csum.Fold(csum.AddCarry(csum.Sum(0, addrs), ipProtoUDP))
}

// udpChecksum returns the UDP checksum field of a datagram: base is the
// folded sum of the pseudo header's constant part and of the constant UDP
// header words (ports and checksum zero, length zero), udpLen the UDP length
// (counted twice: pseudo header and UDP header), port the source port and
// payload the bytes after the constant part (starting at an even offset).
// A computed zero is sent as all ones (RFC 768).
func udpChecksum(base uint16, udpLen, port uint16, payload []byte) uint16 {
	// base, 2*udpLen and port are each < 2^17: their plain sum cannot overflow.
	c := ^csum.Fold(csum.Sum(uint64(base)+2*uint64(udpLen)+uint64(port), payload))
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
	return csum.Fold(s) == 0xffff
}
