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
	cfg  *Config
	opts Options
	log  *zap.Logger
	f    *fabric

	underlayName  string
	underlayIdx   int
	underlayMAC   net.HardwareAddr
	underlayMTU   int
	underlayLocal []netip.Addr

	taps []*tapDev
	res  *resolver
	dp   dataPlane // AF_XDP ports, UMEM and pollers

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
	s := &Switch{cfg: c, opts: o, log: log, failed: make(chan error, 1), stop: make(chan struct{}), started: time.Now()}
	if err := s.build(); err != nil {
		if cerr := s.Close(); cerr != nil {
			err = fmt.Errorf("%w (and removing what was created: %v)", err, cerr)
		}
		return nil, err
	}
	return s, nil
}

// build creates the ports, the data plane and the resolver of a new Switch.
// What it created is recorded in s for Close, also when it fails half way.
func (s *Switch) build() error {
	c, log := s.cfg, s.log
	f := &fabric{byVNI: map[uint32]*bridge{}, known: c.Known(), clock: flowtable.NewClock()}
	s.f = f
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
		f.underlay = &port{id: 0, name: s.underlayName, kind: kindUnderlay, fd: -1, dest: 0}
		f.ports = append(f.ports, f.underlay)
	}
	maxAge := c.FDB.Age
	for bi := range c.Bridges {
		bc := &c.Bridges[bi]
		b := &bridge{name: bc.Name, vni: bc.VNI, cfg: bc,
			table: flowtable.New(flowtable.Config{MaxEntries: c.FDB.MaxEntries, MaxAge: maxAge})}
		f.bridges = append(f.bridges, b)
		for _, pn := range bc.Ports {
			p := &port{id: len(f.ports), name: pn, kind: kindLocal, br: b, fd: -1}
			p.dest = flowtable.Dest(p.id)
			f.ports = append(f.ports, p)
			b.locals = append(b.locals, p)
		}
		for ti := range bc.Tunnels {
			tc := &bc.Tunnels[ti]
			t := &tunnel{id: len(f.tunnels), br: b, remote: tc.Remote, cfg: tc}
			t.dest = tunnelBit | flowtable.Dest(t.id)
			for _, a := range s.underlayLocal {
				if a.Is4() == t.remote.Is4() {
					t.local = a
					break
				}
			}
			optLen := 0
			for _, o := range tc.GenOptions {
				optLen += 4 + len(o.Data)
			}
			if t.remote.Is4() {
				t.hdrLen = geneve.IPv4HeaderLen(optLen)
			} else {
				t.hdrLen = geneve.IPv6HeaderLen(optLen)
			}
			t.maxInner = s.underlayMTU + geneve.EthLen - t.hdrLen
			f.tunnels = append(f.tunnels, t)
			b.tunnels = append(b.tunnels, t)
		}
		if len(b.tunnels) > 0 {
			f.byVNI[b.vni] = b
		}
		if bc.HasInternal() {
			mtu := bc.MTU
			if len(b.tunnels) > 0 {
				maxMTU := s.underlayMTU
				for _, t := range b.tunnels {
					// The inner frame's Ethernet header is part of the payload
					// the outer IP carries: MTU = underlay MTU - 50 (IPv4) or 70.
					if m := t.maxInner - geneve.EthLen; m < maxMTU {
						maxMTU = m
					}
				}
				if mtu == 0 || mtu > maxMTU {
					if mtu > maxMTU {
						log.Warn("bridge MTU lowered to fit the underlay", zap.String("bridge", b.name), zap.Int("mtu", maxMTU))
					}
					mtu = maxMTU
				}
			}
			tap, err := openTAP(bc.Name, s.internalPortMAC(bc), mtu, bc.Prefixes)
			if err != nil {
				return err
			}
			s.taps = append(s.taps, tap)
			p := &port{id: len(f.ports), name: bc.Name, kind: kindInternal, br: b, fd: tap.fd, maxFrame: tap.mtu + geneve.EthLen}
			p.dest = flowtable.Dest(p.id)
			// The internal port's MAC is static: learning never moves it to a
			// port or tunnel that claims it (forward drops those: own_mac).
			if err := b.table.AddStatic(flowtable.MACFrom(tap.mac), p.dest); err != nil {
				return fmt.Errorf("internal port %s: %w", bc.Name, err)
			}
			f.ports = append(f.ports, p)
			f.taps = append(f.taps, p)
			b.internal = p
			log.Info("internal port up", zap.String("name", tap.name), zap.Stringer("mac", tap.mac), zap.Int("mtu", tap.mtu), zap.Strings("offloads", tap.offloads.describe()),
				zap.Any("addresses", bc.Prefixes))
		}
	}
	if err := s.dp.open(s); err != nil {
		return err
	}
	if f.underlay != nil && len(f.tunnels) > 0 {
		s.res = newResolver(log, s.underlayIdx, s.underlayName, s.underlayMAC, s.underlayLocal, f.tunnels)
		if err := s.res.start(); err != nil {
			return fmt.Errorf("next-hop resolver: %w", err)
		}
	}
	return nil
}

