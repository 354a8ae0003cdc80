// Package vswitch is the xswitch data plane: ports (AF_XDP on the underlay
// NIC and on local interfaces, a TAP internal port per bridge), the polled
// packet loop, MAC learning and forwarding per bridge, and Geneve tunnels
// with their underlay next hops. See docs/architecture.md.
package vswitch

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"xswitch/evpn"
	"xswitch/flowtable"
	"xswitch/geneve"
	"xswitch/xsk"
)

// DefaultControlSocket is the control socket when none is configured: an
// abstract unix socket, which belongs to the network namespace, so one
// instance per namespace never collides with another and `xswitch ctl` run
// inside a namespace finds that namespace's instance.
const DefaultControlSocket = "@xswitch"

// Config is the configuration file of `xswitch run` (YAML). Fields tagged
// yaml:"-" are filled by Validate from the textual ones.
type Config struct {
	// Underlay is the physical NIC that carries the tunnels. Optional when no
	// bridge has tunnels.
	Underlay *UnderlayConfig `yaml:"underlay"`
	// CPUs the pollers are pinned to (round-robin). Empty: the CPUs the
	// process may run on.
	CPUs []int `yaml:"cpus"`
	// BusyPoll makes pollers spin instead of sleeping in poll() when idle.
	BusyPoll bool `yaml:"busy_poll"`
	// PollerPolicy is the scheduling policy of the pollers' threads:
	// "batch" (SCHED_BATCH, the default: a woken poller does not preempt
	// the thread that woke it, typically the NAPI thread still filling
	// its RX ring; docs/benchmarks.md) or "normal" (SCHED_OTHER).
	PollerPolicy string `yaml:"poller_policy"`
	// PollerIdle is what a poller does between bursts: "poll" (default:
	// poll() as soon as the RX ring is empty) or "sleep" (load-based
	// nanosleep, as Open vSwitch's pmd-maxsleep); with the PollerSleep*
	// and PollerKick* settings, parsed into idle (switch/idle.go).
	PollerIdle       string `yaml:"poller_idle"`
	PollerSleepMax   string `yaml:"poller_sleep_max"`
	PollerSleepStep  string `yaml:"poller_sleep_step"`
	PollerSleepIdle  string `yaml:"poller_sleep_idle"`
	PollerKickFrames int    `yaml:"poller_kick_frames"`
	PollerKickDelay  string `yaml:"poller_kick_delay"`
	// ControlSocket is where `xswitch ctl` connects: "@name" for an abstract
	// socket (default "@xswitch"), or a filesystem path.
	ControlSocket string `yaml:"control_socket"`
	// LogLevel is debug, info (default), warn or error.
	LogLevel string `yaml:"log_level"`
	// Ports sets how local ports are opened (defaults for every local port).
	Ports PortOptions `yaml:"port_options"`
	// UMEM sizes the one packet buffer area shared by every AF_XDP socket.
	UMEM UMEMConfig `yaml:"umem"`
	// FDB sizes each bridge's MAC table.
	FDB FDBConfig `yaml:"fdb"`
	// KnownOptions are the Geneve option kinds this switch understands: a
	// received frame with a critical option not listed here is dropped.
	KnownOptions []OptionKind `yaml:"known_options"`
	// Bridges are the L2 domains, one VNI each.
	Bridges []BridgeConfig `yaml:"bridges"`
	// Metrics serves Prometheus metrics (config_metrics.go).
	Metrics MetricsConfig `yaml:"metrics"`
	// EVPN is the BGP EVPN control plane (docs/fabric.md): tunnels, flood
	// lists and remote MACs of the bridges of its VNIs come from BGP routes.
	EVPN *evpn.Config `yaml:"evpn"`

	known geneve.KnownOptions
	idle  idleConfig
}

// Poller scheduling policies (Config.PollerPolicy).
const (
	PolicyNormal = "normal" // SCHED_OTHER
	PolicyBatch  = "batch"  // SCHED_BATCH
)

// UnderlayConfig is the underlay NIC.
type UnderlayConfig struct {
	Interface string `yaml:"interface"`
	// LocalIP is the local tunnel endpoint address (one per family at most).
	// Empty: the interface's own addresses.
	LocalIP     string   `yaml:"local_ip"`
	LocalIPs    []string `yaml:"local_ips"`
	PortOptions `yaml:",inline"`

	Local []netip.Addr `yaml:"-"` // parsed LocalIP + LocalIPs
}

