package vswitch

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
)

// What a reload changes: the difference between the running configuration
// and the new one (pure; reload.go applies it).

// portRef is a local port of a bridge.
type portRef struct{ bridge, name string }

// tunRef is a tunnel of a bridge (the configurations are the new file's
// for added tunnels, the old one's for removed ones).
type tunRef struct {
	key tunKey
	bc  *BridgeConfig
	tc  *TunnelConfig
}

// plan is what a reload does.
type plan struct {
	addBridges, delBridges []string
	addPorts, delPorts     []portRef
	// movePorts are local ports that change bridge: they leave the old one
	// first (their interface can be bound once only), then join the new.
	movePorts              []portRef // the new bridge
	addTuns, delTuns       []tunRef
	addInternal            []string // bridges (new, or internal: false → true)
	delInternal            []string // bridges (removed, or internal → false)
	keptInternal           []string // bridges whose internal port stays (maybe changed in place)
	fdbChanged             bool
	knownChanged           bool
	staticsChanged         []string // bridges
	keptPorts, keptTunnels int
	keptBridges            int
}

// restartOnly are the settings a reload cannot change: they shape the
// UMEM, the pollers and the control plane set up at start.
var restartOnly = []struct {
	field string
	get   func(c *Config) any
}{
	{"underlay", func(c *Config) any { return c.Underlay }},
	{"cpus", func(c *Config) any { return c.CPUs }},
	{"busy_poll", func(c *Config) any { return c.BusyPoll }},
	{"poller_policy", func(c *Config) any { return c.PollerPolicy }},
	{"control_socket", func(c *Config) any { return c.ControlSocket }},
	{"log_level", func(c *Config) any { return c.LogLevel }}, // xswitch ctl log-level changes it at run time
	{"poller_idle, poller_sleep_*, poller_kick_*", func(c *Config) any { return c.idle }},
	{"port_options", func(c *Config) any { return c.Ports }},
	{"umem", func(c *Config) any { return c.UMEM }},
	{"metrics", func(c *Config) any { return c.Metrics }},
	{"evpn", func(c *Config) any { return c.EVPN }},
}

