package xsk

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// DeviceStats are the kernel's counters of a network device (struct
// rtnl_link_stats64, through netlink) that tell where frames were lost
// outside the sockets' own statistics.
type DeviceStats struct {
	RxPackets uint64
	TxPackets uint64
	// RxDropped: frames the device dropped on receive. On a veth with
	// native XDP this includes redirects to a socket that failed (the
	// socket's RxDropped/RxRingFull count the same frames).
	RxDropped uint64
	// TxDropped: frames the device dropped on transmit. On a TAP device:
	// frames the kernel could not queue to the reader (its queue was full).
	TxDropped uint64
	RxErrors  uint64
	TxErrors  uint64
	RxMissed  uint64 // the NIC ran out of receive buffers
}

// ReadDeviceStats reads the counters of ifindex through h (whose socket
// belongs to the device's network namespace).
func ReadDeviceStats(h *netlink.Handle, ifindex int) (DeviceStats, error) {
	if h == nil {
		return DeviceStats{}, errors.New("device statistics: no netlink handle")
	}
	l, err := h.LinkByIndex(ifindex)
	if err != nil {
		return DeviceStats{}, fmt.Errorf("device statistics of ifindex %d: %w", ifindex, err)
	}
	s := l.Attrs().Statistics
	if s == nil {
		return DeviceStats{}, fmt.Errorf("device statistics of %s: the kernel sent none", l.Attrs().Name)
	}
	return DeviceStats{
		RxPackets: s.RxPackets, TxPackets: s.TxPackets, RxDropped: s.RxDropped, TxDropped: s.TxDropped,
		RxErrors: s.RxErrors, TxErrors: s.TxErrors, RxMissed: s.RxMissedErrors,
	}, nil
}

// DeviceStats reads the counters of the port's device.
func (p *Port) DeviceStats() (DeviceStats, error) {
	st, err := ReadDeviceStats(p.nl, p.ifindex)
	if err != nil {
		return st, fmt.Errorf("port %s: %w", p.name, err)
	}
	return st, nil
}
