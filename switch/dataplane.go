package vswitch

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"xswitch/offload"
	"xswitch/xsk"
)

// desc is an AF_XDP descriptor (struct xdp_desc).
type desc = xsk.Desc

// txQueue is the transmit side of one AF_XDP socket. Pollers that send to
// the socket serialise on mu, once per batch (Transmit + Complete).
type txQueue struct {
	mu   sync.Mutex
	sock *xsk.Socket
	_    [48]byte // keep neighbouring queues' locks off one cache line
}

// idleWait is how long an idle poller sleeps in poll() (it also bounds how
// long a stop takes).
const idleWait = 20 * time.Millisecond

// dataPlane holds the UMEM, the AF_XDP ports and the pollers.
type dataPlane struct {
	s          *Switch
	umem       *xsk.Umem
	area       []byte
	xports     map[int]*xsk.Port // by port id
	pollers    []*poller
	tapPollers []*tapPoller
	all        []*core
	stop       atomic.Bool
	wg         sync.WaitGroup
}

// poller serves one queue of one AF_XDP port.
type poller struct {
	dp    *dataPlane
	port  *port
	sock  *xsk.Socket
	cache *xsk.Cache
	core  *core
	cpu   int
	txIdx int
	dests []int // AF_XDP port ids this poller may transmit to
	hist  batchHist
}

// tapPoller reads an internal port.
type tapPoller struct {
	dp    *dataPlane
	port  *port
	cache *xsk.Cache
	core  *core
	txIdx int
	dests []int
	buf   []byte // one read: virtio-net header and a frame of up to 64 KB
	seg   offload.Segmenter
	batch []desc // frames read (segments) to forward
	hist  batchHist
}

func parseZeroCopy(s string) xsk.ZeroCopy {
	switch s {
	case "on":
		return xsk.ZeroCopyOn
	case "off":
		return xsk.ZeroCopyOff
	}
	return xsk.ZeroCopyAuto
}

func parseXDPMode(s string) xsk.XDPMode {
	switch s {
	case "native":
		return xsk.XDPNative
	case "generic":
		return xsk.XDPGeneric
	}
	return xsk.XDPAuto
}

