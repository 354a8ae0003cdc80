package xsk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"xswitch/internal/testnet"
)

// steerNet is two namespaces joined by a veth: "sa0" in A (where the
// program runs) and "sb0" in B (the sender).
type steerNet struct {
	n      *testnet.Net
	a, b   string
	ifA    string
	idxA   int
	queues int
}

func newSteerNet(t *testing.T, queues int) *steerNet {
	t.Helper()
	n := testnet.New(t)
	sn := &steerNet{n: n, a: n.NS("sa"), b: n.NS("sb"), ifA: "sa0", queues: queues}
	n.Veth(sn.a, "sa0", sn.b, "sb0", queues)
	n.Run(sn.a, "ip", "addr", "add", "198.18.0.1/24", "dev", "sa0")
	n.Run(sn.a, "ip", "addr", "add", "198.18.0.3/24", "dev", "sa0")
	n.Run(sn.a, "ip", "addr", "add", "2001:2::1/64", "dev", "sa0", "nodad")
	n.Run(sn.a, "ip", "addr", "add", "2001:2::3/64", "dev", "sa0", "nodad")
	n.Run(sn.b, "ip", "addr", "add", "198.18.0.2/24", "dev", "sb0")
	n.Run(sn.b, "ip", "addr", "add", "2001:2::2/64", "dev", "sb0", "nodad")
	if err := testnet.Do(sn.a, func() error {
		ifi, err := net.InterfaceByName("sa0")
		if err != nil {
			return err
		}
		sn.idxA = ifi.Index
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return sn
}

func (sn *steerNet) macA(t *testing.T) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	if err := testnet.Do(sn.a, func() error {
		ifi, err := net.InterfaceByName("sa0")
		if err == nil {
			mac = ifi.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return mac
}

// steerSendRaw writes frame (its MACs replaced by B's and A's) on sb0 in B.
func steerSendRaw(t *testing.T, sn *steerNet, frame []byte) {
	t.Helper()
	copy(frame[0:6], sn.macA(t))
	if err := testnet.Do(sn.b, func() error {
		ifi, err := net.InterfaceByName("sb0")
		if err != nil {
			return err
		}
		copy(frame[6:12], ifi.HardwareAddr)
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6})
	}); err != nil {
		t.Fatalf("raw send in %s: %v", sn.b, err)
	}
}

// attach runs AttachSteering inside A and closes it at cleanup.
func (sn *steerNet) attach(t *testing.T, c SteerConfig) *Steering {
	t.Helper()
	s, err := sn.tryAttach(c)
	if err != nil {
		t.Fatalf("AttachSteering: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func (sn *steerNet) tryAttach(c SteerConfig) (s *Steering, err error) {
	if c.Ifindex == 0 {
		c.Ifindex = sn.idxA
	}
	derr := testnet.Do(sn.a, func() error {
		s, err = AttachSteering(c)
		return nil
	})
	if derr != nil {
		return nil, derr
	}
	return s, err
}

// xdpShown returns the XDP part of `ip link show` of dev in ns ("" if none).
func steerXDPShown(t *testing.T, ns, dev string) string {
	t.Helper()
	out, err := testnet.Try(ns, "ip", "-d", "link", "show", "dev", dev)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "prog/xdp") {
			return l
		}
	}
	return ""
}

func TestSteerQueueCount(t *testing.T) {
	sn := newSteerNet(t, 3)
	var got, gotB int
	if err := testnet.Do(sn.a, func() (err error) {
		got, err = QueueCount("sa0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if got != 3 {
		t.Errorf("QueueCount(sa0) in its namespace = %d, want 3", got)
	}
	// A device without ethtool channel support (a bridge): the netlink count.
	sn.n.Run(sn.b, "ip", "link", "add", "sd0", "numrxqueues", "2", "type", "bridge")
	if err := testnet.Do(sn.b, func() (err error) {
		gotB, err = QueueCount("sd0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if gotB != 2 {
		t.Errorf("QueueCount(sd0 bridge) = %d, want 2", gotB)
	}
	if err := testnet.Do(sn.a, func() error {
		_, err := QueueCount("nosuch0")
		if err == nil {
			return errors.New("QueueCount of a missing interface: no error")
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

// steerListen opens a kernel UDP socket in ns on addr ("[::]:6081" is dual-stack).
func steerListen(t *testing.T, ns, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := testnet.Do(ns, func() error {
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp", ua)
		return err
	}); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// steerSend sends payload from ns to dst (host:port) over UDP; setopt, if
// not nil, runs on the socket first.
func steerSend(t *testing.T, ns, dst string, payload []byte, setopt func(fd int) error) {
	t.Helper()
	if err := testnet.Do(ns, func() error {
		ua, err := net.ResolveUDPAddr("udp", dst)
		if err != nil {
			return err
		}
		c, err := net.DialUDP("udp", nil, ua)
		if err != nil {
			return err
		}
		defer c.Close()
		if setopt != nil {
			rc, err := c.SyscallConn()
			if err != nil {
				return err
			}
			var serr error
			if err := rc.Control(func(fd uintptr) { serr = setopt(int(fd)) }); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("socket option: %w", serr)
			}
		}
		_, err = c.Write(payload)
		return err
	}); err != nil {
		t.Fatalf("send to %s from %s: %v", dst, ns, err)
	}
}

// steerKernelGot reads datagrams from c for up to wait and reports whether
// one equal to payload arrived.
func steerKernelGot(c *net.UDPConn, payload []byte, wait time.Duration) bool {
	buf := make([]byte, 9000)
	deadline := time.Now().Add(wait)
	for {
		c.SetReadDeadline(deadline)
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			return false
		}
		if bytes.Equal(buf[:n], payload) {
			return true
		}
	}
}

// steerXskGot reports whether one of frames carries marker; it returns the frame.
func steerXskGot(frames [][]byte, marker []byte) []byte {
	for _, f := range frames {
		if bytes.Contains(f, marker) {
			return f
		}
	}
	return nil
}

// steerOpenSockets binds a test AF_XDP socket to every queue of the
// interface (inside ns A) and registers it.
func steerOpenSockets(t *testing.T, sn *steerNet, s *Steering) []*steerRx {
	t.Helper()
	var rxs []*steerRx
	if err := testnet.Do(sn.a, func() error {
		for q := 0; q < s.Queues(); q++ {
			r, err := newSteerRx(sn.idxA, q)
			if err != nil {
				return err
			}
			rxs = append(rxs, r)
			if err := s.Register(q, r.fd); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("AF_XDP sockets: %v", err)
	}
	t.Cleanup(func() {
		for _, r := range rxs {
			r.Close()
		}
	})
	return rxs
}

func steerPing(t *testing.T, ns string, args ...string) {
	t.Helper()
	out, err := testnet.Try(ns, "ping", append([]string{"-c", "2", "-i", "0.2", "-W", "2"}, args...)...)
	if err != nil {
		t.Errorf("ping %v through the steering program: %v", args, err)
		return
	}
	if !strings.Contains(out, " 0% packet loss") {
		t.Errorf("ping %v: %s", args, out)
	}
}

func TestSteerUnderlay(t *testing.T) {
	sn := newSteerNet(t, 2)
	local := []netip.Addr{netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.7.1"), netip.MustParseAddr("2001:2::1")}
	s := sn.attach(t, SteerConfig{Role: RoleUnderlay, LocalIPs: local})
	if x, l := s.Mode(); x != "native" || l != "bpf_link" {
		t.Errorf("Mode() = %s, %s; want native, bpf_link on veth", x, l)
	}
	if s.Queues() != 2 {
		t.Fatalf("Queues() = %d, want 2", s.Queues())
	}
	rxs := steerOpenSockets(t, sn, s)
	k6081 := steerListen(t, sn.a, "[::]:6081")
	k6082 := steerListen(t, sn.a, "[::]:6082")

	// ARP, neighbour discovery and ICMP reach the kernel.
	steerPing(t, sn.b, "198.18.0.1")
	steerPing(t, sn.b, "-6", "2001:2::1")

	type send struct {
		name     string
		dst      string
		size     int
		setopt   func(fd int) error
		toSocket bool
		kernel   *net.UDPConn
	}
	ipOptions := func(fd int) error {
		return unix.SetsockoptString(fd, unix.IPPROTO_IP, unix.IP_OPTIONS, "\x01\x01\x01\x01\x01\x01\x01\x00")
	}
	sends := []send{
		{name: "v4 geneve", dst: "198.18.0.1:6081", size: 64, toSocket: true, kernel: k6081},
		{name: "v4 geneve with IP options", dst: "198.18.0.1:6081", size: 64, setopt: ipOptions, toSocket: true, kernel: k6081},
		{name: "v4 other port", dst: "198.18.0.1:6082", size: 64, kernel: k6082},
		{name: "v4 6081 to another address", dst: "198.18.0.3:6081", size: 64, kernel: k6081},
		{name: "v4 fragmented geneve", dst: "198.18.0.1:6081", size: 3000, kernel: k6081},
		{name: "v6 geneve", dst: "[2001:2::1]:6081", size: 64, toSocket: true, kernel: k6081},
		{name: "v6 other port", dst: "[2001:2::1]:6082", size: 64, kernel: k6082},
		{name: "v6 6081 to another address", dst: "[2001:2::3]:6081", size: 64, kernel: k6081},
		{name: "v6 fragmented geneve", dst: "[2001:2::1]:6081", size: 3000, kernel: k6081},
	}
	var all [][]byte
	wantRedirected := 0
	for i, c := range sends {
		marker := []byte(fmt.Sprintf("steer-test-%02d-%s", i, c.name))
		payload := bytes.Repeat([]byte{0xa5}, c.size)
		copy(payload[8:], marker) // after an 8-byte "Geneve header"
		copy(payload, []byte{0x00, 0x00, 0x65, 0x58, 0x00, 0x00, 0x00, 0x00})
		steerSend(t, sn.b, c.dst, payload, c.setopt)
		frames := steerCollect(rxs, 300*time.Millisecond, 3*time.Second)
		all = append(all, frames...)
		f := steerXskGot(frames, marker)
		gotKernel := steerKernelGot(c.kernel, payload, map[bool]time.Duration{true: 200 * time.Millisecond, false: 3 * time.Second}[c.toSocket])
		switch {
		case c.toSocket && f == nil:
			t.Errorf("%s: did not arrive at the AF_XDP socket", c.name)
		case c.toSocket && gotKernel:
			t.Errorf("%s: reached the kernel UDP socket, want only the AF_XDP socket", c.name)
		case !c.toSocket && f != nil:
			t.Errorf("%s: arrived at the AF_XDP socket, want the kernel", c.name)
		case !c.toSocket && !gotKernel:
			t.Errorf("%s: did not reach the kernel UDP socket", c.name)
		}
		if c.toSocket {
			wantRedirected++
		}
		if f != nil && c.setopt != nil {
			if ihl := f[14] & 0x0f; ihl != 7 {
				t.Errorf("%s: IHL %d in the received frame, want 7 (8 option bytes)", c.name, ihl)
			}
		}
	}
	// 802.1Q-tagged Geneve (this kernel has no 8021q module for a VLAN
	// device, so B writes the tagged frames through a packet socket).
	for i, dst := range []netip.Addr{netip.MustParseAddr("198.18.7.1"), netip.MustParseAddr("2001:2::1")} {
		marker := []byte(fmt.Sprintf("steer-test-vlan-%d", i))
		f := steerFrame{vlan: true, dst: dst, dport: 6081, payload: 64}.bytes()
		copy(f[len(f)-len(marker):], marker)
		steerSendRaw(t, sn, f)
		frames := steerCollect(rxs, 300*time.Millisecond, 3*time.Second)
		all = append(all, frames...)
		got := steerXskGot(frames, marker)
		if got == nil {
			t.Errorf("802.1Q-tagged Geneve to %v did not arrive at the AF_XDP socket", dst)
			continue
		}
		wantRedirected++
		if et := binary.BigEndian.Uint16(got[12:]); et != 0x8100 {
			t.Errorf("tagged frame arrived with EtherType %#x, want 0x8100", et)
		}
	}
	// Nothing else reached the sockets, and the counters agree.
	for _, f := range all {
		if !steerReference(f, local) {
			t.Errorf("AF_XDP socket got a frame the rule does not admit: % x", f[:min(len(f), 64)])
		}
	}
	if len(all) != wantRedirected {
		t.Errorf("AF_XDP sockets got %d frames, want %d", len(all), wantRedirected)
	}
	c, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("counters: %+v", c)
	if c.Redirected != uint64(wantRedirected) || c.NoSocket != 0 || c.Passed == 0 {
		t.Errorf("counters %+v: want Redirected %d, NoSocket 0, Passed > 0", c, wantRedirected)
	}

	// Without sockets in the map, Geneve falls back to the kernel (not dropped).
	for q := 0; q < s.Queues(); q++ {
		if err := s.Unregister(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Unregister(0); err != nil {
		t.Errorf("second Unregister: %v", err)
	}
	payload := []byte("geneve-without-socket")
	steerSend(t, sn.b, "198.18.0.1:6081", payload, nil)
	if !steerKernelGot(k6081, payload, 3*time.Second) {
		t.Error("Geneve on a queue without a socket did not reach the kernel")
	}
	if f := steerCollect(rxs, 200*time.Millisecond, time.Second); len(f) != 0 {
		t.Errorf("unregistered sockets still got %d frames", len(f))
	}
	c2, err := s.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c2.NoSocket != 1 || c2.Redirected != c.Redirected {
		t.Errorf("counters after unregister %+v: want NoSocket 1, Redirected %d", c2, c.Redirected)
	}
	if err := s.Register(s.Queues(), rxs[0].fd); err == nil {
		t.Error("Register of a queue beyond the device accepted")
	}
}

func TestSteerLocalRedirectsEverything(t *testing.T) {
	sn := newSteerNet(t, 2)
	s := sn.attach(t, SteerConfig{Role: RoleLocal})
	rxs := steerOpenSockets(t, sn, s)
	k6082 := steerListen(t, sn.a, "[::]:6082")
	sn.n.Run(sn.b, "ip", "neigh", "replace", "198.18.0.1", "lladdr", sn.macA(t).String(), "dev", "sb0", "nud", "permanent")

	payload := []byte("steer-local-udp-6082")
	steerSend(t, sn.b, "198.18.0.1:6082", payload, nil)
	// An unresolved neighbour makes B broadcast ARP requests.
	steerSend(t, sn.b, "198.18.0.77:9", []byte("x"), nil)
	frames := steerCollect(rxs, 500*time.Millisecond, 5*time.Second)
	if steerXskGot(frames, payload) == nil {
		t.Error("UDP to port 6082 did not arrive at the AF_XDP socket")
	}
	if steerKernelGot(k6082, payload, 200*time.Millisecond) {
		t.Error("UDP reached the kernel on a local port")
	}
	arp := 0
	for _, f := range frames {
		if len(f) >= 14 && binary.BigEndian.Uint16(f[12:]) == 0x0806 {
			arp++
		}
	}
	if arp == 0 {
		t.Error("no ARP request arrived at the AF_XDP sockets")
	}
	// Counters settle once traffic (B's IPv6 chatter included) stops.
	for i := 0; ; i++ {
		c1, err := s.Counters()
		if err != nil {
			t.Fatal(err)
		}
		more := steerCollect(rxs, 300*time.Millisecond, 2*time.Second)
		frames = append(frames, more...)
		c2, err := s.Counters()
		if err != nil {
			t.Fatal(err)
		}
		if c1 == c2 && len(more) == 0 {
			t.Logf("counters: %+v, frames received: %d (%d ARP)", c2, len(frames), arp)
			// Passed counts only the frames that came before the sockets were
			// registered (NoSocket): the role filter passes nothing.
			if c2.Passed != c2.NoSocket || c2.Redirected != uint64(len(frames)) {
				t.Errorf("counters %+v: want Passed == NoSocket, Redirected %d", c2, len(frames))
			}
			break
		}
		if i == 10 {
			t.Fatalf("traffic does not settle: %+v then %+v", c1, c2)
		}
	}
}

// steerForeignProg loads a trivial XDP_PASS program.
func steerForeignProg(t *testing.T) *ebpf.Program {
	t.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpPass), asm.Return()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func steerProgID(t *testing.T, p *ebpf.Program) uint32 {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return uint32(id)
}

func TestSteerAttachModes(t *testing.T) {
	sn := newSteerNet(t, 1)
	// A bridge has no native XDP (this kernel has no dummy module).
	sn.n.Run(sn.a, "ip", "link", "add", "sd0", "type", "bridge")
	sn.n.Run(sn.a, "ip", "link", "set", "sd0", "up")
	var idxDummy int
	if err := testnet.Do(sn.a, func() error {
		ifi, err := net.InterfaceByName("sd0")
		if err == nil {
			idxDummy = ifi.Index
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		ifindex  int
		dev      string
		mode     XDPMode
		netlink  bool
		wantXDP  string
		wantLink string
		wantErr  []string
	}{
		{name: "veth auto", dev: "sa0", mode: XDPAuto, wantXDP: "native", wantLink: "bpf_link"},
		{name: "veth native", dev: "sa0", mode: XDPNative, wantXDP: "native", wantLink: "bpf_link"},
		{name: "veth generic", dev: "sa0", mode: XDPGeneric, wantXDP: "generic", wantLink: "bpf_link"},
		{name: "bridge auto falls back to generic", ifindex: idxDummy, dev: "sd0", mode: XDPAuto, wantXDP: "generic", wantLink: "bpf_link"},
		{name: "bridge generic", ifindex: idxDummy, dev: "sd0", mode: XDPGeneric, wantXDP: "generic", wantLink: "bpf_link"},
		{name: "bridge native refused", ifindex: idxDummy, dev: "sd0", mode: XDPNative, wantErr: []string{"native", "not available", "sd0"}},
		{name: "netlink veth auto", dev: "sa0", mode: XDPAuto, netlink: true, wantXDP: "native", wantLink: "netlink"},
		{name: "netlink veth native", dev: "sa0", mode: XDPNative, netlink: true, wantXDP: "native", wantLink: "netlink"},
		{name: "netlink veth generic", dev: "sa0", mode: XDPGeneric, netlink: true, wantXDP: "generic", wantLink: "netlink"},
		{name: "netlink bridge auto", ifindex: idxDummy, dev: "sd0", mode: XDPAuto, netlink: true, wantXDP: "generic", wantLink: "netlink"},
		{name: "netlink bridge native refused", ifindex: idxDummy, dev: "sd0", mode: XDPNative, netlink: true, wantErr: []string{"native", "not available", "sd0"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			forceNetlink = c.netlink
			defer func() { forceNetlink = false }()
			s, err := sn.tryAttach(SteerConfig{Ifindex: c.ifindex, Role: RoleLocal, Mode: c.mode})
			if c.wantErr != nil {
				if err == nil {
					s.Close()
					t.Fatalf("attach succeeded (%v), want an error", c.mode)
				}
				t.Logf("error: %v", err)
				for _, w := range c.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				if x := steerXDPShown(t, sn.a, c.dev); x != "" {
					t.Errorf("after a failed attach %s shows %q", c.dev, x)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if x, l := s.Mode(); x != c.wantXDP || l != c.wantLink {
				t.Errorf("Mode() = %s, %s; want %s, %s", x, l, c.wantXDP, c.wantLink)
			}
			shown := steerXDPShown(t, sn.a, c.dev)
			if !strings.Contains(shown, fmt.Sprintf("id %d", s.progID)) {
				t.Errorf("ip link shows %q, want our program id %d", shown, s.progID)
			}
			// iproute2 names the mode: "xdp" (native) or "xdpgeneric".
			out := sn.n.Run(sn.a, "ip", "link", "show", "dev", c.dev)
			wantWord := map[string]string{"native": " xdp ", "generic": " xdpgeneric"}[c.wantXDP]
			if !strings.Contains(out, wantWord) {
				t.Errorf("ip link show %s: %q, want %q", c.dev, out, wantWord)
			}
			if err := s.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if x := steerXDPShown(t, sn.a, c.dev); x != "" {
				t.Errorf("after Close %s still shows %q", c.dev, x)
			}
		})
	}
}

func TestSteerRefusesForeignProgram(t *testing.T) {
	sn := newSteerNet(t, 1)
	foreign := steerForeignProg(t)
	fid := steerProgID(t, foreign)
	wantWords := []string{"sa0", fmt.Sprintf("program id %d", fid), "refusing"}
	check := func(how string) {
		t.Helper()
		s, err := sn.tryAttach(SteerConfig{Role: RoleLocal})
		if err == nil {
			s.Close()
			t.Fatalf("%s: AttachSteering replaced a foreign program", how)
		}
		t.Logf("%s: %v", how, err)
		for _, w := range wantWords {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not say %q", how, err, w)
			}
		}
		if shown := steerXDPShown(t, sn.a, "sa0"); !strings.Contains(shown, fmt.Sprintf("id %d", fid)) {
			t.Errorf("%s: foreign program no longer attached: %q", how, shown)
		}
	}

	// Foreign program through a BPF link.
	var l link.Link
	if err := testnet.Do(sn.a, func() (err error) {
		l, err = link.AttachXDP(link.XDPOptions{Program: foreign, Interface: sn.idxA, Flags: link.XDPGenericMode})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	check("foreign bpf_link")
	forceNetlink = true
	check("foreign bpf_link, netlink mode")
	forceNetlink = false
	l.Close()

	// Foreign program through netlink (native mode).
	if err := testnet.Do(sn.a, func() error {
		return netlink.LinkSetXdpFdWithFlags(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: sn.idxA}}, foreign.FD(), unix.XDP_FLAGS_DRV_MODE)
	}); err != nil {
		t.Fatal(err)
	}
	check("foreign netlink")
	if err := testnet.Do(sn.a, func() error {
		return netlink.LinkSetXdpFdWithFlags(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: sn.idxA}}, -1, unix.XDP_FLAGS_DRV_MODE)
	}); err != nil {
		t.Fatal(err)
	}

	// Our own steering counts as taken too: a second one is refused.
	s := sn.attach(t, SteerConfig{Role: RoleLocal})
	fid = uint32(s.progID)
	wantWords = []string{"sa0", fmt.Sprintf("program id %d", fid)}
	check("second steering")
}

// TestSteerCloseDetaches checks both attach kinds, closing from a goroutine
// that is not in the interface's namespace (the netlink detach must find it).
func TestSteerCloseDetaches(t *testing.T) {
	sn := newSteerNet(t, 2)
	for _, nl := range []bool{false, true} {
		forceNetlink = nl
		s, err := sn.tryAttach(SteerConfig{Role: RoleUnderlay, LocalIPs: []netip.Addr{netip.MustParseAddr("198.18.0.1")}})
		forceNetlink = false
		if err != nil {
			t.Fatalf("netlink=%v: %v", nl, err)
		}
		_, kind := s.Mode()
		if want := map[bool]string{false: "bpf_link", true: "netlink"}[nl]; kind != want {
			t.Errorf("link kind %q, want %q", kind, want)
		}
		if shown := steerXDPShown(t, sn.a, "sa0"); !strings.Contains(shown, fmt.Sprintf("id %d", s.progID)) {
			t.Fatalf("%s: ip link shows %q, want program %d", kind, shown, s.progID)
		}
		// Traffic still flows to the kernel while attached.
		steerPing(t, sn.b, "198.18.0.1")
		done := make(chan error, 1)
		go func() { done <- s.Close() }()
		if err := <-done; err != nil {
			t.Errorf("%s: Close: %v", kind, err)
		}
		if shown := steerXDPShown(t, sn.a, "sa0"); shown != "" {
			t.Errorf("%s: after Close ip link still shows %q", kind, shown)
		}
		if err := s.Close(); err != nil {
			t.Errorf("%s: second Close: %v", kind, err)
		}
		if err := s.Register(0, 1); err == nil {
			t.Errorf("%s: Register after Close accepted", kind)
		}
		if _, err := s.Counters(); err == nil {
			t.Errorf("%s: Counters after Close: no error", kind)
		}
	}
}