// diffConfig compares two valid configurations. It refuses a change of a
// setting only a restart applies, naming each such setting.
func diffConfig(old, nc *Config) (*plan, error) {
	var errs []error
	for _, r := range restartOnly {
		if !reflect.DeepEqual(r.get(old), r.get(nc)) {
			errs = append(errs, fmt.Errorf("%s: changed, but a reload does not apply it; put the running value back, or restart xswitch to apply it (a reload applies bridges, ports, tunnels, options, static_macs, known_options and fdb)", r.field))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p := &plan{}
	oldB, newB := bridgesByName(old), bridgesByName(nc)
	for _, b := range nc.Bridges {
		if _, ok := oldB[b.Name]; !ok {
			p.addBridges = append(p.addBridges, b.Name)
		} else {
			p.keptBridges++
		}
	}
	for _, b := range old.Bridges {
		if _, ok := newB[b.Name]; !ok {
			p.delBridges = append(p.delBridges, b.Name)
		}
	}
	// Local ports, by interface name.
	oldP, newP := portBridges(old), portBridges(nc)
	for _, b := range nc.Bridges {
		for _, pn := range b.Ports {
			switch ob, ok := oldP[pn]; {
			case !ok:
				p.addPorts = append(p.addPorts, portRef{b.Name, pn})
			case ob != b.Name:
				p.movePorts = append(p.movePorts, portRef{b.Name, pn})
			default:
				p.keptPorts++
			}
		}
	}
	for _, b := range old.Bridges {
		for _, pn := range b.Ports {
			if _, ok := newP[pn]; !ok {
				p.delPorts = append(p.delPorts, portRef{b.Name, pn})
			}
		}
	}
	// Tunnels, by everything that shapes their encapsulation.
	oldT, newT := tunnelsByKey(old), tunnelsByKey(nc)
	for _, r := range orderedTunnels(nc) {
		if _, ok := oldT[r.key]; !ok {
			p.addTuns = append(p.addTuns, r)
		} else {
			p.keptTunnels++
		}
	}
	for _, r := range orderedTunnels(old) {
		if _, ok := newT[r.key]; !ok {
			p.delTuns = append(p.delTuns, r)
		}
	}
	// Internal ports, by bridge.
	for _, b := range nc.Bridges {
		ob, kept := oldB[b.Name]
		switch {
		case b.HasInternal() && (!kept || !ob.HasInternal()):
			p.addInternal = append(p.addInternal, b.Name)
		case b.HasInternal():
			p.keptInternal = append(p.keptInternal, b.Name)
		}
		if kept && !staticsEqual(ob.StaticMACs, b.StaticMACs) {
			p.staticsChanged = append(p.staticsChanged, b.Name)
		}
	}
	for _, b := range old.Bridges {
		if nb, kept := newB[b.Name]; b.HasInternal() && (!kept || !nb.HasInternal()) {
			p.delInternal = append(p.delInternal, b.Name)
		}
	}
	p.fdbChanged = old.FDB.MaxEntries != nc.FDB.MaxEntries || old.FDB.Age != nc.FDB.Age
	p.knownChanged = !reflect.DeepEqual(old.KnownOptions, nc.KnownOptions)
	return p, nil
}

func bridgesByName(c *Config) map[string]*BridgeConfig {
	m := map[string]*BridgeConfig{}
	for i := range c.Bridges {
		m[c.Bridges[i].Name] = &c.Bridges[i]
	}
	return m
}

// portBridges maps each local port to its bridge.
func portBridges(c *Config) map[string]string {
	m := map[string]string{}
	for _, b := range c.Bridges {
		for _, pn := range b.Ports {
			m[pn] = b.Name
		}
	}
	return m
}

func orderedTunnels(c *Config) []tunRef {
	var out []tunRef
	for bi := range c.Bridges {
		b := &c.Bridges[bi]
		for ti := range b.Tunnels {
			out = append(out, tunRef{key: tunKeyOf(b, &b.Tunnels[ti]), bc: b, tc: &b.Tunnels[ti]})
		}
	}
	return out
}

func tunnelsByKey(c *Config) map[tunKey]tunRef {
	m := map[tunKey]tunRef{}
	for _, r := range orderedTunnels(c) {
		m[r.key] = r
	}
	return m
}

func staticsEqual(a, b []StaticMACConfig) bool {
	key := func(s StaticMACConfig) string { return fmt.Sprintf("%v>%s>%v", s.Addr, s.Port, s.Remote) }
	ka, kb := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		ka[i] = key(a[i])
	}
	for i := range b {
		kb[i] = key(b[i])
	}
	slices.Sort(ka)
	slices.Sort(kb)
	return slices.Equal(ka, kb)
}

// describe is the summary a reload reports.
func (p *plan) describe(res *ReloadResult) {
	for _, b := range p.addBridges {
		res.Added = append(res.Added, "bridge "+b)
	}
	for _, b := range p.delBridges {
		res.Removed = append(res.Removed, "bridge "+b)
	}
	for _, r := range p.addPorts {
		res.Added = append(res.Added, fmt.Sprintf("port %s (bridge %s)", r.name, r.bridge))
	}
	for _, r := range p.movePorts {
		res.Changed = append(res.Changed, fmt.Sprintf("port %s moved to bridge %s", r.name, r.bridge))
	}
	for _, r := range p.delPorts {
		res.Removed = append(res.Removed, fmt.Sprintf("port %s (bridge %s)", r.name, r.bridge))
	}
	for _, r := range p.addTuns {
		res.Added = append(res.Added, tunnelName(r))
	}
	for _, r := range p.delTuns {
		res.Removed = append(res.Removed, tunnelName(r))
	}
	for _, b := range p.addInternal {
		res.Added = append(res.Added, "internal port "+b)
	}
	for _, b := range p.delInternal {
		res.Removed = append(res.Removed, "internal port "+b)
	}
	for _, b := range p.staticsChanged {
		res.Changed = append(res.Changed, "static_macs of bridge "+b)
	}
	if p.fdbChanged {
		res.Changed = append(res.Changed, "fdb (MAC tables rebuilt, entries kept)")
	}
	if p.knownChanged {
		res.Changed = append(res.Changed, "known_options")
	}
	res.Kept = p.keptBridges + p.keptPorts + p.keptTunnels
}

func tunnelName(r tunRef) string {
	s := fmt.Sprintf("tunnel %s (bridge %s, key %d", r.key.remote, r.key.bridge, r.key.vni)
	if len(r.tc.GenOptions) > 0 {
		s += fmt.Sprintf(", %d options", len(r.tc.GenOptions))
	}
	return s + ")"
}

// hasPrefix reports whether ps holds p.
func hasPrefix(ps []netip.Prefix, p netip.Prefix) bool { return slices.Contains(ps, p) }
