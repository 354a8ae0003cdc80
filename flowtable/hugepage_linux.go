package flowtable

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugeTableBytes is the table size from which the slots are backed by
// transparent huge pages: a random lookup in a large table otherwise costs a
// TLB miss on top of the cache miss (1M entries = 32 MiB of slots).
const hugeTableBytes = 4 << 20

// hugePages can be turned off (benchmarks measure the difference).
var hugePages = true

// adviseHugePages asks for transparent huge pages (MADV_HUGEPAGE) on the 2 MiB
// aligned interior of a large slot array. It is advice only: where THP is off
// the call fails or is ignored, and the table works the same.
func adviseHugePages(slots []slot) {
	n := uintptr(len(slots)) * unsafe.Sizeof(slot{})
	if !hugePages || n < hugeTableBytes {
		return
	}
	const huge = 2 << 20
	p := uintptr(unsafe.Pointer(unsafe.SliceData(slots)))
	start, end := (p+huge-1)&^(huge-1), (p+n)&^(huge-1)
	if end <= start {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(slots))), n)
	_ = unix.Madvise(b[start-p:end-p], unix.MADV_HUGEPAGE)
}
