package vswitch

import (
	"encoding/binary"
	"testing"

	"xswitch/flowtable"
	"xswitch/geneve"
	"xswitch/internal/csumref"
	"xswitch/offload"
)

// tcpFrame builds Ethernet/IPv4/TCP from src to dst with seq and payload
// bytes; partial leaves the pseudo-header sum in the checksum field, as a
// veth with TX checksum offload does, otherwise the checksum is complete.
func tcpFrame(dst, src []byte, seq uint32, payload int, partial bool) []byte {
	f := make([]byte, 14+20+20+payload)
	copy(f, dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(ip[2:], uint16(40+payload))
	binary.BigEndian.PutUint16(ip[4:], 7) // a fixed ID with DF, as Linux may send
	ip[6] = 0x40                          // DF
	copy(ip[12:], []byte{198, 19, 0, 11})
	copy(ip[16:], []byte{198, 19, 0, 1})
	binary.BigEndian.PutUint16(ip[10:], ^csumref.Sum(ip))
	tcp := f[34:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], 1)
	tcp[12], tcp[13] = 5<<4, 0x10 // ACK
	binary.BigEndian.PutUint16(tcp[14:], 512)
	for i := 20; i < len(tcp); i++ {
		tcp[i] = byte(seq + uint32(i))
	}
	pseudo := tcpPseudo(f)
	if partial {
		binary.BigEndian.PutUint16(tcp[16:], pseudo)
	} else {
		binary.BigEndian.PutUint16(tcp[16:], ^csumref.Sum(append(pseudoBytes(f), tcp...)))
	}
	return f
}

// pseudoBytes is the IPv4 TCP pseudo-header of f.
func pseudoBytes(f []byte) []byte {
	ip := f[14:34]
	p := append([]byte{}, ip[12:20]...)
	p = append(p, 0, 6)
	return binary.BigEndian.AppendUint16(p, uint16(len(f)-34))
}

func tcpPseudo(f []byte) uint16 { return csumref.Sum(pseudoBytes(f)) }

// tcpValid checks f's TCP checksum against the reference.
func tcpValid(f []byte) bool {
	return csumref.Sum(append(pseudoBytes(f), f[34:]...)) == 0xffff
}

// TestPartialChecksumFinished: a TCP frame whose checksum its sender left
// partial leaves xswitch complete toward another local port and toward a
// tunnel, and the port counts it; a complete one is left alone.
func TestPartialChecksumFinished(t *testing.T) {
	r := newRig(t)
	br := r.f.bridges[0]
	br.table.Learn(flowtable.MACFrom(macB), r.b.dest, 1)
	br.table.Learn(flowtable.MACFrom(macR), r.t1.dest, 1)

	r.c.forward(r.a, []desc{r.frame(tcpFrame(macB, macA, 1000, 1000, true))})
	if q := r.c.pend[r.b.id]; len(q) != 1 || !tcpValid(r.bytes(q[0])) {
		t.Fatalf("vm2 got %d frames or a TCP checksum that does not verify", len(q))
	}
	r.reset()
	r.c.forward(r.a, []desc{r.frame(tcpFrame(macR, macA, 2000, 1200, true))})
	_, _, inners := r.decapOut()
	if len(inners) != 1 || !tcpValid(inners[0]) {
		t.Fatalf("tunnel got %d frames or a TCP checksum that does not verify", len(inners))
	}
	r.reset()
	full := tcpFrame(macB, macA, 3000, 100, false)
	r.c.forward(r.a, []desc{r.frame(full)})
	if q := r.c.pend[r.b.id]; len(q) != 1 || string(r.bytes(q[0])) != string(full) {
		t.Fatal("a frame with a complete checksum was changed")
	}
	if n := r.c.off[r.a.id].csumDone; n != 2 {
		t.Errorf("checksums completed on vm1 = %d, want 2", n)
	}
	r.reset()
	r.checkFrames(t)
}

// TestPartialChecksumFlood: flooded, a partial frame reaches the internal
// port as it is with NEEDS_CSUM at the TCP checksum (the kernel finishes
// it), and every other port and tunnel complete.
func TestPartialChecksumFlood(t *testing.T) {
	r := newRig(t)
	unknown := []byte{2, 0, 0, 0, 7, 7}
	in := tcpFrame(unknown, macA, 1, 500, true)
	r.c.forward(r.a, []desc{r.frame(in)})
	hdrs, frames := r.tapReadHdrs()
	if len(frames) != 1 || string(frames[0]) != string(in) {
		t.Fatalf("internal port got %d frames, want the partial frame unchanged", len(frames))
	}
	if h := hdrs[0]; h.Flags != offload.FlagNeedsCsum || h.CsumStart != 34 || h.CsumOffset != 16 {
		t.Errorf("internal port header %+v, want NEEDS_CSUM at 34+16", h)
	}
	if q := r.c.pend[r.b.id]; len(q) != 1 || !tcpValid(r.bytes(q[0])) {
		t.Error("vm2's copy does not verify")
	}
	_, _, inners := r.decapOut()
	for i, f := range inners {
		if !tcpValid(f) {
			t.Errorf("tunnel copy %d does not verify", i)
		}
	}
	if len(inners) != 2 {
		t.Errorf("%d tunnel copies, want 2", len(inners))
	}
	r.reset()
	r.checkFrames(t)
}

