// Package geneve encodes and decodes Geneve (RFC 8926) tunnel packets for an
// L2 switch: the outer Ethernet (optionally one 802.1Q tag on receive),
// IPv4 or IPv6, UDP (port 6081) and Geneve headers with their option TLVs.
//
// # Receive
//
// Decap parses a whole outer frame in place and fills a Decoded with the
// offsets of the inner Ethernet frame and of the raw options; nothing is
// copied and nothing is allocated. Every length is validated (Ethernet, IPv4
// IHL and total length, IPv6 payload length, UDP length, Geneve option
// length); a bad frame yields a Drop reason that the caller counts
// (Drop.String gives a stable snake_case name for counters):
//
//	var d geneve.Decoded
//	if drop := geneve.Decap(frame, &d); drop != geneve.DropNone {
//		counters[drop]++
//		return
//	}
//	if d.OptLen > 0 { // a few ns; also catches a critical option sent without the C bit
//		if drop := geneve.CheckOptions(d.Options(frame), &known); drop != geneve.DropNone {
//			counters[drop]++
//			return
//		}
//	}
//	inner := frame[d.InnerOff : d.InnerOff+d.InnerLen]
//
// Rules applied by Decap: Geneve version != 0 is DropBadVersion; a protocol
// type other than ProtoTEB is DropUnknownProto (d is still filled); reserved
// bits are ignored. IPv4 fragments are dropped (DropIPFragment), the IPv4
// header checksum is verified (DropBadIPHeader). An Ethernet frame longer
// than the IP packet (Ethernet padding) is accepted: the IP length wins.
// IPv6 extension headers are not walked: the IPv6 next header must be UDP,
// anything else is DropNotUDP. The UDP checksum is not verified (it would
// cost a pass over the payload; IPv4 Geneve usually sends zero, and the inner
// frame has its own checks). Decap does not judge options or the O bit: the
// caller does (CheckOptions, d.OAM and DropOAM).
//
// Options are iterated without allocation with Options.Iter; a KnownOptions
// set lists the (class, type) pairs the receiver understands, so that
// CheckOptions can drop packets carrying an unknown critical option
// (§3.5.1) without calling a func value per option.
//
// # Send
//
// An Encapsulator holds a precomputed header template for one tunnel
// (NewEncapsulator from an EncapConfig; DefaultEncapConfig gives the
// defaults). Encap writes the outer headers into the headroom in front of the
// inner frame, fills in the lengths, the IPv4 header checksum (template sum
// plus the length, folded), the UDP source port (from InnerHash, within
// SrcPortMin..SrcPortMax, §3.3), the IPv6 flow label, and the UDP checksum
// when configured (default: zero for IPv4, computed for IPv6). It does not
// allocate and is safe for concurrent use.
package geneve

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Port is the IANA UDP destination port of Geneve.
const Port = 6081

// ProtoTEB is the Geneve protocol type of an inner Ethernet frame
// (Transparent Ethernet Bridging).
const ProtoTEB = 0x6558

// Header sizes.
const (
	EthLen    = 14
	IPv4Len   = 20
	IPv6Len   = 40
	UDPLen    = 8
	GeneveLen = 8 // fixed Geneve header, without options

	// IPv4Overhead and IPv6Overhead are the outer header bytes in front of
	// the inner frame without options: Ethernet + IP + UDP + Geneve.
	IPv4Overhead = EthLen + IPv4Len + UDPLen + GeneveLen // 50
	IPv6Overhead = EthLen + IPv6Len + UDPLen + GeneveLen // 70

	// MaxOptionsLen is the largest option area: Opt Len is 6 bits of 4-byte words.
	MaxOptionsLen = 63 * 4 // 252
	// MaxOptionDataLen is the largest data of one option: 5 bits of 4-byte words.
	MaxOptionDataLen = 31 * 4 // 124
	// MaxHeaderLen is the largest outer header Encap can write.
	MaxHeaderLen = IPv6Overhead + MaxOptionsLen
)

// IPv4HeaderLen and IPv6HeaderLen are the outer header lengths for an option
// area of optLen bytes (a multiple of 4, at most MaxOptionsLen).
func IPv4HeaderLen(optLen int) int { return IPv4Overhead + optLen }

// IPv6HeaderLen: see IPv4HeaderLen.
func IPv6HeaderLen(optLen int) int { return IPv6Overhead + optLen }

// Drop is the reason a received frame was refused. The zero value is DropNone.
type Drop uint8

// Drop reasons. Their String names are stable: counters use them.
const (
	DropNone           Drop = iota
	DropTooShort            // frame shorter than the headers it announces
	DropNotIP               // outer EtherType neither IPv4 nor IPv6 (after at most one 802.1Q tag)
	DropBadIPHeader         // IP version field wrong, IHL < 5, or IPv4 header checksum wrong
	DropBadIPLength         // IP total/payload length smaller than the header or larger than the frame
	DropIPFragment          // IPv4 fragment (MF set or offset != 0)
	DropNotUDP              // IP protocol / IPv6 next header not UDP (IPv6 extension headers included)
	DropBadUDPLength        // UDP length < 8 or beyond the IP payload
	DropNotGenevePort       // UDP destination port not 6081
	DropBadVersion          // Geneve version != 0
	DropBadOptLength        // options extend beyond the packet, or a malformed option TLV
	DropUnknownProto        // Geneve protocol type not 0x6558
	DropCriticalOption      // a critical option the receiver does not understand (§3.5.1)
	DropOAM                 // OAM frame (O bit) where the caller does not handle OAM
	NumDrops
)