func (d *dataPlane) open(s *Switch) error {
	d.s = s
	d.xports = map[int]*xsk.Port{}
	c := s.cfg
	f := s.f
	type spec struct {
		p     *port
		pc    xsk.PortConfig
		ring  int
		q     int
		field string // where the port's options are configured
	}
	var specs []spec
	nsock := 0
	for _, p := range f.ports {
		var po PortOptions
		var pc xsk.PortConfig
		var field string
		switch p.kind {
		case kindUnderlay:
			po, field = c.Underlay.PortOptions, "underlay"
			pc = xsk.PortConfig{Interface: p.name, Role: xsk.RoleUnderlay, LocalIPs: append([]netip.Addr(nil), s.underlayLocal...)}
		case kindLocal:
			po, field = c.Ports, "port_options"
			pc = xsk.PortConfig{Interface: p.name, Role: xsk.RoleLocal}
		default:
			continue
		}
		q := po.Queues
		if q == 0 {
			n, err := xsk.QueueCount(p.name)
			if err != nil {
				return fmt.Errorf("port %s: %w", p.name, err)
			}
			q = n
		}
		ring := po.RingSize
		if ring == 0 {
			ring = 2048
		}
		pc.Queues, pc.RingSize = q, ring
		pc.ZeroCopy, pc.XDPMode = parseZeroCopy(po.ZeroCopy), parseXDPMode(po.XDPMode)
		pc.NeedWakeup, pc.BusyPoll, pc.Logger = true, c.BusyPoll, s.log
		specs = append(specs, spec{p: p, pc: pc, ring: ring, q: q, field: field})
		nsock += q
	}
	nt := 0
	for _, b := range f.bridges {
		if b.internal != nil {
			nt++
		}
	}
	if len(specs) == 0 && nt == 0 {
		return nil
	}
	frames := c.UMEM.Frames
	if frames == 0 {
		// Every socket's fill ring full, as many in flight on TX, and a
		// working stock per poller for flood copies and TAP reads.
		frames = 4096
		need := 0
		for _, sp := range specs {
			need += sp.q * sp.ring * 2
		}
		need += (nsock + nt) * 512
		for frames < need {
			frames *= 2
		}
	}
	u, err := xsk.NewUmem(xsk.UmemConfig{NumFrames: frames, FrameSize: c.UMEM.FrameSize, HugePages: c.UMEM.HugePages})
	if err != nil {
		return fmt.Errorf("UMEM of %d frames of %d bytes: %w", frames, c.UMEM.FrameSize, err)
	}
	d.umem = u
	d.area = u.Area()
	for _, sp := range specs {
		xp, err := u.OpenPort(sp.pc)
		if errors.Is(err, xsk.ErrNativeUnavailable) {
			return fmt.Errorf("open the %s port: %w; set %s.xdp_mode to auto or generic", sp.p.kind, err, sp.field)
		}
		if err != nil {
			return fmt.Errorf("open the %s port: %w", sp.p.kind, err)
		}
		d.xports[sp.p.id] = xp
		for _, sock := range xp.Sockets() {
			sp.p.tx = append(sp.p.tx, &txQueue{sock: sock})
		}
		m := xp.Mode()
		s.log.Info("AF_XDP port open", zap.String("port", sp.p.name), zap.Stringer("kind", sp.p.kind), zap.Int("queues", len(xp.Sockets())),
			zap.String("xdp", m.XDP), zap.String("link", m.Link), zap.Bool("zero_copy", m.ZeroCopy), zap.Strings("offloads", portOffloads(sp.p.kind)))
	}
	// Pollers: one per socket, pinned round-robin to the configured CPUs.
	var xdpPorts []int
	for _, p := range f.ports {
		if len(p.tx) > 0 {
			xdpPorts = append(xdpPorts, p.id)
		}
	}
	i := 0
	for _, p := range f.ports {
		for _, tq := range p.tx {
			cpu := -1
			if len(c.CPUs) > 0 {
				cpu = c.CPUs[i%len(c.CPUs)]
			}
			pl := &poller{dp: d, port: p, sock: tq.sock, cache: u.NewCache(), cpu: cpu, txIdx: i, dests: xdpPorts,
				core: newCore(f, d.area, u.FrameSize(), 4*maxBurst)}
			d.pollers = append(d.pollers, pl)
			d.all = append(d.all, pl.core)
			i++
		}
	}
	for _, b := range f.bridges {
		if b.internal == nil {
			continue
		}
		tp := &tapPoller{dp: d, port: b.internal, cache: u.NewCache(), txIdx: i, dests: xdpPorts,
			core: newCore(f, d.area, u.FrameSize(), 4*maxBurst),
			buf:  make([]byte, offload.VnetHdrLen+offload.MaxFrameLen), batch: make([]desc, 0, maxBurst)}
		d.tapPollers = append(d.tapPollers, tp)
		d.all = append(d.all, tp.core)
		i++
	}
	return nil
}

func (d *dataPlane) start(s *Switch) error {
	if s.cfg.BusyPoll {
		// Measured (docs/benchmarks.md): with a port's NAPI thread on a
		// poller's CPU, spinning pollers starve it, down to ~0.02 Mpps.
		s.log.Warn("busy_poll: pollers spin and never yield their CPUs; keep the ports' interrupts and NAPI threads off them",
			zap.Ints("poller_cpus", s.cfg.CPUs))
	}
	for _, p := range d.pollers {
		// Stock the fill ring before traffic arrives.
		p.sock.Refill(p.cache)
	}
	for _, p := range d.pollers {
		d.wg.Add(1)
		go p.run()
	}
	for _, tp := range d.tapPollers {
		d.wg.Add(1)
		go tp.run()
	}
	return nil
}

func (d *dataPlane) stopPollers() error {
	d.stop.Store(true)
	d.wg.Wait()
	return nil
}

func (d *dataPlane) close() error {
	var errs []error
	for id, xp := range d.xports {
		if err := xp.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close port %s: %w", d.s.f.ports[id].name, err))
		}
	}
	d.xports = nil
	if d.umem != nil {
		if err := d.umem.Close(); err != nil {
			errs = append(errs, fmt.Errorf("release UMEM: %w", err))
		}
		d.umem = nil
	}
	return errors.Join(errs...)
}

func (d *dataPlane) cores() []*core { return d.all }

