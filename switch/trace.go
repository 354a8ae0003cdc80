package vswitch

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"golang.org/x/sys/unix"

	"xswitch/flowtable"
	"xswitch/geneve"
)

// Trace (`xswitch ctl trace`) runs the real forwarding decision — the same
// core.forward the pollers run — on a copy of a frame, in a throw-away core
// with its own frames: learning becomes a prediction (flowtable.Predict),
// nothing is written to a TAP, and what the core would transmit stays in its
// own lists, where the trace reads the outputs and the Geneve headers they
// got. The switch's tables are only read; no counter of the switch moves.

// TraceRequest is a frame to trace.
type TraceRequest struct {
	Bridge string `json:"bridge"`
	// InPort is a port of the bridge, the underlay (Frame is then a whole
	// Geneve frame as on the wire), or tunnel:REMOTE (Frame is the inner
	// frame; the trace encapsulates it as that remote would).
	InPort string `json:"in_port"`
	Frame  []byte `json:"frame"`
}

// TraceResult is what the switch would do with the frame.
type TraceResult struct {
	Bridge string      `json:"bridge"`
	InPort string      `json:"in_port"`
	Frame  string      `json:"frame"` // a one-line summary of the (inner) frame
	Steps  []TraceStep `json:"steps"`
	// Verdict is "unicast", "flood" or "drop" (Drop says why).
	Verdict string        `json:"verdict"`
	Drop    string        `json:"drop,omitempty"`
	Outputs []TraceOutput `json:"outputs"`
}

// TraceStep is one step of the decision.
type TraceStep struct {
	Step   string `json:"step"` // input, decap, learn, lookup, flood
	Detail string `json:"detail"`
}

// TraceOutput is one place the frame would be sent to.
type TraceOutput struct {
	Port string `json:"port"` // port name or tunnel:REMOTE
	Kind string `json:"kind"` // local, internal or tunnel
	Len  int    `json:"len"`  // bytes on the port (outer headers included)
	// Drop: the frame would be dropped there instead (no_neighbour, too_big).
	Drop   string       `json:"drop,omitempty"`
	Geneve *TraceGeneve `json:"geneve,omitempty"`
}

// TraceGeneve are the outer headers a frame to a tunnel would get.
type TraceGeneve struct {
	SrcMAC    string   `json:"src_mac"`
	DstMAC    string   `json:"dst_mac"`
	Src       string   `json:"src"`
	Dst       string   `json:"dst"`
	TTL       int      `json:"ttl"`
	SrcPort   uint16   `json:"src_port"`
	DstPort   uint16   `json:"dst_port"`
	VNI       uint32   `json:"vni"`
	Proto     string   `json:"proto"`
	Options   []string `json:"options"`
	HeaderLen int      `json:"header_len"`
	UDPCsum   string   `json:"udp_checksum"`
}

// traceRec is what a tracing core records on the way (core.tr).
type traceRec struct {
	dc        decision
	learned   bool
	mac       flowtable.MAC
	learnTo   flowtable.Dest
	pred      flowtable.Prediction
	tapWrites []int // internal ports written to
	off       int   // where the input frame starts in the area
}

func (r *traceRec) predict(t *flowtable.Table, m flowtable.MAC, d flowtable.Dest, now uint32) flowtable.LearnResult {
	r.learned, r.mac, r.learnTo = true, m, d
	r.pred = t.Predict(m, d, now)
	return r.pred.Result
}

// traceEnv is what a trace needs of the running switch besides the fabric.
type traceEnv struct {
	frameSize   int          // UMEM frame size
	rxOff       int          // where AF_XDP puts a received frame in its UMEM frame
	underlayMAC [6]byte      // the outer destination of a frame from a tunnel
	locals      []netip.Addr // the underlay's tunnel endpoint addresses
}