var dropNames = [NumDrops]string{
	DropNone:           "none",
	DropTooShort:       "too_short",
	DropNotIP:          "not_ip",
	DropBadIPHeader:    "bad_ip_header",
	DropBadIPLength:    "bad_ip_length",
	DropIPFragment:     "ip_fragment",
	DropNotUDP:         "not_udp",
	DropBadUDPLength:   "bad_udp_length",
	DropNotGenevePort:  "not_geneve_port",
	DropBadVersion:     "bad_version",
	DropBadOptLength:   "bad_opt_length",
	DropUnknownProto:   "unknown_proto",
	DropCriticalOption: "critical_option",
	DropOAM:            "oam",
}

// String returns the stable snake_case name of d, e.g. "bad_ip_header".
func (d Drop) String() string {
	if d < NumDrops {
		return dropNames[d]
	}
	return fmt.Sprintf("drop_%d", uint8(d))
}

// Option is one Geneve option TLV. Type's high bit is the critical bit.
// Data's length is a multiple of 4 bytes, at most MaxOptionDataLen.
// A received Option's Data aliases the frame.
type Option struct {
	Class uint16
	Type  uint8
	Data  []byte
}

// Critical reports whether the option's critical bit (Type & 0x80) is set.
func (o Option) Critical() bool { return o.Type&0x80 != 0 }

// Options is a raw option area (the TLVs after the fixed Geneve header).
type Options []byte

// Iter returns an iterator over the options. It does not allocate:
//
//	it := geneve.Options(b).Iter()
//	for o, ok := it.Next(); ok; o, ok = it.Next() { ... }
//	if it.Err() != nil { ... }
func (o Options) Iter() OptionIter { return OptionIter{rest: o} }

// ErrOptionTruncated is returned by OptionIter.Err when an option's header or
// data runs past the end of the option area.
var ErrOptionTruncated = errors.New("geneve: option truncated")

// OptionIter walks an option area. The zero value is an empty iterator.
type OptionIter struct {
	rest []byte
	err  error
}

// Next returns the next option and true, or false at the end of the area or
// at the first malformed option (then Err is non-nil).
func (it *OptionIter) Next() (Option, bool) {
	b := it.rest
	if len(b) == 0 {
		return Option{}, false
	}
	if len(b) < 4 {
		it.rest, it.err = nil, ErrOptionTruncated
		return Option{}, false
	}
	n := 4 + int(b[3]&0x1f)*4 // the top 3 bits of byte 3 are reserved: ignored
	if n > len(b) {
		it.rest, it.err = nil, ErrOptionTruncated
		return Option{}, false
	}
	it.rest = b[n:]
	return Option{Class: binary.BigEndian.Uint16(b), Type: b[2], Data: b[4:n:n]}, true
}

// Err returns the error that stopped the iteration, nil at a clean end.
func (it *OptionIter) Err() error { return it.err }

// AppendOption appends the wire form of o to dst (control path: may grow dst).
// Data must be a multiple of 4 bytes and at most MaxOptionDataLen.
func AppendOption(dst []byte, o Option) ([]byte, error) {
	if len(o.Data)%4 != 0 {
		return dst, fmt.Errorf("geneve: option class 0x%04x type 0x%02x: data length %d is not a multiple of 4", o.Class, o.Type, len(o.Data))
	}
	if len(o.Data) > MaxOptionDataLen {
		return dst, fmt.Errorf("geneve: option class 0x%04x type 0x%02x: data length %d exceeds %d", o.Class, o.Type, len(o.Data), MaxOptionDataLen)
	}
	dst = append(dst, byte(o.Class>>8), byte(o.Class), o.Type, byte(len(o.Data)/4))
	return append(dst, o.Data...), nil
}

// MaxKnownOptions is the capacity of a KnownOptions set.
const MaxKnownOptions = 16

// KnownOptions is a small fixed-size set of (class, type) option kinds that
// the receiver understands. The zero value is empty (no critical option is
// understood). It does not allocate; Contains is a short linear scan.
type KnownOptions struct {
	keys [MaxKnownOptions]uint32
	n    int
}

func optKey(class uint16, typ uint8) uint32 { return uint32(class)<<8 | uint32(typ) }

// Add puts (class, typ) into the set. The type is taken as given, critical bit
// included: a receiver that understands a critical option adds it with 0x80 set.
func (k *KnownOptions) Add(class uint16, typ uint8) error {
	if k.Contains(class, typ) {
		return nil
	}
	if k.n == MaxKnownOptions {
		return fmt.Errorf("geneve: known options set full (%d entries) adding class 0x%04x type 0x%02x", MaxKnownOptions, class, typ)
	}
	k.keys[k.n] = optKey(class, typ)
	k.n++
	return nil
}

// Contains reports whether (class, typ) is in the set. A nil set is empty.
func (k *KnownOptions) Contains(class uint16, typ uint8) bool {
	if k == nil {
		return false
	}
	key := optKey(class, typ)
	for _, v := range k.keys[:k.n] {
		if v == key {
			return true
		}
	}
	return false
}

// Len returns the number of entries.
func (k *KnownOptions) Len() int { return k.n }

// CheckOptions walks an option area: DropBadOptLength for a malformed TLV,
// DropCriticalOption for a critical option not in known (nil: none known),
// DropNone otherwise. It does not allocate.
func CheckOptions(opts []byte, known *KnownOptions) Drop {
	for len(opts) > 0 {
		if len(opts) < 4 {
			return DropBadOptLength
		}
		n := 4 + int(opts[3]&0x1f)*4
		if n > len(opts) {
			return DropBadOptLength
		}
		if typ := opts[2]; typ&0x80 != 0 && !known.Contains(binary.BigEndian.Uint16(opts), typ) {
			return DropCriticalOption
		}
		opts = opts[n:]
	}
	return DropNone
}
