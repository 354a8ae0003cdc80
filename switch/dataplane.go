package vswitch

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"xswitch/internal/pollidle"
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

// dataPlane holds the UMEM, the AF_XDP ports and the pollers. Its lists
// change under Switch.mu (write lock; Status and Stats read them under the
// read lock), and only from the goroutine that holds Switch.applyMu.
type dataPlane struct {
	s          *Switch
	umem       *xsk.Umem
	area       []byte
	xports     map[int]*xsk.Port  // by port id
	txcsum     map[int]txCsumPlan // by port id (AF_XDP ports)
	needMB     map[int]bool       // by port id: its MTU needs multi-buffer (jumbo.go)
	pollers    []*poller
	tapPollers []*tapPoller
	all        []*core     // cores of the running pollers
	retired    retiredCtrs // counters of pollers that stopped
	spare      []*xsk.Cache
	nextIdx    int // round robin of CPUs and transmit sockets
	running    bool
	// busy and policy are the pollers' busy_poll and poller_policy (restart
	// only: read by the pollers without a lock).
	busy   bool
	policy string
	stop   atomic.Bool
	wg     sync.WaitGroup
}

// poller serves one queue of one AF_XDP port.
type poller struct {
	dp    *dataPlane
	pid   int   // port id
	port  *port // in the generation the poller uses (its own field)
	sock  *xsk.Socket
	cache *xsk.Cache
	core  *core
	cpu   int
	txIdx int
	hist  batchHist
	idle  pollidle.State // the idle policy at work (switch/idle.go)
	gate
}

// gate is how a poller takes part in generation changes: quit asks it to
// stop, seen is the generation it uses (it has finished with every older
// one), done is closed when it has stopped.
type gate struct {
	quit atomic.Bool
	seen atomic.Uint64
	done chan struct{}
}

// passed reports whether the poller no longer uses generations before gen.
func (g *gate) passed(gen uint64) bool {
	select {
	case <-g.done:
		return true
	default:
		return g.seen.Load() >= gen
	}
}