// PortOptions say how an AF_XDP port is opened.
type PortOptions struct {
	// XDPMode is auto (default: native, else generic), native or generic.
	XDPMode string `yaml:"xdp_mode"`
	// ZeroCopy is auto (default: zero-copy if the driver can, else copy), on or off.
	ZeroCopy string `yaml:"zero_copy"`
	// Queues is the number of queues to serve; 0 (default) = all of the device.
	Queues int `yaml:"queues"`
	// RingSize is the size of each AF_XDP ring (power of two; default 2048).
	RingSize int `yaml:"ring_size"`
	// TxChecksumOffload: auto (default: request TCP/UDP checksums from the
	// device through AF_XDP TX metadata where it has xsk tx-checksum), on
	// (also without it, computed by the kernel in copy mode: veth, tests)
	// or off (software). See docs/offload.md.
	TxChecksumOffload string `yaml:"tx_checksum_offload"`
	// TxBudget is, in copy mode, how many frames one sendto transmits
	// (XDP_MAX_TX_SKB_BUDGET, Linux 6.17+): 32 to ring_size; 0 (default)
	// keeps the kernel's 32. Pays with coalesced TX kicks
	// (poller_kick_frames), which hand the kernel more than 32 at once.
	TxBudget int `yaml:"tx_budget"`
}

// UMEMConfig sizes the shared UMEM.
type UMEMConfig struct {
	Frames    int  `yaml:"frames"`     // default: enough for every ring, at least 4096
	FrameSize int  `yaml:"frame_size"` // 2048 (default) or 4096
	HugePages bool `yaml:"huge_pages"`
	// MultiBuffer: auto (default: AF_XDP multi-buffer when a port's MTU
	// at start needs frames longer than one UMEM frame), on (also for
	// jumbo ports added later by a reload) or off (such MTUs refused).
	MultiBuffer string `yaml:"multi_buffer"`
}

// FDBConfig sizes the MAC tables.
type FDBConfig struct {
	MaxEntries int    `yaml:"max_entries"` // default 8192
	MaxAge     string `yaml:"max_age"`     // Go duration, default 300s

	Age time.Duration `yaml:"-"`
}

// OptionKind is a Geneve option class and type (type with its critical bit).
type OptionKind struct {
	Class int64 `yaml:"class"`
	Type  int64 `yaml:"type"`
}

// BridgeConfig is one bridge: an L2 domain with one VNI.
type BridgeConfig struct {
	Name string `yaml:"name"`
	// Address (and Addresses) are given to the internal port, a TAP device
	// named Name. Optional; with none the TAP still exists (the host may use
	// it) unless Internal is false.
	Address   string   `yaml:"address"`
	Addresses []string `yaml:"addresses"`
	// Internal: create the internal port (default true).
	Internal *bool `yaml:"internal"`
	// MAC of the internal port; default: random locally administered.
	MAC string `yaml:"mac"`
	// MTU of the internal port; default and maximum: the underlay MTU minus
	// the encapsulation overhead of the bridge's tunnels.
	MTU int `yaml:"mtu"`
	// Ports are existing interfaces attached with AF_XDP (veth into VMs or
	// containers).
	Ports []string `yaml:"ports"`
	// Tunnels are the remote endpoints of this bridge.
	Tunnels []TunnelConfig `yaml:"tunnels"`
	// StaticMACs are MAC table entries that never age and are never moved
	// by learning, each to a port or a tunnel of this bridge.
	StaticMACs []StaticMACConfig `yaml:"static_macs"`
	// VNIKey is the bridge's VNI when it has no tunnels (an EVPN bridge);
	// with tunnels it must equal their key.
	VNIKey *int64 `yaml:"vni"`

	Prefixes []netip.Prefix `yaml:"-"` // parsed Address + Addresses
	HWAddr   []byte         `yaml:"-"` // parsed MAC, nil if none
	VNI      uint32         `yaml:"-"` // the tunnels' key
}

// HasInternal reports whether the bridge gets an internal (TAP) port.
func (b *BridgeConfig) HasInternal() bool { return b.Internal == nil || *b.Internal }

// TunnelConfig is one remote tunnel endpoint.
type TunnelConfig struct {
	RemoteIP string `yaml:"remote_ip"`
	// Key is the VNI (0 when omitted).
	Key int64 `yaml:"key"`
	// Options are added to every frame sent on this tunnel.
	Options []OptionConfig `yaml:"options"`

	Remote     netip.Addr      `yaml:"-"`
	GenOptions []geneve.Option `yaml:"-"`
}

