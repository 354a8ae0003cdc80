// Package evpn is xswitch's BGP EVPN control plane (RFC 7432, overlays per
// RFC 8365) on an embedded GoBGP speaker: it announces each VNI's tunnel
// endpoint (type-3 inclusive multicast routes, PMSI ingress replication)
// and the MACs learned locally (type-2 MAC/IP routes), and turns the routes
// other hosts announce into flood lists, tunnels and remote MAC entries of
// the data plane, which it reaches only through the Dataplane interface.
// See docs/fabric.md.
package evpn

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
)

// Auto is the value that asks for a derived route distinguisher or route
// target.
const Auto = "auto"

// Defaults.
const (
	DefaultHoldTime    = 9 * time.Second
	DefaultRestartTime = 120 * time.Second
)

// Config is the `evpn:` section of the configuration file.
type Config struct {
	// RouterID is the BGP identifier (an IPv4 address). Default: LocalIP
	// when it is IPv4.
	RouterID string `yaml:"router_id"`
	// ASN is the local autonomous system; neighbours default to it (iBGP
	// to route reflectors).
	ASN int64 `yaml:"asn"`
	// LocalIP is the tunnel endpoint announced as next hop and in the PMSI
	// tunnel attribute. Default: the switch's underlay local IP, passed to
	// Resolve.
	LocalIP string `yaml:"local_ip"`
	// HoldTime is the BGP hold time (Go duration, 3s..65535s); keepalives
	// are sent every third of it. A session whose peer went silent is
	// dropped after it, and the routes learned over it with it.
	HoldTime string `yaml:"hold_time"`
	// GracefulRestart keeps a restarting peer's routes (marked stale) for
	// the restart time instead of dropping them with the session.
	GracefulRestart GracefulRestartConfig `yaml:"graceful_restart"`
	// FloodUnknownUnicast: unknown unicast to an EVPN bridge is still sent
	// to every VTEP of the flood list (default true).
	FloodUnknownUnicast *bool `yaml:"flood_unknown_unicast"`
	// Neighbors are the route reflectors (or any BGP EVPN peers).
	Neighbors []NeighborConfig `yaml:"neighbors"`
	// VNIs are the EVPN instances, one per bridge.
	VNIs []VNIConfig `yaml:"vnis"`

	// Filled by Validate/Resolve.
	routerID netip.Addr
	localIP  netip.Addr
	holdTime time.Duration
	restart  time.Duration
}

// GracefulRestartConfig enables BGP graceful restart (RFC 4724).
type GracefulRestartConfig struct {
	Enabled     bool   `yaml:"enabled"`
	RestartTime string `yaml:"restart_time"` // Go duration, 1s..4095s; default 120s
}

// NeighborConfig is one BGP peer.
type NeighborConfig struct {
	Address  string `yaml:"address"`
	ASN      int64  `yaml:"asn"`      // default: evpn.asn (iBGP)
	Password string `yaml:"password"` // TCP MD5 (RFC 2385); optional

	addr netip.Addr
}

// VNIConfig is one EVPN instance: a bridge's VNI with its route
// distinguisher and route targets.
type VNIConfig struct {
	VNI int64 `yaml:"vni"`
	// RD is "auto" (default: router_id:VNI, or router_id:(VNI mod 65536) for
	// VNIs above 65535), or "ASN:n" / "IP:n".
	RD string `yaml:"rd"`
	// RouteTargets are imported and exported; "auto" (default) is ASN:VNI
	// with the ASN's low 16 bits, as FRR derives it.
	RouteTargets []string `yaml:"route_targets"`
	// ImportRTs / ExportRTs replace route_targets for one direction.
	ImportRTs []string `yaml:"import_route_targets"`
	ExportRTs []string `yaml:"export_route_targets"`

	rd        bgp.RouteDistinguisherInterface
	importRTs []bgp.ExtendedCommunityInterface
	exportRTs []bgp.ExtendedCommunityInterface
}

