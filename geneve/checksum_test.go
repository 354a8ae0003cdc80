package geneve

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/big"
	"math/rand/v2"
	"net/netip"
	"testing"

	"xswitch/csum"
	"xswitch/internal/csumref"
)

// Differential tests of every checksum routine against rfc1071Sum, a plain
// byte-at-a-time RFC 1071 sum that shares no code or trick with the fast ones.

func be16(x uint16) []byte { return binary.BigEndian.AppendUint16(nil, x) }
func be64(x uint64) []byte { return binary.BigEndian.AppendUint64(nil, x) }

// checksumField is the value a sender stores: the inverted sum, a computed
// zero sent as all ones (RFC 768; for UDP only).
func udpField(sum uint16) uint16 {
	if c := ^sum; c != 0 {
		return c
	}
	return 0xffff
}

// TestRFC1071SumKnown anchors the reference itself on the worked example of
// RFC 1071 §3 (bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2) and on edge cases.
func TestRFC1071SumKnown(t *testing.T) {
	cases := []struct {
		parts [][]byte
		want  uint16
	}{
		{[][]byte{{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}}, 0xddf2},
		{[][]byte{{0x00, 0x01, 0xf2}, {0x03, 0xf4, 0xf5, 0xf6, 0xf7}}, 0xddf2}, // split at an odd byte
		{nil, 0},
		{[][]byte{make([]byte, 9)}, 0},
		{[][]byte{{0xab}}, 0xab00},
		{[][]byte{{0xff, 0xff}}, 0xffff},
		{[][]byte{{0xff, 0xff, 0x00, 0x01}}, 0x0001},              // ffff + 0001 = 1_0000 -> 0001
		{[][]byte{{0x80, 0x00, 0x80, 0x00}}, 0x0001},              // 8000 + 8000 = 1_0000 -> 0001
		{[][]byte{bytes.Repeat([]byte{0xff}, 9000)}, 0xffff},      // all ones stay all ones
		{[][]byte{bytes.Repeat([]byte{0xff}, 9001)}, 0xff00},      // ffff + ff00 = 1_feff -> ff00
		{[][]byte{{0x12, 0x34}, {0x56}, {0x78}}, 0x1234 + 0x5678}, // parts of one byte
		{[][]byte{{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}}, 0xffff}, // a valid IPv4 header
	}
	for i, c := range cases {
		if got := csumref.Sum(c.parts...); got != c.want {
			t.Errorf("case %d: sum %04x, want %04x", i, got, c.want)
		}
	}
}

// randomBytes returns n bytes: random, all 0xff, all zero, or 0xff with a
// few random bytes (sums close to the top of the range, where carries happen).
func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	switch rng.IntN(5) {
	case 0:
		for i := range b {
			b[i] = 0xff
		}
	case 1: // zeros
	case 2:
		for i := range b {
			b[i] = 0xff
		}
		for k := rng.IntN(4); k > 0 && n > 0; k-- {
			b[rng.IntN(n)] = byte(rng.IntN(256))
		}
	default:
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
	}
	return b
}

// edgeSums are 64-bit sums where a lost or doubled carry shows.
var edgeSums = []uint64{0, 1, 0xffff, 0x10000, 0xffffffff, 1 << 63, math.MaxUint64 - 0x3ffff, math.MaxUint64 - 17,
	math.MaxUint64 - 4, math.MaxUint64 - 1, math.MaxUint64}

func randomSum(rng *rand.Rand) uint64 {
	switch rng.IntN(3) {
	case 0:
		return edgeSums[rng.IntN(len(edgeSums))]
	case 1:
		return math.MaxUint64 - rng.Uint64N(1<<20) // near the top: a plain add would carry out
	}
	return rng.Uint64()
}

// randomLen is a length in 0..9000 with odd lengths and block boundaries
// (the fast sum works in 32-, 8-, 4-, 2- and 1-byte steps) well represented.
func randomLen(rng *rand.Rand) int {
	if rng.IntN(2) == 0 {
		return rng.IntN(80)
	}
	return rng.IntN(9001)
}

