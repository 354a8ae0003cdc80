package flowtable

import (
	"sync"
	"testing"
	"time"
)

// TestFlapDamping: a MAC ping-ponging between two Dests moves FlapMoves
// times, then stays where it is for FlapHold; the refused moves are counted
// and take no lock; a refresh on the held Dest still works; after the
// hold-down it moves again.
func TestFlapDamping(t *testing.T) {
	tb := New(Config{})
	m := mac("02:00:00:00:00:f1")
	const t0 = 1000
	if r := tb.Learn(m, 1, t0); r != LearnAdded {
		t.Fatalf("learn: %v", r)
	}
	// Five moves in one second are allowed: 1→2→1→2→1→2.
	for n := 1; n <= DefaultFlapMoves; n++ {
		if r := tb.Learn(m, Dest(1+n%2), t0); r != LearnMoved {
			t.Fatalf("move %d: %v", n, r)
		}
	}
	if d, _ := tb.Lookup(m); d != 2 {
		t.Fatalf("after 5 moves on %d, want 2", d)
	}
	// The sixth is refused and starts the hold-down (one locked write).
	locked := tb.Stats().LearnLocked
	if r := tb.Learn(m, 1, t0); r != LearnDamped {
		t.Fatalf("sixth move: %v, want damped", r)
	}
	if n := tb.Stats().LearnLocked - locked; n != 1 {
		t.Fatalf("starting the hold-down locked %d times, want 1", n)
	}
	// Held for 10 s: every attempt refused without locking, from any Dest.
	locked = tb.Stats().LearnLocked
	attempts := 0
	for now := uint32(t0); now < t0+10; now++ {
		for d := Dest(1); d <= 3; d += 2 {
			if r := tb.Learn(m, d, now); r != LearnDamped {
				t.Fatalf("at +%ds: move to %d %v, want damped", now-t0, d, r)
			}
			attempts++
		}
		// The held Dest's own frames refresh the entry as usual.
		if r := tb.Learn(m, 2, now); r != LearnRefreshed && !(now == t0 && r == LearnUnchanged) {
			t.Fatalf("at +%ds: refresh on the held Dest: %v", now-t0, r)
		}
		if d, ok := tb.Lookup(m); !ok || d != 2 {
			t.Fatalf("at +%ds: Lookup %d %v, want held on 2", now-t0, d, ok)
		}
	}
	s := tb.Stats()
	if s.LearnLocked != locked {
		t.Fatalf("refusals during the hold-down locked %d times", s.LearnLocked-locked)
	}
	if s.MovesDamped != uint64(attempts+1) || s.Moves != DefaultFlapMoves {
		t.Fatalf("stats %+v: want %d damped, %d moves", s, attempts+1, DefaultFlapMoves)
	}
	// At +10 s the hold-down is over: the MAC moves and a new window opens.
	if r := tb.Learn(m, 1, t0+10); r != LearnMoved {
		t.Fatalf("after the hold-down: %v", r)
	}
	if d, _ := tb.Lookup(m); d != 1 {
		t.Fatalf("after the hold-down on %d, want 1", d)
	}
}

