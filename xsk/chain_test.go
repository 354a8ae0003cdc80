package xsk

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fakeRing is a ring in ordinary memory (producer, consumer and flags,
// then the entries), where the test plays the kernel.
func fakeRing(size uint32, entry uintptr, producer bool) *ring {
	mem := make([]uint64, 8+int(size)*int(entry)/8)
	r := &ring{
		producer: (*uint32)(unsafe.Pointer(&mem[0])),
		consumer: (*uint32)(unsafe.Pointer(&mem[1])),
		flags:    (*uint32)(unsafe.Pointer(&mem[2])),
		descs:    unsafe.Pointer(&mem[8]),
		mask:     size - 1,
		size:     size,
	}
	if producer {
		r.cached = size
	}
	return r
}

// chainSocket is a socket on fake rings: RX and fill of 64 entries, TX of 8.
func chainSocket(t *testing.T, sg bool) *Socket {
	t.Helper()
	u := newTestUmem(t, UmemConfig{NumFrames: 64, MultiBuffer: sg})
	return &Socket{u: u, sg: u.MultiBuffer(), rx: fakeRing(64, 16, false), fill: fakeRing(64, 8, true), tx: fakeRing(8, 16, true)}
}

// chain is a packet of n descriptors in frames first, first+1, ...
func chain(first, n int) []Desc {
	var c []Desc
	for i := range n {
		c = append(c, Desc{Addr: uint64(first+i)*2048 + 256, Len: 1792, Options: OptContinued})
	}
	c[n-1].Options, c[n-1].Len = 0, 100
	return c
}

// kernelRx publishes packets on the RX ring, as the kernel does.
func kernelRx(r *ring, pkts ...[]Desc) {
	p := atomic.LoadUint32(r.producer)
	for _, pkt := range pkts {
		for _, d := range pkt {
			*r.desc(p) = d
			p++
		}
	}
	atomic.StoreUint32(r.producer, p)
}

func cat(pkts ...[]Desc) []Desc {
	var all []Desc
	for _, p := range pkts {
		all = append(all, p...)
	}
	return all
}

// expectRx receives with a batch of batch descriptors and checks it got want.
func expectRx(t *testing.T, s *Socket, batch int, want []Desc) {
	t.Helper()
	descs := make([]Desc, batch)
	n := s.Receive(descs)
	if n != len(want) {
		t.Fatalf("Receive(%d) = %d descriptors %+v, want %d", batch, n, descs[:n], len(want))
	}
	for i := range want {
		if descs[i] != want[i] {
			t.Fatalf("descriptor %d: %+v, want %+v", i, descs[i], want[i])
		}
	}
	if c := atomic.LoadUint32(s.rx.consumer); c != s.rx.local {
		t.Fatalf("RX consumer published %d, taken %d", c, s.rx.local)
	}
}

// TestReceiveWholePackets: on a multi-buffer socket a batch that would end
// inside a packet ends before it, and the rest is the next batch's start;
// a packet of exactly MaxFrags descriptors fits a batch of MaxFrags.
func TestReceiveWholePackets(t *testing.T) {
	s := chainSocket(t, true)
	a, b, c := chain(0, 1), chain(1, 3), chain(4, 2)
	kernelRx(s.rx, a, b, c)
	expectRx(t, s, 5, cat(a, b))
	expectRx(t, s, 5, c)
	expectRx(t, s, 5, nil)

	m := chain(10, MaxFrags)
	kernelRx(s.rx, m, a)
	expectRx(t, s, MaxFrags, m)
	expectRx(t, s, MaxFrags, a)
	if st := s.rxTooLong.Load(); st != 0 {
		t.Fatalf("RxTooLong %d, want 0", st)
	}

	// Not multi-buffer: the ring is read as it is (one branch), options
	// or not.
	p := chainSocket(t, false)
	kernelRx(p.rx, b)
	expectRx(t, p, 2, b[:2])
}

// TestReceiveDropsTooLong: a packet longer than the batch, or of more than
// MaxFrags descriptors, is dropped (frames to the fill ring, RxTooLong),
// also when it follows other packets in the batch; a fill ring without
// room makes the drop go on at the next Receive.
func TestReceiveDropsTooLong(t *testing.T) {
	s := chainSocket(t, true)
	long, tooMany, a, b := chain(0, 6), chain(6, MaxFrags+1), chain(30, 1), chain(31, 2)
	kernelRx(s.rx, long, a)
	expectRx(t, s, 4, a) // long (6) does not fit 4: dropped
	kernelRx(s.rx, b, tooMany, a)
	expectRx(t, s, 64, b) // stops before tooMany
	expectRx(t, s, 64, a) // tooMany dropped
	if n := s.rxTooLong.Load(); n != 2 {
		t.Fatalf("RxTooLong %d, want 2", n)
	}
	// The dropped packets' frames went to the fill ring, frame starts.
	var want []uint64
	for _, d := range cat(long, tooMany) {
		want = append(want, d.Addr&^2047)
	}
	if s.fill.local != uint32(len(want)) || atomic.LoadUint32(s.fill.producer) != s.fill.local {
		t.Fatalf("fill ring: %d entries produced (%d published), want %d", s.fill.local, *s.fill.producer, len(want))
	}
	for i, a := range want {
		if got := *s.fill.addr(uint32(i)); got != a {
			t.Fatalf("fill entry %d: %#x, want %#x", i, got, a)
		}
	}
	// The test's RX frames were never filled: Pending is minus what
	// Receive returned, the drops (a frame in for each out) left it alone.
	if p, returned := s.Pending(), len(a)+len(b)+len(a); p != -returned {
		t.Fatalf("Pending %d after drops, want %d", p, -returned)
	}

	// Fill ring with room for 2: the drop stops there and goes on once
	// the kernel takes fill entries.
	atomic.StoreUint32(s.fill.consumer, s.fill.local-62)
	s.fill.cached = s.fill.local
	kernelRx(s.rx, chain(40, 5), a)
	expectRx(t, s, 4, nil)
	if !s.dropping || s.fill.local-atomic.LoadUint32(s.fill.consumer) != 64 {
		t.Fatalf("dropping %v, fill ring holds %d: want a drop under way, fill ring full", s.dropping, s.fill.local-*s.fill.consumer)
	}
	atomic.StoreUint32(s.fill.consumer, s.fill.local)
	expectRx(t, s, 4, a)
	if s.dropping || s.rxTooLong.Load() != 3 {
		t.Fatalf("dropping %v, RxTooLong %d; want false, 3", s.dropping, s.rxTooLong.Load())
	}
}

// expectTx enqueues descs and checks that want were placed.
func expectTx(t *testing.T, s *Socket, descs []Desc, want int) {
	t.Helper()
	before := s.tx.local
	if n := s.Enqueue(descs); n != want {
		t.Fatalf("Enqueue of %d descriptors placed %d, want %d", len(descs), n, want)
	}
	for i := range want {
		if d := *s.tx.desc(before + uint32(i)); d != descs[i] {
			t.Fatalf("TX entry %d: %+v, want %+v", i, d, descs[i])
		}
	}
	if p := atomic.LoadUint32(s.tx.producer); p != s.tx.local || s.tx.local != before+uint32(want) {
		t.Fatalf("TX producer %d (local %d), want %d", p, s.tx.local, before+uint32(want))
	}
}

// TestEnqueueWholePackets: on a multi-buffer socket Enqueue places whole
// packets only: with room (8 entries) for part of a packet it stops after
// the packet before; a trailing incomplete chain is never placed.
func TestEnqueueWholePackets(t *testing.T) {
	s := chainSocket(t, true)
	p, q, r := chain(0, 3), chain(3, 3), chain(6, 3)
	expectTx(t, s, cat(p, q, r), 6)
	expectTx(t, s, r, 0) // room for 2
	atomic.StoreUint32(s.tx.consumer, 3)
	expectTx(t, s, r, 3)
	if full := s.txFull.Load(); full != 3+3 {
		t.Fatalf("TxRingFull %d, want 6", full)
	}
	atomic.StoreUint32(s.tx.consumer, s.tx.local)
	expectTx(t, s, cat(p, q[:2]), 3) // q has no last descriptor
	atomic.StoreUint32(s.tx.consumer, s.tx.local)
	expectTx(t, s, chain(0, 8), 8) // a packet the size of the ring

	// Not multi-buffer: as many descriptors as fit.
	n := chainSocket(t, false)
	expectTx(t, n, cat(p, q, r), 8)
}

// TestMultiBufferHint: the explanation added to a refused bind.
func TestMultiBufferHint(t *testing.T) {
	zc := Features{Known: true, XDP: XDPActBasic | XDPActRedirect | XDPActXSKZeroCopy, ZCMaxSegs: 1}
	zcmb := zc
	zcmb.ZCMaxSegs = 5
	noZC := Features{Known: true, XDP: XDPActBasic | XDPActRedirect}
	for _, c := range []struct {
		inval bool
		f     Features
		ferr  error
		want  string
	}{
		{false, zc, nil, "the driver has no AF_XDP multi-buffer in zero-copy mode; use zero_copy: off or a smaller MTU"},
		{true, zc, nil, "no AF_XDP multi-buffer in zero-copy mode"},
		{true, zcmb, nil, "zero-copy multi-buffer (at most 5 buffers a packet) cannot hold the device's MTU; use zero_copy: off or a smaller MTU"},
		{false, noZC, nil, ""},
		{false, Features{}, errors.New("no netlink"), "no AF_XDP multi-buffer in zero-copy mode"},
	} {
		got := zeroCopyMultiBufferHint(c.inval, c.f, c.ferr)
		if c.want == "" && got != "" || !strings.Contains(got, c.want) {
			t.Errorf("hint(EINVAL %v, %v, %v) = %q, want %q", c.inval, c.f, c.ferr, got, c.want)
		}
	}
	if h := multiBufferHint(unix.EINVAL, ZeroCopyOff, kernelVersion{6, 1}, 1); !strings.Contains(h, "Linux 6.6") {
		t.Errorf("EINVAL on Linux 6.1: %q, want the 6.6 hint", h)
	}
	if h := multiBufferHint(unix.EINVAL, ZeroCopyOff, kernelVersion{6, 18}, 1); h != "" {
		t.Errorf("copy-mode EINVAL on Linux 6.18: %q, want none", h)
	}
	if h := multiBufferHint(unix.EBUSY, ZeroCopyOn, kernelVersion{6, 18}, 1); h != "" {
		t.Errorf("EBUSY: %q, want none", h)
	}
}

// TestChainsNoAlloc: Receive (whole packets, and a drop) and Enqueue on a
// multi-buffer socket allocate nothing.
func TestChainsNoAlloc(t *testing.T) {
	s := chainSocket(t, true)
	a, long, b := chain(0, 1), chain(1, 6), chain(7, 3)
	ring := cat(a, long, b)
	tx := cat(b, a)
	descs := make([]Desc, 4)
	got := 0
	allocs := testing.AllocsPerRun(1000, func() {
		kernelRx(s.rx, ring)
		got += s.Receive(descs) // a
		got += s.Receive(descs) // long dropped, b
		atomic.StoreUint32(s.fill.consumer, s.fill.local)
		atomic.StoreUint32(s.tx.consumer, s.tx.local)
		got += s.Enqueue(tx)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per round", allocs)
	}
	if rounds := s.rxTooLong.Load(); got != int(rounds)*(1+3+4) {
		t.Errorf("%d descriptors in %d rounds, want %d a round", got, rounds, 1+3+4)
	}
}