// TestSumBytesMatchesReference: csum.Fold(csum.Sum(init, b)) equals the reference
// sum of init's four 16-bit words followed by b, for random and edge initial
// sums, lengths 0..9000, odd lengths, and b at odd and even memory offsets;
// and a sum chained over a split at an even offset equals the one-shot sum.
func TestSumBytesMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	buf := make([]byte, 9000+8)
	for i := 0; i < 4000; i++ {
		n := randomLen(rng)
		if i < 200 {
			n = i // every short length
		}
		memOff := rng.IntN(8) // odd and even memory offsets (alignment of the loads)
		b := buf[memOff : memOff+n]
		copy(b, randomBytes(rng, n))
		init := randomSum(rng)
		want := csumref.Sum(be64(init), b)
		if got := csum.Fold(csum.Sum(init, b)); got != want {
			t.Fatalf("len %d offset %d init %#x: csum.Fold(sumBytes) %04x, reference %04x", n, memOff, init, got, want)
		}
		split := 2 * rng.IntN(n/2+1)
		if got := csum.Fold(csum.Sum(csum.Sum(init, b[:split]), b[split:])); got != want {
			t.Fatalf("len %d split %d init %#x: chained %04x, reference %04x", n, split, init, got, want)
		}
	}
}

// TestSumBytesMaxLength: the largest IP packet of all-ones bytes, starting
// from the largest sum, does not lose a carry.
func TestSumBytesMaxLength(t *testing.T) {
	b := bytes.Repeat([]byte{0xff}, 65535)
	b[100] = 0xfe
	for _, init := range edgeSums {
		if got, want := csum.Fold(csum.Sum(init, b)), csumref.Sum(be64(init), b); got != want {
			t.Fatalf("init %#x: %04x, reference %04x", init, got, want)
		}
	}
}

func TestFoldAndAddCarry(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	for i := 0; i < 100000; i++ {
		s, x := randomSum(rng), randomSum(rng)
		if got, want := csum.Fold(s), csumref.Sum(be64(s)); got != want {
			t.Fatalf("csum.Fold(%#x) = %04x, reference %04x", s, got, want)
		}
		if got, want := csum.Fold(csum.AddCarry(s, x)), csumref.Sum(be64(s), be64(x)); got != want {
			t.Fatalf("csum.AddCarry(%#x, %#x) folds to %04x, reference %04x", s, x, got, want)
		}
	}
}

func TestPseudoSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for i := 0; i < 20000; i++ {
		addrs := randomBytes(rng, []int{8, 32}[i%2])
		if got, want := pseudoSum(addrs), csumref.Sum(addrs, []byte{0, ipProtoUDP}); got != want {
			t.Fatalf("pseudoSum(%x) = %04x, reference %04x", addrs, got, want)
		}
	}
}

func checkUDPChecksum(t *testing.T, base, udpLen, port uint16, payload []byte) {
	t.Helper()
	sum := csumref.Sum(be16(base), be16(udpLen), be16(udpLen), be16(port), payload)
	got := udpChecksum(base, udpLen, port, payload)
	if want := udpField(sum); got != want {
		t.Fatalf("udpChecksum(%#x, %d, %d, %d bytes) = %04x, reference %04x", base, udpLen, port, len(payload), got, want)
	}
	// The receiver's check: the field sits in the UDP header, before the payload.
	if v := csumref.Sum(be16(base), be16(udpLen), be16(udpLen), be16(port), be16(got), payload); v != 0xffff {
		t.Fatalf("udpChecksum(%#x, %d, %d, %d bytes) = %04x does not verify: %04x", base, udpLen, port, len(payload), got, v)
	}
}

func TestUDPChecksum(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	for i := 0; i < 4000; i++ {
		base := uint16(rng.Uint32())
		if i%4 == 0 {
			base = 0xffff - uint16(rng.IntN(16))
		}
		udpLen, port := uint16(rng.Uint32()), uint16(rng.Uint32())
		if i%3 == 0 {
			udpLen, port = 0xffff, 0xffff
		}
		checkUDPChecksum(t, base, udpLen, port, randomBytes(rng, randomLen(rng)))
	}
	// A datagram summing to 0xffff: the computed zero is sent as 0xffff.
	checkUDPChecksum(t, 0xfffe, 0, 1, nil)
	if got := udpChecksum(0xfffe, 0, 1, nil); got != 0xffff {
		t.Fatalf("computed zero sent as %04x", got)
	}
}

