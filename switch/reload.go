package vswitch

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"xswitch/flowtable"
)

// ReloadResult says what Apply changed.
type ReloadResult struct {
	Generation uint64   `json:"generation"` // the fabric generation now in use
	Added      []string `json:"added"`
	Removed    []string `json:"removed"`
	Changed    []string `json:"changed"`
	Kept       int      `json:"kept"` // bridges, ports and tunnels left as they were
	// Warnings are parts that could not be applied (the rest was).
	Warnings []string `json:"warnings,omitempty"`
}

// Apply makes a new, valid configuration (ParseConfig) the running one,
// without a restart: it adds and removes bridges, local ports, tunnels,
// internal ports and static MACs, and applies option, known_options and
// fdb changes. What did not change keeps running — its sockets, pollers,
// counters and learned MACs — and keeps forwarding throughout. The new
// configuration is checked against the system first; a setting only a
// restart applies, a missing interface or a taken name is refused and
// nothing changes.
func (s *Switch) Apply(nc *Config) (*ReloadResult, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	if s.closed.Load() {
		return nil, errors.New("xswitch is stopping")
	}
	old := s.cfg
	p, err := diffConfig(old, nc)
	if err != nil {
		return nil, err
	}
	if err := s.checkReload(nc, p); err != nil {
		return nil, err
	}
	res := &ReloadResult{}
	p.describe(res)
	if err := s.movePortsOut(p); err != nil {
		return nil, err
	}
	added, err := s.openNew(old, nc, p, res)
	if err != nil {
		return nil, err
	}
	s.ensureSpace()
	s.mu.Lock()
	for _, id := range added.ports {
		s.dp.zeroPort(id)
	}
	for _, id := range added.tuns {
		s.dp.zeroTunnel(id)
	}
	s.cfg = nc
	s.mu.Unlock()
	f := s.buildFabric(nc)
	s.fab.Store(f)
	for _, pr := range added.pollers {
		if len(pr.tx) > 0 {
			s.dp.addPollers(pr, f)
		} else if pr.tap != nil {
			s.dp.addTAPPoller(pr, f)
		}
	}
	if err := s.updateResolver(f); err != nil {
		res.Warnings = append(res.Warnings, err.Error())
	}
	if err := s.applyStatics(nc, f); err != nil {
		res.Warnings = append(res.Warnings, err.Error())
	}
	s.dp.waitGen(f.gen)
	s.retireRemoved(old, p)
	if s.ev != nil {
		s.ev.poke() // EVPN tunnels of a removed bridge go, a new bridge gets its routes' tunnels
	}
	res.Generation = f.gen
	s.log.Info("configuration applied", zap.Uint64("generation", f.gen), zap.Strings("added", res.Added), zap.Strings("removed", res.Removed),
		zap.Strings("changed", res.Changed), zap.Int("kept", res.Kept), zap.Strings("warnings", res.Warnings))
	return res, nil
}

// checkReload checks what the new configuration needs from the system,
// for the parts that are new (what runs is there already).
func (s *Switch) checkReload(nc *Config, p *plan) error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	newPorts := map[string]bool{}
	for _, r := range append(slices.Clone(p.addPorts), p.movePorts...) {
		newPorts[r.name] = true
	}
	newTAPs := map[string]bool{}
	for _, b := range p.addInternal {
		newTAPs[b] = true
	}
	for bi, b := range nc.Bridges {
		if newTAPs[b.Name] {
			if _, err := netlink.LinkByName(b.Name); err == nil && s.ports[b.Name] == nil {
				bad(fmt.Sprintf("bridges[%d].name", bi), "an interface %q already exists in this network namespace; the internal port needs a free name (or set internal: false)", b.Name)
			}
		}
		for pi, pn := range b.Ports {
			if !newPorts[pn] {
				continue
			}
			if _, err := netlink.LinkByName(pn); err != nil {
				bad(fmt.Sprintf("bridges[%d].ports[%d]", bi, pi), "no interface %q in this network namespace; write an existing interface (see `ip link`)", pn)
				continue
			}
			checkQueues(fmt.Sprintf("port_options.queues (bridges[%d] port %s)", bi, pn), pn, nc.Ports.Queues, bad)
		}
		for ti, t := range b.Tunnels {
			if !hasFamily(s.underlayLocal, t.Remote) {
				bad(fmt.Sprintf("bridges[%d].tunnels[%d].remote_ip", bi, ti), "%v is %s, but the underlay has no %s tunnel endpoint address; add one and restart xswitch",
					t.Remote, family(t.Remote), family(t.Remote))
			}
		}
	}
	return errors.Join(errs...)
}

