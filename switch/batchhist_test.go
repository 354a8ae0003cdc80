package vswitch

import "testing"

// refBucket is the plain reference: the first bound that n does not exceed.
func refBucket(n int) int {
	for i, b := range BatchBounds {
		if n <= b {
			return i
		}
	}
	return len(BatchBounds) - 1
}

// TestBatchHist: every batch size 1..maxBurst lands in the bucket the
// reference picks, and count and sum add up.
func TestBatchHist(t *testing.T) {
	if BatchBounds[len(BatchBounds)-1] != maxBurst {
		t.Fatalf("last bound %d, want maxBurst %d", BatchBounds[len(BatchBounds)-1], maxBurst)
	}
	var h batchHist
	var want [numBatchBuckets]uint64
	var sum uint64
	for n := 1; n <= maxBurst; n++ {
		for k := 0; k < n%3+1; k++ {
			h.add(n)
			want[refBucket(n)]++
			sum += uint64(n)
		}
	}
	var got BatchHistogram
	h.addTo(&got)
	h.addTo(&got) // sums over pollers
	var count uint64
	for i := range want {
		if got.Buckets[i] != 2*want[i] {
			t.Errorf("bucket le=%d: %d, want %d", BatchBounds[i], got.Buckets[i], 2*want[i])
		}
		count += want[i]
	}
	if got.Count != 2*count || got.Sum != 2*sum {
		t.Errorf("count %d sum %d, want %d %d", got.Count, got.Sum, 2*count, 2*sum)
	}
}

// TestBatchHistAllocs: recording a batch does not allocate.
func TestBatchHistAllocs(t *testing.T) {
	var h batchHist
	n := 0
	if a := testing.AllocsPerRun(1000, func() { n = n%maxBurst + 1; h.add(n) }); a != 0 {
		t.Errorf("batchHist.add allocates %v per call", a)
	}
}
