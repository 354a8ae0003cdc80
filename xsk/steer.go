package xsk

import (
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Role says which frames of an interface the steering program hands to the
// AF_XDP sockets.
type Role int

const (
	// RoleLocal redirects every frame (a port that belongs to the switch).
	RoleLocal Role = iota
	// RoleUnderlay redirects only IPv4/IPv6 UDP to port 6081 (Geneve)
	// addressed to one of the local tunnel endpoint addresses; everything
	// else (ARP, neighbour discovery, ICMP, SSH, fragments) goes to the
	// kernel.
	RoleUnderlay
)

// String gives the role's name as used in logs and configuration ("local", "underlay").
func (r Role) String() string {
	switch r {
	case RoleLocal:
		return "local"
	case RoleUnderlay:
		return "underlay"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// XDPMode selects how the steering program is attached.
type XDPMode int

const (
	// XDPAuto tries native (driver) XDP and falls back to generic (SKB) XDP.
	XDPAuto XDPMode = iota
	// XDPNative insists on native XDP: an error if the driver lacks it.
	XDPNative
	// XDPGeneric insists on generic (SKB) XDP.
	XDPGeneric
)

// String gives the mode's name as used in logs and configuration ("auto", "native", "generic").
func (m XDPMode) String() string {
	switch m {
	case XDPAuto:
		return "auto"
	case XDPNative:
		return "native"
	case XDPGeneric:
		return "generic"
	}
	return fmt.Sprintf("XDPMode(%d)", int(m))
}

// SteerConfig configures AttachSteering.
type SteerConfig struct {
	Ifindex  int          // interface in the network namespace of the calling thread
	Role     Role         // which frames go to the sockets
	LocalIPs []netip.Addr // RoleUnderlay: local tunnel endpoint addresses (up to 8 IPv4 + 8 IPv6)
	Mode     XDPMode      // native, generic or auto
	// MultiBuffer loads the program as taking multi-buffer packets
	// (BPF_F_XDP_HAS_FRAGS, section "xdp.frags"), as AF_XDP multi-buffer
	// needs: a driver hands a packet larger than a page to such programs
	// only (veth refuses to attach any other when the MTU needs more than
	// a page: "Peer MTU is too large to set XDP"). The program reads
	// headers in the packet's linear part only (ctx->data..data_end), so
	// it works unchanged on fragmented packets.
	MultiBuffer bool
	Logger      *zap.Logger // nil: no logs
}

// SteerCounters are the program's counters, summed over CPUs.
type SteerCounters struct {
	Redirected uint64 // frames redirected to a socket
	Passed     uint64 // frames handed to the kernel (XDP_PASS), NoSocket included
	NoSocket   uint64 // frames for the sockets that arrived on a queue without a registered socket
}

// Steering is an XDP program attached to one interface that redirects frames
// to the AF_XDP socket registered for the frame's RX queue, through an
// XSKMAP with one slot per queue. A queue without a socket passes its
// frames to the kernel instead of dropping them.
//
// Attachment is a BPF link wherever the kernel has them: the program then
// leaves the interface when the process exits, even by SIGKILL. Only where
// links are unsupported is the program attached through netlink, and such an
// attachment outlives the process: Close detaches it, so a daemon must call
// Close on every exit path, signals (SIGINT, SIGTERM) included.
type Steering struct {
	ifindex int
	ifname  string
	queues  int
	log     *zap.Logger

	prog     *ebpf.Program
	progID   ebpf.ProgramID
	xsks     *ebpf.Map
	counters *ebpf.Map

	lnk     link.Link      // bpf_link mode
	nlFlags int            // netlink mode: the XDP_FLAGS_* mode used for attach and detach
	ns      netns.NsHandle // netlink mode: the namespace of the interface

	xdpMode  string // "native" | "generic"
	linkKind string // "bpf_link" | "netlink"

	mu     sync.Mutex
	closed bool
}

var errSteeringClosed = errors.New("steering closed")

// Test hook: attach through netlink even where BPF links work.
var forceNetlink bool

// AttachSteering loads the steering program for c.Role, with an XSKMAP
// sized to the interface's RX queue count, and attaches it to c.Ifindex
// (through a BPF link, falling back to netlink only where links are
// unsupported). It refuses an interface that already has an XDP program.
// It must run in the interface's network namespace (a caller that switched
// namespaces holds its OS thread locked); the returned Steering can then be
// used and closed from any goroutine.
func AttachSteering(c SteerConfig) (*Steering, error) {
	log := c.Logger
	if log == nil {
		log = zap.NewNop()
	}
	if c.Ifindex <= 0 {
		return nil, fmt.Errorf("steering: SteerConfig.Ifindex %d is not an interface index", c.Ifindex)
	}
	if c.Mode < XDPAuto || c.Mode > XDPGeneric {
		return nil, fmt.Errorf("steering: SteerConfig.Mode %d unknown (use XDPAuto, XDPNative or XDPGeneric)", int(c.Mode))
	}
	if c.Role != RoleLocal && c.Role != RoleUnderlay {
		return nil, fmt.Errorf("steering: SteerConfig.Role %d unknown (use RoleLocal or RoleUnderlay)", int(c.Role))
	}
	if c.Role == RoleUnderlay && len(c.LocalIPs) == 0 {
		return nil, fmt.Errorf("steering: SteerConfig.LocalIPs is empty: role underlay needs the local tunnel endpoint address(es)")
	}

	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("steering: netlink: %w", err)
	}
	defer h.Close()
	l, err := h.LinkByIndex(c.Ifindex)
	if err != nil {
		return nil, fmt.Errorf("steering: interface index %d: %w", c.Ifindex, err)
	}
	name := l.Attrs().Name
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		return nil, foreignProgramError(name, x.ProgId)
	}
	queues, err := ethtoolRxQueues(name)
	if err != nil || queues <= 0 {
		if queues, err = netlinkRxQueues(h, name); err != nil {
			return nil, fmt.Errorf("steering: %w", err)
		}
	}

	s := &Steering{ifindex: c.Ifindex, ifname: name, queues: queues, log: log, ns: -1}
	ok := false
	defer func() {
		if !ok {
			s.release()
		}
	}()
	if err := s.load(c); err != nil {
		return nil, fmt.Errorf("steering on %s: %w", name, err)
	}
	if err := s.attach(c.Mode); err != nil {
		return nil, fmt.Errorf("steering on %s: %w", name, err)
	}
	ok = true
	log.Info("XDP steering attached",
		zap.String("interface", name), zap.Int("ifindex", c.Ifindex),
		zap.Stringer("role", c.Role), zap.Any("local_ips", c.LocalIPs),
		zap.Int("queues", queues), zap.Bool("multi_buffer", c.MultiBuffer), zap.String("xdp", s.xdpMode), zap.String("link", s.linkKind),
		zap.Uint32("prog_id", uint32(s.progID)))
	return s, nil
}

func foreignProgramError(ifname string, id uint32) error {
	return fmt.Errorf("steering: interface %s already has an XDP program attached (program id %d); refusing to replace it: "+
		"stop the process that owns it (another xswitch?) or, if it is stale, detach it (ip link set dev %s xdp off)",
		ifname, id, ifname)
}

// load creates the maps and loads the program.
func (s *Steering) load(c SteerConfig) error {
	var err error
	s.xsks, err = ebpf.NewMap(&ebpf.MapSpec{
		Name: "xsw_xsks", Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: uint32(s.queues),
	})
	if err != nil {
		return fmt.Errorf("create XSKMAP (%d queues): %w", s.queues, err)
	}
	s.counters, err = ebpf.NewMap(&ebpf.MapSpec{
		Name: "xsw_counters", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: numCounters,
	})
	if err != nil {
		return fmt.Errorf("create counters map: %w", err)
	}
	insns, err := steerInstructions(c.Role, c.LocalIPs, s.xsks.FD(), s.counters.FD())
	if err != nil {
		return fmt.Errorf("SteerConfig: %w", err)
	}
	spec := &ebpf.ProgramSpec{Name: "xsw_steer", Type: ebpf.XDP, License: "GPL", Instructions: insns}
	if c.MultiBuffer {
		spec.Flags = unix.BPF_F_XDP_HAS_FRAGS
	}
	s.prog, err = ebpf.NewProgram(spec)
	if err != nil {
		if c.MultiBuffer {
			return fmt.Errorf("load XDP program for multi-buffer packets (BPF_F_XDP_HAS_FRAGS, Linux 5.18+): %w", err)
		}
		return fmt.Errorf("load XDP program: %w", err)
	}
	info, err := s.prog.Info()
	if err != nil {
		return fmt.Errorf("XDP program info: %w", err)
	}
	id, ok := info.ID()
	if !ok {
		return fmt.Errorf("XDP program info: kernel reports no program id")
	}
	s.progID = id
	return nil
}

type attachTry struct {
	name    string // "native" | "generic"
	link    link.XDPAttachFlags
	netlink int // XDP_FLAGS_*
}

var (
	tryNative  = attachTry{"native", link.XDPDriverMode, unix.XDP_FLAGS_DRV_MODE}
	tryGeneric = attachTry{"generic", link.XDPGenericMode, unix.XDP_FLAGS_SKB_MODE}
)

func (s *Steering) attach(mode XDPMode) error {
	var tries []attachTry
	switch mode {
	case XDPAuto:
		tries = []attachTry{tryNative, tryGeneric}
	case XDPNative:
		tries = []attachTry{tryNative}
	case XDPGeneric:
		tries = []attachTry{tryGeneric}
	}
	var errs []error
	useNetlink := forceNetlink
	if !useNetlink {
		for _, t := range tries {
			l, err := link.AttachXDP(link.XDPOptions{Program: s.prog, Interface: s.ifindex, Flags: t.link})
			if err == nil {
				s.lnk, s.xdpMode, s.linkKind = l, t.name, "bpf_link"
				if len(errs) > 0 {
					s.log.Warn("XDP steering: fell back to generic XDP", zap.String("interface", s.ifname), zap.Error(errors.Join(errs...)))
				}
				return nil
			}
			if linkUnsupported(err, runningKernel()) {
				s.log.Warn("XDP steering: BPF links for XDP unsupported, attaching through netlink: "+
					"the program outlives the process unless Close runs",
					zap.String("interface", s.ifname), zap.Error(err))
				useNetlink = true
				errs = nil
				break
			}
			errs = append(errs, fmt.Errorf("%s XDP: %w", t.name, err))
		}
	}
	if useNetlink {
		ns, err := netns.Get()
		if err != nil {
			return fmt.Errorf("netlink attach: current network namespace: %w", err)
		}
		s.ns = ns
		for _, t := range tries {
			err := netlink.LinkSetXdpFdWithFlags(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: s.ifindex}},
				s.prog.FD(), t.netlink|unix.XDP_FLAGS_UPDATE_IF_NOEXIST)
			if err == nil {
				s.nlFlags, s.xdpMode, s.linkKind = t.netlink, t.name, "netlink"
				if len(errs) > 0 {
					s.log.Warn("XDP steering: fell back to generic XDP", zap.String("interface", s.ifname), zap.Error(errors.Join(errs...)))
				}
				return nil
			}
			errs = append(errs, fmt.Errorf("%s XDP (netlink): %w", t.name, err))
		}
	}
	err := errors.Join(errs...)
	switch {
	case errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST):
		// Another program got attached since the check in AttachSteering.
		return fmt.Errorf("attach XDP: another XDP program is attached to %s: %w", s.ifname, err)
	case mode == XDPNative:
		return fmt.Errorf("%w (use XDPAuto or XDPGeneric): %w", ErrNativeUnavailable, err)
	case mode == XDPGeneric:
		return fmt.Errorf("generic XDP is not available: %w", err)
	}
	return fmt.Errorf("attach XDP (native, then generic): %w", err)
}