// movePortsOut takes the ports that change bridge out of their old one:
// one generation without them, then their sockets close, so that the
// interface can be bound again for the new bridge.
func (s *Switch) movePortsOut(p *plan) error {
	if len(p.movePorts) == 0 {
		return nil
	}
	var moving []*portRes
	for _, r := range p.movePorts {
		pr := s.ports[r.name]
		s.mu.Lock()
		pr.moved = true
		s.mu.Unlock()
		moving = append(moving, pr)
	}
	f := s.buildFabric(s.cfg)
	s.fab.Store(f)
	s.dp.waitGen(f.gen)
	for _, pr := range moving {
		s.removePort(pr)
	}
	p.addPorts = append(p.addPorts, p.movePorts...)
	return nil
}

// opened is what a reload created.
type opened struct {
	ports, tuns []int
	pollers     []*portRes // ports whose pollers start with the new generation
}

// openNew creates the new internal ports, AF_XDP ports, tunnels and MAC
// tables and applies in-place changes of the internal ports that stay. On
// failure it removes what it created and nothing changes.
func (s *Switch) openNew(old, nc *Config, p *plan, res *ReloadResult) (*opened, error) {
	o := &opened{}
	var undo []func()
	fail := func(err error) (*opened, error) {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return nil, err
	}
	newB := bridgesByName(nc)
	for _, name := range p.addInternal {
		pr, err := s.openInternal(newB[name])
		if err != nil {
			return fail(err)
		}
		undo = append(undo, func() { s.dropPortRes(pr); _ = pr.tap.close() })
		o.ports = append(o.ports, pr.id)
		o.pollers = append(o.pollers, pr)
	}
	for _, r := range p.addPorts {
		pr := &portRes{id: s.portIDs.get(), name: r.name, kind: kindLocal, bridge: r.bridge, link: linkUp}
		if l, err := netlink.LinkByName(r.name); err == nil {
			pr.link = linkState(l)
		}
		s.mu.Lock()
		s.ports[r.name] = pr
		s.mu.Unlock()
		undo = append(undo, func() { s.dropPortRes(pr) })
		if err := s.dp.openPort(pr, nc); err != nil {
			return fail(fmt.Errorf("port %s: %w", r.name, err))
		}
		undo = append(undo, func() { _ = s.dp.closePort(pr) })
		o.ports = append(o.ports, pr.id)
		o.pollers = append(o.pollers, pr)
	}
	for _, r := range p.addTuns {
		t := s.addTunnel(r.bc, r.tc)
		undo = append(undo, func() { delete(s.tuns, r.key); s.tunIDs.put(t.id) })
		o.tuns = append(o.tuns, t.id)
	}
	oldTables := map[string]*tableRes{}
	for _, name := range p.addBridges {
		s.tables[name] = newTableRes(nc)
		undo = append(undo, func() { delete(s.tables, name) })
	}
	if p.fdbChanged {
		for _, b := range nc.Bridges {
			if tr := s.tables[b.Name]; !slices.Contains(p.addBridges, b.Name) {
				oldTables[b.Name] = tr
				s.tables[b.Name] = s.copyTable(tr, nc)
			}
		}
		undo = append(undo, func() {
			for n, tr := range oldTables {
				s.tables[n] = tr
			}
		})
	}
	oldB := bridgesByName(old)
	for _, name := range p.keptInternal {
		ch, err := s.updateInternal(s.ports[name], oldB[name], newB[name])
		res.Changed = append(res.Changed, ch...)
		if err != nil {
			return fail(err)
		}
	}
	return o, nil
}

// dropPortRes forgets a port's resources and frees its id.
func (s *Switch) dropPortRes(pr *portRes) {
	s.mu.Lock()
	if s.ports[pr.name] == pr {
		delete(s.ports, pr.name)
	}
	s.mu.Unlock()
	s.portIDs.put(pr.id)
}

// copyTable is a new MAC table for the fdb settings of c with the entries
// of tr (learned ones keep their age).
func (s *Switch) copyTable(tr *tableRes, c *Config) *tableRes {
	nt := newTableRes(c)
	now := s.clock.Now()
	for _, e := range tr.t.Entries(now) {
		if e.Static {
			_ = nt.t.AddStatic(e.MAC, e.Dest)
			continue
		}
		nt.t.Learn(e.MAC, e.Dest, now-uint32(e.Age.Seconds()))
	}
	for m, d := range tr.statics {
		nt.statics[m] = d
	}
	return nt
}

