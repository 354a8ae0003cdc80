package offload

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// fuzzSeeds: valid frames of every kind, so that the fuzzer starts from
// inputs that reach deep into the parsers.
func fuzzSeeds() [][]byte {
	rng := rand.New(rand.NewPCG(31, 32))
	var seeds [][]byte
	for i := range 8 {
		proto := []uint8{protoTCP, protoUDP}[i%2]
		p := randPkt(rng, proto, i%4 >= 2, 3000)
		seeds = append(seeds, p.build(refCsumKind(i)))
	}
	return seeds
}

func refCsumKind(i int) csumKind { return csumKind(i / 4 % 2) }

// FuzzSegment: any virtio-net header, frame and maxLen: Start/Next never
// panic, write only inside the buffers given (slices with capped capacity),
// never modify the input, and every segment they produce from a TCP/UDP
// frame has valid checksums and carries the input's payload in order.
func FuzzSegment(f *testing.F) {
	rng := rand.New(rand.NewPCG(33, 34))
	for i, fr := range fuzzSeeds() {
		p, _ := ParseFrame(fr)
		h := VnetHdr{Flags: FlagNeedsCsum, GSOType: []uint8{GSOTCPv4, GSOUDPL4, GSOTCPv6, GSOUDPL4}[i%4],
			GSOSize: uint16(1 + rng.IntN(1500)), CsumStart: uint16(p.L4), CsumOffset: uint16(p.CsumOffset())}
		var hb [VnetHdrLen]byte
		h.Encode(hb[:])
		f.Add(hb[:], fr, uint16(rng.IntN(2000)), i%2 == 0)
	}
	var s Segmenter
	arena := make([]byte, 2*MaxFrameLen)
	f.Fuzz(func(t *testing.T, hb, frame []byte, maxLen uint16, partial bool) {
		h, err := DecodeVnetHdr(hb)
		if err != nil {
			return
		}
		in := bytes.Clone(frame)
		mode := CsumFull
		if partial {
			mode = CsumPartial
		}
		n, r := s.Start(h, frame, int(maxLen), mode)
		if r != DropNone {
			if n != 0 {
				t.Fatalf("Start dropped (%v) but returned %d segments", r, n)
			}
			return
		}
		split := s.kind == segSplit
		var payload []byte
		for i := 0; i < n; i++ {
			want := s.Len(i)
			dst := arena[:want:want]
			m, r := s.Next(dst)
			if r != DropNone || m != want {
				t.Fatalf("segment %d: %d, %v (Len %d)", i, m, r, want)
			}
			seg := dst[:m]
			if !split {
				continue
			}
			if mode == CsumPartial {
				c, ok := s.Csum()
				if !ok {
					t.Fatal("partial mode reports no checksum")
				}
				CompleteL4(seg, c)
			}
			if err := refVerify(seg); err != nil {
				t.Fatalf("segment %d of %d: %v", i, n, err)
			}
			sf, r := ParseFrame(seg)
			if r != DropNone {
				t.Fatalf("segment %d does not parse: %v", i, r)
			}
			payload = append(payload, seg[sf.Payload:sf.End]...)
		}
		if !bytes.Equal(frame, in) {
			t.Fatal("the input frame was modified")
		}
		if split {
			if inF, _ := ParseFrame(frame); !bytes.Equal(payload, frame[inF.Payload:inF.End]) {
				t.Fatal("the segments' payload differs from the input's")
			}
		}
	})
}

// FuzzCoalesce: any burst (frames cut from the input by 2-byte lengths):
// no panic, inputs untouched, every burst frame in exactly one output, and
// merged frames valid once finished and re-segmented into Count segments.
func FuzzCoalesce(f *testing.F) {
	join := func(frames ...[]byte) []byte {
		var b []byte
		for _, fr := range frames {
			b = binary.BigEndian.AppendUint16(b, uint16(len(fr)))
			b = append(b, fr...)
		}
		return b
	}
	segs := segmentsForBench(f, 4)
	f.Add(join(segs...))
	f.Add(join(append(fuzzSeeds(), segs...)...))
	c := newTestCoalescer(f, 2)
	out := make([]CoalesceOut, 64)
	burst := make([][]byte, 0, 64)
	var s Segmenter
	f.Fuzz(func(t *testing.T, data []byte) {
		burst = burst[:0]
		for len(data) >= 2 && len(burst) < cap(burst) {
			n := min(int(binary.BigEndian.Uint16(data)), len(data)-2)
			burst = append(burst, data[2:2+n:2+n])
			data = data[2+n:]
		}
		in := bytes.Clone(bytes.Join(burst, nil))
		n := c.Coalesce(burst, out)
		total := 0
		for _, o := range out[:n] {
			total += o.Count
			if o.Count == 1 {
				if len(o.Frame) != len(burst[o.Index]) {
					t.Fatal("pass-through frame is not the burst frame")
				}
				continue
			}
			fr := bytes.Clone(o.Frame)
			CompleteL4(fr, o.Hdr.Csum(fr))
			if err := refVerify(fr); err != nil {
				t.Fatalf("merged frame: %v", err)
			}
			k, r := s.Start(o.Hdr, o.Frame, 0, CsumFull)
			if r != DropNone || k != o.Count {
				t.Fatalf("merged frame of %d re-segments into %d (%v)", o.Count, k, r)
			}
		}
		if total != len(burst) {
			t.Fatalf("outputs hold %d frames, burst %d", total, len(burst))
		}
		if !bytes.Equal(bytes.Join(burst, nil), in) {
			t.Fatal("burst modified")
		}
	})
}

// FuzzPartial: IsPartial/Complete never panic; a completed frame verifies;
// completing twice changes nothing; the header round-trips.
func FuzzPartial(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		if h, err := DecodeVnetHdr(frame); err == nil {
			var b [VnetHdrLen]byte
			if h.Encode(b[:]) != nil || !bytes.Equal(b[:], frame[:VnetHdrLen]) {
				t.Fatal("virtio-net header does not round-trip")
			}
		}
		c, ok := IsPartial(frame)
		if !ok {
			return
		}
		if c.Start < 0 || c.End > len(frame) || c.Start+c.Offset+2 > c.End {
			t.Fatalf("checksum position %+v outside the %d-byte frame", c, len(frame))
		}
		CompleteL4(frame, c)
		if err := refVerifyL4(frame); err != nil {
			t.Fatal(err)
		}
		once := bytes.Clone(frame)
		Complete(frame)
		if !bytes.Equal(frame, once) {
			t.Fatal("completing a completed frame changed it")
		}
	})
}
