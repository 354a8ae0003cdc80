package offload

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// gsoHdr is the header Linux writes for p built partial: NEEDS_CSUM at the
// L4 checksum, the GSO type of p, and a random hdr_len (not to be trusted).
func gsoHdr(rng *rand.Rand, p *refPkt, frame []byte, gsoSize int) VnetHdr {
	f, r := ParseFrame(frame)
	if r != DropNone {
		panic(r.String())
	}
	h := VnetHdr{Flags: FlagNeedsCsum, GSOSize: uint16(gsoSize), CsumStart: uint16(f.L4),
		CsumOffset: uint16(f.CsumOffset()), HdrLen: uint16(rng.IntN(len(frame) + 1))}
	switch {
	case p.proto == protoUDP:
		h.GSOType = GSOUDPL4
	case p.v6:
		h.GSOType = GSOTCPv6
	default:
		h.GSOType = GSOTCPv4
	}
	if p.proto == protoTCP && p.flags&tcpFlagCWR != 0 {
		h.GSOType |= GSOECN
	}
	return h
}

func headersLen(p *refPkt) int {
	n := 14 + 4*len(p.vlans) + p.l4HeaderLen()
	if p.v6 {
		return n + 40
	}
	return n + 20 + len(p.ipOpts)
}

// segmentAll runs the Segmenter and returns copies of the segments (and, in
// CsumPartial mode, their reported checksum positions).
func segmentAll(t *testing.T, s *Segmenter, h VnetHdr, frame []byte, maxLen int, mode CsumMode) ([][]byte, []L4Csum, DropReason) {
	t.Helper()
	n, r := s.Start(h, frame, maxLen, mode)
	if r != DropNone {
		return nil, nil, r
	}
	var out [][]byte
	var cs []L4Csum
	buf := make([]byte, 70000)
	for i := 0; i < n; i++ {
		m, r := s.Next(buf)
		if r != DropNone || m != s.Len(i) {
			t.Fatalf("segment %d: Next = %d, %v; Len = %d", i, m, r, s.Len(i))
		}
		out = append(out, bytes.Clone(buf[:m]))
		c, _ := s.Csum()
		cs = append(cs, c)
	}
	if m, _ := s.Next(buf); m != 0 {
		t.Fatalf("Next after the last segment wrote %d bytes", m)
	}
	return out, cs, DropNone
}

// TestSegmentMatchesReference: random TCP/UDP streams over IPv4/IPv6, with
// and without VLAN tags, options, flags, gso_size and maxLen; every segment
// equals the reference's byte for byte, and all checksums verify.
func TestSegmentMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	var s Segmenter
	for i := range 600 {
		proto := uint8(protoTCP)
		if i%3 == 2 {
			proto = protoUDP
		}
		p := randPkt(rng, proto, rng.IntN(2) == 0, []int{200, 5000, 70000}[rng.IntN(3)])
		if proto == protoTCP {
			p.flags |= uint8(rng.IntN(256)) & (tcpFlagPSH | tcpFlagFIN | tcpFlagCWR | tcpFlagECE)
		}
		in := p.build(refPartial)
		inCopy := bytes.Clone(in)
		gso := 1 + rng.IntN(9000)
		if gso*300 < len(p.payload) { // keep the reference fast: at most ~300 segments
			gso = len(p.payload)/300 + 1
		}
		h := gsoHdr(rng, &p, in, gso)
		maxLen := 0
		if rng.IntN(2) == 0 {
			maxLen = headersLen(&p) + 1 + rng.IntN(9000)
		}
		mss := gso
		if maxLen > 0 {
			mss = min(gso, maxLen-headersLen(&p))
		}
		mode := CsumMode(rng.IntN(2))
		got, cs, r := segmentAll(t, &s, h, in, maxLen, mode)
		if r != DropNone {
			t.Fatalf("case %d: %v", i, r)
		}
		want := refSegment(p, mss)
		if len(got) != len(want) {
			t.Fatalf("case %d: %d segments, reference %d (payload %d, mss %d)", i, len(got), len(want), len(p.payload), mss)
		}
		for k := range want {
			kind := refFull
			if mode == CsumPartial {
				kind = refPartial
			}
			if w := want[k].build(kind); !bytes.Equal(got[k], w) {
				t.Fatalf("case %d segment %d/%d differs from the reference\n got %x\nwant %x", i, k, len(want), got[k][:min(80, len(got[k]))], w[:min(80, len(w))])
			}
			if mode == CsumPartial {
				CompleteL4(got[k], cs[k])
			}
			if err := refVerify(got[k]); err != nil {
				t.Fatalf("case %d segment %d: %v", i, k, err)
			}
			if maxLen > 0 && len(got[k]) > maxLen {
				t.Fatalf("case %d segment %d: %d bytes > maxLen %d", i, k, len(got[k]), maxLen)
			}
		}
		if !bytes.Equal(in, inCopy) {
			t.Fatalf("case %d: the input frame was modified", i)
		}
	}
}

