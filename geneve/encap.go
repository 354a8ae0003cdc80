package geneve

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"sync/atomic"

	"xswitch/csum"
)

// EncapConfig describes one tunnel's outer headers.
type EncapConfig struct {
	SrcMAC, DstMAC [6]byte
	Src, Dst       netip.Addr // both IPv4 or both IPv6 (IPv4-mapped IPv6 counts as IPv4)
	VNI            uint32     // 24 bits
	TTL            uint8      // IPv4 TTL / IPv6 hop limit; 0 means 64
	DontFragment   bool       // IPv4 DF bit (DefaultEncapConfig: true)
	TOS            uint8      // IPv4 TOS / IPv6 traffic class
	// SrcPortMin..SrcPortMax is the UDP source port range (both 0: 49152..65535).
	SrcPortMin, SrcPortMax uint16
	IPv6UDPChecksum        bool // compute the UDP checksum over IPv6 (DefaultEncapConfig: true; false sends zero, RFC 6935/6936)
	IPv4UDPChecksum        bool // compute the UDP checksum over IPv4 (default false: zero)
	Options                []Option
	OAM                    bool // set the O bit
}

// DefaultEncapConfig returns a config with the defaults set: TTL 64, DF set,
// source ports 49152..65535, UDP checksum computed over IPv6 and zero over IPv4.
// The caller fills in MACs, addresses, VNI and options.
func DefaultEncapConfig() EncapConfig {
	return EncapConfig{
		TTL:             64,
		DontFragment:    true,
		SrcPortMin:      49152,
		SrcPortMax:      65535,
		IPv6UDPChecksum: true,
	}
}

// Encapsulator writes the outer headers of one tunnel. It is immutable after
// NewEncapsulator (apart from the IPv4 ID counter used when DF is clear) and
// safe for concurrent use.
type Encapsulator struct {
	hdr       [MaxHeaderLen]byte // template: zero lengths, ports, checksums
	hlen      int
	udpOff    int
	v6        bool
	udpCsum   bool
	df        bool
	ipSum     uint16 // IPv4: folded one's complement sum of the template header (lengths/ID/checksum zero)
	udpSum    uint16 // folded sum of the pseudo header + constant UDP/Geneve words (lengths/port/checksum zero)
	pseudo    uint16 // folded sum of the pseudo header's addresses and protocol (EncapPartial)
	v6Word0   uint32 // IPv6: version and traffic class; the flow label is or-ed in
	portMin   uint16
	portRange uint64 // number of ports in the range
	ipID      atomic.Uint32
}

// NewEncapsulator validates c and precomputes the header template.
func NewEncapsulator(c EncapConfig) (*Encapsulator, error) {
	src, dst, err := c.check()
	if err != nil {
		return nil, err
	}
	opts, critical, err := encodeOptions(c.Options)
	if err != nil {
		return nil, err
	}
	e := &Encapsulator{
		v6:        src.Is6(),
		df:        c.DontFragment,
		portMin:   c.SrcPortMin,
		portRange: uint64(c.SrcPortMax) - uint64(c.SrcPortMin) + 1,
	}
	h := e.hdr[:]
	copy(h[0:], c.DstMAC[:])
	copy(h[6:], c.SrcMAC[:])
	if e.v6 {
		e.writeIPv6(&c, src, dst)
	} else {
		e.writeIPv4(&c, src, dst)
	}
	e.hlen = e.udpOff + UDPLen + writeGeneve(h[e.udpOff+UDPLen:], &c, opts, critical)
	binary.BigEndian.PutUint16(h[e.udpOff+2:], Port)
	e.precomputeUDPSums()
	return e, nil
}

// check validates c's addresses, VNI and port range, fills in the defaults
// for a zero TTL and port range, and returns the addresses unmapped.
func (c *EncapConfig) check() (src, dst netip.Addr, err error) {
	src, dst = c.Src.Unmap(), c.Dst.Unmap()
	if !src.IsValid() || !dst.IsValid() {
		return src, dst, fmt.Errorf("geneve: encap config: Src (%v) and Dst (%v) must both be set", c.Src, c.Dst)
	}
	if src.Is4() != dst.Is4() {
		return src, dst, fmt.Errorf("geneve: encap config: Src %v and Dst %v must be the same IP family", src, dst)
	}
	if c.VNI > 0xffffff {
		return src, dst, fmt.Errorf("geneve: encap config: VNI %d exceeds 24 bits (max 16777215)", c.VNI)
	}
	if c.TTL == 0 {
		c.TTL = 64
	}
	if c.SrcPortMin == 0 && c.SrcPortMax == 0 {
		c.SrcPortMin, c.SrcPortMax = 49152, 65535
	}
	if c.SrcPortMin > c.SrcPortMax {
		return src, dst, fmt.Errorf("geneve: encap config: SrcPortMin %d > SrcPortMax %d", c.SrcPortMin, c.SrcPortMax)
	}
	return src, dst, nil
}

