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
	txBudget   int // PortConfig.TxBudget
}

// Stats are a socket's kernel statistics (XDP_STATISTICS) and its ring
// counters.
type Stats struct {
	// Kernel (XDP_STATISTICS).
	RxDropped       uint64 // dropped: no fill ring entry, frame too big (and, before Linux 5.9, RX ring full)
	RxInvalidDescs  uint64
	TxInvalidDescs  uint64
	RxRingFull      uint64 // dropped because the RX ring was full
	RxFillRingEmpty uint64 // times the fill ring was empty when a frame arrived
	TxRingEmpty     uint64 // times the kernel found the TX ring empty
	// RingStats says whether the kernel reported the last three (Linux
	// 5.9+ returns the longer struct xdp_statistics; older kernels the
	// first three fields only, with RX-ring-full drops inside RxDropped).
	RingStats bool
	// Ours.
	RxPackets  uint64 // descriptors taken from the RX ring
	RxTooLong  uint64 // multi-buffer packets Receive dropped: more than MaxFrags descriptors, or than its batch
	TxPackets  uint64 // descriptors put on the TX ring
	TxRingFull uint64 // descriptors Transmit could not place (ring full)
	Filled     uint64 // frames put on the fill ring
	Completed  uint64 // entries taken from the completion ring
	TxBadAddrs uint64 // of Completed: invalid descriptors outside the UMEM (no frame to give back)
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
	wakeup   bool   // bound with XDP_USE_NEED_WAKEUP
	sg       bool   // multi-buffer UMEM (XDP_USE_SG): packets are descriptor chains
	txBudget int    // copy mode: descriptors the kernel sends per sendto
	areaSize uint64 // bytes of the UMEM: completions at or past it name no frame

	rx, tx, fill, comp *ring

	// RX side.
	fillBuf   [cacheBatch]uint64
	rxPackets atomic.Uint64
	filled    atomic.Uint64
	rxTooLong atomic.Uint64
	dropping  bool // in the middle of dropping a too long packet (multi-buffer)
	// TX side (on its own cache lines).
	_          [64]byte
	txPackets  atomic.Uint64
	txFull     atomic.Uint64
	completed  atomic.Uint64
	badAddrs   atomic.Uint64
	kicks      atomic.Uint64
	kickErrors atomic.Uint64

	closed bool
}