// Trace says what the switch would do with req.Frame, step by step, with
// no side effect.
func (s *Switch) Trace(req TraceRequest) (*TraceResult, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed.Load() {
		return nil, errors.New("xswitch is stopping")
	}
	env := traceEnv{frameSize: s.cfg.UMEM.FrameSize, rxOff: unix.XDP_PACKET_HEADROOM, locals: s.underlayLocal}
	if u := s.dp.umem; u != nil {
		env.frameSize, env.rxOff = u.FrameSize(), unix.XDP_PACKET_HEADROOM+u.Headroom()
	}
	if env.frameSize == 0 {
		env.frameSize = 2048
	}
	copy(env.underlayMAC[:], s.underlayMAC)
	return traceFrame(s.cur(), req, env)
}

func traceFrame(f *fabric, req TraceRequest, env traceEnv) (*TraceResult, error) {
	br := f.bridgeNamed(req.Bridge)
	if br == nil {
		return nil, fmt.Errorf("trace: no bridge %q; the bridges are: %s", req.Bridge, strings.Join(f.bridgeNames(), ", "))
	}
	res := &TraceResult{Bridge: br.name, InPort: req.InPort, Outputs: []TraceOutput{}}
	in, frame, err := traceInput(f, br, req, env, res)
	if err != nil {
		return nil, err
	}
	off := env.rxOff
	if in.kind == kindInternal {
		off = copyOff // where the TAP reader puts a frame
	}
	if off+len(frame) > env.frameSize {
		return nil, fmt.Errorf("trace: a frame of %d bytes does not fit a UMEM frame (%d bytes from offset %d): port %s could never receive it", len(frame), env.frameSize, off, in.name)
	}
	// One frame for the input, one per possible flood copy.
	nframes := 2 + len(br.locals) + len(br.tunnels)
	area := make([]byte, nframes*env.frameSize)
	c := newCore(f, area, env.frameSize, nframes)
	c.tr = &traceRec{off: off}
	c.now = f.clock.Now()
	for i := nframes - 1; i >= 1; i-- {
		c.free = append(c.free, uint64(i*env.frameSize))
	}
	copy(area[off:], frame)
	c.forward(in, []desc{{Addr: uint64(off), Len: uint32(len(frame))}})
	c.traceReport(in, br, res)
	return res, nil
}

// traceInput finds the input port and the frame as that port would receive
// it (a frame from a tunnel is encapsulated as its remote would send it).
func traceInput(f *fabric, br *bridge, req TraceRequest, env traceEnv, res *TraceResult) (*port, []byte, error) {
	if len(req.Frame) < geneve.EthLen {
		return nil, nil, fmt.Errorf("trace: a frame of %d bytes is shorter than an Ethernet header", len(req.Frame))
	}
	if rest, ok := strings.CutPrefix(req.InPort, "tunnel:"); ok {
		a, err := netip.ParseAddr(rest)
		if err != nil {
			return nil, nil, fmt.Errorf("trace: in_port %s: %q is not an IP address; write tunnel:REMOTE_IP", req.InPort, rest)
		}
		t := br.findRemote(a.Unmap())
		if t == nil || f.underlay == nil {
			return nil, nil, fmt.Errorf("trace: bridge %s has no tunnel to %s; its tunnels are: %s", br.name, a, strings.Join(br.tunnelNames(), ", "))
		}
		outer, err := encapFromRemote(t, req.Frame, env)
		if err != nil {
			return nil, nil, err
		}
		res.Frame = describeFrame(req.Frame)
		return f.underlay, outer, nil
	}
	for _, p := range f.ports {
		if p.name != req.InPort {
			continue
		}
		if p.kind == kindUnderlay {
			res.Frame = "Geneve " + describeFrame(req.Frame)
			return p, req.Frame, nil
		}
		if p.br != br {
			return nil, nil, fmt.Errorf("trace: port %s is not a port of bridge %s; its ports are: %s", p.name, br.name, strings.Join(br.portNames(), ", "))
		}
		res.Frame = describeFrame(req.Frame)
		return p, req.Frame, nil
	}
	names := br.portNames()
	if f.underlay != nil {
		names = append(names, f.underlay.name)
	}
	names = append(names, br.tunnelNames()...)
	return nil, nil, fmt.Errorf("trace: no port %q; in_port is one of: %s", req.InPort, strings.Join(names, ", "))
}

