package flowtable

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestPredictMatchesLearn: before every Learn of a random sequence (few MACs,
// few Dests, a small table, statics, time jumping over ages, evictions and
// hold-downs), Predict names the result Learn then returns and the Dest the
// MAC had, and changes nothing: the counters and entries stay as they were.
func TestPredictMatchesLearn(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		tb := New(Config{MaxEntries: 8, MaxAge: 20 * time.Second, EvictIdle: 5 * time.Second,
			FlapMoves: 2, FlapWindow: 3 * time.Second, FlapHold: 4 * time.Second})
		macs := make([]MAC, 12)
		for i := range macs {
			macs[i] = MAC(0x020000000000 | uint64(i+1))
		}
		if err := tb.AddStatic(macs[0], 7); err != nil {
			t.Fatal(err)
		}
		now := uint32(100)
		seen := map[LearnResult]int{}
		for step := 0; step < 3000; step++ {
			if rng.IntN(8) == 0 {
				now += uint32(rng.IntN(8))
			}
			m, d := macs[rng.IntN(len(macs))], Dest(rng.IntN(3)+1)
			if rng.IntN(50) == 0 {
				m = Broadcast
			}
			before, entries := tb.Stats(), tb.Entries(now)
			p := tb.Predict(m, d, now)
			if after := tb.Stats(); after != before {
				t.Fatalf("seed %d step %d: Predict changed the counters: %+v -> %+v", seed, step, before, after)
			}
			if got := tb.Entries(now); !equalEntries(got, entries) {
				t.Fatalf("seed %d step %d: Predict changed the entries", seed, step)
			}
			prev, had := tb.Lookup(m)
			r := tb.Learn(m, d, now)
			seen[r]++
			if p.Result != r {
				t.Fatalf("seed %d step %d: Predict(%v, %d) = %v, Learn = %v", seed, step, m, d, p.Result, r)
			}
			if had && !p.Aged && p.Prev != prev {
				t.Fatalf("seed %d step %d: Predict's Prev %d, Lookup had %d", seed, step, p.Prev, prev)
			}
			if p.Static != (m == macs[0]) && r != LearnMulticast {
				t.Fatalf("seed %d step %d: Static %v for %v", seed, step, p.Static, m)
			}
		}
		for _, r := range []LearnResult{LearnUnchanged, LearnRefreshed, LearnAdded, LearnMoved, LearnStatic, LearnMulticast, LearnFull, LearnDamped} {
			if seen[r] == 0 && seed == 20 {
				t.Errorf("the sequence never produced %v: the test does not cover it", r)
			}
		}
		if tb.Stats().Evictions == 0 && seed == 20 {
			t.Errorf("no eviction happened: the test does not cover it")
		}
	}
}

func equalEntries(a, b []Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
