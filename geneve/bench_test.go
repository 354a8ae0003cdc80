package geneve

import (
	"math/rand/v2"
	"testing"
)

// Benchmarks on a 64-byte-payload inner frame (inner Ethernet/IPv4/UDP, 106
// bytes), the small-packet case that decides packet rate. The peer measured
// in the same run is BenchmarkCopyHeader: a bare copy of the header template,
// the floor any encapsulation has to pay.

func benchFrame(b *testing.B, v6 bool) (*Encapsulator, []byte, int) {
	c := testConfig(v6)
	e := mustEncap(b, c)
	inner := innerFrame(rand.New(rand.NewPCG(1, 2)), false, 64)
	buf := make([]byte, 256+len(inner))
	copy(buf[256:], inner)
	return e, buf, len(inner)
}

func benchEncap(b *testing.B, v6, csum bool) {
	c := testConfig(v6)
	c.IPv4UDPChecksum, c.IPv6UDPChecksum = csum, csum
	e := mustEncap(b, c)
	inner := innerFrame(rand.New(rand.NewPCG(1, 2)), false, 64)
	buf := make([]byte, 256+len(inner))
	copy(buf[256:], inner)
	b.ReportAllocs()
	b.SetBytes(int64(len(inner)))
	for b.Loop() {
		e.Encap(buf, 256, len(inner))
	}
}

func BenchmarkEncap(b *testing.B) {
	b.Run("IPv4", func(b *testing.B) { benchEncap(b, false, false) })            // default: UDP checksum zero
	b.Run("IPv4UDPChecksum", func(b *testing.B) { benchEncap(b, false, true) })  // optional
	b.Run("IPv6", func(b *testing.B) { benchEncap(b, true, true) })              // default: UDP checksum computed
	b.Run("IPv6ZeroChecksum", func(b *testing.B) { benchEncap(b, true, false) }) // RFC 6935 zero checksum
}

func BenchmarkEncapHash(b *testing.B) { // flow hash supplied by the caller
	e, buf, n := benchFrame(b, false)
	b.ReportAllocs()
	for b.Loop() {
		e.EncapHash(buf, 256, n, 0x12345678)
	}
}

func BenchmarkInnerHash(b *testing.B) {
	inner := innerFrame(rand.New(rand.NewPCG(1, 2)), false, 64)
	b.ReportAllocs()
	var s uint32
	for b.Loop() {
		s += InnerHash(inner)
	}
	_ = s
}

func BenchmarkCopyHeader(b *testing.B) {
	e, buf, _ := benchFrame(b, false)
	b.ReportAllocs()
	for b.Loop() {
		copy(buf[256-e.hlen:256], e.hdr[:e.hlen])
	}
}

func benchDecap(b *testing.B, v6 bool, opts bool) {
	c := testConfig(v6)
	if opts {
		c.Options = []Option{{Class: 0x0102, Type: 0x80, Data: make([]byte, 8)}}
	}
	e := mustEncap(b, c)
	inner := innerFrame(rand.New(rand.NewPCG(1, 2)), false, 64)
	buf := make([]byte, 256+len(inner))
	copy(buf[256:], inner)
	f := buf[e.Encap(buf, 256, len(inner)):]
	var known KnownOptions
	known.Add(0x0102, 0x80)
	var d Decoded
	b.ReportAllocs()
	for b.Loop() {
		if Decap(f, &d) != DropNone {
			b.Fatal("drop")
		}
		if opts && d.Critical && CheckOptions(f[d.OptOff:d.OptOff+d.OptLen], &known) != DropNone {
			b.Fatal("option drop")
		}
	}
}

func BenchmarkDecap(b *testing.B) {
	b.Run("IPv4", func(b *testing.B) { benchDecap(b, false, false) })
	b.Run("IPv6", func(b *testing.B) { benchDecap(b, true, false) })
	b.Run("IPv4CriticalOption", func(b *testing.B) { benchDecap(b, false, true) }) // Decap + CheckOptions
}

func BenchmarkOptionIter(b *testing.B) {
	var opts []byte
	for i := 0; i < 4; i++ {
		opts, _ = AppendOption(opts, Option{Class: uint16(i), Type: uint8(i), Data: make([]byte, 4)})
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		it := Options(opts).Iter()
		for o, ok := it.Next(); ok; o, ok = it.Next() {
			n += len(o.Data)
		}
	}
	_ = n
}

// BenchmarkIPv4HeaderChecksum is the cost Decap pays to verify the outer IPv4
// header checksum (the difference between Decap/IPv4 and Decap/IPv6 is mostly this).
func BenchmarkIPv4HeaderChecksum(b *testing.B) {
	e, buf, n := benchFrame(b, false)
	f := buf[e.Encap(buf, 256, n):]
	ok := 0
	for b.Loop() {
		if ipv4Checksum20OK(f[EthLen:]) {
			ok++
		}
	}
	if ok == 0 {
		b.Fatal("checksum does not verify")
	}
}
