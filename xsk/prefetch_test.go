package xsk

import (
	"math"
	"testing"
)

// TestPrefetch: a hint that never faults, even for descriptors far outside
// the UMEM or after Close, and never allocates.
func TestPrefetch(t *testing.T) {
	u, err := NewUmem(UmemConfig{NumFrames: 64})
	if err != nil {
		t.Fatal(err)
	}
	descs := []Desc{{Addr: 0, Len: 60}, {Addr: 2048 + 256, Len: 60}, {Addr: uint64(len(u.Area())) - 1}, // in the UMEM
		{Addr: uint64(len(u.Area()))}, {Addr: 1 << 40}, {Addr: math.MaxUint64}} // outside
	descs = append(descs, Desc{Addr: 100, Len: 1514}, Desc{Addr: 1 << 40, Len: 1 << 31}) // spans
	u.Prefetch(nil)
	u.PrefetchPackets(nil)
	u.Prefetch(descs)
	u.PrefetchPackets(descs)
	if a := testing.AllocsPerRun(100, func() { u.Prefetch(descs); u.PrefetchPackets(descs) }); a != 0 {
		t.Errorf("Prefetch allocates %.1f times per call", a)
	}
	// The frames are untouched.
	for _, d := range descs[:3] {
		if b := u.Area()[d.Addr]; b != 0 {
			t.Errorf("byte at %d is %d after Prefetch", d.Addr, b)
		}
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	u.Prefetch(descs)
	u.PrefetchPackets(descs)
}

func BenchmarkPrefetch(b *testing.B) {
	u, err := NewUmem(UmemConfig{NumFrames: 4096})
	if err != nil {
		b.Fatal(err)
	}
	defer u.Close()
	descs := make([]Desc, 64)
	for i := range descs {
		descs[i] = Desc{Addr: uint64(i*2048 + 256), Len: 60}
	}
	b.Run("headers", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			u.Prefetch(descs)
		}
	})
	for i := range descs {
		descs[i].Len = 1514
	}
	b.Run("packets-1514B", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			u.PrefetchPackets(descs)
		}
	})
}
