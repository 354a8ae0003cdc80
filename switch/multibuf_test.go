package vswitch

import (
	"bytes"
	"testing"

	"xswitch/flowtable"
	"xswitch/geneve"
	"xswitch/xsk"
)

// chain puts b into input frames as the kernel hands a multi-buffer frame
// over: pieces of at most piece bytes at rxOff, OptContinued on all but
// the last.
func (r *rig) chain(b []byte, piece int) []desc {
	var ds []desc
	for len(b) > 0 {
		m := min(piece, len(b))
		d := r.frame(b[:m])
		b = b[m:]
		if len(b) > 0 {
			d.Options = xsk.OptContinued
		}
		ds = append(ds, d)
	}
	return ds
}

// joined reassembles the frames of a transmit list: every descriptor stays
// inside its UMEM frame, and a chain ends with a descriptor without
// OptContinued.
func (r *rig) joined(t *testing.T, q []desc) [][]byte {
	t.Helper()
	var out [][]byte
	var cur []byte
	for _, d := range q {
		if d.Addr%testFrameSize < xsk.TxMetadataLen {
			t.Errorf("descriptor %#x leaves no TX metadata room in front", d.Addr)
		}
		cur = append(cur, r.bytes(d)...)
		if d.Options&xsk.OptContinued == 0 {
			out = append(out, cur)
			cur = nil
		}
	}
	if cur != nil {
		t.Errorf("transmit list ends inside a multi-buffer frame (%d bytes)", len(cur))
	}
	return out
}

// jumboRig is a rig whose tunnels carry jumbo frames (underlay MTU 9000).
func jumboRig(t *testing.T) *rig {
	r := newRig(t)
	r.c.mb = true
	for _, tn := range []*tunnel{r.t1, r.t2, r.other} {
		tn.maxInner = 9000 + 14 - tn.hdrLen
	}
	br := r.f.bridges[0]
	br.table.Learn(flowtable.MACFrom(macR), r.t1.dest, 1)
	br.table.Learn(flowtable.MACFrom(macB), r.b.dest, 1)
	return r
}

const kernelPiece = testFrameSize - rxOff

// TestForwardChain: multi-buffer frames from a local port to another, to a
// tunnel, from a tunnel, and flooded leave as chains (or one TAP write)
// with the bytes that came in; every frame is accounted for.
func TestForwardChain(t *testing.T) {
	r := jumboRig(t)
	big := eth(macB, macA, 8986) // 9000 bytes
	r.c.forward(r.a, r.chain(big, kernelPiece))
	if got := r.joined(t, r.c.pend[r.b.id]); len(got) != 1 || !bytes.Equal(got[0], big) {
		t.Errorf("local → local: %d frames out, want the 9000-byte frame", len(got))
	}
	if len(r.c.pend[r.b.id]) != 5 {
		t.Errorf("9000 bytes left in %d pieces, want 5 of at most %d", len(r.c.pend[r.b.id]), testFrameSize-chainOff)
	}
	r.checkFrames(t)

	r.reset()
	toR := eth(macR, macA, 8000)
	r.c.forward(r.a, r.chain(toR, kernelPiece))
	out := r.joined(t, r.c.pend[0])
	r.c.pend[0] = r.c.pend[0][:0]
	if len(out) != 1 {
		t.Fatalf("local → tunnel: %d frames on the underlay, want 1", len(out))
	}
	inner := decapInner(t, out[0], 5000)
	if !bytes.Equal(inner, toR) {
		t.Errorf("local → tunnel: the inner frame differs from the one sent")
	}
	if r.c.tctr[r.t1.id].txPackets != 1 || r.c.off[r.a.id].jumboRx != 2 || r.c.off[0].jumboTx != 1 {
		t.Errorf("counters: tunnel tx %d, jumbo rx on vm1 %d, jumbo tx on the underlay %d; want 1, 2, 1",
			r.c.tctr[r.t1.id].txPackets, r.c.off[r.a.id].jumboRx, r.c.off[0].jumboTx)
	}

	r.reset()
	toA := eth(macA, macR, 8900)
	r.c.forward(r.f.underlay, r.chain(geneveFrom(t, remote1, 5000, toA, nil, false), kernelPiece))
	if got := r.joined(t, r.c.pend[r.a.id]); len(got) != 1 || !bytes.Equal(got[0], toA) {
		t.Errorf("tunnel → local: %d frames out, want the inner frame", len(got))
	}
	r.checkFrames(t)

	r.reset()
	r.tapRead0()
	bc := eth(bcast, macA, 7000)
	r.c.forward(r.a, r.chain(bc, kernelPiece))
	if got := r.joined(t, r.c.pend[r.b.id]); len(got) != 1 || !bytes.Equal(got[0], bc) {
		t.Errorf("flood: vm2 got %d frames, want the broadcast", len(got))
	}
	for _, f := range r.joined(t, r.c.pend[0]) {
		if !bytes.Equal(decapInner(t, f, 5000), bc) {
			t.Errorf("flood: a tunnel copy differs from the broadcast")
		}
	}
	if n := len(r.joined(t, r.c.pend[0])); n != 2 {
		t.Errorf("flood: %d tunnel copies, want 2", n)
	}
	if got := r.tapRead(); len(got) != 1 || !bytes.Equal(got[0], bc) {
		t.Errorf("flood: the internal port got %d frames, want the broadcast", len(got))
	}
	r.checkFrames(t)
}