// TestFlapWindow: moves spread wider than the window are never damped (a
// host moving and moving back, a spoofer every few seconds); a window that
// expires starts the count over.
func TestFlapWindow(t *testing.T) {
	tb := New(Config{})
	m := mac("02:00:00:00:00:f2")
	tb.Learn(m, 1, 100)
	// One move a second, forever: at most 5 in any 5 s window.
	for now := uint32(101); now < 160; now++ {
		if r := tb.Learn(m, Dest(1+now%2), now); r != LearnMoved {
			t.Fatalf("move at %d: %v", now, r)
		}
	}
	// Four moves, then the window (opened at 200) ends at 205: five more.
	for n := 0; n < 4; n++ {
		tb.Learn(m, Dest(1+n%2), 200)
	}
	for n := 0; n < DefaultFlapMoves; n++ {
		if r := tb.Learn(m, Dest(1+n%2), 205); r != LearnMoved {
			t.Fatalf("move %d in the new window: %v", n, r)
		}
	}
	if r := tb.Learn(m, 3, 209); r != LearnDamped {
		t.Fatalf("sixth move in the window opened at 205: %v", r)
	}
	if s := tb.Stats(); s.MovesDamped != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestFlapConfig: FlapMoves, FlapWindow and FlapHold are honoured and
// validated; damping state follows an entry through backward shifts and is
// forgotten with it.
func TestFlapConfig(t *testing.T) {
	for _, c := range []Config{{FlapMoves: -1}, {FlapMoves: MaxFlapMoves + 1}, {FlapWindow: -1}, {FlapHold: MaxFlapTime + time.Second}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", c)
		}
	}
	tb := New(Config{MaxEntries: 8, FlapMoves: 1, FlapWindow: 2 * time.Second, FlapHold: 3 * time.Second})
	// Two MACs in one probe chain: deleting the first shifts the second
	// back, and its hold-down must move with it.
	var a, b MAC
	for x := MAC(0x020000000001); b == 0; x++ {
		switch {
		case a == 0:
			a = x
		case tb.home(uint64(x)) == tb.home(uint64(a)):
			b = x
		}
	}
	tb.Learn(a, 1, 10)
	tb.Learn(b, 1, 10)
	if r := tb.Learn(b, 2, 10); r != LearnMoved {
		t.Fatalf("first move: %v", r)
	}
	if r := tb.Learn(b, 1, 11); r != LearnDamped {
		t.Fatalf("second move with FlapMoves 1: %v", r)
	}
	i0, _, _, _ := tb.locate(uint64(b) | usedBit)
	tb.Delete(a)
	if i1, _, _, _ := tb.locate(uint64(b) | usedBit); i1 == i0 {
		t.Fatal("b did not shift: the test needs a shared chain")
	}
	checkStructure(t, tb)
	if r := tb.Learn(b, 1, 13); r != LearnDamped {
		t.Fatalf("after the shift, at +2 s of a 3 s hold-down: %v", r)
	}
	if r := tb.Learn(b, 1, 14); r != LearnMoved {
		t.Fatalf("after the hold-down: %v", r)
	}
	// A deleted and relearned MAC starts with no history.
	if r := tb.Learn(b, 2, 14); r != LearnDamped {
		t.Fatalf("second move in the window opened at 14: %v", r)
	}
	tb.Delete(b)
	tb.Learn(b, 1, 14)
	if r := tb.Learn(b, 2, 14); r != LearnMoved {
		t.Fatalf("relearned MAC: %v", r)
	}
	// An aged entry "moving" is a new host, not a flap.
	if r := tb.Learn(b, 1, 14); r != LearnDamped {
		t.Fatalf("second move: %v", r)
	}
	if r := tb.Learn(b, 1, 14+300); r != LearnMoved {
		t.Fatalf("aged entry: %v, want moved", r)
	}
}

// TestFlapStateWrap: the 24-bit start second is compared modulo 2^24;
// pollers a little behind the table's clock count as now, far-apart seconds
// as long ago.
func TestFlapStateWrap(t *testing.T) {
	for _, c := range []struct {
		start, now uint32
		want       int32
	}{
		{100, 100, 0}, {100, 107, 7}, {100, 98, 0}, {1<<24 - 2, 1<<24 + 3, 5},
		{1<<24 - 3, 1<<32 - 1, 2}, {5, 1<<32 - 1, 1 << 23}, {1000, 1000 + 1<<23 + 7, 1 << 23},
	} {
		if got := newFlapState(c.start, 3).since(c.now); got != c.want {
			t.Errorf("start %d now %d: since %d, want %d", c.start, c.now, got, c.want)
		}
	}
	if f := newFlapState(1<<24+9, 255); f.start() != 9 || f.moves() != 255 {
		t.Errorf("packing: start %d moves %d", f.start(), f.moves())
	}
}

