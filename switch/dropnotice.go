package vswitch

import (
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"xswitch/geneve"
)

// maxNoticesPerTick bounds the debug lines one check writes: a storm of
// drops on many ports is summed up, not written out port by port.
const maxNoticesPerTick = 32

// dropWatch turns the drop counters into logs, on the control path (once a
// second, from the switch's ticker): the packet path only counts. It warns
// about too_big drops once a minute per tunnel (tooBigWatch), and at debug
// level writes one line per (port or tunnel, reason) whose counter grew
// since the last second, with the count and what to do, and the MAC moves
// of every bridge. It works on the Stats and Status snapshots, keyed by
// name, so that ports and tunnels may come and go between two checks.
type dropWatch struct {
	s      *Switch
	tooBig *tooBigWatch
	drops  map[string]map[string]uint64 // "port NAME" / "tunnel BRIDGE REMOTE" → reason → count
	moves  map[string]uint64            // per bridge
}

func newDropWatch(s *Switch) *dropWatch {
	w := &dropWatch{s: s, tooBig: newTooBigWatch()}
	w.drops, w.moves = w.read() // what happened before the start is no news
	return w
}

// read snapshots the drop counters of every port and tunnel and the MAC
// moves of every bridge.
func (w *dropWatch) read() (map[string]map[string]uint64, map[string]uint64) {
	st := w.s.Stats()
	drops := map[string]map[string]uint64{}
	for _, p := range st.Ports {
		drops["port "+p.Name] = p.Drops
	}
	for _, t := range st.Tunnels {
		drops["tunnel "+t.Bridge+" "+t.Remote] = t.Drops
	}
	moves := map[string]uint64{}
	for _, b := range w.s.Status().Bridges {
		moves[b.Name] = b.FDB.Moves
	}
	return drops, moves
}

// check logs what grew since the last check.
func (w *dropWatch) check(now time.Time) {
	w.tooBig.check(w.s, now)
	drops, moves := w.read()
	defer func() { w.drops, w.moves = drops, moves }()
	log := w.s.log
	if !log.Core().Enabled(zapcore.DebugLevel) {
		return // the baseline moves on: turning debug on shows news only
	}
	n, more := 0, 0
	emit := func(msg string, fields ...zap.Field) {
		if n++; n > maxNoticesPerTick {
			more++
			return
		}
		log.Debug(msg, fields...)
	}
	st := w.s.Stats()
	for _, p := range st.Ports {
		for r, v := range p.Drops {
			if d := v - w.drops["port "+p.Name][r]; d > 0 {
				emit(r+" drops: "+dropHint(w.s, r, "", ""), zap.String("port", p.Name), zap.String("reason", r), zap.Uint64("dropped", d))
			}
		}
	}
	for _, t := range st.Tunnels {
		for r, v := range t.Drops {
			d := v - w.drops["tunnel "+t.Bridge+" "+t.Remote][r]
			if d == 0 || (r == "too_big" && w.tooBig.warnedAt(t.Bridge, t.Remote).Equal(now)) {
				continue // the too_big warning said it this second
			}
			emit(r+" drops: "+dropHint(w.s, r, t.Bridge, t.Remote), zap.String("bridge", t.Bridge), zap.String("tunnel", t.Remote),
				zap.String("reason", r), zap.Uint64("dropped", d))
		}
	}
	for b, m := range moves {
		if d := m - w.moves[b]; d > 0 {
			emit("MACs moved to another port or tunnel (a VM migrated, or a loop if it repeats)", zap.String("bridge", b), zap.Uint64("moves", d))
		}
	}
	if more > 0 {
		log.Debug("more drop notices this second were not logged; see xswitch ctl stats", zap.Int("notices", more))
	}
}

// dropHints say what to do about a drop reason (by name: reasons other
// parts add get the default hint until they get their own).
var dropHints = map[string]string{
	"no_neighbour":    "the tunnel's next hop is not resolved (yet): check the route and neighbour of the remote (xswitch ctl show, ip route get REMOTE, ip neigh)",
	"unknown_remote":  "Geneve from an address that is not a remote of that VNI: add it to the bridge's tunnels, or fix the peer's remote or key",
	"unknown_vni":     "Geneve with a VNI of no bridge: the tunnel key differs between the two ends",
	"tx_ring_full":    "the destination's TX ring was full: raise ring_size, or the destination cannot keep up",
	"no_frame":        "no free UMEM frame: raise umem.frames",
	"tap_write":       "writing to the internal port failed: is the interface up (ip link)?",
	"bad_source_mac":  "a multicast or broadcast source MAC: a misbehaving sender",
	"same_port":       "the destination MAC is behind the port the frame came from",
	"split_horizon":   "known unicast from one tunnel to another: the MAC was learned behind another tunnel",
	"own_mac":         "a frame with this switch's own MAC as source came back: a loop, or another host uses the same MAC",
	"static_mac":      "a frame claims a MAC configured in static_macs for another port or tunnel: a spoof, a loop, or a stale static entry",
	"port_absent":     "the destination port's interface is gone (xswitch ctl show): it is attached again when it comes back",
	"bad_vnet_header": "the host handed the internal port a virtio-net header that does not fit its frame",
	"critical_option": "a critical Geneve option this switch does not know: list it in known_options if it may be ignored",
	"oam":             "Geneve OAM frames are not forwarded",
	"not_geneve_port": "UDP to a port other than 6081 reached the switch",
	"ip_fragment":     "a fragmented outer IPv4 packet: the peer's underlay MTU is larger than this one's",
	"runt":            "a frame shorter than an Ethernet header",
}

// dropHint says what to do about drops of reason r (on the tunnel to
// remote of bridge, or bridge "" for a port).
func dropHint(s *Switch, r, bridge, remote string) string {
	if r == "too_big" && bridge != "" {
		if mtu, locals, ok := s.tooBigAdviceFor(bridge, remote); ok {
			return fmt.Sprintf("frames of more than %d bytes do not fit the tunnel (underlay MTU %d): set MTU %d on the interfaces that send into bridge %s (the VMs behind %s)",
				mtu+geneve.EthLen, s.underlayMTU, mtu, bridge, strings.Join(locals, ", "))
		}
	}
	if h, ok := dropHints[r]; ok {
		return h
	}
	return r + " (see the drop reasons in docs/operations.md)"
}

// tooBigAdviceFor is tooBigAdvice for the tunnel to remote of bridge in the
// current generation.
func (s *Switch) tooBigAdviceFor(bridge, remote string) (int, []string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, b := range s.cur().bridges {
		if b.name != bridge {
			continue
		}
		for _, t := range b.tunnels {
			if t.remote.String() == remote {
				mtu, locals := tooBigAdvice(b, t)
				return mtu, locals, true
			}
		}
	}
	return 0, nil, false
}
