package gen

import (
	"fmt"
	"net/netip"
	"time"

	"xswitch/xsk"
)

// noRXAddr is the tunnel address of a KernelRX generator's steering
// program: no frame is sent to it, so every frame goes to the kernel.
var noRXAddr = netip.MustParseAddr("198.19.255.254")

// xskTx transmits on the first socket of an AF_XDP port. Every UMEM frame
// holds one prebuilt frame for good; completed addresses go back into a FIFO
// and are submitted again unchanged, so the flows keep their order.
type xskTx struct {
	u      *xsk.Umem
	p      *xsk.Port
	s      *xsk.Socket
	cache  *xsk.Cache
	fifo   []uint64 // free (completed) frame addresses, a ring
	head   uint64   // next to send
	tail   uint64   // next free slot
	mask   uint64
	descs  []xsk.Desc
	tmp    []uint64
	length uint32
	total  int // frames owned by the generator
}

func openXSK(c *Config) (txer, error) {
	u, err := xsk.NewUmem(xsk.UmemConfig{NumFrames: c.UmemFrames, FrameSize: 2048})
	if err != nil {
		return nil, fmt.Errorf("gen: %w", err)
	}
	zc := xsk.ZeroCopyAuto
	switch c.ZeroCopy {
	case "on":
		zc = xsk.ZeroCopyOn
	case "off":
		zc = xsk.ZeroCopyOff
	}
	xm := xsk.XDPAuto
	switch c.XDPMode {
	case "native":
		xm = xsk.XDPNative
	case "generic":
		xm = xsk.XDPGeneric
	}
	pc := xsk.PortConfig{Interface: c.Interface, Role: xsk.RoleLocal, RingSize: c.RingSize,
		ZeroCopy: zc, XDPMode: xm, Logger: c.Logger}
	if c.KernelRX {
		// The underlay role steers only Geneve to its local addresses to
		// the socket: with an address nobody sends to, nothing.
		pc.Role, pc.LocalIPs = xsk.RoleUnderlay, []netip.Addr{noRXAddr}
	}
	p, err := u.OpenPort(pc)
	if err != nil {
		u.Close()
		return nil, fmt.Errorf("gen: %w", err)
	}
	t := &xskTx{u: u, p: p, s: p.Sockets()[0], cache: u.NewCache(), length: uint32(len(c.Frames[0]))}
	size := uint64(1)
	for size < uint64(c.UmemFrames) {
		size <<= 1
	}
	t.fifo = make([]uint64, size)
	t.mask = size - 1
	t.descs = make([]xsk.Desc, c.Burst)
	t.tmp = make([]uint64, 256)
	// Take every frame the cache gives and write one flow's frame into each.
	for {
		n := t.cache.Get(t.tmp)
		if n == 0 {
			break
		}
		for _, a := range t.tmp[:n] {
			buf := u.Frame(a)
			off := int(a - t.frameStart(a))
			if off+len(c.Frames[0]) > len(buf) {
				t.close()
				return nil, fmt.Errorf("gen: frame of %d bytes does not fit a UMEM frame at offset %d (frame size %d)", len(c.Frames[0]), off, len(buf))
			}
			copy(buf[off:], c.Frames[t.total%len(c.Frames)])
			t.fifo[t.tail&t.mask] = a
			t.tail++
			t.total++
		}
	}
	if t.total < c.Burst {
		t.close()
		return nil, fmt.Errorf("gen: only %d UMEM frames available, need at least a burst (%d)", t.total, c.Burst)
	}
	return t, nil
}

// frameStart is the chunk-aligned start of the frame containing addr.
func (t *xskTx) frameStart(addr uint64) uint64 {
	fs := uint64(t.u.FrameSize())
	return addr / fs * fs
}

func (t *xskTx) reap() {
	if t.s.Complete(t.cache) == 0 {
		return
	}
	for {
		n := t.cache.Get(t.tmp)
		for _, a := range t.tmp[:n] {
			t.fifo[t.tail&t.mask] = a
			t.tail++
		}
		if n < len(t.tmp) {
			return
		}
	}
}

func (t *xskTx) send(n int) int {
	t.reap()
	avail := int(t.tail - t.head)
	if n > avail {
		n = avail
	}
	for i := 0; i < n; i++ {
		t.descs[i] = xsk.Desc{Addr: t.fifo[(t.head+uint64(i))&t.mask], Len: t.length}
	}
	m := t.s.Transmit(t.descs[:n])
	t.head += uint64(m)
	return m
}

func (t *xskTx) drain(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for int(t.tail-t.head) < t.total {
		t.s.Transmit(nil) // kick the kernel if it waits for a wakeup
		t.reap()
		if time.Now().After(deadline) {
			return fmt.Errorf("%d frames not completed after %v", t.total-int(t.tail-t.head), timeout)
		}
		time.Sleep(100 * time.Microsecond)
	}
	return nil
}

func (t *xskTx) mode() string {
	m := t.p.Mode()
	zc := "copy"
	if m.ZeroCopy {
		zc = "zero-copy"
	}
	return fmt.Sprintf("af_xdp %s, xdp %s", zc, m.XDP)
}

func (t *xskTx) close() error {
	err := t.p.Close()
	if e := t.u.Close(); err == nil {
		err = e
	}
	return err
}
