package xsk

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ZeroCopy selects the bind mode of a socket.
type ZeroCopy int

const (
	// ZeroCopyAuto tries XDP_ZEROCOPY and falls back to XDP_COPY.
	ZeroCopyAuto ZeroCopy = iota
	// ZeroCopyOn insists on zero-copy: an error where the driver lacks it.
	ZeroCopyOn
	// ZeroCopyOff binds in copy mode.
	ZeroCopyOff
)

// String gives the setting's configuration name ("auto", "on", "off").
func (z ZeroCopy) String() string {
	switch z {
	case ZeroCopyAuto:
		return "auto"
	case ZeroCopyOn:
		return "on"
	case ZeroCopyOff:
		return "off"
	}
	return fmt.Sprintf("ZeroCopy(%d)", int(z))
}

// socketConfig is what one socket needs from its port.
type socketConfig struct {
	ifindex    int
	queue      int
	ringSize   uint32
	zeroCopy   ZeroCopy
	needWakeup bool
	busyPoll   bool
}

// Stats are a socket's kernel statistics (XDP_STATISTICS) and its ring
// counters.
type Stats struct {
	// Kernel (XDP_STATISTICS).
	RxDropped       uint64 // dropped for reasons other than invalid descriptors
	RxInvalidDescs  uint64
	TxInvalidDescs  uint64
	RxRingFull      uint64 // dropped because the RX ring was full
	RxFillRingEmpty uint64 // times the fill ring was empty when a frame arrived
	TxRingEmpty     uint64 // times the kernel found the TX ring empty
	// Ours.
	RxPackets  uint64 // descriptors taken from the RX ring
	TxPackets  uint64 // descriptors put on the TX ring
	TxRingFull uint64 // descriptors Transmit could not place (ring full)
	Filled     uint64 // frames put on the fill ring
	Completed  uint64 // frames taken from the completion ring
	Kicks      uint64 // sendto/recvfrom wake-ups made
	KickErrors uint64 // wake-ups that failed with an unexpected error
}

// Socket is one AF_XDP socket bound to one queue of one device, with its
// own fill and completion rings on the shared UMEM.
//
// RX side (Receive, Refill, Wait) belongs to one goroutine; TX side
// (Transmit, Complete) to one goroutine at a time. The two sides may run
// concurrently.
type Socket struct {
	u        *Umem
	fd       int
	ifindex  int
	queue    int
	zeroCopy bool
	wakeup   bool // bound with XDP_USE_NEED_WAKEUP
	anchor   bool // its fd is the UMEM's shared_umem_fd

	rx, tx, fill, comp *ring

	// RX side.
	fillBuf   [cacheBatch]uint64
	rxPackets atomic.Uint64
	filled    atomic.Uint64
	// TX side (on its own cache lines).
	_          [64]byte
	txPackets  atomic.Uint64
	txFull     atomic.Uint64
	completed  atomic.Uint64
	kicks      atomic.Uint64
	kickErrors atomic.Uint64

	closed  bool
	retired bool // anchor closed by its owner, kept bound until the UMEM no longer needs it
}

// openSocket creates, sets up and binds one socket on u. The first socket
// of a UMEM registers it; the others share it.
func (u *Umem) openSocket(c socketConfig) (*Socket, error) {
	if c.ringSize == 0 || c.ringSize&(c.ringSize-1) != 0 {
		return nil, fmt.Errorf("ring size %d is not a power of two", c.ringSize)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil, errors.New("umem closed")
	}
	if u.anchor == nil {
		// Register the UMEM on this socket; zero-copy first when allowed.
		var firstErr error
		modes := []ZeroCopy{ZeroCopyOn, ZeroCopyOff}
		switch c.zeroCopy {
		case ZeroCopyOn:
			modes = modes[:1]
		case ZeroCopyOff:
			modes = modes[1:]
		}
		for _, m := range modes {
			s, err := u.newSocket(c, m, nil)
			if err == nil {
				s.anchor = true
				u.anchor = s
				u.sockets = append(u.sockets, s)
				return s, nil
			}
			if firstErr == nil {
				firstErr = err
			}
			if c.zeroCopy == ZeroCopyOn {
				return nil, fmt.Errorf("zero-copy asked for (zero_copy: on) but the driver refuses it: %w", err)
			}
		}
		return nil, firstErr
	}
	s, err := u.newSocket(c, 0, u.anchor)
	if err != nil {
		return nil, err
	}
	if c.zeroCopy == ZeroCopyOn && !s.zeroCopy {
		s.release()
		return nil, errors.New("zero-copy asked for (zero_copy: on) but the shared UMEM is in copy mode (its first socket could not have zero-copy)")
	}
	u.sockets = append(u.sockets, s)
	return s, nil
}