// TestTAPCoalesce: consecutive segments of one TCP flow toward the
// internal port in one burst reach it as one large frame with a GSO
// header; the port counts the merge; frames are freed.
func TestTAPCoalesce(t *testing.T) {
	r := newRig(t)
	macI := []byte{2, 0, 0, 0, 9, 9}
	r.f.bridges[0].table.Learn(flowtable.MACFrom(macI), r.internal.dest, 1)
	const segs, pay = 8, 1400
	var descs []desc
	var want []byte
	for i := 0; i < segs; i++ {
		f := tcpFrame(macI, macA, uint32(1+i*pay), pay, i%2 == 0)
		want = append(want, f[54:]...)
		descs = append(descs, r.frame(f))
	}
	free := len(r.c.free)
	r.c.forward(r.a, descs)
	hdrs, frames := r.tapReadHdrs()
	if len(frames) != 1 {
		t.Fatalf("internal port got %d frames, want 1 merged", len(frames))
	}
	h, f := hdrs[0], frames[0]
	if h.GSOType != offload.GSOTCPv4 || h.GSOSize != pay || h.Flags != offload.FlagNeedsCsum {
		t.Errorf("merged header %+v, want TCPV4, gso_size %d, NEEDS_CSUM", h, pay)
	}
	if string(f[54:]) != string(want) || int(binary.BigEndian.Uint16(f[16:])) != len(f)-14 {
		t.Errorf("merged frame of %d bytes does not carry the segments' payload in order", len(f))
	}
	if o := r.c.off[r.internal.id]; o.groFrames != 1 || o.groSegs != segs {
		t.Errorf("gro counters %+v, want 1 frame of %d", o, segs)
	}
	if len(r.c.free) != free+segs {
		t.Errorf("free frames %d -> %d, want all %d segments freed", free, len(r.c.free), segs)
	}
	r.checkFrames(t)
}

// TestTAPSegment: a 64 KB TCP frame the host stack hands to the internal
// port (GSO header) is cut into frames of at most the port's maxFrame, in
// UMEM frames, which then cross the tunnel with valid checksums and
// consecutive sequence numbers. A header that does not fit its frame is a
// counted drop.
func TestTAPSegment(t *testing.T) {
	r := newRig(t)
	r.internal.maxFrame = 1450 + geneve.EthLen
	macI := []byte{2, 0, 0, 0, 9, 9}
	r.f.bridges[0].table.Learn(flowtable.MACFrom(macR), r.t1.dest, 1)
	tp := &tapPoller{port: r.internal, core: r.c, batch: make([]desc, 0, maxBurst)}
	const pay = 60000
	big := tcpFrame(macR, macI, 7, pay, true)
	h := offload.VnetHdr{Flags: offload.FlagNeedsCsum, GSOType: offload.GSOTCPv4, HdrLen: 54, GSOSize: 1398,
		CsumStart: 34, CsumOffset: 16}
	b := make([]byte, offload.VnetHdrLen+len(big))
	_ = h.Encode(b)
	copy(b[offload.VnetHdrLen:], big)
	tp.segment(b)
	n := len(tp.batch)
	if want := (pay + 1397) / 1398; n != want {
		t.Fatalf("%d segments, want %d", n, want)
	}
	r.c.forward(r.internal, tp.batch)
	_, _, inners := r.decapOut()
	if len(inners) != n {
		t.Fatalf("%d frames reached the tunnel, want %d", len(inners), n)
	}
	var got []byte
	seq := uint32(7)
	for i, f := range inners {
		if len(f) > r.internal.maxFrame || !tcpValid(f) || binary.BigEndian.Uint32(f[38:]) != seq {
			t.Fatalf("segment %d: %d bytes, valid %v, seq %d want %d", i, len(f), tcpValid(f), binary.BigEndian.Uint32(f[38:]), seq)
		}
		seq += uint32(len(f) - 54)
		got = append(got, f[54:]...)
	}
	if string(got) != string(big[54:]) {
		t.Error("the segments do not carry the large frame's payload")
	}
	if o := r.c.off[r.internal.id]; o.tsoFrames != 1 || int(o.tsoSegs) != n {
		t.Errorf("tso counters %+v", o)
	}
	// gso_type TCPV6 on an IPv4 frame: a bad header, counted, nothing sent.
	tp.batch = tp.batch[:0]
	b[1] = offload.GSOTCPv6
	tp.segment(b)
	if len(tp.batch) != 0 || r.drops(r.internal, dropVnetHeader) != 1 {
		t.Errorf("bad virtio-net header: %d frames, %d drops", len(tp.batch), r.drops(r.internal, dropVnetHeader))
	}
	tp.segment(b[:5]) // shorter than the header
	if r.drops(r.internal, dropVnetHeader) != 2 {
		t.Error("a read shorter than the virtio-net header is not counted")
	}
}

// TestTAPPathNoAllocs: partial checksums, coalescing toward the internal
// port and segmentation from it allocate nothing per burst.
func TestTAPPathNoAllocs(t *testing.T) {
	r := newRig(t)
	macI := []byte{2, 0, 0, 0, 9, 9}
	br := r.f.bridges[0]
	br.table.Learn(flowtable.MACFrom(macI), r.internal.dest, 1)
	br.table.Learn(flowtable.MACFrom(macR), r.t1.dest, 1)
	var frames [][]byte
	for i := 0; i < 16; i++ {
		frames = append(frames, tcpFrame(macI, macA, uint32(1+i*1000), 1000, true))
	}
	descs := make([]desc, len(frames))
	allocs := testing.AllocsPerRun(50, func() {
		r.reset()
		for i, f := range frames {
			descs[i] = r.frame(f)
		}
		r.c.forward(r.a, descs)
		r.c.flushTAPs()
		r.tapRead0()
	})
	if allocs != 0 {
		t.Errorf("forward + flushTAPs: %.1f allocations per burst, want 0", allocs)
	}
}
