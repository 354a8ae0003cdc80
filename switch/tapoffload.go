package vswitch

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"xswitch/offload"
)

// TUN offload flags (include/uapi/linux/if_tun.h); x/sys/unix lacks them.
const (
	tunFCsum = 0x01 // the TAP may hand over (and take) unfinished checksums
	tunFTSO4 = 0x02
	tunFTSO6 = 0x04
	tunFUSO4 = 0x20 // Linux 6.2+
	tunFUSO6 = 0x40
)

// tapOffloads are the offloads an internal port's TAP accepted.
type tapOffloads struct {
	csum, tso, uso bool
}

// enableTAPOffloads asks the TAP (opened with IFF_VNET_HDR) for checksum
// offload and TCP segmentation offload, and UDP segmentation offload where
// the kernel has it. The virtio-net header is the 10-byte legacy one.
func enableTAPOffloads(fd int) (tapOffloads, error) {
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, offload.VnetHdrLen); err != nil {
		return tapOffloads{}, fmt.Errorf("TUNSETVNETHDRSZ %d: %w", offload.VnetHdrLen, err)
	}
	base := tunFCsum | tunFTSO4 | tunFTSO6
	err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, base|tunFUSO4|tunFUSO6)
	if err == nil {
		return tapOffloads{csum: true, tso: true, uso: true}, nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return tapOffloads{}, fmt.Errorf("TUNSETOFFLOAD: %w", err)
	}
	// EINVAL: a kernel before 6.2 without USO.
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, base); err != nil {
		return tapOffloads{}, fmt.Errorf("TUNSETOFFLOAD: %w", err)
	}
	return tapOffloads{csum: true, tso: true}, nil
}

// describe lists the offloads for ctl show and the start-up log.
func (o tapOffloads) describe() []string {
	var out []string
	if o.csum {
		out = append(out, "tx-checksum (virtio-net header)", "rx-checksum (virtio-net header)")
	}
	if o.tso {
		out = append(out, "tso4/tso6 (segmented in software)", "gro (software, toward the host)")
	}
	if o.uso {
		out = append(out, "uso4/uso6 (segmented in software)")
	} else {
		out = append(out, "no uso: the kernel refused TUN_F_USO4/6 (Linux < 6.2)")
	}
	return out
}

// portOffloads are what xswitch does for an AF_XDP port of kind k whose
// TX checksum plan is tc, and why the rest is off.
func portOffloads(k portKind, tc txCsumPlan, mb bool) []string {
	out := []string{tc.describe()}
	if mb {
		out = append(out, "multi-buffer (XDP_USE_SG): frames longer than a UMEM frame arrive and leave as chains of frames, forwarded through the poller's jumbo buffer (their checksums in software)")
	} else {
		out = append(out, "no multi-buffer: every MTU at start fit one UMEM frame (umem.multi_buffer: on for jumbo ports added later)")
	}
	if k == kindUnderlay {
		if tc.use {
			return append(out, "outer UDP checksum over IPv6 requested from the device (a partial inner checksum then finished in software: one device checksum per frame); over IPv4 0 (RFC 8926) and a partial inner checksum requested from the device")
		}
		return append(out, "outer UDP checksum in software (0 over IPv4 as RFC 8926 allows; computed over IPv6)")
	}
	if tc.use {
		out = append(out, "partial TCP/UDP checksums from other local ports requested from the device; those from this port's peer finished where they leave (TX checksum offload may stay on)")
	} else {
		out = append(out, "partial TCP/UDP checksums from the peer finished in software (TX checksum offload may stay on)")
	}
	return append(out, "no gso: attaching XDP turns GSO off on the veth peer")
}
