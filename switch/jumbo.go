package vswitch

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// umem.multi_buffer settings (UMEMConfig.MultiBuffer).
const (
	MultiBufferAuto = "auto"
	MultiBufferOn   = "on"
	MultiBufferOff  = "off"
)

// frameOverhead is what a frame carries beyond the MTU: the Ethernet
// header and one VLAN tag.
const frameOverhead = 14 + 4

// MaxJumboMTU is the largest MTU of a multi-buffer port: the common jumbo
// maximum. A frame of it is copied whole into the poller's jumbo buffer
// (multibuf.go), which is sized for it.
const MaxJumboMTU = 9216

// umemFrameSizes are the UMEM frame sizes xswitch offers (aligned AF_XDP
// chunks: at most a page).
var umemFrameSizes = []int{2048, 4096}

// maxMTU is the largest MTU whose frames fit one UMEM frame of frameSize
// after the kernel's XDP headroom and the UMEM headroom.
func maxMTU(frameSize, headroom int) int {
	return frameSize - unix.XDP_PACKET_HEADROOM - headroom - frameOverhead
}

// checkFrameFit says whether a port's MTU needs AF_XDP multi-buffer
// (frames across several UMEM frames), or refuses it: over MaxJumboMTU, or
// longer than one frame with umem.multi_buffer: off. The error names the
// MTU that works.
func checkFrameFit(kind portKind, name string, mtu, frameSize, headroom int, mb string) (needMB bool, err error) {
	if frameSize == 0 {
		frameSize = umemFrameSizes[0] // xsk's default
	}
	fit := maxMTU(frameSize, headroom)
	switch {
	case mtu <= fit:
		return false, nil
	case mtu > MaxJumboMTU:
		return false, fmt.Errorf("%s port %s: MTU %d is more than the %d xswitch forwards: lower it (ip link set %s mtu %d)",
			kind, name, mtu, MaxJumboMTU, name, MaxJumboMTU)
	case mb == MultiBufferOff:
		msg := fmt.Sprintf("%s port %s: MTU %d needs frames of %d bytes, but a %d-byte UMEM frame holds %d after the %d-byte XDP headroom and umem.multi_buffer is off: set umem.multi_buffer: auto, or lower the MTU to %d (ip link set %s mtu %d)",
			kind, name, mtu, mtu+frameOverhead, frameSize, frameSize-unix.XDP_PACKET_HEADROOM-headroom, unix.XDP_PACKET_HEADROOM, fit, name, fit)
		for _, fs := range umemFrameSizes {
			if fs > frameSize && mtu <= maxMTU(fs, headroom) {
				msg += fmt.Sprintf(", or set umem.frame_size: %d (MTU up to %d)", fs, maxMTU(fs, headroom))
			}
		}
		return false, fmt.Errorf("%s", msg)
	}
	return true, nil
}

// checkMultiBuffer refuses a port that needs multi-buffer on a UMEM made
// without it (no port needed it at start and umem.multi_buffer is auto).
func (d *dataPlane) checkMultiBuffer(pr *portRes, mtu int) error {
	if !d.needMB[pr.id] || d.umem == nil || d.umem.MultiBuffer() {
		return nil
	}
	fit := maxMTU(d.s.cfg.UMEM.FrameSize, 0)
	return fmt.Errorf("%s port %s: MTU %d needs AF_XDP multi-buffer, but the UMEM was made without it (no port needed it at start): set umem.multi_buffer: on and restart, or lower the MTU to %d (ip link set %s mtu %d)",
		pr.kind, pr.name, mtu, fit, pr.name, fit)
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
