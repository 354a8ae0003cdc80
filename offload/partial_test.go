package offload

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"xswitch/csum"
	"xswitch/internal/csumref"
)

func TestChecksumAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, rng.IntN(3000))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if rng.IntN(4) == 0 { // long runs of 0xff stress the carries
			for i := range b {
				b[i] = 0xff
			}
		}
		start := uint64(rng.Uint32())
		want := csumref.Sum(append(binary.BigEndian.AppendUint32(nil, uint32(start)), b...))
		if got := csum.Fold(csum.Sum(start, b)); got != want && !(got == 0xffff && want == 0) {
			t.Fatalf("len %d: sum %#04x, reference %#04x", len(b), got, want)
		}
	}
}

// TestPartialRoundTrip: a frame built with the partial value is detected,
// completed to the reference checksum; a complete frame is left unchanged
// by Complete, whether or not it happens to look partial.
func TestPartialRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 3000 {
		proto := uint8(protoTCP)
		if i%2 == 1 {
			proto = protoUDP
		}
		p := randPkt(rng, proto, rng.IntN(2) == 0, 2000)
		full, partial := p.build(refFull), p.build(refPartial)
		c, ok := IsPartial(partial)
		if !ok {
			t.Fatalf("pkt %d: partial frame not detected", i)
		}
		if c.End != len(partial) || c.Offset != map[uint8]int{protoTCP: 16, protoUDP: 6}[proto] {
			t.Fatalf("pkt %d: csum %+v, frame %d bytes", i, c, len(partial))
		}
		CompleteL4(partial, c)
		if !bytes.Equal(partial, full) {
			t.Fatalf("pkt %d: completed frame differs from the reference", i)
		}
		before := bytes.Clone(full)
		Complete(full)
		if !bytes.Equal(full, before) {
			t.Fatalf("pkt %d: Complete changed a complete frame", i)
		}
	}
}

// TestCompleteFrameThatLooksPartial builds frames whose correct checksum
// equals the pseudo-header sum (by choosing two payload bytes) and checks
// that completing them changes nothing: the detection is safe.
func TestCompleteFrameThatLooksPartial(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	checked := 0
	defer func() {
		if checked < 190 {
			t.Errorf("only %d of 200 frames had a checksum equal to the pseudo sum", checked)
		}
	}()
	for i := range 200 {
		p := randPkt(rng, uint8([]int{protoTCP, protoUDP}[i%2]), i%4 < 2, 300)
		p.payload = append(p.payload, 0, 0)
		if len(p.payload)%2 == 1 {
			p.payload = append(p.payload, 0)
		}
		full := p.build(refFull)
		f, _ := ParseFrame(full)
		ps := csum.Fold(f.pseudoSum(full, f.L4Len()))
		// Want field == ps and the sum verifying: adjust the last payload word.
		field := binary.BigEndian.Uint16(full[f.L4+f.CsumOffset():])
		w := binary.BigEndian.Uint16(full[f.End-2:])
		// new word w' with field' = ps: sum changes by (w'-w) so field' = field - (w'-w)
		nw := uint32(w) + uint32(field) + 0xffff - uint32(ps) // one's complement arithmetic
		for nw > 0xffff {
			nw = nw&0xffff + nw>>16
		}
		binary.BigEndian.PutUint16(p.payload[len(p.payload)-2:], uint16(nw))
		full = p.build(refFull)
		if refVerify(full) != nil {
			t.Fatal("reference frame does not verify")
		}
		if binary.BigEndian.Uint16(full[f.L4+f.CsumOffset():]) != ps {
			continue // the 0/0xffff ambiguity; rare
		}
		checked++
		before := bytes.Clone(full)
		if !Complete(full) {
			t.Fatalf("frame %d: field equals the pseudo sum but IsPartial said no", i)
		}
		if !bytes.Equal(full, before) {
			t.Fatalf("frame %d: a complete checksum equal to the pseudo sum was changed", i)
		}
	}
}

func TestIsPartialRejects(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	p := randPkt(rng, protoUDP, false, 100)
	p.vlans = nil
	b := p.build(refPartial)
	// IPv4 UDP with no checksum is never partial (the pseudo sum never folds to 0).
	nochk := bytes.Clone(b)
	binary.BigEndian.PutUint16(nochk[14+20+len(p.ipOpts)+6:], 0)
	if _, ok := IsPartial(nochk); ok {
		t.Fatal("UDP checksum 0 taken for partial")
	}
	ulen := bytes.Clone(b) // found by FuzzPartial: UDP length disagreeing with IP
	ulen[14+20+len(p.ipOpts)+5]++
	if _, ok := IsPartial(ulen); ok {
		t.Fatal("UDP whose length differs from the IP payload taken for partial")
	}
	frag := bytes.Clone(b)
	frag[14+6] |= 0x20 // MF
	if _, ok := IsPartial(frag); ok {
		t.Fatal("IPv4 fragment taken for partial")
	}
	for n := range len(b) {
		if _, ok := IsPartial(b[:n]); ok {
			t.Fatalf("truncated frame (%d of %d bytes) taken for partial", n, len(b))
		}
	}
	if _, ok := IsPartial(b); !ok {
		t.Fatal("the untouched frame is not detected")
	}
}

func TestPartialNoAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	p := randPkt(rng, protoTCP, true, 1400)
	b := p.build(refPartial)
	if a := testing.AllocsPerRun(100, func() {
		c, ok := IsPartial(b)
		if ok {
			CompleteL4(b, c)
		}
		Complete(b)
	}); a != 0 {
		t.Fatalf("%v allocations per frame", a)
	}
}
