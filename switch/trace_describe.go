package vswitch

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// describeFrame is a one-line summary of an Ethernet frame for people:
// MACs, VLAN tag, IP addresses, protocol and ports. Display only: the
// switch forwards on the Ethernet header alone.
func describeFrame(b []byte) string {
	if len(b) < 14 {
		return fmt.Sprintf("%d bytes (runt)", len(b))
	}
	var s strings.Builder
	fmt.Fprintf(&s, "%s > %s", net.HardwareAddr(b[6:12]), net.HardwareAddr(b[0:6]))
	typ, p := binary.BigEndian.Uint16(b[12:]), b[14:]
	if typ == 0x8100 && len(p) >= 4 {
		fmt.Fprintf(&s, ", vlan %d", binary.BigEndian.Uint16(p)&0xfff)
		typ, p = binary.BigEndian.Uint16(p[2:]), p[4:]
	}
	var proto byte
	switch {
	case typ == 0x0800 && len(p) >= 20 && p[0]>>4 == 4:
		src, dst := netip.AddrFrom4([4]byte(p[12:16])), netip.AddrFrom4([4]byte(p[16:20]))
		fmt.Fprintf(&s, ", IPv4 %s > %s", src, dst)
		proto, p = p[9], p[min(int(p[0]&0xf)*4, len(p)):]
	case typ == 0x86dd && len(p) >= 40:
		src, dst := netip.AddrFrom16([16]byte(p[8:24])), netip.AddrFrom16([16]byte(p[24:40]))
		fmt.Fprintf(&s, ", IPv6 %s > %s", src, dst)
		proto, p = p[6], p[40:]
	case typ == 0x0806:
		s.WriteString(", ARP")
	default:
		fmt.Fprintf(&s, ", ethertype 0x%04x", typ)
	}
	switch {
	case proto == 1 || proto == 58:
		s.WriteString(", ICMP")
		if len(p) >= 2 {
			fmt.Fprintf(&s, " type %d code %d", p[0], p[1])
		}
	case (proto == 6 || proto == 17) && len(p) >= 4:
		fmt.Fprintf(&s, ", %s %d > %d", map[byte]string{6: "TCP", 17: "UDP"}[proto], binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:]))
	case proto != 0:
		fmt.Fprintf(&s, ", protocol %d", proto)
	}
	fmt.Fprintf(&s, ", %d bytes", len(b))
	return s.String()
}
