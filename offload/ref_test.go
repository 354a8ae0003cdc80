package offload

// A plain reference implementation of what the package does, written for
// obviousness and not speed: packets are built field by field from a model,
// checksums are summed a byte at a time over an explicit pseudo-header, and
// segmentation rebuilds every segment from the model. The property and fuzz
// tests compare the package against it.

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"

	"xswitch/internal/csumref"
)

// refPseudo is the TCP/UDP pseudo-header as bytes (RFC 793 / RFC 8200 8.1).
func refPseudo(v6 bool, src, dst []byte, proto uint8, l4len int) []byte {
	var p []byte
	p = append(p, src...)
	p = append(p, dst...)
	if v6 {
		p = binary.BigEndian.AppendUint32(p, uint32(l4len))
		p = append(p, 0, 0, 0, proto)
	} else {
		p = append(p, 0, proto)
		p = binary.BigEndian.AppendUint16(p, uint16(l4len))
	}
	return p
}

type csumKind int

const (
	refFull    csumKind = iota // a correct checksum
	refPartial                 // the folded pseudo-header sum, as Linux leaves it
)

// refPkt is the model of an Ethernet/IP/TCP|UDP frame.
type refPkt struct {
	dstMAC, srcMAC [6]byte
	vlans          []uint32 // TPID<<16 | TCI
	v6             bool
	src, dst       []byte
	tos, ttl       uint8
	id             uint16
	df             bool
	flowLabel      uint32
	ipOpts         []byte // IPv4 options, a multiple of 4
	proto          uint8
	sport, dport   uint16
	seq, ack       uint32
	flags          uint8
	window         uint16
	tcpOpts        []byte // a multiple of 4
	payload        []byte
}

func (p *refPkt) l4HeaderLen() int {
	if p.proto == protoTCP {
		return 20 + len(p.tcpOpts)
	}
	return 8
}

