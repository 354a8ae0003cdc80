package vswitch

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"xswitch/flowtable"
	"xswitch/geneve"
	"xswitch/xsk"
)

// Options are the run-time settings of a Switch that are not configuration.
type Options struct {
	Logger  *zap.Logger // nil: no logs
	Version string      // reported by Status
}

// Switch is a running xswitch data plane.
type Switch struct {
	cfg  *Config // the configuration applied (replaced by Apply under applyMu and mu)
	opts Options
	log  *zap.Logger
	// fab is the fabric generation the pollers take up at their next batch
	// (fabric.go).
	fab   atomic.Pointer[fabric]
	clock *flowtable.Clock
	// applyMu serialises what changes the fabric: Apply, link events, FDB
	// flushes. The resources below belong to its holder (Status reads the
	// maps under mu).
	applyMu   sync.Mutex
	ports     map[string]*portRes // by name: underlay, local and internal ports
	tuns      map[tunKey]*tunnel
	tables    map[string]*tableRes // by bridge name
	portIDs   idPool
	tunIDs    idPool
	portSpace int // length of the generations' id-indexed slices
	tunSpace  int
	links     *linkWatch

	underlayName  string
	underlayIdx   int
	underlayMAC   net.HardwareAddr
	underlayMTU   int
	underlayLocal []netip.Addr

	res *resolver
	dp  dataPlane  // AF_XDP ports, UMEM and pollers
	ev  *evpnState // the EVPN speaker's data plane (evpn.go); nil without evpn:

	failed  chan error
	stop    chan struct{}
	wg      sync.WaitGroup
	closed  atomic.Bool
	started time.Time
	// mu keeps the control path (Status, Stats, FDB: read lock) out of the
	// part of Close that releases what they read (write lock).
	mu sync.RWMutex
}

// CheckSystem checks what a valid configuration needs from the system,
// without changing anything: the interfaces exist, the internal port names
// are free, the underlay has the tunnel endpoint addresses, the CPUs exist.
func CheckSystem(c *Config) error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	if c.Underlay != nil && c.Underlay.Interface != "" {
		if l, err := netlink.LinkByName(c.Underlay.Interface); err != nil {
			bad("underlay.interface", "no interface %q in this network namespace; write an existing NIC (see `ip link`)", c.Underlay.Interface)
		} else {
			locals, err := underlayAddrs(l, c.Underlay.Local)
			if err != nil {
				bad("underlay.interface", "%v", err)
			}
			for bi, b := range c.Bridges {
				for ti, t := range b.Tunnels {
					if t.Remote.IsValid() && !hasFamily(locals, t.Remote) {
						bad(fmt.Sprintf("bridges[%d].tunnels[%d].remote_ip", bi, ti),
							"%v is %s, but underlay %s has no %s address; add one to the interface or set underlay.local_ip",
							t.Remote, family(t.Remote), c.Underlay.Interface, family(t.Remote))
					}
				}
			}
		}
	}
	if c.Underlay != nil && c.Underlay.Interface != "" {
		checkQueues("underlay.queues", c.Underlay.Interface, c.Underlay.Queues, bad)
	}
	for bi, b := range c.Bridges {
		for _, p := range b.Ports {
			checkQueues(fmt.Sprintf("port_options.queues (bridges[%d] port %s)", bi, p), p, c.Ports.Queues, bad)
		}
	}
	for bi, b := range c.Bridges {
		if b.HasInternal() {
			if _, err := netlink.LinkByName(b.Name); err == nil {
				bad(fmt.Sprintf("bridges[%d].name", bi), "an interface %q already exists in this network namespace; the internal port needs a free name (or set internal: false)", b.Name)
			}
		}
		for pi, p := range b.Ports {
			if _, err := netlink.LinkByName(p); err != nil {
				bad(fmt.Sprintf("bridges[%d].ports[%d]", bi, pi), "no interface %q in this network namespace; write an existing interface (see `ip link`)", p)
			}
		}
	}
	if len(c.CPUs) > 0 {
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(0, &set); err == nil {
			for i, cpu := range c.CPUs {
				if !set.IsSet(cpu) {
					bad(fmt.Sprintf("cpus[%d]", i), "CPU %d is not available to this process (allowed: %s); write one of those", cpu, cpuList(&set))
				}
			}
		}
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil && hasInternal(c) {
		bad("bridges", "internal ports need /dev/net/tun: %v (modprobe tun)", err)
	}
	return errors.Join(errs...)
}