// openSocket creates, sets up and binds one socket on u. The first socket
// of a UMEM registers it; the others share it (XDP_SHARED_UMEM) by naming
// any open socket of the UMEM bound to another device or queue: the
// kernel keeps the UMEM registered while any socket uses it, so no socket
// has to outlive the others.
func (u *Umem) openSocket(c socketConfig) (*Socket, error) {
	if c.ringSize == 0 || c.ringSize&(c.ringSize-1) != 0 {
		return nil, fmt.Errorf("ring size %d is not a power of two", c.ringSize)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil, errors.New("umem closed")
	}
	if len(u.sockets) == 0 {
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
	// A socket on the same device and queue would make the kernel share
	// its fill and completion rings too; every socket here has its own.
	var share *Socket
	for _, o := range u.sockets {
		if o.ifindex != c.ifindex || o.queue != c.queue {
			share = o
			break
		}
	}
	if share == nil {
		return nil, fmt.Errorf("ifindex %d queue %d already has a socket on this UMEM", c.ifindex, c.queue)
	}
	s, err := u.newSocket(c, 0, share)
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
	s := &Socket{u: u, fd: fd, ifindex: c.ifindex, queue: c.queue, sg: u.multiBuf, areaSize: uint64(u.numFrames * u.frameSize)}
	defer func() {
		if err != nil {
			s.release()
		}
	}()
	if share == nil {
		if err := u.register(fd); err != nil {
			return nil, err
		}
	}
	if err := s.mapRings(c.ringSize); err != nil {
		return nil, err
	}
	if err := s.bind(c, zc, share); err != nil {
		return nil, err
	}
	var opts struct{ flags uint32 }
	if _, err := getsockopt(fd, unix.XDP_OPTIONS, unsafe.Pointer(&opts), unsafe.Sizeof(opts)); err != nil {
		return nil, fmt.Errorf("XDP_OPTIONS: %w", err)
	}
	s.zeroCopy = opts.flags&unix.XDP_OPTIONS_ZEROCOPY != 0
	if err := s.setTxBudget(c); err != nil {
		return nil, err
	}
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

// register registers u's area as the UMEM of socket fd (XDP_UMEM_REG), with
// TX metadata and software checksums when u asks for them.
func (u *Umem) register(fd int) error {
	reg := unix.XDPUmemReg{
		Addr:     uint64(uintptr(unsafe.Pointer(&u.area[0]))),
		Len:      uint64(u.numFrames * u.frameSize),
		Size:     uint32(u.frameSize),
		Headroom: uint32(u.headroom),
	}
	if u.txMeta {
		reg.Flags |= unix.XDP_UMEM_TX_METADATA_LEN
		reg.Tx_metadata_len = TxMetadataLen
	}
	if u.txSwCsum {
		reg.Flags |= unix.XDP_UMEM_TX_SW_CSUM
	}
	if err := setsockopt(fd, unix.SOL_XDP, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		if u.txMeta && errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("register UMEM with TX metadata (XDP_UMEM_REG, flags %#x, tx_metadata_len %d): %w (needs Linux 6.11 or later; turn the TX checksum offload off)",
				reg.Flags, reg.Tx_metadata_len, err)
		}
		return fmt.Errorf("register UMEM (XDP_UMEM_REG): %w", err)
	}
	return nil
}

// mapRings sizes the socket's four rings to size entries and maps them.
func (s *Socket) mapRings(size uint32) error {
	for _, o := range []struct {
		opt  int
		name string
	}{{unix.XDP_UMEM_FILL_RING, "fill"}, {unix.XDP_UMEM_COMPLETION_RING, "completion"}, {unix.XDP_RX_RING, "RX"}, {unix.XDP_TX_RING, "TX"}} {
		if err := unix.SetsockoptInt(s.fd, unix.SOL_XDP, o.opt, int(size)); err != nil {
			return fmt.Errorf("size %s ring to %d: %w", o.name, size, err)
		}
	}
	var off unix.XDPMmapOffsets
	if _, err := getsockopt(s.fd, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off)); err != nil {
		return fmt.Errorf("XDP_MMAP_OFFSETS: %w", err)
	}
	dsz := unsafe.Sizeof(Desc{})
	var err error
	if s.fill, err = mapRing(s.fd, off.Fr, unix.XDP_UMEM_PGOFF_FILL_RING, size, 8, true); err != nil {
		return fmt.Errorf("fill ring: %w", err)
	}
	if s.comp, err = mapRing(s.fd, off.Cr, unix.XDP_UMEM_PGOFF_COMPLETION_RING, size, 8, false); err != nil {
		return fmt.Errorf("completion ring: %w", err)
	}
	if s.rx, err = mapRing(s.fd, off.Rx, unix.XDP_PGOFF_RX_RING, size, dsz, false); err != nil {
		return fmt.Errorf("RX ring: %w", err)
	}
	if s.tx, err = mapRing(s.fd, off.Tx, unix.XDP_PGOFF_TX_RING, size, dsz, true); err != nil {
		return fmt.Errorf("TX ring: %w", err)
	}
	return nil
}