// FloodUnknown reports whether unknown unicast is flooded (default true).
func (c *Config) FloodUnknown() bool { return c.FloodUnknownUnicast == nil || *c.FloodUnknownUnicast }

// Validate checks the section without looking at the system and returns
// every problem, each naming its YAML path under path (e.g. "evpn") and the
// fix. It derives the automatic RDs and RTs. localIP is the switch's local
// tunnel endpoint, used when local_ip is not set (invalid: none known).
func (c *Config) Validate(path string, localIP netip.Addr) []error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s.%s: %s", path, field, fmt.Sprintf(format, a...)))
	}
	c.validateLocal(bad, localIP)
	if c.ASN < 1 || c.ASN > 0xffffffff || c.ASN == 23456 {
		bad("asn", "%d is not an AS number; write 1..4294967295 (not 23456), e.g. asn: 65000", c.ASN)
	}
	c.holdTime = DefaultHoldTime
	if c.HoldTime != "" {
		d, err := time.ParseDuration(c.HoldTime)
		if err != nil || d < 3*time.Second || d > 65535*time.Second || d%time.Second != 0 {
			bad("hold_time", "%q is not a whole number of seconds between 3s and 65535s; write e.g. 9s", c.HoldTime)
		}
		c.holdTime = d
	}
	c.restart = DefaultRestartTime
	if s := c.GracefulRestart.RestartTime; s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < time.Second || d > 4095*time.Second || d%time.Second != 0 {
			bad("graceful_restart.restart_time", "%q is not a whole number of seconds between 1s and 4095s; write e.g. 120s", s)
		}
		c.restart = d
		if !c.GracefulRestart.Enabled {
			bad("graceful_restart.restart_time", "set, but graceful_restart.enabled is false; write enabled: true or remove restart_time")
		}
	}
	c.validateNeighbors(bad)
	c.validateVNIs(bad)
	return errs
}

func (c *Config) validateLocal(bad func(string, string, ...any), fallback netip.Addr) {
	c.localIP = fallback
	if c.LocalIP != "" {
		a, err := netip.ParseAddr(c.LocalIP)
		if err != nil || a.Zone() != "" || !(a.Unmap().IsGlobalUnicast() || a.Unmap().IsPrivate()) {
			bad("local_ip", "%q is not a unicast IP address; write the local tunnel endpoint, e.g. local_ip: 192.0.2.1", c.LocalIP)
		}
		c.localIP = a.Unmap()
	} else if !fallback.IsValid() {
		bad("local_ip", "missing, and the underlay has no local_ip to take it from; write the local tunnel endpoint, e.g. local_ip: 192.0.2.1")
	}
	c.routerID = netip.Addr{}
	switch {
	case c.RouterID != "":
		a, err := netip.ParseAddr(c.RouterID)
		if err != nil || !a.Is4() || a.IsUnspecified() {
			bad("router_id", "%q is not an IPv4 address; a BGP router id is 32 bits written as one, e.g. router_id: 192.0.2.1", c.RouterID)
		} else {
			c.routerID = a
		}
	case c.localIP.Is4():
		c.routerID = c.localIP
	case c.localIP.IsValid():
		bad("router_id", "missing, and local_ip %v is IPv6; write an IPv4 address unique in the fabric, e.g. router_id: 192.0.2.1", c.localIP)
	}
}