// checkQueues checks a configured queue count against the device's: one
// socket per RX queue, or frames on the others would bypass the switch
// (xsk.OpenPort refuses it; here it is refused before anything is created).
func checkQueues(field, dev string, queues int, bad func(string, string, ...any)) {
	if queues == 0 {
		return
	}
	n, err := xsk.QueueCount(dev)
	if err != nil {
		return // a missing interface is reported on its own
	}
	if queues != n {
		bad(field, "%d, but %s has %d RX queues: serve them all (write 0 or %d), or change the device's (ethtool -L %s combined %d)",
			queues, dev, n, n, dev, queues)
	}
}

func hasInternal(c *Config) bool {
	for i := range c.Bridges {
		if c.Bridges[i].HasInternal() {
			return true
		}
	}
	return false
}

func cpuList(s *unix.CPUSet) string {
	var l []string
	for i := 0; i < 1024; i++ {
		if s.IsSet(i) {
			l = append(l, fmt.Sprint(i))
		}
	}
	return strings.Join(l, ",")
}

// underlayAddrs returns the local tunnel endpoint addresses: the configured
// ones, or the interface's global addresses.
func underlayAddrs(l netlink.Link, configured []netip.Addr) ([]netip.Addr, error) {
	if len(configured) > 0 {
		return configured, nil
	}
	as, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", l.Attrs().Name, err)
	}
	var out []netip.Addr
	n4, n6 := 0, 0
	for _, a := range as {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if !ip.IsGlobalUnicast() || ip.IsLinkLocalUnicast() {
			continue
		}
		if ip.Is4() && n4 < 8 {
			n4++
			out = append(out, ip)
		} else if ip.Is6() && n6 < 8 {
			n6++
			out = append(out, ip)
		}
	}
	return out, nil
}

// New builds the switch from a validated configuration: it opens the AF_XDP
// ports and the internal ports and starts resolving next hops. The pollers
// start with Start. On error everything created so far (internal ports, XDP
// programs, sockets, neighbour entries) is removed and the error says why.
func New(c *Config, o Options) (*Switch, error) {
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	// s is not a named result: a `return nil, err` must not clear it before
	// the clean-up below runs.
	s := &Switch{cfg: c, opts: o, log: log, failed: make(chan error, 1), stop: make(chan struct{}), started: time.Now(),
		clock: flowtable.NewClock(), ports: map[string]*portRes{}, tuns: map[tunKey]*tunnel{}, tables: map[string]*tableRes{}}
	s.dp.s = s
	s.dp.xports = map[int]*xsk.Port{}
	s.links = newLinkWatch(s)
	if c.EVPN != nil {
		s.ev = newEVPNState(s)
	}
	if err := s.build(); err != nil {
		if cerr := s.Close(); cerr != nil {
			err = fmt.Errorf("%w (and removing what was created: %v)", err, cerr)
		}
		return nil, err
	}
	return s, nil
}