// StaticMACConfig is one static MAC entry: to Port (a local port of the
// bridge, or its internal port: the bridge's name) or to Tunnel (the
// remote_ip of one of the bridge's tunnels).
type StaticMACConfig struct {
	MAC    string `yaml:"mac"`
	Port   string `yaml:"port"`
	Tunnel string `yaml:"tunnel"`

	Addr   flowtable.MAC `yaml:"-"` // parsed MAC
	Remote netip.Addr    `yaml:"-"` // parsed Tunnel
}

// OptionConfig is one Geneve option to send.
type OptionConfig struct {
	Class int64  `yaml:"class"`
	Type  int64  `yaml:"type"`
	Data  string `yaml:"data"` // hex, "0x0a0b0c0d"; a multiple of 4 bytes
}

// LoadConfig reads and validates a configuration file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes YAML and validates it. Every problem is reported at
// once: unknown keys (with the nearest known key), values of the wrong
// kind and invalid settings, each at its YAML path.
func ParseConfig(b []byte) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("YAML: %w (see docs/configuration.md)", err)
	}
	if doc.Kind == 0 {
		return nil, fmt.Errorf("the file is empty; it needs at least `bridges:` (see docs/configuration.md)")
	}
	probs := checkYAML(&doc, reflect.TypeFor[Config]())
	var c Config
	if err := decodeYAML(&doc, &c); err != nil && len(probs) == 0 {
		// Something checkYAML does not know about: yaml.v3's own words.
		return nil, fmt.Errorf("YAML: %w (see docs/configuration.md for the keys)", err)
	}
	var errs []error
	for _, p := range probs {
		errs = append(errs, p)
	}
	for _, err := range unjoin(c.Validate()) {
		if !underAny(err.Error(), probs) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &c, nil
}

// decodeYAML decodes doc into v. yaml.v3 panics on some malformed merge
// keys (`{<<, {0}}`: "hash of unhashable type"); that is bad input, not a
// reason to crash.
func decodeYAML(doc *yaml.Node, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed YAML (%v)", r)
		}
	}()
	return doc.Decode(v)
}

// unjoin splits an errors.Join result.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// underAny reports whether a validation message ("field: ...") is about a
// YAML path already reported as wrongly written: it would only repeat it.
func underAny(msg string, probs []yamlProblem) bool {
	field, _, _ := strings.Cut(msg, ": ")
	for _, p := range probs {
		if p.path == "" || field == p.path || strings.HasPrefix(field, p.path+".") || strings.HasPrefix(field, p.path+"[") {
			return true
		}
	}
	return false
}

// Known returns the set of understood option kinds (valid after Validate).
func (c *Config) Known() *geneve.KnownOptions { return &c.known }

// Validate checks the configuration without looking at the system, fills
// the parsed fields and defaults, and returns every problem found, each
// naming its field and the fix. The checks run in a fixed order (the order
// of the errors), each helper reporting through bad.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, a...)))
	}
	c.validateControl(bad)
	c.validateIdle(bad)
	c.validateCPUs(bad)
	validatePortOptions("port_options", &c.Ports, bad)
	validateMetrics(&c.Metrics, bad)
	c.validateUMEM(bad)
	c.validateFDB(bad)
	c.validateKnownOptions(bad)
	if c.Underlay != nil {
		validateUnderlay(c.Underlay, bad)
	}
	vnis := c.validateBridges(bad)
	errs = append(errs, c.validateEVPN(vnis, bad)...)
	return errors.Join(errs...)
}

// validateControl checks control_socket, log_level and poller_policy and
// fills their defaults.
func (c *Config) validateControl(bad func(string, string, ...any)) {
	if c.ControlSocket == "" {
		c.ControlSocket = DefaultControlSocket
	} else if c.ControlSocket == "@" {
		bad("control_socket", `"@" needs a name; write e.g. "@xswitch"`)
	}
	switch c.LogLevel {
	case "":
		c.LogLevel = "info"
	case "debug", "info", "warn", "error":
	default:
		bad("log_level", "%q is not a level; write debug, info, warn or error", c.LogLevel)
	}
	switch c.PollerPolicy {
	case "":
		c.PollerPolicy = PolicyBatch
	case PolicyNormal, PolicyBatch:
	default:
		bad("poller_policy", "%q is not a policy; write %s or %s", c.PollerPolicy, PolicyNormal, PolicyBatch)
	}
}

// validateCPUs checks that cpus lists CPU numbers, each once.
func (c *Config) validateCPUs(bad func(string, string, ...any)) {
	seenCPU := map[int]bool{}
	for i, cpu := range c.CPUs {
		if cpu < 0 || cpu >= 1024 {
			bad(fmt.Sprintf("cpus[%d]", i), "%d is not a CPU number; write e.g. cpus: [1]", cpu)
		}
		if seenCPU[cpu] {
			bad(fmt.Sprintf("cpus[%d]", i), "CPU %d is listed twice; list each CPU once", cpu)
		}
		seenCPU[cpu] = true
	}
}

