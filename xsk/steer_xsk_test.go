package xsk

// A minimal, self-contained AF_XDP receiver (copy mode, RX only) for the
// steering tests, independent of the package's socket layer: UMEM
// registration, fill and RX rings through mmap, bind to one queue.

import (
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	steerRxFrames    = 64 // also the ring sizes (a power of two)
	steerRxFrameSize = 2048
)

type steerRing struct {
	mem      []byte
	producer *uint32
	consumer *uint32
	desc     unsafe.Pointer
}

func steerMapRing(fd int, off unix.XDPRingOffset, pgoff int64, descSize int) (steerRing, error) {
	mem, err := unix.Mmap(fd, pgoff, int(off.Desc)+steerRxFrames*descSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return steerRing{}, fmt.Errorf("mmap ring at %#x: %w", pgoff, err)
	}
	return steerRing{
		mem:      mem,
		producer: (*uint32)(unsafe.Pointer(&mem[off.Producer])),
		consumer: (*uint32)(unsafe.Pointer(&mem[off.Consumer])),
		desc:     unsafe.Pointer(&mem[off.Desc]),
	}, nil
}

// steerRx is one AF_XDP socket bound to one queue, receiving only.
type steerRx struct {
	fd    int
	queue int
	umem  []byte
	fill  steerRing
	rx    steerRing
}

func newSteerRx(ifindex, queue int) (_ *steerRx, err error) {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket(AF_XDP): %w", err)
	}
	r := &steerRx{fd: fd, queue: queue}
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	r.umem, err = unix.Mmap(-1, 0, steerRxFrames*steerRxFrameSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap umem: %w", err)
	}
	reg := unix.XDPUmemReg{
		Addr: uint64(uintptr(unsafe.Pointer(&r.umem[0]))),
		Len:  uint64(len(r.umem)),
		Size: steerRxFrameSize,
	}
	if err := setsockopt(fd, unix.SOL_XDP, unix.XDP_UMEM_REG, unsafe.Pointer(&reg), unsafe.Sizeof(reg)); err != nil {
		return nil, fmt.Errorf("XDP_UMEM_REG: %w", err)
	}
	for _, opt := range []int{unix.XDP_UMEM_FILL_RING, unix.XDP_UMEM_COMPLETION_RING, unix.XDP_RX_RING} {
		if err := unix.SetsockoptInt(fd, unix.SOL_XDP, opt, steerRxFrames); err != nil {
			return nil, fmt.Errorf("ring size option %d: %w", opt, err)
		}
	}
	var off unix.XDPMmapOffsets
	if _, err := getsockopt(fd, unix.XDP_MMAP_OFFSETS, unsafe.Pointer(&off), unsafe.Sizeof(off)); err != nil {
		return nil, fmt.Errorf("XDP_MMAP_OFFSETS: %w", err)
	}
	if r.fill, err = steerMapRing(fd, off.Fr, unix.XDP_UMEM_PGOFF_FILL_RING, 8); err != nil {
		return nil, err
	}
	if r.rx, err = steerMapRing(fd, off.Rx, unix.XDP_PGOFF_RX_RING, int(unsafe.Sizeof(unix.XDPDesc{}))); err != nil {
		return nil, err
	}
	// Every frame goes to the fill ring.
	for i := 0; i < steerRxFrames; i++ {
		*(*uint64)(unsafe.Add(r.fill.desc, i*8)) = uint64(i * steerRxFrameSize)
	}
	atomic.StoreUint32(r.fill.producer, steerRxFrames)
	if err := unix.Bind(fd, &unix.SockaddrXDP{Flags: unix.XDP_COPY, Ifindex: uint32(ifindex), QueueID: uint32(queue)}); err != nil {
		return nil, fmt.Errorf("bind AF_XDP to ifindex %d queue %d: %w", ifindex, queue, err)
	}
	return r, nil
}

// Receive returns copies of the frames waiting in the RX ring and gives
// their buffers back to the fill ring.
func (r *steerRx) Receive() [][]byte {
	var out [][]byte
	cons := atomic.LoadUint32(r.rx.consumer)
	prod := atomic.LoadUint32(r.rx.producer)
	fillProd := atomic.LoadUint32(r.fill.producer)
	for ; cons != prod; cons++ {
		d := (*unix.XDPDesc)(unsafe.Add(r.rx.desc, int(cons%steerRxFrames)*int(unsafe.Sizeof(unix.XDPDesc{}))))
		out = append(out, append([]byte(nil), r.umem[d.Addr:d.Addr+uint64(d.Len)]...))
		base := d.Addr - d.Addr%steerRxFrameSize
		*(*uint64)(unsafe.Add(r.fill.desc, int(fillProd%steerRxFrames)*8)) = base
		fillProd++
	}
	atomic.StoreUint32(r.fill.producer, fillProd)
	atomic.StoreUint32(r.rx.consumer, cons)
	return out
}

func (r *steerRx) Close() {
	for _, m := range [][]byte{r.fill.mem, r.rx.mem} {
		if m != nil {
			unix.Munmap(m)
		}
	}
	unix.Close(r.fd)
	if r.umem != nil {
		unix.Munmap(r.umem)
	}
}

// steerCollect receives from every socket until quiet for idle or until
// max passed, and returns all frames.
func steerCollect(rxs []*steerRx, idle, max time.Duration) [][]byte {
	var all [][]byte
	deadline := time.Now().Add(max)
	last := time.Now()
	for time.Now().Before(deadline) && time.Since(last) < idle {
		got := false
		for _, r := range rxs {
			if f := r.Receive(); len(f) > 0 {
				all = append(all, f...)
				got = true
			}
		}
		if got {
			last = time.Now()
		} else {
			time.Sleep(5 * time.Millisecond)
		}
	}
	return all
}
