package gen

import (
	"fmt"
	"net"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// packetTx sends with sendmmsg on an AF_PACKET socket. msgs[j] points at
// frame j % flows; a burst is a window of msgs starting at the next flow.
type packetTx struct {
	fd    int
	msgs  []unix.Mmsghdr
	iovs  []unix.Iovec
	flows int
	pos   int
}

func openPacket(c *Config) (txer, error) {
	ifi, err := net.InterfaceByName(c.Interface)
	if err != nil {
		return nil, fmt.Errorf("gen: interface %s: %w", c.Interface, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("gen: AF_PACKET socket: %w", err)
	}
	// Skip the qdisc layer, as a generator should.
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: 0}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("gen: bind AF_PACKET to %s: %w", c.Interface, err)
	}
	p := &packetTx{fd: fd, flows: len(c.Frames)}
	n := p.flows + c.Burst
	p.msgs = make([]unix.Mmsghdr, n)
	p.iovs = make([]unix.Iovec, n)
	for j := range p.msgs {
		f := c.Frames[j%p.flows]
		p.iovs[j].Base = &f[0]
		p.iovs[j].SetLen(len(f))
		p.msgs[j].Hdr.Iov = &p.iovs[j]
		p.msgs[j].Hdr.SetIovlen(1)
	}
	return p, nil
}

func (p *packetTx) send(n int) int {
	r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(p.fd), uintptr(unsafe.Pointer(&p.msgs[p.pos])), uintptr(n), 0, 0, 0)
	if errno != 0 {
		return 0 // ENOBUFS/EAGAIN: the device queue is full; try again
	}
	p.pos = (p.pos + int(r)) % p.flows
	return int(r)
}

func (p *packetTx) drain(time.Duration) error { return nil } // sendmmsg returns after the frames left

func (p *packetTx) mode() string { return "af_packet sendmmsg" }

func (p *packetTx) close() error { return unix.Close(p.fd) }
