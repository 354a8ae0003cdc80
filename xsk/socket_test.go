package xsk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"golang.org/x/sys/unix"

	"xswitch/internal/testnet"
)

// sockNet is the socket tests' topology: the xsk side (namespace xs,
// device "x0") and a peer (namespace peer, device "p0") joined by a veth.
type sockNet struct {
	t     *testing.T
	n     *testnet.Net
	xs    string
	peer  string
	xmac  net.HardwareAddr
	pmac  net.HardwareAddr
	u     *Umem
	ports []*Port
}

// newSockNet builds the namespaces (IPv6 off, so that the kernels send
// nothing of their own), a veth with the given queue count and a UMEM.
func newSockNet(t *testing.T, queues int, uc UmemConfig) *sockNet {
	t.Helper()
	n := testnet.New(t)
	sn := &sockNet{t: t, n: n, xs: n.NS("xs"), peer: n.NS("xp")}
	for _, ns := range []string{sn.xs, sn.peer} {
		n.Run(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	}
	n.Veth(sn.xs, "x0", sn.peer, "p0", queues)
	sn.finish("x0", "p0", uc)
	return sn
}

// finish reads the MACs of the first veth pair (x on the xsk side, p on
// the peer's) and makes the UMEM, closed with every port at cleanup.
func (sn *sockNet) finish(x, p string, uc UmemConfig) {
	t := sn.t
	t.Helper()
	sn.xmac = ifMAC(t, sn.xs, x)
	sn.pmac = ifMAC(t, sn.peer, p)
	var err error
	if sn.u, err = NewUmem(uc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, p := range sn.ports {
			p.Close()
		}
		sn.u.Close()
	})
}

