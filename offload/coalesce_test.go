package offload

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

func newTestCoalescer(t testing.TB, nbuf int) *Coalescer {
	bufs := make([][]byte, nbuf)
	for i := range bufs {
		bufs[i] = make([]byte, VnetHdrLen+MaxFrameLen)
	}
	c, err := NewCoalescer(bufs, VnetHdrLen)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// mergeablePkt is a random TCP packet that GRO may merge: flags ACK, maybe
// PSH, no IPv4 options.
func mergeablePkt(rng *rand.Rand, v6 bool, maxPay int) refPkt {
	p := randPkt(rng, protoTCP, v6, maxPay)
	p.ipOpts = nil
	if len(p.payload) > p.maxPayload() {
		p.payload = p.payload[:p.maxPayload()]
	}
	if rng.IntN(2) == 0 {
		p.flags |= tcpFlagPSH
	}
	return p
}

// TestCoalesceSegmentRoundTrip: coalesce(segment(x)) == x and
// segment(coalesce(segment(x))) == segment(x), on random TCP streams over
// IPv4 and IPv6, with VLAN tags and TCP options.
func TestCoalesceSegmentRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	c := newTestCoalescer(t, 1)
	var s Segmenter
	out := make([]CoalesceOut, 400)
	for i := range 400 {
		p := mergeablePkt(rng, i%2 == 0, []int{100, 5000, 70000}[rng.IntN(3)])
		fixedID := !p.v6 && rng.IntN(4) == 0
		if fixedID {
			p.df = true
		}
		x := p.build(refPartial)
		mss := 1 + rng.IntN(9000)
		if mss*300 < len(p.payload) {
			mss = len(p.payload)/300 + 1
		}
		segs, _, r := segmentAll(t, &s, gsoHdr(rng, &p, x, mss), x, 0, CsumFull)
		if r != DropNone {
			t.Fatal(r)
		}
		if fixedID {
			for _, sg := range segs {
				f, _ := ParseFrame(sg)
				binary.BigEndian.PutUint16(sg[f.L3+4:], p.id)
				setIPv4Checksum(sg[f.L3:f.L4])
			}
		}
		n := c.Coalesce(segs, out)
		if n != 1 {
			t.Fatalf("case %d: %d segments (mss %d, payload %d) gave %d frames, want 1", i, len(segs), mss, len(p.payload), n)
		}
		o := out[0]
		if len(segs) == 1 {
			if o.Count != 1 || &o.Frame[0] != &segs[0][0] || o.Hdr != (VnetHdr{Flags: FlagDataValid}) {
				t.Fatalf("case %d: single segment not passed through as valid: %+v", i, o.Hdr)
			}
			continue
		}
		f, _ := ParseFrame(x)
		wantHdr := VnetHdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv4, HdrLen: uint16(f.Payload), GSOSize: uint16(mss),
			CsumStart: uint16(f.L4), CsumOffset: 16}
		if p.v6 {
			wantHdr.GSOType = GSOTCPv6
		}
		if o.Count != len(segs) || o.Hdr != wantHdr {
			t.Fatalf("case %d: count %d of %d, hdr %+v, want %+v", i, o.Count, len(segs), o.Hdr, wantHdr)
		}
		if !bytes.Equal(o.Frame, x) {
			t.Fatalf("case %d: merged frame (partial checksum) differs from the original", i)
		}
		again, _, r := segmentAll(t, &s, o.Hdr, o.Frame, 0, CsumFull)
		if r != DropNone || len(again) != len(segs) {
			t.Fatalf("case %d: re-segmenting: %v, %d segments", i, r, len(again))
		}
		for k := range segs {
			if !fixedID && !bytes.Equal(again[k], segs[k]) {
				t.Fatalf("case %d: re-segmented segment %d differs", i, k)
			}
		}
		CompleteL4(o.Frame, o.Hdr.Csum(o.Frame))
		if !bytes.Equal(o.Frame, p.build(refFull)) {
			t.Fatalf("case %d: completed merged frame differs from the reference", i)
		}
	}
}

// flowOf identifies a test flow by its source port.
func flowOf(b []byte) (uint16, []byte, bool) {
	f, r := ParseFrame(b)
	if r != DropNone || f.Proto != protoTCP {
		return 0, nil, false
	}
	return binary.BigEndian.Uint16(b[f.L4:]), b[f.Payload:f.End], true
}