// encapFromRemote builds the Geneve frame remote endpoint t.remote would
// send with inner frame b: outer source the remote, destination this end,
// the tunnel's VNI and options.
func encapFromRemote(t *tunnel, b []byte, env traceEnv) ([]byte, error) {
	ec := geneve.DefaultEncapConfig()
	ec.Src, ec.Dst, ec.VNI, ec.Options = t.remote, t.local, t.br.vni, t.cfg.GenOptions
	if !ec.Dst.IsValid() {
		for _, a := range env.locals {
			if a.Is4() == t.remote.Is4() {
				ec.Dst = a
				break
			}
		}
	}
	ec.DstMAC = env.underlayMAC
	if nh := t.nh.Load(); nh != nil {
		if m, err := net.ParseMAC(nh.MAC); err == nil && len(m) == 6 {
			copy(ec.SrcMAC[:], m)
		}
	}
	enc, err := geneve.NewEncapsulator(ec)
	if err != nil {
		return nil, fmt.Errorf("trace: encapsulate as %s would: %w", t.remote, err)
	}
	out := make([]byte, enc.HeaderLen()+len(b))
	copy(out[enc.HeaderLen():], b)
	start := enc.Encap(out, enc.HeaderLen(), len(b))
	return out[start:], nil
}

// traceReport turns what the tracing core did into steps and outputs.
func (c *core) traceReport(in *port, br *bridge, res *TraceResult) {
	f, tr, dc := c.f, c.tr, c.tr.dc
	step := func(name, format string, a ...any) {
		res.Steps = append(res.Steps, TraceStep{Step: name, Detail: fmt.Sprintf(format, a...)})
	}
	step("input", "port %s (%s)", in.name, in.kind)
	if in.kind == kindUnderlay {
		c.traceDecap(tr, dc, step)
	}
	if tr.learned {
		step("learn", "%s", f.describeLearn(tr))
	}
	if dc.br != nil && dc.br != br {
		step("bridge", "the frame belongs to bridge %s (vni %d), not %s", dc.br.name, dc.br.vni, br.name)
	}
	if dc.v != verdictDrop || dc.reason == dropSamePort || dc.reason == dropSplitHorizon {
		dst := flowtable.MACFrom(c.area[dc.off:])
		switch {
		case dst.IsBroadcast():
			step("lookup", "%s is broadcast: flood", dst)
		case dst.IsMulticast():
			step("lookup", "%s is multicast: flood", dst)
		case dc.v == verdictFlood:
			step("lookup", "%s is unknown: flood", dst)
		default:
			step("lookup", "%s is on %s", dst, f.destName(dc.dst))
		}
	}
	switch dc.v {
	case verdictDrop:
		res.Verdict, res.Drop = "drop", dc.reason.String()
		step("drop", "%s", dropExplain(dc.reason, dc.srcTun))
		return
	case verdictUnicast:
		res.Verdict = "unicast"
	case verdictFlood:
		res.Verdict = "flood"
		step("flood", "%s", c.describeFlood(in, dc))
	}
	c.traceOutputs(res)
}

func (c *core) traceDecap(tr *traceRec, dc decision, step func(string, string, ...any)) {
	if dc.v == verdictDrop && dc.reason < dropReason(geneve.NumDrops) {
		step("decap", "not a Geneve frame xswitch accepts: %s", dc.reason)
		return
	}
	d := &c.dec
	var opts []string
	b := c.area[tr.off:]
	it := geneve.Options(b[d.OptOff : d.OptOff+d.OptLen]).Iter()
	for o, ok := it.Next(); ok; o, ok = it.Next() {
		opts = append(opts, fmt.Sprintf("0x%04x/0x%02x:%x", o.Class, o.Type, o.Data))
	}
	step("decap", "Geneve %s -> %s, vni %d, options [%s], inner frame %d bytes", d.Src, d.Dst, d.VNI, strings.Join(opts, " "), d.InnerLen)
	switch {
	case dc.reason == dropUnknownVNI && dc.v == verdictDrop:
	case dc.br != nil && dc.srcTun == nil:
		step("tunnel", "bridge %s has no tunnel to %s", dc.br.name, d.Src)
	case dc.srcTun != nil:
		step("tunnel", "from tunnel:%s of bridge %s", dc.srcTun.remote, dc.br.name)
	}
}

