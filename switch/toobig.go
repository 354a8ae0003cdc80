package vswitch

import (
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"xswitch/geneve"
)

// tooBigEvery is the least time between two warnings about one tunnel.
const tooBigEvery = time.Minute

// tooBigWatch turns the too_big drop counters of the tunnels into a log
// warning that says which MTU works. The packet path only counts; this runs
// on the control path (once a second, from the switch's ticker).
type tooBigWatch struct {
	seen map[*tunnel]uint64    // too_big drops of each tunnel when last warned about
	last map[*tunnel]time.Time // when each tunnel was last warned about
}

func newTooBigWatch() *tooBigWatch {
	return &tooBigWatch{seen: map[*tunnel]uint64{}, last: map[*tunnel]time.Time{}}
}

// check warns about every tunnel whose too_big counter grew, at most once
// per tooBigEvery each.
func (w *tooBigWatch) check(s *Switch, now time.Time) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	live := map[*tunnel]bool{}
	for _, b := range s.cur().bridges {
		for _, t := range b.tunnels {
			live[t] = true
			n := tooBigDrops(&s.dp, t)
			if n == w.seen[t] || (!w.last[t].IsZero() && now.Sub(w.last[t]) < tooBigEvery) {
				continue
			}
			w.warn(s, b, t, n)
			w.seen[t], w.last[t] = n, now
		}
	}
	for t := range w.seen {
		if !live[t] {
			delete(w.seen, t)
			delete(w.last, t)
		}
	}
}

// warn logs the too_big drops of tunnel t of bridge b.
func (w *tooBigWatch) warn(s *Switch, b *bridge, t *tunnel, n uint64) {
	mtu, locals := tooBigAdvice(b, t)
	s.log.Warn("frames too big for a tunnel were dropped: set this MTU (or less) on the interfaces that send into the bridge, e.g. the VMs behind its local ports",
		zap.String("bridge", b.name), zap.String("tunnel", t.remote.String()), zap.Strings("local_ports", locals),
		zap.Int("mtu", mtu), zap.Int("underlay_mtu", s.underlayMTU), zap.Uint64("dropped", n-w.seen[t]))
}

// tooBigAdvice is the largest MTU the senders into bridge b may use toward
// tunnel t, and b's local ports (behind which are the VMs to tell).
func tooBigAdvice(b *bridge, t *tunnel) (int, []string) {
	locals := make([]string, 0, len(b.locals))
	for _, p := range b.locals {
		locals = append(locals, p.name)
	}
	return t.maxInner - geneve.EthLen, locals
}

// warnedAt is when the tunnel to remote of bridge was last warned about
// (zero if never).
func (w *tooBigWatch) warnedAt(bridge, remote string) time.Time {
	for t, at := range w.last {
		if t.br.name == bridge && t.remote.String() == remote {
			return at
		}
	}
	return time.Time{}
}

// tooBigDrops sums a tunnel's too_big counter over the pollers, running
// and stopped (Switch.mu held).
func tooBigDrops(d *dataPlane, t *tunnel) uint64 {
	var n uint64
	if t.id < len(d.retired.tuns) {
		n = d.retired.tuns[t.id].drops[dropTooBig]
	}
	for _, c := range d.cores() {
		if cs := c.counters(); t.id < len(cs.tctr) {
			n += atomic.LoadUint64(&cs.tctr[t.id].drops[dropTooBig])
		}
	}
	return n
}
