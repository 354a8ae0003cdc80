package xsk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"xswitch/internal/testnet"
	"xswitch/internal/wait"
)

// newMbNet is newSockNet for multi-buffer tests: namespaces labelled
// "mbx" (xsk side) and "mbp" (peer) joined by veth pairs mbI/mbpI (one
// queue each), every end with the given MTU.
func newMbNet(t *testing.T, pairs, mtu int, uc UmemConfig) *sockNet {
	t.Helper()
	n := testnet.New(t)
	sn := &sockNet{t: t, n: n, xs: n.NS("mbx"), peer: n.NS("mbp")}
	for _, ns := range []string{sn.xs, sn.peer} {
		n.Run(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	}
	for i := range pairs {
		x, p := "mb"+strconv.Itoa(i), "mbp"+strconv.Itoa(i)
		n.Veth(sn.xs, x, sn.peer, p, 1)
		n.Run(sn.xs, "ip", "link", "set", x, "mtu", strconv.Itoa(mtu))
		n.Run(sn.peer, "ip", "link", "set", p, "mtu", strconv.Itoa(mtu))
	}
	sn.finish("mb0", "mbp0", uc)
	return sn
}

// ifindexOf is the index of dev in the calling thread's namespace.
func ifindexOf(dev string) (int, error) {
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return 0, err
	}
	return ifi.Index, nil
}

// mbSizes are the frame sizes the multi-buffer tests send, in turn: jumbo,
// two or three frames, one frame, minimum.
var mbSizes = []int{9000, 3000, 1500, 64}

// rxCap is how many packet bytes the kernel copies into one RX frame.
func rxCap(u *Umem) int { return u.FrameSize() - unix.XDP_PACKET_HEADROOM - u.Headroom() }

// rxChains receives from s with batches of batch descriptors (refilling
// from c) until want test frames arrived or idle passes. It checks that
// every batch ends with a whole packet and that each packet has the
// descriptors its length needs, and returns the reassembled frames.
func rxChains(t *testing.T, u *Umem, s *Socket, c *Cache, batch, want int, idle time.Duration) map[uint32][]byte {
	t.Helper()
	got := make(map[uint32][]byte)
	descs := make([]Desc, batch)
	addrs := make([]uint64, batch)
	var pkt []byte
	frags := 0
	last := time.Now()
	for len(got) < want && time.Since(last) < idle {
		n := s.Receive(descs)
		if n == 0 {
			s.Refill(c)
			s.Wait(5 * time.Millisecond)
			continue
		}
		last = time.Now()
		if descs[n-1].Options&OptContinued != 0 {
			t.Fatalf("Receive returned %d descriptors ending inside a packet", n)
		}
		for i, d := range descs[:n] {
			if int(d.Len) > rxCap(u) || d.Options&^OptContinued != 0 {
				t.Fatalf("RX descriptor %+v: longer than a frame holds (%d) or unknown options", d, rxCap(u))
			}
			pkt = append(pkt, u.Bytes(d)...)
			frags++
			addrs[i] = d.Addr
			if d.Options&OptContinued != 0 {
				continue
			}
			if need := (len(pkt) + rxCap(u) - 1) / rxCap(u); frags != need {
				t.Errorf("a %d-byte packet came in %d descriptors, want %d", len(pkt), frags, need)
			}
			if seq, ok := frameSeq(pkt); ok {
				if _, dup := got[seq]; dup {
					got[1<<31|seq] = nil
				}
				got[seq] = append([]byte(nil), pkt...)
			}
			pkt, frags = pkt[:0], 0
		}
		c.PutBatch(addrs[:n])
		s.Refill(c)
	}
	return got
}

// txChain writes f into as many UMEM frames from c as it takes, off bytes
// into the first one, and returns the packet's descriptor chain.
func txChain(t testing.TB, u *Umem, c *Cache, f []byte, off int) []Desc {
	t.Helper()
	var chain []Desc
	for len(f) > 0 {
		var a [1]uint64
		if c.Get(a[:]) != 1 {
			t.Fatal("UMEM out of frames")
		}
		n := copy(u.Frame(a[0])[off:], f)
		chain = append(chain, Desc{Addr: a[0] + uint64(off), Len: uint32(n), Options: OptContinued})
		f, off = f[n:], 0
	}
	chain[len(chain)-1].Options = 0
	return chain
}