// umemStatus reads d.umem once: the caller holds Switch.mu against Close,
// and one read keeps a nil check and its use from seeing two values.
func (d *dataPlane) umemStatus() UMEMStatus {
	u := d.umem
	if u == nil {
		return UMEMStatus{}
	}
	return UMEMStatus{Frames: u.NumFrames(), FrameSize: u.FrameSize(), Headroom: u.Headroom(), FreeFrames: u.FreeFrames()}
}

func (d *dataPlane) portStatus(p *port) PortStatus {
	ps := PortStatus{Name: p.name, Kind: p.kind.String()}
	xp := d.xports[p.id]
	if xp == nil {
		ps.Copy = "none"
		return ps
	}
	m := xp.Mode()
	ps.Ifindex, ps.XDP, ps.Link, ps.ZeroCopy, ps.Queues = xp.Ifindex(), m.XDP, m.Link, m.ZeroCopy, len(xp.Sockets())
	ps.Offloads = portOffloads(p.kind)
	ps.Copy = "copy"
	if m.ZeroCopy {
		ps.Copy = "zero-copy"
	} else {
		ps.TxBudget = xp.Sockets()[0].TxBudget()
	}
	for _, pl := range d.pollers {
		if pl.port == p {
			ps.Pollers = append(ps.Pollers, PollerStatus{Queue: pl.sock.Queue(), CPU: pl.cpu})
		}
	}
	return ps
}

// topUp gives the core at least one burst of free frames for flood copies
// and TAP reads.
func topUp(c *core, cache *xsk.Cache) {
	if n := len(c.free); n < maxBurst {
		got := cache.Get(c.free[n : n+maxBurst])
		c.free = c.free[:n+got]
	}
}

// rebalance hands surplus free frames back to the cache.
func rebalance(c *core, cache *xsk.Cache) {
	if len(c.free) > 2*maxBurst {
		cache.PutBatch(c.free[maxBurst:])
		c.free = c.free[:maxBurst]
	}
}

// flush transmits the core's pending lists: per destination port, one lock
// of one of its sockets, Transmit, Complete into this poller's cache.
func flush(c *core, cache *xsk.Cache, dests []int, txIdx int) {
	for _, id := range dests {
		q := c.pend[id]
		if len(q) == 0 {
			continue
		}
		p := c.f.ports[id]
		tq := p.tx[txIdx%len(p.tx)]
		tq.mu.Lock()
		sent := tq.sock.Transmit(q)
		if cp := p.capture.Load(); cp != nil {
			// Before Complete, under the lock: no poller can have taken
			// the sent frames back and reused them yet.
			for _, d := range q[:sent] {
				c.capture(cp, c.area[d.Addr:d.Addr+uint64(d.Len)], true)
			}
		}
		tq.sock.Complete(cache)
		tq.mu.Unlock()
		pc := &c.ctr[id]
		var bytes uint64
		for i := 0; i < sent; i++ {
			bytes += uint64(q[i].Len)
		}
		pc.txPackets += uint64(sent)
		pc.txBytes += bytes
		for i := sent; i < len(q); i++ {
			pc.drops[dropTxFull]++
			c.release(q[i].Addr &^ (c.fsize - 1))
		}
		c.pend[id] = q[:0]
	}
}

func (p *poller) run() {
	defer p.dp.wg.Done()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	log := p.dp.s.log
	if p.cpu >= 0 {
		var set unix.CPUSet
		set.Set(p.cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			log.Warn("cannot pin poller", zap.String("port", p.port.name), zap.Int("queue", p.sock.Queue()), zap.Int("cpu", p.cpu), zap.Error(err))
		}
	}
	if p.dp.s.cfg.PollerPolicy == PolicyBatch {
		// The thread is locked: sched_setattr(0) sets its policy only.
		attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_BATCH}
		if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
			log.Warn("cannot set the poller's scheduling policy", zap.String("port", p.port.name), zap.String("policy", PolicyBatch), zap.Error(err))
		}
	}
	if err := p.loop(); err != nil {
		// The switch cannot serve this queue any more: stop the process
		// rather than run on with a port silently gone.
		p.dp.s.fail(fmt.Errorf("%s port %s queue %d: %w", p.port.kind, p.port.name, p.sock.Queue(), err))
	}
	c := p.core
	p.cache.PutBatch(c.free)
	c.free = c.free[:0]
	p.cache.Flush()
}

// maxPollErrors is how many failed poll() calls in a row a poller tolerates
// (a transient ENOMEM passes) before it gives up.
const maxPollErrors = 10

