package xsk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The netdev generic netlink family (include/uapi/linux/netdev.h, Linux
// 6.3+; xsk-features since 6.8). x/sys/unix does not define it.
const (
	netdevFamily          = "netdev"
	netdevCmdDevGet       = 1 // NETDEV_CMD_DEV_GET
	netdevADevIfindex     = 1 // NETDEV_A_DEV_IFINDEX, u32
	netdevADevXDPFeatures = 3 // NETDEV_A_DEV_XDP_FEATURES, u64 (enum netdev_xdp_act)
	netdevADevZCMaxSegs   = 4 // NETDEV_A_DEV_XDP_ZC_MAX_SEGS, u32
	netdevADevRxMetadata  = 5 // NETDEV_A_DEV_XDP_RX_METADATA_FEATURES, u64
	netdevADevXSKFeatures = 6 // NETDEV_A_DEV_XSK_FEATURES, u64 (enum netdev_xsk_flags)
)

// XDP feature bits (enum netdev_xdp_act).
const (
	XDPActBasic       = 1 << 0
	XDPActRedirect    = 1 << 1
	XDPActNdoXmit     = 1 << 2
	XDPActXSKZeroCopy = 1 << 3
	XDPActHWOffload   = 1 << 4
	XDPActRxSG        = 1 << 5
	XDPActNdoXmitSG   = 1 << 6
)

// XSK feature bits (enum netdev_xsk_flags).
const (
	XSKTxTimestamp  = 1 << 0
	XSKTxChecksum   = 1 << 1
	XSKTxLaunchFIFO = 1 << 2
)

// Features are what a device offers XDP and AF_XDP, as the kernel's netdev
// netlink family reports them.
type Features struct {
	// Known says the kernel answered: false on a kernel without the
	// netdev family (before Linux 6.3), where every other field is zero.
	Known       bool
	XDP         uint64 // XDPAct* bits
	XSK         uint64 // XSK* bits (Linux 6.8+; 0 before)
	ZCMaxSegs   uint32 // most buffers of one zero-copy multi-buffer frame (1: none)
	RxMetadata  uint64 // NETDEV_XDP_RX_METADATA_* bits
	HasXSKField bool   // the reply carried xsk-features (Linux 6.8+)
}

// TxChecksum says the device computes an L4 checksum requested through
// AF_XDP TX metadata (XDP_TXMD_FLAGS_CHECKSUM).
func (f Features) TxChecksum() bool { return f.XSK&XSKTxChecksum != 0 }

// ZeroCopy says the driver supports AF_XDP zero-copy.
func (f Features) ZeroCopy() bool { return f.XDP&XDPActXSKZeroCopy != 0 }

// RxSG says the driver's XDP takes multi-buffer (fragmented) frames.
func (f Features) RxSG() bool { return f.XDP&XDPActRxSG != 0 }

// String lists the features by their netlink names.
func (f Features) String() string {
	if !f.Known {
		return "unknown (no netdev netlink family)"
	}
	var s []string
	for i, n := range []string{"basic", "redirect", "ndo-xmit", "xsk-zerocopy", "hw-offload", "rx-sg", "ndo-xmit-sg"} {
		if f.XDP&(1<<i) != 0 {
			s = append(s, n)
		}
	}
	for i, n := range []string{"tx-timestamp", "tx-checksum", "tx-launch-time-fifo"} {
		if f.XSK&(1<<i) != 0 {
			s = append(s, "xsk:"+n)
		}
	}
	if f.ZCMaxSegs > 1 {
		s = append(s, fmt.Sprintf("zc-max-segs:%d", f.ZCMaxSegs))
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ",")
}

// DeviceFeatures asks the kernel (netdev family, DEV_GET) what the device
// ifindex of the calling thread's network namespace offers. A kernel
// without the family is no error: Features{} (Known false).
func DeviceFeatures(ifindex int) (Features, error) {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return Features{}, fmt.Errorf("generic netlink: %w", err)
	}
	defer c.Close()
	fam, err := c.GetFamily(netdevFamily)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) {
		return Features{}, nil
	}
	if err != nil {
		return Features{}, fmt.Errorf("generic netlink family %q: %w", netdevFamily, err)
	}
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(netdevADevIfindex, uint32(ifindex))
	req, err := ae.Encode()
	if err != nil {
		return Features{}, fmt.Errorf("netdev dev-get: %w", err)
	}
	msgs, err := c.Execute(genetlink.Message{
		Header: genetlink.Header{Command: netdevCmdDevGet, Version: fam.Version},
		Data:   req,
	}, fam.ID, netlink.Request)
	if err != nil {
		return Features{}, fmt.Errorf("netdev dev-get ifindex %d: %w", ifindex, err)
	}
	if len(msgs) != 1 {
		return Features{}, fmt.Errorf("netdev dev-get ifindex %d: %d replies, want 1", ifindex, len(msgs))
	}
	f, err := parseDevAttrs(msgs[0].Data)
	if err != nil {
		return Features{}, fmt.Errorf("netdev dev-get ifindex %d: %w", ifindex, err)
	}
	if f.ifindex != uint32(ifindex) {
		return Features{}, fmt.Errorf("netdev dev-get ifindex %d: reply is for ifindex %d", ifindex, f.ifindex)
	}
	return f.Features, nil
}

// devAttrs is a parsed DEV_GET reply.
type devAttrs struct {
	Features
	ifindex uint32
}

// parseDevAttrs decodes the attributes of a DEV_GET reply. Flag sets are
// u64 in the spec; a 4-byte one is taken too (a shorter encoding of the
// same bits). Unknown attributes are skipped; a known one of the wrong
// size is an error.
func parseDevAttrs(b []byte) (devAttrs, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return devAttrs{}, err
	}
	a := devAttrs{Features: Features{Known: true}}
	for ad.Next() {
		data := ad.Bytes()
		var v uint64
		switch ad.Type() {
		case netdevADevIfindex, netdevADevZCMaxSegs:
			if len(data) != 4 {
				return devAttrs{}, fmt.Errorf("attribute %d: %d bytes, want 4", ad.Type(), len(data))
			}
			v = uint64(binary.NativeEndian.Uint32(data))
		case netdevADevXDPFeatures, netdevADevRxMetadata, netdevADevXSKFeatures:
			switch len(data) {
			case 4:
				v = uint64(binary.NativeEndian.Uint32(data))
			case 8:
				v = binary.NativeEndian.Uint64(data)
			default:
				return devAttrs{}, fmt.Errorf("attribute %d: %d bytes, want 8", ad.Type(), len(data))
			}
		default:
			continue
		}
		switch ad.Type() {
		case netdevADevIfindex:
			a.ifindex = uint32(v)
		case netdevADevZCMaxSegs:
			a.ZCMaxSegs = uint32(v)
		case netdevADevXDPFeatures:
			a.XDP = v
		case netdevADevRxMetadata:
			a.RxMetadata = v
		case netdevADevXSKFeatures:
			a.XSK, a.HasXSKField = v, true
		}
	}
	if err := ad.Err(); err != nil {
		return devAttrs{}, err
	}
	return a, nil
}
