package xsk

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// PortConfig describes one device the switch takes over.
type PortConfig struct {
	Interface  string       // device name, in the calling thread's network namespace
	Role       Role         // which frames the steering program hands to the sockets
	LocalIPs   []netip.Addr // RoleUnderlay: local tunnel endpoint addresses
	Queues     int          // sockets to bind, one per RX queue; 0 = every queue of the device
	RingSize   int          // entries of each of the four rings (power of two); default 2048
	ZeroCopy   ZeroCopy     // auto (zero-copy, else copy), on, off
	XDPMode    XDPMode      // auto (native, else generic), native, generic
	NeedWakeup bool         // XDP_USE_NEED_WAKEUP: syscalls only when the kernel asks
	BusyPoll   bool         // SO_PREFER_BUSY_POLL and friends
	// TxBudget is, in copy mode, how many descriptors the kernel
	// transmits per sendto (XDP_MAX_TX_SKB_BUDGET, Linux 6.17 and later):
	// 32 to RingSize; 0 leaves the kernel's 32. It pays for a loop that
	// transmits full bursts (BenchmarkL2fwd: 256 saves 8-13 % CPU per
	// frame); it made no difference to xswitch's pollers. Not used in
	// zero-copy mode. Socket.TxBudget says what a socket got.
	TxBudget int
	Logger   *zap.Logger // nil: no logs
}

// Mode is what the kernel granted a port.
type Mode struct {
	ZeroCopy bool   // sockets bound with XDP_ZEROCOPY
	XDP      string // "native" | "generic"
	Link     string // "bpf_link" | "netlink"
}

// Port is a device with the steering program attached and one socket per
// RX queue, all on one UMEM.
type Port struct {
	u       *Umem
	name    string
	ifindex int
	steer   *Steering
	nl      *netlink.Handle // in the device's namespace, for DeviceStats
	sockets []*Socket
	mode    Mode
	log     *zap.Logger
	closed  bool
}

const defaultRingSize = 2048

// MinRingSize and MaxRingSize bound PortConfig.RingSize (a power of two).
// Configuration validation uses them, so that a size OpenPort refuses is
// refused before anything is created.
const (
	MinRingSize = 64
	MaxRingSize = 1 << 15
)

// OpenPort attaches the steering program to the device and binds one
// socket per queue, all sharing u, each with its own fill and completion
// ring. It must run in the device's network namespace.
func (u *Umem) OpenPort(c PortConfig) (_ *Port, err error) {
	log := c.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	ifc, err := net.InterfaceByName(c.Interface)
	if err != nil {
		return nil, fmt.Errorf("port %s: %w", c.Interface, err)
	}
	q, err := c.queueCount()
	if err != nil {
		return nil, err
	}
	p := &Port{u: u, name: c.Interface, ifindex: ifc.Index, log: log}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if p.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
		return nil, fmt.Errorf("port %s: netlink: %w", c.Interface, err)
	}
	p.steer, err = AttachSteering(SteerConfig{Ifindex: ifc.Index, Role: c.Role, LocalIPs: c.LocalIPs, Mode: c.XDPMode,
		MultiBuffer: u.multiBuf, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("port %s: %w", c.Interface, err)
	}
	p.mode.XDP, p.mode.Link = p.steer.Mode()
	if err := p.openSockets(&c, q); err != nil {
		return nil, err
	}
	p.mode.ZeroCopy = p.sockets[0].ZeroCopy()
	u.mu.Lock()
	u.ports = append(u.ports, p)
	u.mu.Unlock()
	p.logBound(&c)
	return p, nil
}

// check fills in the default ring size and checks the ring size, TX
// budget and zero-copy setting.
func (c *PortConfig) check() error {
	if c.RingSize == 0 {
		c.RingSize = defaultRingSize
	}
	if c.RingSize < MinRingSize || c.RingSize > MaxRingSize || c.RingSize&(c.RingSize-1) != 0 {
		return fmt.Errorf("port %s: RingSize %d must be a power of two from %d to %d", c.Interface, c.RingSize, MinRingSize, MaxRingSize)
	}
	if c.TxBudget != 0 && (c.TxBudget < KernelTxBudget || c.TxBudget > c.RingSize) {
		return fmt.Errorf("port %s: TxBudget %d out of range: use %d to RingSize (%d), or 0 for the kernel's %d",
			c.Interface, c.TxBudget, KernelTxBudget, c.RingSize, KernelTxBudget)
	}
	if c.ZeroCopy < ZeroCopyAuto || c.ZeroCopy > ZeroCopyOff {
		return fmt.Errorf("port %s: ZeroCopy %d unknown (use ZeroCopyAuto, ZeroCopyOn or ZeroCopyOff)", c.Interface, int(c.ZeroCopy))
	}
	return nil
}