// build creates the ports, the data plane, the first fabric generation and
// the resolver of a new Switch. What it created is recorded in s for
// Close, also when it fails half way.
func (s *Switch) build() error {
	c := s.cfg
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if c.Underlay != nil {
		l, err := netlink.LinkByName(c.Underlay.Interface)
		if err != nil {
			return fmt.Errorf("underlay %s: %w", c.Underlay.Interface, err)
		}
		s.underlayName = c.Underlay.Interface
		s.underlayIdx = l.Attrs().Index
		s.underlayMAC = l.Attrs().HardwareAddr
		s.underlayMTU = l.Attrs().MTU
		if s.underlayLocal, err = underlayAddrs(l, c.Underlay.Local); err != nil {
			return err
		}
		if len(s.underlayLocal) == 0 {
			return fmt.Errorf("underlay %s has no IP address to be a tunnel endpoint; add one or set underlay.local_ip", s.underlayName)
		}
		s.ports[s.underlayName] = &portRes{id: s.portIDs.get(), name: s.underlayName, kind: kindUnderlay, link: linkState(l)}
	}
	var xps []*portRes
	if u := s.ports[s.underlayName]; u != nil {
		xps = append(xps, u)
	}
	for bi := range c.Bridges {
		bc := &c.Bridges[bi]
		s.tables[bc.Name] = newTableRes(c)
		for _, pn := range bc.Ports {
			pr := &portRes{id: s.portIDs.get(), name: pn, kind: kindLocal, bridge: bc.Name, link: linkAbsent}
			if l, err := netlink.LinkByName(pn); err == nil {
				pr.link = linkState(l)
			}
			s.ports[pn] = pr
			xps = append(xps, pr)
		}
		for ti := range bc.Tunnels {
			s.addTunnel(bc, &bc.Tunnels[ti])
		}
		if bc.HasInternal() {
			if _, err := s.openInternal(bc); err != nil {
				return err
			}
		}
	}
	if err := s.dp.open(s, xps); err != nil {
		return err
	}
	s.portSpace, s.tunSpace = space(s.portIDs.next), space(s.tunIDs.next)
	f := s.buildFabric(c)
	s.fab.Store(f)
	if err := s.applyStatics(c, f); err != nil {
		return err
	}
	if f.underlay != nil {
		s.res = newResolver(s.log, s.underlayIdx, s.underlayName, s.underlayMAC, s.underlayLocal, s.tunnelList(f))
		if err := s.res.start(); err != nil {
			return fmt.Errorf("next-hop resolver: %w", err)
		}
	}
	return nil
}

func newTableRes(c *Config) *tableRes {
	tc := flowtable.Config{MaxEntries: c.FDB.MaxEntries, MaxAge: c.FDB.Age}
	return &tableRes{t: flowtable.New(tc), cfg: tc, statics: map[flowtable.MAC]flowtable.Dest{}}
}

// addTunnel creates the tunnel of tc (bridge bc) with a new id.
func (s *Switch) addTunnel(bc *BridgeConfig, tc *TunnelConfig) *tunnel {
	if t := s.tuns[tunKeyOf(bc, tc)]; t != nil && s.ev != nil && s.ev.isOwned(t) {
		// An EVPN tunnel is now configured too: it stays, as configured.
		s.ev.disown(t)
		t.cfg = tc
		return t
	}
	t := &tunnel{id: s.tunIDs.get(), remote: tc.Remote, cfg: tc}
	t.dest = tunnelBit | flowtable.Dest(t.id)
	for _, a := range s.underlayLocal {
		if a.Is4() == t.remote.Is4() {
			t.local = a
			break
		}
	}
	t.hdrLen = tunnelHeaderLen(tc)
	t.maxInner = s.underlayMTU + geneve.EthLen - t.hdrLen
	s.tuns[tunKeyOf(bc, tc)] = t
	return t
}

func tunnelHeaderLen(tc *TunnelConfig) int {
	optLen := 0
	for _, o := range tc.GenOptions {
		optLen += 4 + len(o.Data)
	}
	if tc.Remote.Is4() {
		return geneve.IPv4HeaderLen(optLen)
	}
	return geneve.IPv6HeaderLen(optLen)
}

