package flowtable

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentNoTornReads hammers a small table (constant evictions,
// backward shifts, moves, refreshes, statics, flushes, expiry) from several
// goroutines while readers check that every Dest they see is one that was
// associated with the MAC they looked up: MAC i is only ever given Dests
// i<<4|k, so a Dest from another entry (a torn read) is detected. Run it with
// -race as well (make test does not; go test -race ./flowtable does).
func TestConcurrentNoTornReads(t *testing.T) {
	// small: room for 64 of 160 MACs; tiny: 4 of 12 MACs in 16 slots, so the
	// same slots are rekeyed all the time.
	t.Run("small", func(t *testing.T) { stress(t, 64, 160, 500, 0, 0) })
	t.Run("tiny", func(t *testing.T) { stress(t, 4, 12, 20, 0, 0) })
	// clustered: every MAC hashes to slot 0 or 1, so all entries form one
	// chain and deletes shift entries (the pinned one too) all the time.
	// Three owned MACs check for false misses (see stress).
	t.Run("clustered", func(t *testing.T) { stress(t, 8, 12, 20, 2, 3) })
}

// stress: learners advance the clock every tickEvery operations (fast ticks
// make entries evictable sooner, so slots are rekeyed more often); homes > 0
// restricts the MACs to those whose home slot is below homes.
func stress(t *testing.T, maxEntries, nmacs, tickEvery int, homes uint64, owned int) {
	ops := 200_000
	if testing.Short() {
		ops = 20_000
	}
	tb := New(Config{MaxEntries: maxEntries, MaxAge: 4 * time.Second, EvictIdle: time.Second})
	// macs[nmacs] is pinned: a static entry no writer touches, so Lookup must
	// always find it, however entries around it shift (false-miss check).
	// macs[nmacs+1:] are owned by one goroutine that adds them as static
	// entries and deletes them; while one is known present for a whole Lookup,
	// Lookup must find it (false-miss check for entries shifted under a reader).
	macs := make([]MAC, nmacs+1+owned)
	index := map[MAC]int{}
	r0 := rand.New(rand.NewPCG(1, 1))
	for i := range macs {
		for {
			m := MAC(r0.Uint64()&macMask) &^ (1 << 40)
			if homes > 0 && tb.home(uint64(m)) >= homes {
				continue
			}
			if _, dup := index[m]; !dup {
				macs[i], index[m] = m, i
				break
			}
		}
	}
	dest := func(i int, k uint64) Dest { return Dest(i<<4 | int(k&15)) }
	var now atomic.Uint32
	now.Store(1)
	var stop atomic.Bool
	var lwg, cwg, rwg sync.WaitGroup
	if err := tb.AddStatic(macs[nmacs], dest(nmacs, 0)); err != nil {
		t.Fatal(err)
	}
	var hits, misses, torn, pinnedMisses, ownedMisses atomic.Uint64
	state := make([]atomic.Uint64, owned) // odd: the owned MAC is present (AddStatic done, Delete not begun)
	var results [len(learnNames)]atomic.Uint64

	// Learners.
	for g := 0; g < 2; g++ {
		lwg.Add(1)
		go func(seed uint64) {
			defer lwg.Done()
			r := rand.New(rand.NewPCG(seed, 2))
			for n := 0; n < ops; n++ {
				i := r.IntN(nmacs)
				// Mostly a stable Dest per MAC (refresh path), sometimes another (moves).
				k := uint64(i)
				if r.IntN(8) == 0 {
					k = r.Uint64()
				}
				results[tb.Learn(macs[i], dest(i, k), now.Load())].Add(1)
				if n%tickEvery == 0 {
					now.Add(1)
				}
			}
		}(uint64(g))
	}
	// Control path: statics, deletes, flushes, expiry, listings.
	cwg.Add(1)
	go func() {
		defer cwg.Done()
		r := rand.New(rand.NewPCG(3, 3))
		for !stop.Load() {
			i := r.IntN(nmacs)
			switch n := r.IntN(20); {
			case n == 0:
				// At most half the table static (this goroutine is the only
				// one adding statics among macs[:nmacs]): a table full of
				// statics refuses every learner without locking, and they
				// could finish while this goroutine waits to run again.
				if statics(tb, now.Load()) < maxEntries/2 {
					_ = tb.AddStatic(macs[i], dest(i, r.Uint64()))
				}
			case n < 10:
				tb.Delete(macs[i])
			case n < 12:
				tb.Flush(dest(i, uint64(i)))
			case n < 16:
				tb.Expire(now.Load())
			default:
				for _, e := range tb.Entries(now.Load()) {
					if j, ok := index[e.MAC]; !ok || int(e.Dest>>4) != j {
						torn.Add(1)
					}
				}
			}
		}
	}()
	// Owner of the owned MACs.
	cwg.Add(1)
	go func() {
		defer cwg.Done()
		r := rand.New(rand.NewPCG(5, 5))
		for owned > 0 && !stop.Load() {
			j := r.IntN(owned)
			i := nmacs + 1 + j
			if state[j].Load()&1 == 1 {
				state[j].Add(1)
				tb.Delete(macs[i])
			} else if tb.AddStatic(macs[i], dest(i, 0)) == nil {
				state[j].Add(1)
			}
		}
	}()
	// Readers.
	for g := 0; g < 2; g++ {
		rwg.Add(1)
		go func(seed uint64) {
			defer rwg.Done()
			r := rand.New(rand.NewPCG(seed, 4))
			for !stop.Load() {
				i := r.IntN(len(macs))
				var s1 uint64
				if i > nmacs {
					s1 = state[i-nmacs-1].Load()
				}
				d, ok := tb.Lookup(macs[i])
				if !ok {
					if i == nmacs {
						pinnedMisses.Add(1)
					}
					if i > nmacs && s1&1 == 1 && state[i-nmacs-1].Load() == s1 {
						ownedMisses.Add(1)
					}
					misses.Add(1)
					continue
				}
				hits.Add(1)
				if int(d>>4) != i {
					torn.Add(1)
					t.Errorf("Lookup(%s) = %#x: Dest of MAC %d, never associated with MAC %d", macs[i], d, d>>4, i)
				}
			}
		}(uint64(10 + g))
	}
	// Once the learners are done, stop the control goroutine and the readers.
	lwg.Wait()
	stop.Store(true)
	cwg.Wait()
	rwg.Wait()

	var rs []string
	for i := range results {
		rs = append(rs, LearnResult(i).String()+"="+itoa(results[i].Load()))
	}
	t.Logf("lookups: %d hits, %d misses; learn results %v; stats %+v", hits.Load(), misses.Load(), rs, tb.Stats())
	// A present MAC may only be missed by a lookup that gave up (counted).
	if ownedMisses.Load() > tb.Stats().LookupGaveUp {
		t.Errorf("owned MACs present throughout a Lookup were missed %d times, more than the %d lookups that gave up",
			ownedMisses.Load(), tb.Stats().LookupGaveUp)
	}
	if pinnedMisses.Load() > tb.Stats().LookupGaveUp {
		t.Errorf("the pinned static MAC was missed %d times", pinnedMisses.Load())
	}
	if torn.Load() != 0 {
		t.Fatalf("%d torn reads", torn.Load())
	}
	if hits.Load() == 0 || results[LearnMoved].Load() == 0 || results[LearnRefreshed].Load() == 0 ||
		results[LearnAdded].Load() == 0 || tb.Stats().Evictions == 0 {
		t.Fatalf("the stress did not exercise the table: hits %d, results %v, stats %+v", hits.Load(), rs, tb.Stats())
	}
	checkStructure(t, tb)
}

func statics(tb *Table, now uint32) int {
	n := 0
	for _, e := range tb.Entries(now) {
		if e.Static {
			n++
		}
	}
	return n
}

func itoa(v uint64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}