// TestCoalesceInterleaved: several flows interleaved with noise (UDP, junk,
// pure ACKs, corrupted segments, partial ones). Per flow, the payload bytes
// that come out, in output order, equal those that went in; every merged
// frame's checksum verifies once finished; no corrupted frame is merged;
// every pass-through header says what the frame's checksum is.
func TestCoalesceInterleaved(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	c := newTestCoalescer(t, 16)
	var s Segmenter
	out := make([]CoalesceOut, 256)
	merged, badSeen := 0, 0
	for iter := range 300 {
		var burst [][]byte
		bad := map[*byte]bool{} // corrupted frames
		nflows := 1 + rng.IntN(6)
		streams := make([][][]byte, nflows)
		for fl := range nflows {
			p := mergeablePkt(rng, rng.IntN(2) == 0, 20000)
			p.sport = uint16(1000 + fl)
			mss := 500 + rng.IntN(1500)
			for _, sp := range refSegment(p, mss) {
				kind := refFull
				if rng.IntN(4) == 0 {
					kind = refPartial
				}
				b := sp.build(kind)
				if kind == refFull && rng.IntN(40) == 0 && len(sp.payload) > 0 { // (a partial one cannot be checked)
					b[len(b)-1] ^= 0x5a // corrupt: must pass through unmerged
					bad[&b[0]] = true
				}
				streams[fl] = append(streams[fl], b)
			}
			if rng.IntN(3) == 0 { // a pure ACK of the same flow in the middle
				a := p
				a.payload, a.flags = nil, tcpFlagACK
				at := rng.IntN(len(streams[fl]) + 1)
				streams[fl] = append(streams[fl][:at], append([][]byte{a.build(refFull)}, streams[fl][at:]...)...)
			}
		}
		// Interleave, keeping each flow's order, and add noise.
		next := make([]int, nflows)
		badIdx := map[int]bool{}
		for {
			fl := rng.IntN(nflows)
			if next[fl] == len(streams[fl]) {
				done := true
				for f := range nflows {
					done = done && next[f] == len(streams[f])
				}
				if done {
					break
				}
				continue
			}
			if bad[&streams[fl][next[fl]][0]] {
				badIdx[len(burst)] = true
			}
			burst = append(burst, streams[fl][next[fl]])
			next[fl]++
			if rng.IntN(10) == 0 {
				u := randPkt(rng, protoUDP, rng.IntN(2) == 0, 300)
				burst = append(burst, u.build(refFull))
			}
			if rng.IntN(20) == 0 {
				burst = append(burst, []byte{1, 2, 3})
			}
		}
		if len(burst) > len(out) {
			burst = burst[:len(out)]
		}
		copies := make([][]byte, len(burst))
		for i, b := range burst {
			copies[i] = bytes.Clone(b)
		}
		n := c.Coalesce(burst, out)

		total, last := 0, -1
		gotStream := map[uint16][]byte{}
		for _, o := range out[:n] {
			if o.Index <= last {
				t.Fatalf("iter %d: outputs out of order", iter)
			}
			last = o.Index
			total += o.Count
			if o.Count == 1 {
				checkPassHdr(t, o, burst[o.Index])
			} else {
				merged++
				fr := bytes.Clone(o.Frame)
				CompleteL4(fr, o.Hdr.Csum(fr))
				if err := refVerify(fr); err != nil {
					t.Fatalf("iter %d: merged frame: %v", iter, err)
				}
				segs, _, r := segmentAll(t, &s, o.Hdr, o.Frame, 0, CsumFull)
				if r != DropNone || len(segs) != o.Count {
					t.Fatalf("iter %d: re-segmenting a merged frame: %v, %d of %d", iter, r, len(segs), o.Count)
				}
			}
			if port, pay, ok := flowOf(o.Frame); ok {
				gotStream[port] = append(gotStream[port], pay...)
			}
		}
		if total != len(burst) {
			t.Fatalf("iter %d: outputs hold %d frames, burst had %d", iter, total, len(burst))
		}
		wantStream := map[uint16][]byte{}
		for i, b := range burst {
			if !bytes.Equal(b, copies[i]) {
				t.Fatalf("iter %d: input frame %d modified", iter, i)
			}
			if port, pay, ok := flowOf(b); ok {
				wantStream[port] = append(wantStream[port], pay...)
			}
			if badIdx[i] {
				badSeen++
				found := false
				for _, o := range out[:n] {
					found = found || (o.Index == i && o.Count == 1)
				}
				if !found {
					t.Fatalf("iter %d: corrupted frame %d not passed through alone", iter, i)
				}
			}
		}
		for port, w := range wantStream {
			if !bytes.Equal(gotStream[port], w) {
				t.Fatalf("iter %d: flow %d: %d bytes out, %d in, or reordered", iter, port, len(gotStream[port]), len(w))
			}
		}
	}
	if merged < 300 || badSeen < 20 {
		t.Fatalf("only %d merged frames and %d corrupted ones in 300 bursts", merged, badSeen)
	}
}