// encodeOptions encodes the options in wire format and reports whether any
// of them is critical (the header's C bit).
func encodeOptions(options []Option) (raw []byte, critical bool, err error) {
	for i, o := range options {
		if raw, err = AppendOption(raw, o); err != nil {
			return nil, false, fmt.Errorf("encap config Options[%d]: %w", i, err)
		}
		critical = critical || o.Critical()
	}
	if len(raw) > MaxOptionsLen {
		return nil, false, fmt.Errorf("geneve: encap config: options take %d bytes, more than the %d-byte limit", len(raw), MaxOptionsLen)
	}
	return raw, critical, nil
}

// writeIPv6 writes the EtherType and the IPv6 header template (lengths
// zero) and sets where UDP starts and whether its checksum is computed.
func (e *Encapsulator) writeIPv6(c *EncapConfig, src, dst netip.Addr) {
	binary.BigEndian.PutUint16(e.hdr[12:], etherTypeIPv6)
	ip := e.hdr[EthLen:]
	e.v6Word0 = 6<<28 | uint32(c.TOS)<<20
	binary.BigEndian.PutUint32(ip, e.v6Word0)
	ip[6] = ipProtoUDP
	ip[7] = c.TTL
	s, d := src.As16(), dst.As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	e.udpOff = EthLen + IPv6Len
	e.udpCsum = c.IPv6UDPChecksum
}

// writeIPv4 writes the EtherType and the IPv4 header template (length, ID
// and checksum zero), precomputes its checksum and sets where UDP starts and
// whether its checksum is computed.
func (e *Encapsulator) writeIPv4(c *EncapConfig, src, dst netip.Addr) {
	binary.BigEndian.PutUint16(e.hdr[12:], etherTypeIPv4)
	ip := e.hdr[EthLen:]
	ip[0] = 0x45
	ip[1] = c.TOS
	if c.DontFragment {
		ip[6] = 0x40
	}
	ip[8] = c.TTL
	ip[9] = ipProtoUDP
	s, d := src.As4(), dst.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	e.ipSum = csum.Fold(csum.Sum(0, ip[:IPv4Len]))
	e.udpOff = EthLen + IPv4Len
	e.udpCsum = c.IPv4UDPChecksum
}

// writeGeneve writes the Geneve header and the encoded options opts into g
// and returns their length.
func writeGeneve(g []byte, c *EncapConfig, opts []byte, critical bool) int {
	g[0] = byte(len(opts) / 4) // version 0
	if c.OAM {
		g[1] |= 0x80
	}
	if critical {
		g[1] |= 0x40
	}
	binary.BigEndian.PutUint16(g[2:], ProtoTEB)
	binary.BigEndian.PutUint32(g[4:], c.VNI<<8)
	copy(g[GeneveLen:], opts)
	return GeneveLen + len(opts)
}

// precomputeUDPSums folds the pseudo header (addresses, protocol) and the
// constant part of UDP+Geneve in the template (see checksum.go); per packet
// udpChecksum adds the length (twice), source port and payload.
func (e *Encapsulator) precomputeUDPSums() {
	ip := e.hdr[EthLen:]
	addrs := ip[12:20]
	if e.v6 {
		addrs = ip[8:40]
	}
	e.pseudo = pseudoSum(addrs)
	e.udpSum = csum.Fold(csum.AddCarry(uint64(e.pseudo), csum.Sum(0, e.hdr[e.udpOff:e.hlen])))
}

// HeaderLen is the number of bytes Encap writes in front of the inner frame:
// IPv4Overhead (50) or IPv6Overhead (70) plus the options.
func (e *Encapsulator) HeaderLen() int { return e.hlen }

// IPv6 reports whether the outer IP is IPv6.
func (e *Encapsulator) IPv6() bool { return e.v6 }

// Encap writes the outer headers into frame[innerOff-HeaderLen():innerOff],
// in front of the inner frame frame[innerOff:innerOff+innerLen], with the UDP
// source port and IPv6 flow label from InnerHash of the inner frame. It
// returns the offset where the packet now starts. The caller guarantees
// innerOff >= HeaderLen(), innerOff+innerLen <= len(frame) and
// HeaderLen()+innerLen-EthLen <= 65535 (it panics otherwise, like any
// out-of-range slice). No allocation.
func (e *Encapsulator) Encap(frame []byte, innerOff, innerLen int) (start int) {
	return e.EncapHash(frame, innerOff, innerLen, InnerHash(frame[innerOff:innerOff+innerLen]))
}

// EncapHash is Encap with a flow hash the caller already has (e.g. computed
// once per flow); it determines the UDP source port and the IPv6 flow label.
func (e *Encapsulator) EncapHash(frame []byte, innerOff, innerLen int, hash uint32) (start int) {
	start, port, udpLen := e.headers(frame, innerOff, innerLen, hash)
	if e.udpCsum {
		b := frame[start : innerOff+innerLen]
		binary.BigEndian.PutUint16(b[e.udpOff+6:], udpChecksum(e.udpSum, udpLen, port, b[e.hlen:]))
	}
	return start
}

