package xsk

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ring is one of the four single-producer single-consumer rings shared
// with the kernel. The side we own (producer of fill and TX, consumer of
// RX and completion) is published with a release store after the
// descriptors are written or read; the kernel's side is read with an
// acquire load, and only when the cached copy says the ring looks empty
// (consumer rings) or full (producer rings), as in libxdp's xsk.h.
//
// Go's sync/atomic loads and stores are sequentially consistent, which is
// at least acquire/release on every architecture.
type ring struct {
	mem      []byte
	producer *uint32
	consumer *uint32
	flags    *uint32
	descs    unsafe.Pointer
	mask     uint32
	size     uint32
	cached   uint32 // producer rings: consumer+size seen last; consumer rings: producer seen last
	local    uint32 // our own index (producer for fill/TX, consumer for RX/completion)
}

func mapRing(fd int, off unix.XDPRingOffset, pgoff int64, entries uint32, descSize uintptr, producer bool) (*ring, error) {
	length := int(off.Desc) + int(entries)*int(descSize)
	mem, err := unix.Mmap(fd, pgoff, length, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap ring at page offset %#x (%d bytes): %w", pgoff, length, err)
	}
	r := &ring{
		mem:      mem,
		producer: (*uint32)(unsafe.Pointer(&mem[off.Producer])),
		consumer: (*uint32)(unsafe.Pointer(&mem[off.Consumer])),
		flags:    (*uint32)(unsafe.Pointer(&mem[off.Flags])),
		descs:    unsafe.Pointer(&mem[off.Desc]),
		mask:     entries - 1,
		size:     entries,
	}
	if producer {
		r.local = atomic.LoadUint32(r.producer)
		r.cached = atomic.LoadUint32(r.consumer) + entries
	} else {
		r.local = atomic.LoadUint32(r.consumer)
		r.cached = atomic.LoadUint32(r.producer)
	}
	return r, nil
}

func (r *ring) unmap() {
	if r != nil && r.mem != nil {
		_ = unix.Munmap(r.mem)
		r.mem = nil
	}
}

// free returns how many entries a producer may write (at most want),
// reading the kernel's consumer only when the cache says fewer than want.
func (r *ring) free(want uint32) uint32 {
	n := r.cached - r.local
	if n >= want {
		return want
	}
	r.cached = atomic.LoadUint32(r.consumer) + r.size
	return min(r.cached-r.local, want)
}

// submit publishes n written entries to the kernel.
func (r *ring) submit(n uint32) {
	r.local += n
	atomic.StoreUint32(r.producer, r.local)
}

// avail returns how many entries a consumer may read (at most want).
func (r *ring) avail(want uint32) uint32 {
	n := r.cached - r.local
	if n == 0 {
		r.cached = atomic.LoadUint32(r.producer)
		n = r.cached - r.local
	}
	return min(n, want)
}

// release hands n read entries back to the kernel.
func (r *ring) release(n uint32) {
	r.local += n
	atomic.StoreUint32(r.consumer, r.local)
}

// needWakeup reports the kernel's XDP_RING_NEED_WAKEUP flag.
func (r *ring) needWakeup() bool { return atomic.LoadUint32(r.flags)&unix.XDP_RING_NEED_WAKEUP != 0 }

// addr is entry i of a fill or completion ring.
func (r *ring) addr(i uint32) *uint64 {
	return (*uint64)(unsafe.Add(r.descs, uintptr(i&r.mask)*8))
}

// desc is entry i of an RX or TX ring.
func (r *ring) desc(i uint32) *Desc {
	return (*Desc)(unsafe.Add(r.descs, uintptr(i&r.mask)*unsafe.Sizeof(Desc{})))
}
