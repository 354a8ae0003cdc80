package geneve

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"

	"xswitch/internal/csumref"
)

// deviceChecksum does what a NIC (or Linux's skb_checksum_help) does for a
// checksum offload request: the ones' complement of the sum from start to
// the packet's end (the field holds the pseudo-header sum), 0 stored as
// 0xffff, at start+offset. Plain reference arithmetic (rfc1071Sum).
func deviceChecksum(pkt []byte, start, offset int) {
	c := ^csumref.Sum(pkt[start:])
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(pkt[start+offset:], c)
}

// encapBoth encapsulates inner with EncapHash and with EncapPartial plus
// the device's completion, and fails t unless both give the same bytes.
func encapBoth(t *testing.T, e *Encapsulator, inner []byte, hash uint32) {
	t.Helper()
	h := e.HeaderLen()
	a := make([]byte, h+len(inner))
	b := make([]byte, h+len(inner))
	copy(a[h:], inner)
	copy(b[h:], inner)
	sa := e.EncapHash(a, h, len(inner), hash)
	sb := e.EncapPartial(b, h, len(inner), hash)
	if sa != sb {
		t.Fatalf("start %d vs %d", sa, sb)
	}
	cs, co, ok := e.UDPChecksumAt()
	if cs != e.udpOff || co != 6 || ok != e.udpCsum {
		t.Fatalf("UDPChecksumAt() = %d, %d, %v", cs, co, ok)
	}
	if ok {
		deviceChecksum(b[sb:], cs, co)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("EncapPartial + device checksum differs from EncapHash:\n%x\n%x", a[:h], b[:h])
	}
	checkEncapChecksums(t, e, b[sb:])
}

// TestEncapPartialMatchesSoftware: for random tunnels (IPv4 and IPv6,
// random addresses, options, checksums on or off, template sums steered
// near 2^64) and random inner frames, EncapPartial followed by the
// device's checksum gives exactly EncapHash's bytes.
func TestEncapPartialMatchesSoftware(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 21))
	for i := 0; i < 1000; i++ {
		v6 := i%2 == 0
		c := testConfig(v6)
		if !randomAddrs(rng, &c, v6) {
			continue
		}
		c.IPv4UDPChecksum, c.IPv6UDPChecksum = rng.IntN(4) != 0, rng.IntN(4) != 0
		c.VNI = rng.Uint32() & 0xffffff
		c.Options = []Option{{Class: uint16(rng.Uint32()), Type: uint8(rng.Uint32()), Data: randomBytes(rng, 4)}}
		if i%4 < 2 {
			steerTemplateSum(t, &c, math.MaxUint64-rng.Uint64N(1<<18))
		}
		e := mustEncap(t, c)
		for k := 0; k < 4; k++ {
			inner := randomBytes(rng, EthLen+rng.IntN(1500))
			if k == 0 {
				inner = innerFrame(rng, rng.IntN(2) == 0, rng.IntN(1400))
			}
			encapBoth(t, e, inner, rng.Uint32())
		}
	}
}

// TestEncapPartialNoAlloc: the offload variant allocates nothing.
func TestEncapPartialNoAlloc(t *testing.T) {
	e := mustEncap(t, testConfig(true))
	buf := make([]byte, 2048)
	if n := testing.AllocsPerRun(100, func() { e.EncapPartial(buf, 256, 1400, 7) }); n != 0 {
		t.Errorf("EncapPartial: %v allocations", n)
	}
}

func FuzzEncapPartial(f *testing.F) {
	f.Add(append(netip.MustParseAddr("2001:db8::1").AsSlice(), netip.MustParseAddr("2001:db8::75:0:1").AsSlice()...),
		[]byte{0xbd, 0xfd, 0x67, 0x01, 0xff, 0xec, 0x77, 0xe8}, true, uint32(0), make([]byte, 60))
	f.Add([]byte{198, 18, 0, 1, 198, 18, 0, 2}, []byte{}, true, uint32(5), bytes.Repeat([]byte{0xff}, 61))
	f.Fuzz(func(t *testing.T, addrs, opts []byte, csum bool, hash uint32, inner []byte) {
		if len(inner) < EthLen || len(inner) > 9000 {
			return
		}
		c := fuzzConfig(addrs, opts)
		c.IPv4UDPChecksum, c.IPv6UDPChecksum = csum, csum
		e, err := NewEncapsulator(c)
		if err != nil {
			return
		}
		encapBoth(t, e, inner, hash)
	})
}
