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
	t.Run("small", func(t *testing.T) { stress(t, 64, 160, 500) })
	t.Run("tiny", func(t *testing.T) { stress(t, 4, 12, 20) })
}

// stress: learners advance the clock every tickEvery operations (fast ticks
// make entries evictable sooner, so slots are rekeyed more often).
func stress(t *testing.T, maxEntries, nmacs, tickEvery int) {
	ops := 200_000
	if testing.Short() {
		ops = 20_000
	}
	tb := New(Config{MaxEntries: maxEntries, MaxAge: 4 * time.Second, EvictIdle: time.Second})
	macs := make([]MAC, nmacs)
	index := map[MAC]int{}
	r0 := rand.New(rand.NewPCG(1, 1))
	for i := range macs {
		for {
			m := MAC(r0.Uint64()&macMask) &^ (1 << 40)
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
	var hits, misses, torn atomic.Uint64
	var results [LearnFull + 1]atomic.Uint64

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
				_ = tb.AddStatic(macs[i], dest(i, r.Uint64()))
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
	// Readers.
	for g := 0; g < 2; g++ {
		rwg.Add(1)
		go func(seed uint64) {
			defer rwg.Done()
			r := rand.New(rand.NewPCG(seed, 4))
			for !stop.Load() {
				i := r.IntN(nmacs)
				d, ok := tb.Lookup(macs[i])
				if !ok {
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
	if torn.Load() != 0 {
		t.Fatalf("%d torn reads", torn.Load())
	}
	if hits.Load() == 0 || results[LearnMoved].Load() == 0 || results[LearnRefreshed].Load() == 0 ||
		results[LearnAdded].Load() == 0 || tb.Stats().Evictions == 0 {
		t.Fatalf("the stress did not exercise the table: hits %d, results %v, stats %+v", hits.Load(), rs, tb.Stats())
	}
	checkStructure(t, tb)
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