// newSocket makes one socket. With share nil it registers the UMEM and
// binds with the mode's flags; otherwise it binds with XDP_SHARED_UMEM
// (the kernel then takes zero-copy and need_wakeup from the UMEM).
func (u *Umem) newSocket(c socketConfig, zc ZeroCopy, share *Socket) (_ *Socket, err error) {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket(AF_XDP): %w", err)
	}
	s := &Socket{u: u, fd: fd, ifindex: c.ifindex, queue: c.queue}
	defer func() {
		if err != nil {
			s.release()
		}
	}()
	if share == nil {
		reg := unix.XDPUmemReg{
			Addr:     uint64(uintptr(unsafe.Pointer(&u.area[0]))),
			Len:      uint64(u.numFrames * u.frameSize),
			Size:     uint32(u.frameSize),
			Headroom: uint32(u.headroom),
		}
		if err := setsockopt(fd, unix.SOL_XDP, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
			return nil, fmt.Errorf("register UMEM (XDP_UMEM_REG): %w", err)
		}
	}
	for _, o := range []struct {
		opt  int
		name string
	}{{unix.XDP_UMEM_FILL_RING, "fill"}, {unix.XDP_UMEM_COMPLETION_RING, "completion"}, {unix.XDP_RX_RING, "RX"}, {unix.XDP_TX_RING, "TX"}} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, o.opt, int(c.ringSize)); err != nil {
			return nil, fmt.Errorf("size %s ring to %d: %w", o.name, c.ringSize, err)
		}
	}
	var off unix.XDPMmapOffsets
	olen := uint32(unsafe.Sizeof(off))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_MMAP_OFFSETS,
		uintptr(unsafe.Pointer(&off)), uintptr(unsafe.Pointer(&olen)), 0); e != 0 {
		return nil, fmt.Errorf("XDP_MMAP_OFFSETS: %w", e)
	}
	dsz := unsafe.Sizeof(Desc{})
	if s.fill, err = mapRing(fd, off.Fr, unix.XDP_UMEM_PGOFF_FILL_RING, c.ringSize, 8, true); err != nil {
		return nil, fmt.Errorf("fill ring: %w", err)
	}
	if s.comp, err = mapRing(fd, off.Cr, unix.XDP_UMEM_PGOFF_COMPLETION_RING, c.ringSize, 8, false); err != nil {
		return nil, fmt.Errorf("completion ring: %w", err)
	}
	if s.rx, err = mapRing(fd, off.Rx, unix.XDP_PGOFF_RX_RING, c.ringSize, dsz, false); err != nil {
		return nil, fmt.Errorf("RX ring: %w", err)
	}
	if s.tx, err = mapRing(fd, off.Tx, unix.XDP_PGOFF_TX_RING, c.ringSize, dsz, true); err != nil {
		return nil, fmt.Errorf("TX ring: %w", err)
	}
	sa := &unix.SockaddrXDP{Ifindex: uint32(c.ifindex), QueueID: uint32(c.queue)}
	if share != nil {
		sa.Flags = unix.XDP_SHARED_UMEM
		sa.SharedUmemFD = uint32(share.fd)
	} else {
		sa.Flags = unix.XDP_COPY
		if zc == ZeroCopyOn {
			sa.Flags = unix.XDP_ZEROCOPY
		}
		if c.needWakeup {
			sa.Flags |= unix.XDP_USE_NEED_WAKEUP
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		what := "copy mode"
		switch {
		case share != nil:
			what = "shared UMEM"
		case zc == ZeroCopyOn:
			what = "zero-copy"
		}
		return nil, fmt.Errorf("bind ifindex %d queue %d (%s): %w", c.ifindex, c.queue, what, err)
	}
	var opts struct{ flags uint32 }
	olen = uint32(unsafe.Sizeof(opts))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_OPTIONS,
		uintptr(unsafe.Pointer(&opts)), uintptr(unsafe.Pointer(&olen)), 0); e != 0 {
		return nil, fmt.Errorf("XDP_OPTIONS: %w", e)
	}
	s.zeroCopy = opts.flags&unix.XDP_OPTIONS_ZEROCOPY != 0
	if share != nil {
		s.wakeup = share.wakeup
	} else {
		s.wakeup = c.needWakeup
	}
	if c.busyPoll {
		if err := setBusyPoll(fd, int(c.ringSize)); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// setBusyPoll asks the kernel to busy-poll the device queue from our
// syscalls instead of waiting for interrupts.
func setBusyPoll(fd, budget int) error {
	for _, o := range []struct {
		opt  int
		val  int
		name string
	}{{unix.SO_PREFER_BUSY_POLL, 1, "SO_PREFER_BUSY_POLL"}, {unix.SO_BUSY_POLL, 20, "SO_BUSY_POLL"}, {unix.SO_BUSY_POLL_BUDGET, min(budget, 64), "SO_BUSY_POLL_BUDGET"}} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.opt, o.val); err != nil {
			return fmt.Errorf("busy polling (%s=%d): %w (unset busy_poll, or run with CAP_NET_ADMIN)", o.name, o.val, err)
		}
	}
	return nil
}

