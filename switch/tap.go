package vswitch

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"xswitch/xsk"
)

// tapDev is a bridge's internal port: a TAP device (IFF_TAP|IFF_NO_PI), so
// that the host itself talks over the bridge like through OVS's internal
// port. The device lives as long as its file descriptor: closing it removes
// the interface.
type tapDev struct {
	name    string
	fd      int
	ifindex int
	mac     net.HardwareAddr
	mtu     int
	nl      *netlink.Handle // in the device's namespace, for stats
	// offloads are what TUNSETOFFLOAD accepted (tapoffload.go).
	offloads tapOffloads
}

// openTAP creates the TAP device name (non-blocking fd), sets its MAC, MTU
// and addresses and brings it up, in the namespace of the calling process.
// A nil mac is a random one.
func openTAP(name string, mac []byte, mtu int, prefixes []netip.Prefix) (*tapDev, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("internal port %s: open /dev/net/tun: %w", name, err)
	}
	t := &tapDev{name: name, fd: fd}
	if t.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
		t.close()
		return nil, fmt.Errorf("internal port %s: netlink: %w", name, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		t.close()
		return nil, fmt.Errorf("internal port %s: %w", name, err)
	}
	// IFF_VNET_HDR: every frame carries a virtio-net header, so that the
	// host stack can hand over 64 KB TCP frames and unfinished checksums.
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		t.close()
		return nil, fmt.Errorf("internal port %s: TUNSETIFF: %w", name, err)
	}
	if t.offloads, err = enableTAPOffloads(fd); err != nil {
		t.close()
		return nil, fmt.Errorf("internal port %s: %w", name, err)
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		t.close()
		return nil, fmt.Errorf("internal port %s: %w", name, err)
	}
	t.ifindex = link.Attrs().Index
	if mac == nil {
		mac = randomMAC() // the switch passes a stable one (machinemac.go)
	}
	t.mac = net.HardwareAddr(mac)
	if err := netlink.LinkSetHardwareAddr(link, t.mac); err != nil {
		t.close()
		return nil, fmt.Errorf("internal port %s: set MAC %s: %w", name, t.mac, err)
	}
	if mtu > 0 {
		if err := netlink.LinkSetMTU(link, mtu); err != nil {
			t.close()
			return nil, fmt.Errorf("internal port %s: set MTU %d: %w", name, mtu, err)
		}
		t.mtu = mtu
	} else {
		t.mtu = link.Attrs().MTU
	}
	for _, p := range prefixes {
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(link, a); err != nil {
			t.close()
			return nil, fmt.Errorf("internal port %s: add address %v: %w", name, p, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		t.close()
		return nil, fmt.Errorf("internal port %s: set up: %w", name, err)
	}
	return t, nil
}

// stats reads the device's kernel counters: TxDropped counts frames the
// host sent that the kernel could not queue to xswitch.
func (t *tapDev) stats() (xsk.DeviceStats, error) {
	st, err := xsk.ReadDeviceStats(t.nl, t.ifindex)
	if err != nil {
		return st, fmt.Errorf("internal port %s: %w", t.name, err)
	}
	return st, nil
}

// close removes the device.
func (t *tapDev) close() error {
	if t.nl != nil {
		t.nl.Close()
		t.nl = nil
	}
	if t.fd < 0 {
		return nil
	}
	err := unix.Close(t.fd)
	t.fd = -1
	return err
}