// txChains transmits descs (whole packets) on s, completing into c, and
// checks that every Transmit placed whole packets only.
func txChains(t *testing.T, s *Socket, c *Cache, descs []Desc, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for len(descs) > 0 {
		n := s.Transmit(descs)
		if n > 0 && descs[n-1].Options&OptContinued != 0 {
			t.Fatalf("Transmit placed %d descriptors, ending inside a packet", n)
		}
		descs = descs[n:]
		s.Complete(c)
		if time.Now().After(deadline) {
			t.Fatalf("transmit: %d descriptors still not placed after %v", len(descs), timeout)
		}
		if len(descs) > 0 && n == 0 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	waitCompleted(t, s, c, timeout)
}

// mbFrames makes count test frames from src to dst, sizes from mbSizes in
// turn, numbered from base.
func mbFrames(dst, src []byte, base uint32, count int) (map[uint32][]byte, [][]byte) {
	sent := make(map[uint32][]byte)
	var frames [][]byte
	for i := range count {
		seq := base + uint32(i)
		f := testFrame(dst, src, uint16(i%8), seq, mbSizes[i%len(mbSizes)])
		sent[seq] = f
		frames = append(frames, f)
	}
	return sent, frames
}

// TestMultiBufferRoundTrip: on a veth with MTU 9000, a copy-mode port on
// a multi-buffer UMEM (native XDP, which veth allows at this MTU only for
// a program loaded for fragments) receives 9000-, 3000-, 1500- and
// 64-byte frames from an AF_PACKET peer as descriptor chains that
// reassemble byte for byte (batches of MaxFrags, so that many end inside a
// packet), and chains it transmits arrive whole at the peer; for 2048- and
// 4096-byte frames, and with generic XDP. Every frame is back in the pool
// after close.
func TestMultiBufferRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		fs   int
		mode XDPMode
	}{{2048, XDPNative}, {4096, XDPNative}, {2048, XDPGeneric}} {
		t.Run(fmt.Sprintf("frame=%d,xdp=%v", tc.fs, tc.mode), func(t *testing.T) {
			sn := newMbNet(t, 1, 9000, UmemConfig{NumFrames: 4096, FrameSize: tc.fs, MultiBuffer: true})
			if !sn.u.MultiBuffer() {
				t.Fatal("MultiBuffer() false on a UMEM made with MultiBuffer")
			}
			p := sn.mustOpen(PortConfig{Interface: "mb0", RingSize: 1024, ZeroCopy: ZeroCopyOff, XDPMode: tc.mode, NeedWakeup: true})
			if m := p.Mode(); m.ZeroCopy || m.XDP != tc.mode.String() {
				t.Fatalf("mode %+v, want copy mode and %v XDP", m, tc.mode)
			}
			s := p.Sockets()[0]
			peer := openRaw(t, sn.peer, "mbp0")
			c := sn.u.NewCache()
			s.Refill(c)

			// RX: 120 frames fit the 1024-entry fill ring at once (about 2.5
			// frames each), so none is dropped however slow the receiver.
			sent, frames := mbFrames(sn.xmac, sn.pmac, 0, 120)
			sendDone := peer.sendAsync(t, frames...)
			got := rxChains(t, sn.u, s, c, MaxFrags, len(sent), 2*time.Second)
			sendDone()
			checkFrames(t, "RX", got, sent)

			// TX: chains of UMEM frames, half starting at the frame start,
			// half 300 bytes in.
			sent, frames = mbFrames(sn.pmac, sn.xmac, 1000, 120)
			var descs []Desc
			for i, f := range frames {
				descs = append(descs, txChain(t, sn.u, c, f, 300*(i%2))...)
			}
			done := make(chan map[uint32][]byte)
			go func() { done <- peer.collect(len(sent), 2*time.Second) }()
			txChains(t, s, c, descs, 5*time.Second)
			checkFrames(t, "TX", <-done, sent)

			st, err := s.Stats()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("stats: %+v", st)
			if st.TxPackets != uint64(len(descs)) || st.Completed != st.TxPackets || st.RxInvalidDescs+st.TxInvalidDescs+st.RxDropped+st.RxTooLong != 0 {
				t.Errorf("stats %+v: want TxPackets = Completed = %d, no drops or invalid descriptors", st, len(descs))
			}
			c.Flush()
			sn.closeAll()
		})
	}
}

