package flowtable

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// The model: a plain map holding what the table holds (aged entries included
// until Expire), with the documented rules applied step by step.
type modelEntry struct {
	d      Dest
	seen   uint32
	static bool
	// Flap damping: moves made in the window that opened at winStart; held
	// from holdStart.
	winStart, holdStart uint32
	moves               int
	held                bool
}

type model struct {
	t      *testing.T
	tb     *Table
	m      map[MAC]modelEntry
	now    uint32 // the caller's clock
	tnow   uint32 // the latest time the table was given (Learn, Expire)
	macs   []MAC
	maxAge int32
	idle   int32
	max    int
	// Flap damping: at most flapMoves moves per flapWindow seconds, then
	// flapHold seconds held.
	flapMoves            int
	flapWindow, flapHold uint32
}

const (
	modelMaxEntries = 8 // 16 slots: long chains, wrap-around, full table
	modelMACs       = 24
)

func newModel(t *testing.T, mult uint64) *model {
	tb := New(Config{MaxEntries: modelMaxEntries, MaxAge: 10 * time.Second, EvictIdle: 3 * time.Second,
		FlapMoves: 2, FlapWindow: 3 * time.Second, FlapHold: 4 * time.Second})
	tb.mult = mult | 1
	md := &model{t: t, tb: tb, m: map[MAC]modelEntry{}, now: 1, maxAge: 10, idle: 3, max: modelMaxEntries,
		flapMoves: 2, flapWindow: 3, flapHold: 4}
	for i := 0; i < modelMACs; i++ {
		md.macs = append(md.macs, MAC(0x020000000000|uint64(i)*0x010203))
	}
	return md
}

func (md *model) live(e modelEntry, now uint32) bool {
	return e.static || int32(now-e.seen) < md.maxAge
}

func (md *model) advance(now uint32) {
	if int32(now-md.tnow) > 0 {
		md.tnow = now
	}
}

// expectedVictim applies the eviction policy to the model's entries found in
// the EvictWindow slots from m's home slot (slot contents are checked against
// the model after every step, so reading which MAC sits where is fair).
func (md *model) expectedVictim(m MAC, minIdle int32) (MAC, bool) {
	tb := md.tb
	i := tb.home(uint64(m))
	var best MAC
	bestAge, found := int32(0), false
	for n := 0; n < EvictWindow; n++ {
		k := tb.slots[i].key.Load()
		if k&usedBit != 0 {
			x := MAC(k & macMask)
			e, ok := md.m[x]
			if !ok {
				md.t.Fatalf("slot %d holds %s unknown to the model", i, x)
			}
			age := int32(md.now - e.seen)
			if !e.static && age >= minIdle && (!found || age > bestAge) {
				best, bestAge, found = x, age, true
			}
		}
		i = (i + 1) & tb.mask
	}
	return best, found
}

func (md *model) learn(m MAC, d Dest) {
	e, ok := md.m[m]
	heldBefore := ok && e.held && md.now-e.holdStart < md.flapHold && md.live(e, md.now)
	var victim MAC
	var found bool
	if !ok && len(md.m) >= md.max && !m.IsMulticast() {
		victim, found = md.expectedVictim(m, md.idle)
	}
	locked := md.tb.Stats().LearnLocked
	got := md.tb.Learn(m, d, md.now)
	locked = md.tb.Stats().LearnLocked - locked
	if !m.IsMulticast() {
		md.advance(md.now)
	}
	want := LearnAdded
	switch {
	case m.IsMulticast():
		want = LearnMulticast
	case ok && e.static && e.d == d:
		want = LearnUnchanged
	case ok && e.static:
		want = LearnStatic
	case ok && e.d == d && e.seen == md.now:
		want = LearnUnchanged
	case ok && e.d == d:
		want = LearnRefreshed
		e.seen = md.now
		md.m[m] = e
	case ok:
		want = md.move(&e, d)
		md.m[m] = e
	case len(md.m) >= md.max:
		if !found {
			want = LearnFull
			break
		}
		delete(md.m, victim)
		md.m[m] = modelEntry{d: d, seen: md.now}
	default:
		md.m[m] = modelEntry{d: d, seen: md.now}
	}
	if got != want {
		md.t.Fatalf("Learn(%s, %d, %d) = %v, model says %v", m, d, md.now, got, want)
	}
	// Only writes of keys and Dests lock: adding, moving and starting a
	// hold-down. Every refusal but that one, and every refresh, is lock-free.
	wantLocked := uint64(0)
	if want == LearnAdded || want == LearnMoved || (want == LearnDamped && !heldBefore) {
		wantLocked = 1
	}
	if locked != wantLocked {
		md.t.Fatalf("Learn(%s, %d, %d) = %v took the writer mutex %d times, want %d", m, d, md.now, got, locked, wantLocked)
	}
}

