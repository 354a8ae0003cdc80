package csum

import (
	"math/rand/v2"
	"testing"

	"xswitch/internal/csumref"
)

// TestRFC1071Example: the worked example of RFC 1071 section 3.
func TestRFC1071Example(t *testing.T) {
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := Fold(Sum(0, b)); got != 0xddf2 || csumref.Sum(b) != 0xddf2 {
		t.Fatalf("sum %#04x, reference %#04x, want 0xddf2", got, csumref.Sum(b))
	}
}

// TestSumAgainstReference: random data of every length up to 9000 bytes,
// all-ones data, at odd memory offsets, with starting sums near 2^64.
func TestSumAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 9001)
	for n := 0; n <= 9000; n += 1 + rng.IntN(37) {
		for _, ones := range []bool{false, true} {
			b := buf[1 : 1+n] // odd address
			for i := range b {
				b[i] = byte(rng.Uint32())
				if ones {
					b[i] = 0xff
				}
			}
			start := ^uint64(0) - uint64(rng.IntN(1<<18))
			want := csumref.Sum(append(sumBytesOf(start), b...))
			if got := Fold(Sum(start, b)); got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
				t.Fatalf("n=%d ones=%v start=%#x: %#04x, reference %#04x", n, ones, start, got, want)
			}
		}
	}
}

// sumBytesOf is a byte string whose reference sum equals s's (s folded, as
// 16-bit words).
func sumBytesOf(s uint64) []byte {
	f := Fold(s)
	return []byte{byte(f >> 8), byte(f)}
}

// TestFinish: zero is stored as all ones; otherwise the complement.
func TestFinish(t *testing.T) {
	if Finish(0xffff) != 0xffff {
		t.Error("a sum of 0xffff must be stored as 0xffff, not 0")
	}
	if Finish(0x1234) != ^uint16(0x1234) {
		t.Error("Finish is not the complement")
	}
}

// TestAddCarry: the carry out of bit 63 comes back in.
func TestAddCarry(t *testing.T) {
	if got := AddCarry(^uint64(0), 2); got != 2 {
		t.Errorf("AddCarry(2^64-1, 2) = %d, want 2", got)
	}
}

func FuzzSum(f *testing.F) {
	f.Add(uint64(0), []byte{1, 2, 3})
	f.Add(^uint64(0), []byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, start uint64, b []byte) {
		want := csumref.Sum(append(sumBytesOf(start), b...))
		got := Fold(Sum(start, b))
		if got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
			t.Fatalf("start %#x len %d: %#04x, reference %#04x", start, len(b), got, want)
		}
	})
}
