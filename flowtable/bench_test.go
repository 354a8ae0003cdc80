package flowtable

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// Benchmarks: go test -run '^$' -bench . -benchmem -cpu 1,2 ./flowtable
// Peers measured in the same run: a plain Go map (not safe for concurrent
// writers: a lower bound, not a real alternative) and a map under a
// sync.RWMutex (the simple concurrent alternative).

type benchSet struct {
	tb   *Table
	keys []MAC // the MACs in the table, random order; len is a power of two
	gm   map[MAC]Dest
}

var (
	benchMu   sync.Mutex
	benchSets = map[int]*benchSet{}
)

// randomMACs returns n distinct random unicast MACs (seeded: the same in every run).
func randomMACs(n int, seed uint64) []MAC {
	r := rand.New(rand.NewPCG(seed, 99))
	seen := make(map[MAC]struct{}, n)
	out := make([]MAC, 0, n)
	for len(out) < n {
		m := MAC(r.Uint64()&macMask) &^ (1 << 40)
		if _, dup := seen[m]; !dup {
			seen[m] = struct{}{}
			out = append(out, m)
		}
	}
	return out
}

// set returns a full table of n random MACs (built once per size).
func set(b *testing.B, n int) *benchSet {
	return setHuge(b, n, true)
}

// setHuge: huge=false builds the table without transparent huge pages (peer).
func setHuge(b *testing.B, n int, huge bool) *benchSet {
	benchMu.Lock()
	defer benchMu.Unlock()
	id := n
	if !huge {
		id = -n
	}
	if s := benchSets[id]; s != nil {
		return s
	}
	hugePages = huge
	tb := New(Config{MaxEntries: n})
	hugePages = true
	s := &benchSet{tb: tb, keys: randomMACs(n, uint64(n))}
	for i, m := range s.keys {
		if r := s.tb.Learn(m, Dest(i), 1); r != LearnAdded {
			b.Fatalf("fill: %v", r)
		}
	}
	benchSets[id] = s
	return s
}

func (s *benchSet) goMap() map[MAC]Dest {
	benchMu.Lock()
	defer benchMu.Unlock()
	if s.gm == nil {
		s.gm = make(map[MAC]Dest, len(s.keys))
		for i, m := range s.keys {
			s.gm[m] = Dest(i)
		}
	}
	return s.gm
}

var sizes = []struct {
	name string
	n    int
}{{"64k", 1 << 16}, {"1M", 1 << 20}}

var sink atomic.Uint32

func BenchmarkLookup(b *testing.B) {
	for _, sz := range sizes {
		b.Run(sz.name, func(b *testing.B) {
			s := set(b, sz.n)
			tb, keys, mask := s.tb, s.keys, len(s.keys)-1
			var acc Dest
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				d, _ := tb.Lookup(keys[i&mask])
				acc += d
			}
			sink.Add(uint32(acc))
		})
	}
}

// BenchmarkLookupNoHugePages is the 1M lookup with the slots on 4 KiB pages.
func BenchmarkLookupNoHugePages(b *testing.B) {
	s := setHuge(b, 1<<20, false)
	tb, keys, mask := s.tb, s.keys, len(s.keys)-1
	var acc Dest
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, _ := tb.Lookup(keys[i&mask])
		acc += d
	}
	sink.Add(uint32(acc))
}

func BenchmarkLookupMiss(b *testing.B) {
	s := set(b, 1<<16)
	tb := s.tb
	miss := randomMACs(1<<16, 12345)
	var acc Dest
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, _ := tb.Lookup(miss[i&(1<<16-1)])
		acc += d
	}
	sink.Add(uint32(acc))
}

// BenchmarkGoMapLookup is the peer: a plain map[MAC]Dest with the same keys.
func BenchmarkGoMapLookup(b *testing.B) {
	for _, sz := range sizes {
		b.Run(sz.name, func(b *testing.B) {
			s := set(b, sz.n)
			gm, keys, mask := s.goMap(), s.keys, len(s.keys)-1
			var acc Dest
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				acc += gm[keys[i&mask]]
			}
			sink.Add(uint32(acc))
		})
	}
}