// bind binds the socket to its device queue: sharing share's UMEM, or in
// mode zc with need_wakeup as c says. A queue still held by a socket being
// released is retried for bindBusyWait.
func (s *Socket) bind(c socketConfig, zc ZeroCopy, share *Socket) error {
	sa := &unix.SockaddrXDP{Ifindex: uint32(c.ifindex), QueueID: uint32(c.queue)}
	what := "copy mode"
	switch {
	case share != nil:
		sa.Flags = unix.XDP_SHARED_UMEM
		sa.SharedUmemFD = uint32(share.fd)
		what = "shared UMEM"
	case zc == ZeroCopyOn:
		sa.Flags = unix.XDP_ZEROCOPY
		what = "zero-copy"
	default:
		sa.Flags = unix.XDP_COPY
	}
	if share == nil && c.needWakeup {
		sa.Flags |= unix.XDP_USE_NEED_WAKEUP
	}
	// Multi-buffer is asked for by the socket that registers the UMEM; the
	// kernel keeps it in the UMEM (XDP_UMEM_SG_FLAG) and gives it to every
	// socket that shares the UMEM, which may not pass the flag (EINVAL).
	if share == nil && s.sg {
		sa.Flags |= unix.XDP_USE_SG
		what += ", multi-buffer"
	}
	// The kernel releases a closed socket's hold on its queue in deferred
	// work (tens of milliseconds): a port closed and opened again finds
	// the queue busy for that long.
	err := unix.Bind(s.fd, sa)
	for deadline := time.Now().Add(bindBusyWait); errors.Is(err, unix.EBUSY) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		err = unix.Bind(s.fd, sa)
	}
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.EBUSY) {
		err = fmt.Errorf("%w (another AF_XDP socket holds the queue)", err)
	} else if share == nil && s.sg {
		if hint := multiBufferHint(err, zc, runningKernel(), c.ifindex); hint != "" {
			err = fmt.Errorf("%w: %s", err, hint)
		}
	}
	return fmt.Errorf("bind ifindex %d queue %d (%s): %w", c.ifindex, c.queue, what, err)
}

// multiBufferHint explains why the kernel may have refused a bind with
// XDP_USE_SG, "" when the flag is not the likely cause: a kernel before
// 6.6 does not know the flag (EINVAL); in zero-copy mode a driver without
// zero-copy multi-buffer refuses it (EOPNOTSUPP), and one whose zero-copy
// buffers cannot hold the MTU refuses the bind (EINVAL). A driver without
// zero-copy at all refuses it too, and that is said by the caller. The
// device's features are read (netlink) only on this error path.
func multiBufferHint(err error, zc ZeroCopy, k kernelVersion, ifindex int) string {
	inval, notsupp := errors.Is(err, unix.EINVAL), errors.Is(err, unix.EOPNOTSUPP)
	if inval && k.valid() && k.before(6, 6) {
		return "AF_XDP multi-buffer (XDP_USE_SG) needs Linux 6.6 or later; turn multi-buffer off and use an MTU that fits a UMEM frame"
	}
	if zc != ZeroCopyOn || !inval && !notsupp {
		return ""
	}
	f, ferr := DeviceFeatures(ifindex)
	return zeroCopyMultiBufferHint(inval, f, ferr)
}

// zeroCopyMultiBufferHint is multiBufferHint's zero-copy case, given the
// device's features (or the error reading them).
func zeroCopyMultiBufferHint(inval bool, f Features, ferr error) string {
	switch {
	case ferr == nil && f.Known && !f.ZeroCopy():
		return "" // no zero-copy at all: not a multi-buffer matter
	case ferr == nil && f.ZCMaxSegs > 1 && inval:
		return fmt.Sprintf("the driver's zero-copy multi-buffer (at most %d buffers a packet) cannot hold the device's MTU; use zero_copy: off or a smaller MTU", f.ZCMaxSegs)
	}
	return "the driver has no AF_XDP multi-buffer in zero-copy mode; use zero_copy: off or a smaller MTU"
}

// KernelTxBudget is how many descriptors a copy-mode sendto transmits
// unless PortConfig.TxBudget says otherwise (the kernel's TX_BATCH_SIZE).
const KernelTxBudget = 32

