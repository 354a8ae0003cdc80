package geneve

import (
	"encoding/binary"
	"net/netip"

	"xswitch/csum"
)

const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86DD
	etherTypeVLAN = 0x8100
	ipProtoUDP    = 17
)

// Decoded is the result of Decap. Offsets are into the frame given to Decap.
type Decoded struct {
	// InnerOff, InnerLen locate the inner Ethernet frame: frame[InnerOff : InnerOff+InnerLen].
	InnerOff, InnerLen int
	VNI                uint32 // 24-bit virtual network identifier
	Proto              uint16 // Geneve protocol type
	OAM, Critical      bool   // O and C bits
	Src, Dst           netip.Addr
	SrcPort            uint16 // outer UDP source port
	// OptOff, OptLen locate the raw options: frame[OptOff : OptOff+OptLen].
	OptOff, OptLen int
}

// Options returns the raw options of d inside frame.
func (d *Decoded) Options(frame []byte) Options { return frame[d.OptOff : d.OptOff+d.OptLen] }

// Decap parses outer Ethernet (+ at most one 802.1Q tag) / IPv4 or IPv6 / UDP
// / Geneve, validates every length and fills d. It returns DropNone for a
// well-formed Geneve packet carrying Ethernet. For DropUnknownProto d is
// filled too; for other drops d's contents are unspecified. It does not
// judge options or OAM (see CheckOptions). No allocation, no copy.
func Decap(frame []byte, d *Decoded) Drop {
	if len(frame) < EthLen {
		return DropTooShort
	}
	off := EthLen
	et := binary.BigEndian.Uint16(frame[12:])
	if et == etherTypeVLAN {
		if len(frame) < EthLen+4 {
			return DropTooShort
		}
		et = binary.BigEndian.Uint16(frame[16:])
		off += 4
	}
	var l4 []byte // the IP payload (UDP header onwards), trimmed to the IP length
	var l4off int
	switch et {
	case etherTypeIPv4:
		ip := frame[off:]
		if len(ip) < IPv4Len {
			return DropTooShort
		}
		if ip[0]>>4 != 4 {
			return DropBadIPHeader
		}
		ihl := int(ip[0]&0x0f) * 4
		if ihl < IPv4Len {
			return DropBadIPHeader
		}
		if len(ip) < ihl {
			return DropTooShort
		}
		tot := int(binary.BigEndian.Uint16(ip[2:]))
		if tot < ihl || tot > len(ip) {
			return DropBadIPLength
		}
		if ihl == IPv4Len {
			if !ipv4Checksum20OK(ip) {
				return DropBadIPHeader
			}
		} else if csum.Fold(csum.Sum(0, ip[:ihl])) != 0xffff {
			return DropBadIPHeader
		}
		if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 { // MF or fragment offset
			return DropIPFragment
		}
		if ip[9] != ipProtoUDP {
			return DropNotUDP
		}
		d.Src = netip.AddrFrom4([4]byte(ip[12:16]))
		d.Dst = netip.AddrFrom4([4]byte(ip[16:20]))
		l4 = ip[ihl:tot]
		l4off = off + ihl
	case etherTypeIPv6:
		ip := frame[off:]
		if len(ip) < IPv6Len {
			return DropTooShort
		}
		if ip[0]>>4 != 6 {
			return DropBadIPHeader
		}
		pl := int(binary.BigEndian.Uint16(ip[4:]))
		if IPv6Len+pl > len(ip) {
			return DropBadIPLength
		}
		if ip[6] != ipProtoUDP { // extension headers are not walked: dropped
			return DropNotUDP
		}
		d.Src = netip.AddrFrom16([16]byte(ip[8:24]))
		d.Dst = netip.AddrFrom16([16]byte(ip[24:40]))
		l4 = ip[IPv6Len : IPv6Len+pl]
		l4off = off + IPv6Len
	default:
		return DropNotIP
	}
	if len(l4) < UDPLen {
		return DropTooShort
	}
	ulen := int(binary.BigEndian.Uint16(l4[4:]))
	if ulen < UDPLen || ulen > len(l4) {
		return DropBadUDPLength
	}
	if binary.BigEndian.Uint16(l4[2:]) != Port {
		return DropNotGenevePort
	}
	d.SrcPort = binary.BigEndian.Uint16(l4)
	g := l4[UDPLen:ulen]
	if len(g) < GeneveLen {
		return DropTooShort
	}
	if g[0]>>6 != 0 {
		return DropBadVersion
	}
	optLen := int(g[0]&0x3f) * 4
	if GeneveLen+optLen > len(g) {
		return DropBadOptLength
	}
	d.OAM = g[1]&0x80 != 0
	d.Critical = g[1]&0x40 != 0
	d.Proto = binary.BigEndian.Uint16(g[2:])
	d.VNI = binary.BigEndian.Uint32(g[4:]) >> 8 // low byte reserved: ignored
	gOff := l4off + UDPLen
	d.OptOff = gOff + GeneveLen
	d.OptLen = optLen
	d.InnerOff = d.OptOff + optLen
	d.InnerLen = len(g) - GeneveLen - optLen
	if d.Proto != ProtoTEB {
		return DropUnknownProto
	}
	if d.InnerLen < EthLen {
		return DropTooShort
	}
	return DropNone
}