// BenchmarkLookupParallel: run with -cpu 1,2 to see scaling with cores.
func BenchmarkLookupParallel(b *testing.B) {
	for _, sz := range sizes {
		b.Run(sz.name, func(b *testing.B) {
			s := set(b, sz.n)
			tb, keys, mask := s.tb, s.keys, len(s.keys)-1
			var seed atomic.Uint64
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := int(seed.Add(1) * 7919)
				var acc Dest
				for pb.Next() {
					d, _ := tb.Lookup(keys[i&mask])
					acc += d
					i++
				}
				sink.Add(uint32(acc))
			})
		})
	}
}

// BenchmarkRWMutexMapLookupParallel is the concurrent peer: map under RLock.
func BenchmarkRWMutexMapLookupParallel(b *testing.B) {
	s := set(b, 1<<16)
	gm, keys, mask := s.goMap(), s.keys, len(s.keys)-1
	var mu sync.RWMutex
	var seed atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(1) * 7919)
		var acc Dest
		for pb.Next() {
			mu.RLock()
			acc += gm[keys[i&mask]]
			mu.RUnlock()
			i++
		}
		sink.Add(uint32(acc))
	})
}

// BenchmarkLearnKnown: source MAC already on the same Dest, same second (loads only).
func BenchmarkLearnKnown(b *testing.B) {
	s := set(b, 1<<16)
	tb, keys, mask := s.tb, s.keys, len(s.keys)-1
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i & mask
		if tb.Learn(keys[j], Dest(j), 1) != LearnUnchanged {
			b.Fatal("unexpected learn result")
		}
	}
}

// BenchmarkLearnKnownParallel: every poller learning known MACs at once.
func BenchmarkLearnKnownParallel(b *testing.B) {
	s := set(b, 1<<16)
	tb, keys, mask := s.tb, s.keys, len(s.keys)-1
	var seed atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(1) * 7919)
		for pb.Next() {
			j := i & mask
			tb.Learn(keys[j], Dest(j), 1)
			i++
		}
	})
}

// BenchmarkLearnRefresh: a known MAC in a new second each time (one CAS).
func BenchmarkLearnRefresh(b *testing.B) {
	tb := New(Config{})
	m := MAC(0x020000000001)
	tb.Learn(m, 1, 1)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tb.Learn(m, 1, uint32(i+2))
	}
}

// BenchmarkLearnNewDelete: the slow path, a new MAC (mutex, insert) and its removal.
func BenchmarkLearnNewDelete(b *testing.B) {
	tb := New(Config{})
	keys := randomMACs(4096, 5)
	for _, m := range keys[:2048] {
		tb.Learn(m, 1, 1)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m := keys[2048+i&2047]
		tb.Learn(m, 1, 1)
		tb.Delete(m)
	}
}

func BenchmarkClockTick(b *testing.B) {
	c := NewClock()
	for i := 0; i < b.N; i++ {
		c.Tick()
	}
}

func BenchmarkExpire64k(b *testing.B) {
	s := set(b, 1<<16)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if n := s.tb.Expire(2); n != 0 {
			b.Fatal(fmt.Sprint("expired ", n))
		}
	}
}

// BenchmarkLearnNewIntoFullParallel: a MAC flood into a full table of active
// hosts (every entry seen this second, none evictable): each Learn is a
// refusal (LearnFull). Run with -cpu 1,2: refusals take no lock, so they do
// not serialize the pollers.
func BenchmarkLearnNewIntoFullParallel(b *testing.B) {
	tb := New(Config{MaxEntries: 1 << 16})
	for i, m := range randomMACs(1<<16, 21) {
		if tb.Learn(m, Dest(i), 1) != LearnAdded {
			b.Fatal("fill")
		}
	}
	flood := randomMACs(1<<16, 22)
	mask := len(flood) - 1
	var seed atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seed.Add(1) * 7919)
		for pb.Next() {
			if tb.Learn(flood[i&mask], 1, 1) != LearnFull {
				b.Error("flood MAC not refused")
				return
			}
			i++
		}
	})
}

// BenchmarkLearnFlapParallel: one MAC claimed alternately from two Dests by
// every poller (a loop, or two hosts with one MAC): after FlapMoves moves
// the entry is held and each claim is a lock-free refusal (LearnDamped).
func BenchmarkLearnFlapParallel(b *testing.B) {
	tb := New(Config{})
	m := MAC(0x0200000000f1)
	tb.Learn(m, 1, 1)
	var seed atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := seed.Add(1)
		for pb.Next() {
			tb.Learn(m, Dest(1+i&1), 1)
			i++
		}
	})
}