func TestIPv4Checksum(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	for i := 0; i < 100000; i++ {
		base, tot, id := uint16(rng.Uint32()), uint16(rng.Uint32()), uint16(rng.Uint32())
		if i%4 == 0 {
			base, tot, id = 0xffff-uint16(rng.IntN(4)), 0xffff-uint16(rng.IntN(4)), 0xffff-uint16(rng.IntN(4))
		}
		if got, want := ipv4Checksum(base, tot, id), ^csumref.Sum(be16(base), be16(tot), be16(id)); got != want {
			t.Fatalf("ipv4Checksum(%#x, %d, %d) = %04x, reference %04x", base, tot, id, got, want)
		}
	}
}

func TestIPv4Checksum20OK(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 12))
	for i := 0; i < 20000; i++ {
		h := randomBytes(rng, IPv4Len)
		if i%2 == 0 { // a valid checksum, or one bit off
			h[10], h[11] = 0, 0
			binary.BigEndian.PutUint16(h[10:], ^csumref.Sum(h))
			if i%4 == 0 {
				h[rng.IntN(IPv4Len)] ^= 1 << rng.IntN(8)
			}
		}
		if got, want := ipv4Checksum20OK(h), csumref.Sum(h) == 0xffff; got != want {
			t.Fatalf("ipv4Checksum20OK(%x) = %v, reference %v", h, got, want)
		}
	}
}

// checkEncapChecksums verifies the outer IPv4 header checksum and the outer
// UDP checksum of an encapsulated frame with the reference: the UDP checksum
// over the IPv4 or IPv6 pseudo header (RFC 768, RFC 8200 §8.1).
func checkEncapChecksums(t *testing.T, e *Encapsulator, f []byte) {
	t.Helper()
	ip := f[EthLen:]
	udp := f[e.udpOff:]
	udpLen := binary.BigEndian.Uint16(udp[4:])
	if int(udpLen) != len(udp) {
		t.Fatalf("UDP length %d, %d bytes after the IP header", udpLen, len(udp))
	}
	var pseudo []byte
	if e.IPv6() {
		pseudo = append(append([]byte{}, ip[8:40]...), 0, 0, byte(udpLen>>8), byte(udpLen), 0, 0, 0, ipProtoUDP)
	} else {
		if s := csumref.Sum(ip[:IPv4Len]); s != 0xffff {
			t.Fatalf("outer IPv4 header checksum %04x does not verify (sum %04x): %x", binary.BigEndian.Uint16(ip[10:]), s, ip[:IPv4Len])
		}
		pseudo = append(append([]byte{}, ip[12:20]...), 0, ipProtoUDP, byte(udpLen>>8), byte(udpLen))
	}
	stored := binary.BigEndian.Uint16(udp[6:])
	if !e.udpCsum {
		if stored != 0 {
			t.Fatalf("UDP checksum %04x, configured zero", stored)
		}
		return
	}
	if stored == 0 {
		t.Fatal("UDP checksum zero, configured computed")
	}
	if s := csumref.Sum(pseudo, udp); s != 0xffff {
		t.Fatalf("outer UDP checksum %04x does not verify over the pseudo header (sum %04x)", stored, s)
	}
}

// TestEncapChecksumRegression is the reported case: an IPv6 underlay from
// 2001:db8::1 to 2001:db8::75:0:1 with one option (class 0xbdfd, type 0x67,
// data ffec77e8) put the template's 64-bit sum at 0xfffffffffffffffb; the
// per-packet plain add carried out of bit 63 and every UDP checksum was off.
func TestEncapChecksumRegression(t *testing.T) {
	c := testConfig(true)
	c.Src, c.Dst = netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::75:0:1")
	c.Options = []Option{{Class: 0xbdfd, Type: 0x67, Data: []byte{0xff, 0xec, 0x77, 0xe8}}}
	e := mustEncap(t, c)
	rng := rand.New(rand.NewPCG(13, 13))
	for i := 0; i < 200; i++ {
		checkEncapChecksums(t, e, encapsulate(e, innerFrame(rng, i%2 == 1, rng.IntN(1400))))
	}
}

