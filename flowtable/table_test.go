package flowtable

import (
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

func mac(s string) MAC {
	m, err := ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func TestMAC(t *testing.T) {
	b := []byte{0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x99}
	m := MACFrom(b)
	if m != 0x021122334455 {
		t.Fatalf("MACFrom = %#x", uint64(m))
	}
	if got := m.String(); got != "02:11:22:33:44:55" {
		t.Fatalf("String = %q", got)
	}
	var out [6]byte
	m.Put(out[:])
	if string(out[:]) != string(b[:6]) {
		t.Fatalf("Put = %x", out)
	}
	if m.IsMulticast() || m.IsBroadcast() {
		t.Fatal("02:11:.. is unicast")
	}
	for _, s := range []string{"01:00:5e:00:00:01", "33:33:00:00:00:01", "ff:ff:ff:ff:ff:ff", "03:00:00:00:00:00"} {
		if !mac(s).IsMulticast() {
			t.Errorf("%s: IsMulticast false", s)
		}
	}
	if !Broadcast.IsBroadcast() || mac("ff:ff:ff:ff:ff:fe").IsBroadcast() {
		t.Error("IsBroadcast")
	}
	if _, err := ParseMAC("00:11:22:33:44:55:66:77"); err == nil {
		t.Error("ParseMAC accepted an EUI-64")
	}
	if _, err := ParseMAC("nonsense"); err == nil {
		t.Error("ParseMAC accepted nonsense")
	}
	if mac("aa-bb-cc-dd-ee-ff") != 0xaabbccddeeff {
		t.Error("ParseMAC dash form")
	}
}

// TestClock checks the clock without comparing it with the wall clock (the
// machine may stall the test for seconds anywhere): the conversion from
// elapsed time is checked on chosen durations, the advancing rule on chosen
// seconds, and Tick only for what holds whatever the scheduling.
func TestClock(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want uint32
	}{{0, 1}, {999 * time.Millisecond, 1}, {time.Second, 2}, {90*time.Second + 1, 91}, {(1<<32 - 2) * time.Second, 1<<32 - 1}} {
		if got := seconds(c.d); got != c.want {
			t.Errorf("seconds(%v) = %d, want %d", c.d, got, c.want)
		}
	}
	var z Clock
	if z.Now() != 0 {
		t.Fatal("zero clock not at 0")
	}
	for _, step := range []struct{ to, want uint32 }{{5, 5}, {5, 5}, {3, 5}, {6, 6}, {1000, 1000}, {999, 1000}} {
		if got := z.tickTo(step.to); got != step.want || z.Now() != step.want {
			t.Fatalf("tickTo(%d) = %d, Now %d; want %d (never backwards)", step.to, got, z.Now(), step.want)
		}
	}
	// Concurrent ticks to interleaved seconds never move it backwards, and it
	// ends at the largest.
	c := &Clock{}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := uint32(0)
			for i := uint32(0); i < 1000; i++ {
				n := c.tickTo(1 + i*4 + uint32(g))
				if int32(n-last) < 0 {
					t.Errorf("clock went back: %d after %d", n, last)
					return
				}
				last = n
			}
		}()
	}
	wg.Wait()
	if n := c.Now(); n != 1+999*4+3 {
		t.Fatalf("clock at %d after concurrent ticks, want %d", n, 1+999*4+3)
	}
	// The real Tick: at least 1 once ticked, and monotonic.
	r := NewClock()
	prev := r.Now()
	if prev < 1 {
		t.Fatalf("NewClock().Now() = %d, want >= 1", prev)
	}
	for i := 0; i < 100; i++ {
		if n := r.Tick(); int32(n-prev) < 0 || n != r.Now() {
			t.Fatalf("Tick = %d after %d, Now %d", n, prev, r.Now())
		}
		prev = r.Now()
	}
}