// validateUMEM checks umem.frame_size (filling its default) and umem.frames.
func (c *Config) validateUMEM(bad func(string, string, ...any)) {
	switch c.UMEM.FrameSize {
	case 0:
		c.UMEM.FrameSize = 2048
	case 2048, 4096:
	default:
		bad("umem.frame_size", "%d is not supported; write 2048 or 4096", c.UMEM.FrameSize)
	}
	if c.UMEM.Frames < 0 || c.UMEM.Frames > 1<<22 {
		bad("umem.frames", "%d is out of range; write a number of frames between 1024 and 4194304, or leave it out", c.UMEM.Frames)
	} else if c.UMEM.Frames != 0 && c.UMEM.Frames < 1024 {
		bad("umem.frames", "%d is too few; write at least 1024, or leave it out", c.UMEM.Frames)
	}
	switch c.UMEM.MultiBuffer {
	case "":
		c.UMEM.MultiBuffer = MultiBufferAuto
	case MultiBufferAuto, MultiBufferOn, MultiBufferOff:
	default:
		bad("umem.multi_buffer", "%q is not a setting; write auto, on or off", c.UMEM.MultiBuffer)
	}
}

// validateFDB checks fdb.max_entries and fdb.max_age, filling FDB.Age.
func (c *Config) validateFDB(bad func(string, string, ...any)) {
	if c.FDB.MaxEntries < 0 || c.FDB.MaxEntries > 1<<24 {
		bad("fdb.max_entries", "%d is out of range; write 1..16777216 (default 8192)", c.FDB.MaxEntries)
	}
	if c.FDB.MaxAge != "" {
		d, err := time.ParseDuration(c.FDB.MaxAge)
		if err != nil || d < time.Second {
			bad("fdb.max_age", "%q is not a duration of at least 1s; write e.g. 300s or 5m", c.FDB.MaxAge)
		}
		c.FDB.Age = d
	}
}

// validateKnownOptions checks known_options and fills c.known.
func (c *Config) validateKnownOptions(bad func(string, string, ...any)) {
	c.known = geneve.KnownOptions{}
	for i, k := range c.KnownOptions {
		f := fmt.Sprintf("known_options[%d]", i)
		ok := true
		if k.Class < 0 || k.Class > 0xffff {
			bad(f+".class", "%d is out of range; a Geneve option class is 16 bits: 0..0xffff", k.Class)
			ok = false
		}
		if k.Type < 0 || k.Type > 0xff {
			bad(f+".type", "%d is out of range; a Geneve option type is 8 bits: 0..0xff (0x80 and up are critical)", k.Type)
			ok = false
		}
		if ok {
			if err := c.known.Add(uint16(k.Class), uint8(k.Type)); err != nil {
				bad(f, "%v; list at most %d option kinds", err, geneve.MaxKnownOptions)
			}
		}
	}
}

// validateUnderlay checks the underlay: section: its interface name, port
// options and local addresses.
func validateUnderlay(u *UnderlayConfig, bad func(string, string, ...any)) {
	if u.Interface == "" {
		bad("underlay.interface", "missing; write the NIC that carries the tunnels, e.g. interface: eth0")
	} else if err := checkIfName(u.Interface); err != nil {
		bad("underlay.interface", "%v", err)
	}
	validatePortOptions("underlay", &u.PortOptions, bad)
	validateLocalIPs(u, bad)
}

// validateLocalIPs parses underlay.local_ip and underlay.local_ips into
// u.Local: unicast addresses, at most 8 per family.
func validateLocalIPs(u *UnderlayConfig, bad func(string, string, ...any)) {
	u.Local = nil
	ips := u.LocalIPs
	if u.LocalIP != "" {
		ips = append([]string{u.LocalIP}, ips...)
	}
	var v4, v6 int
	for i, s := range ips {
		f := "underlay.local_ip"
		if u.LocalIP == "" || i > 0 {
			f = fmt.Sprintf("underlay.local_ips[%d]", i-boolInt(u.LocalIP != ""))
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			bad(f, "%q is not an IP address; write e.g. 192.0.2.1 or 2001:db8::1", s)
			continue
		}
		a = a.Unmap()
		if !a.IsGlobalUnicast() && !a.IsPrivate() {
			bad(f, "%v is not a unicast address; write the address of the underlay NIC", a)
			continue
		}
		if a.Is4() {
			v4++
		} else {
			v6++
		}
		u.Local = append(u.Local, a)
	}
	if v4 > 8 || v6 > 8 {
		bad("underlay.local_ips", "at most 8 IPv4 and 8 IPv6 addresses")
	}
}