// setTxBudget sets XDP_MAX_TX_SKB_BUDGET on a copy-mode socket when asked
// to; a budget that cannot be had (a kernel before 6.17) is an error.
func (s *Socket) setTxBudget(c socketConfig) error {
	s.txBudget = KernelTxBudget
	if s.zeroCopy || c.txBudget == 0 {
		return nil
	}
	v := uint32(c.txBudget)
	if err := setsockopt(s.fd, unix.SOL_XDP, unix.XDP_MAX_TX_SKB_BUDGET, unsafe.Pointer(&v), 4); err != nil {
		return fmt.Errorf("TX budget (XDP_MAX_TX_SKB_BUDGET=%d): %w (needs Linux 6.17 or later; use TxBudget 0)", c.txBudget, err)
	}
	s.txBudget = c.txBudget
	return nil
}

// bindBusyWait bounds how long a bind retries a queue that is still held
// by a socket being released.
const bindBusyWait = time.Second

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

// setsockopt sets an option whose value is a struct (x/sys/unix has no
// wrapper for XDP's).
func setsockopt(fd, level, opt int, p unsafe.Pointer, n uintptr) error {
	if _, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), n, 0); e != 0 {
		return e
	}
	return nil
}

// getsockopt reads the SOL_XDP option opt into the n bytes at p and
// returns how many the kernel wrote.
func getsockopt(fd, opt int, p unsafe.Pointer, n uintptr) (uintptr, error) {
	l := uint32(n)
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&l)), 0); e != 0 {
		return 0, e
	}
	return uintptr(l), nil
}

// Fd is the socket's file descriptor (for the XSKMAP and poll).
func (s *Socket) Fd() int { return s.fd }

// Queue is the device queue the socket is bound to.
func (s *Socket) Queue() int { return s.queue }

// Ifindex is the device the socket is bound to.
func (s *Socket) Ifindex() int { return s.ifindex }

// ZeroCopy says whether the kernel bound the socket in zero-copy mode.
func (s *Socket) ZeroCopy() bool { return s.zeroCopy }

// TxBudget is how many descriptors the kernel transmits per sendto in
// copy mode (PortConfig.TxBudget); 32, the kernel's, in zero-copy mode.
func (s *Socket) TxBudget() int { return s.txBudget }

// NeedWakeup says whether the socket uses XDP_USE_NEED_WAKEUP.
func (s *Socket) NeedWakeup() bool { return s.wakeup }

