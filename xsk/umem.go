// Package xsk is xswitch's packet I/O layer: AF_XDP sockets on
// golang.org/x/sys/unix, one UMEM shared by every socket of every port
// (XDP_SHARED_UMEM), so that a frame received on one port is transmitted on
// another without a copy, and an XDP steering program (steer.go) that
// redirects each RX queue's frames to its socket.
//
// Frames: every frame of a UMEM is, at any time, in exactly one place: the
// global free stack, a Cache, a fill ring, an RX ring, the caller (between
// Receive and Transmit or Put), a TX ring or a completion ring. FreeFrames
// counts the first two; tests check the invariant after traffic, errors
// and close.
package xsk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Desc is an AF_XDP descriptor, laid out as struct xdp_desc: Addr is the
// offset of the packet's first byte in the UMEM, Len its length.
type Desc struct {
	Addr    uint64
	Len     uint32
	Options uint32
}

// UmemConfig sizes a UMEM.
type UmemConfig struct {
	NumFrames int  // number of frames; default 4096
	FrameSize int  // 2048 or 4096; default 2048
	Headroom  int  // bytes reserved in front of every received packet on top of XDP_PACKET_HEADROOM; default 0
	HugePages bool // try 2 MiB huge pages (falls back to normal pages; see HugePages())
	// TxMetadata reserves TxMetadataLen bytes of TX metadata (struct
	// xsk_tx_metadata) in front of every transmitted packet
	// (XDP_UMEM_TX_METADATA_LEN, Linux 6.11+), where SetTxChecksum asks the
	// device for an L4 checksum. Every TX packet must then start at least
	// TxMetadataLen bytes into its frame (the kernel refuses the
	// descriptor otherwise).
	TxMetadata bool
	// TxSwChecksum makes the kernel compute the checksums requested in TX
	// metadata on the CPU in copy mode (XDP_UMEM_TX_SW_CSUM): for devices
	// without xsk tx-checksum (veth) and tests. Needs TxMetadata.
	TxSwChecksum bool
	// MultiBuffer lets a packet span several frames (AF_XDP multi-buffer,
	// Linux 6.6+), for an MTU larger than a frame holds (jumbo frames):
	// the socket that registers the UMEM binds with XDP_USE_SG, the others
	// inherit it from the UMEM, and every port's steering program is
	// loaded for multi-buffer packets (BPF_F_XDP_HAS_FRAGS). A packet is
	// then a chain of descriptors, OptContinued on all but the last.
	MultiBuffer bool
}

// TxMetadataLen is the TX metadata room in front of each packet of a UMEM
// with TxMetadata: struct xsk_tx_metadata up to its checksum request
// (flags u64, csum_start u16, csum_offset u16, padding to 8 bytes).
const TxMetadataLen = 16

// OptTxMetadata is the TX descriptor option (Desc.Options) that makes the
// kernel read the packet's TX metadata (XDP_TX_METADATA).
const OptTxMetadata = unix.XDP_TX_METADATA

// OptContinued (XDP_PKT_CONTD) marks, on a multi-buffer UMEM, a descriptor
// whose packet goes on in the next descriptor of the ring: every
// descriptor of a packet but its last carries it, on RX and on TX.
const OptContinued = unix.XDP_PKT_CONTD

// MaxFrags is the most descriptors one packet may have on a multi-buffer
// UMEM. It is the kernel's copy-mode TX limit, MAX_SKB_FRAGS + 1 (the
// first descriptor becomes the skb's linear part, each further one a page
// fragment: xsk_build_skb fails with EOVERFLOW past that), with
// CONFIG_MAX_SKB_FRAGS at its default and minimum of 17. The kernel drops
// a longer packet whole (its descriptors count in Stats.TxInvalidDescs;
// their frames are completed). RX has no such limit (a packet takes
// len/frame descriptors), but Receive drops a longer packet: it could not
// be transmitted.
const MaxFrags = 18

// SetTxChecksum asks the device for the L4 checksum of the packet that
// starts at frame[off]: it writes struct xsk_tx_metadata with
// XDP_TXMD_FLAGS_CHECKSUM into frame[off-TxMetadataLen:off] and returns
// the option bit to or into the packet's descriptor. csumStart counts
// from the packet's first byte, csumOffset from csumStart to the checksum
// field, which must hold the pseudo-header sum (folded, not complemented),
// as for CHECKSUM_PARTIAL. The UMEM needs TxMetadata. No allocation.
func SetTxChecksum(frame []byte, off int, csumStart, csumOffset uint16) uint32 {
	m := frame[off-TxMetadataLen : off : off]
	binary.NativeEndian.PutUint64(m[0:], unix.XDP_TXMD_FLAGS_CHECKSUM)
	binary.NativeEndian.PutUint16(m[8:], csumStart)
	binary.NativeEndian.PutUint16(m[10:], csumOffset)
	binary.NativeEndian.PutUint32(m[12:], 0)
	return OptTxMetadata
}