// bridgeMTU is the internal port's MTU: the configured one, at most what
// the bridge's tunnels carry (underlay MTU minus 50 (IPv4) or 70 (IPv6)
// minus their options: the inner Ethernet header is part of the payload
// the outer IP carries). lowered says the configured one did not fit.
func (s *Switch) bridgeMTU(bc *BridgeConfig) (mtu int, lowered bool) {
	mtu = bc.MTU
	evpnBr := s.cfg.EVPNBridge(bc)
	if len(bc.Tunnels) == 0 && !evpnBr {
		return mtu, false
	}
	maxMTU := s.underlayMTU
	for ti := range bc.Tunnels {
		maxMTU = min(maxMTU, s.underlayMTU-tunnelHeaderLen(&bc.Tunnels[ti]))
	}
	if evpnBr { // EVPN tunnels: no options, any family of the underlay
		for _, a := range s.underlayLocal {
			maxMTU = min(maxMTU, s.underlayMTU-tunnelHeaderLen(&TunnelConfig{Remote: a}))
		}
	}
	if mtu == 0 || mtu > maxMTU {
		return maxMTU, mtu > maxMTU
	}
	return mtu, false
}

// openInternal creates a bridge's internal port (TAP) with a new id.
func (s *Switch) openInternal(bc *BridgeConfig) (*portRes, error) {
	mtu, lowered := s.bridgeMTU(bc)
	if lowered {
		s.log.Warn("bridge MTU lowered to fit the underlay", zap.String("bridge", bc.Name), zap.Int("mtu", mtu))
	}
	tap, err := openTAP(bc.Name, s.internalPortMAC(bc), mtu, bc.Prefixes)
	if err != nil {
		return nil, err
	}
	pr := &portRes{id: s.portIDs.get(), name: bc.Name, kind: kindInternal, bridge: bc.Name, tap: tap, link: linkUp}
	s.mu.Lock()
	s.ports[bc.Name] = pr
	s.mu.Unlock()
	s.log.Info("internal port up", zap.String("name", tap.name), zap.Stringer("mac", tap.mac), zap.Int("mtu", tap.mtu), zap.Strings("offloads", tap.offloads.describe()),
		zap.Any("addresses", bc.Prefixes))
	return pr, nil
}

// tunnelList is every tunnel of f (for the resolver).
func (s *Switch) tunnelList(f *fabric) []*tunnel {
	var ts []*tunnel
	for _, b := range f.bridges {
		ts = append(ts, b.tunnels...)
	}
	return ts
}

// cur is the fabric generation published last.
func (s *Switch) cur() *fabric { return s.fab.Load() }

// Start starts the pollers, the MAC table aging and the link watcher.
func (s *Switch) Start() error {
	s.applyMu.Lock()
	f := s.cur()
	for _, p := range f.ports {
		if pr := s.ports[p.name]; !p.isTomb() && pr != nil {
			switch {
			case len(pr.tx) > 0:
				s.dp.addPollers(pr, f)
			case pr.tap != nil:
				s.dp.addTAPPoller(pr, f)
			}
		}
	}
	err := s.dp.start(s)
	s.applyMu.Unlock()
	if err != nil {
		return err
	}
	if err := s.watchLinks(); err != nil {
		return err
	}
	if s.ev != nil {
		if err := s.ev.start(); err != nil {
			return fmt.Errorf("EVPN: %w", err)
		}
	}
	drops := newDropWatch(s)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case wall := <-t.C:
				now := s.clock.Tick()
				for _, b := range s.cur().bridges {
					b.table.Expire(now)
				}
				drops.check(wall)
			}
		}
	}()
	return nil
}

// Failed delivers an error if the data plane fails while running.
func (s *Switch) Failed() <-chan error { return s.failed }

// fail reports an error that stops the switch (the first one goes to
// Failed; later ones, often consequences of it, are only logged).
func (s *Switch) fail(err error) {
	select {
	case s.failed <- err:
	default:
		s.log.Error("switch failure", zap.Error(err))
	}
}

// pollerFailed handles a poller that cannot go on. A local port's socket
// fails when its interface is deleted: the link watcher marks the port
// absent (and attaches it again when the interface is back). Any other
// port's failure stops the switch: running on without the underlay or an
// internal port would silently drop everything.
func (s *Switch) pollerFailed(p *port, err error) {
	if p.kind == kindLocal && s.links != nil {
		s.log.Warn("local port poller stopped; checking the interface", zap.String("port", p.name), zap.Error(err))
		s.links.check(p.name)
		return
	}
	s.fail(err)
}