// templateSum64 is the value a 64-bit end-around-carry accumulator takes
// after summing parts (each a multiple of 8 bytes) in 8-byte words from the
// start of each, as NewEncapsulator summed the UDP/Geneve template and then
// the pseudo-header addresses: their sum modulo 2^64-1, in 1..2^64-1 (an
// end-around carry never yields 0 for nonzero data). Computed with math/big,
// independently of sumBytes.
func templateSum64(t *testing.T, parts ...[]byte) uint64 {
	t.Helper()
	s := new(big.Int)
	for _, p := range parts {
		if len(p)%8 != 0 {
			t.Fatalf("part of %d bytes, not a multiple of 8", len(p))
		}
		for i := 0; i < len(p); i += 8 {
			s.Add(s, new(big.Int).SetUint64(binary.BigEndian.Uint64(p[i:])))
		}
	}
	if s.Sign() == 0 {
		return 0
	}
	s.Sub(s, big.NewInt(1)).Mod(s, new(big.Int).SetUint64(math.MaxUint64))
	return s.Uint64() + 1
}

// steerTemplateSum sets the last 8 bytes of the (single, 12-byte) option's
// data so that the 64-bit template sum becomes target: the case where the
// per-packet terms added to it carry out of bit 63.
func steerTemplateSum(t *testing.T, c *EncapConfig, target uint64) {
	t.Helper()
	c.Options[0].Data = append(c.Options[0].Data[:4], make([]byte, 8)...)
	e := mustEncap(t, *c)
	addrs := e.hdr[EthLen+12 : EthLen+20]
	if e.v6 {
		addrs = e.hdr[EthLen+8 : EthLen+40]
	}
	// The option's data[4:12] is the fourth 8-byte word of the UDP/Geneve
	// template (UDP 8 + Geneve 8 + option header 4 + data[0:4]).
	now := templateSum64(t, e.hdr[e.udpOff:e.hlen], addrs)
	need := new(big.Int).SetUint64(target)
	need.Sub(need, new(big.Int).SetUint64(now)).Mod(need, new(big.Int).SetUint64(math.MaxUint64))
	binary.BigEndian.PutUint64(c.Options[0].Data[4:], need.Uint64())
	e = mustEncap(t, *c)
	if got := templateSum64(t, e.hdr[e.udpOff:e.hlen], addrs); got != target {
		t.Fatalf("steered template sum %#x, want %#x", got, target)
	}
}

// TestEncapChecksumsMatchReference encapsulates random frames under random
// tunnels (random addresses, TOS, TTL, DF, port ranges, options) and checks
// both outer checksums with the reference. Half the tunnels have their
// template sum steered within 2^18 of 2^64, where the per-packet length and
// port terms carry out of bit 63: random addresses alone land there with
// probability about 2^-46, so without steering this test would miss the bug.
func TestEncapChecksumsMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 14))
	for i := 0; i < 2000; i++ {
		v6 := i%2 == 0
		c := testConfig(v6)
		if !randomAddrs(rng, &c, v6) {
			continue
		}
		c.TOS, c.TTL, c.DontFragment = uint8(rng.Uint32()), uint8(rng.Uint32()), rng.IntN(2) == 0
		c.IPv4UDPChecksum, c.IPv6UDPChecksum = rng.IntN(4) != 0, rng.IntN(4) != 0
		c.VNI = rng.Uint32() & 0xffffff
		c.SrcPortMin = uint16(rng.Uint32())
		c.SrcPortMax = c.SrcPortMin + uint16(rng.IntN(int(0xffff-c.SrcPortMin)+1))
		c.Options = []Option{{Class: uint16(rng.Uint32()), Type: uint8(rng.Uint32()), Data: randomBytes(rng, 4)}}
		if i%4 < 2 {
			steerTemplateSum(t, &c, math.MaxUint64-rng.Uint64N(1<<18))
		} else {
			for n := rng.IntN(3); n > 0; n-- {
				c.Options = append(c.Options, Option{Class: uint16(rng.Uint32()), Type: uint8(rng.Uint32()), Data: randomBytes(rng, 4*rng.IntN(8))})
			}
		}
		e := mustEncap(t, c)
		for k := 0; k < 4; k++ {
			inner := randomBytes(rng, EthLen+rng.IntN(1500))
			if k == 0 {
				inner = innerFrame(rng, rng.IntN(2) == 0, rng.IntN(1400))
			}
			checkEncapChecksums(t, e, encapsulate(e, inner))
		}
	}
}