func setsockopt(fd, level, opt int, p unsafe.Pointer, n uintptr) error {
	if _, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), n, 0); e != 0 {
		return e
	}
	return nil
}

// Fd is the socket's file descriptor (for the XSKMAP and poll).
func (s *Socket) Fd() int { return s.fd }

// Queue is the device queue the socket is bound to.
func (s *Socket) Queue() int { return s.queue }

// Ifindex is the device the socket is bound to.
func (s *Socket) Ifindex() int { return s.ifindex }

// ZeroCopy says whether the kernel bound the socket in zero-copy mode.
func (s *Socket) ZeroCopy() bool { return s.zeroCopy }

// NeedWakeup says whether the socket uses XDP_USE_NEED_WAKEUP.
func (s *Socket) NeedWakeup() bool { return s.wakeup }

// Receive takes up to len(descs) descriptors from the RX ring.
func (s *Socket) Receive(descs []Desc) int {
	n := s.rx.avail(uint32(len(descs)))
	if n == 0 {
		return 0
	}
	for i := uint32(0); i < n; i++ {
		descs[i] = *s.rx.desc(s.rx.local + i)
	}
	s.rx.release(n)
	s.rxPackets.Add(uint64(n))
	return int(n)
}

// Refill tops the fill ring up with frames from c and returns how many it
// added; it wakes the kernel when the ring asks for it.
func (s *Socket) Refill(c *Cache) int {
	total := 0
	for {
		room := s.fill.free(uint32(len(s.fillBuf)))
		if room == 0 {
			break
		}
		got := c.Get(s.fillBuf[:room])
		for i := 0; i < got; i++ {
			*s.fill.addr(s.fill.local + uint32(i)) = s.fillBuf[i]
		}
		if got > 0 {
			s.fill.submit(uint32(got))
			total += got
		}
		if got < int(room) {
			break
		}
	}
	if total > 0 {
		s.filled.Add(uint64(total))
	}
	if s.wakeup && s.fill.needWakeup() {
		s.kick(false)
	}
	return total
}

// Transmit places as many descriptors as fit on the TX ring and wakes the
// kernel if needed. It returns how many it placed; the caller still owns
// the rest.
func (s *Socket) Transmit(descs []Desc) int {
	if len(descs) == 0 {
		return 0
	}
	n := s.tx.free(uint32(len(descs)))
	for i := uint32(0); i < n; i++ {
		*s.tx.desc(s.tx.local + i) = descs[i]
	}
	if n > 0 {
		s.tx.submit(n)
		s.txPackets.Add(uint64(n))
	}
	if int(n) < len(descs) {
		s.txFull.Add(uint64(len(descs) - int(n)))
	}
	if !s.wakeup || s.tx.needWakeup() {
		s.kickTx(int(n))
	}
	return int(n)
}

// kickTx wakes the kernel's TX. In copy mode the kernel sends at most 32
// descriptors per sendto and answers EAGAIN when more remain, so it is
// called until the ring is drained (bounded).
func (s *Socket) kickTx(n int) {
	for tries := n/32 + 2; tries > 0; tries-- {
		if !s.kick(true) {
			return
		}
		if atomic.LoadUint32(s.tx.consumer) == s.tx.local {
			return
		}
	}
}

// kick makes the wake-up syscall; it reports whether to try again.
func (s *Socket) kick(tx bool) bool {
	s.kicks.Add(1)
	var e unix.Errno
	if tx {
		_, _, e = unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	} else {
		_, _, e = unix.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	}
	switch e {
	case 0:
		return true
	case unix.EAGAIN, unix.EBUSY:
		return true
	case unix.ENOBUFS, unix.ENETDOWN, unix.EINTR:
		return false
	}
	s.kickErrors.Add(1)
	return false
}

// Complete moves the completion ring's frames into c and returns how many.
func (s *Socket) Complete(c *Cache) int {
	n := s.comp.avail(s.comp.size)
	if n == 0 {
		return 0
	}
	for i := uint32(0); i < n; i++ {
		c.put1(*s.comp.addr(s.comp.local + i))
	}
	c.count.Store(int64(len(c.stack)))
	s.comp.release(n)
	s.completed.Add(uint64(n))
	return int(n)
}

// Wait sleeps in poll() until the RX ring has frames or the timeout passes.
func (s *Socket) Wait(timeout time.Duration) error {
	fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}}
	_, err := unix.Poll(fds, int(timeout/time.Millisecond))
	if err != nil {
		return fmt.Errorf("poll AF_XDP socket: %w", err)
	}
	return nil
}

