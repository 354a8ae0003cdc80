package xsk

import "unsafe"

// Prefetch asks the CPU to bring the first cache line of every packet of
// descs (its headers) into this core's cache, all at once, so that the
// misses overlap instead of being paid one at a time as each frame is
// handled. It pays when another CPU or a device wrote the frames: a
// copy-mode RX runs in the softirq of the CPU that received (for a veth,
// the sender's CPU), a NIC writes by DMA. Call it right after Receive.
//
// A hint only: prefetches never fault, so a descriptor outside the UMEM
// costs nothing; a no-op where no prefetch instruction is wired up
// (non-amd64). Measured in BenchmarkL2fwd (docs/benchmarks.md).
func (u *Umem) Prefetch(descs []Desc) {
	if len(descs) == 0 || len(u.area) == 0 {
		return
	}
	prefetchDescs(unsafe.SliceData(u.area), unsafe.SliceData(descs), len(descs))
}

// PrefetchPackets is Prefetch for every cache line of every packet, for
// frames that go out on a copy-mode socket (Socket.ZeroCopy false): there
// the kernel copies the whole packet on this CPU during sendto, one packet
// after another, and lines another CPU wrote would be fetched one by one.
// Not for zero-copy TX, where the device reads the frame and the lines
// are better left out of this core's cache.
func (u *Umem) PrefetchPackets(descs []Desc) {
	if len(descs) == 0 || len(u.area) == 0 {
		return
	}
	prefetchSpans(unsafe.SliceData(u.area), unsafe.SliceData(descs), len(descs), u.frameSize)
}
