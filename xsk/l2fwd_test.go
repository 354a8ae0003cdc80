package xsk

// l2fwd: RX on one veth → TX on another, with this package and, as the
// reference peer, with github.com/asavie/xdp v0.3.3, in the same topology:
//
//	gen ns: g ──veth── a [fwd ns] b ──veth── s :sink ns
//
// Three forwarders: xsk-shared forwards by descriptor through one shared
// UMEM (no copy in user space); xsk-copy gives each port its own UMEM and
// copies the frame, as asavie/xdp must (it has no shared UMEM) and as its
// l2fwd example does; asavie is asavie/xdp.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asavie/xdp"
	"golang.org/x/sys/unix"

	"xswitch/internal/testnet"
	"xswitch/internal/xdpcount"
)

const (
	l2fwdRing   = 1024 // every ring, both implementations
	l2fwdFrames = 4096 // UMEM frames per asavie socket; the shared UMEM has twice as many
	// l2fwdTxBudget is the copy-mode TX budget of the xsk forwarders'
	// TX sockets (PortConfig.TxBudget).
	l2fwdTxBudget = 256
)

// l2Topo is the forwarding topology. Interface names carry the pid: NAPI
// kernel threads are named after their device, and are found by name.
type l2Topo struct {
	n                *testnet.Net
	gen, fwd, sink   string
	gIf, aIf, bIf    string
	sIf              string
	gMAC, aMAC, sMAC net.HardwareAddr
	aIdx, bIdx       int
}