func (c *Config) validateNeighbors(bad func(string, string, ...any)) {
	if len(c.Neighbors) == 0 {
		bad("neighbors", "none configured; add the route reflectors, e.g. neighbors: [{address: 192.0.2.10}, {address: 192.0.2.11}]")
	}
	seen := map[netip.Addr]int{}
	for i := range c.Neighbors {
		n := &c.Neighbors[i]
		f := fmt.Sprintf("neighbors[%d]", i)
		a, err := netip.ParseAddr(n.Address)
		switch {
		case n.Address == "":
			bad(f+".address", "missing; write the route reflector's address, e.g. address: 192.0.2.10")
		case err != nil || a.Zone() != "" || !(a.Unmap().IsGlobalUnicast() || a.Unmap().IsPrivate() || a.Unmap().IsLoopback()):
			bad(f+".address", "%q is not a unicast IP address; write e.g. address: 192.0.2.10", n.Address)
		default:
			a = a.Unmap()
			if prev, ok := seen[a]; ok {
				bad(f+".address", "%v is also neighbors[%d]; list each neighbour once", a, prev)
			}
			seen[a] = i
			n.addr = a
		}
		if n.ASN != 0 && (n.ASN < 1 || n.ASN > 0xffffffff || n.ASN == 23456) {
			bad(f+".asn", "%d is not an AS number; write 1..4294967295, or leave it out for evpn.asn (iBGP)", n.ASN)
		}
		if len(n.Password) > 80 {
			bad(f+".password", "%d characters; a TCP MD5 key has at most 80", len(n.Password))
		}
	}
}

func (c *Config) validateVNIs(bad func(string, string, ...any)) {
	if len(c.VNIs) == 0 {
		bad("vnis", "none configured; add the bridges' VNIs, e.g. vnis: [{vni: 5000}]")
	}
	seen := map[int64]int{}
	rds := map[string]int{}
	for i := range c.VNIs {
		v := &c.VNIs[i]
		f := fmt.Sprintf("vnis[%d]", i)
		if v.VNI < 0 || v.VNI > 0xffffff {
			bad(f+".vni", "%d is out of range; a VNI is 24 bits: 0..16777215", v.VNI)
			continue
		}
		if prev, ok := seen[v.VNI]; ok {
			bad(f+".vni", "%d is also vnis[%d]; list each VNI once", v.VNI, prev)
			continue
		}
		seen[v.VNI] = i
		v.rd = nil
		if v.RD == "" || v.RD == Auto {
			if rd, err := bgp.NewRouteDistinguisherIPAddressAS(c.routerID, uint16(v.VNI)); err == nil {
				v.rd = rd
			}
		} else if rd, err := bgp.ParseRouteDistinguisher(v.RD); err != nil {
			bad(f+".rd", "%q is not a route distinguisher; write auto, ASN:n or IP:n, e.g. rd: 192.0.2.1:5000", v.RD)
		} else {
			v.rd = rd
		}
		if v.rd != nil {
			if prev, ok := rds[v.rd.String()]; ok {
				bad(f+".rd", "%v is also the route distinguisher of vnis[%d] (auto uses router_id:VNI mod 65536); write an rd of its own", v.rd, prev)
			}
			rds[v.rd.String()] = i
		}
		both := c.parseRTs(bad, f+".route_targets", v.RouteTargets, v.VNI)
		v.importRTs, v.exportRTs = both, both
		if len(v.ImportRTs) > 0 {
			v.importRTs = c.parseRTs(bad, f+".import_route_targets", v.ImportRTs, v.VNI)
		}
		if len(v.ExportRTs) > 0 {
			v.exportRTs = c.parseRTs(bad, f+".export_route_targets", v.ExportRTs, v.VNI)
		}
	}
}

// parseRTs parses route targets; none or "auto" is ASN:VNI.
func (c *Config) parseRTs(bad func(string, string, ...any), f string, list []string, vni int64) []bgp.ExtendedCommunityInterface {
	if len(list) == 0 {
		list = []string{Auto}
	}
	var out []bgp.ExtendedCommunityInterface
	for i, s := range list {
		if s == Auto {
			// FRR's auto RT: the ASN's low 16 bits : VNI.
			out = append(out, bgp.NewTwoOctetAsSpecificExtended(bgp.EC_SUBTYPE_ROUTE_TARGET, uint16(c.ASN), uint32(vni), true))
			continue
		}
		rt, err := bgp.ParseRouteTarget(s)
		if err != nil {
			bad(fmt.Sprintf("%s[%d]", f, i), "%q is not a route target; write auto, ASN:n or IP:n, e.g. 65000:5000", s)
			continue
		}
		out = append(out, rt)
	}
	return out
}