// bridgeNames records which YAML path claimed a name, across bridges: so
// each bridge name, interface and VNI is used in one place only.
type bridgeNames struct {
	bridges map[string]string // bridge (internal port) name → bridges[i]
	ports   map[string]string // interface → underlay.interface or bridges[i].ports[j]
	vnis    map[uint32]string // VNI → bridges[i]
}

// validateBridges checks every bridge and returns the VNIs of the bridges
// (for the evpn: checks).
func (c *Config) validateBridges(bad func(string, string, ...any)) map[uint32]string {
	if len(c.Bridges) == 0 {
		bad("bridges", "none configured; add at least one, e.g. bridges: [{name: br1, tunnels: [{remote_ip: 192.0.2.2}]}]")
	}
	seen := bridgeNames{bridges: map[string]string{}, ports: map[string]string{}, vnis: map[uint32]string{}}
	if c.Underlay != nil && c.Underlay.Interface != "" {
		seen.ports[c.Underlay.Interface] = "underlay.interface"
	}
	for bi := range c.Bridges {
		c.validateBridge(bi, &seen, bad)
	}
	return seen.vnis
}

// validateBridge checks bridges[bi] and fills its parsed fields.
func (c *Config) validateBridge(bi int, seen *bridgeNames, bad func(string, string, ...any)) {
	b := &c.Bridges[bi]
	bf := fmt.Sprintf("bridges[%d]", bi)
	validateBridgeName(bf, b, seen, bad)
	validateBridgeAddresses(bf, b, bad)
	b.HWAddr = nil
	if b.MAC != "" {
		m, err := parseMAC(b.MAC)
		if err != nil {
			bad(bf+".mac", "%q is not a unicast Ethernet address; write e.g. 02:00:00:00:00:01", b.MAC)
		}
		b.HWAddr = m
	}
	if b.MTU != 0 && (b.MTU < 576 || b.MTU > 9000) {
		bad(bf+".mtu", "%d is out of range; write 576..9000 or leave it out (default: underlay MTU minus the tunnel overhead)", b.MTU)
	}
	validateBridgePorts(bf, b, seen, bad)
	if len(b.Tunnels) > 0 && c.Underlay == nil {
		bad("underlay", "missing, but %s has tunnels; write e.g. underlay: {interface: eth0}", bf)
	}
	remotes := map[netip.Addr]int{}
	for ti := range b.Tunnels {
		c.validateTunnel(bf, b, ti, remotes, bad)
	}
	validateStaticMACs(bf, b, remotes, bad)
	validateBridgeVNI(bf, b, seen, bad)
}

// validateBridgeName checks a bridge's name, the name of its internal port:
// an interface name used by no other bridge or port.
func validateBridgeName(bf string, b *BridgeConfig, seen *bridgeNames, bad func(string, string, ...any)) {
	if b.Name == "" {
		bad(bf+".name", "missing; write the name of the bridge's internal port, e.g. name: br1")
	} else if err := checkIfName(b.Name); err != nil {
		bad(bf+".name", "%v", err)
	} else if prev, ok := seen.bridges[b.Name]; ok {
		bad(bf+".name", "%q is also the name of %s; give each bridge its own name", b.Name, prev)
	} else if prev, ok := seen.ports[b.Name]; ok {
		bad(bf+".name", "%q is already used by %s; a bridge's internal port needs a name of its own", b.Name, prev)
	}
	seen.bridges[b.Name] = bf
}

// validateBridgeAddresses parses a bridge's address and addresses into
// b.Prefixes, which need an internal port to carry them.
func validateBridgeAddresses(bf string, b *BridgeConfig, bad func(string, string, ...any)) {
	b.Prefixes = nil
	addrs := b.Addresses
	if b.Address != "" {
		addrs = append([]string{b.Address}, addrs...)
	}
	for i, s := range addrs {
		f := bf + ".address"
		if b.Address == "" || i > 0 {
			f = fmt.Sprintf("%s.addresses[%d]", bf, i-boolInt(b.Address != ""))
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			if a, err2 := netip.ParseAddr(s); err2 == nil {
				bad(f, "%q has no prefix length; write e.g. %v/%d", s, a, map[bool]int{true: 24, false: 64}[a.Is4()])
			} else {
				bad(f, "%q is not an address with prefix length; write e.g. 10.0.0.1/24", s)
			}
			continue
		}
		b.Prefixes = append(b.Prefixes, p)
	}
	if len(b.Prefixes) > 0 && !b.HasInternal() {
		bad(bf+".address", "given, but internal: false means there is no internal port to carry it; remove one of the two")
	}
}