// EncapPartial is EncapHash for a device that computes the outer UDP
// checksum (checksum offload): where the tunnel sends UDP checksums it
// leaves the pseudo-header sum in the field (folded, not complemented, as
// Linux does for CHECKSUM_PARTIAL) instead of summing the payload;
// UDPChecksumAt says where the device must compute. Where the tunnel sends
// a zero checksum the result is EncapHash's.
func (e *Encapsulator) EncapPartial(frame []byte, innerOff, innerLen int, hash uint32) (start int) {
	start, _, udpLen := e.headers(frame, innerOff, innerLen, hash)
	if e.udpCsum {
		s := uint32(e.pseudo) + uint32(udpLen) // < 2^17
		s = (s & 0xffff) + s>>16
		binary.BigEndian.PutUint16(frame[start+e.udpOff+6:], uint16(s))
	}
	return start
}

// UDPChecksumAt is where the outer UDP checksum is computed, for checksum
// offload: from start (the UDP header, counted from the packet's first
// byte) to the packet's end, stored at start+offset. ok is false when the
// tunnel sends a zero checksum (IPv4 by default).
func (e *Encapsulator) UDPChecksumAt() (start, offset int, ok bool) {
	return e.udpOff, 6, e.udpCsum
}

// headers writes the outer headers except the UDP checksum (left 0) and
// returns the packet's start, the UDP source port and the UDP length.
func (e *Encapsulator) headers(frame []byte, innerOff, innerLen int, hash uint32) (start int, port, udpLen uint16) {
	start = innerOff - e.hlen
	b := frame[start : innerOff+innerLen]
	copy(b, e.hdr[:e.hlen])
	port = e.portMin + uint16((uint64(hash)*e.portRange)>>32)
	udpLen = uint16(e.hlen - e.udpOff + innerLen)
	u := b[e.udpOff : e.udpOff+UDPLen]
	binary.BigEndian.PutUint16(u[0:], port)
	binary.BigEndian.PutUint16(u[4:], udpLen)
	ip := b[EthLen:]
	if e.v6 {
		binary.BigEndian.PutUint32(ip[0:], e.v6Word0|hash&0xfffff)
		binary.BigEndian.PutUint16(ip[4:], udpLen)
	} else {
		tot := udpLen + IPv4Len
		binary.BigEndian.PutUint16(ip[2:], tot)
		var id uint16
		if !e.df {
			id = uint16(e.ipID.Add(1))
			binary.BigEndian.PutUint16(ip[4:], id)
		}
		binary.BigEndian.PutUint16(ip[10:], ipv4Checksum(e.ipSum, tot, id))
	}
	return start, port, udpLen
}

const (
	hashK0 = 0x9e3779b97f4a7c15
	hashK1 = 0xc2b2ae3d27d4eb4f
)

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a^hashK0, b^hashK1)
	return hi ^ lo
}

// InnerHash hashes an inner Ethernet frame's flow: MAC addresses, VLAN ID,
// EtherType, IPv4/IPv6 addresses and protocol, and TCP/UDP/SCTP ports (not
// for IPv4 fragments). Packets of one flow hash alike, so they take one ECMP
// path (RFC 8926 §3.3). It is not a cryptographic hash. No allocation.
func InnerHash(b []byte) uint32 {
	if len(b) < EthLen {
		var w uint64
		for _, x := range b {
			w = w<<8 | uint64(x)
		}
		h := mix(w, uint64(len(b)))
		return uint32(h) ^ uint32(h>>32)
	}
	macs := binary.BigEndian.Uint64(b)
	et := binary.BigEndian.Uint16(b[12:])
	w := uint64(binary.BigEndian.Uint32(b[8:]))
	off := EthLen
	if et == etherTypeVLAN && len(b) >= EthLen+4 {
		w ^= uint64(binary.BigEndian.Uint16(b[14:])&0x0fff) << 48
		et = binary.BigEndian.Uint16(b[16:])
		off += 4
	}
	h := mix(macs, w|uint64(et)<<32)
	ip := b[off:]
	switch et {
	case etherTypeIPv4:
		if len(ip) < IPv4Len {
			break
		}
		proto := ip[9]
		var ports uint32
		ihl := int(ip[0]&0x0f) * 4
		if binary.BigEndian.Uint16(ip[6:])&0x3fff == 0 && hasPorts(proto) && ihl >= IPv4Len && len(ip) >= ihl+4 {
			ports = binary.BigEndian.Uint32(ip[ihl:])
		}
		h = mix(h^binary.BigEndian.Uint64(ip[12:]), uint64(ports)<<8|uint64(proto))
	case etherTypeIPv6:
		if len(ip) < IPv6Len {
			break
		}
		nh := ip[6]
		var ports uint32
		if hasPorts(nh) && len(ip) >= IPv6Len+4 {
			ports = binary.BigEndian.Uint32(ip[IPv6Len:])
		}
		h = mix(h^binary.BigEndian.Uint64(ip[8:]), binary.BigEndian.Uint64(ip[16:]))
		h = mix(h^binary.BigEndian.Uint64(ip[24:]), binary.BigEndian.Uint64(ip[32:]))
		h = mix(h, uint64(ports)<<8|uint64(nh))
	}
	return uint32(h) ^ uint32(h>>32)
}

func hasPorts(proto uint8) bool { return proto == 6 || proto == 17 || proto == 132 }
