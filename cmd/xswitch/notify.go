package main

import (
	"fmt"
	"net"
	"os"
	"strings"

	"go.uber.org/zap"

	vswitch "xswitch/switch"
)

// notify sends state to the service manager (sd_notify(3)): one datagram
// on the unix socket $NOTIFY_SOCKET, which systemd sets for Type=notify
// services; an address starting with '@' is abstract (Go's net package
// maps '@' to the leading NUL). Without $NOTIFY_SOCKET it does nothing.
// The protocol is one write; no library needed.
func notify(log *zap.Logger, state string) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return
	}
	if err := sendNotify(addr, state); err != nil {
		log.Warn("cannot tell the service manager", zap.String("state", strings.ReplaceAll(state, "\n", " ")), zap.Error(err))
	}
}

func sendNotify(addr, state string) error {
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("NOTIFY_SOCKET %s: %w", addr, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("NOTIFY_SOCKET %s: %w", addr, err)
	}
	return nil
}

// readyState is the READY=1 message, with a STATUS line for
// `systemctl status`.
func readyState(st vswitch.Status) string {
	ports, tunnels := 0, 0
	for _, b := range st.Bridges {
		ports += len(b.Ports)
		tunnels += len(b.Tunnels)
	}
	return fmt.Sprintf("READY=1\nSTATUS=forwarding: %d bridges, %d ports, %d tunnels", len(st.Bridges), ports, tunnels)
}