// validateBridgePorts checks a bridge's ports: interface names, each in
// one place only and none a bridge's internal port.
func validateBridgePorts(bf string, b *BridgeConfig, seen *bridgeNames, bad func(string, string, ...any)) {
	for pi, p := range b.Ports {
		f := fmt.Sprintf("%s.ports[%d]", bf, pi)
		if err := checkIfName(p); err != nil {
			bad(f, "%v", err)
			continue
		}
		if prev, ok := seen.ports[p]; ok {
			bad(f, "%q is already used by %s; an interface can be in one place only", p, prev)
			continue
		}
		if prev, ok := seen.bridges[p]; ok {
			bad(f, "%q is the internal port of %s; list other interfaces here", p, prev)
			continue
		}
		seen.ports[p] = f
	}
}

// validateTunnel checks tunnel ti of bridge b (YAML path bf) and fills its
// parsed fields; remotes maps each remote address seen in this bridge to
// its tunnel index.
func (c *Config) validateTunnel(bf string, b *BridgeConfig, ti int, remotes map[netip.Addr]int, bad func(string, string, ...any)) {
	tn := &b.Tunnels[ti]
	tf := fmt.Sprintf("%s.tunnels[%d]", bf, ti)
	a, err := netip.ParseAddr(tn.RemoteIP)
	switch {
	case tn.RemoteIP == "":
		bad(tf+".remote_ip", "missing; write the other tunnel endpoint, e.g. remote_ip: 192.0.2.2")
	case err != nil || a.Zone() != "":
		bad(tf+".remote_ip", "%q is not an IP address; write e.g. 192.0.2.1", tn.RemoteIP)
	case !a.Unmap().IsGlobalUnicast() && !a.Unmap().IsPrivate():
		bad(tf+".remote_ip", "%v is not a unicast address; write the address of the other tunnel endpoint", a)
	default:
		a = a.Unmap()
		if prev, ok := remotes[a]; ok {
			bad(tf+".remote_ip", "%v is also tunnels[%d] of this bridge; list each remote once", a, prev)
		}
		remotes[a] = ti
		tn.Remote = a
		if c.Underlay != nil && len(c.Underlay.Local) > 0 && !hasFamily(c.Underlay.Local, a) {
			bad(tf+".remote_ip", "%v is %s, but underlay.local_ip has no address of that family; add one to underlay.local_ips", a, family(a))
		}
	}
	if tn.Key < 0 || tn.Key > 0xffffff {
		bad(tf+".key", "%d is out of range; a Geneve VNI is 24 bits: 0..16777215", tn.Key)
	} else if ti > 0 && tn.Key != b.Tunnels[0].Key {
		bad(tf+".key", "%d differs from tunnels[0].key %d; a bridge is one VNI, so its tunnels share one key (use another bridge for another VNI)", tn.Key, b.Tunnels[0].Key)
	}
	validateTunnelOptions(tf, tn, bad)
}

// validateTunnelOptions checks a tunnel's Geneve options (YAML path tf)
// and fills tn.GenOptions.
func validateTunnelOptions(tf string, tn *TunnelConfig, bad func(string, string, ...any)) {
	tn.GenOptions = nil
	var optBytes []byte
	for oi, o := range tn.Options {
		of := fmt.Sprintf("%s.options[%d]", tf, oi)
		if o.Class < 0 || o.Class > 0xffff {
			bad(of+".class", "%d is out of range; a Geneve option class is 16 bits: 0..0xffff", o.Class)
			continue
		}
		if o.Type < 0 || o.Type > 0xff {
			bad(of+".type", "%d is out of range; a Geneve option type is 8 bits: 0..0xff", o.Type)
			continue
		}
		data, err := parseHex(o.Data)
		if err != nil {
			bad(of+".data", "%q is not hex bytes; write e.g. \"0x0a0b0c0d\"", o.Data)
			continue
		}
		if len(data)%4 != 0 || len(data) > geneve.MaxOptionDataLen {
			bad(of+".data", "%d bytes; option data is a multiple of 4 bytes, at most %d (pad with zeros, e.g. \"0x0a0b0c0d\")", len(data), geneve.MaxOptionDataLen)
			continue
		}
		opt := geneve.Option{Class: uint16(o.Class), Type: uint8(o.Type), Data: data}
		optBytes, _ = geneve.AppendOption(optBytes, opt)
		tn.GenOptions = append(tn.GenOptions, opt)
	}
	if len(optBytes) > geneve.MaxOptionsLen {
		bad(tf+".options", "%d bytes in all; Geneve carries at most %d bytes of options", len(optBytes), geneve.MaxOptionsLen)
	}
}