// Close stops the pollers, detaches the XDP programs, closes the sockets,
// releases the UMEM, removes the internal ports and the managed neighbour
// entries. It is safe to call more than once.
func (s *Switch) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	if s.ev != nil {
		s.ev.stopSpeaker() // first: the reflectors withdraw our routes at once
	}
	close(s.stop)
	var errs []error
	// A reload or link event in progress finishes first; later ones see
	// closed and do nothing, so no poller starts once they are stopped.
	s.applyMu.Lock()
	if err := s.dp.stopPollers(); err != nil {
		errs = append(errs, err)
	}
	s.applyMu.Unlock()
	s.wg.Wait()
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.res != nil {
		s.res.close()
	}
	if err := s.dp.close(); err != nil {
		errs = append(errs, err)
	}
	for _, pr := range s.ports {
		if pr.tap == nil {
			continue
		}
		if err := pr.tap.close(); err != nil {
			errs = append(errs, fmt.Errorf("remove internal port %s: %w", pr.name, err))
		}
	}
	return errors.Join(errs...)
}

// Status describes ports, tunnels and next hops.
func (s *Switch) Status() Status {
	s.mu.RLock()
	defer s.mu.RUnlock()
	f := s.cur()
	st := Status{Version: s.opts.Version, PID: os.Getpid(), CPUs: s.cfg.CPUs, BusyPoll: s.cfg.BusyPoll, PollerPolicy: s.cfg.PollerPolicy, Idle: s.cfg.IdleStatus(),
		Generation: f.gen}
	st.UMEM = s.dp.umemStatus()
	for _, b := range f.bridges {
		bs := BridgeStatus{Name: b.name, VNI: b.vni, Ports: []PortStatus{}, Tunnels: []TunnelStatus{}}
		bs.FDB = fdbStats(b.table.Stats())
		for _, p := range b.locals {
			ps := s.dp.portStatus(p)
			s.linkStatus(&ps, &st)
			bs.Ports = append(bs.Ports, ps)
		}
		if p := b.internal; p != nil {
			ps := PortStatus{Name: p.name, Kind: "internal", Copy: "tap"}
			if t := s.tapOf(p); t != nil {
				ps.Ifindex, ps.MAC, ps.MTU = t.ifindex, t.mac.String(), t.mtu
				ps.Offloads = t.offloads.describe()
			}
			for _, a := range b.cfg.Prefixes {
				ps.Addresses = append(ps.Addresses, a.String())
			}
			s.linkStatus(&ps, &st)
			bs.Ports = append(bs.Ports, ps)
		}
		for _, t := range b.tunnels {
			tst := TunnelStatus{Remote: t.remote.String(), Key: b.vni, Local: t.local.String(), Source: s.tunnelSource(t)}
			for _, o := range t.cfg.GenOptions {
				tst.Options = append(tst.Options, fmt.Sprintf("0x%04x/0x%02x:%x", o.Class, o.Type, o.Data))
			}
			if nh := t.nh.Load(); nh != nil {
				tst.NextHop = *nh
				if nh.src.IsValid() {
					tst.Local = nh.src.String()
				}
			} else {
				tst.NextHop = NextHopStatus{State: "unresolved"}
			}
			bs.Tunnels = append(bs.Tunnels, tst)
		}
		st.Bridges = append(st.Bridges, bs)
	}
	if u := f.underlay; u != nil {
		ps := s.dp.portStatus(u)
		ps.MAC, ps.MTU = s.underlayMAC.String(), s.underlayMTU
		for _, a := range s.underlayLocal {
			ps.LocalIPs = append(ps.LocalIPs, a.String())
		}
		s.linkStatus(&ps, &st)
		st.Underlay = &ps
	}
	return st
}