func (f *fabric) describeLearn(tr *traceRec) string {
	on, p := f.destName(tr.learnTo), tr.pred
	switch p.Result {
	case flowtable.LearnAdded:
		return fmt.Sprintf("would learn %s on %s (new)", tr.mac, on)
	case flowtable.LearnUnchanged, flowtable.LearnRefreshed:
		return fmt.Sprintf("%s is already on %s (refreshed)", tr.mac, on)
	case flowtable.LearnMoved:
		if p.Aged {
			return fmt.Sprintf("would learn %s on %s (its entry on %s is aged)", tr.mac, on, f.destName(p.Prev))
		}
		return fmt.Sprintf("would move %s from %s to %s", tr.mac, f.destName(p.Prev), on)
	case flowtable.LearnStatic:
		return fmt.Sprintf("would be refused: %s is static on %s (own_mac)", tr.mac, f.destName(p.Prev))
	case flowtable.LearnDamped:
		return fmt.Sprintf("would not move %s from %s to %s: flap damping holds it (the frame is forwarded)", tr.mac, f.destName(p.Prev), on)
	case flowtable.LearnFull:
		return fmt.Sprintf("would not learn %s: the table is full and has no idle entry to evict (the frame is forwarded)", tr.mac)
	}
	return fmt.Sprintf("%s: %s", tr.mac, p.Result)
}

func (c *core) describeFlood(in *port, dc decision) string {
	var to, not []string
	br := dc.br
	if p := br.internal; p != nil && p != in {
		to = append(to, p.name)
	}
	for _, p := range br.locals {
		if p != in {
			to = append(to, p.name)
		}
	}
	// As forward does: unknown unicast of a bridge that keeps it local
	// (evpn flood_unknown_unicast: false) goes to no tunnel.
	uuLocal := br.uuLocal && c.area[dc.off]&1 == 0
	for _, t := range br.tunnels {
		if dc.srcTun == nil && !uuLocal {
			to = append(to, "tunnel:"+t.remote.String())
		} else if t != dc.srcTun {
			not = append(not, "tunnel:"+t.remote.String())
		}
	}
	s := fmt.Sprintf("to %s", orNone(to))
	if dc.srcTun != nil {
		s += fmt.Sprintf("; not back to tunnel:%s", dc.srcTun.remote)
		if len(not) > 0 {
			s += fmt.Sprintf("; not to %s (split horizon: a frame from a tunnel never goes to a tunnel)", strings.Join(not, ", "))
		}
	} else if in.br != nil {
		s += fmt.Sprintf("; not back to %s", in.name)
	}
	if uuLocal && dc.srcTun == nil && len(not) > 0 {
		s += fmt.Sprintf("; not to %s (unknown unicast stays local: evpn flood_unknown_unicast is false)", strings.Join(not, ", "))
	}
	return s
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "no other port"
	}
	return strings.Join(s, ", ")
}

// traceOutputs lists what the core queued or wrote, and the drops on the
// way out (no next hop, too big).
func (c *core) traceOutputs(res *TraceResult) {
	f := c.f
	for _, id := range c.tr.tapWrites {
		p := f.ports[id]
		res.Outputs = append(res.Outputs, TraceOutput{Port: p.name, Kind: p.kind.String(), Len: c.tr.dc.n})
	}
	for id, q := range c.pend {
		p := f.ports[id]
		for _, d := range q {
			b := c.area[d.Addr : d.Addr+uint64(d.Len)]
			if p.kind != kindUnderlay {
				res.Outputs = append(res.Outputs, TraceOutput{Port: p.name, Kind: p.kind.String(), Len: len(b)})
				continue
			}
			g := describeGeneve(b)
			name := "tunnel:" + g.Dst
			res.Outputs = append(res.Outputs, TraceOutput{Port: name, Kind: "tunnel", Len: len(b), Geneve: g})
		}
	}
	for id := range c.tctr {
		for r, n := range c.tctr[id].drops {
			if n > 0 && dropReason(r) != dropOwnMAC {
				t := f.tunnels[id]
				res.Outputs = append(res.Outputs, TraceOutput{Port: "tunnel:" + t.remote.String(), Kind: "tunnel", Drop: dropReason(r).String()})
			}
		}
	}
	for id := range c.ctr {
		for r, n := range c.ctr[id].drops {
			if n > 0 {
				p := f.ports[id]
				res.Outputs = append(res.Outputs, TraceOutput{Port: p.name, Kind: p.kind.String(), Drop: dropReason(r).String()})
			}
		}
	}
}