// TestMultiBufferSharedUmem: a second port on the UMEM (its socket shares
// the UMEM and may not pass XDP_USE_SG) inherits multi-buffer from it: it
// receives 9000-byte frames as chains, which the first port transmits
// without a copy, whole, to its peer.
func TestMultiBufferSharedUmem(t *testing.T) {
	sn := newMbNet(t, 2, 9000, UmemConfig{NumFrames: 4096, MultiBuffer: true})
	// ZeroCopyAuto: veth refuses zero-copy, the port falls back to copy.
	p0 := sn.mustOpen(PortConfig{Interface: "mb0", RingSize: 512})
	p1 := sn.mustOpen(PortConfig{Interface: "mb1", RingSize: 512})
	if p0.Mode().ZeroCopy || p1.Mode().ZeroCopy {
		t.Fatalf("zero-copy on veth: %+v, %+v", p0.Mode(), p1.Mode())
	}
	rx, tx := p1.Sockets()[0], p0.Sockets()[0]
	if !rx.sg || !tx.sg {
		t.Fatalf("sockets not multi-buffer: first %v, shared %v", tx.sg, rx.sg)
	}
	in, out := openRaw(t, sn.peer, "mbp1"), openRaw(t, sn.peer, "mbp0")
	c := sn.u.NewCache()
	rx.Refill(c)
	sent, frames := mbFrames(sn.pmac, ifMAC(t, sn.peer, "mbp1"), 0, 100)
	done := make(chan map[uint32][]byte)
	go func() { done <- out.collect(len(sent), 3*time.Second) }()
	sendDone := in.sendAsync(t, frames...)
	descs := make([]Desc, 64)
	var fwd []Desc
	for deadline := time.Now().Add(3 * time.Second); tx.txPackets.Load() < 250 && time.Now().Before(deadline); {
		n := rx.Receive(descs)
		fwd = append(fwd[:0], descs[:n]...)
		for len(fwd) > 0 && time.Now().Before(deadline) {
			m := tx.Transmit(fwd)
			fwd = fwd[m:]
			tx.Complete(c)
		}
		rx.Refill(c)
		if n == 0 {
			rx.Wait(5 * time.Millisecond)
		}
	}
	sendDone()
	waitCompleted(t, tx, c, 2*time.Second)
	checkFrames(t, "forwarded", <-done, sent)
	st, _ := rx.Stats()
	t.Logf("shared socket stats: %+v", st)
	if st.RxDropped != 0 {
		t.Errorf("the shared socket dropped %d frames (not multi-buffer in the kernel?)", st.RxDropped)
	}
	c.Flush()
	sn.closeAll()
}

// TestMultiBufferRxTooLong: Receive drops a packet longer than its batch
// (9000 bytes in 2048-byte frames: 6 descriptors, batch of 4) and one of
// more than MaxFrags descriptors (a 40000-byte frame: 23), putting their
// frames back on the fill ring; the frames around them are received, and
// no frame is lost.
func TestMultiBufferRxTooLong(t *testing.T) {
	for _, tc := range []struct {
		batch, mtu, size int
	}{{4, 9000, 9000}, {64, 40000, 40000}} {
		t.Run(fmt.Sprintf("batch=%d,size=%d", tc.batch, tc.size), func(t *testing.T) {
			sn := newMbNet(t, 1, tc.mtu, UmemConfig{NumFrames: 1024, MultiBuffer: true})
			p := sn.mustOpen(PortConfig{Interface: "mb0", RingSize: 256, ZeroCopy: ZeroCopyOff, XDPMode: XDPNative})
			s := p.Sockets()[0]
			peer := openRaw(t, sn.peer, "mbp0")
			c := sn.u.NewCache()
			s.Refill(c)
			// Small, too long, small, too long, small: one at a time, so
			// the fill ring always has room.
			sent := make(map[uint32][]byte)
			got := make(map[uint32][]byte)
			for seq := uint32(0); seq < 5; seq++ {
				size := 1000
				if seq%2 == 1 {
					size = tc.size
				}
				f := testFrame(sn.xmac, sn.pmac, 0, seq, size)
				if err := peer.send(f); err != nil {
					t.Fatal(err)
				}
				if seq%2 == 1 {
					continue
				}
				sent[seq] = f
				for k, v := range rxChains(t, sn.u, s, c, tc.batch, 1, time.Second) {
					got[k] = v
				}
			}
			checkFrames(t, "RX", got, sent)
			st, err := s.Stats()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("stats: %+v", st)
			if st.RxTooLong != 2 || st.RxDropped != 0 {
				t.Errorf("RxTooLong %d, RxDropped %d; want 2 and 0", st.RxTooLong, st.RxDropped)
			}
			c.Flush()
			sn.closeAll()
		})
	}
}

