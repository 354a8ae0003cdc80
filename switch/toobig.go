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
// on the control path (once a second, from the switch's ticker, as part of
// dropWatch, which leaves the too_big of a tunnel warned about that second
// out of its debug notices).
type tooBigWatch struct {
	seen []uint64    // too_big drops of each tunnel when last warned about
	last []time.Time // when each tunnel was last warned about
}

func newTooBigWatch(f *fabric) *tooBigWatch {
	return &tooBigWatch{seen: make([]uint64, len(f.tunnels)), last: make([]time.Time, len(f.tunnels))}
}

// check warns about every tunnel whose too_big counter grew, at most once
// per tooBigEvery each.
func (w *tooBigWatch) check(s *Switch, now time.Time) {
	for _, t := range s.f.tunnels {
		n := tooBigDrops(s.dp.cores(), t)
		if n == w.seen[t.id] || (!w.last[t.id].IsZero() && now.Sub(w.last[t.id]) < tooBigEvery) {
			continue
		}
		mtu, locals := tooBigAdvice(t)
		s.log.Warn("frames too big for a tunnel were dropped: set this MTU (or less) on the interfaces that send into the bridge, e.g. the VMs behind its local ports",
			zap.String("bridge", t.br.name), zap.String("tunnel", t.remote.String()), zap.Strings("local_ports", locals),
			zap.Int("mtu", mtu), zap.Int("underlay_mtu", s.underlayMTU), zap.Uint64("dropped", n-w.seen[t.id]))
		w.seen[t.id], w.last[t.id] = n, now
	}
}

// tooBigAdvice is the largest MTU the senders into t's bridge may use, and
// its local ports (behind which are the VMs to tell).
func tooBigAdvice(t *tunnel) (int, []string) {
	locals := make([]string, 0, len(t.br.locals))
	for _, p := range t.br.locals {
		locals = append(locals, p.name)
	}
	return t.maxInner - geneve.EthLen, locals
}

// tooBigDrops sums a tunnel's too_big counter over the pollers.
func tooBigDrops(cores []*core, t *tunnel) uint64 {
	var n uint64
	for _, c := range cores {
		n += atomic.LoadUint64(&c.tctr[t.id].drops[dropTooBig])
	}
	return n
}