// move applies a move attempt of dynamic entry e to d under the damping rule
// as documented: an aged entry is a new host (new window); a held entry stays
// until flapHold has passed since the hold began, then counts afresh; the
// window opens with a move and lasts flapWindow; a move beyond flapMoves in
// the window is refused and starts the hold.
func (md *model) move(e *modelEntry, d Dest) LearnResult {
	now := md.now
	switch {
	case !md.live(*e, now):
		e.moves, e.winStart, e.held = 1, now, false
	case e.held && now-e.holdStart < md.flapHold:
		return LearnDamped
	case e.held || e.moves == 0 || now-e.winStart >= md.flapWindow:
		e.moves, e.winStart, e.held = 1, now, false
	case e.moves < md.flapMoves:
		e.moves++
	default:
		e.held, e.holdStart = true, now
		return LearnDamped
	}
	e.d, e.seen = d, now
	return LearnMoved
}

func (md *model) addStatic(m MAC, d Dest) {
	var want error
	if _, ok := md.m[m]; !ok && len(md.m) >= md.max {
		if v, found := md.expectedVictim(m, -1<<31); found {
			delete(md.m, v)
		} else {
			want = ErrFull
		}
	}
	err := md.tb.AddStatic(m, d)
	if want == nil {
		md.m[m] = modelEntry{d: d, seen: md.tnow, static: true}
	}
	if !errors.Is(err, want) || (want == nil) != (err == nil) {
		md.t.Fatalf("AddStatic(%s, %d) = %v, model says %v", m, d, err, want)
	}
}

func (md *model) check(op string) {
	t, tb := md.t, md.tb
	t.Helper()
	checkStructure(t, tb)
	if tb.Len() != len(md.m) {
		t.Fatalf("after %s: Len %d, model %d", op, tb.Len(), len(md.m))
	}
	for _, m := range md.macs {
		d, ok := tb.Lookup(m)
		e, in := md.m[m]
		wantOK := in && md.live(e, md.tnow)
		if ok != wantOK || (ok && d != e.d) {
			t.Fatalf("after %s: Lookup(%s) = %d %v, model %+v present %v live %v", op, m, d, ok, e, in, wantOK)
		}
	}
	var want []Entry
	for m, e := range md.m {
		if md.live(e, md.now) {
			age := time.Duration(max(int32(md.now-e.seen), 0)) * time.Second
			if e.static {
				age = 0
			}
			want = append(want, Entry{MAC: m, Dest: e.d, Age: age, Static: e.static})
		}
	}
	slices.SortFunc(want, func(a, b Entry) int { return cmp.Compare(a.MAC, b.MAC) })
	if got := tb.Entries(md.now); !slices.Equal(got, want) {
		t.Fatalf("after %s: Entries\n got %+v\nwant %+v", op, got, want)
	}
}