// FDB lists the MAC tables of every bridge.
func (s *Switch) FDB() []FDBEntry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []FDBEntry{}
	f := s.cur()
	now := s.clock.Now()
	for _, b := range f.bridges {
		es := b.table.Entries(now)
		sort.Slice(es, func(i, j int) bool { return es[i].MAC < es[j].MAC })
		for _, e := range es {
			fe := FDBEntry{Bridge: b.name, VNI: b.vni, MAC: e.MAC.String(), Age: e.Age.Seconds(), Static: e.Static, Source: s.macSource(b, e)}
			if e.Dest&tunnelBit != 0 {
				id := int(e.Dest &^ tunnelBit)
				if id >= len(f.tunnels) || f.tunnels[id].isTomb() {
					continue // a removed tunnel's entry, about to be flushed
				}
				t := f.tunnels[id]
				fe.Port, fe.Remote = "tunnel:"+t.remote.String(), t.remote.String()
			} else {
				if int(e.Dest) >= len(f.ports) || f.ports[e.Dest].isTomb() {
					continue
				}
				fe.Port = f.ports[e.Dest].name
			}
			out = append(out, fe)
		}
	}
	return out
}

// Stats sums the counters of every poller, running and stopped.
func (s *Switch) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	f := s.cur()
	ports := make([]portSum, len(f.ports))
	tuns := make([]portSum, len(f.tunnels))
	offs := make([]offSum, len(f.ports))
	opts := map[uint32]uint64{}
	var st Stats
	r := &s.dp.retired
	for i := range min(len(ports), len(r.ports)) {
		ports[i], offs[i] = r.ports[i], r.offs[i]
	}
	copy(tuns, r.tuns)
	for k, v := range r.opts {
		opts[k] = v
	}
	st.OptionsOverflow, st.FloodCopies, st.TAPCopies = r.optOverflow, r.flood, r.tap
	for _, c := range s.dp.cores() {
		cs := c.counters()
		for i := range min(len(ports), len(cs.ctr)) {
			cs.ctr[i].addTo(&ports[i])
			cs.off[i].addTo(&offs[i])
		}
		for i := range min(len(tuns), len(cs.tctr)) {
			cs.tctr[i].addTo(&tuns[i])
		}
		st.OptionsOverflow += c.opt.addTo(opts)
		st.FloodCopies += atomic.LoadUint64(&c.floodCopies)
		st.TAPCopies += atomic.LoadUint64(&c.tapCopies)
	}
	st.Ports = []PortStats{}
	for _, p := range livePorts(f) {
		i := p.id
		ps := PortStats{Name: p.name, Kind: p.kind.String(), RxPackets: ports[i].rxPackets, RxBytes: ports[i].rxBytes,
			TxPackets: ports[i].txPackets, TxBytes: ports[i].txBytes, Drops: ports[i].dropMap()}
		offs[i].fill(&ps)
		if p.br != nil {
			ps.Bridge = p.br.name
		}
		st.Ports = append(st.Ports, ps)
	}
	st.Tunnels = []TunnelStats{}
	for _, b := range f.bridges {
		for _, t := range b.tunnels {
			i := t.id
			st.Tunnels = append(st.Tunnels, TunnelStats{Bridge: b.name, Remote: t.remote.String(), VNI: b.vni,
				RxPackets: tuns[i].rxPackets, RxBytes: tuns[i].rxBytes, TxPackets: tuns[i].txPackets, TxBytes: tuns[i].txBytes,
				Drops: tuns[i].dropMap()})
		}
	}
	keys := make([]uint32, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	st.Options = []OptionStat{}
	for _, k := range keys {
		st.Options = append(st.Options, OptionStat{Class: fmt.Sprintf("0x%04x", k>>8&0xffff), Type: fmt.Sprintf("0x%02x", k&0xff), Count: opts[k]})
	}
	s.addKernelStats(&st)
	return st
}

// livePorts are f's ports in the order Stats lists them: the underlay,
// then each bridge's local ports and internal port.
func livePorts(f *fabric) []*port {
	var out []*port
	if f.underlay != nil {
		out = append(out, f.underlay)
	}
	for _, b := range f.bridges {
		out = append(out, b.locals...)
		if b.internal != nil {
			out = append(out, b.internal)
		}
	}
	return out
}