// ensureSpace publishes a generation with longer id-indexed slices when a
// new id does not fit the current ones, and waits until every poller has
// it: a poller on an older generation must never meet an id beyond its
// slices (a MAC learned on a new port by a poller on the new generation).
func (s *Switch) ensureSpace() {
	np, nt := space(s.portIDs.next), space(s.tunIDs.next)
	if np <= s.portSpace && nt <= s.tunSpace {
		return
	}
	s.portSpace, s.tunSpace = max(np, s.portSpace), max(nt, s.tunSpace)
	g := s.cur().grown(s.portSpace, s.tunSpace)
	s.fab.Store(g)
	s.dp.waitGen(g.gen)
}

// updateResolver gives the resolver the tunnels of f.
func (s *Switch) updateResolver(f *fabric) error {
	if s.res == nil {
		return nil
	}
	s.res.setTunnels(s.tunnelList(f))
	return nil
}

// retireRemoved closes what the new generation no longer has, once no
// poller uses the old one: pollers, sockets and TAPs of removed ports,
// the MAC entries of removed ports and tunnels, removed bridges' tables.
func (s *Switch) retireRemoved(old *Config, p *plan) {
	for _, r := range p.delPorts {
		if pr := s.ports[r.name]; pr != nil {
			s.removePort(pr)
		}
	}
	for _, b := range p.delInternal {
		if pr := s.ports[b]; pr != nil {
			s.removePort(pr)
		}
	}
	for _, r := range p.delTuns {
		t := s.tuns[r.key]
		if t == nil || (s.ev != nil && s.ev.adopt(r.key, t)) {
			continue
		}
		delete(s.tuns, r.key)
		if tr := s.tables[r.key.bridge]; tr != nil {
			tr.flush(t.dest)
		}
		s.tunIDs.put(t.id)
	}
	for _, b := range p.delBridges {
		delete(s.tables, b)
	}
}

// removePort stops a port's pollers, closes its sockets or TAP, flushes
// its MAC entries and frees its id. The published generation no longer
// has it and every poller has taken that generation up.
func (s *Switch) removePort(pr *portRes) {
	s.dp.stopPort(pr.id)
	if pr.xp != nil {
		if err := s.dp.closePort(pr); err != nil {
			s.log.Warn("close removed port", zap.String("port", pr.name), zap.Error(err))
		}
	}
	if pr.tap != nil {
		if err := pr.tap.close(); err != nil {
			s.log.Warn("remove internal port", zap.String("port", pr.name), zap.Error(err))
		}
	}
	if tr := s.tables[pr.bridge]; tr != nil {
		tr.flush(flowtable.Dest(pr.id))
	}
	s.dropPortRes(pr)
	s.log.Info("port removed", zap.String("port", pr.name), zap.Stringer("kind", pr.kind), zap.String("bridge", pr.bridge))
}

// flush forgets every entry on d, static ones included.
func (tr *tableRes) flush(d flowtable.Dest) {
	tr.t.Flush(d)
	for m, sd := range tr.statics {
		if sd == d {
			delete(tr.statics, m)
		}
	}
}

// applyStatics makes each bridge's static entries those of its internal
// port's MAC and of its static_macs. Entries go in after the generation
// that has their destinations is published.
func (s *Switch) applyStatics(c *Config, f *fabric) error {
	var errs []error
	for _, b := range f.bridges {
		tr := s.tables[b.name]
		want := map[flowtable.MAC]flowtable.Dest{}
		if b.internal != nil {
			if pr := s.ports[b.name]; pr != nil && pr.tap != nil {
				want[flowtable.MACFrom(pr.tap.mac)] = b.internal.dest
			}
		}
		for _, sm := range b.cfg.StaticMACs {
			if d, ok := s.staticDest(b, sm); ok {
				want[sm.Addr] = d
			}
		}
		for m := range tr.statics {
			if _, ok := want[m]; !ok {
				tr.t.RemoveStatic(m)
				delete(tr.statics, m)
			}
		}
		if s.ev != nil {
			evpnWant := map[flowtable.MAC]flowtable.Dest{}
			s.ev.staticsFor(b, evpnWant)
			for m, d := range evpnWant {
				if _, ok := want[m]; !ok {
					want[m] = d
				}
			}
		}
		for m, d := range want {
			if cur, ok := tr.statics[m]; ok && cur == d {
				continue
			}
			if err := tr.t.AddStatic(m, d); err != nil {
				errs = append(errs, fmt.Errorf("bridge %s: static MAC %s: %w", b.name, m, err))
				continue
			}
			tr.statics[m] = d
		}
	}
	return errors.Join(errs...)
}

