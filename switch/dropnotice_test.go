package vswitch

import (
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestDropNotices: at debug level the drop watch writes one line per
// (port or tunnel, reason) that grew since the last check, with the count
// and a hint, and the MAC moves per bridge; it leaves out the too_big that
// the once-a-minute warning reports that second; at info it writes none
// of them, and turning debug on later reports only the news.
func TestDropNotices(t *testing.T) {
	r := newRig(t)
	lvl := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	obs, logs := observer.New(lvl)
	s := &Switch{log: zap.New(obs), underlayMTU: 1500, cfg: &Config{}}
	s.fab.Store(r.f)
	s.dp.all = []*core{r.c}
	w := newDropWatch(s)
	tooBig := func() {
		r.reset()
		// Broadcast: flooded to both tunnels of br1, too big for both.
		r.c.forward(r.a, []desc{r.frame(eth(bcast, macA, 1500))})
	}
	t0 := time.Unix(1000, 0)
	take := func(level zapcore.Level) []observer.LoggedEntry {
		var out []observer.LoggedEntry
		for _, e := range logs.TakeAll() {
			if e.Level == level {
				out = append(out, e)
			}
		}
		return out
	}

	// Debug on from the start: the warnings, no duplicate debug lines.
	lvl.SetLevel(zapcore.DebugLevel)
	tooBig()
	w.check(t0)
	all := logs.TakeAll()
	if len(all) != 2 || all[0].Level != zapcore.WarnLevel || all[1].Level != zapcore.WarnLevel {
		t.Fatalf("first too_big drops: %v, want the 2 warnings only", all)
	}
	// Within the minute: the debug notices, one per tunnel, with the MTU.
	tooBig()
	tooBig()
	w.check(t0.Add(time.Second))
	got := take(zapcore.DebugLevel)
	if len(got) != 2 {
		t.Fatalf("%d debug notices for too_big on two tunnels, want 2: %v", len(got), got)
	}
	for i, tn := range []string{"198.18.0.2", "198.18.0.3"} {
		f := got[i].ContextMap()
		if f["tunnel"] != tn || f["reason"] != "too_big" || f["dropped"] != uint64(2) || f["bridge"] != "br1" {
			t.Errorf("notice %d: %v, want tunnel %s, too_big, dropped 2", i, f, tn)
		}
	}
	if m := got[0].Message; !strings.Contains(m, "set MTU 1450") || !strings.Contains(m, "vm1, vm2") || !strings.Contains(m, "more than 1464 bytes") {
		t.Errorf("too_big notice without the MTU advice: %q", m)
	}
	w.check(t0.Add(2 * time.Second))
	if logs.Len() != 0 {
		t.Errorf("notices without new drops: %v", logs.All())
	}

	// A port's drop, and a MAC move.
	r.reset()
	r.c.forward(r.a, []desc{r.frame(eth(macB, bcast, 60))}) // broadcast source
	r.c.forward(r.b, []desc{r.frame(eth(bcast, macA, 60))}) // macA moves vm1 -> vm2
	w.check(t0.Add(3 * time.Second))
	got = take(zapcore.DebugLevel)
	var port, move map[string]any
	for _, e := range got {
		switch f := e.ContextMap(); {
		case f["reason"] == "bad_source_mac":
			port = f
			if !strings.Contains(e.Message, "source MAC") {
				t.Errorf("bad_source_mac notice without its hint: %q", e.Message)
			}
		case f["moves"] != nil:
			move = f
		}
	}
	if port["port"] != "vm1" || port["dropped"] != uint64(1) {
		t.Errorf("bad_source_mac notice %v, want port vm1 dropped 1 (all: %v)", port, got)
	}
	if move["bridge"] != "br1" || move["moves"] != uint64(1) {
		t.Errorf("move notice %v, want bridge br1 moves 1 (all: %v)", move, got)
	}

	// At info: nothing; back at debug, only the drops since.
	lvl.SetLevel(zapcore.InfoLevel)
	tooBig()
	tooBig()
	tooBig()
	w.check(t0.Add(4 * time.Second))
	if logs.Len() != 0 {
		t.Errorf("logged at info within the warning interval: %v", logs.All())
	}
	lvl.SetLevel(zapcore.DebugLevel)
	tooBig()
	w.check(t0.Add(5 * time.Second))
	got = take(zapcore.DebugLevel)
	if len(got) != 2 || got[0].ContextMap()["dropped"] != uint64(1) {
		t.Errorf("after info: %v, want 2 notices of 1 drop (the 3 at info were not news)", got)
	}
}

// TestDropHints: every drop reason has a hint that names it or says what
// to do.
func TestDropHints(t *testing.T) {
	s := &Switch{underlayMTU: 1500}
	for r := dropReason(1); r < numDropReasons; r++ {
		h := dropHint(s, r.String(), "", "")
		if h == "" {
			t.Errorf("%s: no hint", r)
		}
		if _, ok := dropHints[r.String()]; !ok && !strings.Contains(h, r.String()) {
			t.Errorf("%s: default hint %q does not name the reason", r, h)
		}
	}
}