// TestSegmentWithoutGSO: a frame without GSO is copied whole (its NEEDS_CSUM
// checksum finished), or, for TCP longer than maxLen, cut like TSO.
func TestSegmentWithoutGSO(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	var s Segmenter
	for i := range 300 {
		proto := uint8(protoTCP)
		if i%2 == 1 {
			proto = protoUDP
		}
		p := randPkt(rng, proto, i%4 < 2, 3000)
		in := p.build(refPartial)
		f, _ := ParseFrame(in)
		h := VnetHdr{Flags: FlagNeedsCsum, CsumStart: uint16(f.L4), CsumOffset: uint16(f.CsumOffset())}
		maxLen := 0
		if rng.IntN(2) == 0 {
			maxLen = headersLen(&p) + 1 + rng.IntN(1500)
		}
		got, _, r := segmentAll(t, &s, h, in, maxLen, CsumFull)
		if r != DropNone {
			t.Fatalf("case %d: %v", i, r)
		}
		var want []refPkt
		if proto == protoTCP && maxLen > 0 && len(in) > maxLen {
			want = refSegment(p, maxLen-headersLen(&p))
		} else {
			want = []refPkt{p}
		}
		if len(got) != len(want) {
			t.Fatalf("case %d: %d segments, want %d", i, len(got), len(want))
		}
		for k := range want {
			if !bytes.Equal(got[k], want[k].build(refFull)) {
				t.Fatalf("case %d segment %d differs from the reference", i, k)
			}
		}
	}
}