// ErrNativeUnavailable is returned when XDPNative was asked for and the
// device (or its driver) has no native XDP.
var ErrNativeUnavailable = errors.New("native (driver) XDP is not available")

// linkUnsupported tells whether a link.AttachXDP error means that this
// kernel has no BPF links for XDP, the one case where attaching through
// netlink (an attachment that survives a SIGKILL) is right:
//   - cilium/ebpf's typed ebpf.ErrNotSupported: no BPF links at all
//     (before Linux 5.7);
//   - EINVAL on a kernel with BPF links but not yet for XDP (5.7 and 5.8):
//     the kernel cannot say it any other way.
//
// Any other error, an EINVAL from a driver refusing native mode on a newer
// kernel included, is a real failure of that mode and no reason to leave
// BPF links.
func linkUnsupported(err error, kernel kernelVersion) bool {
	if errors.Is(err, ebpf.ErrNotSupported) {
		return true
	}
	return errors.Is(err, unix.EINVAL) && kernel.valid() && kernel.before(5, 9)
}

// kernelVersion is the running kernel's major and minor version.
type kernelVersion struct{ major, minor int }

func (k kernelVersion) valid() bool { return k.major > 0 }

func (k kernelVersion) before(major, minor int) bool {
	return k.major < major || k.major == major && k.minor < minor
}

