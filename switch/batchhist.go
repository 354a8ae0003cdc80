package vswitch

import (
	"math/bits"
	"sync/atomic"
)

// BatchBounds are the upper bounds of the batch size histogram's buckets:
// powers of two up to maxBurst, the most frames a poller takes at once.
var BatchBounds = [numBatchBuckets]int{1, 2, 4, 8, 16, 32, 64}

// numBatchBuckets covers 1..maxBurst in powers of two.
const numBatchBuckets = 7

// batchHist counts one poller's non-empty batches by size. The poller is
// the only writer and stores plain values (atomic stores are plain MOVs,
// no read-modify-write); the control path reads with atomic loads, like
// the counters of counters.go.
type batchHist struct {
	buckets [numBatchBuckets]uint64 // batches of size in (bound[i-1], bound[i]]
	frames  uint64                  // sum of the sizes
}

// add records a batch of n frames, 1 <= n <= maxBurst.
func (h *batchHist) add(n int) {
	i := bits.Len(uint(n - 1)) // 1→0, 2→1, 3..4→2, ..., 33..64→6
	if i >= numBatchBuckets {
		i = numBatchBuckets - 1
	}
	atomic.StoreUint64(&h.buckets[i], h.buckets[i]+1)
	atomic.StoreUint64(&h.frames, h.frames+uint64(n))
}

func (h *batchHist) addTo(s *BatchHistogram) {
	for i := range h.buckets {
		v := atomic.LoadUint64(&h.buckets[i])
		s.Buckets[i] += v
		s.Count += v
	}
	s.Sum += atomic.LoadUint64(&h.frames)
}

// BatchHistogram is the distribution of the sizes of the batches the
// pollers of one port took (frames per non-empty receive).
type BatchHistogram struct {
	Port   string `json:"port"`
	Bridge string `json:"bridge,omitempty"`
	Kind   string `json:"kind"`
	// Buckets[i] counts batches of more than BatchBounds[i-1] and at most
	// BatchBounds[i] frames (not cumulative).
	Buckets [numBatchBuckets]uint64 `json:"buckets"`
	Count   uint64                  `json:"count"` // batches
	Sum     uint64                  `json:"sum"`   // frames in them
}

// BatchHistograms sums the pollers' batch size histograms per port, in the
// order of the switch's ports; ports without a poller are left out.
func (s *Switch) BatchHistograms() []BatchHistogram {
	s.mu.RLock()
	defer s.mu.RUnlock()
	f := s.cur()
	byPort := map[*port]*BatchHistogram{}
	histOf := func(id int) *BatchHistogram {
		p := f.ports[id]
		if byPort[p] == nil {
			byPort[p] = &BatchHistogram{Port: p.name, Kind: p.kind.String()}
			if p.br != nil {
				byPort[p].Bridge = p.br.name
			}
		}
		return byPort[p]
	}
	for _, pl := range s.dp.pollers {
		pl.hist.addTo(histOf(pl.pid))
	}
	for _, tp := range s.dp.tapPollers {
		tp.hist.addTo(histOf(tp.pid))
	}
	out := make([]BatchHistogram, 0, len(byPort))
	for _, p := range livePorts(f) {
		if h := byPort[p]; h != nil {
			out = append(out, *h)
		}
	}
	return out
}
