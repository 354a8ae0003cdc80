package vswitch

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"

	"xswitch/flowtable"
)

// TestCaptureRing: one producer writes frames of random lengths (cut at
// the snap length) while one consumer drains: every frame is delivered in
// order with its bytes, direction and length, or counted lost; none is
// both, none is missing.
func TestCaptureRing(t *testing.T) {
	const frames, snap = 20000, 1000
	r := newCaptureRing(1 << 14)
	rng := rand.New(rand.NewPCG(1, 2))
	lens := make([]int, frames)
	for i := range lens {
		lens[i] = 4 + rng.IntN(1600)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		b := make([]byte, 2000)
		for i, n := range lens {
			binary.LittleEndian.PutUint32(b, uint32(i))
			for j := 4; j < n; j++ {
				b[j] = byte(i + j)
			}
			r.put(b[:n], i%3 == 0, snap)
		}
	}()
	next, got := 0, 0
	check := func(fs []CapturedFrame) {
		for _, f := range fs {
			i := int(binary.LittleEndian.Uint32(f.Data))
			if i < next {
				t.Fatalf("frame %d after %d", i, next)
			}
			next = i + 1
			got++
			if f.OrigLen != lens[i] || len(f.Data) != min(lens[i], snap) || f.Outbound != (i%3 == 0) || f.Time == 0 {
				t.Fatalf("frame %d: len %d/%d out %v, want %d/%d %v", i, len(f.Data), f.OrigLen, f.Outbound, min(lens[i], snap), lens[i], i%3 == 0)
			}
			for j := 4; j < len(f.Data); j++ {
				if f.Data[j] != byte(i+j) {
					t.Fatalf("frame %d: byte %d is %d", i, j, f.Data[j])
				}
			}
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var fs []CapturedFrame
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		var tail uint64
		fs, tail = r.peek(fs[:0])
		check(fs)
		r.commit(tail)
	}
	fs, tail := r.peek(fs[:0])
	check(fs)
	r.commit(tail)
	lost := int(r.lost.Load())
	if got+lost != frames {
		t.Fatalf("delivered %d + lost %d != %d written", got, lost, frames)
	}
	if got == 0 {
		t.Fatalf("nothing delivered")
	}
	t.Logf("delivered %d, lost %d", got, lost)
}

// TestCaptureRingFull: a ring nobody drains keeps what fits and counts the
// rest as lost; after a drain there is room again.
func TestCaptureRingFull(t *testing.T) {
	r := newCaptureRing(4096)
	f := make([]byte, 100) // 16 + 100 -> 120 bytes a record
	for i := 0; i < 100; i++ {
		r.put(f, false, MaxSnaplen)
	}
	fs, tail := r.peek(nil)
	if len(fs) != 4096/120 || int(r.lost.Load()) != 100-len(fs) {
		t.Fatalf("kept %d, lost %d", len(fs), r.lost.Load())
	}
	r.commit(tail)
	r.put(f, true, MaxSnaplen)
	if fs, _ = r.peek(nil); len(fs) != 1 || !fs[0].Outbound {
		t.Fatalf("after a drain: %d frames", len(fs))
	}
}

// capTap installs a capture on the rig's core for the given ports and
// tunnels.
func (r *rig) capTap(ports []*port, tuns []*tunnel) *captureRing {
	ring := newCaptureRing(1 << 16)
	tap := &captureTap{snap: MaxSnaplen, rings: []coreRing{{c: r.c, r: ring}}}
	for _, p := range ports {
		p.capture.Store(tap)
	}
	for _, tn := range tuns {
		tn.capture.Store(tap)
	}
	r.t.Cleanup(func() {
		for _, p := range ports {
			p.capture.Store(nil)
		}
		for _, tn := range tuns {
			tn.capture.Store(nil)
		}
	})
	return ring
}

func drained(ring *captureRing) []CapturedFrame {
	fs, tail := ring.peek(nil)
	for i := range fs {
		fs[i].Data = bytes.Clone(fs[i].Data)
	}
	ring.commit(tail)
	return fs
}

// TestCaptureHooks: a capture on a local port sees what it receives; on
// tunnel:REMOTE the inner frames both ways; on the internal port what is
// written to it; a trace of a frame is not captured.
func TestCaptureHooks(t *testing.T) {
	r := newRig(t)
	r.f.bridges[0].table.Learn(flowtable.MACFrom(macR), r.t1.dest, 1)
	ring := r.capTap([]*port{r.a, r.internal}, []*tunnel{r.t1})

	toR := eth(macR, macA, 100)
	r.c.forward(r.a, []desc{r.frame(toR)})
	fs := drained(ring)
	// vm1 received it; tunnel:198.18.0.2 sent it (inner frame).
	if len(fs) != 2 || fs[0].Outbound || !bytes.Equal(fs[0].Data, toR) || !fs[1].Outbound || !bytes.Equal(fs[1].Data, toR) {
		t.Fatalf("vm1 -> tunnel: %d records %+v", len(fs), fs)
	}
	r.reset()
	fromR := eth(bcast, macR, 60)
	r.c.forward(r.f.underlay, []desc{r.frame(geneveFrom(t, remote1, 5000, fromR, nil, false))})
	r.tapRead0()
	fs = drained(ring)
	// tunnel received it (inner), the internal port was sent it; vm1 is
	// sent it too, but AF_XDP sends are captured in flush (sockets).
	if len(fs) != 2 || fs[0].Outbound || !bytes.Equal(fs[0].Data, fromR) || !fs[1].Outbound || !bytes.Equal(fs[1].Data, fromR) {
		t.Fatalf("tunnel -> flood: %d records", len(fs))
	}
	if _, err := traceFrame(r.f, TraceRequest{Bridge: "br1", InPort: "vm1", Frame: toR}, r.traceEnv()); err != nil {
		t.Fatal(err)
	}
	if fs = drained(ring); len(fs) != 0 {
		t.Fatalf("a trace was captured: %d records", len(fs))
	}
}

// TestCaptureAllocs: forwarding does not allocate with a capture running
// (after set-up) on the input port, a tunnel and the internal port, nor
// without one (TestForwardAllocs).
func TestCaptureAllocs(t *testing.T) {
	r := newRig(t)
	ring := r.capTap([]*port{r.a, r.f.underlay, r.internal}, []*tunnel{r.t1, r.t2})
	frames := [][]byte{
		eth(bcast, macA, 60),
		geneveFrom(t, remote1, 5000, eth(macA, macR, 100), nil, false),
		eth(macR, macA, 1000),
		geneveFrom(t, netip.MustParseAddr("198.18.0.99"), 5000, eth(macA, macR, 100), nil, false),
	}
	ins := []*port{r.a, r.f.underlay, r.a, r.f.underlay}
	descs := make([]desc, 1)
	var recs []CapturedFrame
	allocs := testing.AllocsPerRun(200, func() {
		r.reset()
		for i, f := range frames {
			descs[0] = r.frame(f)
			r.c.forward(ins[i], descs)
		}
		r.tapRead0()
		var tail uint64
		recs, tail = ring.peek(recs[:0])
		ring.commit(tail)
	})
	if allocs != 0 {
		t.Errorf("forward with a capture allocates %.1f times per batch", allocs)
	}
	if len(recs) == 0 {
		t.Errorf("nothing captured")
	}
}