// Receive takes up to len(descs) descriptors from the RX ring.
//
// On a multi-buffer UMEM it returns whole packets only: a packet is a
// chain of descriptors, OptContinued on all but the last, and a batch that
// would end inside a packet ends before it instead (the rest stays in the
// ring for the next call). Pass len(descs) >= MaxFrags there. A packet
// longer than MaxFrags descriptors, or than the batch, is dropped: its
// frames go straight back to the fill ring and Stats.RxTooLong counts it.
// Dropping is the safe choice: part of a packet handed to a caller that
// expects whole ones would be forwarded as two broken frames, a packet of
// more than MaxFrags descriptors cannot be transmitted in copy mode, and
// leaving it at the head of the ring would stop the queue for good.
func (s *Socket) Receive(descs []Desc) int {
	if s.sg {
		return s.receiveChains(descs)
	}
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

// receiveChains is Receive on a multi-buffer socket. The kernel publishes
// its RX producer index only after whole packets (copy mode: xsk_flush
// after __xsk_rcv, which checks the ring has room for every descriptor
// first; zero-copy: the same check in xsk_rcv_zc, on kernels that have
// it), so the ring never ends inside a packet: only the batch can.
func (s *Socket) receiveChains(descs []Desc) int {
	for {
		if s.dropping && !s.dropHead() {
			return 0
		}
		want := uint32(len(descs))
		n := s.rx.avail(want)
		if n == 0 {
			return 0
		}
		// end: past the last whole packet; start: the current packet's first descriptor.
		end, start, tooLong := uint32(0), uint32(0), false
		for i := uint32(0); i < n; i++ {
			d := *s.rx.desc(s.rx.local + i)
			descs[i] = d
			if d.Options&OptContinued == 0 {
				end, start = i+1, i+1
			} else if i+1-start >= MaxFrags {
				tooLong = true // the packet from start has more than MaxFrags descriptors
				break
			}
		}
		if end > 0 {
			s.rx.release(end)
			s.rxPackets.Add(uint64(end))
			return int(end)
		}
		if !tooLong && n < want {
			return 0 // the rest of the packet is not published yet (not expected)
		}
		// The first packet is too long for the batch or for MaxFrags.
		s.dropping = true
	}
}

// dropHead drops the rest of the too long packet at the head of the RX
// ring, putting its frames on the fill ring (the kernel gets them back at
// once and Refill's bound holds: one frame in for each taken out). The
// bound also leaves the fill ring room for every RX entry, once the kernel
// has published its fill consumer index (right after its RX producer). It
// reports whether the packet is gone; false when the fill ring is full or
// the RX ring empty, for the next Receive to go on.
func (s *Socket) dropHead() bool {
	mask := ^uint64(s.u.frameSize - 1)
	for s.rx.avail(1) == 1 && s.fill.free(1) == 1 {
		d := *s.rx.desc(s.rx.local)
		*s.fill.addr(s.fill.local) = d.Addr & mask
		s.fill.submit(1)
		s.rx.release(1)
		s.filled.Add(1)
		s.rxPackets.Add(1)
		if d.Options&OptContinued == 0 {
			s.dropping = false
			s.rxTooLong.Add(1)
			return true
		}
	}
	return false
}

// Refill tops the fill ring up with frames from c and returns how many it
// added; it wakes the kernel when the ring asks for it.
//
// The socket never gives the kernel more receive frames (fill ring plus
// RX ring) than the RX ring holds: when a copy-mode RX ring is full, the
// kernel parks the frame it took for the packet on a private free list
// that no ring shows, and a frame parked there when the socket closes is
// lost. With the bound the RX ring always has room for the frame the
// kernel took; a burst beyond it is dropped for want of a fill entry
// (RxDropped, RxFillRingEmpty), which costs no frame.
func (s *Socket) Refill(c *Cache) int {
	total := 0
	for {
		// Frames given to the kernel's RX side and not yet received.
		limit := s.rx.size - (s.fill.local - s.rx.local)
		room := s.fill.free(min(uint32(len(s.fillBuf)), limit))
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
//
// Transmit(nil) only kicks, when descriptors wait in the TX ring. Invalid
// descriptors (outside the UMEM, crossing the end of their frame, length
// 0) are refused by the kernel (Stats.TxInvalidDescs) and come back
// through the completion ring like sent ones.
func (s *Socket) Transmit(descs []Desc) int {
	if len(descs) == 0 {
		if atomic.LoadUint32(s.tx.consumer) != s.tx.local && (!s.wakeup || s.tx.needWakeup()) {
			s.kickTx()
		}
		return 0
	}
	n := s.Enqueue(descs)
	if !s.wakeup || s.tx.needWakeup() {
		s.kickTx()
	}
	return n
}

// Enqueue places as many descriptors as fit on the TX ring without waking
// the kernel and returns how many it placed; the caller still owns the
// rest. A later Transmit (Transmit(nil) to only kick) sends them: a caller
// that coalesces kicks over several bursts must make that call.
//
// On a multi-buffer UMEM it places whole packets only (descriptor chains,
// OptContinued on all but the last): when the ring has room for part of a
// packet, it stops after the packet before, since the kernel would hold a
// partial packet and wait for its rest. descs must end with a whole
// packet (a trailing incomplete chain is never placed), and a packet may
// have at most MaxFrags descriptors: in copy mode the kernel drops a
// longer one (Stats.TxInvalidDescs; its frames are completed).
func (s *Socket) Enqueue(descs []Desc) int {
	n := s.tx.free(uint32(len(descs)))
	if s.sg && n > 0 && descs[n-1].Options&OptContinued != 0 {
		n = wholePackets(descs[:n])
	}
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
	return int(n)
}

// wholePackets is how many of descs (a chain that ends inside a packet)
// make whole packets: the descriptors up to the last one without
// OptContinued.
func wholePackets(descs []Desc) uint32 {
	for i := len(descs) - 1; i >= 0; i-- {
		if descs[i].Options&OptContinued == 0 {
			return uint32(i + 1)
		}
	}
	return 0
}

// kickTx wakes the kernel's TX. In copy mode the kernel sends at most TxBudget
// descriptors per sendto (and stops after an invalid one), answering
// EAGAIN when more remain, so it kicks again while the kernel makes
// progress and descriptors remain; it stops when a kick moves nothing
// (completion ring full, device queue stopped, ENOBUFS). Complete does not
// kick: the descriptors left wait for the next Transmit or for TxIdle,
// which the caller's idle path must call so that they leave without new
// traffic.
func (s *Socket) kickTx() {
	cons := atomic.LoadUint32(s.tx.consumer)
	for cons != s.tx.local {
		if !s.kick(true) {
			return
		}
		next := atomic.LoadUint32(s.tx.consumer)
		if next == cons {
			return
		}
		cons = next
	}
}

// kick makes the wake-up syscall; it reports whether to try again.
//
// A raw syscall: the call never blocks (MSG_DONTWAIT), but a copy-mode
// sendto of a burst can take longer than the 20 µs after which Go's sysmon
// takes the P of a thread in a syscall and hands it to another thread; the
// poller then has to win a P back when the call returns. That costs thread
// wake-ups on the poller's core per kick, when the kernel is slow already.
func (s *Socket) kick(tx bool) bool {
	s.kicks.Add(1)
	var e unix.Errno
	if tx {
		_, _, e = unix.RawSyscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	} else {
		_, _, e = unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
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
		a := *s.comp.addr(s.comp.local + i)
		if a >= s.areaSize {
			// An invalid TX descriptor outside the UMEM, given back by
			// the kernel: it names no frame.
			s.badAddrs.Add(1)
			continue
		}
		c.put1(a)
	}
	c.count.Store(int64(len(c.stack)))
	s.comp.release(n)
	s.completed.Add(uint64(n))
	return int(n)
}

// TxIdle is the TX side's work when there is nothing to send: it moves the
// completion ring's frames into c and, when descriptors still wait in the
// TX ring (a kick that found the completion ring full or the device queue
// stopped), kicks the kernel again, now that the completion ring has room.
// It returns how many entries it completed. Without it a transmit that
// stalled stays in the ring until the next burst.
func (s *Socket) TxIdle(c *Cache) int {
	n := s.Complete(c)
	s.Transmit(nil)
	return n
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
	st := Stats{
		RxPackets: s.rxPackets.Load(), RxTooLong: s.rxTooLong.Load(), TxPackets: s.txPackets.Load(), TxRingFull: s.txFull.Load(),
		Filled: s.filled.Load(), Completed: s.completed.Load(), TxBadAddrs: s.badAddrs.Load(), Kicks: s.kicks.Load(), KickErrors: s.kickErrors.Load(),
	}
	n, err := getsockopt(s.fd, unix.XDP_STATISTICS, unsafe.Pointer(&ks), unsafe.Sizeof(ks))
	if err != nil {
		return st, fmt.Errorf("XDP_STATISTICS: %w", err)
	}
	return st, st.setKernel(&ks, n)
}

// xdpStatisticsV1 is the size of the kernel's struct xdp_statistics before
// Linux 5.9 (rx_dropped, rx_invalid_descs, tx_invalid_descs).
const xdpStatisticsV1 = 3 * 8

// setKernel takes the kernel's XDP_STATISTICS, of which it wrote n bytes:
// the fields past the old struct's end only when it wrote them.
func (st *Stats) setKernel(ks *unix.XDPStatistics, n uintptr) error {
	if n < xdpStatisticsV1 {
		return fmt.Errorf("XDP_STATISTICS: the kernel returned %d bytes, want at least %d", n, xdpStatisticsV1)
	}
	st.RxDropped, st.RxInvalidDescs, st.TxInvalidDescs = ks.Rx_dropped, ks.Rx_invalid_descs, ks.Tx_invalid_descs
	if n >= unsafe.Sizeof(*ks) {
		st.RingStats = true
		st.RxRingFull, st.RxFillRingEmpty, st.TxRingEmpty = ks.Rx_ring_full, ks.Rx_fill_ring_empty_descs, ks.Tx_ring_empty_descs
	}
	return nil
}

// Close closes the socket and gives every frame it held back to the UMEM.
// The caller must have stopped using it (and removed it from the XSKMAP).
// Other sockets of the UMEM keep working: the kernel holds the UMEM while
// any socket uses it.
func (s *Socket) Close() error {
	u := s.u
	u.mu.Lock()
	defer u.mu.Unlock()
	if s.closed {
		return nil
	}
	for i, o := range u.sockets {
		if o == s {
			u.sockets = append(u.sockets[:i], u.sockets[i+1:]...)
			break
		}
	}
	s.release()
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

// txDrainWait bounds how long Close waits for frames the kernel took from
// the TX ring to show up in the completion ring.
const txDrainWait = 200 * time.Millisecond

// reclaim collects the frames the socket holds for the kernel, from the
// ring indices (the socket no longer receives: it left the XSKMAP):
//   - RX entries not yet received;
//   - fill entries the kernel has not taken. The kernel publishes its fill
//     consumer index late (per batch), so that index may still cover
//     frames that already went through the RX ring and on; the frames
//     really left in the fill ring are the newest (given) - (produced on
//     RX) entries: every frame the kernel takes from the fill ring comes
//     out in the RX ring (Refill's bound keeps RX-full drops, which would
//     park a frame in the kernel, from happening);
//   - completion entries not yet read (after waiting, bounded, for the
//     frames the kernel took from the TX ring and has not completed yet);
//   - TX entries the kernel has not taken.
//
// What remains of Pending is counted as lost (a zero-copy driver may hold
// frames; a kernel that does not complete invalid TX descriptors).
func (s *Socket) reclaim() []uint64 {
	mask := ^uint64(s.u.frameSize - 1)
	// Frames the kernel took for TX complete once the device frees them.
	for deadline := time.Now().Add(txDrainWait); atomic.LoadUint32(s.tx.consumer) != atomic.LoadUint32(s.comp.producer) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	seen := make(map[uint64]bool)
	back := make([]uint64, 0, max(s.Pending(), 0))
	add := func(a uint64) {
		if a >= s.areaSize {
			return // an invalid TX descriptor: it names no frame
		}
		a &= mask
		if !seen[a] {
			seen[a] = true
			back = append(back, a)
		}
	}
	rxProd := atomic.LoadUint32(s.rx.producer)
	for i := s.rx.local; i != rxProd; i++ {
		add(s.rx.desc(i).Addr)
	}
	inFill := s.fill.local - rxProd
	if published := s.fill.local - atomic.LoadUint32(s.fill.consumer); inFill > published {
		inFill = published // taken by the kernel but not produced on RX: lost below
	}
	for i := s.fill.local - inFill; i != s.fill.local; i++ {
		add(*s.fill.addr(i))
	}
	for i, prod := s.comp.local, atomic.LoadUint32(s.comp.producer); i != prod; i++ {
		add(*s.comp.addr(i))
	}
	noFrame := 0 // unsent descriptors outside the UMEM: counted in Pending, no frame
	for i := atomic.LoadUint32(s.tx.consumer); i != s.tx.local; i++ {
		if a := s.tx.desc(i).Addr; a < s.areaSize {
			add(a)
		} else {
			noFrame++
		}
	}
	if pending := s.Pending() - noFrame; pending > len(back) {
		s.u.lost.Add(uint64(pending - len(back)))
	}
	return back
}