// checkPassHdr: a frame passed through carries DATA_VALID when its TCP/UDP
// checksum verifies, NEEDS_CSUM when it is partial, nothing otherwise.
func checkPassHdr(t *testing.T, o CoalesceOut, b []byte) {
	t.Helper()
	if &o.Frame[0] != &b[0] || len(o.Frame) != len(b) {
		t.Fatal("pass-through frame is not the burst frame")
	}
	want := VnetHdr{}
	if f, r := ParseFrame(b); r == DropNone {
		if c, ok := IsPartial(b); ok {
			want = VnetHdr{Flags: FlagNeedsCsum, CsumStart: uint16(c.Start), CsumOffset: uint16(c.Offset)}
		} else if refVerify(b) == nil && !(f.Proto == protoUDP && !f.IPv6 && b[f.L4+6] == 0 && b[f.L4+7] == 0) {
			want = VnetHdr{Flags: FlagDataValid}
		}
	}
	if o.Hdr != want {
		t.Fatalf("pass-through header %+v, want %+v", o.Hdr, want)
	}
}

// TestCoalesceRules: two (or three) segments that differ in one field the
// kernel's GRO compares are not merged; fields it ignores do not prevent it.
func TestCoalesceRules(t *testing.T) {
	rng := rand.New(rand.NewPCG(25, 26))
	base4 := mergeablePkt(rng, false, 0)
	base4.flags, base4.df, base4.vlans = tcpFlagACK, false, nil
	base4.payload = make([]byte, 1000)
	base6 := base4
	base6.v6, base6.src, base6.dst = true, bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 16)
	two := func(p refPkt, mod func(*refPkt)) [][]byte {
		a := p
		b := p
		b.seq, b.id = p.seq+uint32(len(p.payload)), p.id+1
		mod(&b)
		return [][]byte{a.build(refFull), b.build(refFull)}
	}
	cases := []struct {
		name  string
		base  refPkt
		mod   func(*refPkt)
		merge bool
	}{
		{"same", base4, func(*refPkt) {}, true},
		{"same v6", base6, func(*refPkt) {}, true},
		{"window differs (kept from the first, as Linux)", base4, func(p *refPkt) { p.window++ }, true},
		{"psh on second", base4, func(p *refPkt) { p.flags |= tcpFlagPSH }, true},
		{"shorter second", base4, func(p *refPkt) { p.payload = p.payload[:10] }, true},
		{"fixed id with DF", base4, func(p *refPkt) {}, true}, // see below
		{"ttl", base4, func(p *refPkt) { p.ttl++ }, false},
		{"tos", base4, func(p *refPkt) { p.tos ^= 4 }, false},
		{"df", base4, func(p *refPkt) { p.df = true }, false},
		{"id jump", base4, func(p *refPkt) { p.id += 5 }, false},
		{"ack number", base4, func(p *refPkt) { p.ack++ }, false},
		{"options", base4, func(p *refPkt) { p.tcpOpts = append([]byte{1, 1, 1, 1}, p.tcpOpts...) }, false},
		{"seq gap", base4, func(p *refPkt) { p.seq++ }, false},
		{"longer second", base4, func(p *refPkt) { p.payload = make([]byte, 1001) }, false},
		{"empty second", base4, func(p *refPkt) { p.payload = nil }, false},
		{"fin", base4, func(p *refPkt) { p.flags |= tcpFlagFIN }, false},
		{"syn", base4, func(p *refPkt) { p.flags |= tcpFlagSYN }, false},
		{"rst", base4, func(p *refPkt) { p.flags |= tcpFlagRST }, false},
		{"urg", base4, func(p *refPkt) { p.flags |= tcpFlagURG }, false},
		{"ece", base4, func(p *refPkt) { p.flags |= tcpFlagECE }, false},
		{"cwr", base4, func(p *refPkt) { p.flags |= tcpFlagCWR }, false},
		{"no ack", base4, func(p *refPkt) { p.flags = tcpFlagPSH }, false},
		{"vlan", base4, func(p *refPkt) { p.vlans = []uint32{0x81000005} }, false},
		{"mac", base4, func(p *refPkt) { p.dstMAC[0]++ }, false},
		{"ip options", base4, func(p *refPkt) { p.ipOpts = []byte{1, 1, 1, 0} }, false},
		{"hop limit", base6, func(p *refPkt) { p.ttl++ }, false},
		{"traffic class", base6, func(p *refPkt) { p.tos++ }, false},
		{"flow label", base6, func(p *refPkt) { p.flowLabel ^= 1 }, false},
		{"other port (another flow)", base4, func(p *refPkt) { p.dport++ }, false},
	}
	c := newTestCoalescer(t, 2)
	out := make([]CoalesceOut, 4)
	for _, tc := range cases {
		burst := two(tc.base, tc.mod)
		if tc.name == "fixed id with DF" {
			p := tc.base
			p.df = true
			q := p
			q.seq = p.seq + uint32(len(p.payload))
			burst = [][]byte{p.build(refFull), q.build(refFull)}
		}
		n := c.Coalesce(burst, out)
		if got := n == 1; got != tc.merge {
			t.Errorf("%s: merged = %v, want %v", tc.name, got, tc.merge)
		}
	}
	// Corrupted second segment: passed through without DATA_VALID.
	burst := two(base4, func(*refPkt) {})
	burst[1][len(burst[1])-1] ^= 1
	if n := c.Coalesce(burst, out); n != 2 || out[1].Hdr.Flags != 0 {
		t.Errorf("corrupted segment: %d frames, flags %d", n, out[1].Hdr.Flags)
	}
	// Nothing follows PSH or a short segment.
	for _, mod := range []func(*refPkt){
		func(p *refPkt) { p.flags |= tcpFlagPSH },
		func(p *refPkt) { p.payload = p.payload[:10] },
	} {
		b := two(base4, mod)
		q := base4
		q.seq, q.id = base4.seq+uint32(len(base4.payload))+uint32(len(b[1])-len(b[0])+1000), base4.id+2
		b = append(b, q.build(refFull))
		if n := c.Coalesce(b, out); n != 2 || out[0].Count != 2 {
			t.Errorf("a segment after PSH/short was merged: %d frames", n)
		}
	}
	// Corrupted IPv4 header checksum, every field equal: not merged (the
	// kernel drops it when passed through).
	burst = two(base4, func(*refPkt) {})
	burst[1][14+10] ^= 0x40
	if n := c.Coalesce(burst, out); n != 2 {
		t.Errorf("segment with a bad IPv4 header checksum merged")
	}
	// No buffer: frames pass through.
	nobuf, _ := NewCoalescer(nil, 0)
	if n := nobuf.Coalesce(two(base4, func(*refPkt) {}), out); n != 2 || nobuf.Stats.NoBuffer != 1 {
		t.Errorf("without buffers: %d frames, NoBuffer %d", n, nobuf.Stats.NoBuffer)
	}
}