func newL2Topo(tb testing.TB) *l2Topo {
	tb.Helper()
	n := testnet.New(tb)
	id := strconv.Itoa(os.Getpid() % 100000)
	tp := &l2Topo{n: n, gen: n.NS("l2gen"), fwd: n.NS("l2fwd"), sink: n.NS("l2sink"),
		gIf: "l2g" + id, aIf: "l2a" + id, bIf: "l2b" + id, sIf: "l2s" + id}
	for _, ns := range []string{tp.gen, tp.fwd, tp.sink} {
		n.Run(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	}
	n.Veth(tp.gen, tp.gIf, tp.fwd, tp.aIf, 1)
	n.Veth(tp.fwd, tp.bIf, tp.sink, tp.sIf, 1)
	tp.gMAC = ifMAC(tb, tp.gen, tp.gIf)
	tp.aMAC = ifMAC(tb, tp.fwd, tp.aIf)
	tp.sMAC = ifMAC(tb, tp.sink, tp.sIf)
	if err := testnet.Do(tp.fwd, func() error {
		a, err := net.InterfaceByName(tp.aIf)
		if err != nil {
			return err
		}
		b, err := net.InterfaceByName(tp.bIf)
		if err != nil {
			return err
		}
		tp.aIdx, tp.bIdx = a.Index, b.Index
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	return tp
}

// l2fwder is a running forwarder: one goroutine on a locked OS thread.
type l2fwder struct {
	stopped atomic.Bool
	done    chan error
	fwd     atomic.Uint64 // frames handed to TX
	drops   atomic.Uint64 // frames dropped for a full TX ring
	close   func() error  // after the loop ended
	tid     atomic.Int64  // the loop's OS thread
	stats   func() string // counters worth a log line; nil: none
}

// cpuTime is the CPU time the loop's thread has used so far (system time
// included: with CONFIG_IRQ_TIME_ACCOUNTING off, softirq work done in its
// context too).
func (f *l2fwder) cpuTime() time.Duration {
	var ts unix.Timespec
	// The per-thread CPU clock of another thread of this process:
	// MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED).
	if err := unix.ClockGettime(int32(^f.tid.Load()<<3|6), &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// pinThread pins the calling goroutine's OS thread to cpu (-1: no pin)
// and returns the function that undoes it.
func pinThread(cpu int) (func(), error) {
	runtime.LockOSThread()
	if cpu < 0 {
		return runtime.UnlockOSThread, nil
	}
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("pin to CPU %d: %w", cpu, err)
	}
	return func() {
		unix.SchedSetaffinity(0, &old)
		runtime.UnlockOSThread()
	}, nil
}

func (f *l2fwder) run(cpu int, loop func(ready func())) error {
	f.done = make(chan error, 1)
	started := make(chan struct{})
	go func() {
		unpin, err := pinThread(cpu)
		if err != nil {
			f.done <- err
			return
		}
		f.tid.Store(int64(unix.Gettid()))
		loop(func() { close(started) })
		unpin()
		f.done <- nil
	}()
	// Frames sent before the first fill would be dropped.
	select {
	case <-started:
		return nil
	case err := <-f.done:
		if err == nil {
			err = errors.New("forwarding loop ended before it was ready")
		}
		f.done <- err
		return err
	}
}

// stop ends the loop and releases the forwarder.
func (f *l2fwder) stop() error {
	f.stopped.Store(true)
	err := <-f.done
	return errors.Join(err, f.close())
}

// startXsk forwards a → b with this package, one port per veth.
//
// shared: both ports on one UMEM (XDP_SHARED_UMEM); a received descriptor
// is transmitted as is, its destination MAC rewritten in place: no copy in
// user space.
//
// !shared: each port on its own UMEM, as asavie/xdp does it; a received
// frame is copied into a frame of b's UMEM (destination MAC rewritten
// there) and goes back to a's fill ring at once.
func startXsk(tp *l2Topo, cpu, batch int, shared bool) (*l2fwder, []*Umem, error) {
	ua, err := NewUmem(UmemConfig{NumFrames: 2 * l2fwdFrames, FrameSize: 2048})
	if err != nil {
		return nil, nil, err
	}
	umems := []*Umem{ua}
	ub := ua
	if !shared {
		ua.Close()
		if ua, err = NewUmem(UmemConfig{NumFrames: l2fwdFrames, FrameSize: 2048}); err != nil {
			return nil, nil, err
		}
		if ub, err = NewUmem(UmemConfig{NumFrames: l2fwdFrames, FrameSize: 2048}); err != nil {
			ua.Close()
			return nil, nil, err
		}
		umems = []*Umem{ua, ub}
	}
	closeAll := func() error {
		var errs []error
		for _, u := range umems {
			errs = append(errs, u.Close())
		}
		return errors.Join(errs...)
	}
	var pa, pb *Port
	err = testnet.Do(tp.fwd, func() error {
		var err error
		if pa, err = ua.OpenPort(PortConfig{Interface: tp.aIf, RingSize: l2fwdRing, NeedWakeup: true}); err != nil {
			return err
		}
		// A TX budget of 256: each sendto moves a whole burst (asavie
		// leaves the kernel's 32).
		pb, err = ub.OpenPort(PortConfig{Interface: tp.bIf, RingSize: l2fwdRing, NeedWakeup: true, TxBudget: l2fwdTxBudget})
		return err
	})
	if err != nil {
		return nil, nil, errors.Join(err, closeAll())
	}
	f := &l2fwder{close: closeAll}
	dst := [6]byte(tp.sMAC)
	rx, tx := pa.Sockets()[0], pb.Sockets()[0]
	f.stats = func() string {
		r, _ := rx.Stats()
		t, _ := tx.Stats()
		return fmt.Sprintf("RX socket: %d received, %d dropped (fill ring empty %d, RX ring full %d); TX socket: %d sent, %d completed, %d kicks",
			r.RxPackets, r.RxDropped, r.RxFillRingEmpty, r.RxRingFull, t.TxPackets, t.Completed, t.Kicks)
	}
	err = f.run(cpu, func(ready func()) {
		// One cache per UMEM: with a shared UMEM, completed frames go
		// straight back to the fill ring through the same cache.
		ca := ua.NewCache()
		cb := ca
		if !shared {
			cb = ub.NewCache()
		}
		descs := make([]Desc, batch)
		out := make([]Desc, batch)
		addrs := make([]uint64, batch)
		var fwd, drops uint64
		rx.Refill(ca)
		ready()
		for !f.stopped.Load() {
			n := rx.Receive(descs)
			if n > 0 {
				var sent int
				if shared {
					// The frames were written by the CPU of a's RX softirq
					// (the generator's); the kernel's copy-mode TX reads
					// them whole on this CPU: take their lines in one go.
					if tx.ZeroCopy() {
						ua.Prefetch(descs[:n])
					} else {
						ua.PrefetchPackets(descs[:n])
					}
					area := ua.Area()
					for _, d := range descs[:n] {
						copy(area[d.Addr:d.Addr+6], dst[:])
					}
					sent = tx.Transmit(descs[:n])
					for i, d := range descs[sent:n] {
						addrs[i] = d.Addr
					}
					ca.PutBatch(addrs[:n-sent])
				} else {
					m := cb.Get(addrs[:n])
					from, to := ua.Area(), ub.Area()
					for i, d := range descs[:m] {
						k := copy(to[addrs[i]:addrs[i]+uint64(ub.FrameSize())], from[d.Addr:d.Addr+uint64(d.Len)])
						copy(to[addrs[i]:], dst[:])
						out[i] = Desc{Addr: addrs[i], Len: uint32(k)}
					}
					sent = tx.Transmit(out[:m])
					cb.PutBatch(addrs[sent:m])
					for i, d := range descs[:n] {
						addrs[i] = d.Addr
					}
					ca.PutBatch(addrs[:n])
				}
				fwd += uint64(sent)
				drops += uint64(n - sent)
				f.fwd.Store(fwd)
				f.drops.Store(drops)
			}
			tx.Complete(cb)
			rx.Refill(ca)
		}
		// Take back what is still in flight before the ports close.
		for deadline := time.Now().Add(time.Second); tx.Pending() > 0 && time.Now().Before(deadline); {
			tx.Transmit(nil)
			tx.Complete(cb)
		}
		ca.Flush()
		if cb != ca {
			cb.Flush()
		}
	})
	if err != nil {
		return nil, nil, errors.Join(err, closeAll())
	}
	return f, umems, nil
}

// l2fwdImpls are the forwarders compared: this package forwarding by
// descriptor through a shared UMEM, this package copying between two
// UMEMs (asavie's way), and asavie/xdp, last: its Socket.Close leaves
// its rings mapped, and the mappings keep the queue bound until the
// process exits.
var l2fwdImpls = []string{"xsk-shared", "xsk-copy", "asavie"}

// startL2fwd starts the forwarder impl on CPU cpu (-1: any); the UMEMs
// are this package's, for the frame checks after stop.
func startL2fwd(tp *l2Topo, impl string, cpu int) (*l2fwder, []*Umem, error) {
	const batch = 64
	switch impl {
	case "xsk-shared":
		return startXsk(tp, cpu, batch, true)
	case "xsk-copy":
		return startXsk(tp, cpu, batch, false)
	case "asavie":
		f, err := startAsavie(tp, cpu, batch)
		return f, nil, err
	}
	return nil, nil, fmt.Errorf("unknown l2fwd implementation %q", impl)
}

// startAsavie forwards a → b with asavie/xdp: its program and a socket
// on a, a socket on b (each socket with its own UMEM), the received frame
// copied into a frame of b's UMEM, as in asavie's own l2fwd example.
func startAsavie(tp *l2Topo, cpu, batch int) (*l2fwder, error) {
	opts := &xdp.SocketOptions{NumFrames: l2fwdFrames, FrameSize: 2048,
		FillRingNumDescs: l2fwdRing, CompletionRingNumDescs: l2fwdRing, RxRingNumDescs: l2fwdRing, TxRingNumDescs: l2fwdRing}
	var prog *xdp.Program
	var in, out *xdp.Socket
	cleanup := func() error {
		var errs []error
		if in != nil {
			errs = append(errs, in.Close())
		}
		if out != nil {
			errs = append(errs, out.Close())
		}
		if prog != nil {
			errs = append(errs, testnet.Do(tp.fwd, func() error { return prog.Detach(tp.aIdx) }), prog.Close())
		}
		return errors.Join(errs...)
	}
	err := testnet.Do(tp.fwd, func() error {
		var err error
		if prog, err = xdp.NewProgram(1); err != nil {
			return fmt.Errorf("asavie NewProgram: %w", err)
		}
		if err = prog.Attach(tp.aIdx); err != nil {
			return fmt.Errorf("asavie Attach: %w", err)
		}
		if in, err = asavieSocket(tp.aIdx, opts); err != nil {
			return fmt.Errorf("asavie NewSocket(a): %w", err)
		}
		if err = prog.Register(0, in.FD()); err != nil {
			return fmt.Errorf("asavie Register: %w", err)
		}
		if out, err = asavieSocket(tp.bIdx, opts); err != nil {
			return fmt.Errorf("asavie NewSocket(b): %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(err, cleanup())
	}
	f := &l2fwder{close: cleanup}
	dst := [6]byte(tp.sMAC)
	err = f.run(cpu, func(ready func()) {
		var fwd, drops uint64
		in.Fill(in.GetDescs(in.NumFreeFillSlots()))
		ready()
		for !f.stopped.Load() {
			in.Fill(in.GetDescs(in.NumFreeFillSlots()))
			n := min(in.NumReceived(), batch)
			if n == 0 {
				out.Complete(out.NumCompleted())
				if out.NumTransmitted() > 0 {
					out.Transmit(nil) // a sendto: kick what waits in the TX ring
				}
				continue
			}
			rxd := in.Receive(n)
			out.Complete(out.NumCompleted())
			txd := out.GetDescs(min(len(rxd), out.NumFreeTxSlots()))
			for i := range txd {
				o := out.GetFrame(txd[i])
				k := copy(o, in.GetFrame(rxd[i]))
				copy(o[:6], dst[:])
				txd[i].Len = uint32(k)
			}
			out.Transmit(txd)
			fwd += uint64(len(txd))
			drops += uint64(len(rxd) - len(txd))
			f.fwd.Store(fwd)
			f.drops.Store(drops)
		}
	})
	if err != nil {
		return nil, errors.Join(err, cleanup())
	}
	return f, nil
}

// asavieSocket binds an asavie socket to queue 0, retrying while the
// queue is still held by a socket the kernel is releasing (the previous
// run's; xsk's own bind does the same).
func asavieSocket(ifindex int, opts *xdp.SocketOptions) (*xdp.Socket, error) {
	for deadline := time.Now().Add(time.Second); ; {
		s, err := xdp.NewSocket(ifindex, 0, opts)
		if err == nil || !strings.Contains(err.Error(), "device or resource busy") || time.Now().After(deadline) {
			return s, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestL2fwd: every forwarder of the benchmark delivers every frame, byte
// for byte with the destination MAC rewritten, at a pace the sink keeps up
// with; the xsk forwarders give every frame back to their UMEMs, and no
// XDP program stays on the interfaces.
func TestL2fwd(t *testing.T) {
	tp := newL2Topo(t)
	gen := openRaw(t, tp.gen, tp.gIf)
	sink := openRaw(t, tp.sink, tp.sIf)
	for _, impl := range l2fwdImpls {
		t.Run(impl, func(t *testing.T) {
			f, umems, err := startL2fwd(tp, impl, -1)
			if err != nil {
				t.Fatal(err)
			}
			sent := make(map[uint32][]byte)
			var frames [][]byte
			for seq := uint32(0); seq < 1000; seq++ {
				fr := testFrame(tp.aMAC, tp.gMAC, uint16(seq), seq, frameSize(seq))
				frames = append(frames, fr)
				want := append([]byte(nil), fr...)
				copy(want, tp.sMAC)
				sent[seq] = want
			}
			done := make(chan map[uint32][]byte)
			go func() { done <- sink.collect(len(sent), time.Second) }()
			for i := 0; i < len(frames); i += 50 {
				if err := gen.send(frames[i : i+50]...); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Millisecond)
			}
			got := <-done
			fwd, drops := f.fwd.Load(), f.drops.Load()
			if err := f.stop(); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: forwarded %d, TX-full drops %d", impl, fwd, drops)
			checkFrames(t, impl, got, sent)
			if x := xdpAttached(t, tp.fwd, tp.aIf) + xdpAttached(t, tp.fwd, tp.bIf); x != "" {
				t.Errorf("XDP program left after stop: %s", x)
			}
			for _, u := range umems {
				checkPool(t, u)
			}
		})
	}
}

// attachSinkCounter counts the frames arriving at the sink in XDP and
// drops them (internal/xdpcount, the make bench sink): the cheapest
// receiver.
func attachSinkCounter(tb testing.TB, ns, dev string) *xdpcount.Counter {
	tb.Helper()
	var c *xdpcount.Counter
	if err := testnet.Do(ns, func() (err error) {
		c, err = xdpcount.Attach(dev, "native")
		return err
	}); err != nil {
		tb.Fatalf("attach sink counter: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// sinkFrames is how many frames the sink has counted.
func sinkFrames(tb testing.TB, c *xdpcount.Counter) uint64 {
	n, err := c.Read()
	if err != nil {
		tb.Fatal(err)
	}
	return n.Packets
}

// readCounter reads a statistics counter of dev in ns.
func readCounter(ns, dev, name string) (uint64, error) {
	out, err := testnet.Try(ns, "cat", "/sys/class/net/"+dev+"/statistics/"+name)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(strings.TrimSpace(out), 10, 64)
}

// startGen blasts frames of size bytes (FCS excluded) from g to a with an
// AF_XDP socket of this package (copy mode, as veth has no zero-copy), from
// a thread pinned to cpu. The frames are written once into the
// generator's own UMEM; each frame goes round TX → completion → TX. When
// a's receive ring is full, veth pushes back and the kernel leaves the
// descriptors in the TX ring. (trafgen cannot be used: it dies on the
// first EAGAIN of that back pressure.)
func startGen(tb testing.TB, tp *l2Topo, cpu, size int) {
	tb.Helper()
	u, err := NewUmem(UmemConfig{NumFrames: 4096, FrameSize: 2048})
	if err != nil {
		tb.Fatal(err)
	}
	var p *Port
	if err := testnet.Do(tp.gen, func() error {
		var err error
		p, err = u.OpenPort(PortConfig{Interface: tp.gIf, RingSize: 2048, NeedWakeup: true})
		return err
	}); err != nil {
		u.Close()
		tb.Fatalf("generator: %v", err)
	}
	frame := testFrame(tp.aMAC, tp.gMAC, 1, 1, size)
	for a := 0; a < u.NumFrames(); a++ {
		copy(u.Area()[a*u.FrameSize():], frame)
	}
	g := &l2fwder{close: u.Close}
	s := p.Sockets()[0]
	err = g.run(cpu, func(ready func()) {
		ready()
		c := u.NewCache()
		var addrs [64]uint64
		var descs [64]Desc
		for !g.stopped.Load() {
			s.Complete(c)
			n := c.Get(addrs[:])
			for i, a := range addrs[:n] {
				descs[i] = Desc{Addr: a, Len: uint32(len(frame))}
			}
			sent := s.Transmit(descs[:n])
			c.PutBatch(addrs[sent:n])
		}
		for deadline := time.Now().Add(time.Second); s.Pending() > 0 && time.Now().Before(deadline); {
			s.Transmit(nil)
			s.Complete(c)
		}
		c.Flush()
	})
	if err != nil {
		u.Close()
		tb.Fatalf("generator: %v", err)
	}
	tb.Cleanup(func() {
		if err := g.stop(); err != nil {
			tb.Errorf("generator: %v", err)
		}
	})
	// Wait until frames flow.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if n, err := readCounter(tp.gen, tp.gIf, "tx_packets"); err == nil && n > 1000 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("generator sends nothing")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// BenchmarkL2fwd forwards a → b with the three forwarders (xsk-shared,
// xsk-copy, asavie), one after the other on the same topology and the
// same generator, for 64- and 1518-byte frames (FCS included; 60 and 1514
// bytes in the UMEM). The generator (and a's receive work, which veth
// does in the sender's context: XDP, the copy into the AF_XDP socket) runs
// on CPU 0; the forwarder runs on CPU 1, where its own sendto calls also
// do the transmit work (skb, copy, veth) and the sink's XDP
// count-and-drop. The forwarder is the bottleneck: offered-Mpps stays
// above Mpps.
//
// One op is one frame counted at the sink. Metrics: Mpps (forwarded),
// offered-Mpps (sent by the generator), fwd-cpu-ns/frame (CPU time of the
// forwarding thread, kernel work done in its context included, per
// forwarded frame). Runs vary by ±10% (veth, two shared cores): compare
// medians of several runs (docs/benchmarks.md), e.g.
//
//	for i in $(seq 10); do flock /tmp/xswitch-bench.lock go test -run '^$' -bench L2fwd -benchtime 2000000x ./xsk/; done
//
// XSK_L2FWD_IMPLS=asavie,xsk-shared runs a subset, in the order given.
func BenchmarkL2fwd(b *testing.B) {
	if runtime.NumCPU() < 2 {
		b.Skip("needs 2 CPUs: one for the generator, one for the forwarder")
	}
	for _, size := range []int{64, 1518} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) { benchL2fwd(b, size-4) })
	}
}

func benchL2fwd(b *testing.B, frameLen int) {
	const genCPU, fwdCPU = 0, 1
	tp := newL2Topo(b)
	sink := attachSinkCounter(b, tp.sink, tp.sIf)
	unpin, err := pinThread(genCPU) // this goroutine measures, off the forwarder's CPU
	if err != nil {
		b.Fatal(err)
	}
	defer unpin()
	startGen(b, tp, genCPU, frameLen)

	impls := l2fwdImpls
	if e := os.Getenv("XSK_L2FWD_IMPLS"); e != "" { // a subset, in this order
		impls = strings.Split(e, ",")
		for i, impl := range impls {
			if impl == "asavie" && i != len(impls)-1 {
				// Its Socket.Close leaves the four ring mappings in place,
				// and each holds the kernel socket: the queue stays bound
				// until the process exits.
				b.Fatal("XSK_L2FWD_IMPLS: asavie must come last: after it, nothing else can bind the queue")
			}
		}
	}
	for _, impl := range impls {
		var f *l2fwder
		var umems []*Umem
		var mpps float64
		ok := b.Run(impl, func(b *testing.B) {
			if f == nil {
				var err error
				if f, umems, err = startL2fwd(tp, impl, fwdCPU); err != nil {
					b.Fatal(err)
				}
				// Warm up: steady state before the first measurement.
				start := sinkFrames(b, sink)
				time.Sleep(300 * time.Millisecond)
				if sinkFrames(b, sink) == start {
					b.Fatalf("%s: nothing reaches the sink", impl)
				}
			}
			g0, err := readCounter(tp.gen, tp.gIf, "tx_packets")
			if err != nil {
				b.Fatal(err)
			}
			cpu0 := f.cpuTime()
			c0 := sinkFrames(b, sink)
			t0 := time.Now()
			b.ResetTimer()
			var c uint64
			for deadline := t0.Add(5*time.Second + time.Duration(b.N)*10*time.Microsecond); ; {
				time.Sleep(2 * time.Millisecond)
				if c = sinkFrames(b, sink); c-c0 >= uint64(b.N) {
					break
				}
				if time.Now().After(deadline) {
					b.Fatalf("%s: only %d of %d frames reached the sink in time", impl, c-c0, b.N)
				}
			}
			b.StopTimer()
			el := time.Since(t0).Seconds()
			cpu := f.cpuTime() - cpu0
			g1, err := readCounter(tp.gen, tp.gIf, "tx_packets")
			if err != nil {
				b.Fatal(err)
			}
			mpps = float64(c-c0) / el / 1e6
			b.ReportMetric(mpps, "Mpps")
			b.ReportMetric(float64(g1-g0)/el/1e6, "offered-Mpps")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(c-c0), "fwd-cpu-ns/frame")
		})
		if f != nil {
			fwd, drops := f.fwd.Load(), f.drops.Load()
			if f.stats != nil {
				b.Logf("%s: %s", impl, f.stats())
			}
			if err := f.stop(); err != nil {
				b.Fatalf("%s: stop: %v", impl, err)
			}
			for _, u := range umems {
				if free, lost := u.FreeFrames(), u.LostFrames(); free != u.NumFrames() || lost != 0 {
					b.Errorf("%s: after the run %d of %d frames free, %d lost", impl, free, u.NumFrames(), lost)
				}
			}
			b.Logf("%s: %.3f Mpps; forwarded %d, dropped for a full TX ring %d", impl, mpps, fwd, drops)
		}
		if !ok {
			return
		}
	}
}