// runningKernel reads the kernel version from uname; zero when unreadable.
func runningKernel() kernelVersion {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return kernelVersion{}
	}
	return parseKernelRelease(unix.ByteSliceToString(u.Release[:]))
}

// parseKernelRelease reads "6.18.0-rc1..." as {6, 18}; zero when the
// release does not start with major.minor.
func parseKernelRelease(r string) kernelVersion {
	var k kernelVersion
	if _, err := fmt.Sscanf(r, "%d.%d", &k.major, &k.minor); err != nil || k.major <= 0 || k.minor < 0 {
		return kernelVersion{}
	}
	return k
}

// Register puts the AF_XDP socket fd, bound to queue of this interface, into
// the XSKMAP: frames the program accepts on that queue now go to it. The
// kernel cannot tell us how fd is bound (AF_XDP has no getsockname); a
// socket bound to another interface or queue gets nothing, and the kernel
// drops what is redirected to it.
func (s *Steering) Register(queue, fd int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("steering on %s: register queue %d: %w", s.ifname, queue, errSteeringClosed)
	}
	if queue < 0 || queue >= s.queues {
		return fmt.Errorf("steering on %s: register queue %d: out of range (the device has %d RX queues)", s.ifname, queue, s.queues)
	}
	if err := s.xsks.Put(uint32(queue), uint32(fd)); err != nil {
		return fmt.Errorf("steering on %s: register socket fd %d for queue %d: %w", s.ifname, fd, queue, err)
	}
	return nil
}