func TestNewCoalescerRefusesShortBuffers(t *testing.T) {
	if _, err := NewCoalescer([][]byte{make([]byte, MaxFrameLen)}, 10); err == nil {
		t.Fatal("a buffer without room for headroom+MaxFrameLen was accepted")
	}
}

func TestCoalesceNoAllocs(t *testing.T) {
	burst := segmentsForBench(t, 44)
	c := newTestCoalescer(t, 4)
	out := make([]CoalesceOut, len(burst))
	if a := testing.AllocsPerRun(50, func() { c.Coalesce(burst, out) }); a != 0 {
		t.Fatalf("%v allocations per burst", a)
	}
	if n := c.Coalesce(burst, out); n != 1 || out[0].Count != 44 {
		t.Fatalf("44 segments gave %d frames (first holds %d)", n, out[0].Count)
	}
}

// segmentsForBench: n full-size segments (1448 payload + timestamps) of one
// IPv4 flow, as a Linux sender produces them.
func segmentsForBench(t testing.TB, n int) [][]byte {
	rng := rand.New(rand.NewPCG(27, 28))
	p := mergeablePkt(rng, false, 0)
	p.flags, p.vlans, p.tcpOpts = tcpFlagACK, nil, []byte{1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8}
	p.payload = make([]byte, 1448*n)
	var out [][]byte
	for _, s := range refSegment(p, 1448) {
		out = append(out, s.build(refFull))
	}
	return out
}
