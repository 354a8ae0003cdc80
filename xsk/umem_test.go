package xsk

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// checkPool fails t unless every frame of u is free exactly once: the
// global stack plus the caches hold NumFrames distinct frame addresses,
// and nothing was lost. Caches must have been flushed by their owners or
// are inspected as they are.
func checkPool(t testing.TB, u *Umem) {
	t.Helper()
	if free, n, lost := u.FreeFrames(), u.NumFrames(), u.LostFrames(); free != n || lost != 0 {
		t.Fatalf("frame invariant: %d of %d frames free, %d lost", free, n, lost)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	seen := make(map[uint64]bool, u.numFrames)
	check := func(where string, addrs []uint64) {
		for _, a := range addrs {
			switch {
			case a%uint64(u.frameSize) != 0:
				t.Fatalf("%s holds %#x, not a frame start", where, a)
			case a >= uint64(u.numFrames*u.frameSize):
				t.Fatalf("%s holds %#x, outside the UMEM", where, a)
			case seen[a]:
				t.Fatalf("%s holds frame %#x a second time", where, a)
			}
			seen[a] = true
		}
	}
	check("global stack", u.free)
	for i, c := range u.caches {
		check("cache "+strconv.Itoa(i), c.stack)
	}
	if len(seen) != u.numFrames {
		t.Fatalf("%d distinct free frames, want %d", len(seen), u.numFrames)
	}
}

func newTestUmem(t testing.TB, c UmemConfig) *Umem {
	t.Helper()
	u, err := NewUmem(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

func TestUmemConfig(t *testing.T) {
	u := newTestUmem(t, UmemConfig{})
	if u.NumFrames() != 4096 || u.FrameSize() != 2048 || u.Headroom() != 0 {
		t.Fatalf("defaults: %d frames of %d bytes, headroom %d; want 4096, 2048, 0", u.NumFrames(), u.FrameSize(), u.Headroom())
	}
	if len(u.Area()) != 4096*2048 {
		t.Fatalf("Area is %d bytes, want %d", len(u.Area()), 4096*2048)
	}
	checkPool(t, u)

	u4 := newTestUmem(t, UmemConfig{NumFrames: 64, FrameSize: 4096, Headroom: 1024})
	if u4.FrameSize() != 4096 || u4.Headroom() != 1024 || len(u4.Area()) != 64*4096 {
		t.Fatalf("4096-byte frames: size %d headroom %d area %d", u4.FrameSize(), u4.Headroom(), len(u4.Area()))
	}
	// Frame and Bytes address the area.
	u4.Area()[3*4096+100] = 0xab
	if f := u4.Frame(3*4096 + 300); len(f) != 4096 || cap(f) != 4096 || f[100] != 0xab {
		t.Fatalf("Frame(3*4096+300): len %d cap %d byte %#x", len(f), cap(f), f[100])
	}
	if b := u4.Bytes(Desc{Addr: 3*4096 + 100, Len: 10}); len(b) != 10 || b[0] != 0xab {
		t.Fatalf("Bytes: len %d first %#x", len(b), b[0])
	}

	// Huge pages: used when the system has them, else normal pages; either
	// way a working UMEM.
	uh := newTestUmem(t, UmemConfig{NumFrames: 1024, HugePages: true})
	t.Logf("HugePages requested: got huge pages = %v", uh.HugePages())
	uh.Area()[len(uh.Area())-1] = 1
	checkPool(t, uh)

	bad := []struct {
		c    UmemConfig
		want string
	}{
		{UmemConfig{FrameSize: 1024}, "FrameSize 1024 not supported: use 2048 or 4096"},
		{UmemConfig{FrameSize: 3000}, "FrameSize 3000"},
		{UmemConfig{FrameSize: 8192}, "FrameSize 8192"},
		{UmemConfig{FrameSize: -1}, "FrameSize -1"},
		{UmemConfig{NumFrames: 10}, "NumFrames 10 out of range"},
		{UmemConfig{NumFrames: -5}, "NumFrames -5 out of range"},
		{UmemConfig{NumFrames: 1 << 23}, "NumFrames 8388608 out of range"},
		{UmemConfig{Headroom: -1}, "Headroom -1"},
		{UmemConfig{Headroom: 512}, "Headroom 512 leaves no room for a 1518-byte frame in a 2048-byte frame: use at most 256"},
		{UmemConfig{FrameSize: 4096, Headroom: 2400}, "use at most 2304"},
	}
	for _, b := range bad {
		u, err := NewUmem(b.c)
		if err == nil {
			u.Close()
			t.Errorf("NewUmem(%+v) accepted", b.c)
			continue
		}
		if !strings.Contains(err.Error(), b.want) || !strings.Contains(err.Error(), "UmemConfig.") {
			t.Errorf("NewUmem(%+v): %q, want it to name the field and say %q", b.c, err, b.want)
		}
	}
}

func TestCacheGetPut(t *testing.T) {
	u := newTestUmem(t, UmemConfig{NumFrames: 1024})
	c := u.NewCache()
	dst := make([]uint64, 100)
	if n := c.Get(dst); n != 100 {
		t.Fatalf("Get(100) = %d", n)
	}
	if f := u.FreeFrames(); f != 924 {
		t.Fatalf("FreeFrames after taking 100 = %d, want 924", f)
	}
	// An address inside a frame names the frame (as RX descriptors do).
	for i := range dst {
		dst[i] += uint64(i + 256)
	}
	c.PutBatch(dst[:50])
	c.Put(dst[50:]...)
	if f := u.FreeFrames(); f != 1024 {
		t.Fatalf("FreeFrames after giving all back = %d, want 1024", f)
	}
	checkPool(t, u)

	// Exhaustion: Get returns what there is, then 0; nothing is invented.
	all := make([]uint64, 2000)
	if n := c.Get(all); n != 1024 {
		t.Fatalf("Get(2000) from 1024 frames = %d", n)
	}
	if n := c.Get(all[:1]); n != 0 || u.FreeFrames() != 0 {
		t.Fatalf("Get on an empty pool = %d, FreeFrames %d", n, u.FreeFrames())
	}
	c2 := u.NewCache()
	if n := c2.Get(all[1024:1030]); n != 0 {
		t.Fatalf("another cache got %d frames from an empty pool", n)
	}
	// Put more than a cache holds: the overflow goes to the global stack.
	c2.PutBatch(all[:1024])
	if c2.Len() > 4*cacheBatch {
		t.Fatalf("cache holds %d frames, more than its capacity %d", c2.Len(), 4*cacheBatch)
	}
	if f := u.FreeFrames(); f != 1024 {
		t.Fatalf("FreeFrames = %d after a put of every frame into one cache", f)
	}
	c2.Flush()
	c.Flush()
	if c.Len() != 0 || c2.Len() != 0 || len(u.free) != 1024 {
		t.Fatalf("after Flush: caches %d, %d; global %d", c.Len(), c2.Len(), len(u.free))
	}
	checkPool(t, u)
}

// TestCacheModel drives several caches with random Get, Put (of frames got
// from any cache, as a forwarder does) and Flush, and checks after every
// step that no frame is handed out twice and that FreeFrames counts
// exactly the frames not held by the model.
func TestCacheModel(t *testing.T) {
	for _, seed := range []uint64{1, 2, 3, 42, 1234} {
		r := rand.New(rand.NewPCG(seed, seed))
		u := newTestUmem(t, UmemConfig{NumFrames: 64 * (1 + r.IntN(40))})
		caches := make([]*Cache, 2+r.IntN(4))
		for i := range caches {
			caches[i] = u.NewCache()
		}
		held := make(map[uint64]bool) // frames out of the pool
		var list []uint64
		buf := make([]uint64, 3*cacheBatch)
		for step := 0; step < 3000; step++ {
			c := caches[r.IntN(len(caches))]
			switch op := r.IntN(10); {
			case op < 4: // Get
				want := 1 + r.IntN(len(buf))
				if r.IntN(4) == 0 {
					want = 1 + r.IntN(8)
				}
				n := c.Get(buf[:want])
				// Short only when this cache and the global stack are
				// empty (other caches may still hold frames).
				if n < want && (c.Len() != 0 || len(u.free) != 0) {
					t.Fatalf("seed %d step %d: Get(%d) = %d while the cache has %d and the global stack %d", seed, step, want, n, c.Len(), len(u.free))
				}
				for _, a := range buf[:n] {
					if held[a] {
						t.Fatalf("seed %d step %d: frame %#x handed out twice", seed, step, a)
					}
					if a%uint64(u.frameSize) != 0 || a >= uint64(len(u.Area())) {
						t.Fatalf("seed %d step %d: bad frame address %#x", seed, step, a)
					}
					held[a] = true
					list = append(list, a)
				}
			case op < 8: // Put a random subset, as descriptors (offset inside the frame)
				k := r.IntN(min(len(list), len(buf)) + 1)
				r.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
				for i, a := range list[len(list)-k:] {
					delete(held, a)
					buf[i] = a + uint64(r.IntN(u.frameSize))
				}
				list = list[:len(list)-k]
				if k == 1 && r.IntN(2) == 0 {
					c.Put(buf[0])
				} else {
					c.PutBatch(buf[:k])
				}
			case op < 9:
				c.Flush()
			default: // a new cache joins, as a poller that starts
				caches = append(caches, u.NewCache())
			}
			if f := u.FreeFrames(); f != u.numFrames-len(held) {
				t.Fatalf("seed %d step %d: FreeFrames %d, want %d", seed, step, f, u.numFrames-len(held))
			}
		}
		for i, a := range list {
			buf[i%len(buf)] = a
			if i%len(buf) == len(buf)-1 || i == len(list)-1 {
				caches[0].PutBatch(buf[:i%len(buf)+1])
			}
		}
		checkPool(t, u)
		for _, c := range caches {
			c.Flush()
		}
		checkPool(t, u)
	}
}

// TestCacheConcurrent runs pollers that each own a cache, take frames,
// and give frames to each other (a frame received on one port is
// completed on another), under -race. An owner table catches a frame that
// is handed out while someone holds it.
func TestCacheConcurrent(t *testing.T) {
	const workers, rounds = 4, 20000
	u := newTestUmem(t, UmemConfig{NumFrames: 2048})
	owner := make([]atomic.Int32, u.NumFrames())
	pass := make([]chan uint64, workers)
	for i := range pass {
		pass[i] = make(chan uint64, 4096)
	}
	var wg sync.WaitGroup
	var bad atomic.Value
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := u.NewCache()
			r := rand.New(rand.NewPCG(uint64(w), 7))
			buf := make([]uint64, 64)
			var mine []uint64
			take := func(a uint64) {
				if !owner[a/uint64(u.frameSize)].CompareAndSwap(0, int32(w+1)) {
					bad.Store("frame handed out while held")
				}
				mine = append(mine, a)
			}
			for range rounds {
				switch r.IntN(4) {
				case 0, 1:
					n := c.Get(buf[:1+r.IntN(len(buf))])
					for _, a := range buf[:n] {
						take(a)
					}
				case 2: // give some to another worker's cache
					k := min(len(mine), r.IntN(16))
					for _, a := range mine[len(mine)-k:] {
						owner[a/uint64(u.frameSize)].Store(0)
						select {
						case pass[r.IntN(workers)] <- a:
						default:
							c.Put(a)
						}
					}
					mine = mine[:len(mine)-k]
				case 3: // put back received frames and some of ours
				recv:
					for {
						select {
						case a := <-pass[w]:
							c.Put(a)
						default:
							break recv
						}
					}
					k := min(len(mine), r.IntN(64))
					for i, a := range mine[len(mine)-k:] {
						owner[a/uint64(u.frameSize)].Store(0)
						buf[i%len(buf)] = a
						if i%len(buf) == len(buf)-1 || i == k-1 {
							c.PutBatch(buf[:i%len(buf)+1])
						}
					}
					mine = mine[:len(mine)-k]
				}
				_ = u.FreeFrames() // readable while the caches move
			}
			for _, a := range mine {
				owner[a/uint64(u.frameSize)].Store(0)
				c.Put(a)
			}
			c.Flush()
		}()
	}
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	// Frames still travelling between workers.
	c := u.NewCache()
	for _, ch := range pass {
		close(ch)
		for a := range ch {
			c.Put(a)
		}
	}
	c.Flush()
	checkPool(t, u)
}

// TestCacheNoAlloc: Get and Put allocate nothing, also when they move
// batches to and from the global stack.
func TestCacheNoAlloc(t *testing.T) {
	u := newTestUmem(t, UmemConfig{NumFrames: 4096})
	c := u.NewCache()
	buf := make([]uint64, 3000)
	allocs := testing.AllocsPerRun(100, func() {
		n := c.Get(buf)
		c.PutBatch(buf[:n/2])
		for _, a := range buf[n/2 : n] {
			c.Put(a)
		}
		c.Flush()
	})
	if allocs != 0 {
		t.Fatalf("Get/Put/Flush: %v allocations per run, want 0", allocs)
	}
	checkPool(t, u)
}

// BenchmarkCacheGetPut: the cost of one frame through Get and Put does not
// depend on the UMEM's size (a free stack, not a scan), nor on how full
// the pool is.
func BenchmarkCacheGetPut(b *testing.B) {
	for _, frames := range []int{4096, 1 << 18} {
		b.Run(sizeName(frames), func(b *testing.B) {
			u, err := NewUmem(UmemConfig{NumFrames: frames})
			if err != nil {
				b.Fatal(err)
			}
			defer u.Close()
			c := u.NewCache()
			// Hold most of the pool, so a scan would have to walk far.
			hold := make([]uint64, frames-1024)
			c.Get(hold)
			// Cycle 2048 frames in bursts of 64: more than a cache keeps,
			// so batches move to and from the global stack.
			buf := make([]uint64, 2048)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += len(buf) {
				for j := 0; j < len(buf); j += 64 {
					c.Get(buf[j : j+64])
				}
				for j := 0; j < len(buf); j += 64 {
					c.PutBatch(buf[j : j+64])
				}
			}
		})
	}
}

func sizeName(n int) string { return "frames=" + strconv.Itoa(n) }
