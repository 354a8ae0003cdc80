package xsk

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ethtoolChannels is struct ethtool_channels.
type ethtoolChannels struct {
	Cmd           uint32
	MaxRx         uint32
	MaxTx         uint32
	MaxOther      uint32
	MaxCombined   uint32
	RxCount       uint32
	TxCount       uint32
	OtherCount    uint32
	CombinedCount uint32
}

// ethtoolIfreq is struct ifreq with ifr_data.
type ethtoolIfreq struct {
	Name [unix.IFNAMSIZ]byte
	Data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

const ethtoolGChannels = 0x0000003c // ETHTOOL_GCHANNELS

// QueueCount returns the number of RX queues of the device named ifname in
// the network namespace of the calling thread: the RX plus combined
// channels from ETHTOOL_GCHANNELS, or, for a driver without channel
// support, IFLA_NUM_RX_QUEUES from rtnetlink. Both are namespace-correct,
// unlike /sys/class/net, which shows the namespace sysfs was mounted in.
// A caller that switched namespaces must hold its OS thread locked.
func QueueCount(ifname string) (int, error) {
	n, err := ethtoolRxQueues(ifname)
	if err == nil && n > 0 {
		return n, nil
	}
	if err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
		return 0, fmt.Errorf("queue count of %s: %w", ifname, err)
	}
	h, herr := netlink.NewHandle(unix.NETLINK_ROUTE)
	if herr != nil {
		return 0, fmt.Errorf("queue count of %s: netlink: %w", ifname, herr)
	}
	defer h.Close()
	return netlinkRxQueues(h, ifname)
}

func netlinkRxQueues(h *netlink.Handle, ifname string) (int, error) {
	l, err := h.LinkByName(ifname)
	if err != nil {
		return 0, fmt.Errorf("queue count of %s: %w", ifname, err)
	}
	if n := l.Attrs().NumRxQueues; n > 0 {
		return n, nil
	}
	return 1, nil // a device that reports no queue count has one
}

// ethtoolRxQueues asks the driver for its active RX channels.
func ethtoolRxQueues(ifname string) (int, error) {
	if len(ifname) == 0 || len(ifname) >= unix.IFNAMSIZ {
		return 0, fmt.Errorf("invalid interface name %q", ifname)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("socket for ethtool: %w", err)
	}
	defer unix.Close(fd)
	ch := ethtoolChannels{Cmd: ethtoolGChannels}
	var ifr ethtoolIfreq
	copy(ifr.Name[:], ifname)
	ifr.Data = unsafe.Pointer(&ch)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return 0, fmt.Errorf("ETHTOOL_GCHANNELS on %s: %w", ifname, errno)
	}
	return int(ch.RxCount + ch.CombinedCount), nil
}