// decapInner decodes a Geneve frame and returns its inner frame.
func decapInner(t *testing.T, b []byte, vni uint32) []byte {
	t.Helper()
	var dec geneve.Decoded
	if drop := geneve.Decap(b, &dec); drop != geneve.DropNone {
		t.Fatalf("output does not decode: %v", drop)
	}
	if dec.VNI != vni {
		t.Errorf("VNI %d, want %d", dec.VNI, vni)
	}
	return b[dec.InnerOff : dec.InnerOff+dec.InnerLen]
}

// TestForwardChainDrops: a chain cut short, one with a descriptor past its
// frame and one longer than the jumbo buffer are counted drops that give
// every frame back; a jumbo frame too big for the tunnel is too_big on it.
func TestForwardChainDrops(t *testing.T) {
	r := jumboRig(t)
	cut := r.chain(eth(macB, macA, 5000), kernelPiece)
	r.c.forward(r.a, cut[:2])
	r.held = append(r.held, cut[2].Addr) // never handed to forward
	if r.drops(r.a, dropRunt) != 1 {
		t.Errorf("a chain cut short: runt %d, want 1", r.drops(r.a, dropRunt))
	}
	r.checkFrames(t)

	r.reset()
	past := r.chain(eth(macB, macA, 5000), kernelPiece)
	past[1].Len = testFrameSize // past the end of its frame
	r.c.forward(r.a, past)
	if r.drops(r.a, dropRunt) != 2 {
		t.Errorf("a piece past its frame: runt %d, want 2", r.drops(r.a, dropRunt))
	}
	r.checkFrames(t)

	r.reset()
	r.c.forward(r.a, r.chain(eth(macB, macA, jumboLen), kernelPiece))
	if r.drops(r.a, dropTooBig) != 1 {
		t.Errorf("a frame longer than the jumbo buffer: too_big %d, want 1", r.drops(r.a, dropTooBig))
	}
	r.checkFrames(t)

	r.reset()
	r.t1.maxInner = 1514 - r.t1.hdrLen + 14
	r.c.forward(r.a, r.chain(eth(macR, macA, 3000), kernelPiece))
	if r.c.tctr[r.t1.id].drops[dropTooBig] != 1 || len(r.c.pend[0]) != 0 {
		t.Errorf("jumbo to a 1500-byte tunnel: too_big %d, %d descriptors queued", r.c.tctr[r.t1.id].drops[dropTooBig], len(r.c.pend[0]))
	}
	r.checkFrames(t)

	r.reset()
	r.fillQueue(r.b)
	r.c.forward(r.a, r.chain(eth(macB, macA, 5000), kernelPiece))
	if r.drops(r.b, dropTxFull) != 1 {
		t.Errorf("no room for the chain on vm2: tx_full %d, want 1", r.drops(r.b, dropTxFull))
	}
	r.checkFrames(t)
}

// TestForwardChainAllocs: jumbo frames cost no allocation after the first
// (the jumbo buffer is made once per core).
func TestForwardChainAllocs(t *testing.T) {
	r := jumboRig(t)
	ds := r.chain(eth(macR, macA, 8000), kernelPiece) // forward only reads them
	allocs := testing.AllocsPerRun(100, func() {
		r.reset()
		r.c.forward(r.a, ds)
	})
	if allocs != 0 {
		t.Errorf("a jumbo frame costs %.1f allocations", allocs)
	}
}