// tapPoller reads an internal port.
type tapPoller struct {
	dp    *dataPlane
	pid   int
	port  *port
	cache *xsk.Cache
	core  *core
	txIdx int
	buf   []byte // one read: virtio-net header and a frame of up to 64 KB
	seg   offload.Segmenter
	batch []desc // frames read (segments) to forward
	hist  batchHist
	gate
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

// portConfig is how an AF_XDP port of the switch is opened, and the
// configuration section its options come from.
func (d *dataPlane) portConfig(pr *portRes, c *Config) (xsk.PortConfig, string, error) {
	po, field := portOptions(pr.kind, c)
	var pc xsk.PortConfig
	switch pr.kind {
	case kindUnderlay:
		pc = xsk.PortConfig{Interface: pr.name, Role: xsk.RoleUnderlay, LocalIPs: append([]netip.Addr(nil), d.s.underlayLocal...)}
	default:
		pc = xsk.PortConfig{Interface: pr.name, Role: xsk.RoleLocal}
	}
	q := po.Queues
	if q == 0 {
		n, err := xsk.QueueCount(pr.name)
		if err != nil {
			return pc, field, fmt.Errorf("port %s: %w", pr.name, err)
		}
		q = n
	}
	ring := po.RingSize
	if ring == 0 {
		ring = 2048
	}
	pc.Queues, pc.RingSize = q, ring
	pc.ZeroCopy, pc.XDPMode = parseZeroCopy(po.ZeroCopy), parseXDPMode(po.XDPMode)
	pc.NeedWakeup, pc.BusyPoll, pc.Logger, pc.TxBudget = true, c.BusyPoll, d.s.log, po.TxBudget
	return pc, field, nil
}

// portOptions are the options of an AF_XDP port of kind k and the
// configuration section they come from.
func portOptions(k portKind, c *Config) (PortOptions, string) {
	if k == kindUnderlay {
		return c.Underlay.PortOptions, "underlay"
	}
	return c.Ports, "port_options"
}

// open creates the UMEM, sized for the AF_XDP ports of the configuration,
// and opens those ports.
func (d *dataPlane) open(s *Switch, xps []*portRes) error {
	d.s = s
	d.xports = map[int]*xsk.Port{}
	d.txcsum = map[int]txCsumPlan{}
	d.needMB = map[int]bool{}
	c := s.cfg
	d.busy, d.policy = c.BusyPoll, c.PollerPolicy
	nsock, need := 0, 0
	for _, pr := range xps {
		pc, _, err := d.portConfig(pr, c)
		if err != nil {
			return err
		}
		if err := d.planPort(pr, c); err != nil {
			return err
		}
		nsock += pc.Queues
		need += pc.Queues * pc.RingSize * 2
	}
	nt := 0
	for i := range c.Bridges {
		if c.Bridges[i].HasInternal() {
			nt++
		}
	}
	if nsock == 0 && nt == 0 {
		return nil
	}
	if err := d.ensureUmem(need + (nsock+nt)*512); err != nil {
		return err
	}
	for _, pr := range xps {
		if err := d.openPort(pr, c); err != nil {
			return err
		}
	}
	return nil
}

// ensureUmem creates the UMEM if there is none: umem.frames, or enough for
// need frames (every socket's fill ring full, as many in flight on TX, and
// a working stock per poller for flood copies and TAP reads), at least 4096.
func (d *dataPlane) ensureUmem(need int) error {
	if d.umem != nil {
		return nil
	}
	c := d.s.cfg
	frames := c.UMEM.Frames
	if frames == 0 {
		frames = 4096
		for frames < need {
			frames *= 2
		}
	}
	// TX metadata is a property of the UMEM: asked for when any port
	// planned at start uses it (ports added later by a reload get it
	// only if the UMEM has it).
	var txMeta, txSwCsum bool
	for _, plan := range d.txcsum {
		txMeta = txMeta || plan.use
		txSwCsum = txSwCsum || plan.kernelSW
	}
	// Multi-buffer too (XDP_USE_SG on the first bind): on when any port
	// planned at start needs it, or when asked for.
	mb := c.UMEM.MultiBuffer == MultiBufferOn
	for _, need := range d.needMB {
		mb = mb || need
	}
	u, err := xsk.NewUmem(xsk.UmemConfig{NumFrames: frames, FrameSize: c.UMEM.FrameSize, HugePages: c.UMEM.HugePages,
		TxMetadata: txMeta, TxSwChecksum: txSwCsum, MultiBuffer: mb})
	if err != nil {
		return fmt.Errorf("UMEM of %d frames of %d bytes: %w", frames, c.UMEM.FrameSize, err)
	}
	d.umem = u
	d.area = u.Area()
	return nil
}

// openPort attaches the steering program and binds the sockets of an
// AF_XDP port (its pollers start separately).
func (d *dataPlane) openPort(pr *portRes, c *Config) error {
	pc, field, err := d.portConfig(pr, c)
	if err != nil {
		return err
	}
	if err := d.planPort(pr, c); err != nil {
		return err
	}
	if err := d.ensureUmem(pc.Queues*pc.RingSize*2 + pc.Queues*512); err != nil {
		return err
	}
	if err := d.checkMultiBuffer(pr, pr.mtu); err != nil {
		return err
	}
	xp, err := d.umem.OpenPort(pc)
	if errors.Is(err, xsk.ErrNativeUnavailable) {
		return fmt.Errorf("open the %s port: %w; set %s.xdp_mode to auto or generic", pr.kind, err, field)
	}
	if err != nil {
		return fmt.Errorf("open the %s port: %w", pr.kind, err)
	}
	var tx []*txQueue
	for _, sock := range xp.Sockets() {
		tx = append(tx, &txQueue{sock: sock})
	}
	m := xp.Mode()
	plan := d.txcsum[pr.id]
	if err := plan.checkMode(pr.name, m.ZeroCopy); err != nil {
		xp.Close()
		return err
	}
	if plan.use && !d.umem.TxMetadata() {
		plan.use, plan.why = false, "the UMEM was made without TX metadata (no port used it at start): restart to use it"
	}
	d.s.mu.Lock()
	d.xports[pr.id] = xp
	d.txcsum[pr.id] = plan
	pr.xp, pr.tx, pr.ifidx, pr.txCsum = xp, tx, xp.Ifindex(), plan.use
	d.s.mu.Unlock()
	d.s.log.Info("AF_XDP port open", zap.String("port", pr.name), zap.Stringer("kind", pr.kind), zap.Int("queues", len(xp.Sockets())),
		zap.String("xdp", m.XDP), zap.String("link", m.Link), zap.Bool("zero_copy", m.ZeroCopy), zap.Stringer("device_features", plan.feat),
		zap.Strings("offloads", portOffloads(pr.kind, plan, d.umem.MultiBuffer())))
	return nil
}

// planPort checks the port's MTU (one UMEM frame, or multi-buffer) and decides how
// its TCP/UDP checksums are made (txcsum.go).
func (d *dataPlane) planPort(pr *portRes, c *Config) error {
	mtu, err := d.portMTU(pr.kind, pr.name)
	if err != nil {
		return err
	}
	needMB, err := checkFrameFit(pr.kind, pr.name, mtu, c.UMEM.FrameSize, 0, c.UMEM.MultiBuffer)
	if err != nil {
		return err
	}
	pr.mtu = mtu
	po, _ := portOptions(pr.kind, c)
	plan, err := planTxCsum(pr.name, po)
	if err != nil {
		return err
	}
	d.s.mu.Lock()
	d.txcsum[pr.id] = plan
	d.needMB[pr.id] = needMB
	d.s.mu.Unlock()
	return nil
}

// closePort closes an AF_XDP port whose pollers have stopped and which no
// published generation uses any more: its frames go back to the UMEM.
func (d *dataPlane) closePort(pr *portRes) error {
	xp := pr.xp
	d.s.mu.Lock()
	delete(d.xports, pr.id)
	pr.xp, pr.tx = nil, nil
	d.s.mu.Unlock()
	if xp == nil {
		return nil
	}
	if err := xp.Close(); err != nil {
		return fmt.Errorf("close port %s: %w", pr.name, err)
	}
	return nil
}

// newCache gives a poller a frame cache (one of a stopped poller's, else a
// new one: the UMEM keeps every cache it made).
func (d *dataPlane) newCache() *xsk.Cache {
	if n := len(d.spare); n > 0 {
		c := d.spare[n-1]
		d.spare = d.spare[:n-1]
		return c
	}
	return d.umem.NewCache()
}

func (d *dataPlane) nextCPU() (cpu, idx int) {
	idx = d.nextIdx
	d.nextIdx++
	cpu = -1
	if cpus := d.s.cfg.CPUs; len(cpus) > 0 {
		cpu = cpus[idx%len(cpus)]
	}
	return cpu, idx
}

// addPollers makes (and, once the switch runs, starts) the pollers of an
// AF_XDP port: one per socket, pinned round-robin to the configured CPUs.
func (d *dataPlane) addPollers(pr *portRes, f *fabric) {
	var ps []*poller
	for _, tq := range pr.tx {
		cpu, idx := d.nextCPU()
		pl := &poller{dp: d, pid: pr.id, port: f.ports[pr.id], sock: tq.sock, cache: d.newCache(), cpu: cpu, txIdx: idx,
			core: newCore(f, d.area, d.umem.FrameSize(), 4*maxBurst)}
		pl.core.mb = d.umem.MultiBuffer()
		pl.done = make(chan struct{})
		pl.seen.Store(f.gen)
		ps = append(ps, pl)
	}
	d.s.mu.Lock()
	for _, pl := range ps {
		d.pollers = append(d.pollers, pl)
		d.all = append(d.all, pl.core)
	}
	d.s.mu.Unlock()
	if d.running {
		d.ensureProcs()
		for _, pl := range ps {
			pl.start()
		}
	}
}

// addTAPPoller makes (and, once the switch runs, starts) the reader of an
// internal port.
func (d *dataPlane) addTAPPoller(pr *portRes, f *fabric) {
	_, idx := d.nextCPU()
	tp := &tapPoller{dp: d, pid: pr.id, port: f.ports[pr.id], cache: d.newCache(), txIdx: idx,
		core: newCore(f, d.area, d.umem.FrameSize(), 4*maxBurst),
		buf:  make([]byte, offload.VnetHdrLen+offload.MaxFrameLen), batch: make([]desc, 0, maxBurst)}
	tp.done = make(chan struct{})
	tp.seen.Store(f.gen)
	d.s.mu.Lock()
	d.tapPollers = append(d.tapPollers, tp)
	d.all = append(d.all, tp.core)
	d.s.mu.Unlock()
	if d.running {
		d.wg.Add(1)
		go tp.run()
	}
}

// procsReserve is how many Ps the Go scheduler keeps beyond one per
// poller: for the internal ports' readers and the control path.
const procsReserve = 2

// ensureProcs raises GOMAXPROCS to one P per AF_XDP poller plus
// procsReserve (never lowers it). A poller is a locked thread that holds
// its P while it forwards; with fewer Ps than pollers (GOMAXPROCS is the
// CPU count by default, and pollers may share CPUs), a poller returning
// from poll() or a syscall must wait for a P another poller holds: the Go
// runtime parks and wakes threads to hand Ps around. Measured on a 2-CPU
// VM with two pollers on one CPU (docs/benchmarks.md): the forwarding
// thread's voluntary context switches fell from ~25 to ~5 per 1000 packets
// and the round trip at half load from ~500 to ~200 µs.
func (d *dataPlane) ensureProcs() {
	want := len(d.pollers) + procsReserve
	if have := runtime.GOMAXPROCS(0); have < want {
		runtime.GOMAXPROCS(want)
		d.s.log.Info("GOMAXPROCS raised: one P per poller", zap.Int("from", have), zap.Int("to", want), zap.Int("pollers", len(d.pollers)))
	}
}

func (p *poller) start() {
	// Stock the fill ring before traffic arrives.
	p.sock.Refill(p.cache)
	p.dp.wg.Add(1)
	go p.run()
}

func (d *dataPlane) start(s *Switch) error {
	if s.cfg.BusyPoll {
		// Measured (docs/benchmarks.md): with a port's NAPI thread on a
		// poller's CPU, spinning pollers starve it, down to ~0.02 Mpps.
		s.log.Warn("busy_poll: pollers spin and never yield their CPUs; keep the ports' interrupts and NAPI threads off them",
			zap.Ints("poller_cpus", s.cfg.CPUs))
	}
	d.running = true
	d.ensureProcs()
	for _, p := range d.pollers {
		p.start()
	}
	for _, tp := range d.tapPollers {
		d.wg.Add(1)
		go tp.run()
	}
	return nil
}

// stopPort stops the pollers of port id (AF_XDP or internal), waits for
// them and keeps their counters. Their frames are back in the UMEM's pool.
func (d *dataPlane) stopPort(id int) {
	var gates []*gate
	for _, p := range d.pollers {
		if p.pid == id {
			p.quit.Store(true)
			gates = append(gates, &p.gate)
		}
	}
	for _, tp := range d.tapPollers {
		if tp.pid == id {
			tp.quit.Store(true)
			gates = append(gates, &tp.gate)
		}
	}
	if !d.running {
		for _, g := range gates {
			close(g.done)
		}
	}
	for _, g := range gates {
		<-g.done
	}
	d.s.mu.Lock()
	defer d.s.mu.Unlock()
	d.pollers = slices.DeleteFunc(d.pollers, func(p *poller) bool { return p.pid == id && d.retire(p.core, p.cache) })
	d.tapPollers = slices.DeleteFunc(d.tapPollers, func(tp *tapPoller) bool { return tp.pid == id && d.retire(tp.core, tp.cache) })
}

// pollerStopped reports whether a poller of port id has stopped on its
// own (a socket error).
func (d *dataPlane) pollerStopped(id int) bool {
	for _, p := range d.pollers {
		if p.pid == id && p.passed(^uint64(0)) {
			return true
		}
	}
	return false
}

// retire keeps a stopped core's counters and its cache (Switch.mu held);
// true, for slices.DeleteFunc.
func (d *dataPlane) retire(c *core, cache *xsk.Cache) bool {
	d.retired.add(c)
	for i, o := range d.all {
		if o == c {
			d.all = append(d.all[:i], d.all[i+1:]...)
			break
		}
	}
	d.spare = append(d.spare, cache)
	return true
}

// waitGen waits until every poller uses generation gen or a later one (or
// has stopped): then nothing an older generation referenced is in use. A
// poller passes a batch boundary at least every idleWait.
func (d *dataPlane) waitGen(gen uint64) {
	if !d.running {
		return
	}
	t0 := time.Now()
	warned := false
	for {
		all := true
		for _, p := range d.pollers {
			all = all && p.passed(gen)
		}
		for _, tp := range d.tapPollers {
			all = all && tp.passed(gen)
		}
		if all {
			return
		}
		if !warned && time.Since(t0) > 5*time.Second {
			warned = true
			d.s.log.Warn("a poller has not taken up the new configuration after 5 s; waiting", zap.Uint64("generation", gen))
		}
		time.Sleep(time.Millisecond)
	}
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
			errs = append(errs, fmt.Errorf("close port %d: %w", id, err))
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
	ps.Offloads = portOffloads(p.kind, d.txcsum[p.id], d.umem != nil && d.umem.MultiBuffer())
	ps.Copy = "copy"
	if m.ZeroCopy {
		ps.Copy = "zero-copy"
	} else {
		ps.TxBudget = xp.Sockets()[0].TxBudget()
	}
	for _, pl := range d.pollers {
		if pl.pid == p.id {
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
// of one of its sockets, Transmit (or, with kick false, Enqueue: the caller
// kicks later), Complete into this poller's cache. It returns how many
// frames it placed on TX rings.
func flush(c *core, cache *xsk.Cache, txIdx int, kick bool) int {
	placed := 0
	for _, id := range c.f.xdp {
		q := c.pend[id]
		if len(q) == 0 {
			continue
		}
		p := c.f.ports[id]
		tq := p.tx[txIdx%len(p.tx)]
		tq.mu.Lock()
		var sent int
		if kick {
			sent = tq.sock.Transmit(q)
		} else {
			sent = tq.sock.Enqueue(q)
		}
		if cp := p.capture.Load(); cp != nil {
			// Before Complete, under the lock: no poller can have taken
			// the sent frames back and reused them yet. Multi-buffer
			// frames were captured whole when queued (queueChain).
			for i, d := range q[:sent] {
				if d.Options&xsk.OptContinued == 0 && (i == 0 || q[i-1].Options&xsk.OptContinued == 0) {
					c.capture(cp, c.area[d.Addr:d.Addr+uint64(d.Len)], true)
				}
			}
		}
		tq.sock.Complete(cache)
		tq.mu.Unlock()
		placed += sent
		// Packets, not descriptors: the pieces of a multi-buffer frame
		// but its last carry OptContinued (Enqueue places whole frames).
		pc := &c.ctr[id]
		var bytes, pieces uint64
		for i := 0; i < sent; i++ {
			bytes += uint64(q[i].Len)
			if q[i].Options&xsk.OptContinued != 0 {
				pieces++
			}
		}
		atomic.AddUint64(&pc.txPackets, uint64(sent)-pieces)
		atomic.AddUint64(&pc.txBytes, bytes)
		for i := sent; i < len(q); i++ {
			if q[i].Options&xsk.OptContinued == 0 {
				atomic.AddUint64(&pc.drops[dropTxFull], 1)
			}
			c.release(q[i].Addr &^ (c.fsize - 1))
		}
		c.pend[id] = q[:0]
	}
	return placed
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
	if p.dp.policy == PolicyBatch {
		// The thread is locked: sched_setattr(0) sets its policy only.
		attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_BATCH}
		if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
			log.Warn("cannot set the poller's scheduling policy", zap.String("port", p.port.name), zap.String("policy", PolicyBatch), zap.Error(err))
		}
	}
	if err := pollidle.PrepareThread(p.dp.s.cfg.idle.Mode); err != nil {
		log.Warn("cannot prepare the poller for its idle policy", zap.String("port", p.port.name), zap.Error(err))
	}
	if err := p.loop(); err != nil {
		p.dp.s.pollerFailed(p.port, fmt.Errorf("%s port %s queue %d: %w", p.port.kind, p.port.name, p.sock.Queue(), err))
	}
	c := p.core
	p.cache.PutBatch(c.free)
	c.free = c.free[:0]
	p.cache.Flush()
	close(p.done)
}

// adopt moves the poller to generation f at a batch boundary; false when
// its port has no sockets there any more (removed, or its interface gone):
// the poller stops.
func (p *poller) adopt(f *fabric) bool {
	p.core.setFabric(f)
	p.port = f.ports[p.pid]
	p.seen.Store(f.gen)
	return !p.port.absent
}

// maxPollErrors is how many failed poll() calls in a row a poller tolerates
// (a transient ENOMEM passes) before it gives up.
const maxPollErrors = 10

// errCheckEvery is how many idle rounds of a busy-polling poller pass
// between two checks of its socket's error (a syscall).
const errCheckEvery = 1024

// loop receives and forwards until the data plane stops, or returns the
// error that keeps it from going on. Between bursts it does what its idle
// policy says (switch/idle.go): receive again, nanosleep or poll().
func (p *poller) loop() error {
	c := p.core
	fab := &p.dp.s.fab
	p.idle = pollidle.New(p.dp.s.cfg.idle)
	kick := !p.idle.Coalescing()
	pollErrs, idle := 0, 0
	var rx [maxBurst]desc
	for !p.dp.stop.Load() && !p.quit.Load() {
		// One load per batch: the generation this batch uses (fabric.go).
		// Frames waiting for a coalesced kick go out on the old one's
		// sockets first.
		if f := fab.Load(); f != c.f {
			if !kick && p.idle.Pending() {
				p.kickPending()
			}
			if !p.adopt(f) {
				return nil
			}
		}
		n := p.sock.Receive(rx[:])
		if n > 0 {
			p.hist.add(n)
			c.now = c.f.clock.Tick()
			topUp(c, p.cache)
			c.forward(p.port, rx[:n])
			c.flushTAPs()
			placed := flush(c, p.cache, p.txIdx, kick)
			rebalance(c, p.cache)
			p.sock.Refill(p.cache)
			if !kick && p.idle.Placed(placed, pollidle.Now()) {
				p.kickPending()
			}
		} else {
			p.sock.Refill(p.cache)
			p.completeIdle()
		}
		act, d := p.idle.Next(n)
		if !kick && p.idle.Pending() && p.idle.KickDue(act, d, pollidle.Now()) {
			p.kickPending()
		}
		switch act {
		case pollidle.SleepNs:
			pollidle.Nanosleep(d)
		case pollidle.PollRx:
			if err := p.wait(&pollErrs); err != nil {
				return err
			}
		}
		if n > 0 {
			continue
		}
		// Idle: look for a socket error (the device deleted) on every
		// poll(), and every errCheckEvery rounds of a poller that does
		// not poll (a syscall each).
		if idle++; act == pollidle.PollRx || idle%errCheckEvery == 0 {
			if err := socketError(p.sock.Fd()); err != nil {
				return err
			}
		}
	}
	return nil
}

// wait sleeps in poll() until the RX ring has frames (or idleWait passes);
// it fails after maxPollErrors failed calls in a row.
func (p *poller) wait(pollErrs *int) error {
	err := p.sock.Wait(idleWait)
	if err == nil || errors.Is(err, unix.EINTR) {
		*pollErrs = 0
		return nil
	}
	if *pollErrs++; *pollErrs >= maxPollErrors {
		return fmt.Errorf("%w (%d times in a row)", err, *pollErrs)
	}
	p.dp.s.log.Warn("poll", zap.String("port", p.port.name), zap.Error(err))
	time.Sleep(idleWait)
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
	for _, id := range p.core.f.xdp {
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
	close(tp.done)
}

// loop reads the TAP and forwards until the data plane stops, or returns
// the error that keeps it from going on.
func (tp *tapPoller) loop() error {
	c := tp.core
	pfd := []unix.PollFd{{Fd: int32(tp.port.fd), Events: unix.POLLIN}}
	pollErrs := 0
	fab := &tp.dp.s.fab
	for !tp.dp.stop.Load() && !tp.quit.Load() {
		if f := fab.Load(); f != c.f {
			c.setFabric(f)
			tp.port = f.ports[tp.pid]
			tp.seen.Store(f.gen)
			if tp.port.absent || tp.port.fd < 0 {
				return nil // the internal port was removed
			}
		}
		c.now = c.f.clock.Tick()
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
	flush(c, tp.cache, tp.txIdx, true)
	rebalance(c, tp.cache)
	tp.batch = tp.batch[:0]
}
