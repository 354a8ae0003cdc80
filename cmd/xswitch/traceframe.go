package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
)

// traceFields are the fields `xswitch ctl trace` builds a frame from, as
// ovs-appctl ofproto/trace names them.
var traceFields = []string{"in_port", "dl_src", "dl_dst", "dl_type", "dl_vlan", "nw_src", "nw_dst", "nw_proto", "tp_src", "tp_dst"}

// buildTraceFrame builds the Ethernet frame the fields describe. dl_src and
// dl_dst are required; the rest has defaults: IPv4 (IPv6 when an address
// is), addresses 0.0.0.0 / ::, ICMP echo request (nw_proto 1 / 58), ports 0,
// no VLAN tag. dl_type 0x0806 makes an ARP request (nw_src/nw_dst: sender
// and target address); any other non-IP dl_type gets a zero payload. The
// frame has at least 60 bytes and correct IP and L4 checksums.
func buildTraceFrame(kv map[string]string) ([]byte, error) {
	src, err := macField(kv, "dl_src")
	if err != nil {
		return nil, err
	}
	dst, err := macField(kv, "dl_dst")
	if err != nil {
		return nil, err
	}
	v6 := strings.Contains(kv["nw_src"], ":") || strings.Contains(kv["nw_dst"], ":")
	typ := uint64(0x0800)
	if v6 {
		typ = 0x86dd
	}
	if s, ok := kv["dl_type"]; ok {
		if typ, err = strconv.ParseUint(s, 0, 16); err != nil {
			return nil, fmt.Errorf("dl_type=%s: write a 16-bit EtherType such as 0x0800", s)
		}
		v6 = typ == 0x86dd
	}
	f := append(append([]byte{}, dst...), src...)
	if s, ok := kv["dl_vlan"]; ok {
		vid, err := strconv.ParseUint(s, 0, 12)
		if err != nil {
			return nil, fmt.Errorf("dl_vlan=%s: write a VLAN id 0..4095", s)
		}
		f = binary.BigEndian.AppendUint16(f, 0x8100)
		f = binary.BigEndian.AppendUint16(f, uint16(vid))
	}
	f = binary.BigEndian.AppendUint16(f, uint16(typ))
	var payload []byte
	switch typ {
	case 0x0800, 0x86dd:
		if payload, err = ipPacket(kv, v6); err != nil {
			return nil, err
		}
	case 0x0806:
		if payload, err = arpRequest(kv, src); err != nil {
			return nil, err
		}
	}
	f = append(f, payload...)
	for len(f) < 60 {
		f = append(f, 0)
	}
	return f, nil
}

func macField(kv map[string]string, k string) ([]byte, error) {
	s, ok := kv[k]
	if !ok {
		return nil, fmt.Errorf("give %s=MAC (e.g. %s=02:00:00:00:00:01), or the whole frame with --hex", k, k)
	}
	m, err := net.ParseMAC(s)
	if err != nil || len(m) != 6 {
		return nil, fmt.Errorf("%s=%s: not an Ethernet MAC address (write aa:bb:cc:dd:ee:ff)", k, s)
	}
	return m, nil
}