// Unregister removes the socket of queue from the XSKMAP; that queue's
// frames go to the kernel again. Unregistering an empty queue is no error.
func (s *Steering) Unregister(queue int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("steering on %s: unregister queue %d: %w", s.ifname, queue, errSteeringClosed)
	}
	if queue < 0 || queue >= s.queues {
		return fmt.Errorf("steering on %s: unregister queue %d: out of range (the device has %d RX queues)", s.ifname, queue, s.queues)
	}
	if err := s.xsks.Delete(uint32(queue)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("steering on %s: unregister queue %d: %w", s.ifname, queue, err)
	}
	return nil
}

// Mode reports how the program is attached: xdp is "native" or "generic",
// link is "bpf_link" or "netlink".
func (s *Steering) Mode() (xdp string, link string) { return s.xdpMode, s.linkKind }

// Queues is the number of RX queues (XSKMAP slots) of the interface.
func (s *Steering) Queues() int { return s.queues }

// Counters reads the program's per-CPU counters and sums them.
func (s *Steering) Counters() (SteerCounters, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return SteerCounters{}, fmt.Errorf("steering on %s: counters: %w", s.ifname, errSteeringClosed)
	}
	var sum [numCounters]uint64
	var vals []uint64
	for i := range sum {
		if err := s.counters.Lookup(uint32(i), &vals); err != nil {
			return SteerCounters{}, fmt.Errorf("steering on %s: read counter %d: %w", s.ifname, i, err)
		}
		for _, v := range vals {
			sum[i] += v
		}
	}
	return SteerCounters{
		Redirected: sum[ctrRedirected],
		Passed:     sum[ctrPassed] + sum[ctrNoSocket],
		NoSocket:   sum[ctrNoSocket],
	}, nil
}

// Close detaches the program (closing the BPF link, or through netlink)
// and frees the program and maps. It is safe to call more than once.
func (s *Steering) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.release()
	if err != nil {
		s.log.Error("XDP steering detach failed", zap.String("interface", s.ifname), zap.Error(err))
	} else {
		s.log.Info("XDP steering detached", zap.String("interface", s.ifname))
	}
	return err
}

// release detaches and closes whatever exists so far.
func (s *Steering) release() error {
	var errs []error
	if s.lnk != nil {
		if err := s.lnk.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close XDP link: %w", err))
		}
		s.lnk = nil
	}
	if s.linkKind == "netlink" {
		if err := s.netlinkDetach(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.ns >= 0 {
		s.ns.Close()
		s.ns = -1
	}
	if s.prog != nil {
		errs = append(errs, s.prog.Close())
		s.prog = nil
	}
	for _, m := range []**ebpf.Map{&s.xsks, &s.counters} {
		if *m != nil {
			errs = append(errs, (*m).Close())
			*m = nil
		}
	}
	errs = slices.DeleteFunc(errs, func(e error) bool { return e == nil })
	if len(errs) > 0 {
		return fmt.Errorf("steering on %s: %w", s.ifname, errors.Join(errs...))
	}
	return nil
}

// netlinkDetach removes the program from the interface if it is still ours,
// from inside the interface's namespace whatever thread Close runs on.
func (s *Steering) netlinkDetach() error {
	return inNetns(s.ns, func() error {
		l, err := netlink.LinkByIndex(s.ifindex)
		if err != nil {
			return fmt.Errorf("netlink detach: %w", err)
		}
		x := l.Attrs().Xdp
		if x == nil || !x.Attached {
			return nil // already gone (e.g. the interface was reset)
		}
		if x.ProgId != uint32(s.progID) {
			return fmt.Errorf("netlink detach: %s now runs XDP program id %d, not ours (%d); left in place", s.ifname, x.ProgId, s.progID)
		}
		if err := netlink.LinkSetXdpFdWithFlags(l, -1, s.nlFlags); err != nil {
			return fmt.Errorf("netlink detach from %s: %w", s.ifname, err)
		}
		return nil
	})
}

// inNetns runs fn on a locked OS thread inside ns.
func inNetns(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("current network namespace: %w", err)
			return // the thread stays locked and is discarded with the goroutine
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("leave network namespace: %w (and: %v)", err, ferr)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