func ifMAC(t testing.TB, ns, dev string) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	if err := testnet.Do(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err == nil {
			mac = ifi.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return mac
}

// open opens a port on dev in the xsk namespace.
func (sn *sockNet) open(c PortConfig) (*Port, error) {
	if c.Interface == "" {
		c.Interface = "x0"
	}
	var p *Port
	err := testnet.Do(sn.xs, func() error {
		var err error
		p, err = sn.u.OpenPort(c)
		return err
	})
	if err == nil {
		sn.ports = append(sn.ports, p)
	}
	return p, err
}

func (sn *sockNet) mustOpen(c PortConfig) *Port {
	sn.t.Helper()
	p, err := sn.open(c)
	if err != nil {
		sn.t.Fatal(err)
	}
	return p
}

// closeAll closes every port and checks the frame invariant: all frames
// back in the pool, none lost. The caller has flushed its caches.
func (sn *sockNet) closeAll() {
	sn.t.Helper()
	for _, p := range sn.ports {
		if err := p.Close(); err != nil {
			sn.t.Errorf("close port %s: %v", p.Name(), err)
		}
	}
	sn.ports = nil
	checkPool(sn.t, sn.u)
}

// xdpAttached reports the XDP program line of dev, "" when none.
func xdpAttached(t testing.TB, ns, dev string) string {
	t.Helper()
	out, err := testnet.Try(ns, "ip", "-d", "link", "show", dev)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "prog/xdp") || strings.Contains(l, "xdpgeneric") || strings.Contains(l, "xdpdrv") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// rawPeer is an AF_PACKET socket on one device: the far end of the tests.
type rawPeer struct {
	fd      int
	ifindex int
}

func openRaw(t testing.TB, ns, dev string) *rawPeer {
	t.Helper()
	p := &rawPeer{fd: -1}
	err := testnet.Do(ns, func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		p.ifindex = ifi.Index
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("socket(AF_PACKET): %w", err)
		}
		p.fd = fd
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
			return fmt.Errorf("SO_RCVBUFFORCE: %w", err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 64<<20); err != nil {
			return fmt.Errorf("SO_SNDBUFFORCE: %w", err)
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index})
	})
	if p.fd >= 0 {
		t.Cleanup(func() { unix.Close(p.fd) })
	}
	if err != nil {
		t.Fatalf("AF_PACKET peer on %s: %v", dev, err)
	}
	return p
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// send writes frames on the device; ENOBUFS (the device queue is busy) is
// retried after a short sleep.
func (p *rawPeer) send(frames ...[]byte) error {
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: p.ifindex}
	for _, f := range frames {
		for tries := 0; ; tries++ {
			err := unix.Sendto(p.fd, f, 0, sa)
			if err == nil {
				break
			}
			if !errors.Is(err, unix.ENOBUFS) || tries > 1000 {
				return fmt.Errorf("AF_PACKET send: %w", err)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	return nil
}

// sendAsync sends in the background; the returned function waits and
// fails t on a send error.
func (p *rawPeer) sendAsync(t testing.TB, frames ...[]byte) (wait func()) {
	errc := make(chan error, 1)
	go func() { errc <- p.send(frames...) }()
	return func() {
		t.Helper()
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// collect returns the test frames (outgoing ones excluded) received until
// want have arrived or idle passes without one.
func (p *rawPeer) collect(want int, idle time.Duration) map[uint32][]byte {
	got := make(map[uint32][]byte)
	buf := make([]byte, 1<<16) // jumbo frames too (multi-buffer tests)
	last := time.Now()
	for len(got) < want && time.Since(last) < idle {
		fds := []unix.PollFd{{Fd: int32(p.fd), Events: unix.POLLIN}}
		if n, _ := unix.Poll(fds, 10); n <= 0 {
			continue
		}
		n, from, err := unix.Recvfrom(p.fd, buf, unix.MSG_DONTWAIT)
		if err != nil {
			continue
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if seq, ok := frameSeq(buf[:n]); ok {
			if _, dup := got[seq]; dup {
				got[1<<31|seq] = nil // counted as a duplicate below
			}
			got[seq] = append([]byte(nil), buf[:n]...)
			last = time.Now()
		}
	}
	return got
}

var frameMarker = []byte("XSKT")

// testFrame is an Ethernet/IPv4/UDP frame of size bytes (60 to 2048) whose
// payload carries a marker, seq and a pattern derived from seq; flow picks
// the UDP source port (and so the peer's TX queue hash).
func testFrame(dst, src net.HardwareAddr, flow uint16, seq uint32, size int) []byte {
	f := make([]byte, size)
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(size-14))
	ip[8] = 64
	ip[9] = unix.IPPROTO_UDP
	copy(ip[12:16], []byte{198, 18, 9, 1})
	copy(ip[16:20], []byte{198, 18, 9, 2})
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := f[34:42]
	binary.BigEndian.PutUint16(udp[0:], 10000+flow)
	binary.BigEndian.PutUint16(udp[2:], 9)
	binary.BigEndian.PutUint16(udp[4:], uint16(size-34))
	copy(f[42:], frameMarker)
	binary.BigEndian.PutUint32(f[46:], seq)
	for i := 50; i < size; i++ {
		f[i] = byte(seq) + byte(i)
	}
	return f
}

// frameSeq reads the sequence number of a test frame.
func frameSeq(f []byte) (uint32, bool) {
	if len(f) < 50 || !bytes.Equal(f[42:46], frameMarker) {
		return 0, false
	}
	return binary.BigEndian.Uint32(f[46:]), true
}

// frameSize spreads sizes over 60..1514 bytes.
func frameSize(seq uint32) int { return 60 + int(seq*97)%(1514-60+1) }

// rxAll receives from every socket of p (refilling from c) until want test
// frames arrived or idle passes; frames are copied out and given back.
func rxAll(u *Umem, p *Port, c *Cache, want int, idle time.Duration) (map[uint32][]byte, map[int]int) {
	got := make(map[uint32][]byte)
	perQueue := make(map[int]int)
	descs := make([]Desc, 64)
	addrs := make([]uint64, 64)
	last := time.Now()
	for len(got) < want && time.Since(last) < idle {
		busy := false
		for _, s := range p.Sockets() {
			n := s.Receive(descs)
			for i, d := range descs[:n] {
				b := u.Bytes(d)
				if seq, ok := frameSeq(b); ok {
					if _, dup := got[seq]; dup {
						got[1<<31|seq] = nil
					}
					got[seq] = append([]byte(nil), b...)
					perQueue[s.Queue()]++
				}
				addrs[i] = d.Addr
			}
			c.PutBatch(addrs[:n])
			s.Refill(c)
			if n > 0 {
				busy = true
				last = time.Now()
			}
		}
		if !busy {
			p.Sockets()[0].Wait(5 * time.Millisecond)
		}
	}
	return got, perQueue
}

// checkFrames compares received frames with the frames sent for seqs.
func checkFrames(t testing.TB, what string, got map[uint32][]byte, sent map[uint32][]byte) {
	t.Helper()
	for seq, f := range got {
		if seq&(1<<31) != 0 {
			t.Errorf("%s: frame %d arrived twice", what, seq&^(1<<31))
			continue
		}
		want, ok := sent[seq]
		if !ok {
			t.Errorf("%s: frame %d was never sent", what, seq)
		} else if !bytes.Equal(f, want) {
			t.Errorf("%s: frame %d differs: got %d bytes % x..., want %d bytes % x...", what, seq, len(f), f[:min(len(f), 64)], len(want), want[:64])
		}
	}
	if len(got) != len(sent) {
		t.Errorf("%s: %d of %d frames arrived", what, len(got), len(sent))
	}
}

// txFrames writes frames into UMEM frames from c at offset off and
// returns their descriptors.
func txFrames(u *Umem, c *Cache, frames [][]byte, off int) []Desc {
	addrs := make([]uint64, len(frames))
	if n := c.Get(addrs); n != len(frames) {
		panic(fmt.Sprintf("got %d of %d frames", n, len(frames)))
	}
	descs := make([]Desc, len(frames))
	for i, a := range addrs {
		copy(u.Frame(a)[off:], frames[i])
		descs[i] = Desc{Addr: a + uint64(off), Len: uint32(len(frames[i]))}
	}
	return descs
}

// transmitAll transmits descs on s, completing into c, until every frame
// was placed and completed (or timeout).
func transmitAll(t testing.TB, s *Socket, c *Cache, descs []Desc, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for len(descs) > 0 {
		n := s.Transmit(descs)
		descs = descs[n:]
		s.Complete(c)
		if time.Now().After(deadline) {
			t.Fatalf("transmit: %d descriptors still not placed after %v", len(descs), timeout)
		}
		if len(descs) > 0 {
			time.Sleep(100 * time.Microsecond)
		}
	}
	waitCompleted(t, s, c, timeout)
}

// waitCompleted completes until the socket holds no TX frame.
func waitCompleted(t testing.TB, s *Socket, c *Cache, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for s.txPackets.Load() != s.completed.Load() {
		s.Transmit(nil)
		s.Complete(c)
		if time.Now().After(deadline) {
			st, _ := s.Stats()
			t.Fatalf("transmit: %d frames not completed after %v (tx ring: kernel at %d, we at %d; %+v)", s.txPackets.Load()-s.completed.Load(), timeout,
				*s.tx.consumer, s.tx.local, st)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// TestRoundTrip: frames from an AF_PACKET peer arrive byte for byte in the
// socket's RX ring, and frames transmitted from the UMEM (at the frame
// start and at an offset) arrive byte for byte at the peer; with
// need_wakeup on and off.
func TestRoundTrip(t *testing.T) {
	for _, wakeup := range []bool{true, false} {
		t.Run(fmt.Sprintf("need_wakeup=%v", wakeup), func(t *testing.T) {
			sn := newSockNet(t, 1, UmemConfig{NumFrames: 2048})
			p := sn.mustOpen(PortConfig{RingSize: 512, NeedWakeup: wakeup})
			s := p.Sockets()[0]
			if s.NeedWakeup() != wakeup {
				t.Fatalf("NeedWakeup() = %v, asked for %v", s.NeedWakeup(), wakeup)
			}
			peer := openRaw(t, sn.peer, "p0")
			c := sn.u.NewCache()
			if n := s.Refill(c); n != 512 {
				t.Fatalf("Refill put %d frames on a 512-entry fill ring", n)
			}

			// RX: 300 frames of 60..1514 bytes.
			sent := make(map[uint32][]byte)
			var frames [][]byte
			for seq := uint32(0); seq < 300; seq++ {
				f := testFrame(sn.xmac, sn.pmac, uint16(seq%8), seq, frameSize(seq))
				sent[seq] = f
				frames = append(frames, f)
			}
			wait := peer.sendAsync(t, frames...)
			got, _ := rxAll(sn.u, p, c, len(sent), 2*time.Second)
			wait()
			checkFrames(t, "RX", got, sent)

			// TX: 300 frames, half at the frame start, half after 300 bytes.
			sent = make(map[uint32][]byte)
			frames = frames[:0]
			for seq := uint32(1000); seq < 1300; seq++ {
				f := testFrame(sn.pmac, sn.xmac, 1, seq, frameSize(seq))
				sent[seq] = f
				frames = append(frames, f)
			}
			descs := append(txFrames(sn.u, c, frames[:150], 0), txFrames(sn.u, c, frames[150:], 300)...)
			done := make(chan map[uint32][]byte)
			go func() { done <- peer.collect(len(sent), 2*time.Second) }()
			transmitAll(t, s, c, descs, 5*time.Second)
			checkFrames(t, "TX", <-done, sent)

			st, err := s.Stats()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("stats: %+v", st)
			if st.RxPackets < 300 || st.TxPackets != 300 || st.Completed != 300 || st.RxInvalidDescs+st.TxInvalidDescs+st.RxDropped != 0 {
				t.Errorf("stats %+v: want RxPackets ≥ 300, TxPackets = Completed = 300, no drops or invalid descriptors", st)
			}
			if p := s.Pending(); p != 512 {
				t.Errorf("Pending() = %d with a full fill ring and nothing in flight, want 512", p)
			}
			c.Flush()
			sn.closeAll()
		})
	}
}

// TestMultiQueue: on a 4-queue veth every queue has a socket, the peer's
// flows spread over the queues, every socket receives, and every frame
// arrives exactly once.
func TestMultiQueue(t *testing.T) {
	sn := newSockNet(t, 4, UmemConfig{NumFrames: 4096})
	p := sn.mustOpen(PortConfig{RingSize: 256, NeedWakeup: true})
	if len(p.Sockets()) != 4 {
		t.Fatalf("%d sockets on a 4-queue veth, want 4", len(p.Sockets()))
	}
	for i, s := range p.Sockets() {
		if s.Queue() != i || s.Ifindex() != p.Ifindex() {
			t.Fatalf("socket %d: queue %d ifindex %d (port ifindex %d)", i, s.Queue(), s.Ifindex(), p.Ifindex())
		}
	}
	peer := openRaw(t, sn.peer, "p0")
	c := sn.u.NewCache()
	for _, s := range p.Sockets() {
		s.Refill(c)
	}
	sent := make(map[uint32][]byte)
	var frames [][]byte
	for seq := uint32(0); seq < 640; seq++ {
		f := testFrame(sn.xmac, sn.pmac, uint16(seq%64), seq, frameSize(seq))
		sent[seq] = f
		frames = append(frames, f)
	}
	wait := peer.sendAsync(t, frames...)
	got, perQueue := rxAll(sn.u, p, c, len(sent), 2*time.Second)
	wait()
	checkFrames(t, "RX", got, sent)
	t.Logf("frames per queue: %v", perQueue)
	for q := range 4 {
		if perQueue[q] == 0 {
			t.Errorf("queue %d received nothing (64 flows sent)", q)
		}
	}
	c.Flush()
	sn.closeAll()
}

// TestTransmitBurst: in copy mode the kernel sends at most 32 descriptors
// per sendto; one Transmit of 1000 places them all and kicks until the
// kernel has taken every one.
func TestTransmitBurst(t *testing.T) {
	for _, wakeup := range []bool{true, false} {
		t.Run(fmt.Sprintf("need_wakeup=%v", wakeup), func(t *testing.T) {
			sn := newSockNet(t, 1, UmemConfig{NumFrames: 2048})
			// The kernel's own budget (32 per sendto): Transmit must kick
			// again and again.
			p := sn.mustOpen(PortConfig{RingSize: 1024, NeedWakeup: wakeup})
			s := p.Sockets()[0]
			c := sn.u.NewCache()
			st := sendBurst(t, sn, s, c, func() {
				if cons := s.tx.consumer; *cons != s.tx.local {
					t.Errorf("after one Transmit of 1000 the kernel took %d (want all: the kicks go on past 32 per sendto)", *cons)
				}
			})
			t.Logf("stats: %+v", st)
			if st.Kicks < 1000/32 {
				t.Errorf("%d kicks for 1000 frames in copy mode, want at least %d", st.Kicks, 1000/32)
			}
			c.Flush()
			sn.closeAll()
		})
	}
}

// sendBurst transmits 1000 frames of 60..259 bytes in one Transmit on a
// socket with 1024-entry rings (afterTransmit, if any, runs right after
// it), waits until all are completed, checks that the peer got each byte
// for byte, and returns the socket's statistics.
func sendBurst(t *testing.T, sn *sockNet, s *Socket, c *Cache, afterTransmit func()) Stats {
	t.Helper()
	peer := openRaw(t, sn.peer, "p0")
	sent := make(map[uint32][]byte)
	var frames [][]byte
	for seq := uint32(0); seq < 1000; seq++ {
		f := testFrame(sn.pmac, sn.xmac, 0, seq, 60+int(seq%200))
		sent[seq] = f
		frames = append(frames, f)
	}
	descs := txFrames(sn.u, c, frames, 0)
	done := make(chan map[uint32][]byte)
	go func() { done <- peer.collect(len(sent), 2*time.Second) }()
	if n := s.Transmit(descs); n != 1000 {
		t.Fatalf("Transmit(1000) on a 1024-entry ring placed %d", n)
	}
	if afterTransmit != nil {
		afterTransmit()
	}
	waitCompleted(t, s, c, 5*time.Second)
	checkFrames(t, "TX", <-done, sent)
	st, _ := s.Stats()
	return st
}

// TestTxBudget: in copy mode a socket with a TX budget has the kernel send
// that many descriptors per sendto, so that a burst of 1000 takes a handful
// of kicks instead of 32; without one it keeps the kernel's 32; bad budgets
// are refused with a clear error.
func TestTxBudget(t *testing.T) {
	for _, tc := range []struct {
		budget, want int
		maxKicks     uint64
	}{
		{256, 256, 1000/256 + 2},
		{64, 64, 1000/64 + 2},
		{0, KernelTxBudget, 1000},
	} {
		t.Run(fmt.Sprintf("TxBudget=%d", tc.budget), func(t *testing.T) {
			sn := newSockNet(t, 1, UmemConfig{NumFrames: 2048})
			p := sn.mustOpen(PortConfig{RingSize: 1024, NeedWakeup: true, TxBudget: tc.budget})
			s := p.Sockets()[0]
			if s.TxBudget() != tc.want {
				t.Fatalf("TxBudget() = %d, want %d", s.TxBudget(), tc.want)
			}
			c := sn.u.NewCache()
			st := sendBurst(t, sn, s, c, nil)
			if st.Kicks > tc.maxKicks || st.Kicks < 1000/uint64(tc.want) {
				t.Errorf("%d kicks for 1000 frames with a budget of %d, want %d to %d", st.Kicks, tc.want, 1000/tc.want, tc.maxKicks)
			}
			t.Logf("budget %d: %d kicks for 1000 frames", s.TxBudget(), st.Kicks)
			c.Flush()
			sn.closeAll()
		})
	}
	sn := newSockNet(t, 1, UmemConfig{NumFrames: 1024})
	for _, b := range []int{16, 2048, -1} {
		_, err := sn.open(PortConfig{RingSize: 1024, TxBudget: b})
		if err == nil || !strings.Contains(err.Error(), "TxBudget") {
			t.Errorf("TxBudget %d with 1024-entry rings: err %v, want a TxBudget error", b, err)
		}
	}
	checkPool(t, sn.u)
}

// TestTransmitRingFull: with a 64-entry TX ring (and completion ring),
// Transmit places what fits and says how many; the caller keeps the rest
// and retries; no frame is lost or sent twice, and the refusals are
// counted.
func TestTransmitRingFull(t *testing.T) {
	sn := newSockNet(t, 1, UmemConfig{NumFrames: 1024})
	p := sn.mustOpen(PortConfig{RingSize: 64})
	s := p.Sockets()[0]
	peer := openRaw(t, sn.peer, "p0")
	c := sn.u.NewCache()
	sent := make(map[uint32][]byte)
	var frames [][]byte
	for seq := uint32(0); seq < 500; seq++ {
		f := testFrame(sn.pmac, sn.xmac, 0, seq, 60+int(seq%500))
		sent[seq] = f
		frames = append(frames, f)
	}
	descs := txFrames(sn.u, c, frames, 0)
	done := make(chan map[uint32][]byte)
	go func() { done <- peer.collect(len(sent), 2*time.Second) }()
	n := s.Transmit(descs)
	if n != 64 {
		t.Fatalf("Transmit(500) on a 64-entry ring placed %d, want 64", n)
	}
	// Without Complete the completion ring fills and the kernel stops:
	// Transmit then places nothing, and the caller still owns its frames.
	rest := descs[n:]
	for i := 0; i < 10; i++ {
		m := s.Transmit(rest)
		rest = rest[m:]
	}
	if len(rest) == 0 {
		t.Fatalf("all 500 descriptors placed without a Complete on a 64-entry completion ring")
	}
	t.Logf("placed %d of 500 before completing", 500-len(rest))
	if free := sn.u.FreeFrames(); free != 1024-500 {
		t.Fatalf("FreeFrames %d while the caller holds 500", free)
	}
	transmitAll(t, s, c, rest, 5*time.Second)
	checkFrames(t, "TX", <-done, sent)
	st, _ := s.Stats()
	t.Logf("stats: %+v", st)
	if st.TxPackets != 500 || st.Completed != 500 || st.TxRingFull == 0 {
		t.Errorf("stats %+v: want TxPackets = Completed = 500 and TxRingFull > 0", st)
	}
	c.Flush()
	sn.closeAll()
}

// TestTransmitBadDescriptors: descriptors outside the UMEM, crossing the
// end of their frame or of length 0 are refused by the kernel (counted in
// TxInvalidDescs, one per sendto: the kicks go on); the valid ones around
// them are sent; the kernel completes the invalid ones too, and the one
// outside the UMEM is not taken for a frame (TxBadAddrs).
func TestTransmitBadDescriptors(t *testing.T) {
	sn := newSockNet(t, 1, UmemConfig{NumFrames: 1024})
	p := sn.mustOpen(PortConfig{RingSize: 256, NeedWakeup: true})
	s := p.Sockets()[0]
	peer := openRaw(t, sn.peer, "p0")
	c := sn.u.NewCache()
	sent := make(map[uint32][]byte)
	var frames [][]byte
	for seq := uint32(0); seq < 40; seq++ {
		f := testFrame(sn.pmac, sn.xmac, 0, seq, 100)
		sent[seq] = f
		frames = append(frames, f)
	}
	descs := txFrames(sn.u, c, frames, 0)
	area := uint64(len(sn.u.Area()))
	var spare [1]uint64
	c.Get(spare[:])
	// Every 4th descriptor made invalid in one of three ways.
	var bad int
	for i := 2; i < len(descs); i += 4 {
		seq, _ := frameSeq(frames[i])
		delete(sent, seq)
		switch bad % 3 {
		case 0: // too long: crosses the end of its 2048-byte frame
			descs[i].Addr += 1000
			descs[i].Len = 1200
		case 1: // length 0
			descs[i].Len = 0
		case 2: // outside the UMEM: names no frame; the caller keeps its own
			c.Put(descs[i].Addr)
			descs[i].Addr = area + 4096
		}
		bad++
	}
	c.Put(spare[0])
	done := make(chan map[uint32][]byte)
	go func() { done <- peer.collect(len(sent), time.Second) }()
	transmitAll(t, s, c, descs, 5*time.Second)
	checkFrames(t, "TX", <-done, sent)
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats: %+v", st)
	if st.TxInvalidDescs != uint64(bad) {
		t.Errorf("kernel TxInvalidDescs %d, want %d", st.TxInvalidDescs, bad)
	}
	if st.Completed != uint64(len(descs)) || st.TxBadAddrs != uint64((bad+0)/3) {
		t.Errorf("Completed %d, TxBadAddrs %d; want %d and %d", st.Completed, st.TxBadAddrs, len(descs), bad/3)
	}
	c.Flush()
	sn.closeAll()
}

// TestCloseWithFramesInFlight: a port closed while its RX ring overflows
// (the peer keeps sending, nobody receives) and while transmitted frames
// are not completed gives every frame back.
func TestCloseWithFramesInFlight(t *testing.T) {
	for _, mode := range []XDPMode{XDPNative, XDPGeneric} {
		t.Run(mode.String(), func(t *testing.T) {
			sn := newSockNet(t, 2, UmemConfig{NumFrames: 1024})
			p := sn.mustOpen(PortConfig{RingSize: 64, NeedWakeup: true, XDPMode: mode})
			peer := openRaw(t, sn.peer, "p0")
			c := sn.u.NewCache()
			for _, s := range p.Sockets() {
				s.Refill(c)
			}
			var frames [][]byte
			for seq := uint32(0); seq < 600; seq++ {
				frames = append(frames, testFrame(sn.xmac, sn.pmac, uint16(seq%16), seq, 200))
			}
			if err := peer.send(frames...); err != nil {
				t.Fatal(err)
			}
			// Receive a few only and refill: the RX rings stay full.
			descs := make([]Desc, 16)
			for _, s := range p.Sockets() {
				n := s.Receive(descs)
				for _, d := range descs[:n] {
					c.Put(d.Addr)
				}
				s.Refill(c)
			}
			if err := peer.send(frames[:200]...); err != nil {
				t.Fatal(err)
			}
			// Transmit 100 and close without completing.
			tx := txFrames(sn.u, c, frames[:100], 0)
			if n := p.Sockets()[1].Transmit(tx); n != 64 {
				t.Fatalf("Transmit placed %d, want 64", n)
			}
			for _, d := range tx[64:] {
				c.Put(d.Addr)
			}
			// Refill never gives the kernel more than the RX ring holds, so
			// the overflow is dropped for want of a fill entry and never
			// for a full RX ring (which would park a frame in the kernel).
			var dropped uint64
			for _, s := range p.Sockets() {
				st, _ := s.Stats()
				t.Logf("queue %d: %+v", s.Queue(), st)
				dropped += st.RxDropped
				if st.RxRingFull != 0 {
					t.Errorf("queue %d: RxRingFull %d", s.Queue(), st.RxRingFull)
				}
				if st.Filled-st.RxPackets > 64 {
					t.Errorf("queue %d: %d frames given to the kernel for RX, more than the 64-entry RX ring", s.Queue(), st.Filled-st.RxPackets)
				}
			}
			if dropped == 0 {
				t.Errorf("nothing dropped: the test did not overflow the sockets")
			}
			c.Flush()
			sn.closeAll()
		})
	}
}

// rxCheck sends n test frames from the peer and checks they all arrive on
// p's sockets.
func rxCheck(t *testing.T, sn *sockNet, peer *rawPeer, p *Port, c *Cache, base uint32, n int) {
	t.Helper()
	sent := make(map[uint32][]byte)
	var frames [][]byte
	for seq := base; seq < base+uint32(n); seq++ {
		f := testFrame(ifMAC(t, sn.xs, p.Name()), sn.pmac, uint16(seq%16), seq, frameSize(seq))
		sent[seq] = f
		frames = append(frames, f)
	}
	for _, s := range p.Sockets() {
		s.Refill(c)
	}
	wait := peer.sendAsync(t, frames...)
	got, _ := rxAll(sn.u, p, c, len(sent), 2*time.Second)
	wait()
	checkFrames(t, "RX on "+p.Name(), got, sent)
}

// TestModes: what each setting gives on veth (no zero-copy, native XDP)
// and on a bridge (generic XDP only), reported by Mode and in the log;
// settings that cannot be had are clear errors that leave nothing
// attached and no frame out of the pool.
func TestModes(t *testing.T) {
	sn := newSockNet(t, 2, UmemConfig{NumFrames: 2048})
	sn.n.Run(sn.xs, "ip", "link", "add", "xbr0", "type", "bridge")
	sn.n.Run(sn.xs, "ip", "link", "set", "xbr0", "up")
	peer := openRaw(t, sn.peer, "p0")
	c := sn.u.NewCache()
	good := []struct {
		c        PortConfig
		zeroCopy bool
		xdp      string
		bind     string
	}{
		{PortConfig{ZeroCopy: ZeroCopyAuto}, false, "native", "copy"},
		{PortConfig{ZeroCopy: ZeroCopyOff, XDPMode: XDPNative}, false, "native", "copy"},
		{PortConfig{ZeroCopy: ZeroCopyAuto, XDPMode: XDPGeneric}, false, "generic", "copy"},
		{PortConfig{Interface: "xbr0"}, false, "generic", "copy"},
	}
	for i, g := range good {
		core, logs := observer.New(zap.InfoLevel)
		g.c.Logger = zap.New(core)
		g.c.RingSize = 128
		g.c.NeedWakeup = true
		p, err := sn.open(g.c)
		if err != nil {
			t.Fatalf("%+v: %v", g.c, err)
		}
		m := p.Mode()
		t.Logf("%s zero_copy=%v xdp_mode=%v: %+v", p.Name(), g.c.ZeroCopy, g.c.XDPMode, m)
		if m.ZeroCopy != g.zeroCopy || m.XDP != g.xdp || m.Link != "bpf_link" {
			t.Errorf("%+v: mode %+v, want zero-copy %v, xdp %s, bpf_link", g.c, m, g.zeroCopy, g.xdp)
		}
		for _, s := range p.Sockets() {
			if s.ZeroCopy() != g.zeroCopy {
				t.Errorf("socket %d: ZeroCopy() %v", s.Queue(), s.ZeroCopy())
			}
		}
		bound := logs.FilterMessage("AF_XDP sockets bound").All()
		if len(bound) != 1 || bound[0].ContextMap()["bind"] != g.bind || bound[0].ContextMap()["xdp"] != g.xdp {
			t.Errorf("%+v: log %v, want one \"AF_XDP sockets bound\" line with bind=%s xdp=%s", g.c, bound, g.bind, g.xdp)
		}
		if p.Name() == "x0" {
			rxCheck(t, sn, peer, p, c, uint32(i*100), 40)
		}
		c.Flush()
		sn.closeAll()
	}

	bad := []struct {
		c    PortConfig
		want string
	}{
		{PortConfig{ZeroCopy: ZeroCopyOn}, "zero-copy asked for (zero_copy: on) but the driver refuses it"},
		{PortConfig{Interface: "xbr0", XDPMode: XDPNative}, "native (driver) XDP is not available"},
	}
	for _, b := range bad {
		_, err := sn.open(b.c)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%+v: error %v, want one saying %q", b.c, err, b.want)
		}
		t.Logf("%+v: %v", b.c, err)
		if x := xdpAttached(t, sn.xs, "x0") + xdpAttached(t, sn.xs, "xbr0"); x != "" {
			t.Errorf("after the failed open an XDP program is still attached: %s", x)
		}
		checkPool(t, sn.u)
	}
	// The UMEM still works after the failures.
	p := sn.mustOpen(PortConfig{RingSize: 128})
	rxCheck(t, sn, peer, p, c, 1000, 40)
	c.Flush()
	sn.closeAll()
}

// TestBusyPoll: with busy polling the socket options are set and frames
// arrive and leave. A kernel that refuses busy polling must say so clearly;
// the test then skips (with the kernel's reason) instead of passing.
func TestBusyPoll(t *testing.T) {
	sn := newSockNet(t, 1, UmemConfig{NumFrames: 1024})
	peer := openRaw(t, sn.peer, "p0")
	p, err := sn.open(PortConfig{RingSize: 128, NeedWakeup: true, BusyPoll: true})
	if err != nil {
		if !strings.Contains(err.Error(), "busy polling") {
			t.Fatalf("busy poll refused with an unclear error: %v", err)
		}
		checkPool(t, sn.u)
		t.Skipf("busy polling refused by this kernel, nothing to test: %v", err)
	}
	s := p.Sockets()[0]
	// (SO_BUSY_POLL_BUDGET cannot be read back: getsockopt does not know it.)
	for opt, want := range map[int]int{unix.SO_PREFER_BUSY_POLL: 1, unix.SO_BUSY_POLL: 20} {
		if v, err := unix.GetsockoptInt(s.Fd(), unix.SOL_SOCKET, opt); err != nil || v != want {
			t.Errorf("socket option %d = %d (%v), want %d", opt, v, err, want)
		}
	}
	c := sn.u.NewCache()
	rxCheck(t, sn, peer, p, c, 0, 100)
	// TX through the busy-polled socket.
	var frames [][]byte
	sent := make(map[uint32][]byte)
	for seq := uint32(500); seq < 600; seq++ {
		f := testFrame(sn.pmac, sn.xmac, 0, seq, 300)
		frames = append(frames, f)
		sent[seq] = f
	}
	done := make(chan map[uint32][]byte)
	go func() { done <- peer.collect(len(sent), time.Second) }()
	transmitAll(t, s, c, txFrames(sn.u, c, frames, 0), 2*time.Second)
	checkFrames(t, "TX", <-done, sent)
	c.Flush()
	sn.closeAll()
}

// TestOpenPortErrors: bad port settings are refused up front with a
// message that names the field and the fix; nothing stays attached and
// no frame leaves the pool.
func TestOpenPortErrors(t *testing.T) {
	sn := newSockNet(t, 4, UmemConfig{NumFrames: 1024})
	bad := []struct {
		c    PortConfig
		want string
	}{
		{PortConfig{RingSize: 100}, "port x0: RingSize 100 must be a power of two from 64 to 32768"},
		{PortConfig{RingSize: 32}, "RingSize 32 must be a power of two from 64 to 32768"},
		{PortConfig{RingSize: 1 << 16}, "RingSize 65536"},
		{PortConfig{Queues: 2}, "port x0: Queues 2 but the device has 4 RX queues: frames on queues 2 to 3 would bypass the switch; use 0 (every queue) or lower the device's queue count (ethtool -L x0 combined 2)"},
		{PortConfig{Queues: 1}, "frames on queues 1 to 3 would bypass the switch"},
		{PortConfig{Queues: 8}, "port x0: Queues 8 but the device has only 4 RX queues"},
		{PortConfig{ZeroCopy: ZeroCopy(7)}, "ZeroCopy 7 unknown (use ZeroCopyAuto, ZeroCopyOn or ZeroCopyOff)"},
		{PortConfig{XDPMode: XDPMode(9)}, "Mode 9 unknown (use XDPAuto, XDPNative or XDPGeneric)"},
		{PortConfig{Role: RoleUnderlay}, "LocalIPs is empty"},
		{PortConfig{Interface: "nope0"}, "port nope0:"},
	}
	for _, b := range bad {
		_, err := sn.open(b.c)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%+v: error %v, want one containing %q", b.c, err, b.want)
		}
		if x := xdpAttached(t, sn.xs, "x0"); x != "" {
			t.Fatalf("after %+v an XDP program is attached: %s", b.c, x)
		}
		checkPool(t, sn.u)
	}
	// Queues equal to the device's count is fine.
	p := sn.mustOpen(PortConfig{Queues: 4, RingSize: 64})
	if len(p.Sockets()) != 4 {
		t.Fatalf("%d sockets", len(p.Sockets()))
	}
	sn.closeAll()
}

// TestOpenPortFailsMidway: a queue held by a foreign AF_XDP socket makes
// OpenPort fail after it bound the queues before it; it undoes everything
// (no program, no socket, every frame back), while another port of the
// UMEM carries traffic on; once the queue is free the port opens.
func TestOpenPortFailsMidway(t *testing.T) {
	sn := newSockNet(t, 4, UmemConfig{NumFrames: 2048})
	sn.n.Veth(sn.xs, "x1", sn.peer, "p1", 1)
	peer1 := openRaw(t, sn.peer, "p1")
	c := sn.u.NewCache()
	other := sn.mustOpen(PortConfig{Interface: "x1", RingSize: 128})
	rxCheck(t, sn, peer1, other, c, 0, 50)

	var foreign *steerRx
	if err := testnet.Do(sn.xs, func() error {
		ifi, err := net.InterfaceByName("x0")
		if err != nil {
			return err
		}
		foreign, err = newSteerRx(ifi.Index, 2)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	_, err := sn.open(PortConfig{RingSize: 128})
	t.Logf("open with queue 2 taken: %v", err)
	if err == nil || !strings.Contains(err.Error(), "port x0 queue 2") || !strings.Contains(err.Error(), "another AF_XDP socket holds the queue") {
		t.Fatalf("error %v, want one naming port x0 queue 2 and the foreign socket", err)
	}
	if x := xdpAttached(t, sn.xs, "x0"); x != "" {
		t.Fatalf("XDP program left on x0: %s", x)
	}
	if n := len(sn.u.sockets); n != 1 {
		t.Fatalf("%d sockets open on the UMEM, want 1 (port x1)", n)
	}
	if free := sn.u.FreeFrames(); free != 2048-other.Sockets()[0].Pending() {
		t.Fatalf("FreeFrames %d, want %d (all but port x1's)", free, 2048-other.Sockets()[0].Pending())
	}
	rxCheck(t, sn, peer1, other, c, 100, 50)
	foreign.Close()

	p := sn.mustOpen(PortConfig{RingSize: 128})
	rxCheck(t, sn, openRaw(t, sn.peer, "p0"), p, c, 200, 100)
	c.Flush()
	sn.closeAll()
}

// TestSharedUmemPortsCloseAndReopen: the first port (whose first socket
// registered the UMEM) closes while another port stays in use, then opens
// again; both carry traffic; every frame comes back each time.
func TestSharedUmemPortsCloseAndReopen(t *testing.T) {
	sn := newSockNet(t, 2, UmemConfig{NumFrames: 2048})
	sn.n.Veth(sn.xs, "x1", sn.peer, "p1", 2)
	peer0, peer1 := openRaw(t, sn.peer, "p0"), openRaw(t, sn.peer, "p1")
	c := sn.u.NewCache()
	p0 := sn.mustOpen(PortConfig{RingSize: 128, NeedWakeup: true})
	p1 := sn.mustOpen(PortConfig{Interface: "x1", RingSize: 128})
	if !p1.Sockets()[0].NeedWakeup() {
		t.Errorf("a shared socket does not report the UMEM's need_wakeup mode")
	}
	rxCheck(t, sn, peer0, p0, c, 0, 50)
	rxCheck(t, sn, peer1, p1, c, 100, 50)
	for round := range 3 {
		if err := p0.Close(); err != nil {
			t.Fatal(err)
		}
		sn.ports = sn.ports[1:]
		want := sn.u.NumFrames() - c.Len() - len(sn.u.free)
		held := 0
		for _, s := range p1.Sockets() {
			held += s.Pending()
		}
		if want != held {
			t.Fatalf("round %d: %d frames out of the pool, port x1 holds %d", round, want, held)
		}
		rxCheck(t, sn, peer1, p1, c, uint32(1000*round+200), 50)
		p0 = sn.mustOpen(PortConfig{RingSize: 128, NeedWakeup: true})
		sn.ports = []*Port{p1, p0}
		rxCheck(t, sn, peer0, p0, c, uint32(1000*round+300), 50)
		rxCheck(t, sn, peer1, p1, c, uint32(1000*round+400), 50)
	}
	c.Flush()
	sn.closeAll()
	// Sockets opened again after all were closed register the UMEM anew.
	p := sn.mustOpen(PortConfig{Interface: "x1", RingSize: 128})
	rxCheck(t, sn, peer1, p, c, 5000, 50)
	c.Flush()
	sn.closeAll()
}