func addrField(kv map[string]string, k string, v6 bool) (netip.Addr, error) {
	s, ok := kv[k]
	if !ok {
		if v6 {
			return netip.IPv6Unspecified(), nil
		}
		return netip.IPv4Unspecified(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Is6() != v6 {
		fam := "an IPv4"
		if v6 {
			fam = "an IPv6"
		}
		return netip.Addr{}, fmt.Errorf("%s=%s: write %s address (the frame is %s)", k, s, fam, map[bool]string{false: "IPv4", true: "IPv6"}[v6])
	}
	return a, nil
}

func uintField(kv map[string]string, k string, bits int, def uint64) (uint64, error) {
	s, ok := kv[k]
	if !ok {
		return def, nil
	}
	v, err := strconv.ParseUint(s, 0, bits)
	if err != nil {
		return 0, fmt.Errorf("%s=%s: write a number below %d", k, s, uint64(1)<<bits)
	}
	return v, nil
}

// ipPacket builds an IPv4 or IPv6 packet with an ICMP echo request, a UDP
// datagram or a TCP SYN, 32 bytes of payload.
func ipPacket(kv map[string]string, v6 bool) ([]byte, error) {
	src, err := addrField(kv, "nw_src", v6)
	if err != nil {
		return nil, err
	}
	dst, err := addrField(kv, "nw_dst", v6)
	if err != nil {
		return nil, err
	}
	defProto := uint64(1)
	if v6 {
		defProto = 58
	}
	proto, err := uintField(kv, "nw_proto", 8, defProto)
	if err != nil {
		return nil, err
	}
	sp, err := uintField(kv, "tp_src", 16, 0)
	if err != nil {
		return nil, err
	}
	dp, err := uintField(kv, "tp_dst", 16, 0)
	if err != nil {
		return nil, err
	}
	data := make([]byte, 32)
	for i := range data {
		data[i] = byte(i)
	}
	var l4 []byte
	csumAt := -1
	switch proto {
	case 1, 58:
		typ := byte(8)
		if proto == 58 {
			typ = 128
		}
		l4 = append([]byte{typ, 0, 0, 0, 0x12, 0x34, 0, 1}, data...)
		csumAt = 2
	case 17:
		l4 = binary.BigEndian.AppendUint16(nil, uint16(sp))
		l4 = binary.BigEndian.AppendUint16(l4, uint16(dp))
		l4 = binary.BigEndian.AppendUint16(l4, uint16(8+len(data)))
		l4 = append(append(l4, 0, 0), data...)
		csumAt = 6
	case 6:
		l4 = binary.BigEndian.AppendUint16(nil, uint16(sp))
		l4 = binary.BigEndian.AppendUint16(l4, uint16(dp))
		l4 = append(l4, 0, 0, 0, 1, 0, 0, 0, 0, 5<<4, 0x02, 0xff, 0xff, 0, 0, 0, 0) // seq 1, SYN, window 65535
		csumAt = 16
	default:
		l4 = data
	}
	if csumAt >= 0 {
		var sum uint32
		if proto != 1 { // ICMPv4 has no pseudo header
			sum = pseudoSum(src, dst, byte(proto), len(l4))
		}
		c := ^fold(sumBytes(sum, l4))
		if c == 0 && proto == 17 {
			c = 0xffff // UDP: zero means "no checksum"
		}
		binary.BigEndian.PutUint16(l4[csumAt:], c)
	}
	if v6 {
		h := make([]byte, 40, 40+len(l4))
		h[0] = 6 << 4
		binary.BigEndian.PutUint16(h[4:], uint16(len(l4)))
		h[6], h[7] = byte(proto), 64
		s16, d16 := src.As16(), dst.As16()
		copy(h[8:], s16[:])
		copy(h[24:], d16[:])
		return append(h, l4...), nil
	}
	h := make([]byte, 20, 20+len(l4))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(l4)))
	h[6] = 0x40 // DF
	h[8], h[9] = 64, byte(proto)
	s4, d4 := src.As4(), dst.As4()
	copy(h[12:], s4[:])
	copy(h[16:], d4[:])
	binary.BigEndian.PutUint16(h[10:], ^fold(sumBytes(0, h)))
	return append(h, l4...), nil
}

// arpRequest is an ARP request from sha/nw_src for nw_dst.
func arpRequest(kv map[string]string, sha []byte) ([]byte, error) {
	spa, err := addrField(kv, "nw_src", false)
	if err != nil {
		return nil, err
	}
	tpa, err := addrField(kv, "nw_dst", false)
	if err != nil {
		return nil, err
	}
	b := []byte{0, 1, 8, 0, 6, 4, 0, 1}
	b = append(b, sha...)
	s4, t4 := spa.As4(), tpa.As4()
	b = append(b, s4[:]...)
	b = append(b, 0, 0, 0, 0, 0, 0)
	return append(b, t4[:]...), nil
}

// sumBytes adds b to a one's complement sum as big-endian 16-bit words (RFC
// 1071; an odd last byte is padded with zero).
func sumBytes(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func fold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// pseudoSum is the sum of the TCP/UDP/ICMPv6 pseudo header.
func pseudoSum(src, dst netip.Addr, proto byte, l4len int) uint32 {
	sum := sumBytes(0, src.AsSlice())
	sum = sumBytes(sum, dst.AsSlice())
	return sum + uint32(proto) + uint32(l4len)
}

// parseTraceArgs reads `trace BRIDGE field=value... [--hex FRAME]`.
func parseTraceArgs(args []string) (bridge string, kv map[string]string, hexFrame string, err error) {
	kv = map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--hex" || a == "-hex":
			if i+1 >= len(args) {
				return "", nil, "", fmt.Errorf("--hex needs the frame in hex")
			}
			i++
			hexFrame = args[i]
		case strings.HasPrefix(a, "--hex="):
			hexFrame = strings.TrimPrefix(a, "--hex=")
		case strings.Contains(a, "="):
			for _, f := range strings.Split(a, ",") { // ovs-appctl style: in_port=vm1,dl_src=...
				k, v, _ := strings.Cut(f, "=")
				if !knownField(k) {
					return "", nil, "", fmt.Errorf("unknown field %q; the fields are %s", k, strings.Join(traceFields, ", "))
				}
				kv[k] = v
			}
		case bridge == "":
			bridge = a
		default:
			return "", nil, "", fmt.Errorf("unexpected argument %q", a)
		}
	}
	if bridge == "" {
		return "", nil, "", fmt.Errorf("give the bridge first")
	}
	if kv["in_port"] == "" {
		return "", nil, "", fmt.Errorf("give in_port=PORT (a port of the bridge, the underlay, or tunnel:REMOTE_IP)")
	}
	if hexFrame != "" {
		var extra []string
		for k := range kv {
			if k != "in_port" {
				extra = append(extra, k)
			}
		}
		sort.Strings(extra)
		if len(extra) > 0 {
			return "", nil, "", fmt.Errorf("--hex gives the whole frame; drop %s", strings.Join(extra, ", "))
		}
	}
	return bridge, kv, hexFrame, nil
}

func knownField(k string) bool {
	for _, f := range traceFields {
		if f == k {
			return true
		}
	}
	return false
}