// queueCount is how many sockets the port binds: every RX queue of the
// device. Fewer would let frames bypass the switch.
func (c *PortConfig) queueCount() (int, error) {
	devQueues, err := QueueCount(c.Interface)
	if err != nil {
		return 0, fmt.Errorf("port %s: %w", c.Interface, err)
	}
	q := c.Queues
	switch {
	case q == 0:
		q = devQueues
	case q < devQueues:
		return 0, fmt.Errorf("port %s: Queues %d but the device has %d RX queues: frames on queues %d to %d would bypass the switch; use 0 (every queue) or lower the device's queue count (ethtool -L %s combined %d)",
			c.Interface, q, devQueues, q, devQueues-1, c.Interface, q)
	case q > devQueues:
		return 0, fmt.Errorf("port %s: Queues %d but the device has only %d RX queues", c.Interface, q, devQueues)
	}
	return q, nil
}

// openSockets binds one socket to each of the device's first q queues and
// registers it with the steering program.
func (p *Port) openSockets(c *PortConfig, q int) error {
	for i := 0; i < q; i++ {
		s, err := p.u.openSocket(socketConfig{ifindex: p.ifindex, queue: i, ringSize: uint32(c.RingSize),
			zeroCopy: c.ZeroCopy, needWakeup: c.NeedWakeup, busyPoll: c.BusyPoll, txBudget: c.TxBudget})
		if err != nil {
			return fmt.Errorf("port %s queue %d: %w", c.Interface, i, err)
		}
		p.sockets = append(p.sockets, s)
		if err := p.steer.Register(i, s.Fd()); err != nil {
			return fmt.Errorf("port %s queue %d: %w", c.Interface, i, err)
		}
	}
	return nil
}

// logBound logs what the kernel granted the port.
func (p *Port) logBound(c *PortConfig) {
	bind := "copy"
	if p.mode.ZeroCopy {
		bind = "zero-copy"
	}
	s := p.sockets[0]
	p.log.Info("AF_XDP sockets bound", zap.String("interface", c.Interface), zap.Int("queues", len(p.sockets)),
		zap.String("bind", bind), zap.Bool("need_wakeup", s.NeedWakeup()), zap.Bool("busy_poll", c.BusyPoll),
		zap.Bool("multi_buffer", s.sg), zap.Int("ring_size", c.RingSize), zap.Int("tx_budget", s.TxBudget()), zap.String("xdp", p.mode.XDP), zap.String("link", p.mode.Link))
}

// Sockets are the port's sockets, by queue.
func (p *Port) Sockets() []*Socket { return p.sockets }

// Mode is the zero-copy, XDP and attach mode the port got.
func (p *Port) Mode() Mode { return p.mode }

// Ifindex is the device's interface index.
func (p *Port) Ifindex() int { return p.ifindex }

// Name is the device's name.
func (p *Port) Name() string { return p.name }

// Steering is the port's XDP program (for its counters).
func (p *Port) Steering() *Steering { return p.steer }

// Close takes the sockets out of the XSKMAP, detaches the program and
// closes the sockets, giving their frames back to the UMEM. Pollers must
// have stopped.
func (p *Port) Close() error {
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	if p.steer != nil {
		for i := range p.sockets {
			if err := p.steer.Unregister(i); err != nil {
				errs = append(errs, fmt.Errorf("port %s queue %d: %w", p.name, i, err))
			}
		}
		if err := p.steer.Close(); err != nil {
			errs = append(errs, fmt.Errorf("port %s: %w", p.name, err))
		}
	}
	for _, s := range p.sockets {
		if err := s.Close(); err != nil {
			errs = append(errs, fmt.Errorf("port %s queue %d: %w", p.name, s.Queue(), err))
		}
	}
	if p.nl != nil {
		p.nl.Close()
	}
	p.u.mu.Lock()
	for i, o := range p.u.ports {
		if o == p {
			p.u.ports = append(p.u.ports[:i], p.u.ports[i+1:]...)
			break
		}
	}
	p.u.mu.Unlock()
	return errors.Join(errs...)
}