const (
	defaultNumFrames = 4096
	defaultFrameSize = 2048
	hugePageSize     = 2 << 20
	// cacheBatch is how many frames a Cache moves to or from the global
	// stack per lock.
	cacheBatch = 256
)

// Umem is a region of frames registered with the kernel through the first
// socket bound on it; later sockets share it with XDP_SHARED_UMEM.
type Umem struct {
	area      []byte
	frameSize int
	headroom  int
	numFrames int
	huge      bool
	txMeta    bool
	txSwCsum  bool
	multiBuf  bool

	mu      sync.Mutex
	free    []uint64 // global free stack (frame base addresses)
	caches  []*Cache
	sockets []*Socket // bound, open sockets; the first one registered the UMEM
	ports   []*Port
	closed  bool
	lost    atomic.Uint64 // frames the kernel kept when a socket closed (zero-copy drivers)
}

// NewUmem maps the frame area and fills the free stack with every frame.
// The kernel sees the UMEM when the first socket is opened on it.
func NewUmem(c UmemConfig) (*Umem, error) {
	if c.NumFrames == 0 {
		c.NumFrames = defaultNumFrames
	}
	if c.FrameSize == 0 {
		c.FrameSize = defaultFrameSize
	}
	if c.FrameSize != 2048 && c.FrameSize != 4096 {
		return nil, fmt.Errorf("umem: UmemConfig.FrameSize %d not supported: use 2048 or 4096", c.FrameSize)
	}
	if c.NumFrames < 64 || c.NumFrames > 1<<22 {
		return nil, fmt.Errorf("umem: UmemConfig.NumFrames %d out of range: use 64 to %d", c.NumFrames, 1<<22)
	}
	// The kernel needs room for the packet after both headrooms: leave at
	// least one full Ethernet frame (1514 bytes) plus VLAN tags.
	if c.Headroom < 0 || c.Headroom+unix.XDP_PACKET_HEADROOM+1536 > c.FrameSize {
		return nil, fmt.Errorf("umem: UmemConfig.Headroom %d leaves no room for a 1518-byte frame in a %d-byte frame: use at most %d",
			c.Headroom, c.FrameSize, c.FrameSize-unix.XDP_PACKET_HEADROOM-1536)
	}
	if c.TxSwChecksum && !c.TxMetadata {
		return nil, errors.New("umem: UmemConfig.TxSwChecksum needs TxMetadata (the checksum request lives in the TX metadata)")
	}
	size := c.NumFrames * c.FrameSize
	u := &Umem{frameSize: c.FrameSize, headroom: c.Headroom, numFrames: c.NumFrames, txMeta: c.TxMetadata, txSwCsum: c.TxSwChecksum,
		multiBuf: c.MultiBuffer}
	var err error
	if c.HugePages {
		hsize := (size + hugePageSize - 1) &^ (hugePageSize - 1)
		u.area, err = unix.Mmap(-1, 0, hsize, unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE|unix.MAP_HUGETLB)
		if err == nil {
			u.huge = true
		}
	}
	if u.area == nil {
		u.area, err = unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
		if err != nil {
			return nil, fmt.Errorf("umem: mmap %d bytes: %w", size, err)
		}
	}
	u.free = make([]uint64, c.NumFrames, c.NumFrames)
	// Lowest addresses on top of the stack: a light load touches few pages.
	for i := range u.free {
		u.free[i] = uint64((c.NumFrames - 1 - i) * c.FrameSize)
	}
	return u, nil
}

// Area is the whole frame area; a frame's bytes start at its address.
func (u *Umem) Area() []byte { return u.area[:u.numFrames*u.frameSize] }

// Frame is the whole frame buffer that contains addr, from its start.
func (u *Umem) Frame(addr uint64) []byte {
	base := addr &^ uint64(u.frameSize-1)
	return u.area[base : base+uint64(u.frameSize) : base+uint64(u.frameSize)]
}

// Bytes is the packet of a descriptor.
func (u *Umem) Bytes(d Desc) []byte { return u.area[d.Addr : d.Addr+uint64(d.Len)] }

// FrameSize is the size of one frame.
func (u *Umem) FrameSize() int { return u.frameSize }

// Headroom is the UMEM headroom set at registration (XDP_PACKET_HEADROOM
// comes on top of it for received packets).
func (u *Umem) Headroom() int { return u.headroom }

// NumFrames is the number of frames in the UMEM.
func (u *Umem) NumFrames() int { return u.numFrames }

// TxMetadata says whether TX packets carry TxMetadataLen bytes of
// metadata in front (UmemConfig.TxMetadata).
func (u *Umem) TxMetadata() bool { return u.txMeta }

// TxSwChecksum says whether copy-mode sockets compute requested checksums
// on the CPU (UmemConfig.TxSwChecksum).
func (u *Umem) TxSwChecksum() bool { return u.txSwCsum }

// MultiBuffer says whether a packet may span several frames
// (UmemConfig.MultiBuffer): every socket of the UMEM then receives and
// transmits descriptor chains (OptContinued).
func (u *Umem) MultiBuffer() bool { return u.multiBuf }