// TestEncapChecksumsLargeFrames: jumbo inner frames up to the 16-bit length limit.
func TestEncapChecksumsLargeFrames(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 15))
	for _, v6 := range []bool{false, true} {
		c := testConfig(v6)
		c.IPv4UDPChecksum = true
		c.DontFragment = false
		c.Options = []Option{{Class: 1, Type: 2, Data: make([]byte, 4)}}
		steerTemplateSum(t, &c, math.MaxUint64)
		e := mustEncap(t, c)
		for _, n := range []int{9000, 9001, 65535 - e.HeaderLen() + EthLen} {
			inner := bytes.Repeat([]byte{0xff}, n)
			inner[rng.IntN(n)] = 0
			checkEncapChecksums(t, e, encapsulate(e, inner))
		}
	}
}

// Fuzz targets: each routine against the reference.

func FuzzSumBytes(f *testing.F) {
	f.Add(uint64(0), []byte{}, uint16(0))
	f.Add(uint64(math.MaxUint64), bytes.Repeat([]byte{0xff}, 33), uint16(7))
	f.Add(uint64(math.MaxUint64-4), []byte{0, 1, 0xf2, 3, 0xf4, 0xf5, 0xf6, 0xf7}, uint16(4))
	f.Fuzz(func(t *testing.T, init uint64, b []byte, split uint16) {
		want := csumref.Sum(be64(init), b)
		if got := csum.Fold(csum.Sum(init, b)); got != want {
			t.Fatalf("csum.Fold(csum.Sum(%#x, %x)) = %04x, reference %04x", init, b, got, want)
		}
		at := int(split) % (len(b) + 1) &^ 1
		if got := csum.Fold(csum.Sum(csum.Sum(init, b[:at]), b[at:])); got != want {
			t.Fatalf("split at %d: %04x, reference %04x", at, got, want)
		}
	})
}

func FuzzFoldAddCarry(f *testing.F) {
	f.Add(uint64(math.MaxUint64), uint64(math.MaxUint64))
	f.Add(uint64(math.MaxUint64-4), uint64(17))
	f.Fuzz(func(t *testing.T, s, x uint64) {
		if got, want := csum.Fold(s), csumref.Sum(be64(s)); got != want {
			t.Fatalf("csum.Fold(%#x) = %04x, reference %04x", s, got, want)
		}
		if got, want := csum.Fold(csum.AddCarry(s, x)), csumref.Sum(be64(s), be64(x)); got != want {
			t.Fatalf("csum.AddCarry(%#x, %#x) folds to %04x, reference %04x", s, x, got, want)
		}
	})
}

func FuzzPseudoSum(f *testing.F) {
	f.Add(netip.MustParseAddr("2001:db8::1").AsSlice())
	f.Add(bytes.Repeat([]byte{0xff}, 32))
	f.Fuzz(func(t *testing.T, addrs []byte) {
		addrs = addrs[:len(addrs)&^1] // two addresses: an even length
		if got, want := pseudoSum(addrs), csumref.Sum(addrs, []byte{0, ipProtoUDP}); got != want {
			t.Fatalf("pseudoSum(%x) = %04x, reference %04x", addrs, got, want)
		}
	})
}

func FuzzUDPChecksum(f *testing.F) {
	f.Add(uint16(0xffff), uint16(0xffff), uint16(0xffff), bytes.Repeat([]byte{0xff}, 9))
	f.Add(uint16(0xfffe), uint16(0), uint16(1), []byte{})
	f.Fuzz(func(t *testing.T, base, udpLen, port uint16, payload []byte) {
		checkUDPChecksum(t, base, udpLen, port, payload)
	})
}