// validateBridgeVNI fills b.VNI from the bridge's vni: or its tunnels' key
// (which must agree), and checks that no other bridge has that VNI.
func validateBridgeVNI(bf string, b *BridgeConfig, seen *bridgeNames, bad func(string, string, ...any)) {
	b.VNI = 0
	vf := ""
	switch {
	case b.VNIKey != nil && (*b.VNIKey < 0 || *b.VNIKey > 0xffffff):
		bad(bf+".vni", "%d is out of range; a VNI is 24 bits: 0..16777215", *b.VNIKey)
	case b.VNIKey != nil && len(b.Tunnels) > 0 && b.Tunnels[0].Key != *b.VNIKey:
		bad(bf+".vni", "%d differs from tunnels[0].key %d; a bridge is one VNI: write the same number or leave one out", *b.VNIKey, b.Tunnels[0].Key)
	case b.VNIKey != nil:
		b.VNI, vf = uint32(*b.VNIKey), bf+".vni"
	case len(b.Tunnels) > 0 && b.Tunnels[0].Key >= 0 && b.Tunnels[0].Key <= 0xffffff:
		b.VNI, vf = uint32(b.Tunnels[0].Key), bf+".tunnels[0].key"
	}
	if vf != "" {
		if prev, ok := seen.vnis[b.VNI]; ok {
			bad(vf, "VNI %d is also the key of %s; each bridge needs its own key", b.VNI, prev)
		}
		seen.vnis[b.VNI] = bf
	}
}

// validateEVPN checks the evpn: section: its own settings (evpn package,
// with the underlay's first local address as the default endpoint), and
// that every EVPN VNI is the VNI of a bridge. With no evpn.vnis, every
// bridge with a `vni:` key is an EVPN instance (not those with only
// tunnels: adding such a bridge by reload must not change evpn).
func (c *Config) validateEVPN(vnis map[uint32]string, bad func(string, string, ...any)) []error {
	e := c.EVPN
	if e == nil {
		return nil
	}
	if c.Underlay == nil {
		bad("underlay", "missing, but evpn is configured; EVPN tunnels need an underlay, e.g. underlay: {interface: eth0}")
	}
	if len(e.VNIs) == 0 {
		for _, b := range c.Bridges {
			if b.VNIKey != nil && *b.VNIKey >= 0 && *b.VNIKey <= 0xffffff {
				e.VNIs = append(e.VNIs, evpn.VNIConfig{VNI: int64(b.VNI)})
			}
		}
	}
	var local netip.Addr
	if c.Underlay != nil && len(c.Underlay.Local) > 0 {
		local = c.Underlay.Local[0]
	}
	errs := e.Validate("evpn", local)
	for i, v := range e.VNIs {
		if _, ok := vnis[uint32(v.VNI)]; !ok && v.VNI >= 0 && v.VNI <= 0xffffff {
			bad(fmt.Sprintf("evpn.vnis[%d].vni", i), "%d is the VNI of no bridge; give a bridge `vni: %d` (and no tunnels, or tunnels with key %d)", v.VNI, v.VNI, v.VNI)
		}
	}
	return errs
}

// EVPNBridge reports whether bridge b's VNI is an EVPN instance.
func (c *Config) EVPNBridge(b *BridgeConfig) bool {
	if c.EVPN == nil {
		return false
	}
	for _, v := range c.EVPN.VNIs {
		if uint32(v.VNI) == b.VNI && (b.VNIKey != nil || len(b.Tunnels) > 0) {
			return true
		}
	}
	return false
}