// HugePages says whether the area is backed by huge pages.
func (u *Umem) HugePages() bool { return u.huge }

// FreeFrames counts the frames in the global free stack and in all caches.
func (u *Umem) FreeFrames() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := len(u.free)
	for _, c := range u.caches {
		n += int(c.count.Load())
	}
	return n
}

// LostFrames counts frames that closed sockets never gave back (a
// zero-copy driver may hold some when its socket closes). Copy mode loses
// none.
func (u *Umem) LostFrames() uint64 { return u.lost.Load() }

// Close closes every port still open on the UMEM and unmaps the area.
func (u *Umem) Close() error {
	u.mu.Lock()
	if u.closed {
		u.mu.Unlock()
		return nil
	}
	ports := append([]*Port(nil), u.ports...)
	u.mu.Unlock()
	var errs []error
	for _, p := range ports {
		if err := p.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	// Sockets opened outside a port (tests).
	for len(u.sockets) > 0 {
		s := u.sockets[len(u.sockets)-1]
		u.mu.Unlock()
		if err := s.Close(); err != nil {
			errs = append(errs, err)
		}
		u.mu.Lock()
	}
	u.closed = true
	if err := unix.Munmap(u.area); err != nil {
		errs = append(errs, fmt.Errorf("umem: munmap: %w", err))
	}
	u.area = nil
	return errors.Join(errs...)
}

// getFrames pops up to len(dst) frames from the global stack.
func (u *Umem) getFrames(dst []uint64) int {
	u.mu.Lock()
	n := min(len(dst), len(u.free))
	copy(dst, u.free[len(u.free)-n:])
	u.free = u.free[:len(u.free)-n]
	u.mu.Unlock()
	return n
}

// putFrames pushes frames (base addresses) onto the global stack.
func (u *Umem) putFrames(addrs []uint64) {
	u.mu.Lock()
	u.free = append(u.free, addrs...)
	u.mu.Unlock()
}

// Cache is one goroutine's stock of free frames in front of the global
// stack: Get and Put touch the stack (and its mutex) once per cacheBatch
// frames. A Cache is not safe for concurrent use.
type Cache struct {
	u     *Umem
	stack []uint64
	count atomic.Int64 // len(stack), readable by FreeFrames
	mask  uint64
}

// NewCache makes a cache; Flush it before the goroutine ends.
func (u *Umem) NewCache() *Cache {
	c := &Cache{u: u, stack: make([]uint64, 0, 4*cacheBatch), mask: ^uint64(u.frameSize - 1)}
	u.mu.Lock()
	u.caches = append(u.caches, c)
	u.mu.Unlock()
	return c
}

// Get fills dst with free frame base addresses and returns how many it
// got: fewer than len(dst) only when this cache and the global stack are
// empty. Other caches may still hold frames then (up to 4*256 each, until
// their owners Flush or overflow them), so size the UMEM for the rings,
// the frames in flight and one cache per poller.
func (c *Cache) Get(dst []uint64) int {
	got := 0
	for got < len(dst) {
		if len(c.stack) == 0 {
			c.stack = c.stack[:cacheBatch]
			n := c.u.getFrames(c.stack)
			c.stack = c.stack[:n]
			if n == 0 {
				break
			}
		}
		n := copy(dst[got:], c.stack[len(c.stack)-min(len(c.stack), len(dst)-got):])
		c.stack = c.stack[:len(c.stack)-n]
		got += n
	}
	c.count.Store(int64(len(c.stack)))
	return got
}

// Put gives frames back; an address anywhere inside a frame names the
// frame.
func (c *Cache) Put(addrs ...uint64) { c.PutBatch(addrs) }

// PutBatch gives frames back; an address anywhere inside a frame names the
// frame.
func (c *Cache) PutBatch(addrs []uint64) {
	for len(addrs) > 0 {
		room := cap(c.stack) - len(c.stack)
		if room == 0 {
			// Keep one batch for the next Get, hand the rest back.
			c.u.putFrames(c.stack[cacheBatch:])
			c.stack = c.stack[:cacheBatch]
			room = cap(c.stack) - len(c.stack)
		}
		n := min(room, len(addrs))
		s := c.stack[len(c.stack) : len(c.stack)+n]
		for i, a := range addrs[:n] {
			s[i] = a & c.mask
		}
		c.stack = c.stack[:len(c.stack)+n]
		addrs = addrs[n:]
	}
	c.count.Store(int64(len(c.stack)))
}

// put1 gives one frame back (completion rings drain through it).
func (c *Cache) put1(addr uint64) {
	if len(c.stack) == cap(c.stack) {
		c.u.putFrames(c.stack[cacheBatch:])
		c.stack = c.stack[:cacheBatch]
	}
	c.stack = append(c.stack, addr&c.mask)
}

// Len is the number of frames in the cache.
func (c *Cache) Len() int { return len(c.stack) }

// Flush hands every frame of the cache back to the global stack.
func (c *Cache) Flush() {
	c.u.putFrames(c.stack)
	c.stack = c.stack[:0]
	c.count.Store(0)
}
