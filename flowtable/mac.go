package flowtable

import (
	"encoding/binary"
	"fmt"
	"net"
)

// MAC is a 48-bit Ethernet address held in the low 48 bits of a uint64, first
// octet most significant, so that numeric order is the textual order.
type MAC uint64

const macMask = 1<<48 - 1

// Broadcast is ff:ff:ff:ff:ff:ff.
const Broadcast MAC = macMask

// MACFrom reads a MAC from the first 6 bytes of b (for example the source
// address at offset 6 of an Ethernet frame). b must hold at least 6 bytes; the
// caller has already checked the frame length, so a shorter b panics.
func MACFrom(b []byte) MAC {
	_ = b[5]
	return MAC(uint64(binary.BigEndian.Uint32(b))<<16 | uint64(binary.BigEndian.Uint16(b[4:])))
}

// IsMulticast reports whether the group bit (least significant bit of the
// first octet) is set. Broadcast is a multicast address too.
func (m MAC) IsMulticast() bool { return m&(1<<40) != 0 }

// IsBroadcast reports whether m is ff:ff:ff:ff:ff:ff.
func (m MAC) IsBroadcast() bool { return m&macMask == Broadcast }

// Put writes the 6 octets of m into b[:6].
func (m MAC) Put(b []byte) {
	_ = b[5]
	binary.BigEndian.PutUint32(b, uint32(m>>16))
	binary.BigEndian.PutUint16(b[4:], uint16(m))
}

// String formats m as aa:bb:cc:dd:ee:ff.
func (m MAC) String() string {
	const hex = "0123456789abcdef"
	var b [17]byte
	for i := 0; i < 6; i++ {
		o := byte(m >> (40 - 8*i))
		b[3*i] = hex[o>>4]
		b[3*i+1] = hex[o&0xf]
		if i < 5 {
			b[3*i+2] = ':'
		}
	}
	return string(b[:])
}

// ParseMAC parses a 48-bit MAC in any form net.ParseMAC accepts
// (aa:bb:cc:dd:ee:ff, aa-bb-..., aabb.ccdd.eeff).
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return 0, fmt.Errorf("flowtable: parse MAC %q: %w", s, err)
	}
	if len(hw) != 6 {
		return 0, fmt.Errorf("flowtable: parse MAC %q: %d octets, want 6", s, len(hw))
	}
	return MACFrom(hw), nil
}
