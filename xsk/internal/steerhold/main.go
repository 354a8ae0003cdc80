// Command steerhold attaches the xsk steering program to an interface of the
// network namespace it runs in, prints "attached <xdp> <link> <ifindex>" and
// holds it until killed. It is the child process of the steering kill -9
// test (xsk/steer_kill_test.go), run there through `ip netns exec`.
package main

import (
	"fmt"
	"net"
	"net/netip"
	"os"

	"xswitch/xsk"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: steerhold IFNAME")
		os.Exit(2)
	}
	ifi, err := net.InterfaceByName(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
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
