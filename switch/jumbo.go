package vswitch

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// frameOverhead is what a frame carries beyond the MTU: the Ethernet
// header and one VLAN tag.
const frameOverhead = 14 + 4

// umemFrameSizes are the UMEM frame sizes xswitch offers (aligned AF_XDP
// chunks: at most a page).
var umemFrameSizes = []int{2048, 4096}

// maxMTU is the largest MTU whose frames fit one UMEM frame of frameSize
// after the kernel's XDP headroom and the UMEM headroom.
func maxMTU(frameSize, headroom int) int {
	return frameSize - unix.XDP_PACKET_HEADROOM - headroom - frameOverhead
}

// checkFrameFit refuses a port whose MTU makes frames longer than one UMEM
// frame: xswitch has no AF_XDP multi-buffer (XDP_USE_SG) yet, and the
// kernel would drop every longer frame. The error names the MTU that works
// and the frame size that would be needed.
func checkFrameFit(kind portKind, name string, mtu, frameSize, headroom int) error {
	if frameSize == 0 {
		frameSize = umemFrameSizes[0] // xsk's default
	}
	if mtu <= maxMTU(frameSize, headroom) {
		return nil
	}
	need := mtu + frameOverhead + unix.XDP_PACKET_HEADROOM + headroom
	msg := fmt.Sprintf("%s port %s: MTU %d needs frames of %d bytes, but a %d-byte UMEM frame holds %d after the %d-byte XDP headroom, and xswitch does not use AF_XDP multi-buffer (frames across several UMEM frames) yet: lower the MTU to %d (ip link set %s mtu %d)",
		kind, name, mtu, mtu+frameOverhead, frameSize, frameSize-unix.XDP_PACKET_HEADROOM-headroom, unix.XDP_PACKET_HEADROOM, maxMTU(frameSize, headroom), name, maxMTU(frameSize, headroom))
	for _, fs := range umemFrameSizes {
		if fs > frameSize && mtu <= maxMTU(fs, headroom) {
			return fmt.Errorf("%s, or set umem.frame_size: %d (MTU up to %d)", msg, fs, maxMTU(fs, headroom))
		}
	}
	big := umemFrameSizes[len(umemFrameSizes)-1]
	if frameSize < big {
		msg += fmt.Sprintf(", or set umem.frame_size: %d for an MTU up to %d", big, maxMTU(big, headroom))
	}
	return fmt.Errorf("%s; MTU %d would need umem.frame_size of at least %d, more than the %d AF_XDP allows (a page)", msg, mtu, need, big)
}

// portMTU is the MTU of an AF_XDP port (the underlay's is known already).
func (d *dataPlane) portMTU(kind portKind, name string) (int, error) {
	if kind == kindUnderlay && d.s.underlayMTU > 0 {
		return d.s.underlayMTU, nil
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("%s port %s: %w", kind, name, err)
	}
	return l.Attrs().MTU, nil
}