// Start starts the pollers and the MAC table aging.
func (s *Switch) Start() error {
	if err := s.dp.start(s); err != nil {
		return err
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
				now := s.f.clock.Tick()
				for _, b := range s.f.bridges {
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

// Close stops the pollers, detaches the XDP programs, closes the sockets,
// releases the UMEM, removes the internal ports and the managed neighbour
// entries. It is safe to call more than once.
func (s *Switch) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(s.stop)
	var errs []error
	if err := s.dp.stopPollers(); err != nil {
		errs = append(errs, err)
	}
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.res != nil {
		s.res.close()
	}
	if err := s.dp.close(); err != nil {
		errs = append(errs, err)
	}
	for _, t := range s.taps {
		if err := t.close(); err != nil {
			errs = append(errs, fmt.Errorf("remove internal port %s: %w", t.name, err))
		}
	}
	return errors.Join(errs...)
}

// Status describes ports, tunnels and next hops.
func (s *Switch) Status() Status {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := Status{Version: s.opts.Version, PID: os.Getpid(), CPUs: s.cfg.CPUs, BusyPoll: s.cfg.BusyPoll, PollerPolicy: s.cfg.PollerPolicy, Idle: s.cfg.IdleStatus()}
	st.UMEM = s.dp.umemStatus()
	for _, b := range s.f.bridges {
		bs := BridgeStatus{Name: b.name, VNI: b.vni, Ports: []PortStatus{}, Tunnels: []TunnelStatus{}}
		bs.FDB = fdbStats(b.table.Stats())
		for _, p := range b.locals {
			bs.Ports = append(bs.Ports, s.dp.portStatus(p))
		}
		if p := b.internal; p != nil {
			ps := PortStatus{Name: p.name, Kind: "internal", Copy: "tap"}
			for _, t := range s.taps {
				if t.name == p.name {
					ps.Ifindex, ps.MAC, ps.MTU = t.ifindex, t.mac.String(), t.mtu
					ps.Offloads = t.offloads.describe()
				}
			}
			for _, a := range b.cfg.Prefixes {
				ps.Addresses = append(ps.Addresses, a.String())
			}
			bs.Ports = append(bs.Ports, ps)
		}
		for _, t := range b.tunnels {
			tst := TunnelStatus{Remote: t.remote.String(), Key: b.vni, Local: t.local.String()}
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
	if u := s.f.underlay; u != nil {
		ps := s.dp.portStatus(u)
		ps.MAC, ps.MTU = s.underlayMAC.String(), s.underlayMTU
		for _, a := range s.underlayLocal {
			ps.LocalIPs = append(ps.LocalIPs, a.String())
		}
		st.Underlay = &ps
	}
	return st
}

// FDB lists the MAC tables of every bridge.
func (s *Switch) FDB() []FDBEntry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []FDBEntry{}
	now := s.f.clock.Now()
	for _, b := range s.f.bridges {
		es := b.table.Entries(now)
		sort.Slice(es, func(i, j int) bool { return es[i].MAC < es[j].MAC })
		for _, e := range es {
			fe := FDBEntry{Bridge: b.name, VNI: b.vni, MAC: e.MAC.String(), Age: e.Age.Seconds(), Static: e.Static}
			if e.Dest&tunnelBit != 0 {
				if id := int(e.Dest &^ tunnelBit); id < len(s.f.tunnels) {
					t := s.f.tunnels[id]
					fe.Port, fe.Remote = "tunnel:"+t.remote.String(), t.remote.String()
				}
			} else if int(e.Dest) < len(s.f.ports) {
				fe.Port = s.f.ports[e.Dest].name
			}
			out = append(out, fe)
		}
	}
	return out
}

// Stats sums the counters of every poller.
func (s *Switch) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ports := make([]portSum, len(s.f.ports))
	tuns := make([]portSum, len(s.f.tunnels))
	offs := make([]offSum, len(s.f.ports))
	opts := map[uint32]uint64{}
	var st Stats
	for _, c := range s.dp.cores() {
		for i := range ports {
			c.ctr[i].addTo(&ports[i])
		}
		for i := range tuns {
			c.tctr[i].addTo(&tuns[i])
		}
		for i := range offs {
			c.off[i].addTo(&offs[i])
		}
		st.OptionsOverflow += c.opt.addTo(opts)
		st.FloodCopies += atomic.LoadUint64(&c.floodCopies)
		st.TAPCopies += atomic.LoadUint64(&c.tapCopies)
	}
	st.Ports = []PortStats{}
	for i, p := range s.f.ports {
		ps := PortStats{Name: p.name, Kind: p.kind.String(), RxPackets: ports[i].rxPackets, RxBytes: ports[i].rxBytes,
			TxPackets: ports[i].txPackets, TxBytes: ports[i].txBytes, Drops: ports[i].dropMap()}
		offs[i].fill(&ps)
		if p.br != nil {
			ps.Bridge = p.br.name
		}
		st.Ports = append(st.Ports, ps)
	}
	st.Tunnels = []TunnelStats{}
	for i, t := range s.f.tunnels {
		st.Tunnels = append(st.Tunnels, TunnelStats{Bridge: t.br.name, Remote: t.remote.String(), VNI: t.br.vni,
			RxPackets: tuns[i].rxPackets, RxBytes: tuns[i].rxBytes, TxPackets: tuns[i].txPackets, TxBytes: tuns[i].txBytes,
			Drops: tuns[i].dropMap()})
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
