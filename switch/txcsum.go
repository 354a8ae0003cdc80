package vswitch

import (
	"fmt"
	"net"
	"sync/atomic"

	"github.com/vishvananda/netlink"

	"xswitch/xsk"
)

// TX checksum offload through AF_XDP TX metadata (docs/offload.md): where
// an AF_XDP port's device computes TCP/UDP checksums (xsk tx-checksum), or
// where tx_checksum_offload: on makes the kernel compute them in copy mode
// (XDP_UMEM_TX_SW_CSUM), the forwarding core asks for the one checksum a
// frame needs instead of summing the payload itself:
//   - toward a tunnel whose outer UDP checksum is computed (IPv6): the outer
//     checksum (a partial inner checksum is finished in software first:
//     the device does one checksum per frame);
//   - toward a tunnel without outer checksum (IPv4), or a local port: a
//     checksum the sending veth peer left partial.

// txCsumPlan is what a port does about TX checksums, and why.
type txCsumPlan struct {
	use      bool   // request checksums through TX metadata
	kernelSW bool   // no device support: copy mode with XDP_UMEM_TX_SW_CSUM
	setting  string // auto, on, off
	feat     xsk.Features
	link     string // link type (veth, ...)
	why      string // why use is off although asked for (a port added at run time)
}

// planTxCsum decides for one AF_XDP port from its setting and what its
// device offers (asked from the kernel in the calling thread's namespace).
func planTxCsum(name string, po PortOptions) (txCsumPlan, error) {
	p := txCsumPlan{setting: po.TxChecksumOffload}
	if p.setting == "" {
		p.setting = "auto"
	}
	if l, err := netlink.LinkByName(name); err == nil {
		p.link = l.Type()
	}
	if p.setting == "off" {
		return p, nil
	}
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return p, fmt.Errorf("port %s: %w", name, err)
	}
	if p.feat, err = xsk.DeviceFeatures(ifc.Index); err != nil {
		return p, fmt.Errorf("port %s: device features: %w", name, err)
	}
	switch {
	case p.feat.TxChecksum():
		p.use = true
	case p.setting == "on":
		if po.ZeroCopy == "on" {
			return p, fmt.Errorf("port %s: tx_checksum_offload: on, but the device has no xsk tx-checksum and zero_copy: on leaves nobody to compute it; set zero_copy: off (the kernel computes it in copy mode) or tx_checksum_offload: auto", name)
		}
		p.use, p.kernelSW = true, true
	}
	return p, nil
}

// checkMode refuses a forced plan the bound mode cannot honour: the kernel
// computes requested checksums in software only in copy mode.
func (p txCsumPlan) checkMode(name string, zeroCopy bool) error {
	if p.kernelSW && zeroCopy {
		return fmt.Errorf("port %s: tx_checksum_offload: on, but the device has no xsk tx-checksum and its sockets are zero-copy, where the kernel does not compute checksums; set zero_copy: off or tx_checksum_offload: auto", name)
	}
	return nil
}

// describe is the port's tx-checksum line for ctl show and the log.
func (p txCsumPlan) describe() string {
	if p.why != "" {
		return "tx-checksum: software: " + p.why
	}
	dev := "device"
	if p.link != "" {
		dev = p.link
	}
	switch {
	case p.use && !p.kernelSW:
		return fmt.Sprintf("tx-checksum: AF_XDP TX metadata, computed by the %s (xsk tx-checksum)", dev)
	case p.use:
		return fmt.Sprintf("tx-checksum: AF_XDP TX metadata, computed by the kernel in copy mode (XDP_UMEM_TX_SW_CSUM; tx_checksum_offload: on; %s has no xsk tx-checksum)", dev)
	case p.setting == "off":
		return "tx-checksum: off (tx_checksum_offload: off); software"
	case !p.feat.Known:
		return "tx-checksum: the kernel has no netdev netlink family (Linux < 6.3); software"
	default:
		return fmt.Sprintf("tx-checksum: device has no xsk tx-checksum (%s); software", dev)
	}
}

// partialToDevice asks p's device for the current frame's partial
// checksum: the packet starts at frame[start], the inner frame (where
// c.csum counts from) at frame[start+inner]. It returns the descriptor
// option.
func (c *core) partialToDevice(p *port, frame []byte, start, inner int) uint32 {
	c.partial = false
	atomic.AddUint64(&c.off[p.id].csumDev, 1)
	return xsk.SetTxChecksum(frame, start, uint16(inner+c.csum.Start), uint16(c.csum.Offset))
}
