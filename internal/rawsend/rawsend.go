// Package rawsend sends a few prebuilt frames through an AF_PACKET socket.
// The benchmark harness uses it on the control path (to teach a switch where
// a destination MAC lives: frames in the reverse direction, before a run), and
// the xdpcount test to feed the counter.
package rawsend

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// Send transmits each frame in frames, repeat times over, on ifname in the
// calling thread's network namespace (a caller that switched namespaces
// holds its OS thread locked).
func Send(ifname string, frames [][]byte, repeat int) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("rawsend: interface %s: %w", ifname, err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("rawsend: AF_PACKET socket: %w", err)
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index}
	for r := 0; r < repeat; r++ {
		for i, f := range frames {
			if err := unix.Sendto(fd, f, 0, sa); err != nil {
				return fmt.Errorf("rawsend: send frame %d on %s: %w", i, ifname, err)
			}
		}
	}
	return nil
}
