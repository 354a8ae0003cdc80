package offload

import (
	"math/rand/v2"
	"testing"
)

// Benchmarks for the hot-path calls. Run with -benchmem: every one must show
// 0 allocs/op.

func BenchmarkIsPartial(b *testing.B) {
	rng := rand.New(rand.NewPCG(41, 42))
	for _, v6 := range []bool{false, true} {
		p := randPkt(rng, protoTCP, v6, 0)
		p.vlans, p.ipOpts, p.payload = nil, nil, make([]byte, 1400)
		frame := p.build(refPartial)
		b.Run(map[bool]string{false: "ipv4", true: "ipv6"}[v6], func(b *testing.B) {
			for b.Loop() {
				if _, ok := IsPartial(frame); !ok {
					b.Fatal("not partial")
				}
			}
		})
	}
}

func BenchmarkCompleteL4(b *testing.B) {
	rng := rand.New(rand.NewPCG(43, 44))
	p := randPkt(rng, protoTCP, false, 0)
	p.vlans, p.ipOpts, p.payload = nil, nil, make([]byte, 1500-20-20-len(p.tcpOpts))
	frame := p.build(refPartial)
	c, _ := IsPartial(frame)
	b.SetBytes(int64(c.End - c.Start))
	for b.Loop() {
		CompleteL4(frame, c)
	}
}

// BenchmarkSegment: one 64 KiB TSO frame into 1400-byte-payload segments.
func BenchmarkSegment(b *testing.B) {
	rng := rand.New(rand.NewPCG(45, 46))
	for _, mode := range []CsumMode{CsumFull, CsumPartial} {
		p := randPkt(rng, protoTCP, false, 0)
		p.vlans, p.ipOpts, p.tcpOpts = nil, nil, nil
		p.payload = make([]byte, 0xffff-40)
		frame := p.build(refPartial)
		h := gsoHdr(rng, &p, frame, 1400)
		var s Segmenter
		buf := make([]byte, 2048)
		b.Run(map[CsumMode]string{CsumFull: "full", CsumPartial: "partial"}[mode], func(b *testing.B) {
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				n, _ := s.Start(h, frame, 0, mode)
				for range n {
					s.Next(buf)
				}
			}
		})
	}
}

// BenchmarkCoalesce: a burst of 44 full-size segments of one flow into one
// 64 KB frame.
func BenchmarkCoalesce(b *testing.B) {
	burst := segmentsForBench(b, 44)
	c := newTestCoalescer(b, 4)
	out := make([]CoalesceOut, len(burst))
	total := 0
	for _, f := range burst {
		total += len(f)
	}
	b.SetBytes(int64(total))
	for b.Loop() {
		if c.Coalesce(burst, out) != 1 {
			b.Fatal("not merged")
		}
	}
}