// TestMultiBufferSteerMTU9000: on a veth whose peer has MTU 9000, veth
// refuses a native XDP program not loaded for fragments (ERANGE, "Peer MTU
// is too large to set XDP") and takes the steering program loaded with
// SteerConfig.MultiBuffer.
func TestMultiBufferSteerMTU9000(t *testing.T) {
	sn := newMbNet(t, 1, 9000, UmemConfig{NumFrames: 64})
	attach := func(mb bool) (*Steering, error) {
		var s *Steering
		err := testnet.Do(sn.xs, func() error {
			idx, err := ifindexOf("mb0")
			if err != nil {
				return err
			}
			s, err = AttachSteering(SteerConfig{Ifindex: idx, Role: RoleLocal, Mode: XDPNative, MultiBuffer: mb})
			return err
		})
		return s, err
	}
	if s, err := attach(false); err == nil {
		s.Close()
		t.Fatal("native XDP without fragments attached on a veth with MTU 9000")
	} else if !errors.Is(err, unix.ERANGE) {
		t.Fatalf("attach without fragments: %v, want ERANGE", err)
	}
	s, err := attach(true)
	if err != nil {
		t.Fatalf("attach with MultiBuffer: %v", err)
	}
	defer s.Close()
	if xdp, _ := s.Mode(); xdp != "native" {
		t.Fatalf("attached in %s mode, want native", xdp)
	}
	if line := xdpAttached(t, sn.xs, "mb0"); !strings.Contains(line, "xdp") {
		t.Fatalf("no XDP program shown on mb0: %q", line)
	}
}