// errCheckEvery is how many idle rounds of a busy-polling poller pass
// between two checks of its socket's error (a syscall).
const errCheckEvery = 1024

// loop receives and forwards until the data plane stops, or returns the
// error that keeps it from going on.
func (p *poller) loop() error {
	c := p.core
	log := p.dp.s.log
	clock := p.dp.s.f.clock
	busy := p.dp.s.cfg.BusyPoll
	pollErrs, idle := 0, 0
	var rx [maxBurst]desc
	for !p.dp.stop.Load() {
		n := p.sock.Receive(rx[:])
		if n == 0 {
			p.sock.Refill(p.cache)
			p.completeIdle()
			if !busy {
				if err := p.sock.Wait(idleWait); err != nil && !errors.Is(err, unix.EINTR) {
					if pollErrs++; pollErrs >= maxPollErrors {
						return fmt.Errorf("%w (%d times in a row)", err, pollErrs)
					}
					log.Warn("poll", zap.String("port", p.port.name), zap.Error(err))
					time.Sleep(idleWait)
				} else {
					pollErrs = 0
				}
			}
			if idle++; !busy || idle%errCheckEvery == 0 {
				if err := socketError(p.sock.Fd()); err != nil {
					return err
				}
			}
			continue
		}
		p.hist.add(n)
		c.now = clock.Tick()
		topUp(c, p.cache)
		c.forward(p.port, rx[:n])
		c.flushTAPs()
		flush(c, p.cache, p.dests, p.txIdx)
		rebalance(c, p.cache)
		p.sock.Refill(p.cache)
	}
	return nil
}

// socketError returns the pending error of an AF_XDP socket: the kernel
// sets ENETDOWN when the device under it is unregistered (deleted), after
// which no frame ever arrives.
func socketError(fd int) error {
	e, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return fmt.Errorf("read socket error (SO_ERROR): %w", err)
	}
	if e != 0 {
		return fmt.Errorf("socket error: %w (was the interface deleted?)", unix.Errno(e))
	}
	return nil
}

// completeIdle drains completion rings of the sockets this poller sends
// on, so that frames do not stay parked there when traffic stops, and
// kicks TX descriptors a stalled kick left in a ring (TxIdle), which
// would otherwise wait for the next burst.
func (p *poller) completeIdle() {
	for _, id := range p.dests {
		pt := p.core.f.ports[id]
		tq := pt.tx[p.txIdx%len(pt.tx)]
		if tq.mu.TryLock() {
			tq.sock.TxIdle(p.cache)
			tq.mu.Unlock()
		}
	}
}

func (tp *tapPoller) run() {
	defer tp.dp.wg.Done()
	if err := tp.loop(); err != nil {
		tp.dp.s.fail(fmt.Errorf("internal port %s: %w", tp.port.name, err))
	}
	c := tp.core
	tp.cache.PutBatch(c.free)
	c.free = c.free[:0]
	tp.cache.Flush()
}

// loop reads the TAP and forwards until the data plane stops, or returns
// the error that keeps it from going on.
func (tp *tapPoller) loop() error {
	c := tp.core
	pfd := []unix.PollFd{{Fd: int32(tp.port.fd), Events: unix.POLLIN}}
	pollErrs := 0
	for !tp.dp.stop.Load() {
		c.now = tp.dp.s.f.clock.Tick()
		if err := tp.readBurst(); err != nil {
			return err
		}
		if len(tp.batch) == 0 {
			if _, err := unix.Poll(pfd, int(idleWait/time.Millisecond)); err != nil && !errors.Is(err, unix.EINTR) {
				if pollErrs++; pollErrs >= maxPollErrors {
					return fmt.Errorf("poll: %w (%d times in a row)", err, pollErrs)
				}
				time.Sleep(idleWait)
			} else {
				pollErrs = 0
			}
			continue
		}
		tp.forwardBatch()
	}
	return nil
}

// forwardBatch forwards and transmits the frames read so far.
func (tp *tapPoller) forwardBatch() {
	c := tp.core
	tp.hist.add(len(tp.batch))
	c.forward(tp.port, tp.batch)
	c.flushTAPs()
	flush(c, tp.cache, tp.dests, tp.txIdx)
	rebalance(c, tp.cache)
	tp.batch = tp.batch[:0]
}