// staticDest is where a static MAC of bridge b goes.
func (s *Switch) staticDest(b *bridge, sm StaticMACConfig) (flowtable.Dest, bool) {
	if sm.Port != "" {
		if pr := s.ports[sm.Port]; pr != nil {
			return flowtable.Dest(pr.id), true
		}
		return 0, false
	}
	if t := b.findRemote(sm.Remote); t != nil {
		return t.dest, true
	}
	return 0, false
}

// updateInternal applies a kept internal port's new addresses, MAC and
// MTU in place (the TAP stays, and so does its traffic).
func (s *Switch) updateInternal(pr *portRes, ob, nb *BridgeConfig) ([]string, error) {
	if pr == nil || pr.tap == nil {
		return nil, nil
	}
	t := pr.tap
	link, err := netlink.LinkByIndex(t.ifindex)
	if err != nil {
		return nil, fmt.Errorf("internal port %s: %w", t.name, err)
	}
	var ch []string
	for _, a := range nb.Prefixes {
		if hasPrefix(ob.Prefixes, a) {
			continue
		}
		na := &netlink.Addr{IPNet: &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())}}
		if a.Addr().Is6() {
			na.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(link, na); err != nil {
			return ch, fmt.Errorf("internal port %s: add address %v: %w", t.name, a, err)
		}
		ch = append(ch, fmt.Sprintf("internal port %s: address %v added", t.name, a))
	}
	for _, a := range ob.Prefixes {
		if hasPrefix(nb.Prefixes, a) {
			continue
		}
		na := &netlink.Addr{IPNet: &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())}}
		if err := netlink.AddrDel(link, na); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return ch, fmt.Errorf("internal port %s: remove address %v: %w", t.name, a, err)
		}
		ch = append(ch, fmt.Sprintf("internal port %s: address %v removed", t.name, a))
	}
	if nb.HWAddr != nil && !strings.EqualFold(net.HardwareAddr(nb.HWAddr).String(), t.mac.String()) {
		mac := net.HardwareAddr(slices.Clone(nb.HWAddr))
		if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
			return ch, fmt.Errorf("internal port %s: set MAC %s: %w", t.name, mac, err)
		}
		s.mu.Lock()
		t.mac = mac
		s.mu.Unlock()
		ch = append(ch, fmt.Sprintf("internal port %s: mac %s", t.name, mac))
	}
	if mtu, lowered := s.bridgeMTU(nb); mtu != 0 && mtu != t.mtu {
		if lowered {
			s.log.Warn("bridge MTU lowered to fit the underlay", zap.String("bridge", nb.Name), zap.Int("mtu", mtu))
		}
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			return ch, fmt.Errorf("internal port %s: set MTU %d: %w", t.name, mtu, err)
		}
		ch = append(ch, fmt.Sprintf("internal port %s: mtu %d → %d", t.name, t.mtu, mtu))
		s.mu.Lock()
		t.mtu = mtu
		s.mu.Unlock()
	}
	return ch, nil
}

// FlushFDB forgets the learned MAC entries of one bridge ("" = every
// bridge); static entries stay. It returns how many were removed.
func (s *Switch) FlushFDB(bridge string) (int, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	f := s.cur()
	n, found := 0, false
	var names []string
	now := s.clock.Now()
	for _, b := range f.bridges {
		names = append(names, b.name)
		if bridge != "" && b.name != bridge {
			continue
		}
		found = true
		for _, e := range b.table.Entries(now) {
			// Static entries change only under applyMu: one seen dynamic
			// here is still dynamic when deleted.
			if !e.Static && b.table.Delete(e.MAC) {
				n++
			}
		}
	}
	if !found {
		return 0, fmt.Errorf("no bridge %q; bridges: %s", bridge, strings.Join(names, ", "))
	}
	s.log.Info("MAC table flushed (learned entries)", zap.String("bridge", bridge), zap.Int("entries", n))
	return n, nil
}