func TestSegmentValidate(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	tcp4 := randPkt(rng, protoTCP, false, 3000)
	tcp4.vlans, tcp4.ipOpts, tcp4.payload = nil, nil, make([]byte, 3000)
	tcp6 := tcp4
	tcp6.v6, tcp6.src, tcp6.dst = true, make([]byte, 16), make([]byte, 16)
	udp4 := tcp4
	udp4.proto, udp4.tcpOpts = protoUDP, nil
	f4, f6, fu := tcp4.build(refPartial), tcp6.build(refPartial), udp4.build(refPartial)
	ok4 := gsoHdr(rng, &tcp4, f4, 1000)
	ok4.HdrLen = 0
	syn := bytes.Clone(f4)
	syn[34+13] |= tcpFlagSYN
	cases := []struct {
		name  string
		h     VnetHdr
		frame []byte
		want  DropReason
	}{
		{"ok", ok4, f4, DropNone},
		{"rsc flag", VnetHdr{Flags: FlagRSCInfo}, f4, DropVnetFlags},
		{"ufo", VnetHdr{GSOType: GSOUDP, GSOSize: 100}, fu, DropVnetGSOType},
		{"unknown gso", VnetHdr{GSOType: 7, GSOSize: 100}, f4, DropVnetGSOType},
		{"ecn on udp", VnetHdr{GSOType: GSOUDPL4 | GSOECN, GSOSize: 100}, fu, DropVnetGSOType},
		{"ecn alone", VnetHdr{GSOType: GSOECN, GSOSize: 100}, f4, DropVnetGSOType},
		{"gso size 0", VnetHdr{GSOType: GSOTCPv4}, f4, DropVnetGSOSize},
		{"tcpv4 on ipv6", VnetHdr{GSOType: GSOTCPv4, GSOSize: 100}, f6, DropVnetGSOProto},
		{"tcpv6 on ipv4", VnetHdr{GSOType: GSOTCPv6, GSOSize: 100}, f4, DropVnetGSOProto},
		{"udp_l4 on tcp", VnetHdr{GSOType: GSOUDPL4, GSOSize: 100}, f4, DropVnetGSOProto},
		{"tcpv4 on udp", VnetHdr{GSOType: GSOTCPv4, GSOSize: 100}, fu, DropVnetGSOProto},
		{"csum_start wrong", VnetHdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv4, GSOSize: 100, CsumStart: 14, CsumOffset: 16}, f4, DropVnetCsum},
		{"csum_offset wrong", VnetHdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv4, GSOSize: 100, CsumStart: 34, CsumOffset: 6}, f4, DropVnetCsum},
		{"csum outside frame", VnetHdr{Flags: FlagNeedsCsum, CsumStart: uint16(len(f4) - 1)}, f4, DropVnetCsum},
		{"csum offset outside frame", VnetHdr{Flags: FlagNeedsCsum, CsumStart: 34, CsumOffset: 0xffff}, f4, DropVnetCsum},
		{"hdr_len beyond frame", VnetHdr{HdrLen: uint16(len(f4) + 1)}, f4, DropVnetHdrLen},
		{"syn in gso", VnetHdr{GSOType: GSOTCPv4, GSOSize: 100}, syn, DropVnetGSOFlags},
		{"gso on truncated frame", VnetHdr{GSOType: GSOTCPv4, GSOSize: 100}, f4[:40], DropBadIPLength},
		{"gso on truncated ip header", VnetHdr{GSOType: GSOTCPv4, GSOSize: 100}, f4[:30], DropTooShort},
		{"gso on non-ip", VnetHdr{GSOType: GSOTCPv4, GSOSize: 100}, make([]byte, 60), DropNotIP},
	}
	var s Segmenter
	for _, c := range cases {
		if _, r := c.h.Validate(c.frame); r != c.want {
			t.Errorf("%s: Validate = %v, want %v", c.name, r, c.want)
		}
		if _, r := s.Start(c.h, c.frame, 0, CsumFull); r != c.want {
			t.Errorf("%s: Start = %v, want %v", c.name, r, c.want)
		}
	}
	if _, r := s.Start(ok4, f4, headersLen(&tcp4), CsumFull); r != DropMTUTooSmall {
		t.Errorf("maxLen below the headers: %v, want %v", r, DropMTUTooSmall)
	}
}

func TestSegmentShortBuffer(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	p := randPkt(rng, protoTCP, false, 10)
	p.payload = make([]byte, 3000)
	in := p.build(refPartial)
	var s Segmenter
	n, r := s.Start(gsoHdr(rng, &p, in, 1000), in, 0, CsumFull)
	if n != 3 || r != DropNone {
		t.Fatalf("Start = %d, %v", n, r)
	}
	arena := make([]byte, 4000)
	short := arena[: s.Len(0)-1 : s.Len(0)-1]
	if m, r := s.Next(short); m != 0 || r != DropBufferTooSmall {
		t.Fatalf("short buffer: %d, %v", m, r)
	}
	for _, c := range arena {
		if c != 0 {
			t.Fatal("a refused Next wrote into the buffer")
		}
	}
	if m, r := s.Next(arena); m != s.Len(0) || r != DropNone {
		t.Fatalf("retry: %d, %v", m, r)
	}
}

func TestSegmentNoAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	p := randPkt(rng, protoTCP, true, 10)
	p.payload = make([]byte, 60000)
	in := p.build(refPartial)
	h := gsoHdr(rng, &p, in, 1400)
	var s Segmenter
	buf := make([]byte, 2048)
	if a := testing.AllocsPerRun(20, func() {
		n, _ := s.Start(h, in, 1500, CsumFull)
		for range n {
			s.Next(buf)
		}
	}); a != 0 {
		t.Fatalf("%v allocations per frame", a)
	}
}
