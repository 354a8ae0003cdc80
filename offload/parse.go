package offload

import "encoding/binary"

const (
	etherTypeIPv4  = 0x0800
	etherTypeIPv6  = 0x86dd
	etherTypeVLAN  = 0x8100
	etherTypeQinQ  = 0x88a8
	maxVLANTags    = 2
	protoTCP       = 6
	protoUDP       = 17
	tcpCsumOffset  = 16
	udpCsumOffset  = 6
	tcpFlagFIN     = 0x01
	tcpFlagSYN     = 0x02
	tcpFlagRST     = 0x04
	tcpFlagPSH     = 0x08
	tcpFlagACK     = 0x10
	tcpFlagURG     = 0x20
	tcpFlagECE     = 0x40
	tcpFlagCWR     = 0x80
	ipv4FlagDF     = 0x4000
	ipv4FragMask   = 0x3fff // MF and fragment offset
	ipv6HeaderLen  = 40
	ipv4MinHdrLen  = 20
	tcpMinHdrLen   = 20
	udpHeaderLen   = 8
	maxIPv4Total   = 0xffff
	maxIPv6Payload = 0xffff
)

// Frame locates the headers of an Ethernet frame carrying TCP or UDP over
// IPv4 or IPv6. Offsets count from the first byte of the Ethernet header.
// Bytes from End on (Ethernet padding) are not part of the IP packet.
type Frame struct {
	L3      int   // IP header
	L4      int   // TCP or UDP header
	Payload int   // first byte after the TCP/UDP header
	End     int   // end of the IP packet, from its length field
	Proto   uint8 // protoTCP or protoUDP
	IPv6    bool
}

// L4Len is the length of the TCP/UDP header plus payload.
func (f *Frame) L4Len() int { return f.End - f.L4 }

// CsumOffset is where the checksum field lives, counted from L4.
func (f *Frame) CsumOffset() int {
	if f.Proto == protoTCP {
		return tcpCsumOffset
	}
	return udpCsumOffset
}

// Csum describes the frame's L4 checksum.
func (f *Frame) Csum() L4Csum { return L4Csum{Start: f.L4, Offset: f.CsumOffset(), End: f.End} }

// ParseFrame locates the headers of b. Every length it returns lies inside b.
func ParseFrame(b []byte) (f Frame, r DropReason) {
	if len(b) < 14 {
		return f, DropTooShort
	}
	et := binary.BigEndian.Uint16(b[12:])
	off := 14
	for i := 0; i < maxVLANTags && (et == etherTypeVLAN || et == etherTypeQinQ); i++ {
		if len(b) < off+4 {
			return f, DropTooShort
		}
		et = binary.BigEndian.Uint16(b[off+2:])
		off += 4
	}
	f.L3 = off
	switch et {
	case etherTypeIPv4:
		if r = f.parseIPv4(b); r != DropNone {
			return f, r
		}
	case etherTypeIPv6:
		if r = f.parseIPv6(b); r != DropNone {
			return f, r
		}
	default:
		return f, DropNotIP
	}
	return f, f.parseL4(b)
}

func (f *Frame) parseIPv4(b []byte) DropReason {
	off := f.L3
	if len(b) < off+ipv4MinHdrLen {
		return DropTooShort
	}
	h := b[off : off+ipv4MinHdrLen]
	ihl := int(h[0]&0x0f) * 4
	if h[0]>>4 != 4 || ihl < ipv4MinHdrLen {
		return DropBadIPHeader
	}
	total := int(binary.BigEndian.Uint16(h[2:]))
	if total < ihl || off+total > len(b) {
		return DropBadIPLength
	}
	if binary.BigEndian.Uint16(h[6:])&ipv4FragMask != 0 {
		return DropIPFragment
	}
	f.Proto = h[9]
	f.L4 = off + ihl
	f.End = off + total
	return DropNone
}

func (f *Frame) parseIPv6(b []byte) DropReason {
	off := f.L3
	if len(b) < off+ipv6HeaderLen {
		return DropTooShort
	}
	h := b[off : off+ipv6HeaderLen]
	if h[0]>>4 != 6 {
		return DropBadIPHeader
	}
	plen := int(binary.BigEndian.Uint16(h[4:]))
	if plen == 0 || off+ipv6HeaderLen+plen > len(b) {
		return DropBadIPLength // 0: a jumbogram (hop-by-hop) or nothing
	}
	f.IPv6 = true
	f.Proto = h[6]
	f.L4 = off + ipv6HeaderLen
	f.End = f.L4 + plen
	return DropNone
}

func (f *Frame) parseL4(b []byte) DropReason {
	switch f.Proto {
	case protoTCP:
		if f.End-f.L4 < tcpMinHdrLen {
			return DropBadL4Header
		}
		doff := int(b[f.L4+12]>>4) * 4
		if doff < tcpMinHdrLen || f.L4+doff > f.End {
			return DropBadL4Header
		}
		f.Payload = f.L4 + doff
	case protoUDP:
		// The UDP length must be the IP one: the pseudo-header uses it, and
		// Linux sets it so for GSO (USO) frames too.
		if f.End-f.L4 < udpHeaderLen || int(binary.BigEndian.Uint16(b[f.L4+4:])) != f.End-f.L4 {
			return DropBadL4Header
		}
		f.Payload = f.L4 + udpHeaderLen
	default:
		return DropNotTCPUDP
	}
	return DropNone
}

// pseudoSum is the pseudo-header sum of f with an L4 length of l4len.
func (f *Frame) pseudoSum(b []byte, l4len int) uint64 {
	return pseudoSum(b, f.L3, f.IPv6, f.Proto, l4len)
}