func FuzzIPv4Checksum(f *testing.F) {
	f.Add(uint16(0xffff), uint16(0xffff), uint16(0xffff))
	f.Add(uint16(0), uint16(0), uint16(0))
	f.Fuzz(func(t *testing.T, base, tot, id uint16) {
		if got, want := ipv4Checksum(base, tot, id), ^csumref.Sum(be16(base), be16(tot), be16(id)); got != want {
			t.Fatalf("ipv4Checksum(%#x, %d, %d) = %04x, reference %04x", base, tot, id, got, want)
		}
	})
}

func FuzzIPv4Checksum20OK(f *testing.F) {
	f.Add([]byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7})
	f.Add(make([]byte, 20))
	f.Fuzz(func(t *testing.T, h []byte) {
		if len(h) < IPv4Len {
			return
		}
		h = h[:IPv4Len]
		if got, want := ipv4Checksum20OK(h), csumref.Sum(h) == 0xffff; got != want {
			t.Fatalf("ipv4Checksum20OK(%x) = %v, reference %v", h, got, want)
		}
	})
}

// FuzzEncapChecksums: any tunnel NewEncapsulator accepts and any inner frame
// get outer checksums that verify with the reference. addrs gives the two
// addresses (first 8 bytes: IPv4, or 32 bytes: IPv6).
func FuzzEncapChecksums(f *testing.F) {
	repro := append(netip.MustParseAddr("2001:db8::1").AsSlice(), netip.MustParseAddr("2001:db8::75:0:1").AsSlice()...)
	f.Add(repro, []byte{0xbd, 0xfd, 0x67, 0x01, 0xff, 0xec, 0x77, 0xe8}, uint8(0), false, true, make([]byte, 60))
	f.Add([]byte{198, 18, 0, 1, 198, 18, 0, 2}, []byte{}, uint8(0xb8), true, true, bytes.Repeat([]byte{0xff}, 61))
	f.Fuzz(func(t *testing.T, addrs, opts []byte, tos uint8, df, csum bool, inner []byte) {
		if len(inner) < EthLen || len(inner) > 9000 {
			return
		}
		c := fuzzConfig(addrs, opts)
		c.TOS, c.DontFragment, c.IPv4UDPChecksum, c.IPv6UDPChecksum = tos, df, csum, csum
		e, err := NewEncapsulator(c)
		if err != nil {
			return
		}
		checkEncapChecksums(t, e, encapsulate(e, inner))
	})
}

// TestDecapIPv4HeaderChecksum: Decap refuses an outer IPv4 header exactly
// when the reference says its checksum is wrong, for IHL 5 (the 20-byte fast
// path) to 15 (options: the general sum), with random header bytes.
func TestDecapIPv4HeaderChecksum(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 16))
	base := encapsulate(mustEncap(t, testConfig(false)), innerFrame(rng, false, 40))
	for i := 0; i < 20000; i++ {
		ihl := 5 + rng.IntN(11)
		if i%2 == 0 {
			ihl = 5
		}
		opts := make([]byte, (ihl-5)*4)
		for j := range opts {
			opts[j] = byte(rng.Uint32())
		}
		f := append(append(append([]byte{}, base[:EthLen+IPv4Len]...), opts...), base[EthLen+IPv4Len:]...)
		ip := f[EthLen : EthLen+ihl*4]
		ip[0] = 0x40 | byte(ihl)
		binary.BigEndian.PutUint16(ip[2:], uint16(len(f)-EthLen))
		ip[1], ip[4], ip[5], ip[8] = byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())
		copy(ip[12:20], randomBytes(rng, 8))
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], ^csumref.Sum(ip))
		if i%3 == 0 { // one bit off, anywhere but the fields Decap checks before the checksum
			k := 10 + rng.IntN(len(ip)-10)
			ip[k] ^= 1 << rng.IntN(8)
		}
		var d Decoded
		got := Decap(f, &d) == DropBadIPHeader
		if want := csumref.Sum(ip) != 0xffff; got != want {
			t.Fatalf("IHL %d header %x: Decap bad_ip_header %v, reference bad %v", ihl, ip, got, want)
		}
	}
}
