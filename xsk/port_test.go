package xsk

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"xswitch/internal/testnet"
)

// forwarder bridges two ports of one UMEM in both directions without a
// copy: what one port's socket receives is transmitted on the other
// port's socket of the same index.
type forwarder struct {
	u     *Umem
	ports [2]*Port
	stop  atomic.Bool
	wg    sync.WaitGroup
	txMu  [2][]sync.Mutex
	fwd   atomic.Uint64
}

func (f *forwarder) start() {
	for i := range 2 {
		f.txMu[i] = make([]sync.Mutex, len(f.ports[i].Sockets()))
	}
	for pi := range 2 {
		for qi, s := range f.ports[pi].Sockets() {
			f.wg.Add(1)
			go f.poll(pi, qi, s)
		}
	}
}

func (f *forwarder) poll(pi, qi int, s *Socket) {
	defer f.wg.Done()
	c := f.u.NewCache()
	out := f.ports[1-pi].Sockets()
	o := qi % len(out)
	var descs [64]Desc
	s.Refill(c)
	for !f.stop.Load() {
		n := s.Receive(descs[:])
		if n == 0 {
			f.txMu[1-pi][o].Lock()
			out[o].Complete(c)
			f.txMu[1-pi][o].Unlock()
			s.Refill(c)
			_ = s.Wait(10 * time.Millisecond)
			continue
		}
		f.txMu[1-pi][o].Lock()
		sent := out[o].Transmit(descs[:n])
		out[o].Complete(c)
		f.txMu[1-pi][o].Unlock()
		for _, d := range descs[sent:n] {
			c.Put(d.Addr)
		}
		f.fwd.Add(uint64(sent))
		s.Refill(c)
	}
	c.Flush()
}

func (f *forwarder) close(t *testing.T) {
	f.stop.Store(true)
	f.wg.Wait()
}

// TestSharedUmemForwarding: B and C, on one subnet, ping each other through
// A, where two veths are ports of one UMEM and frames cross between them
// by descriptor only. Every frame is back in the pool after close.
func TestSharedUmemForwarding(t *testing.T) {
	testnet.RequireRoot(t)
	n := testnet.New(t)
	a, b, c := n.NS("fa"), n.NS("fb"), n.NS("fc")
	n.Veth(a, "a0", b, "b0", 2)
	n.Veth(a, "a1", c, "c1", 2)
	n.Run(b, "ip", "addr", "add", "198.18.7.1/24", "dev", "b0")
	n.Run(c, "ip", "addr", "add", "198.18.7.2/24", "dev", "c1")

	var f forwarder
	var err error
	f.u, err = NewUmem(UmemConfig{NumFrames: 4 * 4 * 256 * 2, FrameSize: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer f.u.Close()
	err = testnet.Do(a, func() error {
		for i, dev := range []string{"a0", "a1"} {
			p, err := f.u.OpenPort(PortConfig{Interface: dev, Role: RoleLocal, RingSize: 256, NeedWakeup: true})
			if err != nil {
				return err
			}
			f.ports[i] = p
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range f.ports {
		m := p.Mode()
		t.Logf("port %s: %d sockets, zero-copy %v, xdp %s, link %s", p.Name(), len(p.Sockets()), m.ZeroCopy, m.XDP, m.Link)
		if len(p.Sockets()) != 2 {
			t.Fatalf("port %d: %d sockets, want one per queue (2)", i, len(p.Sockets()))
		}
	}
	f.start()
	out, err := testnet.Try(b, "ping", "-c", "20", "-i", "0.01", "-W", "1", "198.18.7.2")
	if err != nil || !strings.Contains(out, " 0% packet loss") {
		f.close(t)
		t.Fatalf("ping through the AF_XDP forwarder: %v\n%s", err, out)
	}
	f.close(t)
	if f.fwd.Load() < 40 {
		t.Errorf("forwarded %d frames, want at least 40 (20 requests + 20 replies)", f.fwd.Load())
	}
	for _, p := range f.ports {
		for _, s := range p.Sockets() {
			st, err := s.Stats()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s q%d: %+v", p.Name(), s.Queue(), st)
		}
	}
	for _, p := range f.ports {
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if free, lost := f.u.FreeFrames(), f.u.LostFrames(); free != f.u.NumFrames() || lost != 0 {
		t.Fatalf("after close: %d of %d frames free, %d lost", free, f.u.NumFrames(), lost)
	}
}
