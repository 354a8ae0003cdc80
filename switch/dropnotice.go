package vswitch

import (
	"fmt"
	"strings"
	"sync/atomic"
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
// of every bridge.
type dropWatch struct {
	s      *Switch
	tooBig *tooBigWatch
	ports  [][numDropReasons]uint64 // counters at the last check
	tuns   [][numDropReasons]uint64
	moves  []uint64 // per bridge
}

func newDropWatch(s *Switch) *dropWatch {
	w := &dropWatch{s: s, tooBig: newTooBigWatch(s.f),
		ports: make([][numDropReasons]uint64, len(s.f.ports)),
		tuns:  make([][numDropReasons]uint64, len(s.f.tunnels)),
		moves: make([]uint64, len(s.f.bridges))}
	w.read(w.ports, w.tuns, w.moves) // what happened before the start is no news
	return w
}

// read sums the drop counters of every poller, and the bridges' moves.
func (w *dropWatch) read(ports, tuns [][numDropReasons]uint64, moves []uint64) {
	clear(ports)
	clear(tuns)
	for _, c := range w.s.dp.cores() {
		for i := range ports {
			for r := range ports[i] {
				ports[i][r] += atomic.LoadUint64(&c.ctr[i].drops[r])
			}
		}
		for i := range tuns {
			for r := range tuns[i] {
				tuns[i][r] += atomic.LoadUint64(&c.tctr[i].drops[r])
			}
		}
	}
	for i, b := range w.s.f.bridges {
		moves[i] = b.table.Stats().Moves
	}
}

// check logs what grew since the last check.
func (w *dropWatch) check(now time.Time) {
	w.tooBig.check(w.s, now)
	ports := make([][numDropReasons]uint64, len(w.ports))
	tuns := make([][numDropReasons]uint64, len(w.tuns))
	moves := make([]uint64, len(w.moves))
	w.read(ports, tuns, moves)
	defer func() { w.ports, w.tuns, w.moves = ports, tuns, moves }()
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
	for i, p := range w.s.f.ports {
		for r := dropReason(1); r < numDropReasons; r++ {
			if d := ports[i][r] - w.ports[i][r]; d > 0 {
				emit(r.String()+" drops: "+dropHint(w.s, r, nil), zap.String("port", p.name), zap.String("reason", r.String()), zap.Uint64("dropped", d))
			}
		}
	}
	for i, t := range w.s.f.tunnels {
		for r := dropReason(1); r < numDropReasons; r++ {
			d := tuns[i][r] - w.tuns[i][r]
			if d == 0 || (r == dropTooBig && w.tooBig.last[t.id].Equal(now)) {
				continue // the too_big warning said it this second
			}
			emit(r.String()+" drops: "+dropHint(w.s, r, t), zap.String("bridge", t.br.name), zap.String("tunnel", t.remote.String()),
				zap.String("reason", r.String()), zap.Uint64("dropped", d))
		}
	}
	for i, b := range w.s.f.bridges {
		if d := moves[i] - w.moves[i]; d > 0 {
			emit("MACs moved to another port or tunnel (a VM migrated, or a loop if it repeats)", zap.String("bridge", b.name), zap.Uint64("moves", d))
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
	"critical_option": "a critical Geneve option this switch does not know: list it in known_options if it may be ignored",
	"oam":             "Geneve OAM frames are not forwarded",
	"not_geneve_port": "UDP to a port other than 6081 reached the switch",
	"ip_fragment":     "a fragmented outer IPv4 packet: the peer's underlay MTU is larger than this one's",
	"runt":            "a frame shorter than an Ethernet header",
}

// dropHint says what to do about drops of reason r (on tunnel t, or nil).
func dropHint(s *Switch, r dropReason, t *tunnel) string {
	if r == dropTooBig && t != nil {
		mtu, locals := tooBigAdvice(t)
		return fmt.Sprintf("frames of more than %d bytes do not fit the tunnel (underlay MTU %d): set MTU %d on the interfaces that send into bridge %s (the VMs behind %s)",
			mtu+geneve.EthLen, s.underlayMTU, mtu, t.br.name, strings.Join(locals, ", "))
	}
	if h, ok := dropHints[r.String()]; ok {
		return h
	}
	return r.String() + " (see the drop reasons in docs/operations.md)"
}