// validateStaticMACs checks a bridge's static_macs: unicast MACs, each once,
// each to exactly one port or tunnel of that bridge.
func validateStaticMACs(bf string, b *BridgeConfig, remotes map[netip.Addr]int, bad func(string, string, ...any)) {
	seen := map[flowtable.MAC]int{}
	for i := range b.StaticMACs {
		sm := &b.StaticMACs[i]
		f := fmt.Sprintf("%s.static_macs[%d]", bf, i)
		sm.Addr, sm.Remote = 0, netip.Addr{}
		m, err := parseMAC(sm.MAC)
		if err != nil {
			bad(f+".mac", "%q is not a unicast Ethernet address; write e.g. 02:00:00:00:00:01", sm.MAC)
		} else {
			sm.Addr = flowtable.MACFrom(m)
			if prev, ok := seen[sm.Addr]; ok {
				bad(f+".mac", "%s is also static_macs[%d]; list each MAC once", sm.Addr, prev)
			}
			seen[sm.Addr] = i
			if b.HWAddr != nil && flowtable.MACFrom(b.HWAddr) == sm.Addr && sm.Port != b.Name {
				bad(f+".mac", "%s is the internal port's mac; it is static on the internal port already", sm.Addr)
			}
		}
		switch {
		case sm.Port == "" && sm.Tunnel == "":
			bad(f, "no destination; write port: NAME (a port of %s) or tunnel: REMOTE_IP (one of its tunnels)", b.Name)
		case sm.Port != "" && sm.Tunnel != "":
			bad(f, "both port and tunnel given; a static MAC has one destination: keep one of the two")
		case sm.Port != "":
			if !slices.Contains(b.Ports, sm.Port) && !(b.HasInternal() && sm.Port == b.Name) {
				bad(f+".port", "%q is not a port of bridge %s; write one of its ports (%s)", sm.Port, b.Name, strings.Join(bridgePortNames(b), ", "))
			}
		default:
			a, err := netip.ParseAddr(sm.Tunnel)
			if err != nil {
				bad(f+".tunnel", "%q is not an IP address; write the remote_ip of one of the bridge's tunnels", sm.Tunnel)
				break
			}
			if _, ok := remotes[a.Unmap()]; !ok {
				bad(f+".tunnel", "%v is not the remote_ip of a tunnel of bridge %s; add the tunnel or write one of its remotes", a, b.Name)
				break
			}
			sm.Remote = a.Unmap()
		}
	}
}

// bridgePortNames are the names a static MAC of b may go to.
func bridgePortNames(b *BridgeConfig) []string {
	names := append([]string(nil), b.Ports...)
	if b.HasInternal() {
		names = append(names, b.Name)
	}
	return names
}

func hasFamily(addrs []netip.Addr, a netip.Addr) bool {
	for _, l := range addrs {
		if l.Is4() == a.Is4() {
			return true
		}
	}
	return false
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func validatePortOptions(f string, p *PortOptions, bad func(string, string, ...any)) {
	switch p.XDPMode {
	case "", "auto", "native", "generic":
	default:
		bad(f+".xdp_mode", "%q is not a mode; write auto, native or generic", p.XDPMode)
	}
	switch p.ZeroCopy {
	case "", "auto", "on", "off":
	default:
		bad(f+".zero_copy", "%q is not a setting; write auto, on or off", p.ZeroCopy)
	}
	switch p.TxChecksumOffload {
	case "", "auto", "on", "off":
	default:
		bad(f+".tx_checksum_offload", "%q is not a setting; write auto, on or off", p.TxChecksumOffload)
	}
	if p.Queues < 0 || p.Queues > 256 {
		bad(f+".queues", "%d is out of range; write 0 (all queues of the device) .. 256", p.Queues)
	}
	if p.RingSize != 0 && (p.RingSize < xsk.MinRingSize || p.RingSize > xsk.MaxRingSize || p.RingSize&(p.RingSize-1) != 0) {
		bad(f+".ring_size", "%d is not a power of two between %d and %d; write e.g. 2048", p.RingSize, xsk.MinRingSize, xsk.MaxRingSize)
	}
	ring := p.RingSize
	if ring == 0 {
		ring = 2048
	}
	if p.TxBudget != 0 && (p.TxBudget < xsk.KernelTxBudget || p.TxBudget > ring) {
		bad(f+".tx_budget", "%d is out of range; write %d to the ring size (%d), or leave it out for the kernel's %d", p.TxBudget, xsk.KernelTxBudget, ring, xsk.KernelTxBudget)
	}
}

// checkIfName checks a Linux interface name.
func checkIfName(s string) error {
	if s == "" || len(s) > 15 || s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n") {
		return fmt.Errorf("%q is not an interface name; write 1..15 characters without '/', ':' or spaces, e.g. eth0", s)
	}
	return nil
}

func parseHex(s string) ([]byte, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	s = strings.NewReplacer(":", "", " ", "", "_", "").Replace(s)
	return hex.DecodeString(s)
}

func parseMAC(s string) ([]byte, error) {
	s2 := strings.NewReplacer(":", "", "-", "").Replace(s)
	if len(s2) != 12 {
		return nil, fmt.Errorf("bad MAC")
	}
	b, err := hex.DecodeString(s2)
	if err != nil || b[0]&1 != 0 || bytes.Equal(b, make([]byte, 6)) {
		return nil, fmt.Errorf("bad MAC")
	}
	return b, nil
}