// step applies one operation encoded in three bytes.
func (md *model) step(op, a, b byte) string {
	m := md.macs[int(a)%len(md.macs)]
	d := Dest(b % 4)
	switch op % 10 {
	case 0, 1, 2, 3:
		md.learn(m, d)
		return fmt.Sprintf("learn %s %d", m, d)
	case 4:
		md.learn(m|1<<40, d) // multicast
		return "learn multicast"
	case 5:
		md.now += uint32(b % 5)
		return fmt.Sprintf("tick to %d", md.now)
	case 6:
		ok := md.tb.Delete(m)
		_, want := md.m[m]
		delete(md.m, m)
		if ok != want {
			md.t.Fatalf("Delete(%s) = %v, model %v", m, ok, want)
		}
		return fmt.Sprintf("delete %s", m)
	case 7:
		md.now += uint32(b % 4)
		n, want := md.tb.Expire(md.now), 0
		md.advance(md.now)
		for x, e := range md.m {
			if !md.live(e, md.now) {
				delete(md.m, x)
				want++
			}
		}
		if n != want {
			md.t.Fatalf("Expire(%d) = %d, model %d", md.now, n, want)
		}
		return fmt.Sprintf("expire %d", md.now)
	case 8:
		if a%4 == 0 {
			n, want := md.tb.Flush(d), 0
			for x, e := range md.m {
				if e.d == d {
					delete(md.m, x)
					want++
				}
			}
			if n != want {
				md.t.Fatalf("Flush(%d) = %d, model %d", d, n, want)
			}
			return fmt.Sprintf("flush %d", d)
		}
		_, ok := md.tb.Lookup(m)
		_ = ok // checked for every MAC in check
		return "lookup"
	default:
		md.addStatic(m, d)
		return fmt.Sprintf("static %s %d", m, d)
	}
}

func runModel(t *testing.T, data []byte) Stats {
	if len(data) < 8 {
		return Stats{}
	}
	md := newModel(t, binary.LittleEndian.Uint64(data))
	data = data[8:]
	for len(data) >= 3 {
		op := md.step(data[0], data[1], data[2])
		md.check(op)
		data = data[3:]
	}
	return md.tb.Stats()
}

// TestModelRandom runs random operation sequences against the map model.
func TestModelRandom(t *testing.T) {
	runs := 300
	if testing.Short() {
		runs = 30
	}
	r := rand.New(rand.NewPCG(7, 8))
	var sum Stats
	for run := 0; run < runs; run++ {
		data := make([]byte, 8+3*400)
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		s := runModel(t, data)
		sum.Learned += s.Learned
		sum.Moves += s.Moves
		sum.Evictions += s.Evictions
		sum.Expired += s.Expired
		sum.Full += s.Full
		sum.StaticConflicts += s.StaticConflicts
		sum.MovesDamped += s.MovesDamped
		sum.Flushed += s.Flushed
		sum.Deleted += s.Deleted
	}
	t.Logf("operations covered: %+v", sum)
	// The sequences must exercise every rule, or the comparison proves little.
	if sum.Moves == 0 || sum.Evictions == 0 || sum.Expired == 0 || sum.Full == 0 ||
		sum.StaticConflicts == 0 || sum.Flushed == 0 || sum.Deleted == 0 || sum.MovesDamped == 0 {
		t.Fatalf("a rule was never exercised: %+v", sum)
	}
}

// FuzzModel: go test -fuzz FuzzModel ./flowtable. The first 8 bytes choose the
// hash multiplier, then every 3 bytes are one operation.
func FuzzModel(f *testing.F) {
	f.Add([]byte("\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01\x01\x00\x02\x02\x05\x00\x09\x06\x01\x00"))
	f.Add([]byte("\x35\x79\x11\x00\x00\x00\x00\x00\x00\x01\x01\x00\x02\x02\x00\x03\x02\x00\x04\x02\x00\x05\x02\x00\x06\x02\x00\x07\x02\x00\x08\x02\x00\x09\x02\x00\x0a\x02\x05\x00\x09\x00\x0b\x03\x07\x00\x09\x06\x01\x00\x08\x00\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 8+3*2000 {
			return
		}
		runModel(t, data)
	})
}