// describeGeneve reads back the outer headers the tracing core wrote.
func describeGeneve(b []byte) *TraceGeneve {
	var d geneve.Decoded
	g := &TraceGeneve{SrcMAC: net.HardwareAddr(b[6:12]).String(), DstMAC: net.HardwareAddr(b[0:6]).String(), DstPort: 6081}
	if r := geneve.Decap(b, &d); r != geneve.DropNone {
		g.Proto = "undecodable: " + r.String()
		return g
	}
	g.Src, g.Dst, g.SrcPort, g.VNI, g.HeaderLen = d.Src.String(), d.Dst.String(), d.SrcPort, d.VNI, d.InnerOff
	g.Proto = fmt.Sprintf("0x%04x", d.Proto)
	g.Options = []string{}
	it := d.Options(b).Iter()
	for o, ok := it.Next(); ok; o, ok = it.Next() {
		g.Options = append(g.Options, fmt.Sprintf("0x%04x/0x%02x:%x", o.Class, o.Type, o.Data))
	}
	ip := b[geneve.EthLen:]
	udp := ip[geneve.IPv4Len:]
	if d.Src.Is4() {
		g.TTL = int(ip[8])
	} else {
		g.TTL, udp = int(ip[7]), ip[geneve.IPv6Len:]
	}
	if cs := uint16(udp[6])<<8 | uint16(udp[7]); cs != 0 {
		g.UDPCsum = fmt.Sprintf("0x%04x", cs)
	} else {
		g.UDPCsum = "zero"
	}
	return g
}

func dropExplain(r dropReason, srcTun *tunnel) string {
	why := map[dropReason]string{
		dropUnknownVNI:    "no bridge has this VNI",
		dropUnknownRemote: "the outer source is not a remote endpoint of this VNI",
		dropBadSrcMAC:     "the source MAC is multicast or broadcast",
		dropOwnMAC:        "the source MAC is static on another port (the switch's own MAC claimed)",
		dropSamePort:      "the destination is the port the frame came from",
		dropSplitHorizon:  "a frame from a tunnel never goes to another tunnel",
		dropRunt:          "shorter than an Ethernet header",
	}[r]
	if why == "" {
		why = "the Geneve frame is not acceptable"
	}
	on := ""
	if r == dropOwnMAC && srcTun != nil {
		on = fmt.Sprintf(" (counted on tunnel:%s)", srcTun.remote)
	}
	return fmt.Sprintf("%s: %s%s", r, why, on)
}

func (f *fabric) destName(d flowtable.Dest) string {
	if d&tunnelBit != 0 {
		if id := int(d &^ tunnelBit); id < len(f.tunnels) {
			return "tunnel:" + f.tunnels[id].remote.String()
		}
	} else if int(d) < len(f.ports) {
		return f.ports[d].name
	}
	return fmt.Sprintf("dest %#x", uint32(d))
}

func (f *fabric) bridgeNamed(name string) *bridge {
	for _, b := range f.bridges {
		if b.name == name {
			return b
		}
	}
	return nil
}

func (f *fabric) bridgeNames() []string {
	var out []string
	for _, b := range f.bridges {
		out = append(out, b.name)
	}
	return out
}

func (b *bridge) portNames() []string {
	var out []string
	for _, p := range b.locals {
		out = append(out, p.name)
	}
	if b.internal != nil {
		out = append(out, b.internal.name)
	}
	return out
}

func (b *bridge) tunnelNames() []string {
	var out []string
	for _, t := range b.tunnels {
		out = append(out, "tunnel:"+t.remote.String())
	}
	return out
}