// TestStaticOwnMAC: a static entry (the switch's own port MAC) is never
// moved by learning, however often it is claimed, and the claims take no
// lock; RemoveStatic removes only static entries.
func TestStaticOwnMAC(t *testing.T) {
	tb := New(Config{})
	own := mac("02:00:00:00:00:0e")
	if err := tb.AddStatic(own, 7); err != nil {
		t.Fatal(err)
	}
	locked := tb.Stats().LearnLocked
	for now := uint32(1); now < 100; now++ {
		if r := tb.Learn(own, Dest(now%3), now); r != LearnStatic {
			t.Fatalf("claim at %d: %v", now, r)
		}
		if r := tb.Learn(own, 7, now); r != LearnUnchanged {
			t.Fatalf("own port at %d: %v", now, r)
		}
	}
	s := tb.Stats()
	if s.StaticConflicts != 99 || s.Moves != 0 || s.LearnLocked != locked {
		t.Fatalf("stats %+v: want 99 static conflicts, no move, no lock", s)
	}
	if d, ok := tb.Lookup(own); !ok || d != 7 {
		t.Fatalf("own MAC on %d %v", d, ok)
	}
	dyn := mac("02:00:00:00:00:0d")
	tb.Learn(dyn, 1, 100)
	if tb.RemoveStatic(dyn) {
		t.Fatal("RemoveStatic removed a dynamic entry")
	}
	if _, ok := tb.Lookup(dyn); !ok {
		t.Fatal("dynamic entry gone")
	}
	if !tb.RemoveStatic(own) || tb.RemoveStatic(own) {
		t.Fatal("RemoveStatic of the static entry")
	}
	if r := tb.Learn(own, 1, 100); r != LearnAdded {
		t.Fatalf("after RemoveStatic the MAC is learned normally: %v", r)
	}
}

// TestFullRefusalLockFree: with the table full of active hosts, a burst of
// new MACs from several goroutines is refused (counted in Full) while the
// test itself holds the writer mutex: any Learn that tried to lock would
// block and the burst would not finish.
func TestFullRefusalLockFree(t *testing.T) {
	tb := New(Config{MaxEntries: 1024, EvictIdle: 30 * time.Second})
	for i, m := range randomMACs(1024, 1) {
		if r := tb.Learn(m, Dest(i), 100); r != LearnAdded {
			t.Fatalf("fill: %v", r)
		}
	}
	before := tb.Stats()
	const goroutines, perG = 4, 5000
	flood := randomMACs(goroutines*perG, 2)
	tb.mu.Lock()
	unlocked := false
	unlock := func() {
		if !unlocked {
			unlocked = true
			tb.mu.Unlock()
		}
	}
	defer unlock()
	var wg sync.WaitGroup
	results := make([]int, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, m := range flood[g*perG : (g+1)*perG] {
				if tb.Learn(m, 9, 110) == LearnFull {
					results[g]++
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		unlock() // let the blocked learners finish
		<-done
		t.Fatalf("learning new MACs into a full table blocked on the writer mutex (stats %+v)", tb.Stats())
	}
	unlock()
	s := tb.Stats()
	for g, n := range results {
		if n != perG {
			t.Errorf("goroutine %d: %d of %d refused as full", g, n, perG)
		}
	}
	if s.Full-before.Full != goroutines*perG || s.LearnLocked != before.LearnLocked || s.Entries != 1024 {
		t.Fatalf("stats %+v (before %+v): want %d more full, no lock, 1024 entries", s, before, goroutines*perG)
	}
	// Once entries are idle long enough to be evicted, new MACs lock and get
	// in (each evicting the most idle entry near its home slot); those with
	// no entry near their home slot are still refused without locking.
	added := 0
	for _, m := range flood[:16] {
		if tb.Learn(m, 9, 100+30) == LearnAdded {
			added++
		}
	}
	if s := tb.Stats(); added == 0 || s.LearnLocked != before.LearnLocked+uint64(added) || s.Evictions != uint64(added) {
		t.Fatalf("with idle entries: %d of 16 new MACs added, stats %+v", added, s)
	}
}
