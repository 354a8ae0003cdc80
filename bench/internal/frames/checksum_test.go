package frames

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"xswitch/internal/csumref"
)

func be32(x uint32) []byte { return binary.BigEndian.AppendUint32(nil, x) }

func TestRFC1071SumKnown(t *testing.T) { // RFC 1071 §3's worked example
	if got := csumref.Sum([]byte{0x00, 0x01, 0xf2}, []byte{0x03, 0xf4, 0xf5, 0xf6, 0xf7}); got != 0xddf2 {
		t.Fatalf("reference sum %04x, want ddf2", got)
	}
}

// TestSumMatchesReference: Fold(Sum(init, b)) equals the reference for
// initial sums up to 2^32-1 (a plain 32-bit accumulator overflows there),
// lengths 0..70000, odd lengths, all-0xff data; and Sum's result plus a few
// 16-bit terms (how UDP4Checksum uses it) still folds right.
func TestSumMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	inits := []uint32{0, 1, 0xffff, 0x10000, math.MaxUint32 - 0xffff, math.MaxUint32 - 1, math.MaxUint32}
	for i := 0; i < 3000; i++ {
		n := rng.IntN(100)
		if i%10 == 0 {
			n = rng.IntN(70001) // beyond 65537 words of 0xffff a uint32 sum overflows
		}
		b := make([]byte, n)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		if i%3 == 0 {
			b = bytes.Repeat([]byte{0xff}, n)
		}
		init := rng.Uint32()
		if i%2 == 0 {
			init = inits[rng.IntN(len(inits))]
		}
		want := csumref.Sum(be32(init), b)
		s := Sum(init, b)
		if got := Fold(s); got != want {
			t.Fatalf("len %d init %#x: Fold(Sum) %04x, reference %04x", n, init, got, want)
		}
		if got, w := Fold(s+17+0xffff), csumref.Sum(be32(uint32(want)), []byte{0, 17, 0xff, 0xff}); got != w {
			t.Fatalf("len %d init %#x: sum + terms %04x, reference %04x", n, init, got, w)
		}
	}
}

// TestUDP4ChecksumMatchesReference: the value UDP4Checksum stores verifies
// with the reference over the IPv4 pseudo header, and a zero sum is sent as 0xffff.
func TestUDP4ChecksumMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	for i := 0; i < 3000; i++ {
		ip := make([]byte, 20)
		for j := range ip {
			ip[j] = byte(rng.Uint32())
		}
		udp := make([]byte, 8+rng.IntN(1500))
		for j := range udp {
			udp[j] = byte(rng.Uint32())
		}
		if i%3 == 0 {
			for j := range udp {
				udp[j] = 0xff
			}
		}
		udp[6], udp[7] = 0, 0
		c := UDP4Checksum(ip, udp)
		binary.BigEndian.PutUint16(udp[6:], c)
		pseudo := append(append([]byte{}, ip[12:20]...), 0, 17, byte(len(udp)>>8), byte(len(udp)))
		if c == 0 || csumref.Sum(pseudo, udp) != 0xffff {
			t.Fatalf("UDP checksum %04x does not verify with the reference", c)
		}
		if UDP4Checksum(ip, udp) != 0 {
			t.Fatalf("UDP4Checksum does not report a valid checksum as 0")
		}
	}
}

func FuzzSum(f *testing.F) {
	f.Add(uint32(math.MaxUint32), bytes.Repeat([]byte{0xff}, 9))
	f.Fuzz(func(t *testing.T, init uint32, b []byte) {
		if got, want := Fold(Sum(init, b)), csumref.Sum(be32(init), b); got != want {
			t.Fatalf("Fold(Sum(%#x, %x)) = %04x, reference %04x", init, b, got, want)
		}
	})
}