// build returns the frame bytes with the L4 checksum of the given kind.
func (p *refPkt) build(kind csumKind) []byte {
	var b []byte
	b = append(b, p.dstMAC[:]...)
	b = append(b, p.srcMAC[:]...)
	for _, v := range p.vlans {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	l4 := p.buildL4()
	if p.v6 {
		b = binary.BigEndian.AppendUint16(b, etherTypeIPv6)
		b = binary.BigEndian.AppendUint32(b, 6<<28|uint32(p.tos)<<20|p.flowLabel&0xfffff)
		b = binary.BigEndian.AppendUint16(b, uint16(len(l4)))
		b = append(b, p.proto, p.ttl)
		b = append(b, p.src...)
		b = append(b, p.dst...)
	} else {
		b = binary.BigEndian.AppendUint16(b, etherTypeIPv4)
		ip := []byte{byte(0x40 | (20+len(p.ipOpts))/4), p.tos}
		ip = binary.BigEndian.AppendUint16(ip, uint16(20+len(p.ipOpts)+len(l4)))
		ip = binary.BigEndian.AppendUint16(ip, p.id)
		frag := uint16(0)
		if p.df {
			frag = 0x4000
		}
		ip = binary.BigEndian.AppendUint16(ip, frag)
		ip = append(ip, p.ttl, p.proto, 0, 0)
		ip = append(ip, p.src...)
		ip = append(ip, p.dst...)
		ip = append(ip, p.ipOpts...)
		binary.BigEndian.PutUint16(ip[10:], ^csumref.Sum(ip))
		b = append(b, ip...)
	}
	ps := csumref.Sum(refPseudo(p.v6, p.src, p.dst, p.proto, len(l4)))
	co := 6
	if p.proto == protoTCP {
		co = 16
	}
	if kind == refPartial {
		binary.BigEndian.PutUint16(l4[co:], ps)
	} else {
		c := ^csumref.Sum(append(refPseudo(p.v6, p.src, p.dst, p.proto, len(l4)), l4...))
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(l4[co:], c)
	}
	return append(b, l4...)
}

func (p *refPkt) buildL4() []byte {
	var l []byte
	l = binary.BigEndian.AppendUint16(l, p.sport)
	l = binary.BigEndian.AppendUint16(l, p.dport)
	if p.proto == protoUDP {
		l = binary.BigEndian.AppendUint16(l, uint16(8+len(p.payload)))
		l = append(l, 0, 0)
		return append(l, p.payload...)
	}
	l = binary.BigEndian.AppendUint32(l, p.seq)
	l = binary.BigEndian.AppendUint32(l, p.ack)
	l = append(l, byte((20+len(p.tcpOpts))/4)<<4, p.flags)
	l = binary.BigEndian.AppendUint16(l, p.window)
	l = append(l, 0, 0, 0, 0) // checksum, urgent pointer
	l = append(l, p.tcpOpts...)
	return append(l, p.payload...)
}

// refSegment cuts p into segments of at most mss payload bytes the way the
// kernel's software GSO does, each rebuilt from the model.
func refSegment(p refPkt, mss int) []refPkt {
	var segs []refPkt
	n := max(1, (len(p.payload)+mss-1)/mss)
	for i := 0; i < n; i++ {
		s := p
		lo, hi := i*mss, min(len(p.payload), (i+1)*mss)
		s.payload = p.payload[lo:hi]
		s.id = p.id + uint16(i)
		if p.proto == protoTCP {
			s.seq = p.seq + uint32(lo)
			if i != n-1 {
				s.flags &^= tcpFlagFIN | tcpFlagPSH
			}
			if i != 0 {
				s.flags &^= tcpFlagCWR
			}
		}
		segs = append(segs, s)
	}
	return segs
}

// refVerify reports whether frame's IPv4 header checksum (if any) and L4
// checksum verify, reparsing the frame in the plainest way.
func refVerify(frame []byte) error { return refVerifyOpt(frame, true) }

// refVerifyL4 checks only the TCP/UDP checksum (and UDP length).
func refVerifyL4(frame []byte) error { return refVerifyOpt(frame, false) }

func refVerifyOpt(frame []byte, ipHeader bool) error {
	off := 14
	et := binary.BigEndian.Uint16(frame[12:])
	for et == etherTypeVLAN || et == etherTypeQinQ {
		et = binary.BigEndian.Uint16(frame[off+2:])
		off += 4
	}
	var src, dst []byte
	var proto uint8
	var l4 []byte
	v6 := et == etherTypeIPv6
	if v6 {
		ip := frame[off:]
		plen := int(binary.BigEndian.Uint16(ip[4:]))
		proto, src, dst = ip[6], ip[8:24], ip[24:40]
		l4 = ip[40 : 40+plen]
	} else {
		ip := frame[off:]
		ihl := int(ip[0]&15) * 4
		if ipHeader && csumref.Sum(ip[:ihl]) != 0xffff {
			return fmt.Errorf("IPv4 header checksum %#04x wrong", binary.BigEndian.Uint16(ip[10:]))
		}
		total := int(binary.BigEndian.Uint16(ip[2:]))
		proto, src, dst = ip[9], ip[12:16], ip[16:20]
		l4 = ip[ihl:total]
	}
	if proto == protoUDP && binary.BigEndian.Uint16(l4[4:]) != uint16(len(l4)) {
		return fmt.Errorf("UDP length %d, IP says %d", binary.BigEndian.Uint16(l4[4:]), len(l4))
	}
	if s := csumref.Sum(append(refPseudo(v6, src, dst, proto, len(l4)), l4...)); s != 0xffff {
		return fmt.Errorf("L4 checksum does not verify (sum %#04x)", s)
	}
	return nil
}

// randPkt draws a random TCP or UDP packet model with up to maxPay payload.
func randPkt(rng *rand.Rand, proto uint8, v6 bool, maxPay int) refPkt {
	p := refPkt{v6: v6, proto: proto, tos: uint8(rng.IntN(256)), ttl: uint8(1 + rng.IntN(255)),
		id: uint16(rng.Uint32()), df: rng.IntN(2) == 0, flowLabel: rng.Uint32() & 0xfffff,
		sport: uint16(rng.Uint32()), dport: uint16(rng.Uint32()), seq: rng.Uint32(), ack: rng.Uint32(),
		flags: tcpFlagACK, window: uint16(rng.Uint32())}
	fill := func(b []byte) []byte {
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	copy(p.dstMAC[:], fill(make([]byte, 6)))
	copy(p.srcMAC[:], fill(make([]byte, 6)))
	for range rng.IntN(3) {
		tpid := uint32(etherTypeVLAN)
		if rng.IntN(2) == 0 {
			tpid = etherTypeQinQ
		}
		p.vlans = append(p.vlans, tpid<<16|rng.Uint32()&0xffff)
	}
	alen := 4
	if v6 {
		alen = 16
	}
	p.src, p.dst = fill(make([]byte, alen)), fill(make([]byte, alen))
	if !v6 && rng.IntN(8) == 0 {
		p.ipOpts = fill(make([]byte, 4*(1+rng.IntN(10))))
	}
	switch rng.IntN(3) {
	case 0: // timestamps, as Linux sends them
		p.tcpOpts = append([]byte{1, 1, 8, 10}, fill(make([]byte, 8))...)
	case 1:
		p.tcpOpts = fill(make([]byte, 4*rng.IntN(11)))
	}
	if proto == protoUDP {
		p.tcpOpts = nil
	}
	p.payload = fill(make([]byte, rng.IntN(min(maxPay, p.maxPayload())+1)))
	return p
}

// maxPayload is the largest payload that keeps the IP length field in range.
func (p *refPkt) maxPayload() int {
	if p.v6 {
		return 0xffff - p.l4HeaderLen()
	}
	return 0xffff - 20 - len(p.ipOpts) - p.l4HeaderLen()
}
