// Command steerhold attaches the xsk steering program to an interface of the
// network namespace it runs in, prints "attached <xdp> <link> <ifindex>" and
// holds it until killed. With -port it opens an xsk port instead: the
// steering program plus one AF_XDP socket per RX queue, on a UMEM, with the
// fill rings filled. It is the child process of the kill -9 test
// (xsk/steer_kill_test.go), run there through `ip netns exec`.
package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"

	"xswitch/xsk"
)

func main() {
	args := os.Args[1:]
	port := len(args) == 2 && args[0] == "-port"
	if port {
		args = args[1:]
	}
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: steerhold [-port] IFNAME")
		os.Exit(2)
	}
	ifi, err := net.InterfaceByName(args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if port {
		holdPort(ifi)
	}
	s, err := xsk.AttachSteering(xsk.SteerConfig{
		Ifindex:  ifi.Index,
		Role:     xsk.RoleUnderlay,
		LocalIPs: []netip.Addr{netip.MustParseAddr("198.18.0.1")},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	x, l := s.Mode()
	fmt.Printf("attached %s %s %d\n", x, l, ifi.Index)
	select {} // until killed; deliberately no Close
}

// holdPort opens a port with every queue's socket and holds it.
func holdPort(ifi *net.Interface) {
	u, err := xsk.NewUmem(xsk.UmemConfig{NumFrames: 4096})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	p, err := u.OpenPort(xsk.PortConfig{Interface: ifi.Name, Role: xsk.RoleLocal, RingSize: 512, NeedWakeup: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c := u.NewCache()
	for _, s := range p.Sockets() {
		s.Refill(c)
	}
	m := p.Mode()
	fmt.Printf("attached %s %s %d sockets %d\n", m.XDP, m.Link, ifi.Index, len(p.Sockets()))
	select {} // until killed; deliberately no Close
}