func TestConfig(t *testing.T) {
	for _, c := range []Config{{MaxEntries: -1}, {MaxEntries: MaxMaxEntries + 1}, {MaxAge: -time.Second}, {EvictIdle: -1}} {
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", c)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	tb := New(Config{})
	if tb.Cap() != DefaultMaxEntries || tb.maxAge != 300 || tb.evictIdle != 60 {
		t.Fatalf("defaults: cap %d maxAge %d evictIdle %d", tb.Cap(), tb.maxAge, tb.evictIdle)
	}
	if len(tb.slots) != 2*DefaultMaxEntries {
		t.Fatalf("slots %d", len(tb.slots))
	}
	tb = New(Config{MaxEntries: 1, MaxAge: 1500 * time.Millisecond, EvictIdle: time.Hour})
	if tb.maxAge != 2 || tb.evictIdle != 2 || len(tb.slots) != EvictWindow {
		t.Fatalf("small: maxAge %d evictIdle %d slots %d", tb.maxAge, tb.evictIdle, len(tb.slots))
	}
}

func TestLearnLookup(t *testing.T) {
	tb := New(Config{})
	a, b := mac("02:00:00:00:00:0a"), mac("02:00:00:00:00:0b")
	if _, ok := tb.Lookup(a); ok {
		t.Fatal("empty table found a MAC")
	}
	if r := tb.Learn(a, 1, 10); r != LearnAdded {
		t.Fatalf("learn a: %v", r)
	}
	if r := tb.Learn(b, 2, 10); r != LearnAdded {
		t.Fatalf("learn b: %v", r)
	}
	if d, ok := tb.Lookup(a); !ok || d != 1 {
		t.Fatalf("lookup a = %d %v", d, ok)
	}
	if d, ok := tb.Lookup(b); !ok || d != 2 {
		t.Fatalf("lookup b = %d %v", d, ok)
	}
	// The all-zero MAC is unicast and works as a key too.
	if r := tb.Learn(0, 7, 10); r != LearnAdded {
		t.Fatalf("learn 0: %v", r)
	}
	if d, ok := tb.Lookup(0); !ok || d != 7 {
		t.Fatalf("lookup 0 = %d %v", d, ok)
	}
	if s := tb.Stats(); s.Learned != 3 || s.Entries != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestMulticastNeverLearned(t *testing.T) {
	tb := New(Config{})
	for _, m := range []MAC{Broadcast, mac("01:00:5e:00:00:fb"), mac("33:33:00:00:00:01"), mac("01:80:c2:00:00:00")} {
		if r := tb.Learn(m, 1, 1); r != LearnMulticast {
			t.Errorf("Learn(%s) = %v, want multicast", m, r)
		}
		if _, ok := tb.Lookup(m); ok {
			t.Errorf("%s was learned", m)
		}
		if err := tb.AddStatic(m, 1); !errors.Is(err, ErrMulticast) {
			t.Errorf("AddStatic(%s) = %v", m, err)
		}
	}
	if tb.Len() != 0 || tb.Stats().Learned != 0 {
		t.Fatalf("len %d stats %+v", tb.Len(), tb.Stats())
	}
}

func TestBridgesIsolated(t *testing.T) {
	vni := map[uint32]*Table{0: New(Config{}), 5000: New(Config{})}
	m := mac("02:aa:00:00:00:01")
	vni[0].Learn(m, 3, 1)
	if _, ok := vni[5000].Lookup(m); ok {
		t.Fatal("MAC learned in VNI 0 visible in VNI 5000")
	}
	vni[5000].Learn(m, 9, 1)
	if d, _ := vni[0].Lookup(m); d != 3 {
		t.Fatalf("VNI 0 dest %d, want 3", d)
	}
	if d, _ := vni[5000].Lookup(m); d != 9 {
		t.Fatalf("VNI 5000 dest %d, want 9", d)
	}
	vni[0].Delete(m)
	if d, ok := vni[5000].Lookup(m); !ok || d != 9 {
		t.Fatal("delete in VNI 0 removed VNI 5000's entry")
	}
}

func TestSameSecondLearnWritesNothing(t *testing.T) {
	tb := New(Config{})
	m := mac("02:00:00:00:00:01")
	tb.Learn(m, 4, 100)
	i, k0, v0, ok := tb.locate(uint64(m) | usedBit)
	if !ok {
		t.Fatal("not found")
	}
	for n := 0; n < 10; n++ {
		if r := tb.Learn(m, 4, 100); r != LearnUnchanged {
			t.Fatalf("same second: %v", r)
		}
	}
	if k, v := tb.slots[i].key.Load(), tb.slots[i].val.Load(); k != k0 || v != v0 {
		t.Fatalf("slot written: key %#x→%#x val %#x→%#x", k0, k, v0, v)
	}
	if r := tb.Learn(m, 4, 101); r != LearnRefreshed {
		t.Fatalf("next second: %v", r)
	}
	if k := tb.slots[i].key.Load(); k != k0 {
		t.Fatal("refresh changed the key word")
	}
	if v := tb.slots[i].val.Load(); v != 4|101<<32 {
		t.Fatalf("refresh val %#x", v)
	}
	if r := tb.Learn(m, 4, 101); r != LearnUnchanged {
		t.Fatalf("again in second 101: %v", r)
	}
	if s := tb.Stats(); s.Learned != 1 || s.Moves != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestAging(t *testing.T) {
	tb := New(Config{MaxAge: 300 * time.Second})
	a, b, c := mac("02:00:00:00:00:0a"), mac("02:00:00:00:00:0b"), mac("02:00:00:00:00:0c")
	tb.Learn(a, 1, 100)
	tb.Learn(b, 2, 100)
	tb.Learn(b, 2, 350) // b refreshed
	tb.Learn(c, 3, 399)
	if _, ok := tb.Lookup(a); !ok {
		t.Fatal("a absent at age 299")
	}
	if n := tb.Expire(399); n != 0 {
		t.Fatalf("Expire(399) removed %d", n)
	}
	// At 400 a is 300 s old: absent for Lookup at once, before Expire runs.
	tb.Learn(c, 3, 400)
	if _, ok := tb.Lookup(a); ok {
		t.Fatal("aged entry still visible to Lookup")
	}
	if tb.Len() != 3 {
		t.Fatalf("len %d: aged entry should still occupy its slot until Expire", tb.Len())
	}
	if es := tb.Entries(400); len(es) != 2 || es[0].MAC != b || es[1].MAC != c {
		t.Fatalf("entries %+v", es)
	}
	if n := tb.Expire(400); n != 1 {
		t.Fatalf("Expire(400) removed %d, want 1", n)
	}
	if _, ok := tb.Lookup(b); !ok {
		t.Fatal("refreshed b expired")
	}
	if n := tb.Expire(650); n != 1 {
		t.Fatalf("Expire(650) removed %d, want 1 (b)", n)
	}
	if n := tb.Expire(10000); n != 1 {
		t.Fatalf("Expire(10000) removed %d, want 1 (c)", n)
	}
	if s := tb.Stats(); s.Expired != 3 || s.Entries != 0 {
		t.Fatalf("stats %+v", s)
	}
	// An aged entry still in place is revived by learning on the same Dest.
	tb.Learn(a, 1, 20000)
	tb.Learn(b, 1, 20400)
	if _, ok := tb.Lookup(a); ok {
		t.Fatal("a visible at age 400")
	}
	if r := tb.Learn(a, 1, 20400); r != LearnRefreshed {
		t.Fatalf("revive: %v", r)
	}
	if d, ok := tb.Lookup(a); !ok || d != 1 {
		t.Fatal("revived entry not visible")
	}
}

func TestStatic(t *testing.T) {
	tb := New(Config{MaxAge: 10 * time.Second})
	m := mac("02:00:00:00:00:5a")
	if err := tb.AddStatic(m, 7); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if r := tb.Learn(m, 8, 5); r != LearnStatic {
			t.Fatalf("learn over static: %v", r)
		}
	}
	if r := tb.Learn(m, 7, 5); r != LearnUnchanged {
		t.Fatalf("learn static on its own dest: %v", r)
	}
	if d, _ := tb.Lookup(m); d != 7 {
		t.Fatalf("static moved to %d", d)
	}
	if s := tb.Stats(); s.StaticConflicts != 3 || s.Moves != 0 {
		t.Fatalf("stats %+v", s)
	}
	tb.Learn(mac("02:00:00:00:00:01"), 1, 1_000_000)
	if n := tb.Expire(1_000_000); n != 0 {
		t.Fatalf("Expire removed %d (static must not age)", n)
	}
	if d, ok := tb.Lookup(m); !ok || d != 7 {
		t.Fatal("static aged")
	}
	es := tb.Entries(1_000_000)
	if len(es) != 2 || !es[1].Static || es[1].MAC != m || es[0].Static {
		t.Fatalf("entries %+v", es)
	}
	// A dynamic entry turned static.
	d := mac("02:00:00:00:00:01")
	if err := tb.AddStatic(d, 3); err != nil {
		t.Fatal(err)
	}
	if r := tb.Learn(d, 1, 1_000_001); r != LearnStatic {
		t.Fatalf("learn: %v", r)
	}
	if tb.Len() != 2 {
		t.Fatalf("len %d", tb.Len())
	}
	if !tb.Delete(m) || tb.Delete(m) {
		t.Fatal("Delete of static")
	}
	if _, ok := tb.Lookup(m); ok {
		t.Fatal("deleted static found")
	}
}

func TestMove(t *testing.T) {
	tb := New(Config{})
	m := mac("02:00:00:00:00:01")
	tb.Learn(m, 1, 1)
	if r := tb.Learn(m, 2, 1); r != LearnMoved {
		t.Fatalf("move: %v", r)
	}
	if d, _ := tb.Lookup(m); d != 2 {
		t.Fatalf("dest %d after move", d)
	}
	if r := tb.Learn(m, 1, 2); r != LearnMoved {
		t.Fatalf("move back: %v", r)
	}
	if s := tb.Stats(); s.Moves != 2 || s.Learned != 1 || s.Entries != 1 {
		t.Fatalf("stats %+v", s)
	}
}

func TestDeleteFlush(t *testing.T) {
	tb := New(Config{MaxEntries: 64})
	for i := 0; i < 60; i++ {
		tb.Learn(MAC(0x020000000000+i), Dest(i%3), 1)
	}
	if err := tb.AddStatic(0x02ffffffff00, 1); err != nil {
		t.Fatal(err)
	}
	if n := tb.Flush(1); n != 21 {
		t.Fatalf("Flush(1) removed %d, want 20 dynamic + 1 static", n)
	}
	for i := 0; i < 60; i++ {
		d, ok := tb.Lookup(MAC(0x020000000000 + i))
		if ok != (i%3 != 1) || (ok && d != Dest(i%3)) {
			t.Fatalf("after flush: mac %d → %d %v", i, d, ok)
		}
	}
	if !tb.Delete(0x020000000000) || tb.Delete(0x020000000000) || tb.Delete(0x020000000001) {
		t.Fatal("Delete results")
	}
	if s := tb.Stats(); s.Entries != 39 || s.Flushed != 21 || s.Deleted != 1 {
		t.Fatalf("stats %+v", s)
	}
	checkStructure(t, tb)
}

func TestEntriesSorted(t *testing.T) {
	tb := New(Config{MaxEntries: 128})
	r := rand.New(rand.NewPCG(1, 2))
	var want []MAC
	for i := 0; i < 100; i++ {
		m := MAC(r.Uint64()&macMask) &^ (1 << 40)
		if tb.Learn(m, Dest(i), uint32(10+i%5)) == LearnAdded {
			want = append(want, m)
		}
	}
	slices.Sort(want)
	es := tb.Entries(20)
	if len(es) != len(want) {
		t.Fatalf("%d entries, want %d", len(es), len(want))
	}
	for i, e := range es {
		if e.MAC != want[i] {
			t.Fatalf("entry %d: %s, want %s", i, e.MAC, want[i])
		}
		if e.Age < 6*time.Second || e.Age > 10*time.Second {
			t.Fatalf("entry %d age %v", i, e.Age)
		}
	}
}

// TestFullRefusesWhileHostsActive: a flood of new MACs into a full table never
// pushes out hosts seen within EvictIdle, and memory does not grow.
func TestFullRefusesWhileHostsActive(t *testing.T) {
	tb := New(Config{MaxEntries: 32, MaxAge: 300 * time.Second, EvictIdle: 30 * time.Second})
	nslots := len(tb.slots)
	hosts := make([]MAC, 32)
	for i := range hosts {
		hosts[i] = MAC(0x02aa00000000 + i)
		if r := tb.Learn(hosts[i], Dest(i), 100); r != LearnAdded {
			t.Fatalf("host %d: %v", i, r)
		}
	}
	now := uint32(100)
	full, added := 0, 0
	for sec := 0; sec < 100; sec++ {
		now++
		// Hosts talk every 10 s; the flood never stops.
		for i, h := range hosts {
			if (sec+i)%10 == 0 {
				tb.Learn(h, Dest(i), now)
			}
		}
		for j := 0; j < 200; j++ {
			switch tb.Learn(MAC(0x02bb00000000+sec*1000+j), 99, now) {
			case LearnFull:
				full++
			case LearnAdded:
				added++
			}
		}
		for i, h := range hosts {
			if d, ok := tb.Lookup(h); !ok || d != Dest(i) {
				t.Fatalf("second %d: active host %d evicted", sec, i)
			}
		}
	}
	if added != 0 || full != 20000 {
		t.Fatalf("added %d full %d: only active hosts in table, the flood must be refused", added, full)
	}
	if s := tb.Stats(); s.Full != 20000 || s.Evictions != 0 || s.Entries != 32 {
		t.Fatalf("stats %+v", s)
	}
	if len(tb.slots) != nslots {
		t.Fatal("table grew")
	}
}

// TestFullEvictsIdle: idle entries make room for new MACs; flood entries are
// themselves evicted once idle, so the table keeps recent MACs.
func TestFullEvictsIdle(t *testing.T) {
	tb := New(Config{MaxEntries: 32, MaxAge: 300 * time.Second, EvictIdle: 30 * time.Second})
	for i := 0; i < 32; i++ {
		tb.Learn(MAC(0x02aa00000000+i), 1, 100)
	}
	// One active host, refreshed every second.
	active := MAC(0x02aa00000000)
	if r := tb.Learn(0x02cc00000000, 2, 129); r != LearnFull {
		t.Fatalf("at idle 29: %v", r)
	}
	added := 0
	for sec := uint32(130); sec < 140; sec++ {
		tb.Learn(active, 1, sec)
		for j := 0; j < 64; j++ {
			if tb.Learn(MAC(0x02cc00000000+uint64(sec)<<8+uint64(j)), 2, sec) == LearnAdded {
				added++
			}
		}
		if d, ok := tb.Lookup(active); !ok || d != 1 {
			t.Fatalf("active host evicted at %d", sec)
		}
	}
	s := tb.Stats()
	if added == 0 || s.Evictions != uint64(added) || s.Entries != 32 {
		t.Fatalf("added %d stats %+v", added, s)
	}
	// Each eviction took an entry idle >= 30 s: only the 31 idle hosts qualify.
	if added > 31 {
		t.Fatalf("added %d > 31 idle entries", added)
	}
	checkStructure(t, tb)
	// AddStatic evicts regardless of idleness when full.
	if err := tb.AddStatic(0x02dd00000000, 5); err != nil {
		t.Fatalf("AddStatic on a full table: %v", err)
	}
	if d, ok := tb.Lookup(0x02dd00000000); !ok || d != 5 || tb.Len() != 32 {
		t.Fatal("static not added")
	}
}

func TestAddStaticFullOfStatics(t *testing.T) {
	tb := New(Config{MaxEntries: 4})
	for i := 0; i < 4; i++ {
		if err := tb.AddStatic(MAC(0x020000000000+i), 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := tb.AddStatic(0x02ffffffffff, 1); !errors.Is(err, ErrFull) {
		t.Fatalf("err %v, want ErrFull", err)
	}
	if r := tb.Learn(0x02fffffffffe, 1, 1000); r != LearnFull {
		t.Fatalf("learn into a table of statics: %v", r)
	}
}

func TestAllocs(t *testing.T) {
	tb := New(Config{})
	for i := 0; i < 1000; i++ {
		tb.Learn(MAC(0x020000000000+i), Dest(i), 1)
	}
	m := MAC(0x020000000000 + 500)
	now := uint32(1)
	cases := map[string]func(){
		"Lookup hit":          func() { tb.Lookup(m) },
		"Lookup miss":         func() { tb.Lookup(0x02ffff000000) },
		"Learn known":         func() { tb.Learn(m, 500, 1) },
		"Learn refresh":       func() { now++; tb.Learn(m, 500, now) },
		"Learn multicast":     func() { tb.Learn(Broadcast, 1, now) },
		"Learn move":          func() { tb.Learn(m, Dest(now&1), now) },
		"Learn new + delete":  func() { tb.Learn(0x02eeeeeeeeee, 1, now); tb.Delete(0x02eeeeeeeeee) },
		"Clock Tick and Now":  func() { var c Clock; c.Tick(); c.Now() },
		"MACFrom+IsMulticast": func() { _ = MACFrom([]byte{2, 0, 0, 0, 0, 1}).IsMulticast() },
	}
	for name, f := range cases {
		if a := testing.AllocsPerRun(1000, f); a != 0 {
			t.Errorf("%s: %v allocs per run", name, a)
		}
	}
}

// checkStructure verifies the table's invariants when no writer is active:
// the entry count matches the used slots, keys are unique, every entry is
// reachable from its home slot without crossing an empty slot, and no slot is
// mid-write.
func checkStructure(t *testing.T, tb *Table) {
	t.Helper()
	seen := map[uint64]bool{}
	used := 0
	for i := range tb.slots {
		k := tb.slots[i].key.Load()
		if k&verOne != 0 {
			t.Fatalf("slot %d left with an odd version", i)
		}
		if k&usedBit == 0 {
			if k&flagMask != 0 {
				t.Fatalf("empty slot %d has key bits %#x", i, k)
			}
			continue
		}
		used++
		m := k & macMask
		if seen[m] {
			t.Fatalf("MAC %s twice", MAC(m))
		}
		seen[m] = true
		for j := tb.home(m); j != uint64(i); j = (j + 1) & tb.mask {
			if tb.slots[j].key.Load()&usedBit == 0 {
				t.Fatalf("MAC %s at slot %d unreachable: empty slot %d after home %d", MAC(m), i, j, tb.home(m))
			}
		}
		if _, _, _, ok := tb.locate(m | usedBit); !ok {
			t.Fatalf("MAC %s not found by locate", MAC(m))
		}
	}
	if used != tb.Len() {
		t.Fatalf("%d used slots, Len %d", used, tb.Len())
	}
	if tb.moveSeq.Load()&1 != 0 {
		t.Fatal("moveSeq left odd")
	}
}