// Pending is the number of frames the socket holds on behalf of the kernel
// (fill ring and TX in flight) and not yet given back.
func (s *Socket) Pending() int {
	return int(s.filled.Load() - s.rxPackets.Load() + s.txPackets.Load() - s.completed.Load())
}

// Stats reads the kernel's statistics and the ring counters.
func (s *Socket) Stats() (Stats, error) {
	var ks unix.XDPStatistics
	l := uint32(unsafe.Sizeof(ks))
	st := Stats{
		RxPackets: s.rxPackets.Load(), TxPackets: s.txPackets.Load(), TxRingFull: s.txFull.Load(),
		Filled: s.filled.Load(), Completed: s.completed.Load(), Kicks: s.kicks.Load(), KickErrors: s.kickErrors.Load(),
	}
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s.fd), unix.SOL_XDP, unix.XDP_STATISTICS,
		uintptr(unsafe.Pointer(&ks)), uintptr(unsafe.Pointer(&l)), 0); e != 0 {
		return st, fmt.Errorf("XDP_STATISTICS: %w", e)
	}
	st.RxDropped, st.RxInvalidDescs, st.TxInvalidDescs = ks.Rx_dropped, ks.Rx_invalid_descs, ks.Tx_invalid_descs
	st.RxRingFull, st.RxFillRingEmpty, st.TxRingEmpty = ks.Rx_ring_full, ks.Rx_fill_ring_empty_descs, ks.Tx_ring_empty_descs
	return st, nil
}

// Close closes the socket and gives every frame it held back to the UMEM.
// The caller must have stopped using it (and removed it from the XSKMAP).
// The UMEM's first socket stays bound, idle, while other sockets share
// the UMEM through it; it is released with the last of them.
func (s *Socket) Close() error {
	u := s.u
	u.mu.Lock()
	defer u.mu.Unlock()
	if s.closed || s.retired {
		return nil
	}
	for i, o := range u.sockets {
		if o == s {
			u.sockets = append(u.sockets[:i], u.sockets[i+1:]...)
			break
		}
	}
	if s.anchor && len(u.sockets) > 0 {
		s.retired = true
		return nil
	}
	s.release()
	if a := u.anchor; a != nil && a != s && a.retired && len(u.sockets) == 0 {
		a.release()
	}
	if len(u.sockets) == 0 {
		u.anchor = nil
	}
	return nil
}

// release unmaps the rings, closes the fd and gives back the frames found
// in the rings (u.mu held, or the socket never published).
func (s *Socket) release() {
	if s.closed {
		return
	}
	s.closed = true
	var back []uint64
	if s.fill != nil && s.rx != nil && s.comp != nil && s.tx != nil {
		back = s.reclaim()
	}
	for _, r := range []*ring{s.fill, s.comp, s.rx, s.tx} {
		r.unmap()
	}
	if s.fd >= 0 {
		_ = unix.Close(s.fd)
		s.fd = -1
	}
	if s.u.area != nil {
		s.u.free = append(s.u.free, back...)
	}
}

// reclaim collects the frames held in the four rings: fill entries the
// kernel has not consumed, RX and completion entries we have not read, TX
// entries the kernel has not sent. A frame seen twice (a fill entry the
// kernel took but had not yet published as consumed) is counted once;
// frames the kernel keeps elsewhere are counted as lost.
func (s *Socket) reclaim() []uint64 {
	mask := ^uint64(s.u.frameSize - 1)
	seen := make(map[uint64]bool)
	var back []uint64
	add := func(a uint64) {
		a &= mask
		if a < uint64(s.u.numFrames*s.u.frameSize) && !seen[a] {
			seen[a] = true
			back = append(back, a)
		}
	}
	for i := s.rx.local; i != atomic.LoadUint32(s.rx.producer); i++ {
		add(s.rx.desc(i).Addr)
	}
	for i := s.comp.local; i != atomic.LoadUint32(s.comp.producer); i++ {
		add(*s.comp.addr(i))
	}
	for i := atomic.LoadUint32(s.tx.consumer); i != s.tx.local; i++ {
		add(s.tx.desc(i).Addr)
	}
	// Newest fill entries first: if the count says some entries are stale
	// (taken by the kernel before it published its consumer index), the
	// stale ones are the oldest and are the ones cut off below.
	for i, cons := s.fill.local, atomic.LoadUint32(s.fill.consumer); i != cons; {
		i--
		add(*s.fill.addr(i))
	}
	if pending := s.Pending(); pending > len(back) {
		s.u.lost.Add(uint64(pending - len(back)))
	} else if pending < len(back) {
		back = back[:max(pending, 0)]
	}
	return back
}