// TestMultiBufferBindFlags: XDP_USE_SG goes on the first socket's bind
// only (the kernel refuses a shared socket that passes it), shared
// sockets are multi-buffer, and a UMEM without MultiBuffer gives sockets
// that are not, and a program not loaded for fragments (a native port at
// MTU 9000 cannot attach).
func TestMultiBufferBindFlags(t *testing.T) {
	sn := newMbNet(t, 2, 1500, UmemConfig{NumFrames: 1024, MultiBuffer: true})
	// veth has no zero-copy at all: the error says so, not multi-buffer.
	if _, err := sn.open(PortConfig{Interface: "mb0", RingSize: 64, ZeroCopy: ZeroCopyOn}); err == nil ||
		!strings.Contains(err.Error(), "zero-copy asked for") || strings.Contains(err.Error(), "multi-buffer in zero-copy") {
		t.Errorf("zero_copy on with multi-buffer on veth: %v", err)
	} else {
		t.Logf("zero_copy on: %v", err)
	}
	p0 := sn.mustOpen(PortConfig{Interface: "mb0", RingSize: 64, ZeroCopy: ZeroCopyOff})
	// A shared socket that passes XDP_USE_SG itself: EINVAL; the same
	// socket binds without it.
	var withSG, without error
	if err := testnet.Do(sn.xs, func() error {
		idx, err := ifindexOf("mb1")
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		for _, o := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING, unix.XDP_RX_RING} {
			if err := unix.SetsockoptInt(fd, unix.SOL_XDP, o, 64); err != nil {
				return err
			}
		}
		sa := &unix.SockaddrXDP{Flags: unix.XDP_SHARED_UMEM | unix.XDP_USE_SG, Ifindex: uint32(idx), SharedUmemFD: uint32(p0.Sockets()[0].Fd())}
		withSG = unix.Bind(fd, sa)
		sa.Flags = unix.XDP_SHARED_UMEM
		without = unix.Bind(fd, sa)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(withSG, unix.EINVAL) || without != nil {
		t.Errorf("shared bind with XDP_USE_SG: %v (want EINVAL); without: %v (want success)", withSG, without)
	}
	p1 := sn.mustOpen(PortConfig{Interface: "mb1", RingSize: 64, ZeroCopy: ZeroCopyOff})
	if !p1.Sockets()[0].sg {
		t.Error("shared socket not multi-buffer")
	}
	sn.closeAll()

	plain := newMbNet(t, 1, 9000, UmemConfig{NumFrames: 1024})
	if plain.u.MultiBuffer() {
		t.Fatal("MultiBuffer() true on a plain UMEM")
	}
	if _, err := plain.open(PortConfig{Interface: "mb0", RingSize: 64, ZeroCopy: ZeroCopyOff, XDPMode: XDPNative}); !errors.Is(err, unix.ERANGE) {
		t.Errorf("native port at MTU 9000 on a plain UMEM: %v, want ERANGE", err)
	}
	p := plain.mustOpen(PortConfig{Interface: "mb0", RingSize: 64, ZeroCopy: ZeroCopyOff, XDPMode: XDPGeneric})
	if p.Sockets()[0].sg {
		t.Error("socket of a plain UMEM is multi-buffer")
	}
	plain.closeAll()
}

// TestMultiBufferTxMaxFrags checks MaxFrags against the kernel: in copy
// mode a packet of MaxFrags descriptors is sent, one of MaxFrags+1 is
// dropped whole (every descriptor counted invalid, every frame completed),
// and the packets after it are sent.
func TestMultiBufferTxMaxFrags(t *testing.T) {
	sn := newMbNet(t, 1, 9000, UmemConfig{NumFrames: 1024, MultiBuffer: true})
	p := sn.mustOpen(PortConfig{Interface: "mb0", RingSize: 256, ZeroCopy: ZeroCopyOff})
	s := p.Sockets()[0]
	c := sn.u.NewCache()
	peer := openRaw(t, sn.peer, "mbp0")
	sent := make(map[uint32][]byte)
	// chain splits a frame into n descriptors of 400 bytes (the last shorter).
	chain := func(seq uint32, n int) []Desc {
		f := testFrame(sn.pmac, sn.xmac, 0, seq, n*400-100)
		sent[seq] = f
		var descs []Desc
		for i := 0; i < n; i++ {
			descs = append(descs, txChain(t, sn.u, c, f[i*400:min(len(f), (i+1)*400)], 0)...)
			descs[len(descs)-1].Options = OptContinued
		}
		descs[len(descs)-1].Options = 0
		return descs
	}
	sent[1], sent[3] = testFrame(sn.pmac, sn.xmac, 0, 1, 100), testFrame(sn.pmac, sn.xmac, 0, 3, 100)
	small := txFrames(sn.u, c, [][]byte{sent[1], sent[3]}, 0)
	descs := append(chain(0, MaxFrags+1), small[0])
	descs = append(append(descs, chain(2, MaxFrags)...), small[1])
	delete(sent, 0) // the one too long: dropped
	done := make(chan map[uint32][]byte)
	go func() { done <- peer.collect(3, 2*time.Second) }()
	txChains(t, s, c, descs, 5*time.Second)
	checkFrames(t, "TX", <-done, sent)
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats: %+v", st)
	if st.TxInvalidDescs != MaxFrags+1 || st.Completed != uint64(len(descs)) {
		t.Errorf("TxInvalidDescs %d, Completed %d; want %d and %d", st.TxInvalidDescs, st.Completed, MaxFrags+1, len(descs))
	}
	c.Flush()
	sn.closeAll()
}

// TestMultiBufferUnderlaySteer: the underlay filter, loaded for fragments,
// reads its headers in the linear part of 9000-byte packets: Geneve (UDP
// 6081) to the local address reaches the socket as whole chains, other UDP
// goes to the kernel.
func TestMultiBufferUnderlaySteer(t *testing.T) {
	sn := newMbNet(t, 1, 9000, UmemConfig{NumFrames: 2048, MultiBuffer: true})
	p := sn.mustOpen(PortConfig{Interface: "mb0", Role: RoleUnderlay, LocalIPs: []netip.Addr{netip.MustParseAddr("198.18.9.2")},
		RingSize: 512, ZeroCopy: ZeroCopyOff, XDPMode: XDPNative})
	s := p.Sockets()[0]
	peer := openRaw(t, sn.peer, "mbp0")
	c := sn.u.NewCache()
	s.Refill(c)
	sent := make(map[uint32][]byte)
	var frames [][]byte
	for seq := uint32(0); seq < 40; seq++ {
		f := testFrame(sn.xmac, sn.pmac, 0, seq, mbSizes[seq/2%uint32(len(mbSizes))])
		if seq%2 == 0 {
			binary.BigEndian.PutUint16(f[36:], 6081) // UDP destination port: Geneve
			sent[seq] = f
		}
		frames = append(frames, f)
	}
	sendDone := peer.sendAsync(t, frames...)
	got := rxChains(t, sn.u, s, c, MaxFrags, len(sent), 2*time.Second)
	sendDone()
	checkFrames(t, "Geneve RX", got, sent)
	wantCounters := func() bool {
		ctr, err := p.Steering().Counters()
		return err == nil && ctr.Redirected == 20 && ctr.Passed == 20
	}
	if !wait.Until(2*time.Second, wantCounters) {
		ctr, err := p.Steering().Counters()
		t.Errorf("steering counters %+v (%v), want 20 redirected, 20 passed", ctr, err)
	}
	c.Flush()
	sn.closeAll()
}
